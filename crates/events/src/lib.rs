//! Event delivery: one worker per function trigger reads its stream from
//! the subscription's cursor, hands events to a [`Deliver`], moves the
//! cursor on, and retries failed events with exponential backoff and jitter
//! until they succeed or become dead letters. Cron triggers get a ticker
//! that logs a tick event at each time of the schedule.
//!
//! Layer: services. Rules over the `store` event log; knows no HTTP and no
//! runtime (how an event reaches a function is the [`Deliver`]'s business).
//!
//! Delivery is at least once: the cursor moves only after every event up
//! to it was delivered, skipped by the trigger's filter, or recorded as
//! failed, so a crash before that delivers them again.

mod hub;
mod schedule;
mod worker;

pub use hub::{FollowError, Follower, Hub};
pub use schedule::Schedule;

use domain::{FunctionName, ProjectId, TriggerName, TriggerSource, TriggerSpec, UnixMillis};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::EventStore;
use store::events::Event;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where a trigger's events go.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub project: ProjectId,
    pub function: FunctionName,
    pub trigger: TriggerSpec,
}

/// Runs a function on events. Resolves `Ok` when the function acknowledged
/// them (for HTTP: a 2xx), `Err` with a reason otherwise (an error status,
/// a trap, a timeout, no such function).
pub trait Deliver: Send + Sync + 'static {
    /// `events` holds one event, or up to the trigger's batch size;
    /// `attempt` counts from 1.
    fn deliver(
        &self,
        target: Arc<Target>,
        events: Vec<Event>,
        attempt: u32,
    ) -> BoxFuture<Result<(), String>>;

    /// An event became a dead letter after `attempts` failed deliveries
    /// (called once it is recorded as one).
    fn dead_lettered(
        &self,
        target: Arc<Target>,
        event: Event,
        attempts: u32,
        error: String,
    ) -> BoxFuture<()> {
        let _ = (target, event, attempts, error);
        Box::pin(async {})
    }
}

/// Wall-clock time, injectable in tests: what retries and schedules wait
/// for (`domain::Clock`, and a way to wait for a time).
pub trait Clock: domain::Clock {
    /// Resolves once [`domain::Clock::now`] reaches `at`.
    fn sleep_until(&self, at: UnixMillis) -> BoxFuture<()>;
}

pub use domain::SystemClock;

impl Clock for SystemClock {
    fn sleep_until(&self, at: UnixMillis) -> BoxFuture<()> {
        let wait = Duration::from_millis(at.saturating_sub(domain::now_millis()).max(0) as u64);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that stands still until it is moved: tests move time instead of
/// waiting for it. Starts at the wall clock's time.
pub struct ManualClock {
    now: std::sync::Arc<std::sync::atomic::AtomicI64>,
    moved: tokio::sync::watch::Sender<()>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            now: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(domain::now_millis())),
            moved: tokio::sync::watch::channel(()).0,
        }
    }
}

impl ManualClock {
    /// Sets the time (backwards too); whoever sleeps until a time now
    /// reached wakes up.
    pub fn set(&self, now: UnixMillis) {
        self.now.store(now, std::sync::atomic::Ordering::SeqCst);
        self.moved.send_replace(());
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.set(domain::Clock::now(self) + by.as_millis() as i64);
    }
}

