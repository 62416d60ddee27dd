//! The schema and its changes, as numbered migrations. `PRAGMA
//! user_version` holds the number of the last one applied; opening a
//! database applies those after it, each in a transaction of its own, in
//! order. A database made by a newer release (a higher number) is refused.
//!
//! Migration 1 is the schema of the releases before migrations were
//! numbered (whose databases are at 0): every statement of it may find
//! its table made already, and the columns added over those releases are
//! added where they are missing, so it brings any of them up to date.
//! A new change is a new migration at the end of [`MIGRATIONS`]; a
//! migration once released is never edited. The tests run every migration
//! from an empty database and from a dump of the `wok.db` of the last
//! release before them (`tests/fixtures`).
use crate::{Error, Result, stored};
use api_types::stored::config_to_json;
use domain::{
    AsyncConfig, ByteSize, Destination, FunctionConfig, FunctionName, Isolation, Limits, ProjectId,
    RetryPolicy, ReuseLimits, TriggerSpec, now_millis,
};
use rusqlite::{Connection, params};
use serde_json::Value;
use std::time::Duration;
use store::StoreError;

/// One schema change.
struct Migration {
    /// What it changes, for the log.
    what: &'static str,
    apply: fn(&Connection) -> Result<()>,
}

/// Every migration, in order: the first is number 1.
const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "the schema of the releases before numbered migrations",
        apply: first_schema,
    },
    Migration {
        what: "function configurations stored as their deploy settings",
        apply: configs_as_deploy_settings,
    },
    Migration {
        what: "invocation records hold the CPU time of native instances",
        apply: records_cpu_time,
    },
    Migration {
        what: "log lines name the native instance that wrote them",
        apply: logs_instance,
    },
    Migration {
        what: "invocation records hold a cold native instance's start time",
        apply: records_init_time,
    },
    Migration {
        what: "app users, their sessions and refresh tokens, and token signing keys",
        apply: accounts,
    },
    Migration {
        what: "one-time email codes of app users",
        apply: email_codes,
    },
    Migration {
        what: "second factors (TOTP) of app users, their challenges, and login tickets",
        apply: factors_and_tickets,
    },
    Migration {
        what: "invocation records name how the caller proved who it is, and its app user",
        apply: records_caller,
    },
    Migration {
        what: "events name who the write that logged them was made for",
        apply: events_actor,
    },
    Migration {
        what: "app users' identities at OpenID Connect providers, and pending sign-in flows",
        apply: identities_and_flows,
    },
];

fn identities_and_flows(connection: &Connection) -> Result<()> {
    connection.execute_batch(IDENTITIES_AND_FLOWS)?;
    Ok(())
}

