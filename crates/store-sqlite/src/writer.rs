//! Group commit: one writer thread with a connection of its own takes every
//! write that is waiting, applies them in order, makes them durable
//! together, then answers each caller. Key-value writes go to the
//! key-value journal (one append, one `fdatasync`; see `kv_journal`), the
//! others into one transaction (one commit, one fsync). A caller is
//! answered only after that, so acknowledged still means durable; under
//! concurrency, one sync covers many writes.
//!
//! A write is a closure with a typed answer: [`Writer::journal`] for
//! key-value writes, [`Writer::after_journal`] for checkpoints and dropped
//! stores (after the batch's journal sync), [`Writer::transaction`] for
//! everything else. The queue holds them with their answer's type erased
//! behind [`Job`], so nothing is unpacked at run time.
//!
//! The thread runs under `SCHED_BATCH` (see [`disfavor_on_wake_up`]). A
//! batch is every write waiting when the thread wakes, up to `MAX_BATCH`:
//! it does not wait for more, since the writes that arrive while it syncs
//! make the next batch. After a commit that logged events, the thread
//! calls the store's hook with their streams (what wakes the workers and
//! realtime readers of those streams). Between batches it checkpoints the
//! key-value journal when one is due.
//!
//! The thread is owned by [`Writer`]: dropping it closes the queue, and
//! the thread finishes the queued writes, checkpoints the journal a last
//! time and is joined.
use crate::kv_journal::{KvJournal, KvOverlay};
use crate::{Result, open_connection};
use rusqlite::{Connection, Transaction};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use store::StoreError;

/// Most writes in one batch.
const MAX_BATCH: usize = 1024;

/// Called after a commit that logged events, with the streams they are on.
pub(crate) type EventHook = Arc<RwLock<Option<store::events::Hook>>>;

/// When in a batch a write is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Appended to the key-value journal; one sync for all of them.
    Journal,
    /// After the journal's sync: checkpoints and dropped stores.
    AfterJournal,
    /// In the batch's transaction; one commit for all of them.
    Transaction,
}

/// A queued write whose answer's type is its own business.
trait Job: Send {
    fn stage(&self) -> Stage;
    /// Applies a journal-stage write; whether it succeeded.
    fn apply_journal(&mut self, connection: &mut Connection, journal: &mut KvJournal) -> bool;
    /// Applies a transaction-stage write. A failure of the write alone (a
    /// condition, a missing row) is its answer; a backend failure is
    /// returned, and fails the whole transaction.
    fn apply_transaction(
        &mut self,
        transaction: &mut Transaction<'_>,
    ) -> std::result::Result<(), StoreError>;
    /// What the batch's sync or commit failed with: the answer now.
    fn fail(&mut self, error: &StoreError);
    /// Sends the answer to the caller.
    fn answer(self: Box<Self>);
}

type Reply<T> = futures_channel::oneshot::Sender<std::result::Result<T, StoreError>>;

/// A write, its answer once applied, and where the answer goes.
struct Typed<T, F> {
    stage: Stage,
    work: Option<F>,
    answer: Option<std::result::Result<T, StoreError>>,
    reply: Reply<T>,
}

impl<T, F> Typed<T, F> {
    fn finish(self) {
        let answer = self.answer.unwrap_or_else(|| Err(stopped()));
        let _ = self.reply.send(answer);
    }
}

/// A journal-stage write.
struct JournalWrite<T, F>(Typed<T, F>);
/// A transaction-stage write.
struct TransactionWrite<T, F>(Typed<T, F>);

impl<T, F> Job for JournalWrite<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection, &mut KvJournal) -> Result<T> + Send + 'static,
{
    fn stage(&self) -> Stage {
        self.0.stage
    }

    fn apply_journal(&mut self, connection: &mut Connection, journal: &mut KvJournal) -> bool {
        let Some(work) = self.0.work.take() else {
            return false;
        };
        let answer = work(connection, journal).map_err(StoreError::from);
        let applied = answer.is_ok();
        self.0.answer = Some(answer);
        applied
    }

    fn apply_transaction(
        &mut self,
        _: &mut Transaction<'_>,
    ) -> std::result::Result<(), StoreError> {
        unreachable!("a journal write is never in the transaction")
    }

    fn fail(&mut self, error: &StoreError) {
        self.0.answer = Some(Err(error.again()));
    }

    fn answer(self: Box<Self>) {
        self.0.finish();
    }
}

impl<T, F> Job for TransactionWrite<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Transaction<'_>) -> Result<T> + Send + 'static,
{
    fn stage(&self) -> Stage {
        Stage::Transaction
    }

    fn apply_journal(&mut self, _: &mut Connection, _: &mut KvJournal) -> bool {
        unreachable!("a transaction write is never in the journal")
    }

    fn apply_transaction(
        &mut self,
        transaction: &mut Transaction<'_>,
    ) -> std::result::Result<(), StoreError> {
        let Some(work) = self.0.work.take() else {
            return Ok(());
        };
        match work(transaction).map_err(StoreError::from) {
            Err(error) if error.is_backend() => Err(error),
            answer => {
                self.0.answer = Some(answer);
                Ok(())
            }
        }
    }

    fn fail(&mut self, error: &StoreError) {
        self.0.answer = Some(Err(error.again()));
    }

    fn answer(self: Box<Self>) {
        self.0.finish();
    }
}

