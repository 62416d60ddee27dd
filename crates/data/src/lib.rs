//! The rules of the project's data, in one home that REST and guests both
//! call: key-value ([`KeyValue`]: names, key and value limits, expiry,
//! paging) and documents ([`Documents`]: names, batches, queries, indexes).
//! A caller translates its own wire format in and [`DataError`] out; the
//! rules, limits and error kinds are the same whoever asks.
//!
//! Layer: services. Over the `store` contracts; knows no HTTP, no runtime
//! and no access rules (the gateway checks a caller's access first; a
//! guest's services are its own project's).

mod docs;
mod kv;

pub use docs::{BatchWrite, Documents, MAX_BATCH_WRITES};
pub use kv::{KeyPage, KeyValue, MAX_LIST};

use store::StoreError;

/// Why a data call failed: the caller's mistake by kind, or what the store
/// answered.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A store, collection or index name that is not one.
    #[error("{0}")]
    InvalidName(String),
    /// A key-value key that is empty or too long.
    #[error("{0}")]
    InvalidKey(String),
    #[error("{0}")]
    TooLarge(String),
    /// A limit, a cursor or an expiry that is not one.
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidBatch(String),
    #[error("{0}")]
    InvalidIndex(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
