//! One trigger's worker: fresh events from the cursor, then retries when
//! due; and a cron trigger's ticker.
//!
//! Each step first retries the failures that are due (`RETRY_LIMIT` at a
//! time). Then it reads the stream from the cursor, `READ_LIMIT` (512)
//! events at a time, passes over what the trigger's filter does not want
//! (change kinds, key prefix and suffix, the function's own writes), and
//! delivers the rest in units: batches of events without an ordering key
//! (up to the trigger's `batch`), and the events of one ordering key one
//! after another, `concurrency` units at once. An event whose key has a
//! failure waiting is not delivered but recorded as waiting behind it.
//! The cursor moves past the read events with the failures recorded in
//! the same write; that write runs on a task of its own while the next
//! read goes on, and is awaited before the next cursor write, before
//! failures are read back, and before waiting idle.
//!
//! A failed event is tried again after `backoff` (exponential, with
//! jitter) until it succeeds or reaches the trigger's attempts or age,
//! and then becomes a dead letter. An idle worker waits for its stream's
//! change counter (`Streams`), the clock's next due retry, or its stop;
//! it looks at the stream on its own only every ten minutes, to refresh
//! the gauges.
//!
//! A cron trigger's ticker logs each tick `TICK_LEAD` (a second) ahead of
//! its time, due for delivery at that time (`EventStore::schedule`), so
//! the retry path delivers it on time with no write on the way. Times
//! passed while the server was down are not made up for.
use crate::{Schedule, Shared, Target, backoff};
use domain::{Change, TriggerSource, UnixMillis};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use store::events::{Event, FailedEvent, NewEvent, Settle};

/// Events read from the stream at a time.
const READ_LIMIT: u32 = 512;
/// Failed events taken for a retry at a time.
const RETRY_LIMIT: u32 = 128;
/// The longest wait without looking at the stream: commits on it (and
/// re-driven or purged dead letters) wake the worker at once, due retries
/// when the clock says, so an idle trigger costs nothing; this only
/// refreshes the gauges of an idle trigger now and then.
const POLL: Duration = Duration::from_secs(600);
/// The wait after a failed read or write before trying again.
const AFTER_ERROR: Duration = Duration::from_secs(1);
/// The gauges of a busy trigger are refreshed at most this often.
const REPORT: Duration = Duration::from_secs(1);

type Stop = tokio::sync::watch::Receiver<bool>;

fn stopped(stop: &Stop) -> bool {
    *stop.borrow()
}

/// Whether the trigger wants this event (its change kinds, key filters and
/// own-writes rule); others are passed over.
fn wanted(target: &Target, event: &Event) -> bool {
    let trigger = &target.trigger;
    // A change the function made itself (to a collection or bucket; a
    // message it publishes to a topic it reads is meant for it).
    let own = !trigger.own_writes && event.origin.as_ref() == Some(&target.function);
    let change = || {
        event
            .kind
            .rsplit('.')
            .next()
            .and_then(Change::parse)
            .unwrap_or(Change::Updated)
    };
    match &trigger.source {
        TriggerSource::Cron { .. } | TriggerSource::Queue { .. } | TriggerSource::Async => true,
        TriggerSource::Documents { changes, .. } => !own && changes.includes(change()),
        TriggerSource::Objects {
            changes,
            prefix,
            suffix,
            ..
        } => {
            let key = event.subject.as_deref().unwrap_or("");
            !own && changes.includes(change()) && key.starts_with(prefix) && key.ends_with(suffix)
        }
    }
}

/// What a failed delivery records.
fn failure(
    target: &Target,
    event: Event,
    attempts: u32,
    now: UnixMillis,
    first_failed_at: UnixMillis,
    error: String,
) -> FailedEvent {
    let retry = &target.trigger.retry;
    let age = Duration::from_millis(now.saturating_sub(event.time).max(0) as u64);
    let dead = attempts >= retry.max_attempts || age >= retry.max_age;
    FailedEvent {
        function: target.function.clone(),
        trigger: target.trigger.name.clone(),
        event,
        dead,
        attempts,
        next_at: if dead {
            now
        } else {
            now + backoff(retry.delay, attempts + 1).as_millis() as i64
        },
        first_failed_at,
        error,
    }
}

