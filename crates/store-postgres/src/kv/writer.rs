//! The node's key-value writer: group commit. Writes that wait at the
//! same moment are committed together, in one transaction, so that a
//! busy node pays for one commit (one WAL flush) per batch rather than
//! per write, and answers each write only once its batch has committed.
//!
//! A batch's writes to one key run in the order they came; its keys are
//! taken in one order, (project, store, key), the same on every node, so
//! two batches do not wait on each other's rows in a cycle: each key's
//! first statement makes or locks its row, and the statements of
//! different keys go to the database together (pipelined on one
//! connection), so the first statements run in key order before any
//! second one.
//!
//! When a statement fails, the database spoils the whole transaction:
//! nothing of the batch is written, and each write is then run alone, so
//! that one write's failure is its own. When the connection is lost, the
//! outcome of a commit is unknown: every write of the batch answers a
//! retryable failure, never a false "failed".
//!
//! Bounds: at most [`QUEUE`] writes wait (callers wait for room beyond
//! it), at most [`BATCH`] go in one transaction, and [`WRITERS`] batches
//! are in flight at once, each holding one connection of the pool while
//! it runs.
use super::{Key, Write, Written, apply};
use crate::{Db, Error, Result};
use deadpool_postgres::{Object, Pool};
use domain::UnixMillis;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::StoreError;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Writes that may wait for a writer.
const QUEUE: usize = 4096;
/// Most writes committed in one transaction.
const BATCH: usize = 256;
/// Batches in flight at once.
const WRITERS: usize = 4;

struct Job {
    key: Key,
    write: Write,
    now: UnixMillis,
    answer: oneshot::Sender<Result<Written, StoreError>>,
}

/// The handle of a node's writer: its tasks end once every handle is gone.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    transactions: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer's tasks (on the current Tokio runtime).
    pub(crate) fn start(pool: Pool) -> Self {
        let (jobs, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        let transactions = Arc::new(AtomicU64::new(0));
        for _ in 0..WRITERS {
            tokio::spawn(run(pool.clone(), waiting.clone(), transactions.clone()));
        }
        Self { jobs, transactions }
    }

    /// Runs `write` in the next batch; its answer once that has committed.
    pub(crate) async fn write(
        &self,
        key: Key,
        write: Write,
        now: UnixMillis,
    ) -> Result<Written, StoreError> {
        let stopped = || StoreError::backend("the key-value writer has stopped", true);
        let (answer, answered) = oneshot::channel();
        let job = Job {
            key,
            write,
            now,
            answer,
        };
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Transactions committed so far.
    pub(crate) fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

/// One writer task: takes what waits (up to a batch) and commits it.
async fn run(pool: Pool, waiting: Arc<Mutex<mpsc::Receiver<Job>>>, transactions: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if waiting.lock().await.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // One key's writes keep their order (the sort is stable).
        batch.sort_by(|a, b| a.key.cmp(&b.key));
        let mut client = match pool.get().await {
            Ok(client) => client,
            Err(error) => {
                let error = StoreError::from(Error::from(error));
                for job in batch.drain(..) {
                    let _ = job.answer.send(Err(error.again()));
                }
                continue;
            }
        };
        match together(&mut client, &batch).await {
            Ok(answers) => {
                transactions.fetch_add(1, Ordering::Relaxed);
                for (job, answer) in batch.drain(..).zip(answers) {
                    let _ = job.answer.send(answer);
                }
            }
            Err(error) if client.is_closed() => {
                let error = StoreError::from(error);
                for job in batch.drain(..) {
                    let _ = job.answer.send(Err(error.again()));
                }
            }
            Err(_) => {
                for job in batch.drain(..) {
                    let answer = alone(&mut client, &job).await;
                    if answer.is_ok() {
                        transactions.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = job.answer.send(answer);
                }
            }
        }
    }
}

/// The whole batch in one transaction: each write's answer, or the
/// database's failure (nothing of the batch written, unless the
/// connection was lost during the commit).
async fn together(client: &mut Object, batch: &[Job]) -> Result<Vec<Result<Written, StoreError>>> {
    let transaction = client.transaction().await?;
    let keys = batch.chunk_by(|a, b| a.key == b.key).map(|writes| {
        let transaction = &transaction;
        async move {
            let mut answers = Vec::with_capacity(writes.len());
            for job in writes {
                answers.push(apply(transaction, &job.key, &job.write, job.now).await?);
            }
            Ok::<_, Error>(answers)
        }
    });
    let answers = futures::future::try_join_all(keys).await?;
    transaction.commit().await?;
    Ok(answers.into_iter().flatten().collect())
}

/// One write in a transaction of its own.
async fn alone(client: &mut Object, job: &Job) -> Result<Written, StoreError> {
    let transaction = client.transaction().await.db()?;
    let answer = apply(&transaction, &job.key, &job.write, job.now)
        .await
        .db()?;
    transaction.commit().await.db()?;
    answer
}
