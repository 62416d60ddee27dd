//! Events a transaction logs (messages, data changes, requests, ticks)
//! and the subscriptions that read them.
//!
//! Positions are commit-ordered per stream: a reader that has seen
//! position `n` of a stream never later finds an event below `n` commit
//! there. A plain sequence does not give that (a transaction that drew 10
//! may commit after one that drew 11, and a reader between the two commits
//! would move its cursor past 10). So a transaction gathers its events in
//! an [`Outbox`] while it makes its data writes, then, last thing before
//! its commit, takes a transaction-scoped advisory lock per stream (in a
//! fixed order, so two transactions cannot deadlock on them), and only
//! then draws the numbers: the next writer of a stream draws after this
//! one has committed. The lock is held for the length of the commit, not
//! of the whole transaction.
use crate::Result;
use deadpool_postgres::GenericClient;
use domain::{FunctionName, ProjectId, TriggerSpec, UnixMillis, now_millis};
use store::events::{Event, NewEvent};

/// The pseudo-function whose subscriptions keep a stream logged for live
/// queries (function names start with a letter or digit, so no function
/// can take it). Their cursor is the largest position, so they never hold
/// back pruning.
pub(crate) const WATCHER: &str = "_realtime";

/// The events a transaction will log, numbered at [`Outbox::write`].
#[derive(Default)]
pub(crate) struct Outbox {
    events: Vec<(ProjectId, NewEvent, UnixMillis, Option<domain::Actor>)>,
}

impl Outbox {
    /// Logs `event` with the transaction.
    pub(crate) fn push(&mut self, project: &ProjectId, event: NewEvent) {
        self.push_at(project, event, now_millis());
    }

    /// Logs `event` with the transaction, with `time` as its time (a
    /// scheduled event's is when it is due).
    pub(crate) fn push_at(&mut self, project: &ProjectId, event: NewEvent, time: UnixMillis) {
        // Pushed where the write is asked for: the actor is its caller's.
        self.events
            .push((project.clone(), event, time, domain::actor::current_actor()));
    }

    /// Logs a change (the outbox pattern): with the transaction of the
    /// change itself, if anything reads its stream.
    pub(crate) async fn log_change(
        &mut self,
        transaction: &impl GenericClient,
        project: &ProjectId,
        event: NewEvent,
    ) -> Result<()> {
        if watched(transaction, project, &event.stream).await? {
            self.push(project, event);
        }
        Ok(())
    }

    /// Numbers and inserts the events, in the order they were pushed; call
    /// it last before the commit. Returns them with their positions.
    pub(crate) async fn write(self, transaction: &impl GenericClient) -> Result<Vec<Event>> {
        if self.events.is_empty() {
            return Ok(Vec::new());
        }
        let mut streams: Vec<String> = self
            .events
            .iter()
            .map(|(project, event, _, _)| lock_name(project, &event.stream))
            .collect();
        streams.sort();
        streams.dedup();
        let lock = transaction
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .await?;
        for stream in &streams {
            transaction.execute(&lock, &[stream]).await?;
        }
        // The positions drawn in one statement, then every event inserted
        // in one more: two round trips under the locks, however many
        // events. Positions go to the events in the order they were pushed.
        let draw = transaction
            .prepare_cached("SELECT nextval('event_positions') FROM generate_series(1, $1)")
            .await?;
        let count = i32::try_from(self.events.len()).unwrap_or(i32::MAX);
        let mut seqs: Vec<i64> = transaction
            .query(&draw, &[&count])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        seqs.sort_unstable();
        let written: Vec<Event> = self
            .events
            .into_iter()
            .zip(seqs)
            .map(|((project, event, time, actor), seq)| Event {
                seq,
                project,
                stream: event.stream,
                id: uuid::Uuid::now_v7().to_string(),
                kind: event.kind,
                subject: event.subject,
                key: event.key,
                time,
                content_type: event.content_type,
                data: event.data,
                origin: event.origin,
                actor,
            })
            .collect();
        let column = |field: fn(&Event) -> Option<&str>| -> Vec<Option<&str>> {
            written.iter().map(field).collect()
        };
        let insert = transaction
            .prepare_cached(
                "INSERT INTO events (seq, project, stream, id, type, subject, key, time, content_type, data, origin, actor)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::bigint[], $9::text[], $10::bytea[],
                                      $11::text[], $12::text[])",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &written.iter().map(|event| event.seq).collect::<Vec<_>>(),
                    &column(|event| Some(event.project.as_str())),
                    &column(|event| Some(&event.stream)),
                    &column(|event| Some(&event.id)),
                    &column(|event| Some(&event.kind)),
                    &column(|event| event.subject.as_deref()),
                    &column(|event| event.key.as_deref()),
                    &written.iter().map(|event| event.time).collect::<Vec<_>>(),
                    &column(|event| event.content_type.as_deref()),
                    &written
                        .iter()
                        .map(|event| event.data.as_slice())
                        .collect::<Vec<_>>(),
                    &column(|event| event.origin.as_ref().map(FunctionName::as_str)),
                    &written
                        .iter()
                        .map(|event| event.actor.as_ref().map(domain::Actor::to_text))
                        .collect::<Vec<_>>(),
                ],
            )
            .await?;
        Ok(written)
    }
}

