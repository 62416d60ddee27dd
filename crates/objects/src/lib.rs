//! Object storage: buckets of a project, objects streamed in and out in
//! bounded memory, multipart uploads, checksums verified before anything
//! is committed.
//!
//! Layer: services. Puts bytes in a `blob::BlobStore` and metadata in a
//! `store::ObjectStore`; knows no HTTP and no S3 wire format (the gateway
//! speaks S3 and REST on top of this). A write is durable when it returns:
//! the blob is fsynced and renamed before the metadata commit names it, so
//! an object is never torn; blobs dropped by a write are deleted after the
//! commit (through the store's trash, which a start finishes).
//!
//! A put computes MD5 (the ETag) and the S3 checksums asked for as the
//! bytes pass (`checksum.rs`), and checks what the client claimed
//! (`Content-MD5`, checksum headers, or trailers read after the body)
//! before the blob is committed; a bucket's size and content-type limits
//! are checked as well. A multipart upload stores each part as a blob;
//! completing it writes metadata only (the object names its parts'
//! blobs). A read of a range ([`ObjectStream`]) reads the blobs that
//! cover it one after another, in one read buffer of memory.
//!
//! Crashes: a start after a stop that was not clean (the server keeps the
//! `objects/clean-stop` marker, written only after a full drain) deletes
//! the blobs that nothing names and that predate the start: what a crash
//! between a blob's rename and its commit leaves. Multipart uploads older
//! than the server's expiry are aborted with their parts
//! ([`Objects::expire_uploads`], run by the server).

mod checksum;

pub use checksum::{ALGORITHMS, algorithm};

use blob::{BlobError, BlobStore};
use bytes::Bytes;
use domain::{BucketName, ProjectId, now_millis};
use futures::{Stream, StreamExt, TryStreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use store::StoreError;
use store::objects::{
    Bucket, ObjectCondition, ObjectDone, ObjectListing, ObjectMeta, ObjectOp, ObjectStore, Part,
    Segment, Upload,
};

/// Smallest part of a multipart upload but the last (S3's rule).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("no object {0:?} in this bucket")]
    NoSuchKey(String),
    #[error("upload {0:?} does not exist (completed, aborted, or never started)")]
    NoSuchUpload(String),
    #[error("bucket {0:?} exists already")]
    BucketExists(String),
    #[error("bucket {0:?} still holds objects or uploads")]
    BucketNotEmpty(String),
    #[error("the object is not as the condition requires")]
    PreconditionFailed,
    #[error("the object is larger than this bucket's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("content type {content_type:?} is not accepted by this bucket (accepted: {allowed})")]
    ContentTypeRefused {
        content_type: String,
        allowed: String,
    },
    #[error("the {0} the client sent does not match the bytes received")]
    BadDigest(String),
    #[error("the body ended early or failed: {0}")]
    IncompleteBody(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error("parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    #[error("part {part} is {size} bytes; every part but the last must be at least 5 MiB")]
    EntityTooSmall { part: u32, size: u64 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    DiskFull(String),
    /// The database could not be reached: the outcome of a write is
    /// unknown.
    #[error("object storage is unavailable: {0}")]
    Unavailable(String),
    #[error("object storage failed: {0}")]
    Internal(String),
}

impl From<StoreError> for ObjectError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSuchBucket(name) => ObjectError::NoSuchBucket(name),
            StoreError::BucketExists(name) => ObjectError::BucketExists(name),
            StoreError::BucketNotEmpty(name) => ObjectError::BucketNotEmpty(name),
            StoreError::NoSuchUpload(id) => ObjectError::NoSuchUpload(id),
            StoreError::ConditionFailed => ObjectError::PreconditionFailed,
            error @ StoreError::DiskFull(_) => ObjectError::DiskFull(error.to_string()),
            error if error.is_retryable() => ObjectError::Unavailable(error.to_string()),
            other => ObjectError::Internal(other.to_string()),
        }
    }
}

