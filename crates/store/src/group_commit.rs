//! Group commit for key-value and document writes: one writer thread with a
//! connection of its own takes every write that is waiting, applies them in
//! order in one transaction, commits once (one fsync), then answers each
//! caller. A caller is answered only after the commit, so acknowledged
//! still means durable; under concurrency, one fsync covers many writes.
use crate::docs::{DocWrite, DocWritten, Index};
use crate::docs_sqlite::{
    apply_create_index, apply_doc_batch, apply_drop_index, apply_fill_index, apply_finish_index,
};
use crate::objects::{ObjectDone, ObjectOp};
use crate::objects_sqlite::apply_object_op;
use crate::sqlite::{KvVersions, apply_kv_op, open_connection};
use crate::{KvBatchOp, StoreError};
use domain::{CollectionName, ProjectId};
use rusqlite::{Connection, Transaction};
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

/// One write the writer thread applies.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Kv(KvBatchOp),
    /// An atomic batch of document writes.
    Docs {
        project: ProjectId,
        writes: Vec<DocWrite>,
    },
    CreateIndex {
        project: ProjectId,
        collection: CollectionName,
        index: Index,
    },
    DropIndex {
        project: ProjectId,
        collection: CollectionName,
        name: String,
    },
    /// One chunk of an index being filled (a chunk a batch, so other
    /// writes go on between chunks).
    FillIndex {
        cid: i64,
        ino: i64,
        after: String,
        limit: u32,
    },
    FinishIndex {
        cid: i64,
        ino: i64,
    },
    Objects(ObjectOp),
}

/// What the writer answers, by kind of write.
#[derive(Debug)]
pub(crate) enum Written {
    Kv(KvDone),
    Docs(Vec<DocWritten>),
    Index(bool),
    /// A new index's collection and index numbers.
    IndexStarted(i64, i64),
    /// Where filling continues; `None` when done.
    Filled(Option<String>),
    Objects(ObjectDone),
}

impl WriteOp {
    /// Applies the write in the group's transaction. A failed write leaves
    /// nothing behind: a document batch runs in a savepoint of its own.
    fn apply(
        &self,
        transaction: &mut Transaction<'_>,
        versions: &mut KvVersions,
    ) -> Result<Written, StoreError> {
        match self {
            WriteOp::Kv(op) => apply_kv_op(transaction, versions, op).map(Written::Kv),
            WriteOp::Docs { project, writes } => {
                apply_doc_batch(transaction, project, writes).map(Written::Docs)
            }
            WriteOp::CreateIndex {
                project,
                collection,
                index,
            } => apply_create_index(transaction, project, collection, index)
                .map(|(cid, ino)| Written::IndexStarted(cid, ino)),
            WriteOp::DropIndex {
                project,
                collection,
                name,
            } => apply_drop_index(transaction, project, collection, name).map(Written::Index),
            WriteOp::FillIndex {
                cid,
                ino,
                after,
                limit,
            } => apply_fill_index(transaction, *cid, *ino, after, *limit).map(Written::Filled),
            WriteOp::FinishIndex { cid, ino } => {
                apply_finish_index(transaction, *cid, *ino).map(Written::Index)
            }
            WriteOp::Objects(op) => apply_object_op(transaction, op).map(Written::Objects),
        }
    }
}

type Answer = Result<Written, StoreError>;

/// Where a write's answer goes: a blocked thread or an awaiting task.
enum Reply {
    Blocking(SyncSender<Answer>),
    Async(futures_channel::oneshot::Sender<Answer>),
}

impl Reply {
    fn send(self, result: Answer) {
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
    op: WriteOp,
    reply: Reply,
}

pub struct Writer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let connection = open_connection(path)?;
        let (jobs, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wok-writer".to_owned())
            .spawn(move || write_loop(connection, receiver))
            .map_err(|error| StoreError::WriteFailed(format!("starting the writer: {error}")))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn submit(&self, op: WriteOp, reply: Reply) {
        let job = Job { op, reply };
        if let Some(jobs) = &self.jobs
            && let Err(mpsc::SendError(job)) = jobs.send(job)
        {
            job.reply.send(Err(stopped()));
        }
    }

    /// Applies `op` in the next batch; returns once it is durable.
    pub(crate) fn write<T>(
        &self,
        op: WriteOp,
        expect: fn(Written) -> Option<T>,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(op, Reply::Blocking(reply));
        unpack(answer.recv().unwrap_or_else(|_| Err(stopped())), expect)
    }

    /// Queues `op` for the next batch; the answer arrives once it is
    /// durable, with no thread blocked meanwhile.
    pub(crate) fn write_async<T>(
        &self,
        op: WriteOp,
        expect: fn(Written) -> Option<T>,
    ) -> PendingWrite<T> {
        let (reply, answer) = futures_channel::oneshot::channel();
        self.submit(op, Reply::Async(reply));
        PendingWrite { answer, expect }
    }
}

fn stopped() -> StoreError {
    StoreError::WriteFailed("the writer has stopped".to_owned())
}

fn unpack<T>(answer: Answer, expect: fn(Written) -> Option<T>) -> Result<T, StoreError> {
    let written = answer?;
    let description = format!("{written:?}");
    expect(written).ok_or_else(|| {
        StoreError::WriteFailed(format!(
            "the writer answered {description} to another kind of write"
        ))
    })
}

/// A write on its way to disk: resolves once it is durable (or failed).
pub struct PendingWrite<T = KvDone> {
    answer: futures_channel::oneshot::Receiver<Answer>,
    expect: fn(Written) -> Option<T>,
}

impl<T> std::future::Future for PendingWrite<T> {
    type Output = Result<T, StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let expect = self.expect;
        std::pin::Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| unpack(answer.unwrap_or_else(|_| Err(stopped())), expect))
    }
}

impl<T> Unpin for PendingWrite<T> {}

impl Drop for Writer {
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
        let outcome = (|| -> Result<Vec<Answer>, rusqlite::Error> {
            // Immediate: take the write lock first (waiting for it, up to the
            // busy timeout). A deferred transaction that read first would
            // fail at once if another connection wrote in between.
            let mut transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut versions = KvVersions::default();
            let mut results = Vec::with_capacity(batch.len());
            for job in &batch {
                // A write whose condition fails writes nothing and fails
                // alone; a database error fails the whole batch.
                match job.op.apply(&mut transaction, &mut versions) {
                    Ok(done) => results.push(Ok(done)),
                    Err(StoreError::Database(error)) => return Err(error),
                    Err(error) => results.push(Err(error)),
                }
            }
            // Expired entries are invisible already; each batch also deletes
            // some from disk, in the same commit.
            let kv_now = batch.iter().filter_map(|job| match &job.op {
                WriteOp::Kv(op) => Some(op.now()),
                _ => None,
            });
            versions.flush(&transaction)?;
            if let Some(now) = kv_now.max() {
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
