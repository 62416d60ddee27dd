//! The object metadata contract: buckets, objects, multipart uploads. The
//! bytes live elsewhere (`blob`); an object names the blobs that hold its
//! bytes, in order (one for a plain upload, one per part for a multipart
//! one), so completing an upload copies nothing.
//!
//! A blob that no object or part names any more goes to the trash in the
//! same transaction as the write that dropped it; the caller deletes the
//! file, then empties that trash entry. A crash in between leaves the
//! entry, and the next start deletes it.
use crate::StoreError;
use domain::{BucketName, ProjectId, UnixMillis};

/// How every backend stores an object's lists in text columns (JSON):
/// name-value pairs, user metadata with the response headers, segments.
pub mod columns {
    use super::Segment;
    use crate::StoreError;
    use serde_json::Value;

    /// Name-value pairs, as objects keep them.
    pub type Pairs = Vec<(String, String)>;

    fn corrupt(what: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(what.to_string())
    }

    pub fn pairs_to_json(pairs: &[(String, String)]) -> String {
        Value::Array(
            pairs
                .iter()
                .map(|(name, value)| Value::from(vec![name.clone(), value.clone()]))
                .collect(),
        )
        .to_string()
    }

    pub fn pairs_from_json(text: &str) -> Result<Pairs, StoreError> {
        serde_json::from_str(text).map_err(corrupt)
    }

    /// An object's response headers are kept in its `metadata` column,
    /// named `:NAME`: no user metadata name can hold a colon (it is not a
    /// header name character), and rows from before headers were kept
    /// read the same.
    const HEADER_MARK: char = ':';

    pub fn described_to_json(
        metadata: &[(String, String)],
        headers: &[(String, String)],
    ) -> String {
        let mut pairs = metadata.to_vec();
        pairs.extend(
            headers
                .iter()
                .map(|(name, value)| (format!("{HEADER_MARK}{name}"), value.clone())),
        );
        pairs_to_json(&pairs)
    }

    /// User metadata and response headers, from a `metadata` column.
    pub fn described_from_json(text: &str) -> Result<(Pairs, Pairs), StoreError> {
        let (mut metadata, mut headers) = (Vec::new(), Vec::new());
        for (name, value) in pairs_from_json(text)? {
            match name.strip_prefix(HEADER_MARK) {
                Some(header) => headers.push((header.to_owned(), value)),
                None => metadata.push((name, value)),
            }
        }
        Ok((metadata, headers))
    }

    pub fn segments_to_json(segments: &[Segment]) -> String {
        Value::Array(
            segments
                .iter()
                .map(|segment| serde_json::json!([segment.blob, segment.size]))
                .collect(),
        )
        .to_string()
    }

    pub fn segments_from_json(text: &str) -> Result<Vec<Segment>, StoreError> {
        let pairs: Vec<(String, u64)> = serde_json::from_str(text).map_err(corrupt)?;
        Ok(pairs
            .into_iter()
            .map(|(blob, size)| Segment { blob, size })
            .collect())
    }
}

/// A bucket and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: BucketName,
    pub created_at: UnixMillis,
    /// Largest object accepted; `None`: no limit of the bucket's own.
    pub max_object_bytes: Option<u64>,
    /// Content types accepted (`image/png`, or `image/` for every image
    /// type); empty: any.
    pub content_types: Vec<String>,
}

/// One stored run of an object's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub blob: String,
    pub size: u64,
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Hex MD5 of the bytes, or for a multipart upload the MD5 of the
    /// parts' MD5s and `-N` (the S3 convention), without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-NAME`), names lowercase.
    pub metadata: Vec<(String, String)>,
    /// Response headers kept with the object and sent with it:
    /// `cache-control`, `content-disposition`, `content-encoding`,
    /// `content-language`, `expires` (names lowercase).
    pub headers: Vec<(String, String)>,
    /// Verified checksums, by algorithm (`CRC32`, `CRC32C`, `SHA1`,
    /// `SHA256`, `CRC64NVME`), base64 as S3 writes them.
    pub checksums: Vec<(String, String)>,
    pub last_modified: UnixMillis,
    pub segments: Vec<Segment>,
}