impl From<BlobError> for ObjectError {
    fn from(error: BlobError) -> Self {
        match error {
            error @ BlobError::DiskFull { .. } => ObjectError::DiskFull(error.to_string()),
            error => ObjectError::Internal(error.to_string()),
        }
    }
}

/// The response headers a client may store with an object, sent back with
/// it (S3 keeps the same ones; `Content-Type` has a field of its own).
pub const KEPT_HEADERS: [&str; 5] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// What describes an object beside its bytes: its content type, user
/// metadata and kept response headers.
#[derive(Debug, Clone, Default)]
pub struct Description {
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

/// A part named by a completion: its number, ETag and the checksums the
/// client claims for it.
#[derive(Debug, Clone, Default)]
pub struct ListedPart {
    pub number: u32,
    pub etag: String,
    pub checksums: Vec<(String, String)>,
}

/// The limits a new bucket is created with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketLimits {
    pub max_object_bytes: Option<u64>,
    /// Accepted content types; an entry ending in `/` accepts the family
    /// (`image/`). Empty: any.
    pub content_types: Vec<String>,
}

/// What a write sends besides the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// Response headers kept with the object ([`KEPT_HEADERS`]).
    pub headers: Vec<(String, String)>,
    /// `Content-MD5` as sent (base64).
    pub content_md5: Option<String>,
    /// Checksums the client sent before the body, by algorithm.
    pub checksums: Vec<(String, String)>,
    /// Algorithms whose values arrive after the body (trailers) or that
    /// the client asked to be computed.
    pub compute: Vec<String>,
    /// The length the client announced, if it did.
    pub length: Option<u64>,
    pub condition: ObjectCondition,
}

/// A written blob with what was computed over it.
struct Written {
    blob: String,
    size: u64,
    md5: [u8; 16],
    checksums: Vec<(String, String)>,
}

fn random_id() -> String {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("the OS random number generator");
    hex::encode(random)
}

pub struct Objects {
    store: Arc<dyn ObjectStore>,
    blobs: Arc<dyn BlobStore>,
}

