//! The event log in SQLite: `events` (one row an event, numbered by an
//! autoincrement key, so positions are never reused), `subscriptions` (a
//! cursor per function trigger) and `event_failures` (a copy of each event
//! whose delivery failed, so pruning the log never loses one).
use crate::{Result, SqliteStore};
use domain::{FunctionName, ProjectId, TriggerName, TriggerSpec, UnixMillis, now_millis};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::cell::RefCell;
use store::StoreError;
use store::events::{
    AsyncAttempt, AsyncInvocation, AsyncRequest, AsyncStatus, Event, EventStore, FailedEvent,
    FailedFilter, NewEvent, Settle, Subscription,
};

thread_local! {
    /// The streams the writer's current batch logged events on (or made
    /// failed events due on), for the hook called after the commit.
    static LOGGED: RefCell<Vec<(ProjectId, String)>> = const { RefCell::new(Vec::new()) };
}

/// Notes that `stream` has news for its readers.
fn touched(project: &ProjectId, stream: &str) {
    LOGGED.with(|logged| {
        let mut logged = logged.borrow_mut();
        if !logged.iter().any(|(p, s)| p == project && s == stream) {
            logged.push((project.clone(), stream.to_owned()));
        }
    });
}

/// The streams with news since the last call (and forgets them).
pub(crate) fn take_logged() -> Vec<(ProjectId, String)> {
    LOGGED.with(|logged| std::mem::take(&mut *logged.borrow_mut()))
}

const EVENT_COLUMNS: &str =
    "seq, project, stream, id, type, subject, key, time, content_type, data, origin, actor";

fn corrupt(error: impl std::fmt::Display) -> crate::Error {
    crate::Error(StoreError::Corrupt(error.to_string()))
}

/// Reads an event from `EVENT_COLUMNS` starting at column `at`.
fn event_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Result<Event>> {
    let project: String = row.get(at + 1)?;
    let origin: Option<String> = row.get(at + 10)?;
    let event = (|| {
        Ok(Event {
            seq: row.get(at)?,
            project: ProjectId::new(project).map_err(corrupt)?,
            stream: row.get(at + 2)?,
            id: row.get(at + 3)?,
            kind: row.get(at + 4)?,
            subject: row.get(at + 5)?,
            key: row.get(at + 6)?,
            time: row.get(at + 7)?,
            content_type: row.get(at + 8)?,
            data: row.get(at + 9)?,
            origin: origin.map(FunctionName::new).transpose().map_err(corrupt)?,
            actor: row
                .get::<_, Option<String>>(at + 11)?
                .map(|text| domain::Actor::from_text(&text)),
        })
    })();
    Ok(event)
}

fn insert_event(
    connection: &Connection,
    project: &ProjectId,
    event: NewEvent,
    time: UnixMillis,
) -> Result<Event> {
    let id = uuid::Uuid::now_v7().to_string();
    // The writer runs the write with the actor of whoever asked for it
    // (`domain::actor::Captured`).
    let actor = domain::actor::current_actor();
    connection
        .prepare_cached(
            "INSERT INTO events (project, stream, id, type, subject, key, time, content_type, data, origin, actor)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            project.as_str(),
            event.stream,
            id,
            event.kind,
            event.subject,
            event.key,
            time,
            event.content_type,
            event.data,
            event.origin.as_ref().map(FunctionName::as_str),
            actor.as_ref().map(domain::Actor::to_text),
        ])?;
    touched(project, &event.stream);
    Ok(Event {
        seq: connection.last_insert_rowid(),
        project: project.clone(),
        stream: event.stream,
        id,
        kind: event.kind,
        subject: event.subject,
        key: event.key,
        time,
        content_type: event.content_type,
        data: event.data,
        origin: event.origin,
        actor,
    })
}

pub(crate) fn apply_publish(
    connection: &Connection,
    project: &ProjectId,
    events: &[NewEvent],
) -> Result<Vec<Event>> {
    let time = now_millis();
    events
        .iter()
        .map(|event| insert_event(connection, project, event.clone(), time))
        .collect()
}

