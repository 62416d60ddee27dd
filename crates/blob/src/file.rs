//! Blobs as files under one directory. A put writes `<temp>/<random>` (a
//! directory of its own on the same filesystem, cleared at open: what an
//! interrupted put left), and a
//! commit flushes, fsyncs, renames it into place and fsyncs the directory,
//! so a blob that has a name is whole and durable. [`Layout::FannedOut`]
//! spreads blobs over 256 directories by the last two characters of their
//! names (`objects/<fan>/<id>`: object bytes, many files); [`Layout::Flat`]
//! keeps them side by side (artifacts).
use crate::{BlobError, BlobInfo, BlobStore, BlobStream, BlobUpload, check_name};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest write buffered before it reaches the file.
const WRITE_BUFFER: usize = 4 << 20;
/// Size of each read of a blob's file.
const READ_CHUNK: usize = 256 << 10;

/// How blob files are spread over directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every blob in the root directory.
    Flat,
    /// `<fan>/<name>`, the fan being the name's last two characters
    /// (random hex ids spread evenly over `00` to `ff`).
    FannedOut,
}

/// The file implementation of [`BlobStore`].
#[derive(Debug, Clone)]
pub struct FileBlobs {
    root: PathBuf,
    layout: Layout,
    /// Where puts are written before their commit.
    temp: PathBuf,
}

fn random_hex() -> String {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("the OS random number generator");
    hex::encode(random)
}

impl FileBlobs {
    /// Opens (creating) the directory `root`, with puts written to `temp`
    /// (on the same filesystem; no other store's), and clears what an
    /// interrupted put left there.
    pub fn open(root: &Path, layout: Layout, temp: &Path) -> Result<Self, BlobError> {
        if temp.exists() {
            std::fs::remove_dir_all(temp)
                .map_err(|error| BlobError::io(format!("clearing {}", temp.display()), error))?;
        }
        std::fs::create_dir_all(temp)
            .map_err(|error| BlobError::io(format!("creating {}", temp.display()), error))?;
        std::fs::create_dir_all(root)
            .map_err(|error| BlobError::io(format!("creating {}", root.display()), error))?;
        if layout == Layout::FannedOut {
            for fan in 0..=255u8 {
                let dir = root.join(format!("{fan:02x}"));
                std::fs::create_dir_all(&dir)
                    .map_err(|error| BlobError::io(format!("creating {}", dir.display()), error))?;
            }
        }
        Ok(Self {
            root: root.to_owned(),
            layout,
            temp: temp.to_owned(),
        })
    }

    /// The file of blob `name`, for a reader that needs a file of its own
    /// (the runtime maps precompiled code from one).
    pub fn local_path(&self, name: &str) -> Result<PathBuf, BlobError> {
        check_name(name)?;
        Ok(self.path(name))
    }

    fn path(&self, name: &str) -> PathBuf {
        match self.layout {
            Layout::Flat => self.root.join(name),
            Layout::FannedOut => {
                let fan = name.get(name.len().saturating_sub(2)..).unwrap_or("00");
                // A name that does not end in two hex digits gets its fan
                // directory made by its commit.
                self.root.join(fan).join(name)
            }
        }
    }

    /// The directories blobs live in.
    fn directories(&self) -> Vec<PathBuf> {
        match self.layout {
            Layout::Flat => vec![self.root.clone()],
            Layout::FannedOut => std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.path() != self.temp)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path())
                .collect(),
        }
    }
}

fn info(name: String, metadata: &std::fs::Metadata) -> BlobInfo {
    BlobInfo {
        name,
        size: metadata.len(),
        modified: metadata
            .modified()
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH),
    }
}

#[async_trait::async_trait]
impl BlobStore for FileBlobs {
    async fn put(&self, name: &str) -> Result<Box<dyn BlobUpload>, BlobError> {
        check_name(name)?;
        let temp = self.temp.join(random_hex());
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|error| BlobError::io(format!("creating {}", temp.display()), error))?;
        file.set_max_buf_size(WRITE_BUFFER);
        Ok(Box::new(FileUpload {
            temp,
            file: Some(file),
            destination: self.path(name),
            size: 0,
        }))
    }

    async fn get(
        &self,
        name: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<BlobStream, BlobError> {
        check_name(name)?;
        let path = self.path(name);
        // Opening and seeking take microseconds: done in place rather than
        // through a thread hop.
        let opened = std::fs::File::open(&path).and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        });
        let file = match opened {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::Missing(name.to_owned()));
            }
            Err(error) => {
                return Err(BlobError::io(format!("opening {}", path.display()), error));
            }
        };
        let file = tokio::fs::File::from_std(file).take(length.unwrap_or(u64::MAX));
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            file, READ_CHUNK,
        )))
    }

    async fn head(&self, name: &str) -> Result<Option<BlobInfo>, BlobError> {
        check_name(name)?;
        let path = self.path(name);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => Ok(Some(info(name.to_owned(), &metadata))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(BlobError::io(format!("reading {}", path.display()), error)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        check_name(name)?;
        let path = self.path(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(BlobError::io(format!("removing {}", path.display()), error)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let (directories, prefix) = (self.directories(), prefix.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut blobs = Vec::new();
            for dir in directories {
                let entries = std::fs::read_dir(&dir)
                    .map_err(|error| BlobError::io(format!("listing {}", dir.display()), error))?;
                for entry in entries {
                    let entry = entry.map_err(|error| {
                        BlobError::io(format!("listing {}", dir.display()), error)
                    })?;
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if !name.starts_with(&prefix) || check_name(&name).is_err() {
                        continue;
                    }
                    let metadata = entry.metadata().map_err(|error| {
                        BlobError::io(format!("reading {}", entry.path().display()), error)
                    })?;
                    if metadata.is_file() {
                        blobs.push(info(name, &metadata));
                    }
                }
            }
            Ok(blobs)
        })
        .await
        .map_err(|error| BlobError::io("listing blobs", std::io::Error::other(error)))?
    }
}

/// A put under way; dropped before its commit, its file is removed.
struct FileUpload {
    temp: PathBuf,
    file: Option<tokio::fs::File>,
    destination: PathBuf,
    size: u64,
}

#[async_trait::async_trait]
impl BlobUpload for FileUpload {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let file = self
            .file
            .as_mut()
            .expect("an upload is written until its commit");
        file.write_all(bytes)
            .await
            .map_err(|error| BlobError::io(format!("writing {}", self.temp.display()), error))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let mut file = self.file.take().expect("an upload commits once");
        let temp = self.temp.clone();
        file.flush()
            .await
            .map_err(|error| BlobError::io(format!("writing {}", temp.display()), error))?;
        file.sync_all()
            .await
            .map_err(|error| BlobError::io(format!("syncing {}", temp.display()), error))?;
        drop(file);
        let destination = self.destination.clone();
        if let Some(parent) = destination.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|error| BlobError::io(format!("creating {}", parent.display()), error))?;
        }
        tokio::fs::rename(&temp, &destination)
            .await
            .map_err(|error| {
                BlobError::io(format!("renaming into {}", destination.display()), error)
            })?;
        // Committed: nothing to clean up on drop.
        self.temp = PathBuf::new();
        // The rename is durable once the directory entry is.
        if let Some(parent) = destination.parent().map(Path::to_owned) {
            tokio::task::spawn_blocking(move || {
                std::fs::File::open(&parent)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|error| BlobError::io(format!("syncing {}", parent.display()), error))
            })
            .await
            .map_err(|error| {
                BlobError::io("syncing a directory", std::io::Error::other(error))
            })??;
        }
        Ok(self.size)
    }
}

impl Drop for FileUpload {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
