//! The event log on PostgreSQL: `events` (one row an event), `subscriptions`
//! (a cursor per function trigger, plus the `_realtime` rows that keep a
//! stream logged for live queries), `event_failures` (a copy of each event
//! whose delivery failed, so pruning the log never loses one) and
//! `async_invocations` (one row per queued asynchronous request, keyed by
//! its request event's id).
//!
//! Every event is numbered by [`Outbox::write`], last thing before its
//! transaction commits, so that positions are in commit order per stream
//! (see `outbox.rs`). What needs the number (a schedule's cursor and due
//! row, an asynchronous request's row) is written after it, in one round
//! trip; what can be decided before (whether the subscription is there,
//! whether the queue has room) is decided before, so the stream's lock is
//! held as briefly as can be.
//!
//! Several nodes write at once: a cursor moves with one `UPDATE` (it takes
//! the subscription's row lock, so a deploy that removes the trigger
//! meanwhile takes the failures recorded with it); a queue limit is
//! checked under a transaction advisory lock per project and function, so
//! two nodes cannot both take the last place; an idempotency key is
//! claimed by the unique index `async_by_idempotency_key`, so of two calls
//! racing with one key the second gets the first's invocation.
use crate::outbox::{Outbox, WATCHER, streams_of};
use crate::{Db, PgStore, Result, leases, number, stored};
use deadpool_postgres::GenericClient;
use domain::{FunctionName, ProjectId, TriggerName, UnixMillis, now_millis};
use store::StoreError;
use store::events::{
    AsyncAttempt, AsyncInvocation, AsyncRequest, AsyncStatus, Event, EventStore, FailedEvent,
    FailedFilter, Fence, Hook, NewEvent, Settle, Subscription, current_fence,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const EVENT_COLUMNS: &str =
    "seq, project, stream, id, type, subject, key, time, content_type, data, origin, actor";

/// What a scheduled event's failure row says until it is delivered.
const SCHEDULED: &str = "scheduled";

/// Reads an event from [`EVENT_COLUMNS`] starting at column `at`.
fn event_from_row(row: &Row, at: usize) -> Result<Event> {
    let origin: Option<String> = row.get(at + 10);
    Ok(Event {
        seq: row.get(at),
        project: stored(ProjectId::new(row.get::<_, String>(at + 1)))?,
        stream: row.get(at + 2),
        id: row.get(at + 3),
        kind: row.get(at + 4),
        subject: row.get(at + 5),
        key: row.get(at + 6),
        time: row.get(at + 7),
        content_type: row.get(at + 8),
        data: row.get(at + 9),
        origin: stored(origin.map(FunctionName::new).transpose())?,
        actor: row
            .get::<_, Option<String>>(at + 11)
            .map(|text| domain::Actor::from_text(&text)),
    })
}

const FAILURE_COLUMNS: &str = "function, trigger, dead, attempts, next_at, first_failed_at, error, \
    seq, project, stream, id, type, subject, key, time, content_type, data, origin, actor";

fn failure_from_row(row: &Row) -> Result<FailedEvent> {
    Ok(FailedEvent {
        function: stored(FunctionName::new(row.get::<_, String>(0)))?,
        trigger: stored(TriggerName::new(row.get::<_, String>(1)))?,
        dead: row.get(2),
        attempts: number(row.get(3))?,
        next_at: row.get(4),
        first_failed_at: row.get(5),
        error: row.get(6),
        event: event_from_row(row, 7)?,
    })
}

/// Records failed events (replacing an earlier record of the same event
/// and trigger), their inserts pipelined.
async fn insert_failures(
    client: &impl GenericClient,
    project: &ProjectId,
    failures: &[FailedEvent],
) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO event_failures ({FAILURE_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             ON CONFLICT (project, function, trigger, seq) DO UPDATE SET
                 dead = excluded.dead, attempts = excluded.attempts, next_at = excluded.next_at,
                 first_failed_at = excluded.first_failed_at, error = excluded.error,
                 stream = excluded.stream, id = excluded.id, type = excluded.type,
                 subject = excluded.subject, key = excluded.key, time = excluded.time,
                 content_type = excluded.content_type, data = excluded.data,
                 origin = excluded.origin, actor = excluded.actor"
        ))
        .await?;
    let statement = &statement;
    let inserts = failures.iter().map(|failed| async move {
        let event = &failed.event;
        client
            .execute(
                statement,
                &[
                    &failed.function.as_str(),
                    &failed.trigger.as_str(),
                    &failed.dead,
                    &i64::from(failed.attempts),
                    &failed.next_at,
                    &failed.first_failed_at,
                    &failed.error,
                    &event.seq,
                    &project.as_str(),
                    &event.stream,
                    &event.id,
                    &event.kind,
                    &event.subject,
                    &event.key,
                    &event.time,
                    &event.content_type,
                    &event.data,
                    &event.origin.as_ref().map(FunctionName::as_str),
                    &event.actor.as_ref().map(domain::Actor::to_text),
                ],
            )
            .await
    });
    futures::future::try_join_all(inserts).await?;
    Ok(())
}

