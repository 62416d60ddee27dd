//! The bytes of stored objects: one file per blob under
//! `objects/<last two id chars>/<id>`, written to `objects/tmp` first,
//! fsynced, then renamed into place (and the directory fsynced), so a blob
//! that has a name is whole and durable. Ids are random; which object owns
//! a blob is the metadata store's business.
use crate::{BlobError, io_error};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Largest write buffered before it reaches the file.
const WRITE_BUFFER: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct ObjectFiles {
    root: PathBuf,
}

/// A blob being written; dropped before [`BlobWriter::commit`], its
/// temporary file is removed.
pub struct BlobWriter {
    id: String,
    temp: PathBuf,
    file: Option<tokio::fs::File>,
    final_path: PathBuf,
}

impl ObjectFiles {
    /// Opens (creating) `objects/` under `root` and clears what an
    /// interrupted upload left in `objects/tmp`.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let root = root.join("objects");
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_error("clearing", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_error("creating", &tmp))?;
        for fan in 0..=255u8 {
            let dir = root.join(format!("{fan:02x}"));
            std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        }
        Ok(Self { root })
    }

    pub fn path(&self, id: &str) -> PathBuf {
        let fan = id.get(id.len().saturating_sub(2)..).unwrap_or("00");
        self.root.join(fan).join(id)
    }

    /// Starts a new blob with a fresh random id.
    pub async fn create(&self) -> Result<BlobWriter, BlobError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).expect("the OS random number generator");
        let id = hex::encode(random);
        let temp = self.root.join("tmp").join(&id);
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(io_error("creating", &temp))?;
        file.set_max_buf_size(WRITE_BUFFER);
        Ok(BlobWriter {
            final_path: self.path(&id),
            id,
            temp,
            file: Some(file),
        })
    }

    pub async fn open_read(&self, id: &str) -> Result<tokio::fs::File, BlobError> {
        let path = self.path(id);
        tokio::fs::File::open(&path)
            .await
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => BlobError::Missing(id.to_owned()),
                _ => BlobError::Io {
                    action: "opening",
                    path,
                    source: error,
                },
            })
    }

    /// Whether the last stop was clean (a marker left by
    /// [`ObjectFiles::mark_clean_stop`]); the marker is consumed, so a
    /// crash of this run is not mistaken for a clean stop.
    pub fn take_clean_stop(&self) -> Result<bool, BlobError> {
        let marker = self.root.join("clean-stop");
        match std::fs::remove_file(&marker) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(BlobError::Io {
                action: "removing",
                path: marker,
                source: error,
            }),
        }
    }

    /// Records that every write has finished and the process stops cleanly.
    pub fn mark_clean_stop(&self) -> Result<(), BlobError> {
        let marker = self.root.join("clean-stop");
        std::fs::write(&marker, b"").map_err(io_error("writing", &marker))
    }

    /// Every blob file with its last modification time.
    pub fn list(&self) -> Result<Vec<(String, std::time::SystemTime)>, BlobError> {
        let mut blobs = Vec::new();
        for fan in 0..=255u8 {
            let dir = self.root.join(format!("{fan:02x}"));
            for entry in std::fs::read_dir(&dir).map_err(io_error("listing", &dir))? {
                let entry = entry.map_err(io_error("listing", &dir))?;
                let modified = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .map_err(io_error("reading", &entry.path()))?;
                if let Some(name) = entry.file_name().to_str() {
                    blobs.push((name.to_owned(), modified));
                }
            }
        }
        Ok(blobs)
    }

    /// Deletes a blob; one already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), BlobError> {
        let path = self.path(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(BlobError::Io {
                action: "removing",
                path,
                source: error,
            }),
        }
    }
}

impl BlobWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let file = self.file.as_mut().expect("a writer is used until commit");
        file.write_all(bytes)
            .await
            .map_err(io_error("writing", &self.temp))
    }

    /// Makes the blob durable under its name: flush, fsync, rename, fsync
    /// the directory.
    pub async fn commit(mut self) -> Result<String, BlobError> {
        let mut file = self.file.take().expect("a writer commits once");
        file.flush()
            .await
            .map_err(io_error("writing", &self.temp))?;
        file.sync_all()
            .await
            .map_err(io_error("syncing", &self.temp))?;
        drop(file);
        tokio::fs::rename(&self.temp, &self.final_path)
            .await
            .map_err(io_error("renaming into", &self.final_path))?;
        let parent = self.final_path.parent().map(Path::to_owned);
        if let Some(parent) = parent {
            tokio::task::spawn_blocking(move || {
                std::fs::File::open(&parent)
                    .and_then(|dir| dir.sync_all())
                    .map_err(io_error("syncing", &parent))
            })
            .await
            .expect("syncing a directory does not panic")?;
        }
        // Committed: nothing to clean up on drop.
        self.temp = PathBuf::new();
        Ok(std::mem::take(&mut self.id))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_committed_blob_is_whole_and_an_abandoned_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = ObjectFiles::open(dir.path()).unwrap();
        let mut writer = files.create().await.unwrap();
        writer.write(b"hello ").await.unwrap();
        writer.write(b"world").await.unwrap();
        let id = writer.commit().await.unwrap();
        assert_eq!(std::fs::read(files.path(&id)).unwrap(), b"hello world");

        let mut abandoned = files.create().await.unwrap();
        abandoned.write(b"half").await.unwrap();
        drop(abandoned);
        let tmp = dir.path().join("objects/tmp");
        assert!(std::fs::read_dir(&tmp).unwrap().next().is_none());

        files.remove(&id).await.unwrap();
        files.remove(&id).await.unwrap();
        assert!(matches!(
            files.open_read(&id).await,
            Err(BlobError::Missing(_))
        ));
    }
}