/// Whether any trigger reads the stream: changes are logged only then.
pub(crate) fn watched(connection: &Connection, project: &ProjectId, stream: &str) -> Result<bool> {
    Ok(connection
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE project = ? AND stream = ?)",
        )?
        .query_row(params![project.as_str(), stream], |row| row.get(0))?)
}

/// Logs a change (the outbox): in the transaction of the change itself,
/// if a trigger reads its stream.
pub(crate) fn log_change(
    connection: &Connection,
    project: &ProjectId,
    event: NewEvent,
) -> Result<()> {
    if watched(connection, project, &event.stream)? {
        insert_event(connection, project, event, now_millis())?;
    }
    Ok(())
}

/// Brings a function's subscriptions in step with its current triggers
/// (in the deploy's, rollback's or removal's transaction). A trigger kept
/// keeps its cursor and failed events; a new one starts at the end of the
/// log; one gone takes its failed events with it.
pub(crate) fn sync_subscriptions(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    triggers: &[TriggerSpec],
) -> Result<()> {
    let existing: Vec<(String, String)> = connection
        .prepare_cached(
            "SELECT trigger, stream FROM subscriptions WHERE project = ? AND function = ?",
        )?
        .query_map(params![project.as_str(), function.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let end: i64 = connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
        row.get(0)
    })?;
    let forget = |trigger: &str| -> Result<()> {
        connection
            .prepare_cached(
                "DELETE FROM subscriptions WHERE project = ? AND function = ? AND trigger = ?",
            )?
            .execute(params![project.as_str(), function.as_str(), trigger])?;
        connection
            .prepare_cached(
                "DELETE FROM event_failures WHERE project = ? AND function = ? AND trigger = ?",
            )?
            .execute(params![project.as_str(), function.as_str(), trigger])?;
        Ok(())
    };
    for (trigger, stream) in &existing {
        let kept = triggers
            .iter()
            .any(|spec| spec.name.as_str() == trigger && &spec.stream(function) == stream);
        if !kept {
            forget(trigger)?;
        }
    }
    for spec in triggers {
        connection
            .prepare_cached(
                "INSERT OR IGNORE INTO subscriptions (project, function, trigger, stream, cursor)
                 VALUES (?, ?, ?, ?, ?)",
            )?
            .execute(params![
                project.as_str(),
                function.as_str(),
                spec.name.as_str(),
                spec.stream(function),
                end
            ])?;
    }
    Ok(())
}

pub(crate) fn events(
    connection: &Connection,
    project: &ProjectId,
    stream: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>> {
    connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE project = ? AND stream = ? AND seq > ? ORDER BY seq LIMIT ?"
        ))?
        .query_map(params![project.as_str(), stream, after, limit], |row| {
            event_from_row(row, 0)
        })?
        .map(|row| row?)
        .collect()
}

pub(crate) fn position_at(
    connection: &Connection,
    project: &ProjectId,
    stream: &str,
    time: UnixMillis,
) -> Result<i64> {
    // Now: the log's end, without reading the stream (a subscription asks
    // this; a scan of the stream's events would cost their size each time).
    if time == UnixMillis::MAX {
        return Ok(connection.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events",
            [],
            |row| row.get(0),
        )?);
    }
    // Times follow positions (both grow as events are logged), so the
    // first event at or after `time` is found by position.
    let first: Option<i64> = connection
        .query_row(
            "SELECT seq FROM events WHERE project = ? AND stream = ? AND time >= ?
             ORDER BY seq LIMIT 1",
            params![project.as_str(), stream, time],
            |row| row.get(0),
        )
        .optional()?;
    match first {
        Some(seq) => Ok(seq - 1),
        None => Ok(connection.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events",
            [],
            |row| row.get(0),
        )?),
    }
}

pub(crate) fn subscriptions(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
) -> Result<Vec<Subscription>> {
    connection
        .prepare_cached(
            "SELECT trigger, stream, cursor FROM subscriptions
             WHERE project = ? AND function = ? ORDER BY trigger",
        )?
        .query_map(params![project.as_str(), function.as_str()], |row| {
            let trigger: String = row.get(0)?;
            Ok(TriggerName::new(trigger)
                .map_err(corrupt)
                .map(|trigger| Subscription {
                    project: project.clone(),
                    function: function.clone(),
                    trigger,
                    stream: row.get(1).unwrap_or_default(),
                    cursor: row.get(2).unwrap_or_default(),
                }))
        })?
        .map(|row| row?)
        .collect()
}