impl Objects {
    /// Opens the service and deletes the blobs a crash left in the trash.
    /// `after_crash`: the last run did not stop cleanly (the server keeps
    /// the marker that says so), so blobs it was writing may be named by
    /// nothing; they are swept. After a clean stop there is nothing to
    /// look for, and the scan of every object is skipped.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        blobs: Arc<dyn BlobStore>,
        after_crash: bool,
    ) -> Result<Arc<Self>, ObjectError> {
        let objects = Arc::new(Self { store, blobs });
        let leftover = objects.store.trash().await?;
        objects.empty_trash(leftover).await;
        if after_crash {
            objects.sweep_unnamed(std::time::SystemTime::now()).await?;
        }
        Ok(objects)
    }

    /// Deletes blob files that no object or part names and that were last
    /// written before `started`: what a crash between a blob's rename and
    /// the commit naming it leaves behind. A blob of this process is newer
    /// than `started`, so an upload in flight is never touched. Returns
    /// how many were deleted.
    pub async fn sweep_unnamed(
        &self,
        started: std::time::SystemTime,
    ) -> Result<usize, ObjectError> {
        let named = self.store.named_blobs().await?;
        let unnamed: Vec<String> = self
            .blobs
            .list("")
            .await?
            .into_iter()
            .filter(|blob| blob.modified < started && !named.contains(&blob.name))
            .map(|blob| blob.name)
            .collect();
        for blob in &unnamed {
            tracing::info!("deleting blob {blob}, which no object names (left by a crash)");
            self.blobs.delete(blob).await?;
        }
        Ok(unnamed.len())
    }

    /// Aborts the multipart uploads begun more than `age` ago, in every
    /// project (like S3's `AbortIncompleteMultipartUpload` rule): their
    /// parts would otherwise hold disk space for good. Returns how many.
    pub async fn expire_uploads(&self, age: std::time::Duration) -> Result<usize, ObjectError> {
        let before = domain::now_millis().saturating_sub(age.as_millis() as i64);
        let mut expired = 0;
        loop {
            let stale = self.store.stale_uploads(before, 100).await?;
            let last_page = stale.len() < 100;
            for (project, bucket, upload_id) in stale {
                tracing::info!(
                    "aborting multipart upload {upload_id} in bucket {bucket} of project {project}: begun more than {age:?} ago"
                );
                match self.abort(&project, &bucket, &upload_id).await {
                    // Completed or aborted meanwhile: nothing left to do.
                    Ok(()) | Err(ObjectError::NoSuchUpload(_)) => expired += 1,
                    Err(error) => return Err(error),
                }
            }
            if last_page {
                return Ok(expired);
            }
        }
    }

    async fn empty_trash(&self, blobs: Vec<String>) {
        if blobs.is_empty() {
            return;
        }
        let mut removed = Vec::with_capacity(blobs.len());
        for blob in blobs {
            match self.blobs.delete(&blob).await {
                Ok(()) => removed.push(blob),
                Err(error) => tracing::warn!("could not delete blob {blob}: {error}"),
            }
        }
        if let Err(error) = self.store.trash_emptied(&removed).await {
            tracing::warn!("could not forget deleted blobs: {error}");
        }
    }

    async fn write(&self, op: ObjectOp) -> Result<ObjectDone, ObjectError> {
        let done = self.store.object_write(op).await?;
        self.empty_trash(done.trash.clone()).await;
        Ok(done)
    }

    pub async fn create_bucket(
        &self,
        project: &ProjectId,
        name: &BucketName,
        limits: BucketLimits,
    ) -> Result<Bucket, ObjectError> {
        let bucket = Bucket {
            name: name.clone(),
            created_at: now_millis(),
            max_object_bytes: limits.max_object_bytes,
            content_types: limits.content_types,
        };
        self.write(ObjectOp::CreateBucket {
            project: project.clone(),
            bucket: bucket.clone(),
        })
        .await?;
        Ok(bucket)
    }

    pub async fn delete_bucket(
        &self,
        project: &ProjectId,
        name: &BucketName,
    ) -> Result<(), ObjectError> {
        self.write(ObjectOp::DeleteBucket {
            project: project.clone(),
            bucket: name.clone(),
        })
        .await
        .map(|_| ())
    }

    pub async fn bucket(
        &self,
        project: &ProjectId,
        name: &BucketName,
    ) -> Result<Bucket, ObjectError> {
        self.store
            .bucket(project, name)
            .await?
            .ok_or_else(|| ObjectError::NoSuchBucket(name.to_string()))
    }

    pub async fn buckets(&self, project: &ProjectId) -> Result<Vec<Bucket>, ObjectError> {
        Ok(self.store.buckets(project).await?)
    }

    /// Streams `body` into a new blob of at most `room` bytes (what the
    /// bucket's object size limit leaves), checking every checksum the
    /// client sent (before the body, or after it through `trailer`) before
    /// the blob is made durable.
    async fn write_blob<S, E>(
        &self,
        bucket: &Bucket,
        room: u64,
        mut body: S,
        options: &PutOptions,
        trailer: impl FnOnce() -> Vec<(String, String)>,
    ) -> Result<Written, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let limit = bucket.max_object_bytes.unwrap_or(u64::MAX);
        if options.length.is_some_and(|length| length > room) {
            return Err(ObjectError::TooLarge { limit });
        }
        let mut algorithms: Vec<&'static str> = Vec::new();
        for name in options
            .checksums
            .iter()
            .map(|(name, _)| name)
            .chain(&options.compute)
        {
            algorithms.push(algorithm(name).ok_or_else(|| {
                ObjectError::InvalidArgument(format!("unknown checksum algorithm {name:?}"))
            })?);
        }
        let mut checksums = checksum::Checksums::new(&algorithms);
        let blob = random_id();
        let mut writer = self.blobs.put(&blob).await?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| ObjectError::IncompleteBody(error.to_string()))?;
            size += chunk.len() as u64;
            if size > room {
                return Err(ObjectError::TooLarge { limit });
            }
            checksums.update(&chunk);
            writer.write(&chunk).await?;
        }
        if let Some(length) = options.length
            && length != size
        {
            return Err(ObjectError::IncompleteBody(format!(
                "{size} bytes arrived of the {length} announced"
            )));
        }
        let (md5, computed) = checksums.finalize();
        if let Some(claimed) = &options.content_md5
            && *claimed != checksum::base64_md5(&md5)
        {
            return Err(ObjectError::BadDigest("Content-MD5".to_owned()));
        }
        let mut claimed = options.checksums.clone();
        claimed.extend(trailer());
        let mut verified = Vec::new();
        for (name, value) in claimed {
            let name = algorithm(&name).ok_or_else(|| {
                ObjectError::InvalidArgument(format!("unknown checksum algorithm {name:?}"))
            })?;
            let Some((_, ours)) = computed.iter().find(|(algorithm, _)| algorithm == name) else {
                return Err(ObjectError::InvalidArgument(format!(
                    "a {name} checksum arrived that was not announced before the body"
                )));
            };
            if *ours != value {
                return Err(ObjectError::BadDigest(format!("{name} checksum")));
            }
            verified.push((name.to_owned(), value));
        }
        // Computed but not claimed (announced for a trailer that never
        // came, or asked for): kept, so they can be returned.
        for (name, value) in computed {
            if !verified.iter().any(|(known, _)| *known == name) {
                verified.push((name, value));
            }
        }
        writer.commit().await?;
        Ok(Written {
            blob,
            size,
            md5,
            checksums: verified,
        })
    }

    fn check_content_type(bucket: &Bucket, content_type: Option<&str>) -> Result<(), ObjectError> {
        if bucket.content_types.is_empty() {
            return Ok(());
        }
        let content_type = content_type.unwrap_or("application/octet-stream");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let accepted = bucket.content_types.iter().any(|allowed| {
            if allowed.ends_with('/') {
                essence.starts_with(allowed.as_str())
            } else {
                essence == *allowed
            }
        });
        if accepted {
            Ok(())
        } else {
            Err(ObjectError::ContentTypeRefused {
                content_type: content_type.to_owned(),
                allowed: bucket.content_types.join(", "),
            })
        }
    }

    /// Writes an object from a stream.
    pub async fn put<S, E>(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
        body: S,
        options: PutOptions,
        trailer: impl FnOnce() -> Vec<(String, String)>,
    ) -> Result<ObjectMeta, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_key(key)?;
        let found = self.bucket(project, bucket).await?;
        Self::check_content_type(&found, options.content_type.as_deref())?;
        let room = found.max_object_bytes.unwrap_or(u64::MAX);
        let written = self
            .write_blob(&found, room, body, &options, trailer)
            .await?;
        let object = ObjectMeta {
            key: key.to_owned(),
            size: written.size,
            etag: hex::encode(written.md5),
            content_type: options.content_type,
            metadata: options.metadata,
            headers: options.headers,
            checksums: written.checksums,
            last_modified: now_millis(),
            segments: vec![Segment {
                blob: written.blob.clone(),
                size: written.size,
            }],
        };
        let op = ObjectOp::Put {
            project: project.clone(),
            bucket: bucket.clone(),
            object: object.clone(),
            condition: options.condition,
        };
        if let Err(error) = self.write(op).await {
            // Not committed: the blob is nobody's.
            let _ = self.blobs.delete(&written.blob).await;
            return Err(error);
        }
        Ok(object)
    }

    /// An object's metadata.
    pub async fn head(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
    ) -> Result<ObjectMeta, ObjectError> {
        let found = self.store.object(project, bucket, key).await?;
        match found {
            Some(object) => Ok(object),
            None => {
                // Tell a missing bucket from a missing key.
                self.bucket(project, bucket).await?;
                Err(ObjectError::NoSuchKey(key.to_owned()))
            }
        }
    }

    /// The bytes `range` (start inclusive, end exclusive) of an object, as
    /// a stream that reads its files as it goes.
    pub fn read(&self, object: &ObjectMeta, range: std::ops::Range<u64>) -> ObjectStream {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for segment in &object.segments {
            let (start, end) = (offset, offset + segment.size);
            offset = end;
            if end <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            pieces.push((segment.blob.clone(), from, to - from));
        }
        let blobs = self.blobs.clone();
        ObjectStream(sync_wrapper::SyncStream::new(Box::pin(
            futures::stream::iter(pieces)
                .then(move |(blob, offset, length)| {
                    let blobs = blobs.clone();
                    async move {
                        blobs
                            .get(&blob, offset, Some(length))
                            .await
                            .map_err(|error| std::io::Error::other(error.to_string()))
                    }
                })
                .try_flatten(),
        )))
    }

    pub async fn delete(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
        condition: ObjectCondition,
    ) -> Result<bool, ObjectError> {
        let done = self
            .write(ObjectOp::Delete {
                project: project.clone(),
                bucket: bucket.clone(),
                key: key.to_owned(),
                condition,
            })
            .await?;
        Ok(done.existed)
    }

    /// Copies an object's bytes into a new object (its own blob).
    #[allow(clippy::too_many_arguments)]
    pub async fn copy(
        &self,
        project: &ProjectId,
        source: &ObjectMeta,
        bucket: &BucketName,
        key: &str,
        description: Description,
        condition: ObjectCondition,
    ) -> Result<ObjectMeta, ObjectError> {
        let Description {
            content_type,
            metadata,
            headers,
        } = description;
        let stream = self.read(source, 0..source.size);
        let compute = source
            .checksums
            .iter()
            .filter(|(_, value)| !value.contains('-'))
            .map(|(name, _)| name.clone())
            .collect();
        let options = PutOptions {
            content_type,
            metadata,
            headers,
            compute,
            length: Some(source.size),
            condition,
            ..PutOptions::default()
        };
        self.put(project, bucket, key, stream, options, Vec::new)
            .await
    }

    pub async fn list(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ObjectListing, ObjectError> {
        self.bucket(project, bucket).await?;
        Ok(self
            .store
            .objects(project, bucket, prefix, delimiter, after, limit)
            .await?)
    }

    pub async fn create_upload(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
        description: Description,
        checksum_algorithm: Option<String>,
    ) -> Result<Upload, ObjectError> {
        let Description {
            content_type,
            metadata,
            headers,
        } = description;
        check_key(key)?;
        let found = self.bucket(project, bucket).await?;
        Self::check_content_type(&found, content_type.as_deref())?;
        let checksum_algorithm = checksum_algorithm
            .map(|name| {
                algorithm(&name).map(str::to_owned).ok_or_else(|| {
                    ObjectError::InvalidArgument(format!("unknown checksum algorithm {name:?}"))
                })
            })
            .transpose()?;
        let upload = Upload {
            upload_id: random_id(),
            key: key.to_owned(),
            initiated: now_millis(),
            content_type,
            metadata,
            headers,
            checksum_algorithm,
        };
        self.write(ObjectOp::CreateUpload {
            project: project.clone(),
            bucket: bucket.clone(),
            upload: upload.clone(),
        })
        .await?;
        Ok(upload)
    }

    pub async fn upload(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<Upload, ObjectError> {
        self.store
            .upload(project, bucket, upload_id)
            .await?
            .ok_or_else(|| ObjectError::NoSuchUpload(upload_id.to_owned()))
    }

    /// Stores one part of an upload from a stream.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part<S, E>(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
        number: u32,
        body: S,
        mut options: PutOptions,
        trailer: impl FnOnce() -> Vec<(String, String)>,
    ) -> Result<Part, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(ObjectError::InvalidArgument(format!(
                "part numbers are 1 to {MAX_PART_NUMBER}"
            )));
        }
        let found = self.bucket(project, bucket).await?;
        let upload = self.upload(project, bucket, upload_id).await?;
        if let Some(algorithm) = &upload.checksum_algorithm {
            options.compute.push(algorithm.clone());
        }
        // The parts together make one object: its limit counts them all
        // (the other parts uploaded so far, checked again at completion).
        let room = match found.max_object_bytes {
            Some(limit) => {
                let others: u64 = self
                    .all_parts(project, bucket, upload_id)
                    .await?
                    .iter()
                    .filter(|part| part.number != number)
                    .map(|part| part.size)
                    .sum();
                limit.saturating_sub(others)
            }
            None => u64::MAX,
        };
        let written = self
            .write_blob(&found, room, body, &options, trailer)
            .await?;
        let part = Part {
            number,
            size: written.size,
            etag: hex::encode(written.md5),
            checksums: written.checksums,
            blob: written.blob.clone(),
            last_modified: now_millis(),
        };
        let op = ObjectOp::PutPart {
            project: project.clone(),
            bucket: bucket.clone(),
            upload_id: upload_id.to_owned(),
            part: part.clone(),
        };
        if let Err(error) = self.write(op).await {
            let _ = self.blobs.delete(&written.blob).await;
            return Err(error);
        }
        Ok(part)
    }

    pub async fn parts(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
        after: u32,
        limit: u32,
    ) -> Result<Vec<Part>, ObjectError> {
        self.upload(project, bucket, upload_id).await?;
        Ok(self
            .store
            .parts(project, bucket, upload_id, after, limit)
            .await?)
    }

    /// Every part of an upload, in order.
    async fn all_parts(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<Vec<Part>, ObjectError> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or(0, |part: &Part| part.number);
            let page = self.parts(project, bucket, upload_id, after, 1000).await?;
            let done = page.len() < 1000;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Turns an upload into an object made of the listed parts, which
    /// must have been uploaded with these ETags, in ascending order.
    /// Completes an upload of `key` from the listed parts. Completing it
    /// again (a client's retry after a lost answer) answers the object it
    /// made, if it is still there. `claimed` is a whole-object checksum the
    /// client sent (a composite, `VALUE-N`), checked too.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
        upload_id: &str,
        listed: &[ListedPart],
        claimed: &[(String, String)],
        condition: ObjectCondition,
    ) -> Result<ObjectMeta, ObjectError> {
        let upload = match self.upload(project, bucket, upload_id).await {
            Ok(upload) => upload,
            Err(ObjectError::NoSuchUpload(id)) => {
                return self
                    .completed_already(project, bucket, key, listed)
                    .await
                    .ok_or(ObjectError::NoSuchUpload(id));
            }
            Err(error) => return Err(error),
        };
        if upload.key != key {
            return Err(ObjectError::NoSuchUpload(upload_id.to_owned()));
        }
        let stored = self.all_parts(project, bucket, upload_id).await?;
        if listed.is_empty() {
            return Err(ObjectError::InvalidPart(
                "a completed upload names at least one part".to_owned(),
            ));
        }
        let mut chosen: Vec<&Part> = Vec::with_capacity(listed.len());
        for (at, listed_part) in listed.iter().enumerate() {
            let number = listed_part.number;
            if at > 0 && number <= listed[at - 1].number {
                return Err(ObjectError::InvalidPartOrder);
            }
            let etag = &listed_part.etag;
            let part = stored
                .iter()
                .find(|part| part.number == number)
                .filter(|part| part.etag == etag.trim_matches('"'))
                .ok_or_else(|| {
                    ObjectError::InvalidPart(format!(
                        "part {number} was not uploaded with ETag {etag}"
                    ))
                })?;
            for (name, value) in &listed_part.checksums {
                let ours = algorithm(name).and_then(|name| {
                    part.checksums
                        .iter()
                        .find(|(algorithm, _)| algorithm == name)
                        .map(|(_, value)| value)
                });
                if ours != Some(value) {
                    return Err(ObjectError::InvalidPart(format!(
                        "part {number} was not uploaded with checksum {name} {value}"
                    )));
                }
            }
            chosen.push(part);
        }
        for part in &chosen[..chosen.len() - 1] {
            if part.size < MIN_PART_BYTES {
                return Err(ObjectError::EntityTooSmall {
                    part: part.number,
                    size: part.size,
                });
            }
        }
        let size: u64 = chosen.iter().map(|part| part.size).sum();
        let found = self.bucket(project, bucket).await?;
        if let Some(limit) = found.max_object_bytes
            && size > limit
        {
            return Err(ObjectError::TooLarge { limit });
        }
        let etags: Vec<String> = chosen.iter().map(|part| part.etag.clone()).collect();
        let etag = checksum::multipart_etag(&etags)
            .ok_or_else(|| ObjectError::Internal("a part's ETag is not hex".to_owned()))?;
        let mut checksums = Vec::new();
        if let Some(name) = upload.checksum_algorithm.as_deref().and_then(algorithm) {
            let values: Option<Vec<String>> = chosen
                .iter()
                .map(|part| {
                    part.checksums
                        .iter()
                        .find(|(algorithm, _)| algorithm == name)
                        .map(|(_, value)| value.clone())
                })
                .collect();
            if let Some(value) = values.and_then(|values| checksum::composite(name, &values)) {
                checksums.push((name.to_owned(), value));
            }
        }
        // A whole-object claim is checked against the composite checksum
        // (with or without its `-N`); one of an algorithm the upload did not
        // compute cannot be checked (a full-object CRC, say) and is ignored.
        for (name, value) in claimed {
            let ours = algorithm(name).and_then(|name| {
                checksums
                    .iter()
                    .find(|(algorithm, _)| algorithm == name)
                    .map(|(_, value)| value)
            });
            if let Some(ours) = ours
                && value != ours
                && Some(value.as_str()) != ours.rsplit_once('-').map(|(digest, _)| digest)
            {
                return Err(ObjectError::BadDigest(format!(
                    "{name} of the whole object"
                )));
            }
        }
        let object = ObjectMeta {
            key: upload.key.clone(),
            size,
            etag,
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            headers: upload.headers.clone(),
            checksums,
            last_modified: now_millis(),
            segments: chosen
                .iter()
                .map(|part| Segment {
                    blob: part.blob.clone(),
                    size: part.size,
                })
                .collect(),
        };
        self.write(ObjectOp::Complete {
            project: project.clone(),
            bucket: bucket.clone(),
            upload_id: upload_id.to_owned(),
            object: object.clone(),
            condition,
        })
        .await?;
        Ok(object)
    }

    /// The object a completion of these parts made at `key`, if it is still
    /// there: its ETag is the parts' (the MD5 of their MD5s).
    async fn completed_already(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
        listed: &[ListedPart],
    ) -> Option<ObjectMeta> {
        let etags: Vec<String> = listed
            .iter()
            .map(|part| part.etag.trim_matches('"').to_owned())
            .collect();
        let etag = checksum::multipart_etag(&etags)?;
        let object = self.head(project, bucket, key).await.ok()?;
        (object.etag == etag).then_some(object)
    }

    pub async fn abort(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.write(ObjectOp::Abort {
            project: project.clone(),
            bucket: bucket.clone(),
            upload_id: upload_id.to_owned(),
        })
        .await
        .map(|_| ())
    }

    pub async fn uploads(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<Upload>, ObjectError> {
        self.bucket(project, bucket).await?;
        Ok(self
            .store
            .uploads(
                project,
                bucket,
                prefix,
                after.as_ref().map(|(key, id)| (key.as_str(), id.as_str())),
                limit,
            )
            .await?)
    }
}

/// Keys are 1 to 1024 bytes of UTF-8, as in S3.
fn check_key(key: &str) -> Result<(), ObjectError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(ObjectError::InvalidArgument(
            "an object key is 1 to 1024 bytes of UTF-8".to_owned(),
        ));
    }
    Ok(())
}

/// An object's bytes, read blob by blob as the stream is polled: memory
/// stays at one read buffer whatever the size.
/// (Held in a `SyncStream`: the S3 front needs a `Sync` body, and a
/// stream is only ever polled through `&mut`.)
pub struct ObjectStream(sync_wrapper::SyncStream<blob::BlobStream>);

impl Stream for ObjectStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}
