//! `invoke::GuestKeyValue` over the key-value store, bound to one project.
use domain::{ProjectId, StoreName, now_millis};
use invoke::{GuestKeyPage, GuestKeyValue, GuestKvError, ServiceFuture};
use std::sync::Arc;
use store::{Condition, KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES, StoreError};

/// Keys one `list` returns.
const PAGE: u32 = 1000;

pub struct ProjectKeyValue {
    pub project: ProjectId,
    pub kv: Arc<dyn KvStore>,
}

fn store_name(store: &str) -> Result<StoreName, GuestKvError> {
    // `default` is what Spin and wasmtime's own implementation call the
    // store a guest opens without thinking about names.
    let store = if store.is_empty() { "default" } else { store };
    StoreName::new(store).map_err(|_| GuestKvError::NoSuchStore(store.to_owned()))
}

fn check_key(key: &str) -> Result<(), GuestKvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(GuestKvError::Other(format!(
            "a key is 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn other(error: StoreError) -> GuestKvError {
    match error {
        StoreError::NotANumber | StoreError::Overflow => GuestKvError::Other(error.to_string()),
        error => {
            tracing::error!("key-value store failed for a guest: {error}");
            GuestKvError::Other("the key-value store failed".to_owned())
        }
    }
}

impl GuestKeyValue for ProjectKeyValue {
    fn open(&self, store: &str) -> Result<(), GuestKvError> {
        store_name(store).map(|_| ())
    }

    fn get<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestKvError> {
        Box::pin(async move {
            let store = store_name(store)?;
            check_key(key)?;
            self.kv
                .kv_get(&self.project, &store, key, now_millis())
                .await
                .map(|entry| entry.map(|entry| entry.value))
                .map_err(other)
        })
    }

    fn set<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> ServiceFuture<'a, (), GuestKvError> {
        Box::pin(async move {
            let store = store_name(store)?;
            check_key(key)?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(GuestKvError::Other(format!(
                    "a value is at most {MAX_VALUE_BYTES} bytes"
                )));
            }
            self.kv
                .kv_set(
                    &self.project,
                    &store,
                    key,
                    value,
                    None,
                    Condition::Always,
                    now_millis(),
                )
                .await
                .map(|_| ())
                .map_err(other)
        })
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> ServiceFuture<'a, (), GuestKvError> {
        Box::pin(async move {
            let store = store_name(store)?;
            check_key(key)?;
            self.kv
                .kv_delete(&self.project, &store, key, Condition::Always, now_millis())
                .await
                .map(|_| ())
                .map_err(other)
        })
    }

    fn list<'a>(
        &'a self,
        store: &'a str,
        after: Option<&'a str>,
    ) -> ServiceFuture<'a, GuestKeyPage, GuestKvError> {
        Box::pin(async move {
            let store = store_name(store)?;
            let mut keys = self
                .kv
                .kv_list(&self.project, &store, "", after, PAGE + 1, now_millis())
                .await
                .map_err(other)?;
            let next = if keys.len() > PAGE as usize {
                keys.truncate(PAGE as usize);
                keys.last().cloned()
            } else {
                None
            };
            Ok(GuestKeyPage { keys, next })
        })
    }

    fn increment<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        delta: i64,
    ) -> ServiceFuture<'a, i64, GuestKvError> {
        Box::pin(async move {
            let store = store_name(store)?;
            check_key(key)?;
            self.kv
                .kv_increment(&self.project, &store, key, delta, now_millis())
                .await
                .map_err(other)
        })
    }
}