async fn events(
    client: &impl GenericClient,
    project: &ProjectId,
    stream: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE project = $1 AND stream = $2 AND seq > $3 ORDER BY seq LIMIT $4"
        ))
        .await?;
    client
        .query(
            &statement,
            &[&project.as_str(), &stream, &after, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(|row| event_from_row(row, 0))
        .collect()
}

/// The stream's last position. Positions are in commit order per stream,
/// so an event that commits after this read is numbered above it. (The
/// whole log's end is not: another stream's event numbered above an event
/// of this stream may commit first, and a reader starting there would
/// pass the late one.)
async fn stream_end(client: &impl GenericClient, project: &ProjectId, stream: &str) -> Result<i64> {
    let statement = client
        .prepare_cached(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE project = $1 AND stream = $2",
        )
        .await?;
    Ok(client
        .query_one(&statement, &[&project.as_str(), &stream])
        .await?
        .get(0))
}

async fn position_at(
    client: &impl GenericClient,
    project: &ProjectId,
    stream: &str,
    time: UnixMillis,
) -> Result<i64> {
    if time == UnixMillis::MAX {
        return stream_end(client, project, stream).await;
    }
    // The first by position (times follow positions only roughly: an
    // event's time is taken before its number is drawn); the planner may
    // walk either index.
    let statement = client
        .prepare_cached(
            "SELECT MIN(seq) FROM events WHERE project = $1 AND stream = $2 AND events.time >= $3",
        )
        .await?;
    let first: Option<i64> = client
        .query_one(&statement, &[&project.as_str(), &stream, &time])
        .await?
        .get(0);
    match first {
        Some(seq) => Ok(seq - 1),
        None => stream_end(client, project, stream).await,
    }
}

async fn subscriptions(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
) -> Result<Vec<Subscription>> {
    let statement = client
        .prepare_cached(
            "SELECT trigger, stream, cursor FROM subscriptions
             WHERE project = $1 AND function = $2 ORDER BY trigger COLLATE \"C\"",
        )
        .await?;
    client
        .query(&statement, &[&project.as_str(), &function.as_str()])
        .await?
        .iter()
        .map(|row| {
            Ok(Subscription {
                project: project.clone(),
                function: function.clone(),
                trigger: stored(TriggerName::new(row.get::<_, String>(0)))?,
                stream: row.get(1),
                cursor: row.get(2),
            })
        })
        .collect()
}

/// Moves the cursor forward and records the failures of the stretch; a
/// trigger removed meanwhile (no row to move) takes its failures with it.
async fn advance(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    cursor: i64,
    failed: &[FailedEvent],
) -> Result<()> {
    let statement = client
        .prepare_cached(
            "UPDATE subscriptions SET cursor = GREATEST(cursor, $4)
             WHERE project = $1 AND function = $2 AND trigger = $3",
        )
        .await?;
    let moved = client
        .execute(
            &statement,
            &[
                &project.as_str(),
                &function.as_str(),
                &trigger.as_str(),
                &cursor,
            ],
        )
        .await?;
    if moved == 1 {
        insert_failures(client, project, failed).await?;
    }
    Ok(())
}

async fn failures_due(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    now: UnixMillis,
    limit: u32,
) -> Result<Vec<FailedEvent>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {FAILURE_COLUMNS} FROM event_failures f
             WHERE project = $1 AND function = $2 AND trigger = $3 AND NOT dead AND next_at <= $4
               AND (key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM event_failures g
                   WHERE g.project = $1 AND g.function = $2 AND g.trigger = $3
                     AND NOT g.dead AND g.key = f.key AND g.seq < f.seq))
             ORDER BY seq LIMIT $5"
        ))
        .await?;
    client
        .query(
            &statement,
            &[
                &project.as_str(),
                &function.as_str(),
                &trigger.as_str(),
                &now,
                &i64::from(limit),
            ],
        )
        .await?
        .iter()
        .map(failure_from_row)
        .collect()
}

