//! Key-value on SQLite: the `kv` table (one row per live key, `WITHOUT
//! ROWID`, keyed by project, store and key) and `kv_stores` (each store's
//! last version: versions never repeat within a store). Writes go to the
//! key-value journal (`kv_journal.rs`) through the writer, and reach the
//! table at checkpoints; reads consult the journal's overlay first.
use crate::{Result, SqliteStore, lock, stored};
use domain::{ProjectId, StoreName, UnixMillis};
use rusqlite::{Connection, OptionalExtension, params};
use store::{Condition, KvEntry, KvStore, StoreError};

/// Where a listing of keys starting with `prefix`, after `after`, starts:
/// at max(prefix, after), past it if it is `after`.
pub(crate) fn list_start<'a>(prefix: &'a str, after: Option<&'a str>) -> (&'a str, bool) {
    match after {
        Some(after) if after >= prefix => (after, true),
        _ => (prefix, false),
    }
}

/// The live entry of a key in the table (expired ones count as absent).
pub(crate) fn live_entry(
    connection: &Connection,
    project: &ProjectId,
    store: &StoreName,
    key: &str,
    now: UnixMillis,
) -> Result<Option<KvEntry>> {
    Ok(connection
        .prepare_cached(
            "SELECT value, version, expires_at FROM kv
             WHERE project = ? AND store = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )?
        .query_row(
            params![project.as_str(), store.as_str(), key, now],
            |row| {
                Ok(KvEntry {
                    value: row.get(0)?,
                    version: row.get::<_, i64>(1)? as u64,
                    expires_at: row.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Live keys of the table starting with `prefix`, after `after`, at most
/// `limit`, in byte order.
fn table_keys(
    connection: &Connection,
    project: &ProjectId,
    store: &StoreName,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
    now: UnixMillis,
) -> Result<Vec<String>> {
    // Keys from max(prefix, after) upwards, while they keep the prefix:
    // a range scan on the primary key, no offset.
    let (start, strictly_after) = list_start(prefix, after);
    let mut statement = connection.prepare_cached(
        "SELECT key FROM kv
         WHERE project = ?1 AND store = ?2
           AND (key > ?3 OR (key = ?3 AND NOT ?4))
           AND substr(key, 1, length(?5)) = ?5
           AND (?8 = '' OR key < ?8)
           AND (expires_at IS NULL OR expires_at > ?6)
         ORDER BY key LIMIT ?7",
    )?;
    // Ends the range scan past the prefix (keys compare as UTF-8 bytes;
    // no key char is above U+10FFFF).
    let end = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}\u{10FFFF}\u{10FFFF}")
    };
    let rows = statement.query_map(
        params![
            project.as_str(),
            store.as_str(),
            start,
            strictly_after,
            prefix,
            now,
            limit,
            end
        ],
        |row| row.get::<_, String>(0),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[store::async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Result<Option<KvEntry>, StoreError> {
        // Acknowledged writes not yet in the table first. Checkpoints empty
        // the overlay only after their commit, so a key missing here is in
        // the table by the time it is read there.
        if let Some(state) = self.shared.kv_overlay.get(project, store, key, now) {
            return Ok(state);
        }
        // Inline, on a connection of its own: a point read takes
        // microseconds and waits neither for record batches nor for
        // key-value commits (WAL readers see the last commit).
        Ok(live_entry(
            &lock(&self.shared.kv_reader),
            project,
            store,
            key,
            now,
        )?)
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
        let (project, store, key) = (project.clone(), store.clone(), key.to_owned());
        self.writer()
            .journal(move |connection, journal| {
                journal.set(
                    connection, &project, &store, &key, value, expires_at, condition, now,
                )
            })
            .await
    }

    async fn kv_delete(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let (project, store, key) = (project.clone(), store.clone(), key.to_owned());
        self.writer()
            .journal(move |connection, journal| {
                journal.delete(connection, &project, &store, &key, condition, now)
            })
            .await
    }

    async fn kv_increment(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        by: i64,
        now: UnixMillis,
    ) -> Result<i64, StoreError> {
        let (project, store, key) = (project.clone(), store.clone(), key.to_owned());
        self.writer()
            .journal(move |connection, journal| {
                journal.increment(connection, &project, &store, &key, by, now)
            })
            .await
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
        // Acknowledged writes not yet in the table win over it; read them
        // first (see `kv_get`). Each can hide at most one key of the table,
        // so that many more keys are read from it. Past the `limit`-th live
        // one, neither they nor the table's keys can be in the page.
        let newer =
            self.shared
                .kv_overlay
                .range(project, store, prefix, after, now, limit as usize);
        let table_limit = i64::from(limit) + newer.len() as i64;
        let (project, store, prefix, after) = (
            project.clone(),
            store.clone(),
            prefix.to_owned(),
            after.map(str::to_owned),
        );
        let keys = self
            .read(move |connection| {
                table_keys(
                    connection,
                    &project,
                    &store,
                    &prefix,
                    after.as_deref(),
                    table_limit,
                    now,
                )
            })
            .await?;
        let mut merged: std::collections::BTreeMap<String, bool> =
            keys.into_iter().map(|key| (key, true)).collect();
        merged.extend(newer);
        Ok(merged
            .into_iter()
            .filter_map(|(key, live)| live.then_some(key))
            .take(limit as usize)
            .collect())
    }

    async fn kv_stores(&self, project: &ProjectId) -> Result<Vec<StoreName>, StoreError> {
        let listed = project.clone();
        let mut stores = self
            .read(move |connection| {
                let mut statement = connection.prepare(
                    "SELECT store FROM kv_stores s WHERE project = ?
                       AND EXISTS (SELECT 1 FROM kv WHERE kv.project = s.project AND kv.store = s.store)
                     ORDER BY store",
                )?;
                let rows = statement
                    .query_map(params![listed.as_str()], |row| row.get::<_, String>(0))?;
                Ok(rows.collect::<rusqlite::Result<std::collections::BTreeSet<_>>>()?)
            })
            .await?;
        // Stores first written since the last checkpoint.
        stores.extend(self.shared.kv_overlay.stores(project));
        Ok(stores
            .into_iter()
            .map(|store| stored(StoreName::new(store)))
            .collect::<Result<_>>()?)
    }

    async fn kv_drop_store(
        &self,
        project: &ProjectId,
        store: &StoreName,
    ) -> Result<bool, StoreError> {
        let (project, store) = (project.clone(), store.clone());
        self.writer()
            .after_journal(move |connection, journal| {
                journal.drop_store(connection, &project, &store)
            })
            .await
    }
}
