//! Blobs in an S3-compatible bucket, so that several `wok` nodes share
//! object bytes and function artifacts: [`S3Blobs`] implements
//! `blob::BlobStore` over `object_store`'s S3 client (SigV4, multipart
//! uploads, ranged reads), configured by an [`S3Config`] read from
//! `s3://BUCKET/PREFIX?endpoint=...&region=...` and the AWS variables.
//!
//! Layer: backends. Passes the same contract suite as `blob::FileBlobs`
//! (`tests/it`, against a real S3 server, `s3s-fs`, that
//! `scripts/start-s3.sh` starts). Knows nothing of SQL, HTTP routing or
//! wasm; which blob belongs to what is the metadata store's business.
//!
//! A blob `NAME` is the object `PREFIX/NAME`. A put buffers up to
//! [`PART_SIZE`] in memory: a smaller blob is one PUT at commit, a larger
//! one a multipart upload (a part per [`PART_SIZE`]) completed at commit,
//! so in both cases nothing is visible before. An upload dropped before
//! its commit aborts its multipart upload in the background; parts that a
//! crash leaves behind are invisible and are the bucket's lifecycle rule's
//! to expire (`AbortIncompleteMultipartUpload`).

mod config;

pub use config::{ConfigError, S3Config};

use blob::{BlobError, BlobInfo, BlobStore, BlobStream, BlobUpload, check_name};
use bytes::BytesMut;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    ObjectStoreExt, RetryConfig,
};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The size of a multipart upload's parts, and the most an upload holds
/// in memory. S3 wants parts of at least 5 MiB (but the last) and at most
/// 10,000 of them: blobs up to 80 GiB.
pub const PART_SIZE: usize = 8 << 20;

/// How long an abandoned upload's abort may take before it is given up
/// (and logged).
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Blobs as objects under a prefix of a bucket.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: AmazonS3,
    /// `PREFIX/`, or empty at the bucket's root.
    key_prefix: String,
    /// Where the blobs are, for messages (no secret).
    location: String,
}

impl S3Blobs {
    /// A store over `config`'s bucket, once the server has shown that it
    /// takes the credentials and that the bucket is there (a HEAD and a
    /// listing of the prefix); an error says which failed.
    pub async fn open(config: S3Config) -> Result<Self, BlobError> {
        let location = config.location();
        config.validate().map_err(|error| BlobError::Io {
            doing: format!("opening blobs {location}"),
            source: io::Error::new(io::ErrorKind::InvalidInput, error),
        })?;
        let client_options = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_connect_timeout(Duration::from_secs(5))
            // Not a deadline for a whole request: a large blob streams for
            // as long as its reader takes. A stalled read is retried from
            // where it stopped.
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(30));
        // A few quick retries (of failures to connect, timeouts and 5xx
        // answers): an unreachable server is said within seconds, not after
        // object_store's default of three minutes.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 5,
            retry_timeout: Duration::from_secs(30),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_client_options(client_options)
            .with_retry(retry);
        if let Some(endpoint) = &config.endpoint {
            // Path-style (ENDPOINT/BUCKET/KEY): S3-compatible servers
            // seldom have a DNS name per bucket.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let client = builder.build().map_err(|error| BlobError::Io {
            doing: format!("opening blobs {location}"),
            source: io::Error::new(io::ErrorKind::InvalidInput, error),
        })?;
        let key_prefix = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", config.prefix)
        };
        let store = S3Blobs {
            inner: Arc::new(Inner {
                client,
                key_prefix,
                location,
            }),
        };
        store.check_reachable(&config).await?;
        Ok(store)
    }

    /// Where the blobs are: `s3://BUCKET/PREFIX at ENDPOINT`.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// A HEAD of a key that is no blob tells refused credentials apart
    /// (S3 answers a listing's failures with bodies object_store does not
    /// sort); a listing then shows the bucket is there.
    async fn check_reachable(&self, config: &S3Config) -> Result<(), BlobError> {
        let failed = |why: String, error: object_store::Error| BlobError::Io {
            doing: format!("opening blobs {}: {why}", self.inner.location),
            source: io_error(error),
        };
        let probe = Path::from(format!("{}.wok-probe", self.inner.key_prefix));
        match self.inner.client.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(
                error @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) => {
                return Err(failed(
                    format!(
                        "the server refused access key {} (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                        config.access_key_id
                    ),
                    error,
                ));
            }
            Err(error) => {
                return Err(failed("the server did not answer".to_owned(), error));
            }
        }
        let options = PaginatedListOptions {
            delimiter: Some("/".into()),
            max_keys: Some(1),
            ..PaginatedListOptions::default()
        };
        let prefix = (!self.inner.key_prefix.is_empty()).then_some(self.inner.key_prefix.as_str());
        match self.inner.client.list_paginated(prefix, options).await {
            Ok(_) => Ok(()),
            Err(error) => Err(failed(
                format!(
                    "bucket {} does not exist, or this key may not list it",
                    config.bucket
                ),
                error,
            )),
        }
    }

    fn path(&self, name: &str) -> Path {
        // Checked names and prefixes need no encoding: the key is the path.
        Path::from(format!("{}{name}", self.inner.key_prefix))
    }

    fn error(&self, doing: &str, name: &str, error: object_store::Error) -> BlobError {
        BlobError::io(
            format!("{doing} blob {name} in {}", self.inner.location),
            io_error(error),
        )
    }

    /// The blob's size, or `None` if there is none.
    async fn size(&self, name: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.head(name).await?.map(|info| info.size))
    }
}