/// An event held back behind an earlier one with the same ordering key.
fn waiting(target: &Target, event: Event, now: UnixMillis) -> FailedEvent {
    FailedEvent {
        function: target.function.clone(),
        trigger: target.trigger.name.clone(),
        event,
        dead: false,
        attempts: 0,
        next_at: now,
        first_failed_at: now,
        error: "waiting for an earlier event with the same ordering key".to_owned(),
    }
}

/// Deliveries made together: a batch of unordered events, or the events
/// of one ordering key, one after another.
enum Unit {
    Batch(Vec<Event>),
    Ordered(Vec<Event>),
}

pub(crate) async fn run(shared: Arc<Shared>, target: Arc<Target>, mut stop: Stop) {
    let mut logged = shared
        .streams
        .watch(&target.project, &target.trigger.stream(&target.function));
    let label = format!(
        "{}/{} trigger {}",
        target.project, target.function, target.trigger.name
    );
    let mut cursor = Position::default();
    // When the gauges were last refreshed (never yet: at once).
    let mut reported: Option<std::time::Instant> = None;
    let mut active = true;
    while !stopped(&stop) {
        logged.borrow_and_update();
        let due = if active { REPORT } else { POLL };
        if reported.is_none_or(|at| at.elapsed() >= due)
            && let Some(position) = cursor.at
        {
            reported = Some(std::time::Instant::now());
            active = false;
            if let Err(error) = report(&shared, &target, position).await {
                tracing::warn!("{label}: {error}");
            }
        }
        let next_retry = match step(&shared, &target, &mut cursor).await {
            Ok(Step::More) => {
                active = true;
                continue;
            }
            Ok(Step::Idle(next_retry)) => next_retry,
            Err(error) => {
                tracing::warn!("{label}: {error}");
                // Nothing new to report; try again after a pause.
                active = false;
                Some(shared.clock.now() + AFTER_ERROR.as_millis() as i64)
            }
        };
        let retry = async {
            match next_retry {
                Some(at) => shared.clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Activity not yet in the gauges is reported within `REPORT`.
        let since = reported.map_or(REPORT, |at| at.elapsed());
        let refresh = if active {
            REPORT.saturating_sub(since)
        } else {
            POLL
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = logged.changed() => active = true,
            _ = retry => active = true,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
}

/// Tells the metrics where the trigger stands (at most once a poll).
async fn report(shared: &Arc<Shared>, target: &Arc<Target>, position: i64) -> Result<(), String> {
    let store = &shared.store;
    let (project, function, trigger) = (&target.project, &target.function, &target.trigger.name);
    let stream = target.trigger.stream(function);
    let backlog = store
        .backlog(project, &stream, position)
        .await
        .map_err(|error| error.to_string())?;
    let (retrying, dead) = store
        .failure_counts(project)
        .await
        .map_err(|error| error.to_string())?
        .into_iter()
        .find(|(f, t, _, _)| f == function && t == trigger)
        .map_or((0, 0), |(_, _, retrying, dead)| (retrying, dead));
    shared.metrics.standing(target, backlog, retrying, dead);
    Ok(())
}

/// Where a worker is: the cursor it moved to, and the write moving it
/// there (a task of its own), if not yet known to be durable. The next
/// batch is read while that write commits; it is awaited before the next
/// one (so cursor writes stay in order), before looking at failures, and
/// before waiting idle. A worker stopped meanwhile leaves the task to end
/// on its own: the write is made, as any write already queued.
#[derive(Default)]
struct Position {
    at: Option<i64>,
    moving: Option<tokio::task::JoinHandle<Result<(), store::StoreError>>>,
}

impl Position {
    async fn settled(&mut self) -> Result<(), String> {
        match self.moving.take() {
            Some(write) => match write.await {
                Ok(written) => written.map_err(|error| format!("moving the cursor: {error}")),
                Err(error) => Err(format!("moving the cursor: {error}")),
            },
            None => Ok(()),
        }
    }
}

enum Step {
    /// Work was done; look again at once.
    More,
    /// Nothing to do; the next retry is due then.
    Idle(Option<UnixMillis>),
}

async fn step(
    shared: &Arc<Shared>,
    target: &Arc<Target>,
    cursor: &mut Position,
) -> Result<Step, String> {
    let store = shared.store.clone();
    let (project, function) = (target.project.clone(), target.function.clone());
    let trigger = target.trigger.name.clone();
    let position = match cursor.at {
        Some(position) => position,
        None => {
            let subscriptions = store
                .subscriptions(&project, &function)
                .await
                .map_err(|error| error.to_string())?;
            let found = subscriptions
                .into_iter()
                .find(|subscription| subscription.trigger == trigger)
                .ok_or_else(|| "its subscription does not exist (yet)".to_owned())?;
            cursor.at = Some(found.cursor);
            found.cursor
        }
    };

    // Retries due (a batch with failures recorded them before it ended).
    let now = shared.clock.now();
    let due = store
        .failures_due(&project, &function, &trigger, now, RETRY_LIMIT)
        .await
        .map_err(|error| error.to_string())?;
    if !due.is_empty() {
        let concurrency = target.trigger.concurrency as usize;
        let settled: Vec<Result<(), String>> = futures::stream::iter(due)
            .map(|failed| retry(shared, target, failed))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        settled.into_iter().collect::<Result<Vec<()>, String>>()?;
        return Ok(Step::More);
    }

    // Fresh events.
    let (next_retry, held_keys) = store
        .retry_state(&project, &function, &trigger)
        .await
        .map_err(|error| error.to_string())?;
    // A schedule's ticks are logged already due (see `tick`): they come only
    // through the retry path above.
    if matches!(target.trigger.source, TriggerSource::Cron { .. }) {
        return Ok(Step::Idle(next_retry));
    }
    let stream = target.trigger.stream(&function);
    let events = store
        .events(&project, &stream, position, READ_LIMIT)
        .await
        .map_err(|error| error.to_string())?;
    let Some(last) = events.last().map(|event| event.seq) else {
        cursor.settled().await?;
        return Ok(Step::Idle(next_retry));
    };
    // The previous batch's cursor write had the read above to commit.
    cursor.settled().await?;
    let now = shared.clock.now();
    let mut failed = Vec::new();
    let held: HashSet<String> = held_keys.into_iter().collect();
    let mut units = Vec::new();
    let mut batch = Vec::new();
    let mut chains: Vec<(String, Vec<Event>)> = Vec::new();
    for event in events.into_iter().filter(|event| wanted(target, event)) {
        match &event.key {
            Some(key) if held.contains(key) => failed.push(waiting(target, event, now)),
            Some(key) => match chains.iter_mut().find(|(chain, _)| chain == key) {
                Some((_, chain)) => chain.push(event),
                None => chains.push((key.clone(), vec![event])),
            },
            None => {
                batch.push(event);
                if batch.len() == target.trigger.batch as usize {
                    units.push(Unit::Batch(std::mem::take(&mut batch)));
                }
            }
        }
    }
    if !batch.is_empty() {
        units.push(Unit::Batch(batch));
    }
    units.extend(chains.into_iter().map(|(_, chain)| Unit::Ordered(chain)));
    let concurrency = target.trigger.concurrency as usize;
    let outcomes: Vec<Vec<FailedEvent>> = futures::stream::iter(units)
        .map(|unit| deliver_unit(shared, target, unit))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    failed.extend(outcomes.into_iter().flatten());
    for failed in &failed {
        if failed.dead {
            shared.metrics.dead_lettered(target);
        } else if failed.attempts > 0 {
            shared.metrics.retried(target);
        }
    }
    let dead: Vec<FailedEvent> = failed
        .iter()
        .filter(|failed| failed.dead)
        .cloned()
        .collect();
    let any_failed = !failed.is_empty();
    // On a task of its own, under the worker's lease.
    let fence = store::events::current_fence();
    cursor.moving = Some(tokio::spawn({
        let (store, project, function, trigger) = (store.clone(), project, function, trigger);
        let advance = async move {
            store
                .advance(&project, &function, &trigger, last, failed)
                .await
        };
        async move {
            match fence {
                Some(fence) => store::events::with_fence(fence, advance).await,
                None => advance.await,
            }
        }
    }));
    cursor.at = Some(last);
    if any_failed {
        // Retries and ordering keys read the failures back: record them now.
        cursor.settled().await?;
    }
    for failed in dead {
        shared
            .deliver
            .dead_lettered(target.clone(), failed.event, failed.attempts, failed.error)
            .await;
    }
    Ok(Step::More)
}

/// Delivers a unit; returns what failed.
async fn deliver_unit(shared: &Arc<Shared>, target: &Arc<Target>, unit: Unit) -> Vec<FailedEvent> {
    match unit {
        Unit::Batch(events) => {
            let result = shared
                .deliver
                .deliver(target.clone(), events.clone(), 1)
                .await;
            let now = shared.clock.now();
            match result {
                Ok(()) => {
                    for event in &events {
                        delivered(shared, target, event, now);
                    }
                    Vec::new()
                }
                Err(error) => events
                    .into_iter()
                    .map(|event| failure(target, event, 1, now, now, error.clone()))
                    .collect(),
            }
        }
        Unit::Ordered(events) => {
            let mut failed = Vec::new();
            for event in events {
                if !failed.is_empty() {
                    failed.push(waiting(target, event, shared.clock.now()));
                    continue;
                }
                let result = shared
                    .deliver
                    .deliver(target.clone(), vec![event.clone()], 1)
                    .await;
                let now = shared.clock.now();
                match result {
                    Ok(()) => delivered(shared, target, &event, now),
                    Err(error) => failed.push(failure(target, event, 1, now, now, error)),
                }
            }
            failed
        }
    }
}

fn delivered(shared: &Shared, target: &Target, event: &Event, now: UnixMillis) {
    let latency = Duration::from_millis(now.saturating_sub(event.time).max(0) as u64);
    shared.metrics.delivered(target, latency);
}

/// Tries a failed event again and records the result.
async fn retry(
    shared: &Arc<Shared>,
    target: &Arc<Target>,
    failed: FailedEvent,
) -> Result<(), String> {
    let attempt = failed.attempts + 1;
    let result = shared
        .deliver
        .deliver(target.clone(), vec![failed.event.clone()], attempt)
        .await;
    let now = shared.clock.now();
    let mut died = None;
    let settle = match result {
        Ok(()) => {
            delivered(shared, target, &failed.event, now);
            Settle::Delivered
        }
        Err(error) => {
            let again = failure(
                target,
                failed.event.clone(),
                attempt,
                now,
                failed.first_failed_at,
                error,
            );
            if again.dead {
                shared.metrics.dead_lettered(target);
                died = Some(again.error.clone());
                Settle::Dead {
                    attempts: attempt,
                    error: again.error,
                }
            } else {
                shared.metrics.retried(target);
                Settle::Retry {
                    attempts: attempt,
                    next_at: again.next_at,
                    error: again.error,
                }
            }
        }
    };
    shared
        .store
        .settle(
            &target.project,
            &target.function,
            &target.trigger.name,
            failed.event.seq,
            settle,
        )
        .await
        .map_err(|error| format!("recording a retry: {error}"))?;
    if let Some(error) = died {
        shared
            .deliver
            .dead_lettered(target.clone(), failed.event, attempt, error)
            .await;
    }
    Ok(())
}

/// How long a node holds a trigger's lease without renewing it: when a
/// node dies (or stops answering), another takes its triggers over within
/// this time. Renewed every third of it.
pub const LEASE: Duration = Duration::from_secs(10);

/// Runs a trigger's worker (and its ticker, for a schedule) while this
/// node holds the trigger's lease, so that of the nodes sharing a store
/// one works each trigger at a time. Without the lease, it tries again
/// every half lease; once it has it, it renews it every third, and stops
/// the tasks when a renewal finds it lost (they write under it, so a
/// write after the loss is refused anyway). A store only one node uses
/// grants every lease at once.
pub(crate) async fn leased(
    shared: Arc<Shared>,
    target: Arc<Target>,
    schedule: Option<Schedule>,
    mut stop: Stop,
) {
    let name = format!(
        "trigger/{}/{}/{}",
        target.project, target.function, target.trigger.name
    );
    let holder = shared.holder.clone();
    while !stopped(&stop) {
        let epoch = match shared.store.lease(&name, &holder, LEASE).await {
            Ok(Some(epoch)) => epoch,
            Ok(None) => {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(LEASE / 2) => {}
                }
                continue;
            }
            Err(error) => {
                tracing::warn!("{name}: taking the lease failed: {error}");
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(AFTER_ERROR) => {}
                }
                continue;
            }
        };
        let fence = store::events::Fence {
            lease: name.clone(),
            holder: holder.clone(),
            epoch,
        };
        // The tasks stop on the dispatcher's stop or on losing the lease.
        let (inner_stop, inner_stopped) = tokio::sync::watch::channel(false);
        let mut tasks = vec![tokio::spawn(store::events::with_fence(
            fence.clone(),
            run(shared.clone(), target.clone(), inner_stopped.clone()),
        ))];
        if let Some(schedule) = &schedule {
            tasks.push(tokio::spawn(store::events::with_fence(
                fence.clone(),
                tick(
                    shared.clone(),
                    target.clone(),
                    schedule.clone(),
                    inner_stopped,
                ),
            )));
        }
        loop {
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(LEASE / 3) => {}
            }
            if stopped(&stop) {
                break;
            }
            match shared.store.lease(&name, &holder, LEASE).await {
                Ok(Some(renewed)) if renewed == epoch => {}
                Ok(_) => {
                    tracing::warn!("{name}: the lease went to another node");
                    break;
                }
                // Kept until it expires; the writes under it check it.
                Err(error) => tracing::warn!("{name}: renewing the lease failed: {error}"),
            }
        }
        let _ = inner_stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        if stopped(&stop) {
            if let Err(error) = shared.store.release(&name, &holder).await {
                tracing::warn!("{name}: giving the lease up failed: {error}");
            }
            break;
        }
    }
}

/// How long before its time a tick is logged: the write is out of the way
/// when the tick is due, so a busy write lock cannot make it late.
const TICK_LEAD: Duration = Duration::from_millis(1000);

/// Logs a tick event for each time of the schedule, a little ahead, due at
/// that time (times passed while the server was down are not made up for;
/// a tick logged and not yet delivered when it stopped is delivered after
/// the next start, late).
pub(crate) async fn tick(
    shared: Arc<Shared>,
    target: Arc<Target>,
    schedule: Schedule,
    mut stop: Stop,
) {
    let mut last = shared.clock.now();
    let stream = target.trigger.stream(&target.function);
    while !stopped(&stop) {
        let now = shared.clock.now();
        let Some(next) = schedule.next_after(now.max(last)) else {
            break;
        };
        let lead = TICK_LEAD.as_millis() as i64;
        tokio::select! {
            _ = stop.changed() => continue,
            _ = shared.clock.sleep_until(next - lead) => {}
        }
        last = next;
        let scheduled = chrono::DateTime::from_timestamp_millis(next)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let event = NewEvent {
            stream: stream.clone(),
            kind: "wok.cron.tick".to_owned(),
            subject: Some(target.trigger.name.to_string()),
            key: None,
            content_type: Some("application/json".to_owned()),
            data: serde_json::json!({ "scheduled": scheduled })
                .to_string()
                .into_bytes(),
            origin: None,
        };
        let logged = shared
            .store
            .schedule(
                &target.project,
                &target.function,
                &target.trigger.name,
                event,
                next,
            )
            .await;
        if let Err(store::StoreError::ConditionFailed) = logged {
            // Another node logged this tick (it held the lease then).
            continue;
        }
        if let Err(error) = logged {
            tracing::warn!(
                "{}/{} trigger {}: logging a tick failed: {error}",
                target.project,
                target.function,
                target.trigger.name
            );
        }
    }
}
