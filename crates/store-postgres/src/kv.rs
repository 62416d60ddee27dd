//! Key-value on PostgreSQL: the `kv` table, one row per key, keys in
//! byte order (`COLLATE "C"`). Every write is one statement that checks
//! its condition itself (an `UPDATE … WHERE version = …`, an `INSERT … ON
//! CONFLICT … WHERE expired`), so a write takes one round trip and its
//! row lock only for that statement; an increment reads and writes in one
//! transaction with the row locked. Versions come from one global
//! sequence: never reused, and no counter row for writers to queue on.
//!
//! Expired entries read as absent; rows past their expiry are deleted
//! later, in bounded batches, by [`PgStore::purge_expired`].
use crate::{Db, PgStore, Result, stored};
use deadpool_postgres::GenericClient;
use domain::{ProjectId, StoreName, UnixMillis};
use store::{Condition, KvEntry, KvStore, StoreError};
use tokio_postgres::types::ToSql;

mod writer;
pub(crate) use writer::Writer;

/// Rows past their expiry deleted by one purge statement.
pub const PURGE_BATCH: u64 = 10_000;

/// The live entry of a key (an expired one counts as absent).
async fn live_entry(
    client: &impl GenericClient,
    project: &str,
    store: &str,
    key: &str,
    now: UnixMillis,
) -> Result<Option<KvEntry>> {
    let statement = client
        .prepare_cached(
            "SELECT value, version, expires_at FROM kv
             WHERE project = $1 AND store = $2 AND key = $3",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&project, &store, &key])
        .await?;
    Ok(row.and_then(|row| {
        let expires_at: Option<UnixMillis> = row.get(2);
        expires_at.is_none_or(|at| at > now).then(|| KvEntry {
            value: row.get(0),
            version: row.get::<_, i64>(1) as u64,
            expires_at,
        })
    }))
}

/// A write of one entry, as the node's writer (`kv/writer.rs`) runs it.
#[derive(Debug)]
pub(crate) enum Write {
    Set {
        value: Vec<u8>,
        expires_at: Option<UnixMillis>,
        condition: Condition,
    },
    Delete {
        condition: Condition,
    },
    Increment {
        by: i64,
    },
}

/// What a [`Write`] answers.
#[derive(Debug)]
pub(crate) enum Written {
    /// A set: the entry's new version.
    Version(u64),
    /// A delete: whether a live entry was there.
    Deleted(bool),
    /// An increment: the new sum.
    Sum(i64),
}

impl Written {
    /// The answer of another kind of write than the one asked for.
    fn unexpected(self) -> StoreError {
        StoreError::Corrupt(format!("the key-value writer answered {self:?}"))
    }
}

/// The entry a write is for. Ordered as the table's primary key, so that
/// writers that take rows in this order never wait on each other in a
/// cycle.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub project: ProjectId,
    pub store: StoreName,
    pub key: String,
}

/// Runs `write` on `key` inside the caller's transaction. The outer error
/// is the database's (it spoils the transaction); the inner one is the
/// contract's answer (a condition that does not hold, a value that is not
/// a number), after which the transaction goes on.
pub(crate) async fn apply(
    client: &impl GenericClient,
    key: &Key,
    write: &Write,
    now: UnixMillis,
) -> Result<Result<Written, StoreError>> {
    let Key {
        project,
        store,
        key,
    } = key;
    let (project, store) = (project.as_str(), store.as_str());
    let row = match write {
        Write::Set {
            value,
            expires_at,
            condition: condition @ (Condition::Always | Condition::Absent),
        } => {
            // If absent: a row that is there but expired counts as absent.
            let statement = client
                .prepare_cached(
                    "INSERT INTO kv (project, store, key, value, version, expires_at)
                     VALUES ($1, $2, $3, $4, nextval('kv_versions'), $5)
                     ON CONFLICT (project, store, key) DO UPDATE
                       SET value = excluded.value, version = excluded.version,
                           expires_at = excluded.expires_at
                       WHERE NOT $7 OR (kv.expires_at IS NOT NULL AND kv.expires_at <= $6)
                     RETURNING version",
                )
                .await?;
            let if_absent = *condition == Condition::Absent;
            let params: [&(dyn ToSql + Sync); 7] =
                [&project, &store, key, value, expires_at, &now, &if_absent];
            client.query_opt(&statement, &params).await?
        }
        Write::Set {
            value,
            expires_at,
            condition: Condition::Version(version),
        } => {
            let statement = client
                .prepare_cached(
                    "UPDATE kv SET value = $4, version = nextval('kv_versions'), expires_at = $5
                     WHERE project = $1 AND store = $2 AND key = $3 AND version = $7
                       AND (expires_at IS NULL OR expires_at > $6)
                     RETURNING version",
                )
                .await?;
            let params: [&(dyn ToSql + Sync); 7] = [
                &project,
                &store,
                key,
                value,
                expires_at,
                &now,
                &(*version as i64),
            ];
            client.query_opt(&statement, &params).await?
        }
        Write::Delete { condition } => {
            return delete(client, project, store, key, *condition, now).await;
        }
        Write::Increment { by } => return increment(client, project, store, key, *by, now).await,
    };
    Ok(match row {
        Some(row) => Ok(Written::Version(row.get::<_, i64>(0) as u64)),
        None => Err(StoreError::ConditionFailed),
    })
}

