//! Durable metadata: functions and their immutable versions, invocation
//! records, and guest log lines.
//!
//! Layer: engines. Knows SQLite (the embedded backend) and nothing of HTTP or
//! wasm. Every call names its project; there is no query across projects.
//! Calls block: async callers run them on `spawn_blocking`.

mod codec;
pub mod docs;
mod docs_sqlite;
pub mod events;
mod events_sqlite;
mod group_commit;
mod kv;
mod kv_journal;
pub mod objects;
mod objects_sqlite;
mod sqlite;

pub use docs::DocStore;
pub use domain::HttpWorld;
pub use events::EventStore;
pub use kv::{
    Condition, KvBatchOp, KvDone, KvEntry, KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES, PendingWrite,
};
pub use objects::ObjectStore;
pub use sqlite::SqliteStore;

/// Entry points for the fuzz targets (`fuzz/`): the parsers, reached
/// without a database. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::kv_journal::fuzz_scan as journal_scan;
    pub use crate::kv_journal::record_bytes as journal_record;

    /// A value's sort key (the bytes index entries and cursors order by).
    pub fn sort_key(value: Option<&serde_json::Value>, descending: bool) -> Vec<u8> {
        let mut key = Vec::new();
        crate::docs::encode_part(value, descending, &mut key);
        key
    }

    /// Plans `query` over these indexes and this many documents.
    pub fn plan(
        query: &crate::docs::Query,
        indexes: &[crate::docs::Index],
        documents: u64,
    ) -> Result<(), crate::StoreError> {
        crate::docs::plan(
            query,
            indexes,
            documents,
            "fuzz",
            crate::docs::Order::Matters,
        )
        .map(|_| ())
    }
}

use domain::{
    AccessRule, ApiKey, FunctionConfig, FunctionName, InvocationRecord, LogLine, Project,
    ProjectId, ResourceKind, UnixMillis, Usage, UsageFilter,
};

/// One immutable deployed version of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionVersion {
    pub project: ProjectId,
    pub function: FunctionName,
    pub version: u32,
    /// Content hash of the uploaded component (hex sha256).
    pub artifact: String,
    pub size_bytes: u64,
    pub world: HttpWorld,
    pub config: FunctionConfig,
    pub created_at: UnixMillis,
}

/// What a deploy stores besides the bytes.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub artifact: String,
    pub size_bytes: u64,
    pub world: HttpWorld,
    pub config: FunctionConfig,
}

/// A stored log line with its position, for paging and following.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLogLine {
    pub seq: i64,
    pub line: LogLine,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("function {0:?} does not exist")]
    NoSuchFunction(String),
    #[error("function {function:?} has no version {version}")]
    NoSuchVersion { function: String, version: u32 },
    #[error("project {0:?} does not exist")]
    NoSuchProject(String),
    #[error("project {0:?} exists, or existed: project names are never reused")]
    ProjectExists(String),
    #[error(
        "project {0:?} still has functions, key-value entries, documents or buckets; remove them first"
    )]
    ProjectNotEmpty(String),
    #[error("the entry is not as the condition requires")]
    ConditionFailed,
    #[error("the value is not a decimal integer")]
    NotANumber,
    #[error("the sum does not fit in a signed 64-bit integer")]
    Overflow,
    #[error("document {0:?} does not exist")]
    NoSuchDocument(String),
    #[error("document {0:?} exists already")]
    DocumentExists(String),
    #[error("{0}")]
    InvalidDocument(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    UnindexedQuery(String),
    #[error("index {0:?} exists already")]
    IndexExists(String),
    /// A write of an atomic batch failed, so none of the batch was written.
    #[error("write {write} of the batch failed, so nothing was written: {error}")]
    BatchFailed {
        /// Its position in the batch, from 0.
        write: usize,
        error: Box<StoreError>,
    },
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("bucket {0:?} exists already")]
    BucketExists(String),
    #[error("bucket {0:?} still holds objects or uploads")]
    BucketNotEmpty(String),
    #[error("upload {0:?} does not exist (completed, aborted, or never started)")]
    NoSuchUpload(String),
    #[error(
        "function {function:?} has {requests} asynchronous requests ({bytes} bytes) waiting, its limit"
    )]
    AsyncQueueFull {
        function: String,
        requests: u64,
        bytes: u64,
    },
    #[error("this Idempotency-Key was used for another request (another method, path or body)")]
    IdempotencyKeyReused,
    #[error("writing failed: {0}")]
    WriteFailed(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The disk is full: a write could not be made (nothing was written).
    #[error("the disk is full: {0}")]
    DiskFull(String),
    #[error("database error: {0}")]
    Database(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(error.to_string()),
            _ => StoreError::Database(error),
        }
    }
}