const FAILURE_COLUMNS: &str = "function, trigger, dead, attempts, next_at, first_failed_at, error, \
    seq, project, stream, id, type, subject, key, time, content_type, data, origin, actor";

fn failure_from_row(row: &Row<'_>) -> rusqlite::Result<Result<FailedEvent>> {
    let function: String = row.get(0)?;
    let trigger: String = row.get(1)?;
    let event = event_from_row(row, 7)?;
    Ok((|| {
        Ok(FailedEvent {
            function: FunctionName::new(function).map_err(corrupt)?,
            trigger: TriggerName::new(trigger).map_err(corrupt)?,
            dead: row.get(2)?,
            attempts: row.get(3)?,
            next_at: row.get(4)?,
            first_failed_at: row.get(5)?,
            error: row.get(6)?,
            event: event?,
        })
    })())
}

fn insert_failure(
    connection: &Connection,
    project: &ProjectId,
    failed: &FailedEvent,
) -> Result<()> {
    let event = &failed.event;
    connection
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO event_failures ({FAILURE_COLUMNS})
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))?
        .execute(params![
            failed.function.as_str(),
            failed.trigger.as_str(),
            failed.dead,
            failed.attempts,
            failed.next_at,
            failed.first_failed_at,
            failed.error,
            event.seq,
            project.as_str(),
            event.stream,
            event.id,
            event.kind,
            event.subject,
            event.key,
            event.time,
            event.content_type,
            event.data,
            event.origin.as_ref().map(FunctionName::as_str),
            event.actor.as_ref().map(domain::Actor::to_text),
        ])?;
    Ok(())
}

pub(crate) fn apply_advance(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    cursor: i64,
    failed: &[FailedEvent],
) -> Result<()> {
    let moved = connection
        .prepare_cached(
            "UPDATE subscriptions SET cursor = MAX(cursor, ?)
             WHERE project = ? AND function = ? AND trigger = ?",
        )?
        .execute(params![
            cursor,
            project.as_str(),
            function.as_str(),
            trigger.as_str()
        ])?;
    // A trigger removed meanwhile: its failures go with it.
    if moved == 1 {
        for failed in failed {
            insert_failure(connection, project, failed)?;
        }
    }
    Ok(())
}

pub(crate) fn apply_set_cursor(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    cursor: i64,
) -> Result<bool> {
    Ok(connection
        .prepare_cached(
            "UPDATE subscriptions SET cursor = ? WHERE project = ? AND function = ? AND trigger = ?",
        )?
        .execute(params![
            cursor,
            project.as_str(),
            function.as_str(),
            trigger.as_str()
        ])?
        == 1)
}

pub(crate) fn failures_due(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    now: UnixMillis,
    limit: u32,
) -> Result<Vec<FailedEvent>> {
    connection
        .prepare_cached(&format!(
            "SELECT {FAILURE_COLUMNS} FROM event_failures f
             WHERE project = ?1 AND function = ?2 AND trigger = ?3 AND dead = 0 AND next_at <= ?4
               AND (key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM event_failures g
                   WHERE g.project = ?1 AND g.function = ?2 AND g.trigger = ?3
                     AND g.dead = 0 AND g.key = f.key AND g.seq < f.seq))
             ORDER BY seq LIMIT ?5"
        ))?
        .query_map(
            params![
                project.as_str(),
                function.as_str(),
                trigger.as_str(),
                now,
                limit
            ],
            failure_from_row,
        )?
        .map(|row| row?)
        .collect()
}