const IDENTITIES_AND_FLOWS: &str = r"
CREATE TABLE linked_identities (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_sign_in_at INTEGER,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX linked_identities_by_subject ON linked_identities (project, issuer, subject);
CREATE INDEX linked_identities_of_user ON linked_identities (project, user_id);
CREATE TABLE pending_flows (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (project, kind, sha256)
) WITHOUT ROWID;
CREATE INDEX pending_flows_by_expiry ON pending_flows (project, expires_at);
";

fn factors_and_tickets(connection: &Connection) -> Result<()> {
    connection.execute_batch(FACTORS_AND_TICKETS)?;
    Ok(())
}

const FACTORS_AND_TICKETS: &str = r"
CREATE TABLE mfa_factors (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    factor_type TEXT NOT NULL,
    friendly_name TEXT,
    sealed_secret BLOB NOT NULL,
    status TEXT NOT NULL,
    last_used_step INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;
CREATE INDEX mfa_factors_of_user ON mfa_factors (project, user_id);
CREATE TABLE mfa_challenges (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    factor_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;
CREATE INDEX mfa_challenges_of_factor ON mfa_challenges (project, factor_id);
CREATE INDEX mfa_challenges_of_user ON mfa_challenges (project, user_id);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (project, expires_at);
CREATE TABLE login_tickets (
    project TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (project, sha256)
) WITHOUT ROWID;
CREATE INDEX login_tickets_of_user ON login_tickets (project, user_id);
CREATE INDEX login_tickets_by_expiry ON login_tickets (project, expires_at);
";

fn email_codes(connection: &Connection) -> Result<()> {
    connection.execute_batch(EMAIL_CODES)?;
    Ok(())
}

const EMAIL_CODES: &str = r"
CREATE TABLE email_codes (
    project TEXT NOT NULL,
    flow TEXT NOT NULL,
    email TEXT NOT NULL,
    user_id TEXT,
    code_hash BLOB NOT NULL,
    link_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, flow, email)
) WITHOUT ROWID;
CREATE UNIQUE INDEX email_codes_by_link ON email_codes (project, link_hash);
CREATE INDEX email_codes_by_expiry ON email_codes (project, expires_at);
";

fn accounts(connection: &Connection) -> Result<()> {
    connection.execute_batch(ACCOUNTS)?;
    Ok(())
}

const ACCOUNTS: &str = r"
CREATE TABLE users (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    password_hash TEXT,
    email_confirmed_at INTEGER,
    anonymous INTEGER NOT NULL,
    banned_until INTEGER,
    app_metadata TEXT NOT NULL,
    user_metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_sign_in_at INTEGER,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX users_by_email ON users (project, email) WHERE email IS NOT NULL;
CREATE TABLE sessions (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    refreshed_at INTEGER NOT NULL,
    aal INTEGER NOT NULL,
    ended_at INTEGER,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;
CREATE INDEX sessions_of_user ON sessions (project, user_id);
CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE refresh_tokens (
    project TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    session_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (project, sha256)
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_of_session ON refresh_tokens (project, session_id);
CREATE TABLE signing_keys (
    project TEXT NOT NULL,
    kid TEXT NOT NULL,
    sealed_private BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    PRIMARY KEY (project, kid)
);
CREATE TABLE auth_settings (
    project TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
";

fn records_init_time(connection: &Connection) -> Result<()> {
    connection.execute_batch("ALTER TABLE invocations ADD COLUMN init_us INTEGER")?;
    Ok(())
}

fn logs_instance(connection: &Connection) -> Result<()> {
    connection.execute_batch("ALTER TABLE logs ADD COLUMN instance TEXT")?;
    Ok(())
}

fn records_caller(connection: &Connection) -> Result<()> {
    connection.execute_batch(
        "ALTER TABLE invocations ADD COLUMN auth TEXT;
         ALTER TABLE invocations ADD COLUMN user_id TEXT;",
    )?;
    Ok(())
}

fn events_actor(connection: &Connection) -> Result<()> {
    connection.execute_batch(
        "ALTER TABLE events ADD COLUMN actor TEXT;
         ALTER TABLE event_failures ADD COLUMN actor TEXT;",
    )?;
    Ok(())
}

fn records_cpu_time(connection: &Connection) -> Result<()> {
    connection.execute_batch("ALTER TABLE invocations ADD COLUMN cpu_us INTEGER")?;
    Ok(())
}

/// The number of the newest migration: what a database is at once open.
pub(crate) const CURRENT: u32 = MIGRATIONS.len() as u32;

/// Applies the migrations `connection`'s database has not had yet.
pub(crate) fn migrate(connection: &mut Connection) -> Result<()> {
    let at: u32 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if at > CURRENT {
        return Err(Error(StoreError::backend(
            format!(
                "the database is at schema {at}, made by a newer release of wok (this one knows up to {CURRENT}); run that release, or restore a backup"
            ),
            false,
        )));
    }
    for (number, migration) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        let number = number as u32 + 1;
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        (migration.apply)(&transaction)?;
        transaction.pragma_update(None, "user_version", number)?;
        transaction.commit()?;
        if at > 0 || number > 1 {
            tracing::info!("database schema migrated to {number}: {}", migration.what);
        }
    }
    Ok(())
}

fn first_schema(connection: &Connection) -> Result<()> {
    connection.execute_batch(CORE)?;
    connection.execute_batch(DOCS)?;
    // Databases from before indexes were filled in chunks.
    add_column(
        connection,
        "doc_indexes",
        "ready",
        "INTEGER NOT NULL DEFAULT 1",
    )?;
    connection.execute_batch(OBJECTS)?;
    connection.execute_batch(EVENTS)?;
    async_invocation_columns(connection)?;
    // Keys from before their S3 secrets were their own.
    add_column(connection, "api_keys", "s3_secret", "BLOB")?;
    // Functions deployed before triggers existed get their subscriptions
    // (the implicit `async` one at least); existing ones are kept.
    sync_all_subscriptions(connection)?;
    // `default` always exists, and so does every project that already has
    // functions (data directories from before projects were stored).
    connection.execute(
        "INSERT OR IGNORE INTO projects (name, created_at) VALUES ('default', ?)",
        params![now_millis()],
    )?;
    connection.execute(
        "INSERT OR IGNORE INTO projects (name, created_at)
         SELECT DISTINCT project, ? FROM functions",
        params![now_millis()],
    )?;
    Ok(())
}

/// Rewrites every version's configuration from the JSON of the releases
/// before into its deploy settings (the shape of `api_types::stored`).
fn configs_as_deploy_settings(connection: &Connection) -> Result<()> {
    let rows: Vec<(String, String, u32, String)> = connection
        .prepare("SELECT project, name, version, config FROM versions")?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = connection
        .prepare("UPDATE versions SET config = ? WHERE project = ? AND name = ? AND version = ?")?;
    for (project, name, version, config) in rows {
        let config = stored(legacy_config(&config))?;
        // Releases before had only components.
        update.execute(params![
            config_to_json(&config, domain::RuntimeKind::Wasm),
            project,
            name,
            version
        ])?;
    }
    Ok(())
}

/// Adds a column unless the table has it.
fn add_column(connection: &Connection, table: &str, column: &str, definition: &str) -> Result<()> {
    let exists: bool = connection.query_row(
        &format!("SELECT EXISTS (SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?)"),
        [column],
        |row| row.get(0),
    )?;
    if !exists {
        connection.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {definition}"
        ))?;
    }
    Ok(())
}

/// Columns added to `async_invocations` after it was first made: a digest
/// of the request (an idempotency key is bound to it) and its stored size
/// (the queue's bound counts it). Rows from before have neither.
fn async_invocation_columns(connection: &Connection) -> Result<()> {
    add_column(connection, "async_invocations", "fingerprint", "TEXT")?;
    add_column(
        connection,
        "async_invocations",
        "bytes",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    // The requests not finished yet, per function, with their sizes: what
    // the queue's bound counts.
    connection.execute_batch(
        "CREATE INDEX IF NOT EXISTS async_pending
             ON async_invocations (project, function, bytes)
             WHERE succeeded = 0 AND failed = 0",
    )?;
    Ok(())
}

/// Gives the live functions deployed before subscriptions existed (those
/// without the `async` one every deploy makes) their subscriptions.
fn sync_all_subscriptions(connection: &Connection) -> Result<()> {
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
        let project = stored(ProjectId::new(project))?;
        let function = stored(FunctionName::new(function))?;
        let config = stored(legacy_config(&config))?;
        crate::events::sync_subscriptions(connection, &project, &function, &config.all_triggers())?;
    }
    Ok(())
}

const CORE: &str = r"
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

const DOCS: &str = r"
CREATE TABLE IF NOT EXISTS doc_collections (
    cid INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    last_version INTEGER NOT NULL DEFAULT 0,
    documents INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project, name)
);
CREATE TABLE IF NOT EXISTS docs (
    cid INTEGER NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (cid, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doc_indexes (
    cid INTEGER NOT NULL,
    name TEXT NOT NULL,
    ino INTEGER NOT NULL,
    fields TEXT NOT NULL,
    ready INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (cid, name)
);
CREATE TABLE IF NOT EXISTS doc_index_entries (
    cid INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    key BLOB NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (cid, ino, key, id)
) WITHOUT ROWID;
";

const OBJECTS: &str = r"
CREATE TABLE IF NOT EXISTS buckets (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    max_object_bytes INTEGER,
    content_types TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS objects (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    checksums TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    segments TEXT NOT NULL,
    PRIMARY KEY (project, bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    key TEXT NOT NULL,
    initiated INTEGER NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    checksum_algorithm TEXT,
    PRIMARY KEY (project, bucket, upload_id)
);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (project, bucket, key, upload_id);
CREATE TABLE IF NOT EXISTS upload_parts (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    checksums TEXT NOT NULL,
    blob TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (project, bucket, upload_id, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_trash (
    blob TEXT PRIMARY KEY
);
";

const EVENTS: &str = r"
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    stream TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    key TEXT,
    time INTEGER NOT NULL,
    content_type TEXT,
    data BLOB NOT NULL,
    origin TEXT
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (project, stream, seq);
CREATE TABLE IF NOT EXISTS subscriptions (
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    PRIMARY KEY (project, function, trigger)
);
CREATE INDEX IF NOT EXISTS subscriptions_by_stream ON subscriptions (project, stream);
CREATE TABLE IF NOT EXISTS event_failures (
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    seq INTEGER NOT NULL,
    dead INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_at INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    error TEXT NOT NULL,
    stream TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    key TEXT,
    time INTEGER NOT NULL,
    content_type TEXT,
    data BLOB NOT NULL,
    origin TEXT,
    PRIMARY KEY (project, function, trigger, seq)
);
CREATE TABLE IF NOT EXISTS async_invocations (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    function TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idempotency_key TEXT,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    response_status INTEGER,
    response_headers TEXT,
    response_body BLOB,
    error TEXT,
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS async_by_idempotency_key
    ON async_invocations (project, function, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
";

/// A configuration in the JSON of the releases before migration 2.
pub(crate) fn legacy_config(text: &str) -> Result<FunctionConfig, String> {
    let value: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let number = |key: &str| {
        value[key]
            .as_u64()
            .ok_or_else(|| format!("config field {key} is missing"))
    };
    let env = serde_json::from_value::<Vec<(String, String)>>(value["env"].clone())
        .map_err(|e| e.to_string())?;
    let allowed_outbound_hosts =
        serde_json::from_value::<Vec<String>>(value["allowed_outbound_hosts"].clone())
            .map_err(|e| e.to_string())?;
    let isolation = match value["isolation"]["mode"].as_str() {
        Some("reuse") => {
            let reuse = &value["isolation"];
            Isolation::Reuse(ReuseLimits {
                max_requests: reuse["max_requests"].as_u64().unwrap_or(1) as u32,
                max_concurrent: reuse["max_concurrent"].as_u64().unwrap_or(1) as u32,
                idle_timeout: Duration::from_millis(reuse["idle_timeout_ms"].as_u64().unwrap_or(0)),
            })
        }
        _ => Isolation::Fresh,
    };
    // Versions from before triggers have none.
    let triggers = match value.get("triggers") {
        None => Vec::new(),
        Some(lines) => serde_json::from_value::<Vec<String>>(lines.clone())
            .map_err(|e| e.to_string())?
            .iter()
            .map(|line| TriggerSpec::parse(line).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    };
    // Versions from before asynchronous invocations have the defaults.
    let async_invocation = match value.get("async") {
        None => AsyncConfig::default(),
        Some(config) => {
            let destination = |key: &str| {
                config[key]
                    .as_str()
                    .map(|text| Destination::parse(text).map_err(|e| e.to_string()))
                    .transpose()
            };
            let millis = |key: &str| {
                config[key]
                    .as_u64()
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("async field {key} is missing"))
            };
            AsyncConfig {
                retry: RetryPolicy {
                    max_attempts: config["max_attempts"].as_u64().unwrap_or(3) as u32,
                    max_age: millis("max_age_ms")?,
                    delay: millis("retry_delay_ms")?,
                },
                on_success: destination("on_success")?,
                on_failure: destination("on_failure")?,
            }
        }
    };
    Ok(FunctionConfig {
        triggers,
        async_invocation,
        limits: Limits {
            memory: ByteSize(number("memory")?),
            timeout: Duration::from_millis(number("timeout_ms")?),
            max_concurrency: number("max_concurrency")? as u32,
            max_queue: number("max_queue")? as u32,
            max_request_body: ByteSize(number("max_request_body")?),
            max_response_body: ByteSize(number("max_response_body")?),
        },
        env,
        allowed_outbound_hosts,
        isolation,
        // Versions of the old format were all wasm.
        process: Default::default(),
        require_auth: Default::default(),
        data_access: Default::default(),
    })
}
