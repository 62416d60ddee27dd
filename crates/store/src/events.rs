//! Events: one ordered log per project and stream (a topic's messages, a
//! collection's or a bucket's changes, a schedule's ticks), the
//! subscriptions that read it (one per function trigger, each with its own
//! cursor), and the events whose delivery failed (waiting for a retry, or
//! dead letters).
//!
//! Changes to documents and objects are logged in the transaction that
//! makes them (an outbox), and only while a trigger reads their stream: a
//! committed change never loses its event, a failed one never has one.
use crate::StoreError;
use domain::{FunctionName, ProjectId, TriggerName, UnixMillis};

/// Largest event payload.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest ordering key and subject.
pub const MAX_EVENT_KEY_BYTES: usize = 1024;

/// What [`EventStore::on_events`] calls: the project and stream of each
/// stream with news.
pub type Hook = Box<dyn Fn(&[(ProjectId, String)]) + Send + Sync>;

/// Most messages one publish takes.
pub const MAX_PUBLISH_BATCH: usize = 1000;

/// Why a message cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
}

/// Checks a batch of messages a client or a guest publishes: 1 to
/// [`MAX_PUBLISH_BATCH`] messages, each at most [`MAX_EVENT_BYTES`], keys
/// and subjects 1 to [`MAX_EVENT_KEY_BYTES`] bytes.
pub fn check_messages(messages: &[NewEvent]) -> Result<(), MessageError> {
    if messages.is_empty() {
        return Err(MessageError::Invalid(
            "publish at least one message".to_owned(),
        ));
    }
    if messages.len() > MAX_PUBLISH_BATCH {
        return Err(MessageError::TooLarge(format!(
            "publish at most {MAX_PUBLISH_BATCH} messages at once"
        )));
    }
    for (at, message) in messages.iter().enumerate() {
        if message.data.len() > MAX_EVENT_BYTES {
            return Err(MessageError::TooLarge(format!(
                "message {at} is larger than {MAX_EVENT_BYTES} bytes"
            )));
        }
        for (what, value) in [
            ("ordering key", &message.key),
            ("subject", &message.subject),
        ] {
            if value
                .as_ref()
                .is_some_and(|value| value.is_empty() || value.len() > MAX_EVENT_KEY_BYTES)
            {
                return Err(MessageError::Invalid(format!(
                    "message {at}: the {what} must be 1 to {MAX_EVENT_KEY_BYTES} bytes"
                )));
            }
        }
    }
    Ok(())
}

/// An event to append to a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub stream: String,
    /// The CloudEvents `type`, e.g. `wok.queue.message`.
    pub kind: String,
    /// The CloudEvents `subject`: the document id, the object key, or what
    /// the publisher said.
    pub subject: Option<String>,
    /// Events with the same ordering key are delivered one at a time, in
    /// order.
    pub key: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
    /// The function whose write caused the event, if a function's.
    pub origin: Option<FunctionName>,
}

/// An event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its position: increasing, never reused.
    pub seq: i64,
    pub project: ProjectId,
    pub stream: String,
    /// Unique (a UUIDv7), the CloudEvents `id`.
    pub id: String,
    pub kind: String,
    pub subject: Option<String>,
    pub key: Option<String>,
    pub time: UnixMillis,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
    pub origin: Option<FunctionName>,
    /// Who the write that logged it was made for (`domain::actor`).
    pub actor: Option<domain::Actor>,
}

/// A function trigger reading a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub project: ProjectId,
    pub function: FunctionName,
    pub trigger: TriggerName,
    pub stream: String,
    /// Every event up to this position was delivered, skipped, or moved to
    /// the failed events.
    pub cursor: i64,
}

/// An event whose delivery to a trigger failed.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    pub function: FunctionName,
    pub trigger: TriggerName,
    pub event: Event,
    /// No more attempts: a dead letter, until re-driven.
    pub dead: bool,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// When the next attempt is due (for a dead letter: when it died).
    pub next_at: UnixMillis,
    pub first_failed_at: UnixMillis,
    pub error: String,
}

/// What became of a retried event.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Delivered: forgotten.
    Delivered,
    /// Failed again; try again at `next_at`.
    Retry {
        attempts: u32,
        next_at: UnixMillis,
        error: String,
    },
    /// Failed for the last time: a dead letter.
    Dead { attempts: u32, error: String },
}

/// Which failed events an operation takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailedFilter {
    pub function: Option<FunctionName>,
    pub trigger: Option<TriggerName>,
    /// Only this event.
    pub seq: Option<i64>,
}