impl StoreError {
    /// This failure again, for another write of a batch that failed with
    /// it: a full disk stays one, anything else is a failed write.
    pub(crate) fn again(&self) -> StoreError {
        match self {
            StoreError::DiskFull(message) => StoreError::DiskFull(message.clone()),
            other => StoreError::WriteFailed(other.to_string()),
        }
    }

    /// The error of an I/O failure while `doing` something: a full disk
    /// is told apart.
    pub fn io(doing: &str, error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::StorageFull {
            StoreError::DiskFull(format!("{doing}: {error}"))
        } else {
            StoreError::WriteFailed(format!("{doing}: {error}"))
        }
    }
}

/// The metadata store contract. SQLite implements it now; PostgreSQL later
/// must pass the same contract tests (`tests/it`).
pub trait MetaStore: Send + Sync + 'static {
    /// Adds a new version and makes it current, in one transaction.
    fn create_version(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        new: NewVersion,
    ) -> Result<FunctionVersion, StoreError>;
    /// Makes an existing version current again.
    fn set_current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        version: u32,
    ) -> Result<FunctionVersion, StoreError>;
    fn current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Option<FunctionVersion>, StoreError>;
    fn versions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<FunctionVersion>, StoreError>;
    /// The current version of every live function of the project.
    fn list(&self, project: &ProjectId) -> Result<Vec<FunctionVersion>, StoreError>;
    /// Removes a function; its records and logs stay. Returns whether it existed.
    fn remove(&self, project: &ProjectId, function: &FunctionName) -> Result<bool, StoreError>;
    /// Projects that have any live function.
    fn projects(&self) -> Result<Vec<ProjectId>, StoreError>;

    /// Creates a project. A name in use, or used before, is refused: the
    /// records of a removed project must never show up in a new one.
    fn create_project(&self, project: &ProjectId) -> Result<Project, StoreError>;
    /// Live projects, by name. `default` always exists.
    fn list_projects(&self) -> Result<Vec<Project>, StoreError>;
    fn project(&self, project: &ProjectId) -> Result<Option<Project>, StoreError>;
    /// Removes an empty project and revokes its keys. Refused while it has
    /// live functions, key-value entries, documents or buckets. Returns
    /// whether it existed.
    fn remove_project(&self, project: &ProjectId) -> Result<bool, StoreError>;

    /// The access rule of a collection or bucket (`None`: never set, which
    /// means [`AccessRule::Private`]).
    fn access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<AccessRule>, StoreError>;
    fn set_access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        rule: AccessRule,
    ) -> Result<(), StoreError>;
    /// Every access rule set, of every project.
    fn access_rules(
        &self,
    ) -> Result<Vec<(ProjectId, ResourceKind, String, AccessRule)>, StoreError>;
    /// Whether any collection (bucket, topic) of the project lets public
    /// keys write.
    fn any_public_write(&self, project: &ProjectId, kind: ResourceKind)
    -> Result<bool, StoreError>;

    /// Stores a new key of an existing project.
    fn create_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// Replaces a live key's sealed S3 secret; whether there was one to change.
    fn set_key_s3_secret(
        &self,
        project: &ProjectId,
        id: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
    /// A key of the project, revoked or not.
    fn key(&self, project: &ProjectId, id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The project's keys, oldest first, revoked ones included.
    fn keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key. Returns whether a live key was revoked.
    fn revoke_key(&self, project: &ProjectId, id: &str) -> Result<bool, StoreError>;

    /// Appends records in one transaction.
    fn insert_records(&self, records: &[InvocationRecord]) -> Result<(), StoreError>;
    /// Records of a project, newest first.
    fn records(
        &self,
        project: &ProjectId,
        filter: &UsageFilter,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError>;
    /// Exact sums over the records the filter selects.
    fn usage(&self, project: &ProjectId, filter: &UsageFilter) -> Result<Usage, StoreError>;

    fn insert_logs(&self, lines: &[LogLine]) -> Result<(), StoreError>;
    /// Log lines of a function after position `after`, oldest first.
    fn logs(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError>;
}