/// A delete under `condition`, inside the caller's transaction.
async fn delete(
    client: &impl GenericClient,
    project: &str,
    store: &str,
    key: &str,
    condition: Condition,
    now: UnixMillis,
) -> Result<Result<Written, StoreError>> {
    Ok(match condition {
        Condition::Always => {
            let statement = client
                .prepare_cached(
                    "DELETE FROM kv WHERE project = $1 AND store = $2 AND key = $3
                     RETURNING expires_at IS NULL OR expires_at > $4",
                )
                .await?;
            let row = client
                .query_opt(&statement, &[&project, &store, &key, &now])
                .await?;
            Ok(Written::Deleted(
                row.is_some_and(|row| row.get::<_, bool>(0)),
            ))
        }
        Condition::Version(version) => {
            let statement = client
                .prepare_cached(
                    "DELETE FROM kv WHERE project = $1 AND store = $2 AND key = $3
                       AND version = $4 AND (expires_at IS NULL OR expires_at > $5)",
                )
                .await?;
            let deleted = client
                .execute(
                    &statement,
                    &[&project, &store, &key, &(version as i64), &now],
                )
                .await?;
            if deleted == 0 {
                Err(StoreError::ConditionFailed)
            } else {
                Ok(Written::Deleted(true))
            }
        }
        // Holds only when there is nothing live to delete: an expired
        // row may go.
        Condition::Absent => match live_entry(client, project, store, key, now).await? {
            Some(_) => Err(StoreError::ConditionFailed),
            None => Ok(Written::Deleted(false)),
        },
    })
}

/// An increment inside the caller's transaction. Its first statement
/// makes or locks the row (until the commit), so that a batch takes every
/// row in its key order, as its other writes do.
async fn increment(
    client: &impl GenericClient,
    project: &str,
    store: &str,
    key: &str,
    by: i64,
    now: UnixMillis,
) -> Result<Result<Written, StoreError>> {
    // `ON CONFLICT DO UPDATE` locks the row it finds even when its
    // `WHERE` holds for no row.
    let statement = client
        .prepare_cached(
            "INSERT INTO kv (project, store, key, value, version, expires_at)
             VALUES ($1, $2, $3, $4, nextval('kv_versions'), NULL)
             ON CONFLICT (project, store, key) DO UPDATE SET value = kv.value WHERE false
             RETURNING version",
        )
        .await?;
    let first = by.to_string().into_bytes();
    if client
        .query_opt(&statement, &[&project, &store, &key, &first])
        .await?
        .is_some()
    {
        return Ok(Ok(Written::Sum(by)));
    }
    let statement = client
        .prepare_cached(
            "SELECT value, expires_at FROM kv WHERE project = $1 AND store = $2 AND key = $3",
        )
        .await?;
    let row = client
        .query_one(&statement, &[&project, &store, &key])
        .await?;
    let expires_at: Option<UnixMillis> = row.get(1);
    // A row that expired counts as absent: the sum starts at zero and
    // lasts.
    let (current, expires_at) = if expires_at.is_none_or(|at| at > now) {
        let value: &[u8] = row.get(0);
        let Some(current) = std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
        else {
            return Ok(Err(StoreError::NotANumber));
        };
        (current, expires_at)
    } else {
        (0, None)
    };
    let Some(sum) = current.checked_add(by) else {
        return Ok(Err(StoreError::Overflow));
    };
    let statement = client
        .prepare_cached(
            "UPDATE kv SET value = $4, version = nextval('kv_versions'), expires_at = $5
             WHERE project = $1 AND store = $2 AND key = $3",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &project,
                &store,
                &key,
                &sum.to_string().into_bytes(),
                &expires_at,
            ],
        )
        .await?;
    Ok(Ok(Written::Sum(sum)))
}