/// A response kept: status, headers and (up to a limit) body.
pub type StoredResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// An asynchronous invocation and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncInvocation {
    /// The id of its request event.
    pub id: String,
    pub function: FunctionName,
    /// Its request event's position.
    pub seq: i64,
    pub status: AsyncStatus,
    /// Deliveries tried so far.
    pub attempts: u32,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// The last response: status, headers and (up to a limit) body.
    pub response: Option<StoredResponse>,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// Where an asynchronous invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncStatus {
    /// Not delivered yet.
    Queued,
    /// Failed; tried again later.
    Retrying,
    Succeeded,
    /// Failed for good: a dead letter.
    Failed,
}

impl AsyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AsyncStatus::Queued => "queued",
            AsyncStatus::Retrying => "retrying",
            AsyncStatus::Succeeded => "succeeded",
            AsyncStatus::Failed => "failed",
        }
    }
}

/// An asynchronous request to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncRequest {
    /// The request, as its event.
    pub request: NewEvent,
    /// A repeated call with this key gets the first call's invocation. The
    /// caller scopes it (to whoever sent it).
    pub idempotency_key: Option<String>,
    /// A digest of what was asked (method, path, body): a key used again
    /// with another request is refused.
    pub fingerprint: String,
    /// The function's queue of requests not yet finished (queued or
    /// retrying) may not grow past this; `None` for no bound.
    pub limit: Option<AsyncQueueLimit>,
}

/// How many asynchronous requests of one function may wait, and how large
/// (their stored requests) in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncQueueLimit {
    pub requests: u64,
    pub bytes: u64,
}

/// What an attempt at an asynchronous invocation came to.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncAttempt {
    pub attempts: u32,
    pub succeeded: bool,
    /// The last attempt failed: it is a dead letter now.
    pub failed: bool,
    pub response: Option<StoredResponse>,
    pub error: Option<String>,
}