/// The writer thread and the queue to it.
pub(crate) struct Writer {
    jobs: Option<Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer on the database at `path`, after replaying the
    /// key-value journal at `journal` into it.
    pub(crate) fn start(
        path: &Path,
        journal: &Path,
        overlay: Arc<KvOverlay>,
        hook: EventHook,
    ) -> Result<Self> {
        let mut connection = open_connection(path)?;
        let journal = KvJournal::open(&mut connection, journal, overlay)?;
        let (jobs, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wok-writer".to_owned())
            .spawn(move || {
                disfavor_on_wake_up();
                write_loop(connection, journal, receiver, hook)
            })
            .map_err(|error| StoreError::io("starting the writer", &error))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn submit<T>(
        &self,
        job: Box<dyn Job>,
        answer: futures_channel::oneshot::Receiver<std::result::Result<T, StoreError>>,
    ) -> impl Future<Output = std::result::Result<T, StoreError>> + use<T> {
        if let Some(jobs) = &self.jobs
            && let Err(mpsc::SendError(mut job)) = jobs.send(job)
        {
            job.fail(&stopped());
            job.answer();
        }
        async move { answer.await.unwrap_or_else(|_| Err(stopped())) }
    }

    /// Appends a key-value write to the journal in the next batch; answered
    /// once the journal is synced. Queued at once: writes keep the order
    /// of the calls.
    pub(crate) fn journal<T, F>(
        &self,
        work: F,
    ) -> impl Future<Output = std::result::Result<T, StoreError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut KvJournal) -> Result<T> + Send + 'static,
    {
        self.journal_stage(Stage::Journal, work)
    }

    /// Runs `work` on the journal after the next batch's journal sync
    /// (checkpoints, dropped stores).
    pub(crate) fn after_journal<T, F>(
        &self,
        work: F,
    ) -> impl Future<Output = std::result::Result<T, StoreError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut KvJournal) -> Result<T> + Send + 'static,
    {
        self.journal_stage(Stage::AfterJournal, work)
    }

    fn journal_stage<T, F>(
        &self,
        stage: Stage,
        work: F,
    ) -> impl Future<Output = std::result::Result<T, StoreError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut KvJournal) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = futures_channel::oneshot::channel();
        let job = Box::new(JournalWrite(Typed {
            stage,
            work: Some(work),
            answer: None,
            reply,
        }));
        self.submit(job, answer)
    }

    /// Runs `work` in the next batch's transaction; answered once it is
    /// committed. A failure of `work` that is not the backend's leaves
    /// nothing of it behind only if `work` wrote nothing before failing
    /// (use a savepoint for a write of several statements).
    pub(crate) fn transaction<T, F>(
        &self,
        work: F,
    ) -> impl Future<Output = std::result::Result<T, StoreError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = futures_channel::oneshot::channel();
        // The change events the work logs name the actor of the caller
        // that asked for it, not of the writer thread.
        let actor = domain::actor::Captured::now();
        let work = move |transaction: &mut Transaction<'_>| actor.enter(|| work(transaction));
        let job = Box::new(TransactionWrite(Typed {
            stage: Stage::Transaction,
            work: Some(work),
            answer: None,
            reply,
        }));
        self.submit(job, answer)
    }
}

fn stopped() -> StoreError {
    StoreError::backend("the writer has stopped", false)
}

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
    receiver: Receiver<Box<dyn Job>>,
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
        let mut batch = gather(first, &receiver);
        run_batch(&mut connection, &mut journal, &mut batch);
        for job in batch {
            job.answer();
        }
        let logged = crate::events::take_logged();
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

/// Applies a batch and makes it durable; each job keeps its answer.
fn run_batch(connection: &mut Connection, journal: &mut KvJournal, batch: &mut [Box<dyn Job>]) {
    // Key-value writes: into the journal, one append and one sync.
    let mut journaled = Vec::new();
    for (i, job) in batch.iter_mut().enumerate() {
        if job.stage() == Stage::Journal && job.apply_journal(connection, journal) {
            journaled.push(i);
        }
    }
    if let Err(error) = journal.commit() {
        let error = StoreError::from(error);
        for i in journaled {
            batch[i].fail(&error);
        }
    }
    // Checkpoints and dropped stores asked for: after the batch's
    // key-value writes.
    for job in batch.iter_mut() {
        if job.stage() == Stage::AfterJournal {
            job.apply_journal(connection, journal);
        }
    }
    // The other writes: one transaction, one commit.
    let others: Vec<usize> = (0..batch.len())
        .filter(|&i| batch[i].stage() == Stage::Transaction)
        .collect();
    if others.is_empty() {
        return;
    }
    let outcome = (|| -> std::result::Result<(), StoreError> {
        // Immediate: take the write lock first (waiting for it, up to the
        // busy timeout). A deferred transaction that read first would fail
        // at once if another connection wrote in between.
        let mut transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(crate::Error::from)?;
        for &i in &others {
            // A write whose condition fails writes nothing and fails alone;
            // a backend failure fails the whole transaction.
            batch[i].apply_transaction(&mut transaction)?;
        }
        transaction.commit().map_err(crate::Error::from)?;
        Ok(())
    })();
    if let Err(error) = outcome {
        for i in others {
            batch[i].fail(&error);
        }
    }
}

/// The batch that starts with `first`: every write waiting, and no more.
/// (Waiting for more would leave the core idle while the batch syncs:
/// the writes that arrive meanwhile make the next batch.)
fn gather(first: Box<dyn Job>, receiver: &Receiver<Box<dyn Job>>) -> Vec<Box<dyn Job>> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    batch
}
