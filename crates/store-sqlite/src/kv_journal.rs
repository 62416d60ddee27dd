//! Key-value writes, journaled. A batch of key-value writes is appended to
//! an append-only journal file next to the database and made durable with
//! one `fdatasync`; only then are its callers answered. The entries live
//! in memory (the overlay, which reads consult first) until a checkpoint
//! writes them into the `kv` table in one transaction, in key order, and
//! empties the journal. A start replays what the journal holds.
//!
//! Why: a durable write into the B-tree costs a 4 KiB WAL page per small
//! value (64 writes to random keys dirty about 64 leaf pages), while the
//! journal costs the bytes of the write. A checkpoint writes each page once
//! for all the writes it covers, and a key written many times once.
//!
//! The file is reused, not truncated: it is extended with zeros ahead of
//! the records (so that a sync writes data, not the file's size), and after
//! a checkpoint the next records overwrite it from the start under the
//! next generation number. Replay reads from the start while records carry
//! the generation of the first one, and stops at the first record that is
//! zero or short; a record that fails its check is damage in the middle if
//! a record the table does not have yet follows it (it is logged as an
//! error, the journal is copied aside, and replay goes on after it), else
//! a torn end (a batch never acknowledged: dropped, with a warning).
//! Every record carries its store's version, so replay leaves out what the
//! table has already (`kv_stores.last_version`), whatever generation.
//!
//! Record format, little-endian: `u32` payload length, `u32` CRC-32 of the
//! payload, then the payload: `u64` generation, `u8` kind (1 set,
//! 2 delete), `u64` version, `i64` expiry (`i64::MIN`: none), then project,
//! store and key, each as a `u16` length and bytes, and for a set the
//! value as a `u32` length and bytes.
//!
//! Replaying a record applied already is harmless: records hold the state
//! they leave (an increment is journaled as the set it amounts to), so the
//! last record of a key is its state, and the newest generation is the one
//! at the start of the file.
use crate::Result;
use crate::kv::{list_start, live_entry};
use domain::{ProjectId, StoreName, UnixMillis, now_millis};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use store::{Condition, KvEntry, StoreError};

/// A checkpoint runs once the oldest entry not yet in the table is this old.
pub(crate) const CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
/// ... or once this many keys wait in memory.
const CHECKPOINT_ENTRIES: usize = 32_768;
/// ... or once the journal holds this many bytes.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// The journal file grows by at least this much at a time, in zeros.
const EXTEND_BY: u64 = 4 << 20;
/// Most expired entries deleted from disk by one checkpoint.
const PURGE_PER_CHECKPOINT: i64 = 10_000;

const SET: u8 = 1;
const DELETE: u8 = 2;

/// A key's state not yet written to the table: its value, or `None` for
/// a deletion.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    value: Option<Vec<u8>>,
    version: u64,
    expires_at: Option<UnixMillis>,
}

impl Pending {
    /// The entry as a read at `now` sees it.
    fn live(&self, now: UnixMillis) -> Option<KvEntry> {
        let value = self.value.as_ref()?;
        if self.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        Some(KvEntry {
            value: value.clone(),
            version: self.version,
            expires_at: self.expires_at,
        })
    }