pub(crate) fn retry_state(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
) -> Result<(Option<UnixMillis>, Vec<String>)> {
    let scope = params![project.as_str(), function.as_str(), trigger.as_str()];
    // The soonest of the events that can go then: an event held behind an
    // earlier one with its ordering key waits for that one, not its own time.
    let next: Option<UnixMillis> = connection
        .prepare_cached(
            "SELECT MIN(next_at) FROM event_failures f
             WHERE project = ?1 AND function = ?2 AND trigger = ?3 AND dead = 0
               AND (key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM event_failures g
                   WHERE g.project = ?1 AND g.function = ?2 AND g.trigger = ?3
                     AND g.dead = 0 AND g.key = f.key AND g.seq < f.seq))",
        )?
        .query_row(scope, |row| row.get(0))?;
    let keys = connection
        .prepare_cached(
            "SELECT DISTINCT key FROM event_failures
             WHERE project = ? AND function = ? AND trigger = ? AND dead = 0 AND key IS NOT NULL",
        )?
        .query_map(scope, |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((next, keys))
}

pub(crate) fn apply_settle(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    seq: i64,
    settle: &Settle,
) -> Result<()> {
    let scope = (project.as_str(), function.as_str(), trigger.as_str(), seq);
    match settle {
        Settle::Delivered => {
            connection
                .prepare_cached(
                    "DELETE FROM event_failures
                     WHERE project = ? AND function = ? AND trigger = ? AND seq = ?",
                )?
                .execute(params![scope.0, scope.1, scope.2, scope.3])?;
        }
        Settle::Retry {
            attempts,
            next_at,
            error,
        } => {
            connection
                .prepare_cached(
                    "UPDATE event_failures SET attempts = ?, next_at = ?, error = ?
                     WHERE project = ? AND function = ? AND trigger = ? AND seq = ?",
                )?
                .execute(params![
                    attempts, next_at, error, scope.0, scope.1, scope.2, scope.3
                ])?;
        }
        Settle::Dead { attempts, error } => {
            connection
                .prepare_cached(
                    "UPDATE event_failures SET dead = 1, attempts = ?, next_at = ?, error = ?
                     WHERE project = ? AND function = ? AND trigger = ? AND seq = ?",
                )?
                .execute(params![
                    attempts,
                    now_millis(),
                    error,
                    scope.0,
                    scope.1,
                    scope.2,
                    scope.3
                ])?;
        }
    }
    Ok(())
}

/// The `WHERE` clause of a filter over failed events, with its parameters.
fn filter_clause(
    project: &ProjectId,
    filter: &FailedFilter,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clause = "project = ?".to_owned();
    let mut values = vec![Value::Text(project.to_string())];
    if let Some(function) = &filter.function {
        clause.push_str(" AND function = ?");
        values.push(Value::Text(function.to_string()));
    }
    if let Some(trigger) = &filter.trigger {
        clause.push_str(" AND trigger = ?");
        values.push(Value::Text(trigger.to_string()));
    }
    if let Some(seq) = filter.seq {
        clause.push_str(" AND seq = ?");
        values.push(Value::Integer(seq));
    }
    (clause, values)
}

