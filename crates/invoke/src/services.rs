//! Backend services a runtime offers to guests, already bound to the
//! guest's project: a guest cannot name another project's data.

/// Why a key-value call failed, as a guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestKvError {
    /// The store name is not a valid store name.
    #[error("no such store: {0}")]
    NoSuchStore(String),
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
/// data as the REST API. Calls block (SQLite): runtimes call them off their
/// async threads.
pub trait GuestKeyValue: Send + Sync + 'static {
    /// Checks that `store` can be opened.
    fn open(&self, store: &str) -> Result<(), GuestKvError>;
    fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, GuestKvError>;
    fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), GuestKvError>;
    fn delete(&self, store: &str, key: &str) -> Result<(), GuestKvError>;
    fn list(&self, store: &str, after: Option<&str>) -> Result<GuestKeyPage, GuestKvError>;
    /// Adds `delta` atomically; returns the new value.
    fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, GuestKvError>;
}
