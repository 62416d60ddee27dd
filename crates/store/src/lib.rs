//! What every durable backend promises: async traits split by area
//! (functions and their versions; projects, keys and access rules;
//! invocation records and logs; key-value; documents; object metadata; the
//! event log; app users, sessions and signing keys), the error they answer with, and the document query language
//! they all share (parse, plan, filter, sort keys).
//!
//! Layer: contracts. Names no backend: SQLite lives in `store-sqlite`, and
//! a backend's own failures travel inside [`StoreError::Backend`]. Every
//! call names its project; there is no query across projects except the
//! maintenance of object storage, which deals in blob names and upload ids.
//!
//! The contract suite (`testsuite`, behind the feature of that name) holds
//! the assertions every backend passes: a backend crate runs them all with
//! one `store::contract_tests!` line.

pub mod accounts;
pub mod docs;
mod error;
pub mod events;
mod functions;
mod kv;
pub mod objects;
mod projects;
mod records;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use accounts::AccountStore;
pub use docs::DocStore;
pub use error::StoreError;
pub use events::EventStore;
pub use functions::{FunctionStore, FunctionVersion, NewVersion};
pub use kv::{Condition, KvEntry, KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use objects::ObjectStore;
pub use projects::ProjectStore;
pub use records::{RecordStore, StoredLogLine};

/// Re-exported so that backends implement the traits with the same macro.
pub use async_trait::async_trait;

use std::sync::Arc;

/// One backend's stores, each area behind its trait: what the server wires
/// into the services.
#[derive(Clone)]
pub struct Stores {
    pub functions: Arc<dyn FunctionStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub records: Arc<dyn RecordStore>,
    pub kv: Arc<dyn KvStore>,
    pub docs: Arc<dyn DocStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub events: Arc<dyn EventStore>,
    pub accounts: Arc<dyn AccountStore>,
}

impl Stores {
    /// Every area from one backend that implements them all.
    pub fn of<B>(backend: Arc<B>) -> Self
    where
        B: FunctionStore
            + ProjectStore
            + RecordStore
            + KvStore
            + DocStore
            + ObjectStore
            + EventStore
            + AccountStore,
    {
        Self {
            functions: backend.clone(),
            projects: backend.clone(),
            records: backend.clone(),
            kv: backend.clone(),
            docs: backend.clone(),
            objects: backend.clone(),
            events: backend.clone(),
            accounts: backend,
        }
    }
}

/// Entry points for the fuzz targets (`fuzz/`): the query language's
/// parsers, reached without a database. Not an API.
#[doc(hidden)]
pub mod fuzzing {
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
