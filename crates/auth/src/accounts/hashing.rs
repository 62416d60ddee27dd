//! Password hashing on threads of its own: one per core, at the lowest OS
//! priority (`nice` 19), so a request that arrives while a hash runs takes
//! the core at once and a login flood slows sign-ins, not the other
//! routes (hashes use the time requests leave; `bench/auth.sh`: hello's
//! p99 beside a flood went from 3.2x to 1.3x of alone). At most
//! [`PASSWORD_QUEUE`] hashes wait; beyond, [`Busy`]. A hash whose caller
//! has gone (its connection closed) is skipped.
use super::PASSWORD_QUEUE;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// The hashing threads' `nice`: the lowest priority, a batch job's.
const LOWER_PRIORITY: i32 = 19;

type Job = Box<dyn FnOnce() + Send>;

/// The queue is full: try again later.
#[derive(Debug)]
pub struct Busy;

pub struct Hashers {
    jobs: SyncSender<Job>,
}

impl Hashers {
    /// Starts `threads` hashing threads; they end when this drops.
    pub fn start(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(PASSWORD_QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("wok-hash-{n}"))
                .spawn(move || hash_loop(&queue));
            if let Err(error) = started {
                tracing::error!(%error, "could not start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Runs `work` on a hashing thread; None if it panicked or no thread
    /// runs.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Busy> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller went away while this waited.
            if answer.is_closed() {
                return;
            }
            let _ = answer.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => Ok(answered.await.ok()),
            Err(TrySendError::Full(_)) => Err(Busy),
            Err(TrySendError::Disconnected(_)) => Ok(None),
        }
    }
}

fn hash_loop(queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match queue.recv() {
                Ok(job) => job,
                // The pool was dropped.
                Err(_) => return,
            }
        };
        // A panic drops the job's answer (its caller sees a failure) and
        // keeps the thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Lowers this thread's scheduling priority (Linux keeps `nice` per
/// thread, and `setpriority` of the process 0 is the calling thread's).
/// Raising it needs no privilege, lowering it back would, so the thread
/// keeps it for life.
fn lower_priority() {
    if let Err(error) = rustix::process::setpriority_process(None, LOWER_PRIORITY) {
        tracing::warn!(%error, "password hashing runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, Waker};

    type Pending<T> = Pin<Box<dyn Future<Output = Result<Option<T>, Busy>> + Send>>;

    /// Polls once: a job is queued (or refused) before `run` first waits.
    fn queue<T: Send + 'static>(
        hashers: &Arc<Hashers>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> (Pending<T>, Poll<Result<Option<T>, Busy>>) {
        let hashers = hashers.clone();
        let mut pending: Pending<T> = Box::pin(async move { hashers.run(work).await });
        let first = pending
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        (pending, first)
    }

    /// Holds the only hashing thread until the answer's sender is used;
    /// what it returns is that thread's `nice`.
    fn hold(hashers: &Arc<Hashers>) -> (Pending<i32>, std::sync::mpsc::Sender<()>) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (held, first) = queue(hashers, move || {
            started.send(()).unwrap();
            released.recv().unwrap();
            rustix::process::getpriority_process(None).unwrap()
        });
        assert!(first.is_pending());
        running.recv().unwrap();
        (held, release)
    }

    #[tokio::test]
    async fn hashes_run_at_a_lower_priority_and_a_full_queue_is_busy() {
        let hashers = Arc::new(Hashers::start(1));
        let (held, release) = hold(&hashers);
        let waiting: Vec<_> = (0..PASSWORD_QUEUE)
            .map(|n| {
                let (pending, first) = queue(&hashers, move || n);
                assert!(first.is_pending(), "job {n} is queued");
                pending
            })
            .collect();
        let (_, refused) = queue(&hashers, || 0);
        assert!(matches!(refused, Poll::Ready(Err(Busy))));
        release.send(()).unwrap();
        assert_eq!(held.await.unwrap(), Some(LOWER_PRIORITY));
        for (n, pending) in waiting.into_iter().enumerate() {
            assert_eq!(pending.await.unwrap(), Some(n));
        }
        // Room again.
        assert_eq!(hashers.run(|| 7).await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_panic_fails_its_caller_only_and_a_gone_caller_is_skipped() {
        let hashers = Arc::new(Hashers::start(1));
        let failed: Option<()> = hashers.run(|| panic!("a bad hash")).await.unwrap();
        assert!(failed.is_none());
        let (held, release) = hold(&hashers);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let (gone, first) = queue(&hashers, move || flag.store(true, Ordering::SeqCst));
        assert!(first.is_pending());
        drop(gone);
        release.send(()).unwrap();
        held.await.unwrap();
        assert_eq!(hashers.run(|| 3).await.unwrap(), Some(3));
        assert!(!ran.load(Ordering::SeqCst), "the job of a caller gone ran");
    }
}
