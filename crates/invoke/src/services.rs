//! Backend services a runtime offers to guests, already bound to the
//! guest's project: a guest cannot name another project's data.

/// Why a key-value call failed, as a guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestKvError {
    /// The store name is not a valid store name.
    #[error("no such store: {0}")]
    NoSuchStore(String),
    /// The caller's access does not allow it (a guest acting with its
    /// caller's access).
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("{0}")]
    Other(String),
}

/// One page of keys; `next` continues after the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKeyPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

/// Key-value stores of one project, for guests (`wasi:keyvalue`). The same
/// data and rules as the REST API.
pub trait GuestKeyValue: Send + Sync + 'static {
    /// Checks that `store` can be opened.
    fn open(&self, store: &str) -> Result<(), GuestKvError>;
    fn get<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestKvError>;
    fn set<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> ServiceFuture<'a, (), GuestKvError>;
    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> ServiceFuture<'a, (), GuestKvError>;
    fn list<'a>(
        &'a self,
        store: &'a str,
        after: Option<&'a str>,
    ) -> ServiceFuture<'a, GuestKeyPage, GuestKvError>;
    /// Adds `delta` atomically; returns the new value.
    fn increment<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        delta: i64,
    ) -> ServiceFuture<'a, i64, GuestKvError>;
}

/// Why a document call failed, as a guest sees it; each says what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestDocError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unindexed(String),
    #[error("{0}")]
    Other(String),
}

/// A document as guests see it: its data as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDocument {
    pub id: String,
    pub version: u64,
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestDocOp {
    Create,
    Set,
    Patch,
    Delete,
}

/// One write of a batch; `data` is JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDocWrite {
    pub op: GuestDocOp,
    pub collection: String,
    pub id: Option<String>,
    pub data: Option<String>,
    pub if_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDocWritten {
    pub id: String,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDocPage {
    pub documents: Vec<GuestDocument>,
    pub next_cursor: Option<String>,
}

/// The document collections of one project, for its guests: the same data
/// and rules as the REST API.
pub trait GuestDocuments: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        collection: &'a str,
        id: &'a str,
    ) -> ServiceFuture<'a, Option<GuestDocument>, GuestDocError>;
    /// Writes that commit together or not at all.
    fn write<'a>(
        &'a self,
        writes: Vec<GuestDocWrite>,
    ) -> ServiceFuture<'a, Vec<GuestDocWritten>, GuestDocError>;
    /// `query` is the JSON query of the REST API.
    fn query<'a>(
        &'a self,
        collection: &'a str,
        query: &'a str,
    ) -> ServiceFuture<'a, GuestDocPage, GuestDocError>;
    fn count<'a>(
        &'a self,
        collection: &'a str,
        query: &'a str,
    ) -> ServiceFuture<'a, u64, GuestDocError>;
}

/// Why an object call failed, as a guest sees it; each says what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestObjectError {
    #[error("{0}")]
    NoSuchBucket(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub last_modified: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestObjectPage {
    pub objects: Vec<GuestObjectInfo>,
    pub common_prefixes: Vec<String>,
    pub next_cursor: Option<String>,
}

/// A boxed future of a guest service call.
pub type ServiceFuture<'a, T, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'a>>;

/// The buckets of one project, for its guests: the same objects as REST
/// and S3. Calls are async (object storage streams through files).
pub trait GuestObjects: Send + Sync + 'static {
    /// `range`: offset and length; `None` reads the whole object.
    fn read<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestObjectError>;
    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<GuestObjectInfo>, GuestObjectError>;
    fn write<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> ServiceFuture<'a, GuestObjectInfo, GuestObjectError>;
    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, bool, GuestObjectError>;
    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> ServiceFuture<'a, GuestObjectPage, GuestObjectError>;
}

/// Why a guest's publish failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMessagingError {
    Invalid(String),
    TooLarge(String),
    Other(String),
}

/// A message a guest publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMessage {
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub key: Option<String>,
    pub subject: Option<String>,
}

/// The topics of one project, as guests see them (`wok:messaging`).
pub trait GuestMessaging: Send + Sync + 'static {
    /// Publishes in one write; the ids once durable.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<GuestMessage>,
    ) -> ServiceFuture<'a, Vec<String>, GuestMessagingError>;
}
