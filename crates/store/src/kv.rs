//! The key-value contract: named stores of a project, versioned entries,
//! expiry, atomic increment and conditional writes.
use crate::StoreError;
pub use crate::group_commit::{KvDone, PendingWrite};
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

/// One key-value write, for [`KvStore::kv_write`].
#[derive(Debug, Clone)]
pub enum KvBatchOp {
    Set {
        project: ProjectId,
        store: StoreName,
        key: String,
        value: Vec<u8>,
        expires_at: Option<UnixMillis>,
        condition: Condition,
        now: UnixMillis,
    },
    Delete {
        project: ProjectId,
        store: StoreName,
        key: String,
        condition: Condition,
        now: UnixMillis,
    },
    Increment {
        project: ProjectId,
        store: StoreName,
        key: String,
        by: i64,
        now: UnixMillis,
    },
}

fn unexpected(done: KvDone) -> StoreError {
    StoreError::WriteFailed(format!(
        "the writer answered {done:?} to another kind of write"
    ))
}

/// The key-value store contract; every call names its project, and `now`
/// decides what has expired.
pub trait KvStore: Send + Sync + 'static {
    fn kv_get(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Result<Option<KvEntry>, StoreError>;

    /// Writes `value`; returns the new version, or
    /// [`StoreError::ConditionFailed`].
    #[allow(clippy::too_many_arguments)]
    fn kv_set(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        value: &[u8],
        expires_at: Option<UnixMillis>,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<u64, StoreError> {
        let write = KvBatchOp::Set {
            project: project.clone(),
            store: store.clone(),
            key: key.to_owned(),
            value: value.to_vec(),
            expires_at,
            condition,
            now,
        };
        match self.kv_write_blocking(write)? {
            KvDone::Version(version) => Ok(version),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes the live entry; returns whether there was one, or
    /// [`StoreError::ConditionFailed`].
    fn kv_delete(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let write = KvBatchOp::Delete {
            project: project.clone(),
            store: store.clone(),
            key: key.to_owned(),
            condition,
            now,
        };
        match self.kv_write_blocking(write)? {
            KvDone::Deleted(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    /// Live keys starting with `prefix` and after `after`, in byte order.
    fn kv_list(
        &self,
        project: &ProjectId,
        store: &StoreName,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError>;

    /// Adds `by` to the entry read as a decimal integer (absent: 0) and
    /// returns the sum; [`StoreError::NotANumber`] if it is not one. Keeps
    /// the entry's expiry.
    fn kv_increment(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        by: i64,
        now: UnixMillis,
    ) -> Result<i64, StoreError> {
        let write = KvBatchOp::Increment {
            project: project.clone(),
            store: store.clone(),
            key: key.to_owned(),
            by,
            now,
        };
        match self.kv_write_blocking(write)? {
            KvDone::Sum(sum) => Ok(sum),
            other => Err(unexpected(other)),
        }
    }

    /// Queues a write; the returned future resolves once it is durable,
    /// with the same answer as the matching call above. For async callers:
    /// no thread waits meanwhile.
    fn kv_write(&self, write: KvBatchOp) -> PendingWrite;

    /// Applies a write and returns once it is durable. The three calls
    /// above are this, for one kind of write each.
    fn kv_write_blocking(&self, write: KvBatchOp) -> Result<KvDone, StoreError>;

    /// The project's stores that hold entries (expired ones may count until
    /// they are deleted from disk).
    fn kv_stores(&self, project: &ProjectId) -> Result<Vec<StoreName>, StoreError>;

    /// Deletes every entry of the store, in one write; versions go on from
    /// where they were. Returns whether there was any entry.
    fn kv_drop_store(&self, project: &ProjectId, store: &StoreName) -> Result<bool, StoreError>;
}