/// What a write requires of the live object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ObjectCondition {
    #[default]
    Always,
    /// `If-None-Match: *`: only if there is none.
    Absent,
    /// `If-Match: "etag"`: only if the live object has this ETag.
    ETag(String),
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectListing {
    pub objects: Vec<ObjectMeta>,
    /// Keys cut at the delimiter after the prefix, each once.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts (exclusive), when the listing was cut.
    pub next_after: Option<String>,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: String,
    pub key: String,
    pub initiated: UnixMillis,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// The object's response headers (see [`ObjectMeta::headers`]).
    pub headers: Vec<(String, String)>,
    /// The checksum algorithm the client announced, if any.
    pub checksum_algorithm: Option<String>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub size: u64,
    /// Hex MD5 of the part.
    pub etag: String,
    pub checksums: Vec<(String, String)>,
    pub blob: String,
    pub last_modified: UnixMillis,
}

/// One object write, for [`ObjectStore::object_write`].
#[derive(Debug, Clone)]
pub enum ObjectOp {
    CreateBucket {
        project: ProjectId,
        bucket: Bucket,
    },
    /// Refused with [`StoreError::BucketNotEmpty`] while it holds objects
    /// or uploads. Its access rule goes with it.
    DeleteBucket {
        project: ProjectId,
        bucket: BucketName,
    },
    /// Writes an object, replacing the live one (whose blobs go to trash).
    Put {
        project: ProjectId,
        bucket: BucketName,
        object: ObjectMeta,
        condition: ObjectCondition,
    },
    Delete {
        project: ProjectId,
        bucket: BucketName,
        key: String,
        condition: ObjectCondition,
    },
    CreateUpload {
        project: ProjectId,
        bucket: BucketName,
        upload: Upload,
    },
    /// Adds a part, replacing one of the same number.
    PutPart {
        project: ProjectId,
        bucket: BucketName,
        upload_id: String,
        part: Part,
    },
    /// Turns the upload into `object` (whose segments are some of its
    /// parts, in order); the other parts go to trash with the upload.
    Complete {
        project: ProjectId,
        bucket: BucketName,
        upload_id: String,
        object: ObjectMeta,
        condition: ObjectCondition,
    },
    Abort {
        project: ProjectId,
        bucket: BucketName,
        upload_id: String,
    },
}

/// What an object write did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectDone {
    /// Whether the thing written or removed existed before.
    pub existed: bool,
    /// Blobs no longer named by anything, now in the trash: delete their
    /// files, then call [`ObjectStore::trash_emptied`].
    pub trash: Vec<String>,
}

/// The object metadata contract. Every call names its project.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    async fn bucket(
        &self,
        project: &ProjectId,
        name: &BucketName,
    ) -> Result<Option<Bucket>, StoreError>;
    async fn buckets(&self, project: &ProjectId) -> Result<Vec<Bucket>, StoreError>;

    async fn object(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
    ) -> Result<Option<ObjectMeta>, StoreError>;

    /// Objects whose keys start with `prefix`, after `after`, in byte
    /// order; with a delimiter, keys that have it after the prefix are
    /// rolled up into common prefixes (each counts once towards `limit`).
    async fn objects(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ObjectListing, StoreError>;

    async fn upload(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<Option<Upload>, StoreError>;

    /// Uploads in progress, by key then id, after `(key, upload_id)`.
    async fn uploads(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Upload>, StoreError>;

    /// Parts of an upload numbered above `after`, in order.
    async fn parts(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
        after: u32,
        limit: u32,
    ) -> Result<Vec<Part>, StoreError>;

    /// Applies a write; answered once it is durable. A write made while a
    /// function's future runs under [`crate::events::with_origin`] names
    /// that function in the change events it logs.
    async fn object_write(&self, op: ObjectOp) -> Result<ObjectDone, StoreError>;

    /// Blobs in the trash (left by a crash between a commit and the file
    /// deletions).
    async fn trash(&self) -> Result<Vec<String>, StoreError>;
    /// Forgets trash entries whose files are gone.
    async fn trash_emptied(&self, blobs: &[String]) -> Result<(), StoreError>;

    /// Every blob an object or a part names, in every project: for the
    /// sweep of files a crash left unnamed (maintenance, like the trash).
    async fn named_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError>;

    /// Multipart uploads begun before `before`, in every project, oldest
    /// first: for the expiry of abandoned uploads (maintenance, like the
    /// trash).
    async fn stale_uploads(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(ProjectId, BucketName, String)>, StoreError>;
}
