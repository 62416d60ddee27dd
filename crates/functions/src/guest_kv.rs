//! `invoke::GuestKeyValue` over the key-value service, bound to one
//! project: the rules are `data::KeyValue`'s, the same as REST's.
use data::{DataError, KeyValue, MAX_LIST};
use domain::ProjectId;
use invoke::{GuestKeyPage, GuestKeyValue, GuestKvError, ServiceFuture};
use std::sync::Arc;
use store::{Condition, StoreError};

pub struct ProjectKeyValue {
    pub project: ProjectId,
    pub kv: Arc<KeyValue>,
}

/// `default` is what Spin and wasmtime's own implementation call the store
/// a guest opens without thinking about names.
fn store_name(store: &str) -> &str {
    if store.is_empty() { "default" } else { store }
}

fn guest_error(error: DataError) -> GuestKvError {
    match error {
        DataError::InvalidName(_) => GuestKvError::NoSuchStore(error.to_string()),
        DataError::Store(StoreError::NotANumber | StoreError::Overflow)
        | DataError::InvalidKey(_)
        | DataError::TooLarge(_)
        | DataError::InvalidQuery(_) => GuestKvError::Other(error.to_string()),
        error => {
            tracing::error!("key-value store failed for a guest: {error}");
            GuestKvError::Other("the key-value store failed".to_owned())
        }
    }
}

impl GuestKeyValue for ProjectKeyValue {
    fn open(&self, store: &str) -> Result<(), GuestKvError> {
        let store = store_name(store);
        KeyValue::store_name(store)
            .map(|_| ())
            .map_err(|_| GuestKvError::NoSuchStore(store.to_owned()))
    }

    fn get<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestKvError> {
        Box::pin(async move {
            self.kv
                .get(&self.project, store_name(store), key)
                .await
                .map(|entry| entry.map(|entry| entry.value))
                .map_err(guest_error)
        })
    }

    fn set<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> ServiceFuture<'a, (), GuestKvError> {
        Box::pin(async move {
            self.kv
                .set(
                    &self.project,
                    store_name(store),
                    key,
                    value,
                    None,
                    Condition::Always,
                )
                .await
                .map(|_| ())
                .map_err(guest_error)
        })
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> ServiceFuture<'a, (), GuestKvError> {
        Box::pin(async move {
            self.kv
                .delete(&self.project, store_name(store), key, Condition::Always)
                .await
                .map(|_| ())
                .map_err(guest_error)
        })
    }

    fn list<'a>(
        &'a self,
        store: &'a str,
        after: Option<&'a str>,
    ) -> ServiceFuture<'a, GuestKeyPage, GuestKvError> {
        Box::pin(async move {
            let page = self
                .kv
                .list(&self.project, store_name(store), "", after, MAX_LIST)
                .await
                .map_err(guest_error)?;
            Ok(GuestKeyPage {
                keys: page.keys,
                next: page.cursor,
            })
        })
    }

    fn increment<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        delta: i64,
    ) -> ServiceFuture<'a, i64, GuestKvError> {
        Box::pin(async move {
            self.kv
                .increment(&self.project, store_name(store), key, delta)
                .await
                .map_err(guest_error)
        })
    }
}
