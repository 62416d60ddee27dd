//! Room kept on the data directory's disk for the day it fills up.
//!
//! A full disk fails every write, and with SQLite even deletes (they write
//! to the WAL first), so space could not be freed through the API. The
//! reserve is a file of zeros in the data directory: when a write fails for
//! a full disk, the file is deleted, which gives deletes and drops the room
//! they need, and the server refuses other writes (`is_full`) until the
//! disk has twice the reserve free again; then the file is made anew and
//! writes are taken again, with no restart.
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The file that holds the reserve.
pub const RESERVE_FILE: &str = "disk-reserve";

pub struct Reserve {
    path: PathBuf,
    size: u64,
    full: AtomicBool,
    /// Serializes releasing and restoring the file.
    file: Mutex<()>,
}

impl Reserve {
    /// Keeps `size` bytes in the data directory (none: `size` 0), making
    /// the file if there is room for it.
    pub fn open(data_dir: &Path, size: u64) -> io::Result<Self> {
        let reserve = Self {
            path: data_dir.join(RESERVE_FILE),
            size,
            full: AtomicBool::new(false),
            file: Mutex::new(()),
        };
        if size > 0 {
            let has = std::fs::metadata(&reserve.path).map_or(0, |metadata| metadata.len());
            if has < size {
                match reserve.make() {
                    Ok(()) => {}
                    // Started on a full disk: deletes may go ahead.
                    Err(error) if error.kind() == io::ErrorKind::StorageFull => {
                        let _ = std::fs::remove_file(&reserve.path);
                        reserve.full.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            "the disk of {} is full: writes are refused until space is freed",
                            data_dir.display()
                        );
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(reserve)
    }

    /// Writes the reserve's zeros (allocated for real: a sparse file would
    /// keep no room).
    fn make(&self) -> io::Result<()> {
        let mut file = std::fs::File::create(&self.path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = self.size;
        while left > 0 {
            let chunk = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..chunk])?;
            left -= chunk as u64;
        }
        file.sync_all()
    }

    /// Whether writes are refused: the disk filled up, and has not enough
    /// room again yet.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Called when a write failed for a full disk: frees the reserve for
    /// deletes and refuses writes from now on.
    pub fn filled(&self) {
        let _lock = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.full.swap(true, Ordering::Relaxed) {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        tracing::warn!(
            "the disk is full: writes are refused (507) until {} MiB are free again; deletes go on ({} MiB released for them)",
            (2 * self.size) >> 20,
            self.size >> 20
        );
    }

    /// While full: takes writes again once the disk has twice the reserve
    /// free (the reserve made anew). Returns whether writes are taken.
    pub fn recheck(&self) -> bool {
        if !self.is_full() {
            return true;
        }
        let _lock = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let free = match rustix::fs::statvfs(dir) {
            Ok(stats) => stats.f_bavail.saturating_mul(stats.f_frsize),
            Err(_) => return false,
        };
        if free < 2 * self.size.max(1 << 20) {
            return false;
        }
        if self.size > 0 && self.make().is_err() {
            let _ = std::fs::remove_file(&self.path);
            return false;
        }
        self.full.store(false, Ordering::Relaxed);
        tracing::info!("the disk has room again: writes are taken");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_released_when_the_disk_fills_and_made_again_after() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = Reserve::open(dir.path(), 2 << 20).unwrap();
        let file = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 2 << 20);
        assert!(!reserve.is_full());
        reserve.filled();
        assert!(reserve.is_full());
        assert!(!file.exists(), "released for deletes");
        // The temporary directory's disk has room: writes are taken again.
        assert!(reserve.recheck());
        assert!(!reserve.is_full());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 2 << 20);
    }
}
