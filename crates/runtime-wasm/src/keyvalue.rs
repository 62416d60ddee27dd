//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) for guests, over the
//! function's project's key-value stores (`invoke::GuestKeyValue`), the same
//! data the REST API serves, with its rules.
use crate::host::HostState;
use invoke::{GuestKeyValue, GuestKvError};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// An open store, as the guest holds it.
pub struct Bucket {
    name: String,
    /// `list-keys` cursors handed out: cursor `n` continues after `cursors[n]`.
    cursors: Vec<String>,
}

fn guest_error(error: GuestKvError) -> store::Error {
    match error {
        GuestKvError::NoSuchStore(_) => store::Error::NoSuchStore,
        GuestKvError::AccessDenied(_) => store::Error::AccessDenied,
        GuestKvError::Other(message) => store::Error::Other(message),
    }
}

/// The project's key-value stores, held apart from the state so that a
/// call can borrow them while the state is borrowed too.
fn stores(state: &HostState) -> Arc<dyn GuestKeyValue> {
    state.key_value.clone()
}

impl HostState {
    fn bucket_name(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

impl store::Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        if let Err(error) = self.key_value.open(&identifier) {
            return Ok(Err(guest_error(error)));
        }
        let bucket = self.table.push(Bucket {
            name: identifier,
            cursors: Vec::new(),
        })?;
        Ok(Ok(bucket))
    }
}

impl store::HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(stores(self).get(&name, &key).await.map_err(guest_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(stores(self)
            .set(&name, &key, value)
            .await
            .map_err(guest_error))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(stores(self).delete(&name, &key).await.map_err(guest_error))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(stores(self)
            .get(&name, &key)
            .await
            .map(|value| value.is_some())
            .map_err(guest_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let open = self.table.get(&bucket)?;
        let name = open.name.clone();
        let after = match cursor {
            None => None,
            Some(cursor) => match open.cursors.get(cursor as usize) {
                Some(after) => Some(after.clone()),
                None => {
                    return Ok(Err(store::Error::Other(format!(
                        "unknown cursor {cursor}: cursors come from list-keys on this bucket"
                    ))));
                }
            },
        };
        let page = match stores(self).list(&name, after.as_deref()).await {
            Ok(page) => page,
            Err(error) => return Ok(Err(guest_error(error))),
        };
        let cursor = match page.next {
            Some(next) => {
                let cursors = &mut self.table.get_mut(&bucket)?.cursors;
                cursors.push(next);
                Some(cursors.len() as u64 - 1)
            }
            None => None,
        };
        Ok(Ok(store::KeyResponse {
            keys: page.keys,
            cursor,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(store::Error::Other(
                "the delta does not fit in a signed 64-bit integer".to_owned(),
            )));
        };
        let sum = stores(self)
            .increment(&name, &key, delta)
            .await
            .map_err(guest_error);
        Ok(sum.and_then(|sum| {
            u64::try_from(sum)
                .map_err(|_| store::Error::Other(format!("the value {sum} is negative, not a u64")))
        }))
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let kv = stores(self);
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match kv.get(&name, &key).await {
                Ok(value) => values.push(value.map(|value| (key, value))),
                Err(error) => return Ok(Err(guest_error(error))),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let kv = stores(self);
        // Not atomic, as wasi:keyvalue/batch allows: a failure leaves the
        // pairs before it written.
        for (key, value) in key_values {
            if let Err(error) = kv.set(&name, &key, value).await {
                return Ok(Err(guest_error(error)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let kv = stores(self);
        for key in keys {
            if let Err(error) = kv.delete(&name, &key).await {
                return Ok(Err(guest_error(error)));
            }
        }
        Ok(Ok(()))
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    store::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    atomics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    batch::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}
