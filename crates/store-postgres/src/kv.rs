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

/// Rows past their expiry deleted by one purge statement.
const PURGE_BATCH: i64 = 10_000;

/// The live entry of a key (an expired one counts as absent).
async fn live_entry(
    client: &impl GenericClient,
    project: &ProjectId,
    store: &StoreName,
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
        .query_opt(&statement, &[&project.as_str(), &store.as_str(), &key])
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

/// An entry with no row yet: inserts it, or `None` if a row appeared
/// meanwhile (another writer's, now committed).
async fn insert_new(
    client: &impl GenericClient,
    project: &ProjectId,
    store: &StoreName,
    key: &str,
    value: &[u8],
    expires_at: Option<UnixMillis>,
) -> Result<Option<u64>> {
    let statement = client
        .prepare_cached(
            "INSERT INTO kv (project, store, key, value, version, expires_at)
             VALUES ($1, $2, $3, $4, nextval('kv_versions'), $5)
             ON CONFLICT (project, store, key) DO NOTHING RETURNING version",
        )
        .await?;
    Ok(client
        .query_opt(
            &statement,
            &[
                &project.as_str(),
                &store.as_str(),
                &key,
                &value,
                &expires_at,
            ],
        )
        .await?
        .map(|row| row.get::<_, i64>(0) as u64))
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
                &[&now, &PURGE_BATCH],
            )
            .await
            .db()
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
        live_entry(&client, project, store, key, now).await.db()
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
        let client = self.client().await?;
        let row = match condition {
            Condition::Always => {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO kv (project, store, key, value, version, expires_at)
                         VALUES ($1, $2, $3, $4, nextval('kv_versions'), $5)
                         ON CONFLICT (project, store, key) DO UPDATE
                           SET value = excluded.value, version = excluded.version,
                               expires_at = excluded.expires_at
                         RETURNING version",
                    )
                    .await
                    .db()?;
                client
                    .query_opt(
                        &statement,
                        &[
                            &project.as_str(),
                            &store.as_str(),
                            &key,
                            &value,
                            &expires_at,
                        ],
                    )
                    .await
            }
            Condition::Absent => {
                // A row that is there but expired counts as absent.
                let statement = client
                    .prepare_cached(
                        "INSERT INTO kv (project, store, key, value, version, expires_at)
                         VALUES ($1, $2, $3, $4, nextval('kv_versions'), $5)
                         ON CONFLICT (project, store, key) DO UPDATE
                           SET value = excluded.value, version = excluded.version,
                               expires_at = excluded.expires_at
                           WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $6
                         RETURNING version",
                    )
                    .await
                    .db()?;
                client
                    .query_opt(
                        &statement,
                        &[
                            &project.as_str(),
                            &store.as_str(),
                            &key,
                            &value,
                            &expires_at,
                            &now,
                        ],
                    )
                    .await
            }
            Condition::Version(version) => {
                let statement = client
                    .prepare_cached(
                        "UPDATE kv SET value = $4, version = nextval('kv_versions'), expires_at = $5
                         WHERE project = $1 AND store = $2 AND key = $3 AND version = $6
                           AND (expires_at IS NULL OR expires_at > $7)
                         RETURNING version",
                    )
                    .await
                    .db()?;
                client
                    .query_opt(
                        &statement,
                        &[
                            &project.as_str(),
                            &store.as_str(),
                            &key,
                            &value,
                            &expires_at,
                            &(version as i64),
                            &now,
                        ],
                    )
                    .await
            }
        };
        match row.db()? {
            Some(row) => Ok(row.get::<_, i64>(0) as u64),
            None => Err(StoreError::ConditionFailed),
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
        let client = self.client().await?;
        let key_params = [
            &project.as_str() as &(dyn tokio_postgres::types::ToSql + Sync),
            &store.as_str(),
            &key,
        ];
        match condition {
            Condition::Always => {
                let statement = client
                    .prepare_cached(
                        "DELETE FROM kv WHERE project = $1 AND store = $2 AND key = $3
                         RETURNING expires_at IS NULL OR expires_at > $4",
                    )
                    .await
                    .db()?;
                let row = client
                    .query_opt(
                        &statement,
                        &[key_params[0], key_params[1], key_params[2], &now],
                    )
                    .await
                    .db()?;
                Ok(row.is_some_and(|row| row.get::<_, bool>(0)))
            }
            Condition::Version(version) => {
                let statement = client
                    .prepare_cached(
                        "DELETE FROM kv WHERE project = $1 AND store = $2 AND key = $3
                           AND version = $4 AND (expires_at IS NULL OR expires_at > $5)",
                    )
                    .await
                    .db()?;
                let deleted = client
                    .execute(
                        &statement,
                        &[
                            key_params[0],
                            key_params[1],
                            key_params[2],
                            &(version as i64),
                            &now,
                        ],
                    )
                    .await
                    .db()?;
                if deleted == 0 {
                    return Err(StoreError::ConditionFailed);
                }
                Ok(true)
            }
            Condition::Absent => {
                // Holds only when there is nothing live to delete: an
                // expired row may go.
                if live_entry(&client, project, store, key, now)
                    .await
                    .db()?
                    .is_some()
                {
                    return Err(StoreError::ConditionFailed);
                }
                Ok(false)
            }
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
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        loop {
            // The row, live or expired, locked until the commit.
            let row = transaction
                .query_opt(
                    "SELECT value, expires_at FROM kv
                     WHERE project = $1 AND store = $2 AND key = $3 FOR UPDATE",
                    &[&project.as_str(), &store.as_str(), &key],
                )
                .await
                .db()?;
            let live = row.as_ref().and_then(|row| {
                let expires_at: Option<UnixMillis> = row.get(1);
                expires_at
                    .is_none_or(|at| at > now)
                    .then(|| (row.get::<_, Vec<u8>>(0), expires_at))
            });
            let (current, expires_at) = match &live {
                None => (0, None),
                Some((value, expires_at)) => (
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|text| text.trim().parse::<i64>().ok())
                        .ok_or(StoreError::NotANumber)?,
                    *expires_at,
                ),
            };
            let sum = current.checked_add(by).ok_or(StoreError::Overflow)?;
            let value = sum.to_string().into_bytes();
            if row.is_some() {
                transaction
                    .execute(
                        "UPDATE kv SET value = $4, version = nextval('kv_versions'), expires_at = $5
                         WHERE project = $1 AND store = $2 AND key = $3",
                        &[&project.as_str(), &store.as_str(), &key, &value, &expires_at],
                    )
                    .await
                    .db()?;
            } else if insert_new(&transaction, project, store, key, &value, expires_at)
                .await
                .db()?
                .is_none()
            {
                // Another writer made the row since it was read: read it
                // again (this statement saw its commit).
                continue;
            }
            transaction.commit().await.db()?;
            return Ok(sum);
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
        let rows = client
            .query(
                "SELECT DISTINCT store COLLATE \"C\" FROM kv WHERE project = $1 ORDER BY 1",
                &[&project.as_str()],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| stored(StoreName::new(row.get::<_, String>(0))))
            .collect::<Result<_>>()
            .db()
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
