//! Group commit for key-value, document and object writes: one writer
//! thread with a connection of its own takes every write that is waiting,
//! applies them in order, makes them durable together, then answers each
//! caller. Key-value writes go to the key-value journal (one append, one
//! `fdatasync`; see `kv_journal`), the others into one transaction (one
//! commit, one fsync). A caller is answered only after that, so
//! acknowledged still means durable; under concurrency, one sync covers
//! many writes.
use crate::docs::{DocWrite, DocWritten, Index};
use crate::docs_sqlite::{
    apply_create_index, apply_doc_batch, apply_drop_collection, apply_drop_index, apply_fill_index,
    apply_finish_index,
};
use crate::events::{
    AsyncAttempt, AsyncInvocation, AsyncRequest, Event, FailedEvent, FailedFilter, NewEvent, Settle,
};
use crate::events_sqlite;
use crate::kv_journal::{KvJournal, KvOverlay};
use crate::objects::{ObjectDone, ObjectOp};
use crate::objects_sqlite::apply_object_op;
use crate::sqlite::open_connection;
use crate::{KvBatchOp, StoreError};
use domain::{CollectionName, FunctionName, ProjectId, TriggerName};
use rusqlite::{Connection, Transaction};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;

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
    /// Writes the key-value entries acknowledged so far into the table.
    KvCheckpoint,
    /// Deletes every entry of a key-value store.
    KvDropStore {
        project: ProjectId,
        store: domain::StoreName,
    },
    /// An atomic batch of document writes.
    Docs {
        project: ProjectId,
        /// The function that writes, if a function does.
        origin: Option<FunctionName>,
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
    DropCollection {
        project: ProjectId,
        collection: CollectionName,
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
    /// An object write, and the function making it, if a function does.
    Objects(ObjectOp, Option<FunctionName>),
    Publish {
        project: ProjectId,
        events: Vec<NewEvent>,
    },
    Advance {
        project: ProjectId,
        function: FunctionName,
        trigger: TriggerName,
        cursor: i64,
        failed: Vec<FailedEvent>,
    },
    SetCursor {
        project: ProjectId,
        function: FunctionName,
        trigger: TriggerName,
        cursor: i64,
    },
    Settle {
        project: ProjectId,
        function: FunctionName,
        trigger: TriggerName,
        seq: i64,
        settle: Settle,
    },
    Redrive {
        project: ProjectId,
        filter: FailedFilter,
    },
    PurgeDead {
        project: ProjectId,
        filter: FailedFilter,
    },
    PruneEvents {
        project: ProjectId,
        before: domain::UnixMillis,
    },
    EnqueueAsync {
        project: ProjectId,
        function: FunctionName,
        request: AsyncRequest,
    },
    RecordAsync {
        project: ProjectId,
        id: String,
        attempt: AsyncAttempt,
    },
    WatchStream {
        project: ProjectId,
        stream: String,
    },
    Schedule {
        project: ProjectId,
        function: FunctionName,
        trigger: TriggerName,
        event: NewEvent,
        at: domain::UnixMillis,
    },
    /// Invocation records (from the recorder).
    Records(Vec<domain::InvocationRecord>),
    /// Guest log lines (from the recorder).
    Logs(Vec<domain::LogLine>),
}

/// What the writer answers, by kind of write.
#[derive(Debug)]
pub(crate) enum Written {
    Kv(KvDone),
    Checkpointed,
    Docs(Vec<DocWritten>),
    Index(bool),
    /// A new index's collection and index numbers.
    IndexStarted(i64, i64),
    /// Where filling continues; `None` when done.
    Filled(Option<String>),
    Objects(ObjectDone),
    Events(Vec<Event>),
    Queued(AsyncInvocation, bool),
    Done,
    Count(u64),
}

impl WriteOp {
    /// Applies a write other than key-value in the group's transaction. A
    /// failed write leaves nothing behind: a document batch runs in a
    /// savepoint of its own.
    fn apply(&self, transaction: &mut Transaction<'_>) -> Result<Written, StoreError> {
        match self {
            WriteOp::Kv(_) | WriteOp::KvCheckpoint | WriteOp::KvDropStore { .. } => Err(
                StoreError::WriteFailed("a key-value write in the transaction".to_owned()),
            ),
            WriteOp::Docs {
                project,
                origin,
                writes,
            } => apply_doc_batch(transaction, project, origin.as_ref(), writes).map(Written::Docs),
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
            WriteOp::DropCollection {
                project,
                collection,
            } => apply_drop_collection(transaction, project, collection).map(Written::Index),
            WriteOp::FillIndex {
                cid,
                ino,
                after,
                limit,
            } => apply_fill_index(transaction, *cid, *ino, after, *limit).map(Written::Filled),
            WriteOp::FinishIndex { cid, ino } => {
                apply_finish_index(transaction, *cid, *ino).map(Written::Index)
            }
            WriteOp::Objects(op, origin) => {
                apply_object_op(transaction, op, origin.as_ref()).map(Written::Objects)
            }
            WriteOp::Publish { project, events } => {
                events_sqlite::apply_publish(transaction, project, events).map(Written::Events)
            }
            WriteOp::Advance {
                project,
                function,
                trigger,
                cursor,
                failed,
            } => events_sqlite::apply_advance(
                transaction,
                project,
                function,
                trigger,
                *cursor,
                failed,
            )
            .map(|()| Written::Done),
            WriteOp::SetCursor {
                project,
                function,
                trigger,
                cursor,
            } => events_sqlite::apply_set_cursor(transaction, project, function, trigger, *cursor)
                .map(Written::Index),
            WriteOp::Settle {
                project,
                function,
                trigger,
                seq,
                settle,
            } => events_sqlite::apply_settle(transaction, project, function, trigger, *seq, settle)
                .map(|()| Written::Done),
            WriteOp::Redrive { project, filter } => {
                events_sqlite::apply_redrive(transaction, project, filter).map(Written::Count)
            }
            WriteOp::PurgeDead { project, filter } => {
                events_sqlite::apply_purge_dead(transaction, project, filter).map(Written::Count)
            }
            WriteOp::PruneEvents { project, before } => {
                events_sqlite::apply_prune(transaction, project, *before).map(Written::Count)
            }
            WriteOp::EnqueueAsync {
                project,
                function,
                request,
            } => events_sqlite::apply_enqueue_async(transaction, project, function, request)
                .map(|(invocation, queued)| Written::Queued(invocation, queued)),
            WriteOp::RecordAsync {
                project,
                id,
                attempt,
            } => events_sqlite::apply_record_async(transaction, project, id, attempt)
                .map(|()| Written::Done),
            WriteOp::Schedule {
                project,
                function,
                trigger,
                event,
                at,
            } => events_sqlite::apply_schedule(transaction, project, function, trigger, event, *at)
                .map(|event| Written::Events(vec![event])),
            WriteOp::Records(records) => {
                crate::sqlite::apply_insert_records(transaction, records).map(|()| Written::Done)
            }
            WriteOp::Logs(lines) => {
                crate::sqlite::apply_insert_logs(transaction, lines).map(|()| Written::Done)
            }
            WriteOp::WatchStream { project, stream } => {
                events_sqlite::apply_watch_stream(transaction, project, stream)
                    .map(|()| Written::Done)
            }
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

/// Called after a commit that logged events, with the streams they are on.
pub(crate) type EventHook = Arc<RwLock<Option<crate::events::Hook>>>;

pub struct Writer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer on the database at `path`, after replaying the
    /// key-value journal at `journal` into it.
    pub fn start(
        path: &Path,
        journal: &Path,
        overlay: Arc<KvOverlay>,
        hook: EventHook,
    ) -> Result<Self, StoreError> {
        let mut connection = open_connection(path)?;
        let journal = KvJournal::open(&mut connection, journal, overlay)?;
        let (jobs, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wok-writer".to_owned())
            .spawn(move || {
                disfavor_on_wake_up();
                write_loop(connection, journal, receiver, hook)
            })
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

/// Puts the writer thread under `SCHED_BATCH`: same share of the CPU,
/// but waking up does not preempt the thread that woke it. When the
/// callers share its core, the writer then runs once they have queued what
/// they had (or their slice ends), not at the first write: batches grow,
/// and one sync covers more writes. With a core of its own, nothing
/// changes. Best effort: where the policy is refused, the writer runs as
/// any thread.
fn disfavor_on_wake_up() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call,
    // which only reads it.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

fn write_loop(
    mut connection: Connection,
    mut journal: KvJournal,
    receiver: Receiver<Job>,
    hook: EventHook,
) {
    loop {
        // Waiting for writes, up to when the key-value journal is due for
        // a checkpoint.
        let first = match journal.checkpoint_due() {
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(wait) => match receiver.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    // A failed checkpoint is tried again later; meanwhile
                    // the entries stay in the journal and in memory.
                    let _ = journal.checkpoint(&mut connection);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let batch = gather(first, &receiver);
        let answers = run_batch(&mut connection, &mut journal, &batch);
        for (job, answer) in batch.into_iter().zip(answers) {
            job.reply.send(answer);
        }
        let logged = events_sqlite::take_logged();
        if !logged.is_empty()
            && let Some(hook) = hook
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
        {
            hook(&logged);
        }
        if journal.checkpoint_due() == Some(std::time::Duration::ZERO) {
            let _ = journal.checkpoint(&mut connection);
        }
    }
    let _ = journal.checkpoint(&mut connection);
}

/// Applies a batch and makes it durable; one answer per job, in order.
fn run_batch(connection: &mut Connection, journal: &mut KvJournal, batch: &[Job]) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = batch.iter().map(|_| None).collect();
    // Key-value writes: into the journal, one append and one sync.
    let mut journaled = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        if let WriteOp::Kv(op) = &job.op {
            let answer = journal.apply(connection, op).map(Written::Kv);
            if answer.is_ok() {
                journaled.push(i);
            }
            answers[i] = Some(answer);
        }
    }
    if let Err(error) = journal.commit() {
        for i in journaled {
            answers[i] = Some(Err(error.again()));
        }
    }
    // Checkpoints and dropped stores asked for: after the batch's
    // key-value writes.
    for (i, job) in batch.iter().enumerate() {
        match &job.op {
            WriteOp::KvCheckpoint => {
                answers[i] = Some(
                    journal
                        .checkpoint(connection)
                        .map(|()| Written::Checkpointed),
                );
            }
            WriteOp::KvDropStore { project, store } => {
                answers[i] = Some(
                    journal
                        .drop_store(connection, project, store)
                        .map(Written::Index),
                );
            }
            _ => {}
        }
    }
    // The other writes: one transaction, one commit.
    let others: Vec<usize> = (0..batch.len()).filter(|i| answers[*i].is_none()).collect();
    if !others.is_empty() {
        let outcome = (|| -> Result<Vec<Answer>, StoreError> {
            // Immediate: take the write lock first (waiting for it, up to the
            // busy timeout). A deferred transaction that read first would
            // fail at once if another connection wrote in between.
            let mut transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(others.len());
            for &i in &others {
                // A write whose condition fails writes nothing and fails
                // alone; a database error fails the whole transaction.
                match batch[i].op.apply(&mut transaction) {
                    Ok(done) => results.push(Ok(done)),
                    Err(error @ (StoreError::Database(_) | StoreError::DiskFull(_))) => {
                        return Err(error);
                    }
                    Err(error) => results.push(Err(error)),
                }
            }
            transaction.commit()?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                for (i, result) in others.into_iter().zip(results) {
                    answers[i] = Some(result);
                }
            }
            Err(error) => {
                for i in others {
                    answers[i] = Some(Err(error.again()));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Err(stopped())))
        .collect()
}

/// The batch that starts with `first`: every write waiting, and no more.
/// (Waiting for more would leave the core idle while the batch syncs:
/// the writes that arrive meanwhile make the next batch.)
fn gather(first: Job, receiver: &Receiver<Job>) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    batch
}
