//! The schema and its changes, as numbered migrations. `wok_schema` holds
//! the number of the last one applied; a node that connects applies those
//! after it, each in a transaction of its own, in order, holding an
//! advisory lock so that nodes starting together migrate once. A database
//! migrated by a newer release (a higher number) is refused.
//!
//! A new change is a new migration at the end of [`MIGRATIONS`]; a
//! migration once released is never edited.
use crate::{Error, Result};
use store::StoreError;

/// Every migration, in order: the first is number 1. Each is SQL run as
/// one batch.
const MIGRATIONS: &[(&str, &str)] = &[
    ("the first schema", FIRST),
    (
        "app users, sessions, refresh tokens and signing keys",
        ACCOUNTS,
    ),
    ("one-time email codes of app users", EMAIL_CODES),
    (
        "second factors (TOTP) of app users, their challenges, and login tickets",
        FACTORS_AND_TICKETS,
    ),
    (
        "invocation records name how the caller proved who it is, and its app user",
        "ALTER TABLE invocations ADD COLUMN auth TEXT, ADD COLUMN user_id TEXT;",
    ),
    (
        "events name who the write that logged them was made for",
        "ALTER TABLE events ADD COLUMN actor TEXT; ALTER TABLE event_failures ADD COLUMN actor TEXT;",
    ),
    (
        "app users' identities at OpenID Connect providers, and pending sign-in flows",
        IDENTITIES_AND_FLOWS,
    ),
];

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
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_sign_in_at BIGINT,
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX linked_identities_by_subject ON linked_identities (project, issuer, subject);
CREATE INDEX linked_identities_of_user ON linked_identities (project, user_id);
CREATE TABLE pending_flows (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 BYTEA NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (project, kind, sha256)
);
CREATE INDEX pending_flows_by_expiry ON pending_flows (project, expires_at);
";

const FACTORS_AND_TICKETS: &str = r"
CREATE TABLE mfa_factors (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    factor_type TEXT NOT NULL,
    friendly_name TEXT,
    sealed_secret BYTEA NOT NULL,
    status TEXT NOT NULL,
    last_used_step BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, id)
);
CREATE INDEX mfa_factors_of_user ON mfa_factors (project, user_id);
CREATE TABLE mfa_challenges (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    factor_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project, id)
);
CREATE INDEX mfa_challenges_of_factor ON mfa_challenges (project, factor_id);
CREATE INDEX mfa_challenges_of_user ON mfa_challenges (project, user_id);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (project, expires_at);
CREATE TABLE login_tickets (
    project TEXT NOT NULL,
    sha256 BYTEA NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (project, sha256)
);
CREATE INDEX login_tickets_of_user ON login_tickets (project, user_id);
CREATE INDEX login_tickets_by_expiry ON login_tickets (project, expires_at);
";

const EMAIL_CODES: &str = r"
CREATE TABLE email_codes (
    project TEXT NOT NULL,
    flow TEXT NOT NULL,
    email TEXT NOT NULL,
    user_id TEXT,
    code_hash BYTEA NOT NULL,
    link_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project, flow, email)
);
CREATE UNIQUE INDEX email_codes_by_link ON email_codes (project, link_hash);
CREATE INDEX email_codes_by_expiry ON email_codes (project, expires_at);
";

/// The number of the newest migration.
pub(crate) const CURRENT: u32 = MIGRATIONS.len() as u32;

/// The advisory lock migrations hold ("wok" and 1).
const MIGRATION_LOCK: i64 = 0x776f_6b00_0000_0001;

/// Applies the migrations the database has not had yet.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn apply(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS wok_schema (version BIGINT NOT NULL)")
        .await?;
    let at: i64 = client
        .query_opt("SELECT version FROM wok_schema", &[])
        .await?
        .map_or(0, |row| row.get(0));
    if at > i64::from(CURRENT) {
        return Err(Error(StoreError::backend(
            format!(
                "the database is at schema {at}, made by a newer release of wok (this one knows up to {CURRENT}); run that release, or restore a backup"
            ),
            false,
        )));
    }
    for (number, (what, sql)) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        let number = number as i64 + 1;
        let transaction = client.transaction().await?;
        transaction.batch_execute(sql).await?;
        transaction.execute("DELETE FROM wok_schema", &[]).await?;
        transaction
            .execute("INSERT INTO wok_schema (version) VALUES ($1)", &[&number])
            .await?;
        transaction.commit().await?;
        tracing::info!("database schema migrated to {number}: {what}");
    }
    Ok(())
}

const FIRST: &str = r#"
-- Bumped in the transaction of every change that nodes keep in memory
-- (projects, keys, access rules, live versions): nodes poll it.
CREATE TABLE control_changes (version BIGINT NOT NULL);
INSERT INTO control_changes (version) VALUES (0);
-- What every node must share: the admin credential, the key that seals
-- S3 secrets and signs function credentials, the metrics token.
CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- A schedule's times already logged: one tick per trigger and time,
-- whichever node logs it.
CREATE TABLE ticks (
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (project, function, trigger, at)
);
-- One holder at a time per trigger (leases.rs).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE functions (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    current_version BIGINT,
    last_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE versions (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    artifact TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    world TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, name, version)
);
CREATE TABLE invocations (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    version BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    start BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    billed_ms BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    peak_memory_bytes BIGINT NOT NULL,
    cpu_us BIGINT,
    init_us BIGINT,
    outcome TEXT NOT NULL,
    cold BOOLEAN NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL
);
CREATE INDEX invocations_by_start ON invocations (project, start);
CREATE INDEX invocations_by_function ON invocations (project, function, start);
CREATE TABLE logs (
    seq BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    invocation TEXT NOT NULL,
    instance TEXT,
    time BIGINT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX logs_by_function ON logs (project, function, seq);
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);
INSERT INTO projects (name, created_at)
    VALUES ('default', (extract(epoch FROM now()) * 1000)::BIGINT);