impl PgStore {
    /// Deletes up to [`PURGE_BATCH`] entries that expired before `now`;
    /// how many. (Expired entries read as absent whether or not they are
    /// purged; this gives their room back.)
    pub async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM kv WHERE ctid = ANY (ARRAY (
                     SELECT ctid FROM kv WHERE expires_at <= $1 LIMIT $2))",
                &[&now, &(PURGE_BATCH as i64)],
            )
            .await
            .db()
    }

    /// Runs `write` through this node's key-value writer, which commits
    /// the writes that wait together in one transaction.
    async fn kv_write(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        write: Write,
        now: UnixMillis,
    ) -> Result<Written, StoreError> {
        let key = Key {
            project: project.clone(),
            store: store.clone(),
            key: key.to_owned(),
        };
        self.shared.kv_writer.write(key, write, now).await
    }

    /// How many transactions this node's key-value writer has committed
    /// (for tests and metrics: fewer than the writes when they come
    /// together).
    pub fn kv_transactions(&self) -> u64 {
        self.shared.kv_writer.transactions()
    }
}

#[store::async_trait]
impl KvStore for PgStore {
    async fn kv_get(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Result<Option<KvEntry>, StoreError> {
        let client = self.client().await?;
        live_entry(&client, project.as_str(), store.as_str(), key, now)
            .await
            .db()
    }

    async fn kv_set(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<UnixMillis>,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<u64, StoreError> {
        let write = Write::Set {
            value,
            expires_at,
            condition,
        };
        match self.kv_write(project, store, key, write, now).await? {
            Written::Version(version) => Ok(version),
            other => Err(other.unexpected()),
        }
    }

    async fn kv_delete(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let write = Write::Delete { condition };
        match self.kv_write(project, store, key, write, now).await? {
            Written::Deleted(deleted) => Ok(deleted),
            other => Err(other.unexpected()),
        }
    }

    async fn kv_increment(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        by: i64,
        now: UnixMillis,
    ) -> Result<i64, StoreError> {
        let write = Write::Increment { by };
        match self.kv_write(project, store, key, write, now).await? {
            Written::Sum(sum) => Ok(sum),
            other => Err(other.unexpected()),
        }
    }

    async fn kv_list(
        &self,
        project: &ProjectId,
        store: &StoreName,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        // Keys from max(prefix, after) upwards, while they keep the prefix:
        // a range scan on the primary key, no offset.
        let (start, strictly_after) = match after {
            Some(after) if after >= prefix => (after, true),
            _ => (prefix, false),
        };
        // Ends the range scan past the prefix (keys compare as UTF-8
        // bytes; no key char is above U+10FFFF).
        let end = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}\u{10FFFF}\u{10FFFF}")
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT key FROM kv
                 WHERE project = $1 AND store = $2
                   AND (key > $3 OR (key = $3 AND NOT $4))
                   AND starts_with(key, $5)
                   AND ($8 = '' OR key < $8)
                   AND (expires_at IS NULL OR expires_at > $6)
                 ORDER BY key LIMIT $7",
            )
            .await
            .db()?;
        let rows = client
            .query(
                &statement,
                &[
                    &project.as_str(),
                    &store.as_str(),
                    &start,
                    &strictly_after,
                    &prefix,
                    &now,
                    &i64::from(limit),
                    &end,
                ],
            )
            .await
            .db()?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn kv_stores(&self, project: &ProjectId) -> Result<Vec<StoreName>, StoreError> {
        let client = self.client().await?;
        // A skip scan of the primary key: one index probe per store, not
        // a read of every entry of the project.
        let statement = client
            .prepare_cached(
                "WITH RECURSIVE stores (store) AS (
                   (SELECT store FROM kv WHERE project = $1 ORDER BY store LIMIT 1)
                   UNION ALL
                   SELECT (SELECT kv.store FROM kv
                           WHERE kv.project = $1 AND kv.store > stores.store
                           ORDER BY kv.store LIMIT 1)
                   FROM stores WHERE stores.store IS NOT NULL)
                 SELECT store FROM stores WHERE store IS NOT NULL",
            )
            .await
            .db()?;
        let rows = client.query(&statement, &[&project.as_str()]).await.db()?;
        let mut stores = rows
            .iter()
            .map(|row| stored(StoreName::new(row.get::<_, String>(0))))
            .collect::<Result<Vec<_>>>()
            .db()?;
        // In byte order, whatever the database's collation.
        stores.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(stores)
    }

    async fn kv_drop_store(
        &self,
        project: &ProjectId,
        store: &StoreName,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM kv WHERE project = $1 AND store = $2",
                &[&project.as_str(), &store.as_str()],
            )
            .await
            .db()?;
        Ok(deleted > 0)
    }
}
