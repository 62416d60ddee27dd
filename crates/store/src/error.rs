//! The one error every store answers with: the user's mistakes by kind,
//! and a backend's own failures as a source it carries.

/// Why a store call failed. The kinds a caller can act on are variants of
/// their own; a backend's failure (SQLite, PostgreSQL, the disk) is
/// [`StoreError::Backend`], with its error as the source.
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
        "project {0:?} still has functions, key-value entries, documents, buckets or app users; remove them first"
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
    /// An app user's email that another user of the project has.
    #[error("the email is taken by another user")]
    EmailTaken,
    /// A write made under a lease that its holder no longer has.
    #[error("the lease {0:?} is held by another node now")]
    LeaseLost(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The disk is full: a write could not be made (nothing was written).
    #[error("the disk is full: {0}")]
    DiskFull(String),
    /// The backend failed. `retryable`: the same call may succeed later
    /// (a busy database, a lost connection), as opposed to a failure that
    /// will repeat.
    #[error("the store failed: {source}")]
    Backend {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        retryable: bool,
    },
}

impl StoreError {
    /// A backend failure.
    pub fn backend(
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
        retryable: bool,
    ) -> Self {
        StoreError::Backend {
            source: source.into(),
            retryable,
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }

    /// Whether this is the backend's failure (or a full disk) rather than
    /// an answer about the data: such a failure takes a whole batch of
    /// writes down with it.
    pub fn is_backend(&self) -> bool {
        matches!(self, StoreError::Backend { .. } | StoreError::DiskFull(_))
    }

    /// This failure again, for another write that shared its fate (the
    /// same transaction, the same sync): a full disk stays one, anything
    /// else is a backend failure that says what happened.
    pub fn again(&self) -> StoreError {
        match self {
            StoreError::DiskFull(message) => StoreError::DiskFull(message.clone()),
            other => StoreError::backend(other.to_string(), other.is_retryable()),
        }
    }

    /// The error of an I/O failure while `doing` something: a full disk
    /// is told apart.
    pub fn io(doing: &str, error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::StorageFull {
            StoreError::DiskFull(format!("{doing}: {error}"))
        } else {
            StoreError::backend(format!("{doing}: {error}"), false)
        }
    }
}