async fn retry_state(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
) -> Result<(Option<UnixMillis>, Vec<String>)> {
    // The soonest of the events that can go then: an event held behind an
    // earlier one with its ordering key waits for that one, not its own
    // time. Both answers from one snapshot.
    let statement = client
        .prepare_cached(
            "SELECT
                 (SELECT MIN(next_at) FROM event_failures f
                  WHERE project = $1 AND function = $2 AND trigger = $3 AND NOT dead
                    AND (key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM event_failures g
                        WHERE g.project = $1 AND g.function = $2 AND g.trigger = $3
                          AND NOT g.dead AND g.key = f.key AND g.seq < f.seq))),
                 ARRAY(SELECT key FROM event_failures
                       WHERE project = $1 AND function = $2 AND trigger = $3
                         AND NOT dead AND key IS NOT NULL
                       GROUP BY key ORDER BY key COLLATE \"C\")",
        )
        .await?;
    let row = client
        .query_one(
            &statement,
            &[&project.as_str(), &function.as_str(), &trigger.as_str()],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

async fn settle(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    seq: i64,
    settle: &Settle,
) -> Result<()> {
    let scope: [&(dyn ToSql + Sync); 4] = [
        &project.as_str(),
        &function.as_str(),
        &trigger.as_str(),
        &seq,
    ];
    match settle {
        Settle::Delivered => {
            let statement = client
                .prepare_cached(
                    "DELETE FROM event_failures
                     WHERE project = $1 AND function = $2 AND trigger = $3 AND seq = $4",
                )
                .await?;
            client.execute(&statement, &scope).await?;
        }
        Settle::Retry {
            attempts,
            next_at,
            error,
        } => {
            let statement = client
                .prepare_cached(
                    "UPDATE event_failures SET attempts = $5, next_at = $6, error = $7
                     WHERE project = $1 AND function = $2 AND trigger = $3 AND seq = $4",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        scope[0],
                        scope[1],
                        scope[2],
                        scope[3],
                        &i64::from(*attempts),
                        next_at,
                        error,
                    ],
                )
                .await?;
        }
        Settle::Dead { attempts, error } => {
            let statement = client
                .prepare_cached(
                    "UPDATE event_failures SET dead = TRUE, attempts = $5, next_at = $6, error = $7
                     WHERE project = $1 AND function = $2 AND trigger = $3 AND seq = $4",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        scope[0],
                        scope[1],
                        scope[2],
                        scope[3],
                        &i64::from(*attempts),
                        &now_millis(),
                        error,
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// A filter over failed events as a `WHERE` clause, with its parameters
/// (`$1` on; more may follow them).
struct FilterClause {
    clause: String,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl FilterClause {
    fn new(project: &ProjectId, filter: &FailedFilter) -> Self {
        let mut this = Self {
            clause: "project = $1".to_owned(),
            values: vec![Box::new(project.as_str().to_owned())],
        };
        if let Some(function) = &filter.function {
            this.and("function", Box::new(function.as_str().to_owned()));
        }
        if let Some(trigger) = &filter.trigger {
            this.and("trigger", Box::new(trigger.as_str().to_owned()));
        }
        if let Some(seq) = filter.seq {
            this.and("seq", Box::new(seq));
        }
        this
    }

    fn and(&mut self, column: &str, value: Box<dyn ToSql + Sync + Send>) {
        self.values.push(value);
        self.clause
            .push_str(&format!(" AND {column} = ${}", self.values.len()));
    }

    /// The next parameter's placeholder, for a value pushed after.
    fn next(&mut self, value: Box<dyn ToSql + Sync + Send>) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values
            .iter()
            .map(|value| &**value as &(dyn ToSql + Sync))
            .collect()
    }
}

async fn dead_letters(
    client: &impl GenericClient,
    project: &ProjectId,
    filter: &FailedFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<FailedEvent>> {
    let mut filter = FilterClause::new(project, filter);
    let after = filter.next(Box::new(after));
    let limit = filter.next(Box::new(i64::from(limit)));
    client
        .query(
            &format!(
                "SELECT {FAILURE_COLUMNS} FROM event_failures
                 WHERE {} AND dead AND seq > {after}
                 ORDER BY seq, function COLLATE \"C\", trigger COLLATE \"C\" LIMIT {limit}",
                filter.clause
            ),
            &filter.params(),
        )
        .await?
        .iter()
        .map(failure_from_row)
        .collect()
}

async fn failure_counts(
    client: &impl GenericClient,
    project: &ProjectId,
) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>> {
    client
        .query(
            "SELECT function, trigger,
                    COUNT(*) FILTER (WHERE NOT dead AND attempts > 0),
                    COUNT(*) FILTER (WHERE dead)
             FROM event_failures WHERE project = $1
             GROUP BY function, trigger ORDER BY function COLLATE \"C\", trigger COLLATE \"C\"",
            &[&project.as_str()],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                stored(FunctionName::new(row.get::<_, String>(0)))?,
                stored(TriggerName::new(row.get::<_, String>(1)))?,
                number(row.get(2))?,
                number(row.get(3))?,
            ))
        })
        .collect()
}

/// The streams of the failed events a redrive or purge took, each once
/// (their workers are told: the events are due now, or their counts
/// changed).
fn streams_of_rows(project: &ProjectId, rows: &[Row]) -> Vec<(ProjectId, String)> {
    let mut streams: Vec<(ProjectId, String)> = rows
        .iter()
        .map(|row| (project.clone(), row.get(0)))
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

async fn redrive(
    client: &impl GenericClient,
    project: &ProjectId,
    filter: &FailedFilter,
) -> Result<Vec<Row>> {
    let mut filter = FilterClause::new(project, filter);
    let now = filter.next(Box::new(now_millis()));
    Ok(client
        .query(
            &format!(
                "UPDATE event_failures SET dead = FALSE, attempts = 0, next_at = {now}
                 WHERE {} AND dead RETURNING stream",
                filter.clause
            ),
            &filter.params(),
        )
        .await?)
}

async fn purge_dead(
    client: &impl GenericClient,
    project: &ProjectId,
    filter: &FailedFilter,
) -> Result<Vec<Row>> {
    let filter = FilterClause::new(project, filter);
    Ok(client
        .query(
            &format!(
                "DELETE FROM event_failures WHERE {} AND dead RETURNING stream",
                filter.clause
            ),
            &filter.params(),
        )
        .await?)
}

async fn prune(
    client: &impl GenericClient,
    project: &ProjectId,
    before: UnixMillis,
) -> Result<u64> {
    // An event is kept while a subscription of its stream has not passed
    // it (a watcher's cursor is the largest position: it holds nothing).
    let pruned = client
        .execute(
            "DELETE FROM events WHERE project = $1 AND events.time < $2
               AND NOT EXISTS (SELECT 1 FROM subscriptions s
                               WHERE s.project = $1 AND s.stream = events.stream
                                 AND s.cursor < events.seq)",
            &[&project.as_str(), &before],
        )
        .await?;
    // Finished asynchronous invocations (their idempotency keys with them).
    client
        .execute(
            "DELETE FROM async_invocations WHERE project = $1 AND created_at < $2
               AND (succeeded OR failed)",
            &[&project.as_str(), &before],
        )
        .await?;
    // Ticks long past: no node logs those times again.
    client
        .execute(
            "DELETE FROM ticks WHERE project = $1 AND at < $2",
            &[&project.as_str(), &before],
        )
        .await?;
    Ok(pruned)
}

/// The columns of `async_invocations a`.
const ASYNC_COLUMNS: &str = "a.id, a.function, a.seq, a.succeeded, a.attempts, a.created_at, \
    a.finished_at, a.response_status, a.response_headers, a.response_body, a.error, a.failed";

/// An asynchronous invocation as its row says (queued, succeeded or
/// failed; whether it waits for a retry is its failed event's to say).
fn async_from_row(row: &Row) -> Result<AsyncInvocation> {
    let succeeded: bool = row.get(3);
    let failed: bool = row.get(11);
    let status: Option<i64> = row.get(7);
    let headers: Option<String> = row.get(8);
    let body: Option<Vec<u8>> = row.get(9);
    let response = match status {
        Some(status) => Some((
            number(status)?,
            stored(serde_json::from_str(headers.as_deref().unwrap_or("[]")))?,
            body.unwrap_or_default(),
        )),
        None => None,
    };
    Ok(AsyncInvocation {
        id: row.get(0),
        function: stored(FunctionName::new(row.get::<_, String>(1)))?,
        seq: row.get(2),
        status: if succeeded {
            AsyncStatus::Succeeded
        } else if failed {
            AsyncStatus::Failed
        } else {
            AsyncStatus::Queued
        },
        attempts: number(row.get(4))?,
        created_at: row.get(5),
        finished_at: row.get(6),
        response,
        error: row.get(10),
    })
}

async fn find_async(
    client: &impl GenericClient,
    project: &ProjectId,
    id: &str,
) -> Result<Option<AsyncInvocation>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {ASYNC_COLUMNS} FROM async_invocations a WHERE a.project = $1 AND a.id = $2"
        ))
        .await?;
    client
        .query_opt(&statement, &[&project.as_str(), &id])
        .await?
        .as_ref()
        .map(async_from_row)
        .transpose()
}

/// The invocation an idempotency key was used for, if it was; refused if
/// it was for another request.
async fn earlier_async(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    key: &str,
    fingerprint: &str,
) -> Result<Option<AsyncInvocation>> {
    let statement = client
        .prepare_cached(
            "SELECT id, fingerprint FROM async_invocations
             WHERE project = $1 AND function = $2 AND idempotency_key = $3",
        )
        .await?;
    let Some(row) = client
        .query_opt(&statement, &[&project.as_str(), &function.as_str(), &key])
        .await?
    else {
        return Ok(None);
    };
    let (id, earlier): (String, Option<String>) = (row.get(0), row.get(1));
    if earlier.is_some_and(|earlier| earlier != fingerprint) {
        return Err(StoreError::IdempotencyKeyReused.into());
    }
    find_async(client, project, &id).await
}

/// What an enqueue's transaction came to.
enum Enqueued {
    /// Queued: the invocation and its request event, to commit.
    Queued(AsyncInvocation, Vec<Event>),
    /// The key was used before: that invocation (nothing to commit).
    Earlier(AsyncInvocation),
    /// Another call with the key committed while this one ran: roll back
    /// and read its invocation.
    Raced,
}

async fn enqueue_async(
    transaction: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    request: &AsyncRequest,
) -> Result<Enqueued> {
    if let Some(limit) = request.limit {
        // Counting and queueing one at a time per function, across nodes:
        // two calls cannot both take the queue's last place.
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('async' || chr(10) || $1 || chr(10) || $2, 0))",
                &[&project.as_str(), &function.as_str()],
            )
            .await?;
        if let Some(key) = &request.idempotency_key
            && let Some(earlier) =
                earlier_async(transaction, project, function, key, &request.fingerprint).await?
        {
            return Ok(Enqueued::Earlier(earlier));
        }
        let statement = transaction
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0)::BIGINT FROM async_invocations
                 WHERE project = $1 AND function = $2 AND NOT succeeded AND NOT failed",
            )
            .await?;
        let row = transaction
            .query_one(&statement, &[&project.as_str(), &function.as_str()])
            .await?;
        let (requests, waiting): (u64, u64) = (number(row.get(0))?, number(row.get(1))?);
        let bytes = request.request.data.len() as u64;
        if requests >= limit.requests || waiting + bytes > limit.bytes {
            return Err(StoreError::AsyncQueueFull {
                function: function.to_string(),
                requests,
                bytes: waiting,
            }
            .into());
        }
    } else if let Some(key) = &request.idempotency_key
        && let Some(earlier) =
            earlier_async(transaction, project, function, key, &request.fingerprint).await?
    {
        return Ok(Enqueued::Earlier(earlier));
    }
    let mut outbox = Outbox::default();
    outbox.push(project, request.request.clone());
    let events = outbox.write(transaction).await?;
    let event = &events[0];
    // After the number is drawn (the row holds it); the key's unique index
    // settles a race with a call that checked before this one committed.
    let statement = transaction
        .prepare_cached(
            "INSERT INTO async_invocations
                 (project, id, function, seq, idempotency_key, created_at, fingerprint, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let inserted = transaction
        .execute(
            &statement,
            &[
                &project.as_str(),
                &event.id,
                &function.as_str(),
                &event.seq,
                &request.idempotency_key,
                &event.time,
                &request.fingerprint,
                &(request.request.data.len() as i64),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(Enqueued::Raced);
    }
    let invocation = AsyncInvocation {
        id: event.id.clone(),
        function: function.clone(),
        seq: event.seq,
        status: AsyncStatus::Queued,
        attempts: 0,
        created_at: event.time,
        finished_at: None,
        response: None,
        error: None,
    };
    Ok(Enqueued::Queued(invocation, events))
}

async fn record_async(
    client: &impl GenericClient,
    project: &ProjectId,
    id: &str,
    attempt: &AsyncAttempt,
) -> Result<()> {
    let (status, headers, body) = match &attempt.response {
        Some((status, headers, body)) => (
            Some(i64::from(*status)),
            Some(stored(serde_json::to_string(headers))?),
            Some(body.as_slice()),
        ),
        None => (None, None, None),
    };
    let statement = client
        .prepare_cached(
            "UPDATE async_invocations SET attempts = GREATEST(attempts, $1),
                 succeeded = succeeded OR $2, failed = $3, finished_at = $4,
                 response_status = COALESCE($5, response_status),
                 response_headers = COALESCE($6, response_headers),
                 response_body = COALESCE($7, response_body),
                 error = $8
             WHERE project = $9 AND id = $10",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &i64::from(attempt.attempts),
                &attempt.succeeded,
                &attempt.failed,
                &now_millis(),
                &status,
                &headers,
                &body,
                &attempt.error,
                &project.as_str(),
                &id,
            ],
        )
        .await?;
    Ok(())
}

/// An asynchronous invocation, its status decided by its failed event (if
/// any): waiting for a retry, or dead. One statement, so one snapshot.
async fn async_invocation(
    client: &impl GenericClient,
    project: &ProjectId,
    id: &str,
) -> Result<Option<AsyncInvocation>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {ASYNC_COLUMNS}, f.dead FROM async_invocations a
             LEFT JOIN event_failures f
               ON f.project = a.project AND f.function = a.function AND f.trigger = $3
                  AND f.seq = a.seq
             WHERE a.project = $1 AND a.id = $2"
        ))
        .await?;
    let Some(row) = client
        .query_opt(
            &statement,
            &[&project.as_str(), &id, &domain::ASYNC_TRIGGER],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut invocation = async_from_row(&row)?;
    let dead: Option<bool> = row.get(12);
    invocation.status = match (invocation.status, dead) {
        (AsyncStatus::Succeeded, _) => AsyncStatus::Succeeded,
        (_, Some(true)) => AsyncStatus::Failed,
        (_, Some(false)) => AsyncStatus::Retrying,
        // A purged dead letter stays failed.
        (AsyncStatus::Failed, None) => AsyncStatus::Failed,
        // Failed, and about to be recorded for a retry.
        (_, None) if invocation.attempts > 0 => AsyncStatus::Retrying,
        (_, None) => AsyncStatus::Queued,
    };
    Ok(Some(invocation))
}

