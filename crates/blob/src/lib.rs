//! Files: uploaded components and their precompiled forms (content-
//! addressed), and the bytes of stored objects (`objects.rs`).
//!
//! Layer: engines. Knows the filesystem (files now; an S3-compatible store
//! later) and nothing of wasm, HTTP or SQL. Every write goes to a temporary
//! file, is fsynced, then renamed, so a reader never sees a torn file.

mod objects;
mod reserve;

pub use objects::{BlobWriter, ObjectFiles};
pub use reserve::Reserve;

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is missing")]
    Missing(String),
    #[error("{action} {path}: the disk is full")]
    DiskFull { action: &'static str, path: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Files under one directory: `artifacts/<sha256>.wasm` and
/// `compiled/<sha256>-<engine key>.cwasm`.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BlobError {
    let path = path.to_owned();
    move |source| match source.kind() {
        io::ErrorKind::StorageFull => BlobError::DiskFull { action, path },
        _ => BlobError::Io {
            action,
            path,
            source,
        },
    }
}

/// The hex sha256 of `bytes`, the name an artifact is stored under.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactStore {
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        for sub in ["artifacts", "compiled", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn artifact_path(&self, hash: &str) -> PathBuf {
        self.root.join("artifacts").join(format!("{hash}.wasm"))
    }

    pub fn compiled_path(&self, hash: &str, engine_key: &str) -> PathBuf {
        self.root
            .join("compiled")
            .join(format!("{hash}-{engine_key}.cwasm"))
    }

    /// Stores an uploaded component under its content hash; returns the hash.
    pub fn put_artifact(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let hash = content_hash(bytes);
        let path = self.artifact_path(&hash);
        if !path.exists() {
            self.write_atomically(&path, bytes)?;
        }
        Ok(hash)
    }

    pub fn read_artifact(&self, hash: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.artifact_path(hash);
        fs::read(&path).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => BlobError::Missing(hash.to_owned()),
            _ => BlobError::Io {
                action: "reading",
                path: path.clone(),
                source: error,
            },
        })
    }

    /// Stores a precompiled artifact for one engine configuration.
    pub fn put_compiled(
        &self,
        hash: &str,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, BlobError> {
        let path = self.compiled_path(hash, engine_key);
        self.write_atomically(&path, bytes)?;
        Ok(path)
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir)
            .map_err(io_error("creating a file in", &tmp_dir))?;
        tmp.write_all(bytes)
            .map_err(io_error("writing", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_error("syncing", path))?;
        tmp.persist(path).map_err(|error| BlobError::Io {
            action: "renaming into",
            path: path.to_owned(),
            source: error.error,
        })?;
        if let Some(parent) = path.parent() {
            // The rename is durable once the directory entry is.
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error("syncing", parent))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_by_content_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let hash = store.put_artifact(b"component bytes").unwrap();
        assert_eq!(hash, content_hash(b"component bytes"));
        assert_eq!(store.put_artifact(b"component bytes").unwrap(), hash);
        assert_eq!(store.read_artifact(&hash).unwrap(), b"component bytes");
        assert!(matches!(
            store.read_artifact("0000"),
            Err(BlobError::Missing(_))
        ));
        assert!(
            fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .next()
                .is_none(),
            "no temporary file is left"
        );
    }
}
