//! Key-value stores: a store is named like a collection, a key is 1 to
//! [`MAX_KEY_BYTES`] bytes of UTF-8, a value at most [`MAX_VALUE_BYTES`];
//! an entry may expire, by the injected clock; listings page by key.
use crate::DataError;
use domain::{Clock, ProjectId, StoreName};
use std::sync::Arc;
use std::time::Duration;
use store::{Condition, KvEntry, KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Most keys one listing returns.
pub const MAX_LIST: u32 = 1000;

/// One page of keys; `cursor` continues after the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

pub struct KeyValue {
    kv: Arc<dyn KvStore>,
    clock: Arc<dyn Clock>,
}

impl KeyValue {
    pub fn new(kv: Arc<dyn KvStore>, clock: Arc<dyn Clock>) -> Self {
        Self { kv, clock }
    }

    pub fn store_name(name: &str) -> Result<StoreName, DataError> {
        StoreName::new(name).map_err(|error| DataError::InvalidName(error.to_string()))
    }

    /// Checks a key (what a caller may do before it reads a value).
    pub fn check_key(key: &str) -> Result<(), DataError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(DataError::InvalidKey(format!(
                "a key is 1 to {MAX_KEY_BYTES} bytes of UTF-8"
            )));
        }
        Ok(())
    }

    pub async fn get(
        &self,
        project: &ProjectId,
        store: &str,
        key: &str,
    ) -> Result<Option<KvEntry>, DataError> {
        let store = Self::store_name(store)?;
        Self::check_key(key)?;
        Ok(self
            .kv
            .kv_get(project, &store, key, self.clock.now())
            .await?)
    }

    /// Writes a value, expiring `ttl` from now if given; the new version.
    pub async fn set(
        &self,
        project: &ProjectId,
        store: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<u64, DataError> {
        let store = Self::store_name(store)?;
        Self::check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(DataError::TooLarge(format!(
                "a value is at most {}",
                domain::ByteSize(MAX_VALUE_BYTES as u64)
            )));
        }
        if ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(DataError::InvalidQuery(
                "an expiry is a positive duration".to_owned(),
            ));
        }
        let now = self.clock.now();
        let expires_at = ttl.map(|ttl| now.saturating_add(ttl.as_millis() as i64));
        Ok(self
            .kv
            .kv_set(project, &store, key, value, expires_at, condition, now)
            .await?)
    }

    /// Deletes a key; whether it was there.
    pub async fn delete(
        &self,
        project: &ProjectId,
        store: &str,
        key: &str,
        condition: Condition,
    ) -> Result<bool, DataError> {
        let store = Self::store_name(store)?;
        Self::check_key(key)?;
        Ok(self
            .kv
            .kv_delete(project, &store, key, condition, self.clock.now())
            .await?)
    }

    /// Adds `by` to a counter atomically; the sum.
    pub async fn increment(
        &self,
        project: &ProjectId,
        store: &str,
        key: &str,
        by: i64,
    ) -> Result<i64, DataError> {
        let store = Self::store_name(store)?;
        Self::check_key(key)?;
        Ok(self
            .kv
            .kv_increment(project, &store, key, by, self.clock.now())
            .await?)
    }

    /// Up to `limit` (1 to [`MAX_LIST`]) keys starting with `prefix`,
    /// after `cursor`, in byte order.
    pub async fn list(
        &self,
        project: &ProjectId,
        store: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, DataError> {
        let store = Self::store_name(store)?;
        if limit == 0 || limit > MAX_LIST {
            return Err(DataError::InvalidQuery(format!(
                "limit must be 1 to {MAX_LIST}"
            )));
        }
        // One more than asked tells whether there is a next page.
        let mut keys = self
            .kv
            .kv_list(project, &store, prefix, cursor, limit + 1, self.clock.now())
            .await?;
        let cursor = if keys.len() > limit as usize {
            keys.truncate(limit as usize);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KeyPage { keys, cursor })
    }

    /// The project's stores that hold entries.
    pub async fn stores(&self, project: &ProjectId) -> Result<Vec<StoreName>, DataError> {
        Ok(self.kv.kv_stores(project).await?)
    }

    /// Deletes every entry of a store; whether there was any.
    pub async fn drop_store(&self, project: &ProjectId, store: &str) -> Result<bool, DataError> {
        let store = Self::store_name(store)?;
        Ok(self.kv.kv_drop_store(project, &store).await?)
    }
}
