//! The embedded backend: every `store` contract over one SQLite file in
//! WAL mode with `synchronous=FULL` (an acknowledged write survives a
//! crash or power loss), plus the key-value journal beside it.
//!
//! Layer: backends. Implements the `store` traits and passes its contract
//! suite (`tests/it`); knows nothing of HTTP or runtimes. One file per
//! area: `functions.rs`, `projects.rs` (projects, keys, access rules),
//! `records.rs` (invocation records, logs), `kv.rs` with `kv_journal.rs`,
//! `docs.rs`, `objects.rs`, `events.rs`; `writer.rs` is the group commit
//! every write goes through, `schema.rs` the numbered migrations.
//!
//! Reads: metadata (functions, projects, keys) on one connection under a
//! lock; documents, objects, events, records and logs on a pool of reader
//! connections (at most [`MAX_IDLE_READERS`] kept idle), at most
//! `2 × cores` at once on the blocking pool, so that a burst of reads
//! queues in order rather than crowding the cores with threads; key-value
//! point reads inline, on a reader connection of their own (a point read
//! takes microseconds and waits for no writer: cheaper than a thread hop).

mod accounts;
mod docs;
mod events;
mod functions;
mod kv;
mod kv_journal;
mod objects;
mod projects;
mod records;
mod schema;
mod writer;

use crate::kv_journal::KvOverlay;
use crate::writer::{EventHook, Writer};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use store::StoreError;

/// Entry points for the fuzz targets (`fuzz/`): the key-value journal's
/// reader, without a database. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::kv_journal::fuzz_scan as journal_scan;
    pub use crate::kv_journal::record_bytes as journal_record;
}

/// A failure inside this backend: an answer of the contract, or SQLite's
/// own error, which becomes [`StoreError::Backend`] (or
/// [`StoreError::DiskFull`]) on its way out.
#[derive(Debug)]
pub(crate) struct Error(pub(crate) StoreError);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error(error)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        Error(match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull(error.to_string()),
            // Another connection holds the lock past the busy timeout.
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::backend(error, true)
            }
            _ => StoreError::backend(error, false),
        })
    }
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        error.0
    }
}

/// The number of the newest schema migration: what `PRAGMA user_version`
/// of a database says once this release has opened it.
pub const SCHEMA_VERSION: u32 = schema::CURRENT;

/// Reader connections kept open between reads; more are opened for bursts
/// and closed after.
pub const MAX_IDLE_READERS: usize = 8;

/// The embedded store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// Metadata: functions, projects, keys, access rules.
    connection: Mutex<Connection>,
    /// Every other write goes through group commit, on a connection of
    /// its own.
    writer: Writer,
    /// Key-value writes acknowledged and not yet in the table.
    kv_overlay: Arc<KvOverlay>,
    /// Key-value point reads, on a connection of their own.
    kv_reader: Mutex<Connection>,
    /// Other reads, on connections of their own: one per concurrent
    /// reader, kept for reuse.
    readers: Mutex<Vec<Connection>>,
    /// Reads on the blocking pool at once.
    reads: tokio::sync::Semaphore,
    path: PathBuf,
    /// Called after a commit that logged events.
    event_hook: EventHook,
}

/// The key-value journal of the database at `path`: `wok.db` has
/// `wok.db-kv-journal` (like SQLite's own `-wal`).
fn kv_journal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-kv-journal");
    name.into()
}

/// A connection with wok's settings: WAL, and `synchronous=FULL` so that a
/// committed transaction survives a crash or power loss.
pub(crate) fn open_connection(path: &Path) -> Result<Connection> {
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
fn open_reader(path: &Path) -> Result<Connection> {
    let connection = open_connection(path)?;
    connection.pragma_update(None, "mmap_size", 1i64 << 32)?;
    connection.pragma_update(None, "cache_size", -65536)?;
    Ok(connection)
}

/// A lock whose holder panicked is still usable: SQLite rolls back what a
/// transaction left unfinished when it drops.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, brings its schema up to
    /// date, replays the key-value journal and starts the writer. Blocks:
    /// call it at start-up.
    pub fn open(path: &Path) -> std::result::Result<Self, StoreError> {
        let mut connection = open_connection(path)?;
        schema::migrate(&mut connection)?;
        docs::drop_unfinished_indexes(&connection)?;
        let kv_overlay = Arc::new(KvOverlay::default());
        let event_hook = EventHook::default();
        let writer = Writer::start(
            path,
            &kv_journal_path(path),
            kv_overlay.clone(),
            event_hook.clone(),
        )?;
        Ok(Self {
            shared: Arc::new(Shared {
                connection: Mutex::new(connection),
                writer,
                event_hook,
                kv_overlay,
                kv_reader: Mutex::new(open_reader(path)?),
                readers: Mutex::new(Vec::new()),
                // Twice the cores: one reading while another parses and
                // answers.
                reads: tokio::sync::Semaphore::new(
                    2 * std::thread::available_parallelism().map_or(2, |cores| cores.get()),
                ),
                path: path.to_owned(),
            }),
        })
    }

    /// Writes the key-value entries acknowledged so far from the journal
    /// into the table (the writer also does so on its own, at least once a
    /// second while there are any).
    pub async fn kv_checkpoint(&self) -> std::result::Result<(), StoreError> {
        self.shared
            .writer
            .after_journal(|connection, journal| journal.checkpoint(connection))
            .await
    }

    fn writer(&self) -> &Writer {
        &self.shared.writer
    }

    /// Runs `read` on a reader connection of the pool, on the blocking
    /// pool, at most `2 × cores` at once.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let _permit = self
            .shared
            .reads
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let shared = self.shared.clone();
        blocking(move || shared.with_reader(read)).await
    }

    /// Runs `work` on the metadata connection, on the blocking pool.
    async fn meta<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let shared = self.shared.clone();
        blocking(move || work(&mut lock(&shared.connection))).await
    }
}

impl Shared {
    /// Runs `read` on a reader connection of the pool (opened on demand).
    fn with_reader<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => open_reader(&self.path)?,
        };
        let result = read(&connection);
        let mut readers = lock(&self.readers);
        // More readers than that were opened for a burst: closed again.
        if readers.len() < MAX_IDLE_READERS {
            readers.push(connection);
        }
        result
    }
}

/// Runs blocking SQLite work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(error) => Err(StoreError::backend(
            format!("a store task failed: {error}"),
            false,
        )),
    }
}

/// A name read back from the database, or [`StoreError::Corrupt`].
fn stored<T, E: std::fmt::Display>(parsed: std::result::Result<T, E>) -> Result<T> {
    parsed.map_err(|error| Error(StoreError::Corrupt(error.to_string())))
}