/// An object_store error as an I/O error whose message carries its whole
/// chain of causes (object_store's own says "error sending request" and
/// keeps "connection refused" to its source).
fn io_error(error: object_store::Error) -> io::Error {
    let kind = match error {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    io::Error::new(kind, message)
}

fn info(name: String, meta: &object_store::ObjectMeta) -> BlobInfo {
    BlobInfo {
        name,
        size: meta.size,
        modified: meta.last_modified.into(),
    }
}

fn empty_stream() -> BlobStream {
    Box::pin(futures::stream::empty())
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, name: &str) -> Result<Box<dyn BlobUpload>, BlobError> {
        check_name(name)?;
        Ok(Box::new(S3Upload {
            store: self.clone(),
            name: name.to_owned(),
            path: self.path(name),
            buffer: BytesMut::new(),
            multipart: None,
            size: 0,
            failed: false,
        }))
    }

    async fn get(
        &self,
        name: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<BlobStream, BlobError> {
        check_name(name)?;
        let range = match length {
            // S3 has no empty range: whether the blob is there is the answer.
            Some(0) => {
                return match self.size(name).await? {
                    Some(_) => Ok(empty_stream()),
                    None => Err(BlobError::Missing(name.to_owned())),
                };
            }
            Some(length) => Some(GetRange::Bounded(offset..offset.saturating_add(length))),
            None if offset == 0 => None,
            None => Some(GetRange::Offset(offset)),
        };
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        match self.inner.client.get_opts(&self.path(name), options).await {
            Ok(result) => Ok(Box::pin(result.into_stream().map_err(io_error))),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::Missing(name.to_owned())),
            Err(error) => {
                // A range from the end of a blob or past it is empty, which
                // S3 answers with 416 (and object_store with an error).
                match self.size(name).await? {
                    Some(size) if offset >= size => Ok(empty_stream()),
                    None => Err(BlobError::Missing(name.to_owned())),
                    Some(_) => Err(self.error("reading", name, error)),
                }
            }
        }
    }

    async fn head(&self, name: &str) -> Result<Option<BlobInfo>, BlobError> {
        check_name(name)?;
        match self.inner.client.head(&self.path(name)).await {
            Ok(meta) => Ok(Some(info(name.to_owned(), &meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.error("looking up", name, error)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        check_name(name)?;
        // S3 answers a delete of a missing key with success too.
        match self.inner.client.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error("deleting", name, error)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let listing_error = |error: object_store::Error| {
            BlobError::io(
                format!(
                    "listing blobs starting with {prefix:?} in {}",
                    self.inner.location
                ),
                io_error(error),
            )
        };
        // The key prefix goes to the server as is (object_store's `list`
        // would take whole path segments only); the delimiter keeps out
        // anything under deeper prefixes.
        let key_prefix = format!("{}{prefix}", self.inner.key_prefix);
        let mut blobs = Vec::new();
        let mut page_token = None;
        loop {
            let options = PaginatedListOptions {
                delimiter: Some("/".into()),
                page_token,
                ..PaginatedListOptions::default()
            };
            let page = self
                .inner
                .client
                .list_paginated(
                    (!key_prefix.is_empty()).then_some(key_prefix.as_str()),
                    options,
                )
                .await
                .map_err(listing_error)?;
            for meta in &page.result.objects {
                let key = meta.location.as_ref();
                let Some(name) = key.strip_prefix(&self.inner.key_prefix) else {
                    continue;
                };
                // Whatever else shares the prefix is not a blob.
                if name.starts_with(prefix) && check_name(name).is_ok() {
                    blobs.push(info(name.to_owned(), meta));
                }
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => return Ok(blobs),
            }
        }
    }
}

/// A blob being written: bytes buffered up to a part, then a multipart
/// upload once there is more than one.
struct S3Upload {
    store: S3Blobs,
    name: String,
    path: Path,
    buffer: BytesMut,
    /// Started by the first full part; aborted if this is dropped before
    /// its commit.
    multipart: Option<Box<dyn MultipartUpload>>,
    size: u64,
    /// A part failed: the upload cannot be committed.
    failed: bool,
}

impl S3Upload {
    fn error(&self, doing: &str, error: object_store::Error) -> BlobError {
        self.store.error(doing, &self.name, error)
    }

    /// Sends the buffer as the next part, starting the multipart upload
    /// with the first.
    async fn send_part(&mut self) -> Result<(), BlobError> {
        // Every part but the last is full: the next one is too.
        let part = std::mem::replace(&mut self.buffer, BytesMut::with_capacity(PART_SIZE)).freeze();
        let multipart = match &mut self.multipart {
            Some(multipart) => multipart,
            None => {
                let started = self
                    .store
                    .inner
                    .client
                    .put_multipart(&self.path)
                    .await
                    .map_err(|error| self.error("starting the upload of", error))?;
                self.multipart.insert(started)
            }
        };
        let sent = multipart.put_part(part.into()).await;
        sent.map_err(|error| self.error("uploading a part of", error))
    }

    /// Aborts the multipart upload, if one started, now.
    async fn abort(&mut self) {
        if let Some(mut multipart) = self.multipart.take() {
            abort_multipart(&mut *multipart, &self.path).await;
        }
    }
}

async fn abort_multipart(multipart: &mut dyn MultipartUpload, path: &Path) {
    match tokio::time::timeout(ABORT_TIMEOUT, multipart.abort()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(key = %path, %error, "could not abort an abandoned multipart upload; its parts stay until the bucket's lifecycle rule expires them");
        }
        Err(_) => {
            tracing::warn!(key = %path, "aborting an abandoned multipart upload took over {ABORT_TIMEOUT:?}; its parts stay until the bucket's lifecycle rule expires them");
        }
    }
}

#[async_trait::async_trait]
impl BlobUpload for S3Upload {
    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), BlobError> {
        if self.failed {
            return Err(BlobError::Io {
                doing: format!("writing blob {} in {}", self.name, self.store.location()),
                source: io::Error::other("an earlier part of this upload failed"),
            });
        }
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = PART_SIZE - self.buffer.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = later;
            if self.buffer.len() == PART_SIZE
                && let Err(error) = self.send_part().await
            {
                self.failed = true;
                self.abort().await;
                return Err(error);
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        if self.failed {
            return Err(BlobError::Io {
                doing: format!("committing blob {} in {}", self.name, self.store.location()),
                source: io::Error::other("an earlier part of this upload failed"),
            });
        }
        let bytes = std::mem::take(&mut self.buffer).freeze();
        let Some(mut multipart) = self.multipart.take() else {
            self.store
                .inner
                .client
                .put(&self.path, bytes.into())
                .await
                .map_err(|error| self.error("writing", error))?;
            return Ok(self.size);
        };
        let mut completed = Ok(());
        if !bytes.is_empty() {
            completed = multipart
                .put_part(bytes.into())
                .await
                .map_err(|error| self.error("uploading the last part of", error));
        }
        if completed.is_ok() {
            completed = match multipart.complete().await {
                Ok(_) => Ok(()),
                Err(error) => Err(self.error("completing the upload of", error)),
            };
        }
        if let Err(error) = completed {
            abort_multipart(&mut *multipart, &self.path).await;
            return Err(error);
        }
        Ok(self.size)
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        let Some(mut multipart) = self.multipart.take() else {
            return;
        };
        let path = self.path.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { abort_multipart(&mut *multipart, &path).await });
            }
            Err(_) => {
                tracing::warn!(key = %path, "a multipart upload was dropped outside a runtime and cannot be aborted; its parts stay until the bucket's lifecycle rule expires them");
            }
        }
    }
}
