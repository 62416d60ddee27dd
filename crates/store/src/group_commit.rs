//! Group commit for key-value writes: one writer thread with a connection
//! of its own takes every write that is waiting, applies them in order in
//! one transaction, commits once (one fsync), then answers each caller. A
//! caller is answered only after the commit, so acknowledged still means
//! durable; under concurrency, one fsync covers many writes.
use crate::KvBatchOp;
use crate::StoreError;
use crate::sqlite::{apply_kv_op, open_connection};
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// Most expired entries deleted from disk with one batch.
const PURGE_PER_BATCH: i64 = 256;

/// What a write answers.
#[derive(Debug, PartialEq, Eq)]
pub enum KvDone {
    Version(u64),
    Deleted(bool),
    Sum(i64),
}

/// Where a write's answer goes: a blocked thread or an awaiting task.
enum Reply {
    Blocking(SyncSender<Result<KvDone, StoreError>>),
    Async(futures_channel::oneshot::Sender<Result<KvDone, StoreError>>),
}

impl Reply {
    fn send(self, result: Result<KvDone, StoreError>) {
        match self {
            Reply::Blocking(sender) => {
                let _ = sender.send(result);
            }
            Reply::Async(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

struct Job {
    op: KvBatchOp,
    reply: Reply,
}

pub struct KvWriter {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl KvWriter {
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let connection = open_connection(path)?;
        let (jobs, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wok-kv-writer".to_owned())
            .spawn(move || write_loop(connection, receiver))
            .map_err(|error| StoreError::WriteFailed(format!("starting the writer: {error}")))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn submit(&self, op: KvBatchOp, reply: Reply) {
        let job = Job { op, reply };
        if let Some(jobs) = &self.jobs
            && let Err(mpsc::SendError(job)) = jobs.send(job)
        {
            job.reply.send(Err(stopped()));
        }
    }

    /// Applies `op` in the next batch; returns once it is durable.
    pub fn write(&self, op: KvBatchOp) -> Result<KvDone, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(op, Reply::Blocking(reply));
        answer.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Queues `op` for the next batch; the answer arrives once it is
    /// durable, with no thread blocked meanwhile.
    pub fn write_async(&self, op: KvBatchOp) -> PendingWrite {
        let (reply, answer) = futures_channel::oneshot::channel();
        self.submit(op, Reply::Async(reply));
        PendingWrite(answer)
    }
}

fn stopped() -> StoreError {
    StoreError::WriteFailed("the writer has stopped".to_owned())
}

/// A write on its way to disk: resolves once it is durable (or failed).
pub struct PendingWrite(futures_channel::oneshot::Receiver<Result<KvDone, StoreError>>);

impl std::future::Future for PendingWrite {
    type Output = Result<KvDone, StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(stopped())))
    }
}

impl Drop for KvWriter {
    fn drop(&mut self) {
        // Closing the channel ends the loop once the queued writes are done.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(mut connection: Connection, receiver: Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let outcome = (|| -> Result<Vec<Result<KvDone, StoreError>>, rusqlite::Error> {
            let transaction = connection.transaction()?;
            let mut results = Vec::with_capacity(batch.len());
            for job in &batch {
                // A write whose condition fails writes nothing and fails
                // alone; a database error fails the whole batch.
                match apply_kv_op(&transaction, &job.op) {
                    Ok(done) => results.push(Ok(done)),
                    Err(StoreError::Database(error)) => return Err(error),
                    Err(error) => results.push(Err(error)),
                }
            }
            // Expired entries are invisible already; each batch also deletes
            // some from disk, in the same commit.
            if let Some(now) = batch.iter().map(|job| job.op.now()).max() {
                transaction
                    .prepare_cached(
                        "DELETE FROM kv WHERE (project, store, key) IN
                           (SELECT project, store, key FROM kv WHERE expires_at <= ? LIMIT ?)",
                    )?
                    .execute(rusqlite::params![now, PURGE_PER_BATCH])?;
            }
            transaction.commit()?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    job.reply.send(result);
                }
            }
            Err(error) => {
                for job in batch {
                    job.reply
                        .send(Err(StoreError::WriteFailed(error.to_string())));
                }
            }
        }
    }
}
