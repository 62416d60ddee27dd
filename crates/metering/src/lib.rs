//! Invocation records, guest logs and platform metrics.
//!
//! Layer: services. Records and log lines are batched off the request path
//! onto a dedicated writer thread and written to the store in one transaction
//! per batch; [`Recorder::shutdown`] drains everything before returning, so a
//! graceful stop loses none. Metrics are kept in memory in Prometheus form.
//! Knows no HTTP and no wasm.
//!
//! Batching: the writer thread blocks for the first item only, then sleeps
//! through a linger window (`LINGER`, 50 ms) and drains what arrived, so
//! under load there is one wake-up per batch, not one per record; a
//! batch holds at most `BATCH` items (8192). A flush or a stop that wakes
//! the thread skips the linger. The Prometheus counters of each record are updated on
//! that thread, just before its batch is written: whoever sees a record in
//! the store also sees it in the metrics.
//!
//! Failures: records are what usage is billed on, so a failed write of
//! them is retried, with pauses growing by 100 ms up to 5 s, until it
//! succeeds; once shutdown has begun it is given up, loudly, after 5 more
//! failures, so a broken store cannot hang a stop. Log lines are written
//! once, not retried, and at most `MAX_PENDING_LOG_LINES` (100,000) wait
//! for the thread: beyond, new lines are dropped and counted in the
//! metrics.

mod metrics;

pub use metrics::Metrics;

use domain::{InvocationRecord, LogLine};
use invoke::{LogSink, RecordSink};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use store::RecordStore;

/// Most items written in one transaction.
const BATCH: usize = 8192;
/// Longest a record waits before its batch is written.
const LINGER: Duration = Duration::from_millis(50);
/// Log lines allowed to wait for the writer; beyond, lines are dropped and counted.
const MAX_PENDING_LOG_LINES: u64 = 100_000;

enum Item {
    Record(InvocationRecord),
    Log(LogLine),
    /// Answered once everything sent before it is durable.
    Flush(mpsc::Sender<()>),
    Stop,
}

pub struct Recorder {
    sender: Mutex<Option<Sender<Item>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    pending_logs: Arc<AtomicU64>,
    /// Set by [`Recorder::shutdown`]: failing writes stop being retried forever.
    stopping: Arc<AtomicBool>,
}

impl Recorder {
    /// Starts the writer thread. Call it within the tokio runtime: the
    /// thread drives the store's writes on it.
    pub fn start(store: Arc<dyn RecordStore>, metrics: Arc<Metrics>) -> Arc<Self> {
        let runtime = tokio::runtime::Handle::current();
        let (sender, receiver) = mpsc::channel();
        let pending_logs = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("wok-recorder".to_owned())
            .spawn({
                let pending_logs = pending_logs.clone();
                let metrics = metrics.clone();
                let stopping = stopping.clone();
                move || {
                    let store = Blocking { store, runtime };
                    write_loop(receiver, store, metrics, pending_logs, stopping)
                }
            })
            .expect("spawning the recorder thread");
        Arc::new(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            metrics,
            pending_logs,
            stopping,
        })
    }

    fn send(&self, item: Item) -> bool {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sender
            .as_ref()
            .is_some_and(|sender| sender.send(item).is_ok())
    }

    /// Waits until everything recorded so far is in the store.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.send(Item::Flush(done)) {
            let _ = wait.recv();
        }
    }

    /// Writes everything still queued and stops the writer thread.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.send(Item::Stop);
        self.sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            let _ = thread.join();
        }
    }
}

impl RecordSink for Recorder {
    fn record(&self, record: InvocationRecord) {
        // Metrics are counted by the writer thread, off the request path.
        if !self.send(Item::Record(record)) {
            tracing::error!("an invocation record arrived after the recorder stopped");
        }
    }
}

