//! The cluster backend: every `store` contract over PostgreSQL, so that
//! several `wok` nodes share one truth. Nodes keep no state here but a
//! pool of connections; every answer comes from the database.
//!
//! Layer: backends. Implements the `store` traits and passes the same
//! contract suite as `store-sqlite` (`tests/it`, against a real cluster
//! that `scripts/start-postgres.sh` starts); knows nothing of HTTP or
//! runtimes. One file per area: `functions.rs`, `projects.rs` (projects,
//! keys, access rules), `records.rs` (invocation records, logs), `kv.rs`
//! (with `kv/writer.rs`, the node's group commit of writes), `docs.rs`,
//! `objects.rs`, `events.rs`, `accounts.rs` (app users, sessions, signing
//! keys); `outbox.rs` numbers and writes the events a transaction logs,
//! `notify.rs` tells the other nodes, `schema.rs` holds the numbered
//! migrations.
//!
//! Every write is one transaction, answered once committed. Versions of
//! key-value entries and documents come from global sequences, never from
//! a counter row (a hot row serialises its writers). Events are numbered
//! per stream in commit order (see `outbox.rs`), so a reader never passes
//! an event that commits late.

mod accounts;
mod docs;
mod events;
mod functions;
mod kv;
mod leases;
mod notify;
mod objects;
mod outbox;
mod projects;
mod records;
mod schema;
mod tls;

pub use kv::PURGE_BATCH;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use domain::ProjectId;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::StoreError;
use store::events::Hook;
use tokio_postgres::error::SqlState;

/// A failure inside this backend: an answer of the contract, or
/// PostgreSQL's own error, which becomes [`StoreError::Backend`] (or
/// [`StoreError::DiskFull`]) on its way out.
#[derive(Debug)]
pub(crate) struct Error(pub(crate) StoreError);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error(error)
    }
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        error.0
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error(backend_error(error))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        Error(match error {
            PoolError::Backend(error) => backend_error(error),
            // No connection to be had in time: the database is down, or
            // every connection is busy. Both pass.
            other => StoreError::backend(format!("no database connection: {other}"), true),
        })
    }
}

/// PostgreSQL's error as the store's: a full disk told apart, and what may
/// succeed when tried again (a lost connection, a server restarting, a
/// serialization failure or deadlock, too many connections) marked so.
/// A connection lost during a commit leaves the write's outcome unknown:
/// it is retryable, never a false "failed".
fn backend_error(error: tokio_postgres::Error) -> StoreError {
    let retryable = error.is_closed()
        || error.code().is_none_or(|code| {
            code.code().starts_with("08")
                || code.code().starts_with("57P")
                || [
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::LOCK_NOT_AVAILABLE,
                ]
                .contains(code)
        });
    match error.code() {
        Some(code) if *code == SqlState::DISK_FULL => StoreError::DiskFull(error.to_string()),
        _ => StoreError::backend(error, retryable),
    }
}

/// A name read back from the database, or [`StoreError::Corrupt`].
pub(crate) fn stored<T, E: std::fmt::Display>(parsed: std::result::Result<T, E>) -> Result<T> {
    parsed.map_err(|error| Error(StoreError::Corrupt(error.to_string())))
}

/// A number read back from the database that must fit `T`.
pub(crate) fn number<T: TryFrom<i64>>(value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| {
        Error(StoreError::Corrupt(format!(
            "stored number {value} is out of range"
        )))
    })
}

/// The number of the newest schema migration.
pub const SCHEMA_VERSION: u32 = schema::CURRENT;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or the
    /// `key=value` form).
    pub url: String,
    /// The password, when the URL has none (so that it need not appear
    /// on a command line: `PGPASSWORD`).
    pub password: Option<String>,
    /// Most connections this node holds open.
    pub max_connections: usize,
    /// How long a call waits for a free connection (or a new one) before
    /// it fails as retryable.
    pub connect_timeout: Duration,
    /// A PEM file of certificates to trust for the database's TLS, beside
    /// the system's (`PGSSLROOTCERT`); used with `sslmode=require`.
    pub root_certificates: Option<std::path::PathBuf>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            root_certificates: None,
        }
    }
}

/// The PostgreSQL store. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
}

struct Shared {
    pool: Pool,
    /// Called after a commit that logged events, and for other nodes'
    /// commits as they are told (`notify.rs`).
    hook: Arc<RwLock<Option<Hook>>>,
    notifier: notify::Notifier,
    /// Commits this node's key-value writes in batches.
    kv_writer: kv::Writer,
}

impl PgStore {
    /// Connects to the database, brings its schema up to date (one node
    /// at a time: the migration holds an advisory lock) and starts
    /// listening for other nodes' events.
    pub async fn connect(options: &PgOptions) -> std::result::Result<Self, StoreError> {
        let config: tokio_postgres::Config = options.url.parse().map_err(|error| {
            StoreError::backend(format!("the database URL is not valid: {error}"), false)
        })?;
        let mut config = config;
        if let Some(password) = &options.password
            && config.get_password().is_none()
        {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        // Which node a connection is (pg_stat_activity, logs): its
        // process id, as in the holder names of its leases.
        config.application_name(format!("wok {}", std::process::id()));
        let tls = tls::connector(&mut config, options)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(2))
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::backend(error.to_string(), false))?;
        {
            let mut client = pool.get().await.map_err(Error::from)?;
            schema::migrate(&mut client).await?;
            docs::drop_unfinished_indexes(&client).await?;
        }
        let hook: Arc<RwLock<Option<Hook>>> = Arc::default();
        let notifier = notify::Notifier::start(config, tls, hook.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                kv_writer: kv::Writer::start(pool.clone()),
                pool,
                hook,
                notifier,
            }),
        })
    }

    /// A connection of the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.shared.pool.get().await?)
    }

    /// After a commit that logged events on `streams` (or made failed
    /// events due): this node's readers are woken now, the other nodes'
    /// through one coalesced notification.
    pub(crate) fn after_commit(&self, streams: Vec<(ProjectId, String)>) {
        if streams.is_empty() {
            return;
        }
        if let Some(hook) = self
            .shared
            .hook
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
        {
            hook(&streams);
        }
        self.shared.notifier.send(streams);
    }

    /// A number that changes with every committed change of what nodes
    /// keep in memory (projects, keys, access rules, live versions, ended
    /// sessions, signing keys): a node that polls it learns of other
    /// nodes' changes.
    pub async fn control_version(&self) -> std::result::Result<i64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT version FROM control_changes")
            .await
            .db()?;
        Ok(client.query_one(&statement, &[]).await.db()?.get(0))
    }

    /// The secret stored under `name`, storing `new` if there is none yet:
    /// the first node to start makes it, every other node reads it.
    pub async fn shared_secret(
        &self,
        name: &str,
        new: &str,
    ) -> std::result::Result<String, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &new],
            )
            .await
            .db()?;
        Ok(client
            .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await
            .db()?
            .get(0))
    }

    /// Connections open now, idle or busy (for tests and metrics).
    pub fn connections(&self) -> usize {
        self.shared.pool.status().size
    }
}

pub(crate) fn set_hook(store: &PgStore, hook: Hook) {
    *store
        .shared
        .hook
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hook);
}

/// A result of this backend (or of PostgreSQL) as the store's, for `?` in
/// the trait methods: `.await.db()?`.
pub(crate) trait Db<T> {
    fn db(self) -> std::result::Result<T, StoreError>;
}

impl<T, E: Into<Error>> Db<T> for std::result::Result<T, E> {
    fn db(self) -> std::result::Result<T, StoreError> {
        self.map_err(|error| error.into().0)
    }
}