impl PgStore {
    async fn schedule_in(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        event: NewEvent,
        at: UnixMillis,
        fence: Option<Fence>,
    ) -> Result<Event> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        leases::check(&transaction, fence.as_ref()).await?;
        // One tick per trigger and time, whichever node logs it.
        let first = transaction
            .execute(
                "INSERT INTO ticks (project, function, trigger, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[
                    &project.as_str(),
                    &function.as_str(),
                    &trigger.as_str(),
                    &at,
                ],
            )
            .await?;
        if first == 0 {
            return Err(StoreError::ConditionFailed.into());
        }
        // The subscription locked before the stream: whether it is there
        // holds until the commit, and nothing waits on its row while this
        // holds the stream's lock.
        let subscribed = transaction
            .query_opt(
                "SELECT 1 FROM subscriptions
                 WHERE project = $1 AND function = $2 AND trigger = $3 FOR UPDATE",
                &[&project.as_str(), &function.as_str(), &trigger.as_str()],
            )
            .await?
            .is_some();
        let mut outbox = Outbox::default();
        // Its time is the scheduled one (CloudEvents' `time`: when it
        // happened).
        outbox.push_at(project, event, at);
        let events = outbox.write(&transaction).await?;
        let event = events[0].clone();
        if subscribed {
            // The cursor past it and the event due at its time, in one
            // round trip.
            let due = [FailedEvent {
                function: function.clone(),
                trigger: trigger.clone(),
                event: event.clone(),
                dead: false,
                attempts: 0,
                next_at: at,
                first_failed_at: at,
                error: SCHEDULED.to_owned(),
            }];
            let moved = async {
                transaction
                    .execute(
                        "UPDATE subscriptions SET cursor = GREATEST(cursor, $4)
                         WHERE project = $1 AND function = $2 AND trigger = $3",
                        &[
                            &project.as_str(),
                            &function.as_str(),
                            &trigger.as_str(),
                            &event.seq,
                        ],
                    )
                    .await
                    .map_err(crate::Error::from)
            };
            futures::try_join!(moved, insert_failures(&transaction, project, &due))?;
        }
        transaction.commit().await?;
        self.after_commit(streams_of(&events));
        Ok(event)
    }
}