CREATE TABLE access_rules (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (project, kind, name)
);
CREATE TABLE api_keys (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_sha256 BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    s3_secret BYTEA,
    PRIMARY KEY (project, id)
);

-- Key-value: versions from one global sequence (never reused, no hot row).
CREATE SEQUENCE kv_versions;
CREATE TABLE kv (
    project TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    version BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (project, store, key)
);
CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;

-- Documents: versions from one global sequence; index entries keyed by
-- the byte encoding of `store::docs` (bytea compares as bytes).
CREATE SEQUENCE doc_versions;
CREATE TABLE doc_collections (
    cid BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (project, name)
);
CREATE TABLE docs (
    cid BIGINT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (cid, id)
);
CREATE TABLE doc_indexes (
    cid BIGINT NOT NULL,
    name TEXT NOT NULL,
    ino BIGINT NOT NULL,
    fields TEXT NOT NULL,
    ready BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (cid, name)
);
CREATE TABLE doc_index_entries (
    cid BIGINT NOT NULL,
    ino BIGINT NOT NULL,
    key BYTEA NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (cid, ino, key, id)
);

-- Object metadata (the bytes are blobs).
CREATE TABLE buckets (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    max_object_bytes BIGINT,
    content_types TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE objects (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    checksums TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    segments TEXT NOT NULL,
    PRIMARY KEY (project, bucket, key)
);
CREATE TABLE uploads (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    upload_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    initiated BIGINT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    checksum_algorithm TEXT,
    PRIMARY KEY (project, bucket, upload_id)
);
CREATE INDEX uploads_by_key ON uploads (project, bucket, key, upload_id);
CREATE INDEX uploads_by_age ON uploads (initiated);
CREATE TABLE upload_parts (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    checksums TEXT NOT NULL,
    blob TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    PRIMARY KEY (project, bucket, upload_id, number)
);
CREATE TABLE blob_trash (
    blob TEXT PRIMARY KEY
);

-- The event log: positions from one sequence, drawn per stream in commit
-- order (outbox.rs).
CREATE SEQUENCE event_positions;
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    project TEXT NOT NULL,
    stream TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    key TEXT,
    time BIGINT NOT NULL,
    content_type TEXT,
    data BYTEA NOT NULL,
    origin TEXT
);
CREATE INDEX events_by_stream ON events (project, stream, seq);
CREATE INDEX events_by_time ON events (project, stream, time);
CREATE TABLE subscriptions (
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    PRIMARY KEY (project, function, trigger)
);
CREATE INDEX subscriptions_by_stream ON subscriptions (project, stream);
CREATE TABLE event_failures (
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    seq BIGINT NOT NULL,
    dead BOOLEAN NOT NULL,
    attempts BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    first_failed_at BIGINT NOT NULL,
    error TEXT NOT NULL,
    stream TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    key TEXT,
    time BIGINT NOT NULL,
    content_type TEXT,
    data BYTEA NOT NULL,
    origin TEXT,
    PRIMARY KEY (project, function, trigger, seq)
);
CREATE TABLE async_invocations (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    function TEXT NOT NULL,
    seq BIGINT NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT,
    bytes BIGINT NOT NULL DEFAULT 0,
    succeeded BOOLEAN NOT NULL DEFAULT FALSE,
    failed BOOLEAN NOT NULL DEFAULT FALSE,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    response_status BIGINT,
    response_headers TEXT,
    response_body BYTEA,
    error TEXT,
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX async_by_idempotency_key
    ON async_invocations (project, function, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX async_pending
    ON async_invocations (project, function, bytes)
    WHERE NOT succeeded AND NOT failed;
"#;

/// Migration 2: the accounts of projects' app users (accounts.rs).
const ACCOUNTS: &str = r#"
-- An email is one user's per project (the index's name tells the refusal
-- apart: accounts.rs).
CREATE TABLE users (
    project TEXT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    email TEXT,
    phone TEXT,
    password_hash TEXT,
    email_confirmed_at BIGINT,
    anonymous BOOLEAN NOT NULL,
    banned_until BIGINT,
    app_metadata TEXT NOT NULL,
    user_metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_sign_in_at BIGINT,
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX users_by_email ON users (project, email) WHERE email IS NOT NULL;
-- Ended sessions are kept, with their end, so that every node refuses
-- their access tokens until those expire.
CREATE TABLE sessions (
    project TEXT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    refreshed_at BIGINT NOT NULL,
    aal BIGINT NOT NULL,
    ended_at BIGINT,
    PRIMARY KEY (project, id)
);
CREATE INDEX sessions_of_user ON sessions (project, user_id);
CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;
-- The SHA-256 of each refresh token, with when it was used.
CREATE TABLE refresh_tokens (
    project TEXT NOT NULL,
    sha256 BYTEA NOT NULL,
    session_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (project, sha256)
);
CREATE INDEX refresh_tokens_of_session ON refresh_tokens (project, session_id);
CREATE TABLE signing_keys (
    project TEXT NOT NULL,
    kid TEXT NOT NULL,
    sealed_private BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    PRIMARY KEY (project, kid)
);
CREATE TABLE auth_settings (
    project TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
"#;