    fn is_live(&self, now: UnixMillis) -> bool {
        self.value.is_some() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// `project NUL store NUL key`: names hold no NUL, so one store's keys are
/// one range, in the table's (byte) order.
fn composite(project: &str, store: &str, key: &str) -> String {
    let mut text = String::with_capacity(project.len() + store.len() + key.len() + 2);
    text.push_str(project);
    text.push('\0');
    text.push_str(store);
    text.push('\0');
    text.push_str(key);
    text
}

fn split(composite: &str) -> Option<(&str, &str, &str)> {
    let (project, rest) = composite.split_once('\0')?;
    let (store, key) = rest.split_once('\0')?;
    Some((project, store, key))
}

/// The acknowledged key-value writes not yet in the table, for reads.
#[derive(Default)]
pub(crate) struct KvOverlay {
    entries: RwLock<BTreeMap<String, Pending>>,
    /// Stores written to since the last checkpoint (the table lists the
    /// others).
    /// (`project NUL store`).
    stores: RwLock<BTreeSet<String>>,
}

impl KvOverlay {
    /// `Some` when the key has a state newer than the table's: the entry,
    /// or `None` inside if it is deleted or expired.
    pub(crate) fn get(
        &self,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Option<Option<KvEntry>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&composite(project.as_str(), store.as_str(), key))
            .map(|pending| pending.live(now))
    }

    /// The keys of the store that start with `prefix` and come after
    /// `after`, each with whether it is live at `now`, up to the `live`-th
    /// live one: a listing of `live` keys ends there at the latest.
    pub(crate) fn range(
        &self,
        project: &ProjectId,
        store: &StoreName,
        prefix: &str,
        after: Option<&str>,
        now: UnixMillis,
        live: usize,
    ) -> Vec<(String, bool)> {
        let (start, strictly_after) = list_start(prefix, after);
        let from = composite(project.as_str(), store.as_str(), start);
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut found = Vec::new();
        let mut live_found = 0;
        for (composite, pending) in entries.range(from..) {
            let Some((p, s, key)) = split(composite) else {
                break;
            };
            if p != project.as_str() || s != store.as_str() || !key.starts_with(prefix) {
                break;
            }
            if strictly_after && key == start {
                continue;
            }
            let is_live = pending.is_live(now);
            found.push((key.to_owned(), is_live));
            live_found += usize::from(is_live);
            if live_found == live {
                break;
            }
        }
        found
    }

    /// The project's stores written to since the last checkpoint.
    pub(crate) fn stores(&self, project: &ProjectId) -> Vec<String> {
        let stores = self.stores.read().unwrap_or_else(|p| p.into_inner());
        stores
            .iter()
            .filter_map(|both| {
                let (p, store) = both.split_once('\0')?;
                (p == project.as_str()).then(|| store.to_owned())
            })
            .collect()
    }
}

/// The writer's side: the journal file, the batch being built, and the
/// version counters.
pub(crate) struct KvJournal {
    file: File,
    /// The generation of the records being written.
    generation: u64,
    /// Where the next batch goes: the end of this generation's records.
    len: u64,
    /// The file's size: written through, zeros past `len`.
    extent: u64,
    overlay: Arc<KvOverlay>,
    /// The batch's writes, not yet durable: seen by later writes of the
    /// batch, not by reads.
    batch: BTreeMap<String, Pending>,
    buffer: Vec<u8>,
    /// Each store's last version; read from the table once, then kept here
    /// (only this writer gives out versions).
    versions: HashMap<(ProjectId, StoreName), u64>,
    /// Stores whose counter moved since the last checkpoint.
    moved: BTreeSet<(ProjectId, StoreName)>,
    expiry: KvExpiry,
    /// When the oldest write not yet in the table was made durable.
    since: Option<Instant>,
    /// The latest `now` a write carried (the clock at start): what has
    /// expired at checkpoints.
    latest_now: UnixMillis,
    /// Set when a failed append could not be marked as the end: what
    /// follows the last good record is unknown, so no more writes go in.
    broken: Option<String>,
}

impl KvJournal {
    /// Opens the journal at `path`, replays it into the table and empties
    /// it.
    pub(crate) fn open(
        connection: &mut Connection,
        path: &Path,
        overlay: Arc<KvOverlay>,
    ) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|error| journal_error("opening", &error))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes)
            .map_err(|error| journal_error("reading", &error))?;
        let mut journal = Self {
            generation: 0,
            len: 0,
            extent: bytes.len() as u64,
            file,
            overlay,
            batch: BTreeMap::new(),
            buffer: Vec::new(),
            versions: HashMap::new(),
            moved: BTreeSet::new(),
            expiry: KvExpiry::load(connection)?,
            since: None,
            latest_now: now_millis(),
            broken: None,
        };
        let mut replayed = BTreeMap::new();
        let mut checkpointed = Checkpointed::default();
        let scanned = scan(&bytes);
        let damaged = match scanned.stopped_at {
            Some(at) if scanned.more_after => Some(at),
            Some(at) => {
                tracing::warn!(
                    "the key-value journal ends in a torn record at byte {at}: a batch that was never acknowledged, dropped"
                );
                None
            }
            None => None,
        };
        let first = scanned.generation;
        for record in scanned.records {
            let (Ok(project), Ok(store)) =
                (ProjectId::new(record.project), StoreName::new(record.store))
            else {
                break;
            };
            // A record the table has already (one replayed before) is
            // left out; a delete of the journal's first format has no
            // version and counts as fresh.
            let fresh = match record.pending.version {
                0 => true,
                version => version > checkpointed.version(connection, &project, &store)?,
            };
            if !fresh {
                continue;
            }
            if record.pending.version > 0 {
                let last = journal
                    .versions
                    .entry((project.clone(), store.clone()))
                    .or_insert(0);
                *last = (*last).max(record.pending.version);
                journal.moved.insert((project.clone(), store.clone()));
                if let Some(at) = record.pending.expires_at {
                    journal.expiry.lower(at);
                }
            }
            replayed.insert(
                composite(project.as_str(), store.as_str(), record.key),
                record.pending.into_owned(),
            );
        }
        if let Some(at) = damaged {
            // Never silently: the writes recorded from the damage on that
            // the table did not have yet are lost. A copy is kept for
            // inspection (and recovery by hand).
            let mut copy = path.as_os_str().to_owned();
            copy.push(format!(".damaged-{}", now_millis()));
            let kept = std::fs::write(&copy, &bytes);
            tracing::error!(
                "the key-value journal {} is damaged at byte {at}, with records after it: the acknowledged writes recorded from there on were not replayed ({} entries before the damage were); {}",
                path.display(),
                replayed.len(),
                match kept {
                    Ok(()) => format!(
                        "a copy of the journal is at {}",
                        std::path::Path::new(&copy).display()
                    ),
                    Err(error) => format!("keeping a copy of it failed: {error}"),
                }
            );
        }
        *journal
            .overlay
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner()) = replayed;
        // Counters replayed are maxima of what the journal holds; the
        // table's may be higher.
        journal.generation = first.unwrap_or(0);
        journal.checkpoint(connection)?;
        journal.versions.clear();
        // From now on, time is what the writes say (every call of the
        // contract names its `now`).
        journal.latest_now = UnixMillis::MIN;
        Ok(journal)
    }

    /// Starts a write made at `now`: refused once the journal is broken.
    fn begin(&mut self, now: UnixMillis) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(StoreError::backend(why.clone(), false).into());
        }
        self.latest_now = self.latest_now.max(now);
        Ok(())
    }

    /// Sets a key in the batch; its new version. A failed condition writes
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set(
        &mut self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<UnixMillis>,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<u64> {
        self.begin(now)?;
        if condition != Condition::Always {
            let live = self.live(connection, project, store, key, now)?;
            check(condition, &live)?;
        }
        self.put(connection, project, store, key, value, expires_at)
    }

    /// Deletes a key in the batch; whether it was live. A failed condition
    /// writes nothing.
    pub(crate) fn delete(
        &mut self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        condition: Condition,
        now: UnixMillis,
    ) -> Result<bool> {
        self.begin(now)?;
        let live = self.live(connection, project, store, key, now)?;
        check(condition, &live)?;
        if live.is_some() {
            // A version of its own, as every record: replay tells by it
            // what the table has already.
            let version = self.next_version(connection, project, store)?;
            let pending = Pending {
                value: None,
                version,
                expires_at: None,
            };
            self.record(project, store, key, pending);
        }
        Ok(live.is_some())
    }

    /// Adds `by` to a key read as a decimal integer (absent: 0), keeping
    /// its expiry; the sum. A value that is not a number writes nothing.
    pub(crate) fn increment(
        &mut self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        by: i64,
        now: UnixMillis,
    ) -> Result<i64> {
        self.begin(now)?;
        let live = self.live(connection, project, store, key, now)?;
        let (current, expires_at) = match &live {
            None => (0, None),
            Some(entry) => (
                std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|text| text.trim().parse::<i64>().ok())
                    .ok_or(StoreError::NotANumber)?,
                entry.expires_at,
            ),
        };
        let sum = current.checked_add(by).ok_or(StoreError::Overflow)?;
        self.put(
            connection,
            project,
            store,
            key,
            sum.to_string().into_bytes(),
            expires_at,
        )?;
        Ok(sum)
    }

    /// The live entry as the batch sees it: its own writes, then the
    /// acknowledged ones, then the table.
    fn live(
        &self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        now: UnixMillis,
    ) -> Result<Option<KvEntry>> {
        if let Some(pending) = self
            .batch
            .get(&composite(project.as_str(), store.as_str(), key))
        {
            return Ok(pending.live(now));
        }
        if let Some(state) = self.overlay.get(project, store, key, now) {
            return Ok(state);
        }
        live_entry(connection, project, store, key, now)
    }

    fn put(
        &mut self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<UnixMillis>,
    ) -> Result<u64> {
        let version = self.next_version(connection, project, store)?;
        if let Some(at) = expires_at {
            self.expiry.lower(at);
        }
        let pending = Pending {
            value: Some(value),
            version,
            expires_at,
        };
        self.record(project, store, key, pending);
        Ok(version)
    }

    /// The store's next version (never given out before).
    fn next_version(
        &mut self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
    ) -> Result<u64> {
        let counter = (project.clone(), store.clone());
        let last = match self.versions.get(&counter) {
            Some(last) => *last,
            None => connection
                .prepare_cached(
                    "SELECT last_version FROM kv_stores WHERE project = ? AND store = ?",
                )?
                .query_row(params![project.as_str(), store.as_str()], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()?
                .unwrap_or(0) as u64,
        };
        let version = last + 1;
        self.versions.insert(counter.clone(), version);
        self.moved.insert(counter);
        Ok(version)
    }

    fn record(&mut self, project: &ProjectId, store: &StoreName, key: &str, pending: Pending) {
        Record {
            generation: self.generation,
            project: project.as_str(),
            store: store.as_str(),
            key,
            pending: std::borrow::Cow::Borrowed(&pending),
        }
        .encode(&mut self.buffer);
        self.batch
            .insert(composite(project.as_str(), store.as_str(), key), pending);
    }

    /// Makes the batch durable (one write, one `fdatasync`), then visible.
    /// On failure nothing of the batch stays, and its writes fail.
    pub(crate) fn commit(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            self.batch.clear();
            return Ok(());
        }
        let end = self.len + self.buffer.len() as u64;
        // Zeros after the batch end the journal there (the next batch
        // overwrites them); past them may lie an older generation.
        self.buffer.extend_from_slice(&[0; 8]);
        let written = self
            .extend(end + 8)
            .and_then(|()| self.file.write_all_at(&self.buffer, self.len))
            .and_then(|()| self.file.sync_data());
        self.buffer.clear();
        let batch = std::mem::take(&mut self.batch);
        if let Err(error) = written {
            // Zeros where the batch starts end the journal there, so that
            // a record of this batch that did reach the disk is not
            // replayed later.
            if let Err(mark) = self
                .file
                .write_all_at(&[0; 8], self.len)
                .and_then(|()| self.file.sync_data())
            {
                self.broken = Some(format!(
                    "the key-value journal could not be marked after a failed write ({mark}); restart wok"
                ));
            }
            return Err(journal_error("writing", &error));
        }
        self.len = end;
        self.since.get_or_insert_with(Instant::now);
        let mut stores = self
            .overlay
            .stores
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for (composite, pending) in &batch {
            if pending.value.is_some()
                && let Some((project, store, _)) = split(composite)
            {
                let both = &composite[..project.len() + 1 + store.len()];
                if !stores.contains(both) {
                    stores.insert(both.to_owned());
                }
            }
        }
        drop(stores);
        let mut entries = self
            .overlay
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner());
        entries.extend(batch);
        Ok(())
    }

    /// Grows the file with zeros to hold `needed` bytes (and some more),
    /// so that appends overwrite written blocks. Unsynced: the batch's sync
    /// covers it.
    fn extend(&mut self, needed: u64) -> std::io::Result<()> {
        if needed > self.extent {
            let target = needed.max(self.extent + EXTEND_BY);
            let zeros = vec![0; (target - self.extent) as usize];
            self.file.write_all_at(&zeros, self.extent)?;
            self.extent = target;
        }
        Ok(())
    }

    /// Whether a checkpoint is due now; `None` if nothing waits, else how
    /// long until one is.
    pub(crate) fn checkpoint_due(&self) -> Option<Duration> {
        let since = self.since?;
        let entries = self
            .overlay
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if entries >= CHECKPOINT_ENTRIES || self.len >= CHECKPOINT_BYTES {
            return Some(Duration::ZERO);
        }
        Some(CHECKPOINT_AFTER.saturating_sub(since.elapsed()))
    }

    /// Writes every entry waiting in memory into the table, then empties
    /// the journal.
    pub(crate) fn checkpoint(&mut self, connection: &mut Connection) -> Result<()> {
        self.write_out(connection)?;
        // Best effort: a journal not sealed replays only what the table
        // has already, which is harmless while the table changes by
        // checkpoints alone (`drop_store` needs the seal).
        let _ = self.seal();
        Ok(())
    }

    /// Writes every entry waiting in memory into the table in one
    /// transaction and deletes expired entries from disk; the next records
    /// go to the start of the journal, under a new generation.
    fn write_out(&mut self, connection: &mut Connection) -> Result<()> {
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Only this thread changes the overlay: it stays as read here.
            let entries = self
                .overlay
                .entries
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO kv (project, store, key, value, version, expires_at) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (project, store, key) DO UPDATE
                 SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at",
            )?;
            let mut delete = transaction
                .prepare_cached("DELETE FROM kv WHERE project = ? AND store = ? AND key = ?")?;
            for (composite, pending) in entries.iter() {
                let (project, store, key) = split(composite)
                    .ok_or_else(|| StoreError::Corrupt("a key-value journal key".to_owned()))?;
                match &pending.value {
                    Some(value) => upsert.execute(params![
                        project,
                        store,
                        key,
                        value,
                        pending.version as i64,
                        pending.expires_at
                    ])?,
                    None => delete.execute(params![project, store, key])?,
                };
            }
            let mut counter = transaction.prepare_cached(
                "INSERT INTO kv_stores (project, store, last_version) VALUES (?, ?, ?)
                 ON CONFLICT (project, store) DO UPDATE
                 SET last_version = max(last_version, excluded.last_version)",
            )?;
            for moved in &self.moved {
                if let Some(last) = self.versions.get(moved) {
                    counter.execute(params![moved.0.as_str(), moved.1.as_str(), *last as i64])?;
                }
            }
        }
        self.expiry.purge(&transaction, self.latest_now)?;
        transaction.commit()?;
        // In the table now: reads find them there.
        self.overlay
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.overlay
            .stores
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.moved.clear();
        self.since = None;
        self.generation += 1;
        self.len = 0;
        Ok(())
    }

    /// Makes the journal durably empty: zeros at its start.
    fn seal(&self) -> Result<()> {
        self.file
            .write_all_at(&[0; 8], 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|error| journal_error("emptying", &error))
    }

    /// Deletes every entry of a store: after a checkpoint, so that nothing
    /// of the store waits in memory or could be replayed, in one
    /// transaction. The store's version counter stays, so versions go on.
    /// Returns whether there was any entry.
    pub(crate) fn drop_store(
        &mut self,
        connection: &mut Connection,
        project: &ProjectId,
        store: &StoreName,
    ) -> Result<bool> {
        self.write_out(connection)?;
        self.seal()?;
        let deleted = connection.execute(
            "DELETE FROM kv WHERE project = ? AND store = ?",
            params![project.as_str(), store.as_str()],
        )?;
        Ok(deleted > 0)
    }
}

