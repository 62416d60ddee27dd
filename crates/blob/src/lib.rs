//! Bytes by name: the [`BlobStore`] contract (a streamed put that becomes
//! visible only when committed, ranged reads, deletes, listings), its file
//! implementation ([`FileBlobs`]), the artifact store built on it (uploaded
//! components as blobs, their precompiled forms as a node-local cache of
//! files) and the disk [`Reserve`].
//!
//! Layer: contracts (the trait and its suite, `testsuite` behind the
//! feature of that name) with the file backend beside it, which is small.
//! Knows nothing of wasm, HTTP or SQL; a blob's owner (an object, a
//! version) is the metadata store's business.

mod artifacts;
mod file;
mod reserve;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use artifacts::ArtifactStore;
pub use file::{FileBlobs, Layout};
pub use reserve::Reserve;

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use std::io;
use std::pin::Pin;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is missing")]
    Missing(String),
    #[error(
        "{0:?} is not a blob name (1 to 255 bytes of letters, digits, '.', '_' and '-', not starting with '.')"
    )]
    InvalidName(String),
    #[error("{doing}: the disk is full")]
    DiskFull { doing: String },
    #[error("{doing}: {source}")]
    Io { doing: String, source: io::Error },
}

impl BlobError {
    /// The error of an I/O failure while `doing` something: a full disk is
    /// told apart.
    pub fn io(doing: impl Into<String>, source: io::Error) -> Self {
        let doing = doing.into();
        match source.kind() {
            io::ErrorKind::StorageFull => BlobError::DiskFull { doing },
            _ => BlobError::Io { doing, source },
        }
    }
}

/// A blob's bytes as they are read: chunks, in order.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What a listing says of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub name: String,
    pub size: u64,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

/// Blobs by name. Names are one path segment: 1 to 255 bytes of ASCII
/// letters, digits, `.`, `_` and `-`, not starting with `.` (see
/// [`check_name`]); a store may keep its own files beside them.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts writing blob `name`. Nothing is visible under the name (and
    /// a blob there is unchanged) until [`BlobUpload::commit`]; an upload
    /// dropped before that leaves nothing behind.
    async fn put(&self, name: &str) -> Result<Box<dyn BlobUpload>, BlobError>;

    /// `length` bytes of blob `name` from `offset` (`None`: to its end);
    /// [`BlobError::Missing`] if there is no such blob.
    async fn get(
        &self,
        name: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<BlobStream, BlobError>;

    /// The blob's size and time, if there is one.
    async fn head(&self, name: &str) -> Result<Option<BlobInfo>, BlobError>;

    /// Deletes a blob; one that is not there is fine.
    async fn delete(&self, name: &str) -> Result<(), BlobError>;

    /// The blobs whose names start with `prefix`, in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError>;
}

/// A blob being written.
#[async_trait::async_trait]
pub trait BlobUpload: Send {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError>;

    /// Makes the blob durable and visible under its name, replacing what
    /// was there; returns its size.
    async fn commit(self: Box<Self>) -> Result<u64, BlobError>;
}

/// Checks a blob name (see [`BlobStore`]).
pub fn check_name(name: &str) -> Result<(), BlobError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(BlobError::InvalidName(name.to_owned()))
    }
}

/// The hex sha256 of `bytes`, the name an artifact is stored under.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a whole blob into memory.
pub async fn read_all(store: &dyn BlobStore, name: &str) -> Result<Vec<u8>, BlobError> {
    use futures::StreamExt;
    let mut stream = store.get(name, 0, None).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| BlobError::io(format!("reading blob {name}"), error))?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Writes a whole blob from memory.
pub async fn write_all(store: &dyn BlobStore, name: &str, bytes: &[u8]) -> Result<(), BlobError> {
    let mut upload = store.put(name).await?;
    upload.write(bytes).await?;
    upload.commit().await.map(|_| ())
}