pub(crate) fn dead_letters(
    connection: &Connection,
    project: &ProjectId,
    filter: &FailedFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<FailedEvent>> {
    let (clause, mut values) = filter_clause(project, filter);
    values.push(rusqlite::types::Value::Integer(after));
    values.push(rusqlite::types::Value::Integer(limit.into()));
    connection
        .prepare(&format!(
            "SELECT {FAILURE_COLUMNS} FROM event_failures
             WHERE {clause} AND dead = 1 AND seq > ? ORDER BY seq, function, trigger LIMIT ?"
        ))?
        .query_map(rusqlite::params_from_iter(values), failure_from_row)?
        .map(|row| row?)
        .collect()
}

pub(crate) fn failure_counts(
    connection: &Connection,
    project: &ProjectId,
) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>> {
    connection
        .prepare_cached(
            "SELECT function, trigger, SUM(dead = 0 AND attempts > 0), SUM(dead = 1) FROM event_failures
             WHERE project = ? GROUP BY function, trigger ORDER BY function, trigger",
        )?
        .query_map(params![project.as_str()], |row| {
            let function: String = row.get(0)?;
            let trigger: String = row.get(1)?;
            let waiting: i64 = row.get(2)?;
            let dead: i64 = row.get(3)?;
            Ok((|| {
                Ok((
                    FunctionName::new(function).map_err(corrupt)?,
                    TriggerName::new(trigger).map_err(corrupt)?,
                    waiting as u64,
                    dead as u64,
                ))
            })())
        })?
        .map(|row| row?)
        .collect()
}

pub(crate) fn apply_redrive(
    connection: &Connection,
    project: &ProjectId,
    filter: &FailedFilter,
) -> Result<u64> {
    let (clause, mut values) = filter_clause(project, filter);
    touch_dead(connection, project, &clause, &values)?;
    values.insert(0, rusqlite::types::Value::Integer(now_millis()));
    Ok(connection.execute(
        &format!(
            "UPDATE event_failures SET dead = 0, attempts = 0, next_at = ? WHERE {clause} AND dead = 1"
        ),
        rusqlite::params_from_iter(values),
    )? as u64)
}

/// Tells the workers of the streams whose dead letters a redrive or purge
/// takes (they are due now, or their counts change).
fn touch_dead(
    connection: &Connection,
    project: &ProjectId,
    clause: &str,
    values: &[rusqlite::types::Value],
) -> Result<()> {
    let streams: Vec<String> = connection
        .prepare(&format!(
            "SELECT DISTINCT stream FROM event_failures WHERE {clause} AND dead = 1"
        ))?
        .query_map(rusqlite::params_from_iter(values), |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for stream in streams {
        touched(project, &stream);
    }
    Ok(())
}

pub(crate) fn apply_purge_dead(
    connection: &Connection,
    project: &ProjectId,
    filter: &FailedFilter,
) -> Result<u64> {
    let (clause, values) = filter_clause(project, filter);
    touch_dead(connection, project, &clause, &values)?;
    Ok(connection.execute(
        &format!("DELETE FROM event_failures WHERE {clause} AND dead = 1"),
        rusqlite::params_from_iter(values),
    )? as u64)
}

pub(crate) fn apply_prune(
    connection: &Connection,
    project: &ProjectId,
    before: UnixMillis,
) -> Result<u64> {
    // An event is kept while a subscription of its stream has not passed it.
    let pruned = connection.execute(
        "DELETE FROM events WHERE project = ?1 AND time < ?2
           AND NOT EXISTS (SELECT 1 FROM subscriptions s
                           WHERE s.project = ?1 AND s.stream = events.stream AND s.cursor < events.seq)",
        params![project.as_str(), before],
    )?;
    // Finished asynchronous invocations (their idempotency keys with them).
    connection.execute(
        "DELETE FROM async_invocations WHERE project = ? AND created_at < ?
           AND (succeeded = 1 OR failed = 1)",
        params![project.as_str(), before],
    )?;
    Ok(pruned as u64)
}

const ASYNC_COLUMNS: &str = "id, function, seq, succeeded, attempts, created_at, finished_at, \
    response_status, response_headers, response_body, error, failed";

fn async_from_row(row: &Row<'_>) -> rusqlite::Result<Result<AsyncInvocation>> {
    let function: String = row.get(1)?;
    let succeeded: bool = row.get(3)?;
    let failed: bool = row.get(11)?;
    let status: Option<u16> = row.get(7)?;
    let headers: Option<String> = row.get(8)?;
    let body: Option<Vec<u8>> = row.get(9)?;
    Ok((|| {
        let response = match status {
            Some(status) => Some((
                status,
                serde_json::from_str(headers.as_deref().unwrap_or("[]")).map_err(corrupt)?,
                body.unwrap_or_default(),
            )),
            None => None,
        };
        Ok(AsyncInvocation {
            id: row.get(0)?,
            function: FunctionName::new(function).map_err(corrupt)?,
            seq: row.get(2)?,
            status: if succeeded {
                AsyncStatus::Succeeded
            } else if failed {
                AsyncStatus::Failed
            } else {
                AsyncStatus::Queued
            },
            attempts: row.get(4)?,
            created_at: row.get(5)?,
            finished_at: row.get(6)?,
            response,
            error: row.get(10)?,
        })
    })())
}

fn find_async(
    connection: &Connection,
    project: &ProjectId,
    id: &str,
) -> Result<Option<AsyncInvocation>> {
    connection
        .prepare_cached(&format!(
            "SELECT {ASYNC_COLUMNS} FROM async_invocations WHERE project = ? AND id = ?"
        ))?
        .query_row(params![project.as_str(), id], async_from_row)
        .optional()?
        .transpose()
}

pub(crate) fn apply_enqueue_async(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    request: &AsyncRequest,
) -> Result<(AsyncInvocation, bool)> {
    if let Some(key) = &request.idempotency_key {
        let earlier: Option<(String, Option<String>)> = connection
            .prepare_cached(
                "SELECT id, fingerprint FROM async_invocations
                 WHERE project = ? AND function = ? AND idempotency_key = ?",
            )?
            .query_row(params![project.as_str(), function.as_str(), key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((id, fingerprint)) = earlier {
            if fingerprint.is_some_and(|fingerprint| fingerprint != request.fingerprint) {
                return Err(StoreError::IdempotencyKeyReused.into());
            }
            if let Some(invocation) = find_async(connection, project, &id)? {
                return Ok((invocation, false));
            }
        }
    }
    let bytes = request.request.data.len() as u64;
    if let Some(limit) = request.limit {
        let (requests, waiting): (i64, i64) = connection
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM async_invocations
                 WHERE project = ? AND function = ? AND succeeded = 0 AND failed = 0",
            )?
            .query_row(params![project.as_str(), function.as_str()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        let (requests, waiting) = (requests as u64, waiting as u64);
        if requests >= limit.requests || waiting + bytes > limit.bytes {
            return Err(StoreError::AsyncQueueFull {
                function: function.to_string(),
                requests,
                bytes: waiting,
            }
            .into());
        }
    }
    let event = insert_event(connection, project, request.request.clone(), now_millis())?;
    connection
        .prepare_cached(
            "INSERT INTO async_invocations
                 (project, id, function, seq, idempotency_key, created_at, fingerprint, bytes)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            project.as_str(),
            event.id,
            function.as_str(),
            event.seq,
            request.idempotency_key,
            event.time,
            request.fingerprint,
            bytes as i64
        ])?;
    let invocation = AsyncInvocation {
        id: event.id,
        function: function.clone(),
        seq: event.seq,
        status: AsyncStatus::Queued,
        attempts: 0,
        created_at: event.time,
        finished_at: None,
        response: None,
        error: None,
    };
    Ok((invocation, true))
}

pub(crate) fn apply_record_async(
    connection: &Connection,
    project: &ProjectId,
    id: &str,
    attempt: &AsyncAttempt,
) -> Result<()> {
    let (status, headers, body) = match &attempt.response {
        Some((status, headers, body)) => (
            Some(*status),
            Some(serde_json::to_string(headers).map_err(corrupt)?),
            Some(body.as_slice()),
        ),
        None => (None, None, None),
    };
    connection
        .prepare_cached(
            "UPDATE async_invocations SET attempts = MAX(attempts, ?), succeeded = succeeded OR ?,
                 failed = ?, finished_at = ?,
                 response_status = COALESCE(?, response_status),
                 response_headers = COALESCE(?, response_headers),
                 response_body = COALESCE(?, response_body),
                 error = ?
             WHERE project = ? AND id = ?",
        )?
        .execute(params![
            attempt.attempts,
            attempt.succeeded,
            attempt.failed,
            now_millis(),
            status,
            headers,
            body,
            attempt.error,
            project.as_str(),
            id
        ])?;
    Ok(())
}

/// An asynchronous invocation, its status decided by its failed event (if
/// any): waiting for a retry, or dead.
pub(crate) fn async_invocation(
    connection: &Connection,
    project: &ProjectId,
    id: &str,
) -> Result<Option<AsyncInvocation>> {
    let Some(mut invocation) = find_async(connection, project, id)? else {
        return Ok(None);
    };
    if invocation.status == AsyncStatus::Succeeded {
        return Ok(Some(invocation));
    }
    let dead: Option<bool> = connection
        .prepare_cached(
            "SELECT dead FROM event_failures
             WHERE project = ? AND function = ? AND trigger = ? AND seq = ?",
        )?
        .query_row(
            params![
                project.as_str(),
                invocation.function.as_str(),
                domain::ASYNC_TRIGGER,
                invocation.seq
            ],
            |row| row.get(0),
        )
        .optional()?;
    invocation.status = match dead {
        Some(true) => AsyncStatus::Failed,
        Some(false) => AsyncStatus::Retrying,
        // A purged dead letter stays failed.
        None if invocation.status == AsyncStatus::Failed => AsyncStatus::Failed,
        // Failed, and about to be recorded for a retry.
        None if invocation.attempts > 0 => AsyncStatus::Retrying,
        None => AsyncStatus::Queued,
    };
    Ok(Some(invocation))
}

/// The pseudo-function whose subscriptions keep a stream logged for live
/// queries (function names start with a letter or digit, so no function
/// can take it). Their cursor is the largest position, so they never hold
/// back pruning.
pub(crate) const WATCHER: &str = "_realtime";

pub(crate) fn apply_watch_stream(
    connection: &Connection,
    project: &ProjectId,
    stream: &str,
) -> Result<()> {
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO subscriptions (project, function, trigger, stream, cursor)
             VALUES (?, ?, ?, ?, ?)",
        )?
        .execute(params![project.as_str(), WATCHER, stream, stream, i64::MAX])?;
    Ok(())
}

pub(crate) fn backlog(
    connection: &Connection,
    project: &ProjectId,
    stream: &str,
    after: i64,
) -> Result<u64> {
    let count: i64 = connection
        .prepare_cached("SELECT COUNT(*) FROM events WHERE project = ? AND stream = ? AND seq > ?")?
        .query_row(params![project.as_str(), stream, after], |row| row.get(0))?;
    Ok(count as u64)
}

/// What a scheduled event's failure row says until it is delivered.
pub(crate) const SCHEDULED: &str = "scheduled";

pub(crate) fn apply_schedule(
    connection: &Connection,
    project: &ProjectId,
    function: &FunctionName,
    trigger: &TriggerName,
    event: &NewEvent,
    at: UnixMillis,
) -> Result<Event> {
    // Its time is the scheduled one (CloudEvents' `time`: when it happened).
    let event = insert_event(connection, project, event.clone(), at)?;
    let moved = connection
        .prepare_cached(
            "UPDATE subscriptions SET cursor = MAX(cursor, ?)
             WHERE project = ? AND function = ? AND trigger = ?",
        )?
        .execute(params![
            event.seq,
            project.as_str(),
            function.as_str(),
            trigger.as_str()
        ])?;
    if moved == 1 {
        let due = FailedEvent {
            function: function.clone(),
            trigger: trigger.clone(),
            event: event.clone(),
            dead: false,
            attempts: 0,
            next_at: at,
            first_failed_at: at,
            error: SCHEDULED.to_owned(),
        };
        insert_failure(connection, project, &due)?;
    }
    Ok(event)
}

#[store::async_trait]
impl EventStore for SqliteStore {
    async fn publish(
        &self,
        project: &ProjectId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StoreError> {
        let project = project.clone();
        self.writer()
            .transaction(move |transaction| apply_publish(transaction, &project, &events))
            .await
    }

    async fn events(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let (project, stream) = (project.clone(), stream.to_owned());
        self.read(move |connection| events(connection, &project, &stream, after, limit))
            .await
    }

    async fn backlog(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
    ) -> Result<u64, StoreError> {
        let (project, stream) = (project.clone(), stream.to_owned());
        self.read(move |connection| backlog(connection, &project, &stream, after))
            .await
    }

    async fn position_at(
        &self,
        project: &ProjectId,
        stream: &str,
        time: UnixMillis,
    ) -> Result<i64, StoreError> {
        let (project, stream) = (project.clone(), stream.to_owned());
        self.read(move |connection| position_at(connection, &project, &stream, time))
            .await
    }

    async fn subscriptions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.read(move |connection| subscriptions(connection, &project, &function))
            .await
    }

    async fn advance(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
        failed: Vec<FailedEvent>,
    ) -> Result<(), StoreError> {
        let (project, function, trigger) = (project.clone(), function.clone(), trigger.clone());
        self.writer()
            .transaction(move |transaction| {
                apply_advance(transaction, &project, &function, &trigger, cursor, &failed)
            })
            .await
    }

    async fn schedule(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        event: NewEvent,
        at: UnixMillis,
    ) -> Result<Event, StoreError> {
        let (project, function, trigger) = (project.clone(), function.clone(), trigger.clone());
        self.writer()
            .transaction(move |transaction| {
                apply_schedule(transaction, &project, &function, &trigger, &event, at)
            })
            .await
    }

    async fn set_cursor(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        let (project, function, trigger) = (project.clone(), function.clone(), trigger.clone());
        self.writer()
            .transaction(move |transaction| {
                apply_set_cursor(transaction, &project, &function, &trigger, cursor)
            })
            .await
    }

    async fn failures_due(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        let (project, function, trigger) = (project.clone(), function.clone(), trigger.clone());
        self.read(move |connection| {
            failures_due(connection, &project, &function, &trigger, now, limit)
        })
        .await
    }

    async fn retry_state(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
    ) -> Result<(Option<UnixMillis>, Vec<String>), StoreError> {
        let (project, function, trigger) = (project.clone(), function.clone(), trigger.clone());
        self.read(move |connection| retry_state(connection, &project, &function, &trigger))
            .await
    }

    async fn settle(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        seq: i64,
        settle: Settle,
    ) -> Result<(), StoreError> {
        let (project, function, trigger) = (project.clone(), function.clone(), trigger.clone());
        self.writer()
            .transaction(move |transaction| {
                apply_settle(transaction, &project, &function, &trigger, seq, &settle)
            })
            .await
    }

    async fn dead_letters(
        &self,
        project: &ProjectId,
        filter: &FailedFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        let (project, filter) = (project.clone(), filter.clone());
        self.read(move |connection| dead_letters(connection, &project, &filter, after, limit))
            .await
    }

    async fn failure_counts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>, StoreError> {
        let project = project.clone();
        self.read(move |connection| failure_counts(connection, &project))
            .await
    }

    async fn redrive(&self, project: &ProjectId, filter: FailedFilter) -> Result<u64, StoreError> {
        let project = project.clone();
        self.writer()
            .transaction(move |transaction| apply_redrive(transaction, &project, &filter))
            .await
    }

    async fn purge_dead(
        &self,
        project: &ProjectId,
        filter: FailedFilter,
    ) -> Result<u64, StoreError> {
        let project = project.clone();
        self.writer()
            .transaction(move |transaction| apply_purge_dead(transaction, &project, &filter))
            .await
    }

    async fn prune_events(
        &self,
        project: &ProjectId,
        before: UnixMillis,
    ) -> Result<u64, StoreError> {
        let project = project.clone();
        self.writer()
            .transaction(move |transaction| apply_prune(transaction, &project, before))
            .await
    }

    async fn enqueue_async(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        request: AsyncRequest,
    ) -> Result<(AsyncInvocation, bool), StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.writer()
            .transaction(move |transaction| {
                apply_enqueue_async(transaction, &project, &function, &request)
            })
            .await
    }

    async fn record_async(
        &self,
        project: &ProjectId,
        id: &str,
        attempt: AsyncAttempt,
    ) -> Result<(), StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.writer()
            .transaction(move |transaction| {
                apply_record_async(transaction, &project, &id, &attempt)
            })
            .await
    }

    async fn async_invocation(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<Option<AsyncInvocation>, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.read(move |connection| async_invocation(connection, &project, &id))
            .await
    }

    async fn watch_stream(&self, project: &ProjectId, stream: &str) -> Result<(), StoreError> {
        let (project, stream) = (project.clone(), stream.to_owned());
        self.writer()
            .transaction(move |transaction| apply_watch_stream(transaction, &project, &stream))
            .await
    }

    fn on_events(&self, hook: store::events::Hook) {
        *self
            .shared
            .event_hook
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hook);
    }
}