/// What the per-stream lock is named by.
fn lock_name(project: &ProjectId, stream: &str) -> String {
    format!("{}\n{stream}", project.as_str())
}

/// The streams of `events`, each once, for [`crate::PgStore::after_commit`].
pub(crate) fn streams_of(events: &[Event]) -> Vec<(ProjectId, String)> {
    let mut streams: Vec<(ProjectId, String)> = events
        .iter()
        .map(|event| (event.project.clone(), event.stream.clone()))
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

/// Whether anything (a trigger, a live query) reads the stream: changes
/// are logged only then.
///
/// The answer holds until the caller's commit: the check takes the
/// stream's watch lock shared (writers do not wait on each other), and a
/// new reader of the stream ([`watch`]) takes it exclusively, so it waits
/// for every writer that found the stream unwatched to commit. A snapshot
/// read after [`watch`] then shows those writers' changes, and every later
/// change is logged. (Without it, a change checked before the reader came
/// and committed after its snapshot would be in neither.)
pub(crate) async fn watched(
    client: &impl GenericClient,
    project: &ProjectId,
    stream: &str,
) -> Result<bool> {
    let lock = client
        .prepare_cached("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 1))")
        .await?;
    client
        .execute(&lock, &[&lock_name(project, stream)])
        .await?;
    // A statement of its own, after the lock: its snapshot is taken once
    // a reader that held the lock has committed.
    let statement = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE project = $1 AND stream = $2)",
        )
        .await?;
    Ok(client
        .query_one(&statement, &[&project.as_str(), &stream])
        .await?
        .get(0))
}

/// In the transaction that adds a reader of the stream: waits for the
/// writers that found it unwatched to commit, and keeps new ones from
/// checking until this transaction commits (see [`watched`]).
pub(crate) async fn watch(
    client: &impl GenericClient,
    project: &ProjectId,
    stream: &str,
) -> Result<()> {
    let lock = client
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
        .await?;
    client
        .execute(&lock, &[&lock_name(project, stream)])
        .await?;
    Ok(())
}

/// Brings a function's subscriptions in step with its current triggers
/// (in the deploy's, rollback's or removal's transaction). A trigger kept
/// keeps its cursor and failed events; a new one starts at the end of its
/// stream; one gone takes its failed events with it.
pub(crate) async fn sync_subscriptions(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
    triggers: &[TriggerSpec],
) -> Result<()> {
    let existing: Vec<(String, String)> = client
        .query(
            "SELECT trigger, stream FROM subscriptions WHERE project = $1 AND function = $2",
            &[&project.as_str(), &function.as_str()],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (trigger, stream) in &existing {
        let kept = triggers
            .iter()
            .any(|spec| spec.name.as_str() == trigger && &spec.stream(function) == stream);
        if !kept {
            for table in ["subscriptions", "event_failures"] {
                client
                    .execute(
                        &format!(
                            "DELETE FROM {table} WHERE project = $1 AND function = $2 AND trigger = $3"
                        ),
                        &[&project.as_str(), &function.as_str(), trigger],
                    )
                    .await?;
            }
        }
    }
    // New readers of the streams, in one order (see `watched`).
    let mut streams: Vec<String> = triggers.iter().map(|spec| spec.stream(function)).collect();
    streams.sort();
    streams.dedup();
    for stream in &streams {
        watch(client, project, stream).await?;
    }
    for spec in triggers {
        // A new trigger starts at the end of its own stream: an event of
        // it committing after this point gets a higher position (the
        // end of the whole log could be above one of this stream that
        // commits later, which the trigger would then pass over).
        let stream = spec.stream(function);
        let end: i64 = client
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE project = $1 AND stream = $2",
                &[&project.as_str(), &stream],
            )
            .await?
            .get(0);
        client
            .execute(
                "INSERT INTO subscriptions (project, function, trigger, stream, cursor)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &project.as_str(),
                    &function.as_str(),
                    &spec.name.as_str(),
                    &stream,
                    &end,
                ],
            )
            .await?;
    }
    Ok(())
}