impl LogSink for Recorder {
    fn log(&self, line: LogLine) {
        if self.pending_logs.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_LOG_LINES {
            self.pending_logs.fetch_sub(1, Ordering::Relaxed);
            self.metrics.log_line_dropped();
            return;
        }
        if !self.send(Item::Log(line)) {
            self.pending_logs.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The record store, called from the writer thread: it waits for each
/// write (the thread is the recorder's own; no async thread waits).
struct Blocking {
    store: Arc<dyn RecordStore>,
    runtime: tokio::runtime::Handle,
}

impl Blocking {
    fn insert_records(&self, records: &[InvocationRecord]) -> Result<(), store::StoreError> {
        self.runtime
            .block_on(self.store.insert_records(records.to_vec()))
    }

    fn insert_logs(&self, lines: &[LogLine]) -> Result<(), store::StoreError> {
        self.runtime
            .block_on(self.store.insert_logs(lines.to_vec()))
    }
}

fn write_loop(
    receiver: Receiver<Item>,
    store: Blocking,
    metrics: Arc<Metrics>,
    pending_logs: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
) {
    let write = |records: &mut Vec<InvocationRecord>, logs: &mut Vec<LogLine>| {
        // Counted before the write: whoever sees a record also sees it in
        // the metrics.
        for record in records.iter() {
            metrics.observe(record);
        }
        write(&store, records, logs, &pending_logs, &stopping);
    };
    let mut records = Vec::with_capacity(BATCH);
    let mut logs = Vec::with_capacity(BATCH);
    let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
    let mut stop = false;
    while !stop {
        // Block for the first item only. Then sleep through the linger
        // window and drain in bulk: a sender wakes this thread only when it
        // is blocked, so under load there is one wake-up per batch, not one
        // per record (measured: per-record wake-ups cost a context switch
        // each on a busy core).
        match receiver.recv() {
            Ok(item) => stop |= take(item, &mut records, &mut logs, &mut waiters),
            Err(_) => break,
        }
        if !stop && waiters.is_empty() {
            std::thread::sleep(LINGER);
        }
        loop {
            match receiver.try_recv() {
                Ok(item) => stop |= take(item, &mut records, &mut logs, &mut waiters),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    stop = true;
                    break;
                }
            }
            if records.len() + logs.len() >= BATCH {
                write(&mut records, &mut logs);
            }
        }
        write(&mut records, &mut logs);
        for waiter in waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
    write(&mut records, &mut logs);
}

/// Files one item; returns whether it asks the loop to stop.
fn take(
    item: Item,
    records: &mut Vec<InvocationRecord>,
    logs: &mut Vec<LogLine>,
    waiters: &mut Vec<mpsc::Sender<()>>,
) -> bool {
    match item {
        Item::Record(record) => records.push(record),
        Item::Log(line) => logs.push(line),
        Item::Flush(waiter) => waiters.push(waiter),
        Item::Stop => return true,
    }
    false
}

/// Attempts a write made while stopping before it is given up.
const ATTEMPTS_WHILE_STOPPING: u32 = 5;
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `attempt` until it succeeds, pausing longer after each failure (up
/// to [`MAX_BACKOFF`]). Gives up, returning false, only once `stopping` is
/// set and [`ATTEMPTS_WHILE_STOPPING`] more attempts have failed, so that a
/// broken store cannot hang a shutdown.
fn retry<E>(
    mut attempt: impl FnMut() -> Result<(), E>,
    mut failed: impl FnMut(u32, E),
    stopping: &AtomicBool,
    mut pause: impl FnMut(Duration),
) -> bool {
    let (mut attempts, mut while_stopping) = (0u32, 0u32);
    loop {
        match attempt() {
            Ok(()) => return true,
            Err(error) => {
                attempts += 1;
                failed(attempts, error);
                if stopping.load(Ordering::Relaxed) {
                    while_stopping += 1;
                    if while_stopping >= ATTEMPTS_WHILE_STOPPING {
                        return false;
                    }
                }
                pause((Duration::from_millis(100) * attempts).min(MAX_BACKOFF));
            }
        }
    }
}

fn write(
    store: &Blocking,
    records: &mut Vec<InvocationRecord>,
    logs: &mut Vec<LogLine>,
    pending: &AtomicU64,
    stopping: &AtomicBool,
) {
    if !records.is_empty() {
        // Records are what usage is billed on: a failed write is retried
        // until it succeeds, except when the server is stopping.
        let written = retry(
            || store.insert_records(records),
            |attempt, error| {
                tracing::error!(
                    "writing {} invocation records failed (attempt {attempt}): {error}",
                    records.len()
                )
            },
            stopping,
            std::thread::sleep,
        );
        if !written {
            tracing::error!(
                "gave up writing {} invocation records while stopping: they are lost",
                records.len()
            );
        }
        records.clear();
    }
    if !logs.is_empty() {
        if let Err(error) = store.insert_logs(logs) {
            tracing::error!("writing {} log lines failed: {error}", logs.len());
        }
        pending.fetch_sub(logs.len() as u64, Ordering::Relaxed);
        logs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_write_is_retried_until_it_succeeds_with_growing_pauses() {
        let stopping = AtomicBool::new(false);
        let (mut calls, mut pauses) = (0, Vec::new());
        let written = retry(
            || {
                calls += 1;
                if calls < 80 { Err("disk full") } else { Ok(()) }
            },
            |_, _| {},
            &stopping,
            |pause| pauses.push(pause),
        );
        assert!(written);
        assert_eq!(calls, 80);
        assert_eq!(pauses[0], Duration::from_millis(100));
        assert_eq!(pauses[1], Duration::from_millis(200));
        assert_eq!(*pauses.last().unwrap(), MAX_BACKOFF);
    }

    #[test]
    fn while_stopping_a_broken_store_is_given_up_after_a_few_attempts() {
        let stopping = AtomicBool::new(false);
        let mut calls = 0;
        let written = retry(
            || {
                calls += 1;
                if calls == 10 {
                    stopping.store(true, Ordering::Relaxed);
                }
                Err::<(), _>("disk full")
            },
            |_, _| {},
            &stopping,
            |_| {},
        );
        assert!(!written);
        assert_eq!(calls, 9 + ATTEMPTS_WHILE_STOPPING);
    }
}
