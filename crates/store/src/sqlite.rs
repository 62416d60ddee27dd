use crate::codec::{config_from_json, config_to_json};
use crate::docs::{
    CollectionInfo, DocStore, DocWrite, DocWritten, Document, Explain, Index, Query, QueryPage,
};
use crate::docs_sqlite::{self, DOCS_SCHEMA};
use crate::events::{
    AsyncAttempt, AsyncInvocation, AsyncRequest, Event, EventStore, FailedEvent, FailedFilter,
    NewEvent, Settle, Subscription,
};
use crate::events_sqlite::{self, EVENTS_SCHEMA};
use crate::group_commit::{EventHook, PendingWrite, WriteOp, Writer, Written};
use crate::kv_journal::{KvOverlay, list_start};
use crate::objects::{
    Bucket, ObjectDone, ObjectListing, ObjectMeta, ObjectOp, ObjectStore, Part, Upload,
};
use crate::objects_sqlite::{self, OBJECTS_SCHEMA};
use crate::{FunctionVersion, KvEntry, KvStore, MetaStore, NewVersion, StoreError, StoredLogLine};
use crate::{KvBatchOp, KvDone};
use domain::{
    AccessRule, ApiKey, BucketName, CollectionName, FunctionName, HttpWorld, InvocationId,
    InvocationRecord, KeyKind, LogLine, LogStream, Outcome, Project, ProjectId, ResourceKind,
    StoreName, TriggerName, UnixMillis, Usage, UsageFilter, now_millis,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL`,
/// so an acknowledged write survives a crash or power loss.
pub struct SqliteStore {
    connection: Mutex<Connection>,
    /// Key-value, document and object writes go through group commit on a
    /// connection of its own.
    writer: Writer,
    /// Key-value writes acknowledged and not yet in the table.
    kv_overlay: Arc<KvOverlay>,
    /// Key-value point reads, on a connection of their own.
    kv_reader: Mutex<Connection>,
    /// Document reads, on connections of their own: one per concurrent
    /// reader, kept for reuse.
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    /// Called after a commit that logged events.
    event_hook: EventHook,
}

/// The key-value journal of the database at `path`: `wok.db` has
/// `wok.db-kv-journal` (like SQLite's own `-wal`).
fn kv_journal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-kv-journal");
    name.into()
}

/// A connection with wok's settings: WAL, and `synchronous=FULL` so that a
/// committed transaction survives a crash or power loss.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

/// A connection for reads: the database file memory-mapped, so a page
/// that the OS has cached costs no `read` call and no copy, and a larger
/// page cache of its own. (Pages still in the WAL are read as usual.)
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = open_connection(path)?;
    connection.pragma_update(None, "mmap_size", 1i64 << 32)?;
    connection.pragma_update(None, "cache_size", -65536)?;
    Ok(connection)
}

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS functions (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    current_version INTEGER,
    last_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS versions (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    artifact TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    world TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, name, version)
);
CREATE TABLE IF NOT EXISTS invocations (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    start INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    peak_memory_bytes INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    cold INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_by_start ON invocations (project, start);
CREATE INDEX IF NOT EXISTS invocations_by_function ON invocations (project, function, start);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    invocation TEXT NOT NULL,
    time INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs (project, function, seq);
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE TABLE IF NOT EXISTS kv_stores (
    project TEXT NOT NULL,
    store TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    PRIMARY KEY (project, store)
);
CREATE TABLE IF NOT EXISTS kv (
    project TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (project, store, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS access_rules (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (project, kind, name)
);
CREATE TABLE IF NOT EXISTS api_keys (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    s3_secret BLOB,
    PRIMARY KEY (project, id)
);
";

const KEY_COLUMNS: &str =
    "project, id, kind, name, secret_sha256, created_at, revoked_at, s3_secret";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ApiKey, StoreError>> {
    let project: String = row.get(0)?;
    let kind: String = row.get(2)?;
    let secret: Vec<u8> = row.get(4)?;
    let key = (|| {
        Ok(ApiKey {
            project: ProjectId::new(project).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            id: row.get(1)?,
            kind: KeyKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("key kind {kind:?}")))?,
            name: row.get(3)?,
            secret_sha256: secret
                .try_into()
                .map_err(|_| StoreError::Corrupt("key hash is not 32 bytes".to_owned()))?,
            created_at: row.get(5)?,
            revoked_at: row.get(6)?,
            s3_secret: row.get(7)?,
        })
    })();
    Ok(key)
}

/// Reader connections kept open between reads; more are opened for bursts
/// and closed after.
const MAX_IDLE_READERS: usize = 8;

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = open_connection(path)?;
        connection.execute_batch(SCHEMA)?;
        connection.execute_batch(DOCS_SCHEMA)?;
        // Databases from before indexes were filled in chunks.
        let has_ready: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('doc_indexes') WHERE name = 'ready')",
            [],
            |row| row.get(0),
        )?;
        if !has_ready {
            connection.execute_batch(
                "ALTER TABLE doc_indexes ADD COLUMN ready INTEGER NOT NULL DEFAULT 1",
            )?;
        }
        docs_sqlite::drop_unfinished_indexes(&connection)?;
        connection.execute_batch(OBJECTS_SCHEMA)?;
        connection.execute_batch(EVENTS_SCHEMA)?;
        events_sqlite::migrate_async_invocations(&connection)?;
        // Keys from before their S3 secrets were their own.
        let has_s3_secret: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('api_keys') WHERE name = 's3_secret')",
            [],
            |row| row.get(0),
        )?;
        if !has_s3_secret {
            connection.execute_batch("ALTER TABLE api_keys ADD COLUMN s3_secret BLOB")?;
        }
        // Functions deployed before triggers existed get their subscriptions
        // (the implicit `async` one at least); existing ones are kept.
        sync_all_subscriptions(&connection)?;
        // `default` always exists, and so does every project that already
        // has functions (data directories from before projects were stored).
        connection.execute(
            "INSERT OR IGNORE INTO projects (name, created_at) VALUES ('default', ?)",
            params![now_millis()],
        )?;
        connection.execute(
            "INSERT OR IGNORE INTO projects (name, created_at)
             SELECT DISTINCT project, ? FROM functions",
            params![now_millis()],
        )?;
        let kv_overlay = Arc::new(KvOverlay::default());
        let event_hook = EventHook::default();
        Ok(Self {
            connection: Mutex::new(connection),
            writer: Writer::start(
                path,
                &kv_journal_path(path),
                kv_overlay.clone(),
                event_hook.clone(),
            )?,
            event_hook,
            kv_overlay,
            kv_reader: Mutex::new(open_reader(path)?),
            readers: Mutex::new(Vec::new()),
            path: path.to_owned(),
        })
    }

    /// Writes the key-value entries acknowledged so far from the journal
    /// into the table (the writer also does so on its own, at least once a
    /// second while there are any).
    pub fn kv_checkpoint(&self) -> Result<(), StoreError> {
        self.writer
            .write(WriteOp::KvCheckpoint, |written| match written {
                Written::Checkpointed => Some(()),
                _ => None,
            })
    }

    /// Runs `read` on a reader connection of the pool (opened on demand).
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => open_reader(&self.path)?,
        };
        let result = read(&connection);
        let mut readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // More readers than that were opened for a burst: closed again.
        if readers.len() < MAX_IDLE_READERS {
            readers.push(connection);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

const VERSION_COLUMNS: &str =
    "project, name, version, artifact, size_bytes, world, config, created_at";

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<Result<FunctionVersion, StoreError>> {
    let project: String = row.get(0)?;
    let name: String = row.get(1)?;
    let world: String = row.get(5)?;
    let config: String = row.get(6)?;
    let version = (|| {
        Ok(FunctionVersion {
            project: ProjectId::new(project).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            function: FunctionName::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            version: row.get::<_, u32>(2)?,
            artifact: row.get(3)?,
            size_bytes: row.get::<_, i64>(4)? as u64,
            world: match world.as_str() {
                "p3" => HttpWorld::P3,
                _ => HttpWorld::P2,
            },
            config: config_from_json(&config).map_err(StoreError::Corrupt)?,
            created_at: row.get(7)?,
        })
    })();
    Ok(version)
}

fn world_column(world: HttpWorld) -> &'static str {
    match world {
        HttpWorld::P2 => "p2",
        HttpWorld::P3 => "p3",
    }
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Result<InvocationRecord, StoreError>> {
    let project: String = row.get(1)?;
    let function: String = row.get(2)?;
    let outcome: String = row.get(10)?;
    let record = (|| {
        Ok(InvocationRecord {
            id: InvocationId(row.get(0)?),
            project: ProjectId::new(project).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            function: FunctionName::new(function)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            version: row.get(3)?,
            trigger: row.get(4)?,
            start: row.get(5)?,
            duration_us: row.get::<_, i64>(6)? as u64,
            billed_ms: row.get::<_, i64>(7)? as u64,
            memory_mib: row.get::<_, i64>(8)? as u64,
            peak_memory_bytes: row.get::<_, i64>(9)? as u64,
            outcome: Outcome::from_code(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome}")))?,
            cold: row.get(11)?,
            bytes_in: row.get::<_, i64>(12)? as u64,
            bytes_out: row.get::<_, i64>(13)? as u64,
        })
    })();
    Ok(record)
}

/// Gives the live functions deployed before subscriptions existed (those
/// without the `async` one every deploy makes) their subscriptions; at
/// open, usually a single query that finds none.
fn sync_all_subscriptions(connection: &Connection) -> Result<(), StoreError> {
    let live: Vec<(String, String, String)> = connection
        .prepare(
            "SELECT v.project, v.name, v.config FROM functions f JOIN versions v
               ON v.project = f.project AND v.name = f.name AND v.version = f.current_version
             WHERE NOT EXISTS (SELECT 1 FROM subscriptions s
                               WHERE s.project = f.project AND s.function = f.name
                                 AND s.trigger = ?)",
        )?
        .query_map([domain::ASYNC_TRIGGER], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (project, function, config) in live {
        let corrupt = |error: String| StoreError::Corrupt(error);
        let project = ProjectId::new(project).map_err(|e| corrupt(e.to_string()))?;
        let function = FunctionName::new(function).map_err(|e| corrupt(e.to_string()))?;
        let config = config_from_json(&config).map_err(corrupt)?;
        events_sqlite::sync_subscriptions(connection, &project, &function, &config.all_triggers())?;
    }
    Ok(())
}

/// The WHERE clause and its parameters for a usage filter.
fn filter_clause(
    project: &ProjectId,
    filter: &UsageFilter,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clause = String::from("project = ?");
    let mut values = vec![Value::Text(project.to_string())];
    if let Some(since) = filter.since {
        clause.push_str(" AND start >= ?");
        values.push(Value::Integer(since));
    }
    if let Some(until) = filter.until {
        clause.push_str(" AND start < ?");
        values.push(Value::Integer(until));
    }
    if let Some(function) = &filter.function {
        clause.push_str(" AND function = ?");
        values.push(Value::Text(function.to_string()));
    }
    if let Some(trigger) = &filter.trigger {
        clause.push_str(" AND trigger = ?");
        values.push(Value::Text(trigger.clone()));
    }
    (clause, values)
}

impl MetaStore for SqliteStore {
    fn create_version(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        new: NewVersion,
    ) -> Result<FunctionVersion, StoreError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_millis();
        let last: Option<u32> = transaction
            .query_row(
                "SELECT last_version FROM functions WHERE project = ? AND name = ?",
                params![project.as_str(), function.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        let version = last.unwrap_or(0) + 1;
        transaction.execute(
            &format!("INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            params![
                project.as_str(),
                function.as_str(),
                version,
                new.artifact,
                new.size_bytes as i64,
                world_column(new.world),
                config_to_json(&new.config),
                now
            ],
        )?;
        transaction.execute(
            "INSERT INTO functions (project, name, current_version, last_version, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?3, ?4, ?4)
             ON CONFLICT (project, name) DO UPDATE SET current_version = ?3, last_version = ?3, updated_at = ?4",
            params![project.as_str(), function.as_str(), version, now],
        )?;
        events_sqlite::sync_subscriptions(
            &transaction,
            project,
            function,
            &new.config.all_triggers(),
        )?;
        transaction.commit()?;
        Ok(FunctionVersion {
            project: project.clone(),
            function: function.clone(),
            version,
            artifact: new.artifact,
            size_bytes: new.size_bytes,
            world: new.world,
            config: new.config,
            created_at: now,
        })
    }

    fn set_current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        version: u32,
    ) -> Result<FunctionVersion, StoreError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let live: Option<Option<u32>> = transaction
            .query_row(
                "SELECT current_version FROM functions WHERE project = ? AND name = ?",
                params![project.as_str(), function.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        if !matches!(live, Some(Some(_))) {
            return Err(StoreError::NoSuchFunction(function.to_string()));
        }
        let stored = transaction
            .query_row(
                &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE project = ? AND name = ? AND version = ?"),
                params![project.as_str(), function.as_str(), version],
                version_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NoSuchVersion { function: function.to_string(), version })??;
        transaction.execute(
            "UPDATE functions SET current_version = ?, updated_at = ? WHERE project = ? AND name = ?",
            params![version, now_millis(), project.as_str(), function.as_str()],
        )?;
        events_sqlite::sync_subscriptions(
            &transaction,
            project,
            function,
            &stored.config.all_triggers(),
        )?;
        transaction.commit()?;
        Ok(stored)
    }

    fn current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        let connection = self.lock();
        let version = connection
            .query_row(
                "SELECT v.project, v.name, v.version, v.artifact, v.size_bytes, v.world, v.config, v.created_at
                 FROM functions f JOIN versions v
                   ON v.project = f.project AND v.name = f.name AND v.version = f.current_version
                 WHERE f.project = ? AND f.name = ?",
                params![project.as_str(), function.as_str()],
                version_from_row,
            )
            .optional()?;
        version.transpose()
    }

    fn versions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<FunctionVersion>, StoreError> {
        let connection = self.lock();
        let live: Option<Option<u32>> = connection
            .query_row(
                "SELECT current_version FROM functions WHERE project = ? AND name = ?",
                params![project.as_str(), function.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        if !matches!(live, Some(Some(_))) {
            return Err(StoreError::NoSuchFunction(function.to_string()));
        }
        let mut statement = connection.prepare(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE project = ? AND name = ? ORDER BY version"
        ))?;
        let rows = statement.query_map(
            params![project.as_str(), function.as_str()],
            version_from_row,
        )?;
        rows.map(|row| row?).collect()
    }

    fn list(&self, project: &ProjectId) -> Result<Vec<FunctionVersion>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT v.project, v.name, v.version, v.artifact, v.size_bytes, v.world, v.config, v.created_at
             FROM functions f JOIN versions v
               ON v.project = f.project AND v.name = f.name AND v.version = f.current_version
             WHERE f.project = ? ORDER BY f.name",
        )?;
        let rows = statement.query_map(params![project.as_str()], version_from_row)?;
        rows.map(|row| row?).collect()
    }

    fn remove(&self, project: &ProjectId, function: &FunctionName) -> Result<bool, StoreError> {
        // The row stays with no current version so that version numbers keep
        // increasing if the name is deployed again: records stay unambiguous.
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = transaction.execute(
            "UPDATE functions SET current_version = NULL, updated_at = ?
             WHERE project = ? AND name = ? AND current_version IS NOT NULL",
            params![now_millis(), project.as_str(), function.as_str()],
        )?;
        events_sqlite::sync_subscriptions(&transaction, project, function, &[])?;
        transaction.commit()?;
        Ok(changed > 0)
    }

    fn projects(&self) -> Result<Vec<ProjectId>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT DISTINCT project FROM functions WHERE current_version IS NOT NULL ORDER BY project")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|row| ProjectId::new(row?).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    fn create_project(&self, project: &ProjectId) -> Result<Project, StoreError> {
        let created_at = now_millis();
        let inserted = self.lock().execute(
            "INSERT OR IGNORE INTO projects (name, created_at) VALUES (?, ?)",
            params![project.as_str(), created_at],
        )?;
        if inserted == 0 {
            return Err(StoreError::ProjectExists(project.to_string()));
        }
        Ok(Project {
            id: project.clone(),
            created_at,
        })
    }

    fn list_projects(&self) -> Result<Vec<Project>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT name, created_at FROM projects WHERE removed_at IS NULL ORDER BY name",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        rows.map(|row| {
            let (name, created_at) = row?;
            Ok(Project {
                id: ProjectId::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                created_at,
            })
        })
        .collect()
    }

    fn project(&self, project: &ProjectId) -> Result<Option<Project>, StoreError> {
        let created_at = self
            .lock()
            .query_row(
                "SELECT created_at FROM projects WHERE name = ? AND removed_at IS NULL",
                params![project.as_str()],
                |row| row.get::<_, i64>(0),
            )
            .optional()?;
        Ok(created_at.map(|created_at| Project {
            id: project.clone(),
            created_at,
        }))
    }

    fn remove_project(&self, project: &ProjectId) -> Result<bool, StoreError> {
        // Key-value entries still in the journal count too.
        self.kv_checkpoint()?;
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Functions or data left would be unreachable for good: a removed
        // project's name is never given out again.
        let busy: bool = transaction.query_row(
            "SELECT EXISTS (SELECT 1 FROM functions WHERE project = ?1 AND current_version IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM kv WHERE project = ?1)
                 OR EXISTS (SELECT 1 FROM doc_collections WHERE project = ?1 AND documents > 0)
                 OR EXISTS (SELECT 1 FROM buckets WHERE project = ?1)",
            params![project.as_str()],
            |row| row.get(0),
        )?;
        if busy {
            return Err(StoreError::ProjectNotEmpty(project.to_string()));
        }
        let now = now_millis();
        let removed = transaction.execute(
            "UPDATE projects SET removed_at = ? WHERE name = ? AND removed_at IS NULL",
            params![now, project.as_str()],
        )?;
        transaction.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE project = ? AND revoked_at IS NULL",
            params![now, project.as_str()],
        )?;
        transaction.commit()?;
        Ok(removed > 0)
    }

    fn access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<AccessRule>, StoreError> {
        let connection = self.lock();
        let rule: Option<String> = connection
            .prepare_cached(
                "SELECT rule FROM access_rules WHERE project = ? AND kind = ? AND name = ?",
            )?
            .query_row(params![project.as_str(), kind.as_str(), name], |row| {
                row.get(0)
            })
            .optional()?;
        rule.map(|rule| {
            AccessRule::parse(&rule)
                .ok_or_else(|| StoreError::Corrupt(format!("access rule {rule:?}")))
        })
        .transpose()
    }

    fn set_access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        rule: AccessRule,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO access_rules (project, kind, name, rule) VALUES (?, ?, ?, ?)
             ON CONFLICT (project, kind, name) DO UPDATE SET rule = excluded.rule",
            params![project.as_str(), kind.as_str(), name, rule.as_str()],
        )?;
        Ok(())
    }

    fn access_rules(
        &self,
    ) -> Result<Vec<(ProjectId, ResourceKind, String, AccessRule)>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare_cached("SELECT project, kind, name, rule FROM access_rules")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut rules = Vec::new();
        for row in rows {
            let (project, kind, name, rule) = row?;
            let corrupt = || StoreError::Corrupt(format!("access rule {project}/{kind}/{name}"));
            let parsed = (
                ProjectId::new(&project).ok(),
                [
                    ResourceKind::Collection,
                    ResourceKind::Bucket,
                    ResourceKind::Topic,
                ]
                .into_iter()
                .find(|known| known.as_str() == kind),
                AccessRule::parse(&rule),
            );
            let (Some(project), Some(kind), Some(rule)) = parsed else {
                return Err(corrupt());
            };
            rules.push((project, kind, name, rule));
        }
        Ok(rules)
    }

    fn set_key_s3_secret(
        &self,
        project: &ProjectId,
        id: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE api_keys SET s3_secret = ? WHERE project = ? AND id = ? AND revoked_at IS NULL",
            params![sealed, project.as_str(), id],
        )?;
        Ok(changed == 1)
    }

    fn any_public_write(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM access_rules WHERE project = ? AND kind = ? AND rule = ?)",
        )?
        .query_row(
            params![
                project.as_str(),
                kind.as_str(),
                AccessRule::PublicReadWrite.as_str()
            ],
            |row| row.get(0),
        )?)
    }

    fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let live: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM projects WHERE name = ? AND removed_at IS NULL",
            params![key.project.as_str()],
            |row| row.get(0),
        )?;
        if live == 0 {
            return Err(StoreError::NoSuchProject(key.project.to_string()));
        }
        transaction.execute(
            "INSERT INTO api_keys (project, id, kind, name, secret_sha256, created_at, revoked_at, s3_secret)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                key.project.as_str(),
                key.id,
                key.kind.as_str(),
                key.name,
                key.secret_sha256.as_slice(),
                key.created_at,
                key.revoked_at,
                key.s3_secret
            ],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn key(&self, project: &ProjectId, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = ? AND id = ?"
        ))?;
        statement
            .query_row(params![project.as_str(), id], key_from_row)
            .optional()?
            .transpose()
    }

    fn keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = ? ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map(params![project.as_str()], key_from_row)?;
        rows.map(|row| row?).collect()
    }

    fn revoke_key(&self, project: &ProjectId, id: &str) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE api_keys SET revoked_at = ? WHERE project = ? AND id = ? AND revoked_at IS NULL",
            params![now_millis(), project.as_str(), id],
        )?;
        Ok(changed > 0)
    }

    fn insert_records(&self, records: &[InvocationRecord]) -> Result<(), StoreError> {
        // Through the writer: one write lock for every writer of the
        // database, so a large batch of records never makes another
        // write wait on SQLite's busy handler.
        self.writer
            .write(WriteOp::Records(records.to_vec()), expect_done)
    }

    fn records(
        &self,
        project: &ProjectId,
        filter: &UsageFilter,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let (clause, mut values) = filter_clause(project, filter);
        values.push(rusqlite::types::Value::Integer(limit as i64));
        let connection = self.lock();
        let mut statement = connection.prepare(&format!(
            "SELECT id, project, function, version, trigger, start, duration_us, billed_ms, memory_mib,
                    peak_memory_bytes, outcome, cold, bytes_in, bytes_out
             FROM invocations WHERE {clause} ORDER BY start DESC, id DESC LIMIT ?"
        ))?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), record_from_row)?;
        rows.map(|row| row?).collect()
    }

    fn usage(&self, project: &ProjectId, filter: &UsageFilter) -> Result<Usage, StoreError> {
        let (clause, values) = filter_clause(project, filter);
        let errors = Outcome::ALL
            .iter()
            .filter(|outcome| outcome.is_error())
            .map(|outcome| format!("'{}'", outcome.code()))
            .collect::<Vec<_>>()
            .join(", ");
        let connection = self.lock();
        // Integer sums in SQLite are exact (it raises an error on overflow).
        let usage = connection.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(outcome IN ({errors})), 0), COALESCE(SUM(billed_ms), 0),
                        COALESCE(SUM(billed_ms * memory_mib), 0)
                 FROM invocations WHERE {clause}"
            ),
            rusqlite::params_from_iter(values),
            |row| {
                Ok(Usage {
                    requests: row.get::<_, i64>(0)? as u64,
                    errors: row.get::<_, i64>(1)? as u64,
                    billed_ms: row.get::<_, i64>(2)? as u64,
                    mib_ms: row.get::<_, i64>(3)? as u64,
                })
            },
        )?;
        Ok(usage)
    }

    fn insert_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        self.writer
            .write(WriteOp::Logs(lines.to_vec()), expect_done)
    }

    fn logs(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT seq, invocation, time, stream, line FROM logs
             WHERE project = ? AND function = ? AND seq > ? ORDER BY seq LIMIT ?",
        )?;
        let rows = statement.query_map(
            params![project.as_str(), function.as_str(), after, limit],
            |row| {
                let stream: String = row.get(3)?;
                Ok(StoredLogLine {
                    seq: row.get(0)?,
                    line: LogLine {
                        project: project.clone(),
                        function: function.clone(),
                        invocation: InvocationId(row.get(1)?),
                        time: row.get(2)?,
                        stream: if stream == "stderr" {
                            LogStream::Stderr
                        } else {
                            LogStream::Stdout
                        },
                        line: row.get(4)?,
                    },
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The live entry of a key in the table (expired ones count as absent).
pub(crate) fn live_entry(
    connection: &Connection,
    project: &ProjectId,
    store: &StoreName,
    key: &str,
    now: UnixMillis,
) -> Result<Option<KvEntry>, StoreError> {
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

impl KvBatchOp {
    /// The time the write happens at.
    pub fn now(&self) -> UnixMillis {
        match self {
            KvBatchOp::Set { now, .. }
            | KvBatchOp::Delete { now, .. }
            | KvBatchOp::Increment { now, .. } => *now,
        }
    }
}

impl KvStore for SqliteStore {
    fn kv_get(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Result<Option<KvEntry>, StoreError> {
        // Acknowledged writes not yet in the table first. Checkpoints empty
        // the overlay only after their commit, so a key missing here is in
        // the table by the time it is read there.
        if let Some(state) = self.kv_overlay.get(project, store, key, now) {
            return Ok(state);
        }
        // A connection of its own: reads wait neither for record batches
        // nor for key-value commits (WAL readers see the last commit).
        let connection = self
            .kv_reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live_entry(&connection, project, store, key, now)
    }

    fn kv_list(
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
        let (start, strictly_after) = list_start(prefix, after);
        // Acknowledged writes not yet in the table win over it; read them
        // first (see `kv_get`). Each can hide at most one key of the table,
        // so that many more keys are read from it. Past the `limit`-th live
        // one, neither they nor the table's keys can be in the page.
        let newer = self
            .kv_overlay
            .range(project, store, prefix, after, now, limit as usize);
        let connection = self.lock();
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
                i64::from(limit) + newer.len() as i64,
                end
            ],
            |row| row.get::<_, String>(0),
        )?;
        let mut keys = std::collections::BTreeMap::new();
        for key in rows {
            keys.insert(key?, true);
        }
        keys.extend(newer);
        Ok(keys
            .into_iter()
            .filter_map(|(key, live)| live.then_some(key))
            .take(limit as usize)
            .collect())
    }

    fn kv_write(&self, write: KvBatchOp) -> PendingWrite {
        self.writer.write_async(WriteOp::Kv(write), expect_kv)
    }

    fn kv_write_blocking(&self, write: KvBatchOp) -> Result<KvDone, StoreError> {
        self.writer.write(WriteOp::Kv(write), expect_kv)
    }

    fn kv_drop_store(&self, project: &ProjectId, store: &StoreName) -> Result<bool, StoreError> {
        let op = WriteOp::KvDropStore {
            project: project.clone(),
            store: store.clone(),
        };
        self.writer.write(op, expect_index)
    }

    fn kv_stores(&self, project: &ProjectId) -> Result<Vec<StoreName>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT store FROM kv_stores s WHERE project = ?
                   AND EXISTS (SELECT 1 FROM kv WHERE kv.project = s.project AND kv.store = s.store)
                 ORDER BY store",
        )?;
        let rows = statement.query_map(params![project.as_str()], |row| row.get::<_, String>(0))?;
        let mut stores = rows.collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        // Stores first written since the last checkpoint.
        stores.extend(self.kv_overlay.stores(project));
        stores
            .into_iter()
            .map(|store| StoreName::new(store).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }
}

fn expect_kv(written: Written) -> Option<KvDone> {
    match written {
        Written::Kv(done) => Some(done),
        _ => None,
    }
}

fn expect_docs(written: Written) -> Option<Vec<DocWritten>> {
    match written {
        Written::Docs(done) => Some(done),
        _ => None,
    }
}

fn expect_index(written: Written) -> Option<bool> {
    match written {
        Written::Index(done) => Some(done),
        _ => None,
    }
}

impl DocStore for SqliteStore {
    fn doc_get(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        self.with_reader(|connection| {
            docs_sqlite::get_document(connection, project, collection, id)
        })
    }

    fn doc_write_as(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        writes: Vec<DocWrite>,
    ) -> PendingWrite<Vec<DocWritten>> {
        let op = WriteOp::Docs {
            project: project.clone(),
            origin: origin.cloned(),
            writes,
        };
        self.writer.write_async(op, expect_docs)
    }

    fn doc_write_blocking_as(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        writes: Vec<DocWrite>,
    ) -> Result<Vec<DocWritten>, StoreError> {
        let op = WriteOp::Docs {
            project: project.clone(),
            origin: origin.cloned(),
            writes,
        };
        self.writer.write(op, expect_docs)
    }

    fn doc_query(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<QueryPage, StoreError> {
        self.with_reader(|connection| {
            docs_sqlite::query(
                connection,
                project,
                collection,
                query,
                crate::docs::MAX_PAGE_BYTES,
            )
        })
    }

    fn doc_snapshot(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<(Vec<Document>, i64), StoreError> {
        let mut query = query.clone();
        query.limit = crate::docs::MAX_QUERY_LIMIT;
        query.cursor = None;
        self.with_reader(|connection| {
            // One read transaction: the position and the documents agree.
            connection.execute_batch("BEGIN")?;
            let read = (|| {
                let position: i64 = connection.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM events",
                    [],
                    |row| row.get(0),
                )?;
                let page = docs_sqlite::query(
                    connection,
                    project,
                    collection,
                    &query,
                    crate::docs::MAX_SNAPSHOT_BYTES,
                )?;
                if page.next_cursor.is_some() {
                    return Err(StoreError::InvalidQuery(format!(
                        "a live query may match at most {} documents and {} MiB of them; narrow its filter",
                        crate::docs::MAX_QUERY_LIMIT,
                        crate::docs::MAX_SNAPSHOT_BYTES >> 20
                    )));
                }
                Ok((page.documents, position))
            })();
            connection.execute_batch("COMMIT")?;
            read
        })
    }

    fn doc_count(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<u64, StoreError> {
        self.with_reader(|connection| docs_sqlite::count(connection, project, collection, query))
    }

    fn doc_explain(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<Explain, StoreError> {
        self.with_reader(|connection| docs_sqlite::explain(connection, project, collection, query))
    }

    fn doc_create_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        index: Index,
    ) -> Result<(), StoreError> {
        /// Documents indexed per chunk: other writes wait for one chunk at
        /// most, not for the whole collection.
        const FILL_CHUNK: u32 = 500;
        let op = WriteOp::CreateIndex {
            project: project.clone(),
            collection: collection.clone(),
            index,
        };
        let (cid, ino) = self.writer.write(op, |written| match written {
            Written::IndexStarted(cid, ino) => Some((cid, ino)),
            _ => None,
        })?;
        let mut after = String::new();
        loop {
            let op = WriteOp::FillIndex {
                cid,
                ino,
                after: after.clone(),
                limit: FILL_CHUNK,
            };
            match self.writer.write(op, |written| match written {
                Written::Filled(next) => Some(next),
                _ => None,
            })? {
                Some(next) => after = next,
                None => break,
            }
        }
        self.writer
            .write(WriteOp::FinishIndex { cid, ino }, expect_index)
            .map(|_| ())
    }

    fn doc_drop_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        name: &str,
    ) -> Result<bool, StoreError> {
        let op = WriteOp::DropIndex {
            project: project.clone(),
            collection: collection.clone(),
            name: name.to_owned(),
        };
        self.writer.write(op, expect_index)
    }

    fn doc_drop_collection(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
    ) -> Result<bool, StoreError> {
        let op = WriteOp::DropCollection {
            project: project.clone(),
            collection: collection.clone(),
        };
        self.writer.write(op, expect_index)
    }

    fn doc_collections(&self, project: &ProjectId) -> Result<Vec<CollectionInfo>, StoreError> {
        self.with_reader(|connection| docs_sqlite::collections(connection, project))
    }
}

fn expect_objects(written: Written) -> Option<ObjectDone> {
    match written {
        Written::Objects(done) => Some(done),
        _ => None,
    }
}

impl ObjectStore for SqliteStore {
    fn bucket(&self, project: &ProjectId, name: &BucketName) -> Result<Option<Bucket>, StoreError> {
        self.with_reader(|connection| objects_sqlite::bucket(connection, project, name))
    }

    fn buckets(&self, project: &ProjectId) -> Result<Vec<Bucket>, StoreError> {
        self.with_reader(|connection| objects_sqlite::buckets(connection, project))
    }

    fn object(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        self.with_reader(|connection| objects_sqlite::object(connection, project, bucket, key))
    }

    fn objects(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ObjectListing, StoreError> {
        self.with_reader(|connection| {
            objects_sqlite::objects(connection, project, bucket, prefix, delimiter, after, limit)
        })
    }

    fn upload(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<Option<Upload>, StoreError> {
        self.with_reader(|connection| {
            objects_sqlite::upload(connection, project, bucket, upload_id)
        })
    }

    fn uploads(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Upload>, StoreError> {
        self.with_reader(|connection| {
            objects_sqlite::uploads(connection, project, bucket, prefix, after, limit)
        })
    }

    fn parts(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
        after: u32,
        limit: u32,
    ) -> Result<Vec<Part>, StoreError> {
        self.with_reader(|connection| {
            objects_sqlite::parts(connection, project, bucket, upload_id, after, limit)
        })
    }

    fn object_write(&self, op: ObjectOp) -> PendingWrite<ObjectDone> {
        let origin = crate::events::current_origin();
        self.writer
            .write_async(WriteOp::Objects(op, origin), expect_objects)
    }

    fn trash(&self) -> Result<Vec<String>, StoreError> {
        objects_sqlite::trash_list(&self.lock())
    }

    fn trash_emptied(&self, blobs: &[String]) -> Result<(), StoreError> {
        objects_sqlite::trash_emptied(&self.lock(), blobs)
    }

    fn named_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.with_reader(objects_sqlite::named_blobs)
    }

    fn stale_uploads(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(ProjectId, BucketName, String)>, StoreError> {
        self.with_reader(|connection| objects_sqlite::stale_uploads(connection, before, limit))
    }
}

fn expect_done(written: Written) -> Option<()> {
    match written {
        Written::Done => Some(()),
        _ => None,
    }
}

fn expect_count(written: Written) -> Option<u64> {
    match written {
        Written::Count(count) => Some(count),
        _ => None,
    }
}

impl EventStore for SqliteStore {
    fn publish(&self, project: &ProjectId, events: Vec<NewEvent>) -> PendingWrite<Vec<Event>> {
        let op = WriteOp::Publish {
            project: project.clone(),
            events,
        };
        self.writer.write_async(op, |written| match written {
            Written::Events(events) => Some(events),
            _ => None,
        })
    }

    fn events(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.with_reader(|connection| {
            events_sqlite::events(connection, project, stream, after, limit)
        })
    }

    fn backlog(&self, project: &ProjectId, stream: &str, after: i64) -> Result<u64, StoreError> {
        self.with_reader(|connection| events_sqlite::backlog(connection, project, stream, after))
    }

    fn position_at(
        &self,
        project: &ProjectId,
        stream: &str,
        time: UnixMillis,
    ) -> Result<i64, StoreError> {
        self.with_reader(|connection| events_sqlite::position_at(connection, project, stream, time))
    }

    fn subscriptions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.with_reader(|connection| events_sqlite::subscriptions(connection, project, function))
    }

    fn advance(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
        failed: Vec<FailedEvent>,
    ) -> PendingWrite<()> {
        let op = WriteOp::Advance {
            project: project.clone(),
            function: function.clone(),
            trigger: trigger.clone(),
            cursor,
            failed,
        };
        self.writer.write_async(op, expect_done)
    }

    fn schedule(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        event: NewEvent,
        at: UnixMillis,
    ) -> PendingWrite<Event> {
        let op = WriteOp::Schedule {
            project: project.clone(),
            function: function.clone(),
            trigger: trigger.clone(),
            event,
            at,
        };
        self.writer.write_async(op, |written| match written {
            Written::Events(mut events) => events.pop(),
            _ => None,
        })
    }

    fn set_cursor(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
    ) -> PendingWrite<bool> {
        let op = WriteOp::SetCursor {
            project: project.clone(),
            function: function.clone(),
            trigger: trigger.clone(),
            cursor,
        };
        self.writer.write_async(op, expect_index)
    }

    fn failures_due(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        self.with_reader(|connection| {
            events_sqlite::failures_due(connection, project, function, trigger, now, limit)
        })
    }

    fn retry_state(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
    ) -> Result<(Option<UnixMillis>, Vec<String>), StoreError> {
        self.with_reader(|connection| {
            events_sqlite::retry_state(connection, project, function, trigger)
        })
    }

    fn settle(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        seq: i64,
        settle: Settle,
    ) -> PendingWrite<()> {
        let op = WriteOp::Settle {
            project: project.clone(),
            function: function.clone(),
            trigger: trigger.clone(),
            seq,
            settle,
        };
        self.writer.write_async(op, expect_done)
    }

    fn dead_letters(
        &self,
        project: &ProjectId,
        filter: &FailedFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        self.with_reader(|connection| {
            events_sqlite::dead_letters(connection, project, filter, after, limit)
        })
    }

    fn failure_counts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>, StoreError> {
        self.with_reader(|connection| events_sqlite::failure_counts(connection, project))
    }

    fn redrive(&self, project: &ProjectId, filter: FailedFilter) -> PendingWrite<u64> {
        let op = WriteOp::Redrive {
            project: project.clone(),
            filter,
        };
        self.writer.write_async(op, expect_count)
    }

    fn purge_dead(&self, project: &ProjectId, filter: FailedFilter) -> PendingWrite<u64> {
        let op = WriteOp::PurgeDead {
            project: project.clone(),
            filter,
        };
        self.writer.write_async(op, expect_count)
    }

    fn prune_events(&self, project: &ProjectId, before: UnixMillis) -> PendingWrite<u64> {
        let op = WriteOp::PruneEvents {
            project: project.clone(),
            before,
        };
        self.writer.write_async(op, expect_count)
    }

    fn enqueue_async(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        request: AsyncRequest,
    ) -> PendingWrite<(AsyncInvocation, bool)> {
        let op = WriteOp::EnqueueAsync {
            project: project.clone(),
            function: function.clone(),
            request,
        };
        self.writer.write_async(op, |written| match written {
            Written::Queued(invocation, queued) => Some((invocation, queued)),
            _ => None,
        })
    }

    fn record_async(
        &self,
        project: &ProjectId,
        id: &str,
        attempt: AsyncAttempt,
    ) -> PendingWrite<()> {
        let op = WriteOp::RecordAsync {
            project: project.clone(),
            id: id.to_owned(),
            attempt,
        };
        self.writer.write_async(op, expect_done)
    }

    fn async_invocation(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<Option<AsyncInvocation>, StoreError> {
        self.with_reader(|connection| events_sqlite::async_invocation(connection, project, id))
    }

    fn watch_stream(&self, project: &ProjectId, stream: &str) -> PendingWrite<()> {
        let op = WriteOp::WatchStream {
            project: project.clone(),
            stream: stream.to_owned(),
        };
        self.writer.write_async(op, expect_done)
    }

    fn on_events(&self, hook: crate::events::Hook) {
        *self
            .event_hook
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hook);
    }
}

/// Appends invocation records (a repeated id is ignored), in the writer's
/// transaction.
pub(crate) fn apply_insert_records(
    connection: &Connection,
    records: &[InvocationRecord],
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT OR IGNORE INTO invocations (id, project, function, version, trigger, start, duration_us,
           billed_ms, memory_mib, peak_memory_bytes, outcome, cold, bytes_in, bytes_out)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for record in records {
        statement.execute(params![
            record.id.0,
            record.project.as_str(),
            record.function.as_str(),
            record.version,
            record.trigger,
            record.start,
            record.duration_us as i64,
            record.billed_ms as i64,
            record.memory_mib as i64,
            record.peak_memory_bytes as i64,
            record.outcome.code(),
            record.cold,
            record.bytes_in as i64,
            record.bytes_out as i64,
        ])?;
    }
    Ok(())
}

/// Appends guest log lines, in the writer's transaction.
pub(crate) fn apply_insert_logs(
    connection: &Connection,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO logs (project, function, invocation, time, stream, line) VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    for line in lines {
        statement.execute(params![
            line.project.as_str(),
            line.function.as_str(),
            line.invocation.0,
            line.time,
            line.stream.as_str(),
            line.line,
        ])?;
    }
    Ok(())
}