fn journal_error(doing: &str, error: &std::io::Error) -> crate::Error {
    crate::Error(StoreError::io(
        &format!("{doing} the key-value journal"),
        error,
    ))
}

fn check(condition: Condition, live: &Option<KvEntry>) -> Result<()> {
    let holds = match condition {
        Condition::Always => true,
        Condition::Absent => live.is_none(),
        Condition::Version(version) => live.as_ref().is_some_and(|entry| entry.version == version),
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::ConditionFailed.into())
    }
}

/// One journal record.
pub(crate) struct Record<'a> {
    generation: u64,
    project: &'a str,
    store: &'a str,
    key: &'a str,
    pending: std::borrow::Cow<'a, Pending>,
}

impl<'a> Record<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.push(if self.pending.value.is_some() {
            SET
        } else {
            DELETE
        });
        out.extend_from_slice(&self.pending.version.to_le_bytes());
        out.extend_from_slice(&self.pending.expires_at.unwrap_or(i64::MIN).to_le_bytes());
        for text in [self.project, self.store, self.key] {
            // Names are at most 63 bytes and keys 1 KiB: a u16 holds them.
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        if let Some(value) = &self.pending.value {
            // Values are at most 1 MiB.
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        let payload = &out[start + 8..];
        let length = (payload.len() as u32).to_le_bytes();
        let crc = crc32fast::hash(payload).to_le_bytes();
        out[start..start + 4].copy_from_slice(&length);
        out[start + 4..start + 8].copy_from_slice(&crc);
    }

    /// The record at the start of `bytes` and its size; the end (zeros, or
    /// the file's end); or a record that is torn or damaged.
    fn decode(bytes: &'a [u8]) -> Decoded<'a> {
        let Some(length) = bytes.get(..4) else {
            return Decoded::End;
        };
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        if length == 0 {
            return Decoded::End;
        }
        match Self::decode_record(bytes, length) {
            Some(record) => Decoded::Record(record, 8 + length),
            None => Decoded::Damaged,
        }
    }

    fn decode_record(bytes: &'a [u8], length: usize) -> Option<Self> {
        let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
        let payload = bytes.get(8..8usize.checked_add(length)?)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let mut reader = Reader(payload);
        let generation = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
        let kind = reader.take(1)?[0];
        let version = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
        let expires_at = match i64::from_le_bytes(reader.take(8)?.try_into().ok()?) {
            i64::MIN => None,
            at => Some(at),
        };
        let project = reader.text()?;
        let store = reader.text()?;
        let key = reader.text()?;
        let value = match kind {
            SET => {
                let len = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
                Some(reader.take(len)?.to_vec())
            }
            DELETE => None,
            _ => return None,
        };
        Some(Record {
            generation,
            project,
            store,
            key,
            pending: std::borrow::Cow::Owned(Pending {
                value,
                version,
                expires_at,
            }),
        })
    }
}

/// What lies at a position of the journal.
enum Decoded<'a> {
    /// A whole record, and its size in bytes.
    Record(Record<'a>, usize),
    /// Zeros (the end of the records) or the end of the file.
    End,
    /// Bytes that are not a whole record: torn or damaged.
    Damaged,
}

/// Each store's version counter as the table has it: records at or below
/// it are in the table already.
#[derive(Default)]
struct Checkpointed(HashMap<(ProjectId, StoreName), u64>);

impl Checkpointed {
    fn version(
        &mut self,
        connection: &Connection,
        project: &ProjectId,
        store: &StoreName,
    ) -> Result<u64> {
        if let Some(version) = self.0.get(&(project.clone(), store.clone())) {
            return Ok(*version);
        }
        let version = connection
            .prepare_cached("SELECT last_version FROM kv_stores WHERE project = ? AND store = ?")?
            .query_row(params![project.as_str(), store.as_str()], |row| {
                row.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64;
        self.0.insert((project.clone(), store.clone()), version);
        Ok(version)
    }
}

/// What a journal's bytes hold, read in order.
pub(crate) struct Scanned<'a> {
    /// The records, up to the end, a record of another generation, or
    /// damage.
    pub records: Vec<Record<'a>>,
    /// The generation of the first record.
    pub generation: Option<u64>,
    /// Where a torn or damaged record ended the reading.
    pub stopped_at: Option<usize>,
    /// Whether records of the same generation seem to follow that record
    /// (damage in the middle, not a torn end): they are not replayed.
    pub more_after: bool,
}

/// Most bytes checksummed looking for records past damage.
const LOOK_AHEAD_BYTES: usize = 64 << 20;

/// Reads a journal: records in order while they carry the first one's
/// generation, up to the zeros that end them. A record that fails its
/// check ends the reading, as a torn write at a crash leaves it (SQLite's
/// WAL and PostgreSQL's do the same): bytes after it cannot be told from
/// a record (a value may hold one), so nothing after damage is replayed.
/// Whether records seem to follow (damage in the middle) is looked for,
/// within a bound, to say so.
pub(crate) fn scan(bytes: &[u8]) -> Scanned<'_> {
    let mut scanned = Scanned {
        records: Vec::new(),
        generation: None,
        stopped_at: None,
        more_after: false,
    };
    let mut position = 0;
    loop {
        match Record::decode(&bytes[position..]) {
            Decoded::End => break,
            Decoded::Record(record, size) => {
                if *scanned.generation.get_or_insert(record.generation) != record.generation {
                    break;
                }
                position += size;
                scanned.records.push(record);
            }
            Decoded::Damaged => {
                scanned.stopped_at = Some(position);
                scanned.more_after = scanned
                    .generation
                    .is_some_and(|generation| record_follows(bytes, position + 1, generation));
                break;
            }
        }
    }
    scanned
}

/// Whether a whole record of `generation` starts somewhere from `from`
/// (checking at most [`LOOK_AHEAD_BYTES`]).
fn record_follows(bytes: &[u8], from: usize, generation: u64) -> bool {
    let mut budget = LOOK_AHEAD_BYTES;
    let generation = generation.to_le_bytes();
    for at in from..bytes.len() {
        let rest = &bytes[at..];
        // The generation first: cheap, before a checksum.
        let (Some(length), Some(stamp)) = (rest.get(..4), rest.get(8..16)) else {
            return false;
        };
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        if length == 0 || stamp != generation || length > rest.len() - 8 {
            continue;
        }
        if length > budget {
            return false;
        }
        budget -= length;
        if matches!(Record::decode(rest), Decoded::Record(..)) {
            return true;
        }
    }
    false
}

/// The journal reader, for the fuzz target: how many records `bytes` hold,
/// and where reading stopped at damage.
#[doc(hidden)]
pub fn fuzz_scan(bytes: &[u8]) -> (usize, Option<usize>) {
    let scanned = scan(bytes);
    (scanned.records.len(), scanned.stopped_at)
}

/// The bytes of a journal record setting `key` of `project`'s `store` (for
/// tests that forge or damage a journal).
#[doc(hidden)]
pub fn record_bytes(
    generation: u64,
    project: &str,
    store: &str,
    key: &str,
    value: &[u8],
    version: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    Record {
        generation,
        project,
        store,
        key,
        pending: std::borrow::Cow::Owned(Pending {
            value: Some(value.to_vec()),
            version,
            expires_at: None,
        }),
    }
    .encode(&mut out);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// When the earliest expiring entry on disk expires, as the writer knows
/// it: read once at start, lowered by every write with an expiry. Expired
/// entries are invisible already; checkpoints delete them from disk (some
/// at a time), and do nothing about expiry while none has.
struct KvExpiry(Option<UnixMillis>);

impl KvExpiry {
    fn load(connection: &Connection) -> Result<Self, rusqlite::Error> {
        Ok(Self(earliest_expiry(connection)?))
    }

    fn lower(&mut self, at: UnixMillis) {
        self.0 = Some(self.0.map_or(at, |earliest| earliest.min(at)));
    }

    fn purge(
        &mut self,
        transaction: &rusqlite::Transaction<'_>,
        now: UnixMillis,
    ) -> Result<(), rusqlite::Error> {
        if self.0.is_none_or(|earliest| earliest > now) {
            return Ok(());
        }
        transaction
            .prepare_cached(
                "DELETE FROM kv WHERE (project, store, key) IN
                   (SELECT project, store, key FROM kv WHERE expires_at <= ? LIMIT ?)",
            )?
            .execute(params![now, PURGE_PER_CHECKPOINT])?;
        self.0 = earliest_expiry(transaction)?;
        Ok(())
    }
}

fn earliest_expiry(connection: &Connection) -> Result<Option<UnixMillis>, rusqlite::Error> {
    connection
        .prepare_cached(
            "SELECT expires_at FROM kv WHERE expires_at IS NOT NULL ORDER BY expires_at LIMIT 1",
        )?
        .query_row([], |row| row.get(0))
        .optional()
}
