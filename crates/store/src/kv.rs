//! The key-value contract: named stores of a project, versioned entries,
//! expiry, atomic increment and conditional writes.
use crate::StoreError;
use domain::{ProjectId, StoreName, UnixMillis};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// A live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    /// Changes on every write; never reused within the store, so a stale
    /// version cannot match again after a delete and a new write.
    pub version: u64,
    pub expires_at: Option<UnixMillis>,
}

/// When a write or delete may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Only if the live entry has this version (compare-and-swap).
    Version(u64),
    /// Only if there is no live entry.
    Absent,
}

/// The key-value store contract; every call names its project, and `now`
/// decides what has expired. A write is answered once it is durable.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync + 'static {
    async fn kv_get(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Result<Option<KvEntry>, StoreError>;

    /// Writes `value`; returns the new version, or
    /// [`StoreError::ConditionFailed`].
    #[allow(clippy::too_many_arguments)]
    async fn kv_set(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<UnixMillis>,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<u64, StoreError>;

    /// Deletes the live entry; returns whether there was one, or
    /// [`StoreError::ConditionFailed`].
    async fn kv_delete(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;

    /// Adds `by` to the entry read as a decimal integer (absent: 0) and
    /// returns the sum; [`StoreError::NotANumber`] if it is not one,
    /// [`StoreError::Overflow`] if the sum does not fit. Keeps the entry's
    /// expiry.
    async fn kv_increment(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        by: i64,
        now: UnixMillis,
    ) -> Result<i64, StoreError>;

    /// Live keys starting with `prefix` and after `after`, in byte order.
    async fn kv_list(
        &self,
        project: &ProjectId,
        store: &StoreName,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError>;

    /// The project's stores that hold entries (expired ones may count until
    /// they are deleted from disk).
    async fn kv_stores(&self, project: &ProjectId) -> Result<Vec<StoreName>, StoreError>;

    /// Deletes every entry of the store, in one write; versions go on from
    /// where they were. Returns whether there was any entry.
    async fn kv_drop_store(
        &self,
        project: &ProjectId,
        store: &StoreName,
    ) -> Result<bool, StoreError>;
}