#[store::async_trait]
impl EventStore for PgStore {
    async fn publish(
        &self,
        project: &ProjectId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let mut outbox = Outbox::default();
        for event in events {
            outbox.push(project, event);
        }
        let written = outbox.write(&transaction).await.db()?;
        transaction.commit().await.db()?;
        self.after_commit(streams_of(&written));
        Ok(written)
    }

    async fn events(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        events(&client, project, stream, after, limit).await.db()
    }

    async fn backlog(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT COUNT(*) FROM events WHERE project = $1 AND stream = $2 AND seq > $3",
            )
            .await
            .db()?;
        let count: i64 = client
            .query_one(&statement, &[&project.as_str(), &stream, &after])
            .await
            .db()?
            .get(0);
        number(count).db()
    }

    async fn position_at(
        &self,
        project: &ProjectId,
        stream: &str,
        time: UnixMillis,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        position_at(&client, project, stream, time).await.db()
    }

    async fn subscriptions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<Subscription>, StoreError> {
        let client = self.client().await?;
        subscriptions(&client, project, function).await.db()
    }

    async fn advance(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
        failed: Vec<FailedEvent>,
    ) -> Result<(), StoreError> {
        let fence = current_fence();
        let mut client = self.client().await?;
        if failed.is_empty() && fence.is_none() {
            // One statement: no transaction needed.
            return advance(&client, project, function, trigger, cursor, &[])
                .await
                .db();
        }
        let transaction = client.transaction().await.db()?;
        leases::check(&transaction, fence.as_ref()).await.db()?;
        advance(&transaction, project, function, trigger, cursor, &failed)
            .await
            .db()?;
        transaction.commit().await.db()
    }

    async fn schedule(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        event: NewEvent,
        at: UnixMillis,
    ) -> Result<Event, StoreError> {
        let fence = current_fence();
        self.schedule_in(project, function, trigger, event, at, fence)
            .await
            .db()
    }

    async fn set_cursor(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let moved = client
            .execute(
                "UPDATE subscriptions SET cursor = $4
                 WHERE project = $1 AND function = $2 AND trigger = $3",
                &[
                    &project.as_str(),
                    &function.as_str(),
                    &trigger.as_str(),
                    &cursor,
                ],
            )
            .await
            .db()?;
        Ok(moved == 1)
    }

    async fn failures_due(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        let client = self.client().await?;
        failures_due(&client, project, function, trigger, now, limit)
            .await
            .db()
    }

    async fn retry_state(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
    ) -> Result<(Option<UnixMillis>, Vec<String>), StoreError> {
        let client = self.client().await?;
        retry_state(&client, project, function, trigger).await.db()
    }

    async fn settle(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        seq: i64,
        settle_as: Settle,
    ) -> Result<(), StoreError> {
        let fence = current_fence();
        let mut client = self.client().await?;
        if fence.is_none() {
            return settle(&client, project, function, trigger, seq, &settle_as)
                .await
                .db();
        }
        let transaction = client.transaction().await.db()?;
        leases::check(&transaction, fence.as_ref()).await.db()?;
        settle(&transaction, project, function, trigger, seq, &settle_as)
            .await
            .db()?;
        transaction.commit().await.db()
    }

    async fn dead_letters(
        &self,
        project: &ProjectId,
        filter: &FailedFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        let client = self.client().await?;
        dead_letters(&client, project, filter, after, limit)
            .await
            .db()
    }

    async fn failure_counts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>, StoreError> {
        let client = self.client().await?;
        failure_counts(&client, project).await.db()
    }

    async fn redrive(&self, project: &ProjectId, filter: FailedFilter) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let rows = redrive(&client, project, &filter).await.db()?;
        self.after_commit(streams_of_rows(project, &rows));
        Ok(rows.len() as u64)
    }

    async fn purge_dead(
        &self,
        project: &ProjectId,
        filter: FailedFilter,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let rows = purge_dead(&client, project, &filter).await.db()?;
        self.after_commit(streams_of_rows(project, &rows));
        Ok(rows.len() as u64)
    }

    async fn prune_events(
        &self,
        project: &ProjectId,
        before: UnixMillis,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let pruned = prune(&transaction, project, before).await.db()?;
        transaction.commit().await.db()?;
        Ok(pruned)
    }

    async fn enqueue_async(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        request: AsyncRequest,
    ) -> Result<(AsyncInvocation, bool), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let enqueued = enqueue_async(&transaction, project, function, &request)
            .await
            .db()?;
        match enqueued {
            Enqueued::Queued(invocation, events) => {
                transaction.commit().await.db()?;
                self.after_commit(streams_of(&events));
                Ok((invocation, true))
            }
            Enqueued::Earlier(invocation) => {
                transaction.rollback().await.db()?;
                Ok((invocation, false))
            }
            Enqueued::Raced => {
                transaction.rollback().await.db()?;
                let key = request.idempotency_key.as_deref().unwrap_or_default();
                earlier_async(&client, project, function, key, &request.fingerprint)
                    .await
                    .db()?
                    .map(|invocation| (invocation, false))
                    // Pruned in between (it finished, and is old): the caller
                    // may try again.
                    .ok_or_else(|| {
                        StoreError::backend("the asynchronous request changed meanwhile", true)
                    })
            }
        }
    }

    async fn record_async(
        &self,
        project: &ProjectId,
        id: &str,
        attempt: AsyncAttempt,
    ) -> Result<(), StoreError> {
        let fence = current_fence();
        let mut client = self.client().await?;
        if fence.is_none() {
            return record_async(&client, project, id, &attempt).await.db();
        }
        let transaction = client.transaction().await.db()?;
        leases::check(&transaction, fence.as_ref()).await.db()?;
        record_async(&transaction, project, id, &attempt)
            .await
            .db()?;
        transaction.commit().await.db()
    }

    async fn async_invocation(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<Option<AsyncInvocation>, StoreError> {
        let client = self.client().await?;
        async_invocation(&client, project, id).await.db()
    }

    async fn watch_stream(&self, project: &ProjectId, stream: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        crate::outbox::watch(&transaction, project, stream)
            .await
            .db()?;
        transaction
            .execute(
                "INSERT INTO subscriptions (project, function, trigger, stream, cursor)
                 VALUES ($1, $2, $3, $3, $4) ON CONFLICT DO NOTHING",
                &[&project.as_str(), &WATCHER, &stream, &i64::MAX],
            )
            .await
            .db()?;
        transaction.commit().await.db()
    }

    fn on_events(&self, hook: Hook) {
        crate::set_hook(self, hook);
    }

    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        leases::take(&client, name, holder, ttl).await.db()
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        leases::release(&client, name, holder).await.db()
    }
}