impl domain::Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn sleep_until(&self, at: UnixMillis) -> BoxFuture<()> {
        let now = self.now.clone();
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            while now.load(std::sync::atomic::Ordering::SeqCst) < at {
                if moved.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

/// Checks what the domain cannot: that a cron trigger's schedule and time
/// zone parse.
pub fn validate_trigger(trigger: &TriggerSpec) -> Result<(), String> {
    match &trigger.source {
        TriggerSource::Cron { schedule, timezone } => {
            Schedule::parse(schedule, timezone).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// Counters of deliveries, for metrics.
pub trait DeliveryMetrics: Send + Sync + 'static {
    /// An event was delivered `latency` after it was logged.
    fn delivered(&self, target: &Target, latency: Duration);
    /// A delivery failed and will be tried again.
    fn retried(&self, target: &Target);
    /// An event became a dead letter.
    fn dead_lettered(&self, target: &Target);
    /// Where the trigger stands: events not yet read, events waiting for a
    /// retry, dead letters.
    fn standing(&self, target: &Target, backlog: u64, retrying: u64, dead: u64);
}

/// Metrics that go nowhere.
pub struct NoMetrics;

impl DeliveryMetrics for NoMetrics {
    fn delivered(&self, _: &Target, _: Duration) {}
    fn retried(&self, _: &Target) {}
    fn dead_lettered(&self, _: &Target) {}
    fn standing(&self, _: &Target, _: u64, _: u64, _: u64) {}
}

type Key = (ProjectId, FunctionName, TriggerName);

struct Running {
    target: Arc<Target>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A change counter per stream, bumped after each commit that logged
/// events on it: what wakes the workers and the hub's readers of that
/// stream (and no others).
#[derive(Default)]
pub struct Streams(Mutex<HashMap<(ProjectId, String), tokio::sync::watch::Sender<u64>>>);

impl Streams {
    /// A receiver that changes whenever `stream` has news.
    pub fn watch(&self, project: &ProjectId, stream: &str) -> tokio::sync::watch::Receiver<u64> {
        let mut streams = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        streams.retain(|_, sender| sender.receiver_count() > 0);
        streams
            .entry((project.clone(), stream.to_owned()))
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the readers of `logged`; of every stream when it is empty
    /// (a store that may have missed news: another node's notifications
    /// lost while it reconnected).
    fn bump(&self, logged: &[(ProjectId, String)]) {
        let streams = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.is_empty() {
            for sender in streams.values() {
                sender.send_modify(|count| *count = count.wrapping_add(1));
            }
        }
        for key in logged {
            if let Some(sender) = streams.get(key) {
                sender.send_modify(|count| *count = count.wrapping_add(1));
            }
        }
    }
}

/// What workers share.
pub(crate) struct Shared {
    pub store: Arc<dyn EventStore>,
    pub deliver: Arc<dyn Deliver>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn DeliveryMetrics>,
    pub streams: Arc<Streams>,
    /// This node, as the holder of the triggers' leases.
    pub holder: String,
}

/// The workers of every trigger of every live function. Owned: stop it
/// before shutting down.
pub struct Dispatcher {
    shared: Arc<Shared>,
    running: Mutex<HashMap<Key, Running>>,
}

impl Dispatcher {
    /// Creates the dispatcher and hooks it to the store's commits.
    pub fn new(
        store: Arc<dyn EventStore>,
        deliver: Arc<dyn Deliver>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn DeliveryMetrics>,
    ) -> Arc<Dispatcher> {
        let streams = Arc::new(Streams::default());
        store.on_events(Box::new({
            let streams = streams.clone();
            move |logged| streams.bump(logged)
        }));
        Arc::new(Dispatcher {
            shared: Arc::new(Shared {
                store,
                deliver,
                clock,
                metrics,
                streams,
                holder: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            }),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// This node, as the holder of the leases it takes.
    pub fn holder(&self) -> &str {
        &self.shared.holder
    }

    /// Runs exactly the workers of `targets`: starts the new, stops the
    /// gone, restarts the changed. Call it after every deploy, rollback and
    /// removal (from a tokio runtime).
    pub fn sync(&self, targets: Vec<Target>) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted: HashMap<Key, Target> = targets
            .into_iter()
            .map(|target| {
                let key = (
                    target.project.clone(),
                    target.function.clone(),
                    target.trigger.name.clone(),
                );
                (key, target)
            })
            .collect();
        running.retain(|key, worker| {
            let keep = wanted.get(key) == Some(&*worker.target);
            if !keep {
                let _ = worker.stop.send(true);
            }
            keep
        });
        for (key, target) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let target = Arc::new(target);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let schedule = match &target.trigger.source {
                TriggerSource::Cron { schedule, timezone } => {
                    match Schedule::parse(schedule, timezone) {
                        Ok(schedule) => Some(schedule),
                        Err(error) => {
                            tracing::error!(
                                "function {}/{} trigger {}: {error}",
                                target.project,
                                target.function,
                                target.trigger.name
                            );
                            None
                        }
                    }
                }
                _ => None,
            };
            let tasks = vec![tokio::spawn(worker::leased(
                self.shared.clone(),
                target.clone(),
                schedule,
                stopped,
            ))];
            running.insert(
                key,
                Running {
                    target,
                    stop,
                    tasks,
                },
            );
        }
    }

    /// Moves a trigger's cursor back (or forward) to the last event before
    /// `from`, so its events from then on are delivered again. The worker
    /// is stopped while the cursor moves, so it cannot move it on over the
    /// replay. Returns the new cursor, or `None` if the trigger has no
    /// subscription.
    pub async fn replay(
        &self,
        target: &Target,
        from: UnixMillis,
    ) -> Result<Option<i64>, store::StoreError> {
        let key = (
            target.project.clone(),
            target.function.clone(),
            target.trigger.name.clone(),
        );
        let taken = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&key);
        if let Some(running) = taken {
            let _ = running.stop.send(true);
            for task in running.tasks {
                let _ = task.await;
            }
        }
        let stream = target.trigger.stream(&target.function);
        let position = self
            .shared
            .store
            .position_at(&target.project, &stream, from)
            .await?;
        let moved = self
            .shared
            .store
            .set_cursor(
                &target.project,
                &target.function,
                &target.trigger.name,
                position,
            )
            .await?;
        let mut targets: Vec<Target> = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .map(|running| (*running.target).clone())
            .collect();
        targets.push(target.clone());
        self.sync(targets);
        Ok(moved.then_some(position))
    }

    /// The per-stream change counters (for a [`Hub`]).
    pub fn streams(&self) -> Arc<Streams> {
        self.shared.streams.clone()
    }

    /// Stops every worker: each finishes the deliveries it started, for at
    /// most `grace`; what was not acknowledged by then is delivered again
    /// after the next start.
    pub async fn stop(&self, grace: Duration) {
        let stopped: Vec<Running> = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain()
            .map(|(_, running)| running)
            .collect();
        let mut tasks = Vec::new();
        for running in stopped {
            let _ = running.stop.send(true);
            tasks.extend(running.tasks);
        }
        let aborts: Vec<_> = tasks.iter().map(|task| task.abort_handle()).collect();
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

/// The wait before retry `attempt` (the first retry is attempt 2):
/// `delay * 2^(attempt-2)`, at most [`domain::RetryPolicy::MAX_DELAY`], then
/// a random share between half and all of it (jitter, so retries of many
/// events do not arrive together).
pub fn backoff(delay: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(2).min(30);
    let full = delay
        .saturating_mul(1 << doublings)
        .min(domain::RetryPolicy::MAX_DELAY);
    full.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let delay = Duration::from_secs(1);
        for _ in 0..100 {
            let second = backoff(delay, 2);
            assert!(second >= Duration::from_millis(500) && second <= delay);
            let fourth = backoff(delay, 4);
            assert!(fourth >= Duration::from_secs(2) && fourth <= Duration::from_secs(4));
            let late = backoff(delay, 40);
            assert!(late <= domain::RetryPolicy::MAX_DELAY);
            assert!(late >= domain::RetryPolicy::MAX_DELAY / 2);
        }
    }
}