/// The event log contract. Every call names its project.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events (one transaction); resolves with them, numbered, once
    /// durable.
    async fn publish(
        &self,
        project: &ProjectId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StoreError>;

    /// Events of a stream after position `after`, oldest first.
    async fn events(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// How many events of the stream lie after position `after`.
    async fn backlog(
        &self,
        project: &ProjectId,
        stream: &str,
        after: i64,
    ) -> Result<u64, StoreError>;

    /// The position just before the stream's first event at or after `time`.
    async fn position_at(
        &self,
        project: &ProjectId,
        stream: &str,
        time: UnixMillis,
    ) -> Result<i64, StoreError>;

    /// The subscriptions of a function (one per trigger of its current
    /// version: deploys, rollbacks and removals keep them in step, in the
    /// same transaction).
    async fn subscriptions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Moves a subscription's cursor forward to `cursor` and records the
    /// events of that stretch whose delivery failed, in one transaction.
    async fn advance(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
        failed: Vec<FailedEvent>,
    ) -> Result<(), StoreError>;

    /// Logs `event` on a trigger's own stream (a schedule's) and makes it
    /// due for delivery at `at`, in one transaction: it is delivered then
    /// by the retry path (attempt 1), with no write on the way. A store
    /// several nodes share logs one tick per trigger and time: a second
    /// one answers [`StoreError::ConditionFailed`].
    async fn schedule(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        event: NewEvent,
        at: UnixMillis,
    ) -> Result<Event, StoreError>;

    /// Sets a subscription's cursor, backwards too (a replay). Returns
    /// whether the subscription exists.
    async fn set_cursor(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        cursor: i64,
    ) -> Result<bool, StoreError>;

    /// Failed events of a trigger due for another attempt at `now`, oldest
    /// first; of events sharing an ordering key, only the oldest.
    async fn failures_due(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError>;

    /// When the trigger's next retry is due, and the ordering keys held by
    /// events waiting for a retry (later events with those keys wait too).
    async fn retry_state(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
    ) -> Result<(Option<UnixMillis>, Vec<String>), StoreError>;

    /// Records what became of a retried event.
    async fn settle(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        trigger: &TriggerName,
        seq: i64,
        settle: Settle,
    ) -> Result<(), StoreError>;

    /// Dead letters, oldest first, after `after` (an event position).
    async fn dead_letters(
        &self,
        project: &ProjectId,
        filter: &FailedFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError>;

    /// Failed events (waiting or dead) per function and trigger.
    async fn failure_counts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>, StoreError>;

    /// Makes dead letters due again now, with a fresh count of attempts.
    /// Returns how many.
    async fn redrive(&self, project: &ProjectId, filter: FailedFilter) -> Result<u64, StoreError>;

    /// Deletes dead letters. Returns how many.
    async fn purge_dead(
        &self,
        project: &ProjectId,
        filter: FailedFilter,
    ) -> Result<u64, StoreError>;

    /// Deletes the project's events older than `before` that every
    /// subscription has passed. Returns how many.
    async fn prune_events(
        &self,
        project: &ProjectId,
        before: UnixMillis,
    ) -> Result<u64, StoreError>;

    /// Queues an asynchronous invocation of `function` (its request as the
    /// event) in one transaction. With an idempotency key already used for
    /// the function, nothing is queued and the earlier invocation is
    /// returned instead (the flag says whether this call queued it), or
    /// [`StoreError::IdempotencyKeyReused`] if it was for another request.
    /// A queue at its limit refuses with [`StoreError::AsyncQueueFull`].
    async fn enqueue_async(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        request: AsyncRequest,
    ) -> Result<(AsyncInvocation, bool), StoreError>;

    /// Records an attempt at an asynchronous invocation.
    async fn record_async(
        &self,
        project: &ProjectId,
        id: &str,
        attempt: AsyncAttempt,
    ) -> Result<(), StoreError>;

    /// An asynchronous invocation of the project.
    async fn async_invocation(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<Option<AsyncInvocation>, StoreError>;

    /// Makes sure changes to `stream` (a collection's or a bucket's) are
    /// logged from now on, for live queries, even with no trigger reading
    /// it. Resolves once the change is durable.
    async fn watch_stream(&self, project: &ProjectId, stream: &str) -> Result<(), StoreError>;

    /// Called (on the writer's thread: keep it short) after a commit that
    /// logged events (or re-drove dead letters), with the streams concerned;
    /// with none when the store may have missed news of any stream (a
    /// shared store that lost its connection to other nodes' news). One
    /// hook; a second call replaces the first.
    fn on_events(&self, hook: Hook);

    /// Takes the lease `name` for `holder` for `ttl`, or keeps it: the
    /// epoch it is held under, or `None` while another holder's lease has
    /// not expired. Nodes sharing a store take a lease per trigger, so
    /// that one node works it at a time. A store only one node uses grants
    /// every lease (epoch 0).
    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let _ = (name, holder, ttl);
        Ok(Some(0))
    }

    /// Gives up a lease (a node that stops working a trigger), so that
    /// another may take it at once.
    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _ = (name, holder);
        Ok(())
    }
}

/// Who holds a lease, under which epoch: what a fenced write checks. A
/// lease is taken again under a new epoch whenever it changes hands, so a
/// holder that lost it (paused past its expiry, say) cannot write as if it
/// still held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
}

/// What the current poll writes under (see [`with_origin`], [`with_fence`]).
#[derive(Default, Clone)]
struct Context {
    origin: Option<FunctionName>,
    fence: Option<Fence>,
}

thread_local! {
    static CONTEXT: std::cell::RefCell<Context> = std::cell::RefCell::new(Context::default());
}

/// A future whose store writes are made in a context: on behalf of a
/// function (the change events they log name it, so its own triggers can
/// pass them over; for writes whose API does not name an origin, such as
/// object writes made through the objects service), or under a lease
/// (a shared store refuses the write once the lease is lost).
pub struct WithContext<F> {
    apply: fn(&mut Context, &Context),
    given: Context,
    inner: std::pin::Pin<Box<F>>,
}

/// Runs `future` on behalf of `origin`.
pub fn with_origin<F: std::future::Future>(origin: FunctionName, future: F) -> WithContext<F> {
    WithContext {
        apply: |context, given| context.origin = given.origin.clone(),
        given: Context {
            origin: Some(origin),
            fence: None,
        },
        inner: Box::pin(future),
    }
}

/// Runs `future` under a lease: the writes of the event log that move
/// what the lease guards (cursors, retries, ticks, asynchronous results)
/// check it in their own transaction.
pub fn with_fence<F: std::future::Future>(fence: Fence, future: F) -> WithContext<F> {
    WithContext {
        apply: |context, given| context.fence = given.fence.clone(),
        given: Context {
            origin: None,
            fence: Some(fence),
        },
        inner: Box::pin(future),
    }
}

impl<F: std::future::Future> std::future::Future for WithContext<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let previous = CONTEXT.with(|current| {
            let previous = current.borrow().clone();
            (self.apply)(&mut current.borrow_mut(), &self.given);
            previous
        });
        let result = self.inner.as_mut().poll(cx);
        CONTEXT.with(|current| *current.borrow_mut() = previous);
        result
    }
}

/// The function the current poll writes for, if any.
pub fn current_origin() -> Option<FunctionName> {
    CONTEXT.with(|current| current.borrow().origin.clone())
}

/// The lease the current poll writes under, if any.
pub fn current_fence() -> Option<Fence> {
    CONTEXT.with(|current| current.borrow().fence.clone())
}
