//! `GET /v1/realtime`: one WebSocket per client carrying many
//! subscriptions, to topics and to live document queries. Messages are JSON
//! text frames (the protocol is in the README):
//!
//! - client: `{"type": "subscribe", "id", "topic" | "collection" + "query",
//!   "after"?}`, `{"type": "unsubscribe", "id"}`, `{"type": "ping"}`;
//! - server: `subscribed`, `event` (topics), `snapshot` then `change`
//!   (`added`, `modified`, `removed`) for queries, `error`, `pong`.
//!
//! Every message carries the event log's position; a client that
//! reconnects subscribes with `after` set to the last position it got and
//! misses nothing. Each connection's outgoing buffer is bounded: a client
//! that does not read is disconnected (close code 4008) instead of growing
//! the server. Access rules are checked at subscribe time and again for
//! every event delivered.
//!
//! Bounds: each connection's queue is bounded in messages and bytes, and
//! all connections' unread bytes by one shared [`Budget`]: past it, the
//! connection holding the most unread (if more than its floor, 1 MiB) is
//! closed with 1013, so many clients that do not read cannot fill the
//! server's memory and clients that keep up are not touched. A write may
//! take 10 s plus a second for each 64 KiB of its message; the closing
//! frame waits at most a few seconds for a client that does not read. A client's own close is
//! answered. Snapshots are document reads under the store's limit of reads
//! at once, like REST's, and their message is serialized off the async
//! threads.
//!
//! Close codes: 4008 for a client that does not keep up (or falls behind
//! its stream's broadcast), 1008 for a key revoked (checked again on every
//! `Auth::changes`, as are the rules of each subscription), 1002, 1007 and
//! 1009 for protocol errors, invalid UTF-8 and messages over the size
//! limit.
use crate::projects::Scope;
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::Caller;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use domain::{Access, CollectionName, ProjectId, ResourceKind, TopicName};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Messages waiting to be written to one client; beyond, it is too slow.
pub const OUT_BUFFER: usize = 1024;
/// Bytes of messages waiting to be written to one client; beyond, it is
/// too slow. (A snapshot is at most `store::docs::MAX_SNAPSHOT_BYTES`.)
pub const OUT_BUFFER_BYTES: usize = 16 << 20;
/// Longest a write to the client may take, plus a second for each
/// [`MIN_WRITE_RATE`] bytes of it; a client that does not read for that
/// long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slowest reader the server waits for (a second): 64 KiB, so a 4 MiB
/// snapshot gets 74 s.
const MIN_WRITE_RATE: usize = 64 << 10;
/// Bytes a connection may always have unread, however much all the
/// others hold (see [`Budget`]).
const OUT_BUFFER_FLOOR: usize = 1 << 20;
/// Longest the closing frame may wait for a client that does not read
/// (it comes after what the client has not read yet).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Close code for a client that does not keep up.
pub const SLOW_CONSUMER: u16 = 4008;
/// Close code when all clients together hold the whole [`Budget`]: try
/// again later.
const TRY_AGAIN_LATER: u16 = 1013;

/// The bytes of messages all realtime clients have not read yet (queued,
/// or being written), against a limit. Past it, the open connection
/// holding the most unread is closed (`TRY_AGAIN_LATER`) if that is more
/// than `OUT_BUFFER_FLOOR`, so many clients that do not read cannot fill
/// the server's memory, and a client that keeps up is not the one closed
/// even while a burst of its own is still queued. The bytes of
/// connections already closing count as given back: they are, as soon as
/// their writers stop.
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// Each open connection's unread bytes and close, by connection.
    holders: std::sync::Mutex<HashMap<u64, Holder>>,
    next_holder: std::sync::atomic::AtomicU64,
}

/// What one connection has not had written yet.
#[derive(Default)]
struct Unread {
    /// Bytes of the messages queued and not yet taken by the writer.
    queued: AtomicUsize,
    /// Bytes of the message being written.
    writing: AtomicUsize,
}

impl Unread {
    fn total(&self) -> usize {
        self.queued.load(Ordering::Relaxed) + self.writing.load(Ordering::Relaxed)
    }
}

/// One connection as the [`Budget`] sees it. Its close is weak: once
/// every sender of the connection is gone, its writer stops (and gives
/// its queue back) without waiting for the budget.
struct Holder {
    unread: Arc<Unread>,
    close: std::sync::Weak<std::sync::Mutex<Option<CloseSender>>>,
}

/// What [`Budget::relieve`] did for a message past the limit.
enum Relief {
    /// The message may be queued: connections closing give enough back,
    /// another one was closed, or every open one is within its floor.
    Keep,
    /// The sending connection holds the most: it was closed.
    CloseMe,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
            holders: std::sync::Mutex::default(),
            next_holder: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes `length` bytes; false (nothing taken) past the limit.
    fn take(&self, length: usize) -> bool {
        if self.used.fetch_add(length, Ordering::Relaxed) + length > self.limit {
            self.release(length);
            return false;
        }
        true
    }

    fn release(&self, length: usize) {
        self.used.fetch_sub(length, Ordering::Relaxed);
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Holder>> {
        self.holders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a connection in until the guard drops.
    fn register(&self, unread: Arc<Unread>, close: &CloseOnce) -> Registered<'_> {
        let id = self.next_holder.fetch_add(1, Ordering::Relaxed);
        let close = Arc::downgrade(close);
        self.holders().insert(id, Holder { unread, close });
        Registered { budget: self, id }
    }

    /// For a message of `length` bytes past the limit, from the connection
    /// `mine`: kept if what the connections closing give back makes room;
    /// else the open connection holding the most unread is closed, if that
    /// is more than its floor.
    fn relieve(&self, mine: &Arc<Unread>, length: usize, metrics: &metering::Metrics) -> Relief {
        let holders = self.holders();
        let mut freeing = 0;
        let mut largest: Option<(&Holder, usize, CloseOnce)> = None;
        for holder in holders.values() {
            let held = holder.unread.total();
            let open = holder.close.upgrade().filter(|close| {
                close
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .is_some()
            });
            match open {
                None => freeing += held,
                Some(close) => {
                    if largest.as_ref().is_none_or(|(_, most, _)| held > *most) {
                        largest = Some((holder, held, close));
                    }
                }
            }
        }
        if self.used.load(Ordering::Relaxed).saturating_sub(freeing) + length <= self.limit {
            return Relief::Keep;
        }
        let Some((holder, held, close)) = largest else {
            return Relief::Keep;
        };
        if held <= OUT_BUFFER_FLOOR {
            return Relief::Keep;
        }
        close_once(
            &close,
            metrics,
            TRY_AGAIN_LATER,
            "server busy: its realtime clients hold all the unread messages it keeps".to_owned(),
        );
        if Arc::ptr_eq(&holder.unread, mine) {
            Relief::CloseMe
        } else {
            Relief::Keep
        }
    }
}

/// A connection counted by the [`Budget`]; uncounted on drop.
struct Registered<'a> {
    budget: &'a Budget,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.budget.holders().remove(&self.id);
    }
}

/// The message being written: its bytes go back to the [`Budget`] on
/// drop (written, or dropped with its connection).
struct Held<'a> {
    budget: &'a Budget,
    unread: &'a Unread,
    length: usize,
}

impl<'a> Held<'a> {
    fn new(budget: &'a Budget, unread: &'a Unread, length: usize) -> Self {
        unread.queued.fetch_sub(length, Ordering::Relaxed);
        unread.writing.store(length, Ordering::Relaxed);
        Self {
            budget,
            unread,
            length,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.unread.writing.store(0, Ordering::Relaxed);
        self.budget.release(self.length);
    }
}
/// Subscriptions one connection holds.
const MAX_SUBSCRIPTIONS: usize = 100;
/// Largest client message.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;

pub async fn realtime(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        // What tungstenite itself buffers for writing: one snapshot and a
        // little more; the queue's own budget is above.
        .max_write_buffer_size(2 * store::docs::MAX_SNAPSHOT_BYTES)
        .on_upgrade(move |socket| connection(gateway, project, caller, socket))
}

/// Asks the writer to close the connection with a code and a reason.
type CloseSender = tokio::sync::oneshot::Sender<(u16, String)>;
/// [`CloseSender`], used once.
type CloseOnce = Arc<std::sync::Mutex<Option<CloseSender>>>;

/// The sending side shared by a connection's subscriptions.
#[derive(Clone)]
struct Out {
    messages: tokio::sync::mpsc::Sender<String>,
    /// What is not written yet.
    unread: Arc<Unread>,
    /// What all connections hold (this one's messages until written).
    budget: Arc<Budget>,
    close: CloseOnce,
    metrics: Arc<metering::Metrics>,
}

impl Out {
    /// Queues a message; a full buffer (in messages or bytes, or the
    /// server's whole [`Budget`] while this one holds more than its floor)
    /// closes the connection. Returns whether the message was queued.
    fn send(&self, message: Value) -> bool {
        self.send_text(message.to_string())
    }

    /// [`Out::send`] for a message already written as JSON text.
    fn send_text(&self, text: String) -> bool {
        let length = text.len();
        let mine = self.unread.queued.fetch_add(length, Ordering::Relaxed) + length;
        if mine > OUT_BUFFER_BYTES {
            self.unread.queued.fetch_sub(length, Ordering::Relaxed);
            self.close(
                SLOW_CONSUMER,
                format!("slow consumer: more than {OUT_BUFFER_BYTES} bytes unread"),
            );
            return false;
        }
        if !self.budget.take(length) {
            match self.budget.relieve(&self.unread, length, &self.metrics) {
                Relief::CloseMe => {
                    self.unread.queued.fetch_sub(length, Ordering::Relaxed);
                    return false;
                }
                // Kept beyond the limit while others give bytes back.
                Relief::Keep => {
                    self.budget.used.fetch_add(length, Ordering::Relaxed);
                }
            }
        }
        match self.messages.try_send(text) {
            Ok(()) => true,
            Err(error) => {
                self.unread.queued.fetch_sub(length, Ordering::Relaxed);
                self.budget.release(length);
                if let tokio::sync::mpsc::error::TrySendError::Full(_) = error {
                    self.close(
                        SLOW_CONSUMER,
                        format!("slow consumer: more than {OUT_BUFFER} messages unread"),
                    );
                }
                false
            }
        }
    }

    fn close(&self, code: u16, reason: String) {
        close_once(&self.close, &self.metrics, code, reason);
    }

    fn error(&self, id: Option<&str>, code: ErrorCode, message: impl Into<String>) -> bool {
        self.send(json!({
            "type": "error",
            "id": id,
            "code": code.as_str(),
            "message": message.into(),
        }))
    }
}

/// Asks a connection's writer to close with `code`, counted in the
/// metrics; false if it was asked already.
fn close_once(close: &CloseOnce, metrics: &metering::Metrics, code: u16, reason: String) -> bool {
    let taken = close
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let Some(close) = taken else {
        return false;
    };
    metrics.realtime_closed(match code {
        SLOW_CONSUMER => "slow_consumer",
        TRY_AGAIN_LATER => "server_busy",
        NORMAL_CLOSURE => "client_closed",
        POLICY_VIOLATION => "revoked",
        _ => "protocol",
    });
    let _ = close.send((code, reason));
    true
}

/// Writes queued messages. A close request goes first, even while a write
/// is stuck (a slow client's queue is dropped with it); each write gets
/// [`WRITE_TIMEOUT`] (and time for its size) and the closing frame
/// [`CLOSE_TIMEOUT`], so a client that does not read never holds the
/// server.
async fn write_messages(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut outgoing: tokio::sync::mpsc::Receiver<String>,
    mut closed: tokio::sync::oneshot::Receiver<(u16, String)>,
    unread: Arc<Unread>,
    budget: Arc<Budget>,
    metrics: Arc<metering::Metrics>,
) {
    let close = loop {
        let text = tokio::select! {
            biased;
            close = &mut closed => break close.ok(),
            message = outgoing.recv() => match message {
                Some(text) => text,
                None => break None,
            },
        };
        let _held = Held::new(&budget, &unread, text.len());
        let allowed = WRITE_TIMEOUT + Duration::from_secs((text.len() / MIN_WRITE_RATE) as u64);
        let write = tokio::time::timeout(allowed, sink.send(Message::Text(text.into())));
        tokio::select! {
            biased;
            close = &mut closed => break close.ok(),
            written = write => match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break None,
                // A client that did not read in time.
                Err(_) => {
                    metrics.realtime_closed("write_timeout");
                    break None;
                }
            },
        }
    };
    // What is still queued is dropped: its bytes go back to the budget.
    outgoing.close();
    while let Ok(text) = outgoing.try_recv() {
        unread.queued.fetch_sub(text.len(), Ordering::Relaxed);
        budget.release(text.len());
    }
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            // After the client's close, tungstenite refuses to send one and
            // has the answer queued: flushing writes it.
            if sink.send(Message::Close(Some(frame))).await.is_err() {
                let _ = sink.flush().await;
            }
        })
        .await;
    }
}

/// The close code for an error reading the client's messages, if one
/// fits (else the connection is just dropped).
fn protocol_close(error: axum::Error) -> Option<(u16, String)> {
    let error = error.into_inner();
    let error = error.downcast_ref::<tungstenite::Error>()?;
    Some(match error {
        tungstenite::Error::Capacity(_) => (
            1009,
            format!("a message is at most {MAX_CLIENT_MESSAGE} bytes"),
        ),
        tungstenite::Error::Utf8(_) => (1007, "a text message is not valid UTF-8".to_owned()),
        tungstenite::Error::Protocol(problem) => (1002, problem.to_string()),
        _ => return None,
    })
}

async fn connection(gateway: SharedGateway, project: ProjectId, caller: Caller, socket: WebSocket) {
    let (sink, mut incoming) = socket.split();
    let (messages, outgoing) = tokio::sync::mpsc::channel::<String>(OUT_BUFFER);
    let (close, closed) = tokio::sync::oneshot::channel::<(u16, String)>();
    let unread = Arc::new(Unread::default());
    let out = Out {
        messages,
        unread: unread.clone(),
        budget: gateway.realtime_budget.clone(),
        close: Arc::new(std::sync::Mutex::new(Some(close))),
        metrics: gateway.metrics.clone(),
    };
    let budget = gateway.realtime_budget.clone();
    let _registered = budget.register(unread.clone(), &out.close);
    let mut writer = tokio::spawn(write_messages(
        sink,
        outgoing,
        closed,
        unread,
        gateway.realtime_budget.clone(),
        gateway.metrics.clone(),
    ));
    let mut changes = gateway.auth.changes();
    let mut sessions = gateway.accounts.changes();
    // A key revoked (or a session ended) between the upgrade request and
    // now.
    let live = |caller: &auth::Caller| {
        gateway.auth.still_valid(caller)
            && match caller {
                auth::Caller::User(identity) => {
                    gateway.accounts.still_live(identity, gateway.clock.now())
                }
                _ => true,
            }
    };
    if !live(&caller) {
        out.close(POLICY_VIOLATION, "the key was revoked".to_owned());
    }
    let mut subscriptions: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut writer_done = false;
    // A function's credentials, and an app user's access token, end at
    // their expiry, and the connection with them.
    let expires = match &caller {
        auth::Caller::Function { expires, .. } => Some(*expires),
        auth::Caller::User(identity) => Some(identity.expires_at.saturating_mul(1000)),
        _ => None,
    };
    let expiry = expires.map(|expires| {
        let left = u64::try_from(expires.saturating_sub(domain::now_millis())).unwrap_or(0);
        tokio::time::Instant::now() + std::time::Duration::from_millis(left)
    });
    let expired = tokio::time::sleep_until(expiry.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(expired);
    let mut expiry_sent = false;
    loop {
        let message = tokio::select! {
            message = incoming.next() => message,
            () = &mut expired, if expiry.is_some() && !expiry_sent => {
                expiry_sent = true;
                out.close(POLICY_VIOLATION, "the credentials (function credentials or access token) expired".to_owned());
                continue;
            }
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            // A revoked key (or a removed project) ends the connection at once.
            Ok(()) = changes.changed() => {
                if !live(&caller) {
                    out.close(POLICY_VIOLATION, "the key was revoked".to_owned());
                }
                continue;
            }
            // So does the end of an app user's session.
            Ok(()) = sessions.changed() => {
                if !live(&caller) {
                    out.close(POLICY_VIOLATION, "the session has ended".to_owned());
                }
                continue;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                out.error(
                    None,
                    ErrorCode::InvalidMessage,
                    "messages are JSON text frames",
                );
                continue;
            }
            // The client's close is answered (tungstenite queued the reply:
            // the writer flushes it).
            Some(Ok(Message::Close(_))) => {
                out.close(NORMAL_CLOSURE, String::new());
                break;
            }
            None => break,
            Some(Err(error)) => {
                if let Some((code, reason)) = protocol_close(error) {
                    out.close(code, reason);
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        subscriptions.retain(|_, task| !task.is_finished());
        let request: Value = match serde_json::from_str(text.as_str()) {
            Ok(request) => request,
            Err(error) => {
                out.error(
                    None,
                    ErrorCode::InvalidMessage,
                    format!("not JSON: {error}"),
                );
                continue;
            }
        };
        let id = request["id"].as_str().map(str::to_owned);
        match (request["type"].as_str(), id) {
            (Some("ping"), _) => {
                out.send(json!({"type": "pong"}));
            }
            (Some("unsubscribe"), Some(id)) => {
                if let Some(task) = subscriptions.remove(&id) {
                    task.abort();
                }
                out.send(json!({"type": "unsubscribed", "id": id}));
            }
            (Some("subscribe"), Some(id)) => {
                if subscriptions.contains_key(&id) {
                    out.error(
                        Some(&id),
                        ErrorCode::InvalidMessage,
                        "this id is subscribed already",
                    );
                    continue;
                }
                if subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    out.error(
                        Some(&id),
                        ErrorCode::TooManySubscriptions,
                        format!("a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions"),
                    );
                    continue;
                }
                let task = tokio::spawn(subscription(
                    gateway.clone(),
                    project.clone(),
                    caller.clone(),
                    out.clone(),
                    id.clone(),
                    request,
                ));
                subscriptions.insert(id, task);
            }
            _ => {
                out.error(
                    None,
                    ErrorCode::InvalidMessage,
                    "expected {\"type\": \"subscribe\" | \"unsubscribe\" | \"ping\", \"id\": ...}",
                );
            }
        }
    }
    for task in subscriptions.into_values() {
        task.abort();
    }
    drop(out);
    // A closing frame asked for gets its (bounded) chance to be written.
    if !writer_done
        && tokio::time::timeout(CLOSE_TIMEOUT, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
}

/// Close code for a key that was revoked (RFC 6455: policy violation).
const POLICY_VIOLATION: u16 = 1008;
/// Close code of a close the client asked for.
const NORMAL_CLOSURE: u16 = 1000;

/// What a subscription follows.
enum Target {
    Topic(TopicName),
    Query {
        collection: CollectionName,
        query: store::docs::Query,
    },
}

fn target(request: &Value) -> Result<Target, ApiError> {
    let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidMessage, message);
    match (request.get("topic"), request.get("collection")) {
        (Some(topic), None) => {
            let topic = topic
                .as_str()
                .ok_or_else(|| invalid("topic must be a string".to_owned()))?;
            TopicName::new(topic)
                .map(Target::Topic)
                .map_err(|error| ApiError::bad_request(ErrorCode::InvalidName, error.to_string()))
        }
        (None, Some(collection)) => {
            let collection = collection
                .as_str()
                .ok_or_else(|| invalid("collection must be a string".to_owned()))?;
            let collection = CollectionName::new(collection).map_err(|error| {
                ApiError::bad_request(ErrorCode::InvalidName, error.to_string())
            })?;
            let query = request.get("query").cloned().unwrap_or_else(|| json!({}));
            let query = store::docs::parse_query(&query)?;
            Ok(Target::Query { collection, query })
        }
        _ => Err(invalid(
            "a subscription names a topic, or a collection (with a query)".to_owned(),
        )),
    }
}

/// Whether the caller may read the topic or collection (now): all of it,
/// or what per-user rules let it (`Some` of them).
fn may_read(
    gateway: &SharedGateway,
    caller: &Caller,
    project: &ProjectId,
    kind: ResourceKind,
    name: &str,
) -> Option<Option<std::sync::Arc<auth::rules::RuleSet>>> {
    match gateway
        .auth
        .decide(caller, project, kind, name, Access::Read)
    {
        auth::Decision::All => Some(None),
        auth::Decision::Rules(rules, _) => Some(Some(rules)),
        auth::Decision::Paths(..) | auth::Decision::Nothing => None,
    }
}

/// Whether two answers of [`may_read`] are the same access.
fn same_access(
    before: &Option<std::sync::Arc<auth::rules::RuleSet>>,
    now: &Option<std::sync::Arc<auth::rules::RuleSet>>,
) -> bool {
    match (before, now) {
        (None, None) => true,
        (Some(before), Some(now)) => std::sync::Arc::ptr_eq(before, now),
        _ => false,
    }
}

fn document_json(id: &str, version: u64, data: &Value) -> Value {
    json!({ "id": id, "version": version, "data": data })
}

async fn subscription(
    gateway: SharedGateway,
    project: ProjectId,
    caller: Caller,
    out: Out,
    id: String,
    request: Value,
) {
    let after = request.get("after").and_then(Value::as_i64);
    let target = match target(&request) {
        Ok(target) => target,
        Err(error) => {
            let (code, message) = error.code_and_message();
            out.error(Some(&id), code, message);
            return;
        }
    };
    let (kind, name, stream) = match &target {
        Target::Topic(topic) => (
            ResourceKind::Topic,
            topic.to_string(),
            domain::topic_stream(topic),
        ),
        Target::Query { collection, .. } => (
            ResourceKind::Collection,
            collection.to_string(),
            domain::documents_stream(collection),
        ),
    };
    let Some(access) = may_read(&gateway, &caller, &project, kind, &name) else {
        out.error(
            Some(&id),
            ErrorCode::Forbidden,
            format!("this key may not read {} {name:?}", kind.as_str()),
        );
        return;
    };
    // Under per-user rules, a live query is the asked query ANDed with the
    // list rule's filter: the snapshot and every change are only what the
    // caller may see.
    let target = match (&access, target) {
        (Some(rules), Target::Query { collection, .. }) => {
            let asked = request.get("query").cloned().unwrap_or_else(|| json!({}));
            let mut asked = match asked {
                Value::Object(object) => object,
                _ => serde_json::Map::new(),
            };
            if let Some(filter) = rules.list_filter(&auth::subject(&caller), gateway.clock.now()) {
                let combined = match asked.remove("where") {
                    Some(asked) => json!({ "and": [asked, filter] }),
                    None => filter,
                };
                asked.insert("where".to_owned(), combined);
            }
            match store::docs::parse_query(&Value::Object(asked)) {
                Ok(query) => Target::Query { collection, query },
                Err(error) => {
                    let (code, message) = ApiError::from(error).code_and_message();
                    out.error(Some(&id), code, message);
                    return;
                }
            }
        }
        (_, target) => target,
    };
    // A live query: its changes are logged from now on; then the snapshot
    // and the position it was read at, together.
    let mut start = after;
    if let Target::Query { collection, query } = &target {
        if let Err(error) = gateway.events.watch_stream(&project, &stream).await {
            let (code, message) = ApiError::from(error).code_and_message();
            out.error(Some(&id), code, message);
            return;
        }
        if after.is_none() {
            // Snapshots are document reads, under the store's limit of
            // reads at once as REST's are; their message is made off the
            // async threads (megabytes of JSON are no work for one).
            let subscription = id.clone();
            let snapshot = match gateway.docs.snapshot(&project, collection, query).await {
                Ok((documents, position)) => Ok(crate::blocking(move || {
                    let documents: Vec<Value> = documents
                        .into_iter()
                        .map(|document| {
                            json!({"id": document.id, "version": document.version, "data": document.data})
                        })
                        .collect();
                    let message = json!({
                        "type": "snapshot",
                        "id": subscription,
                        "position": position,
                        "documents": documents,
                    });
                    (message.to_string(), position)
                })
                .await),
                Err(error) => Err(error),
            };
            match snapshot {
                Ok((message, position)) => {
                    if !out.send_text(message) {
                        return;
                    }
                    start = Some(position);
                }
                Err(error) => {
                    let (code, message) = ApiError::from(error).code_and_message();
                    out.error(Some(&id), code, message);
                    return;
                }
            }
        }
    }
    let (mut follower, position) = match gateway.hub.follow(&project, &stream, start).await {
        Ok(following) => following,
        Err(error) => {
            out.error(Some(&id), ErrorCode::InternalError, error.to_string());
            return;
        }
    };
    if !out.send(json!({"type": "subscribed", "id": id, "position": position})) {
        return;
    }
    let mut changes = gateway.auth.changes();
    let subject = auth::subject(&caller);
    loop {
        let next = tokio::select! {
            next = follower.next() => next,
            // A rule that no longer lets the key read ends the subscription
            // at once, not at its next event.
            Ok(()) = changes.changed() => {
                let still = may_read(&gateway, &caller, &project, kind, &name);
                if !still.as_ref().is_some_and(|still| same_access(&access, still)) {
                    out.error(
                        Some(&id),
                        ErrorCode::Forbidden,
                        format!("this key may no longer read {} {name:?}; the subscription ended", kind.as_str()),
                    );
                    return;
                }
                continue;
            }
        };
        let event = match next {
            Ok(event) => event,
            Err(events::FollowError::Lagged) => {
                out.close(
                    SLOW_CONSUMER,
                    "slow consumer: fell behind the stream; resume from the last position"
                        .to_owned(),
                );
                return;
            }
            Err(error) => {
                out.error(Some(&id), ErrorCode::InternalError, error.to_string());
                return;
            }
        };
        // Rules can change while a subscription lasts (checked again here
        // too: the change may not have been seen yet).
        let still = may_read(&gateway, &caller, &project, kind, &name);
        if !still
            .as_ref()
            .is_some_and(|still| same_access(&access, still))
        {
            out.error(
                Some(&id),
                ErrorCode::Forbidden,
                format!(
                    "this key may no longer read {} {name:?}; the subscription ended",
                    kind.as_str()
                ),
            );
            return;
        }
        let message = match &target {
            // Under per-user rules, an event goes to whom its `read` rule
            // lets receive it.
            Target::Topic(_)
                if access.as_ref().is_some_and(|rules| {
                    let resource = crate::events::event_json(
                        event.key.as_deref(),
                        event.subject.as_deref(),
                        event.content_type.as_deref(),
                        &event.data,
                    );
                    let (null, op) = (Value::Null, auth::rules::Operation::Read);
                    let now = gateway.clock.now();
                    !rules.allows_with(op, &subject, &resource, &null, None, now)
                }) =>
            {
                continue;
            }
            Target::Topic(_) => json!({
                "type": "event",
                "id": id,
                "position": event.seq,
                "event": crate::events::event_info(&event),
            }),
            Target::Query { query, .. } => match change(query, &event.data) {
                Some((change, document)) => json!({
                    "type": "change",
                    "id": id,
                    "position": event.seq,
                    "change": change,
                    "document": document,
                }),
                None => continue,
            },
        };
        if !out.send(message) {
            return;
        }
    }
}

/// What a document change is to a live query: from its images before and
/// after, whether the document joins the results (`added`), stays in them
/// (`modified`), or leaves them (`removed`: deleted, or no longer matching).
fn change(query: &store::docs::Query, data: &[u8]) -> Option<(&'static str, Value)> {
    let change: Value = serde_json::from_slice(data).ok()?;
    let matching = |image: &Value| {
        image
            .as_object()
            .is_some_and(|document| query.matches(document))
    };
    let before = matching(&change["before"]);
    let after = matching(&change["after"]);
    let id = change["id"].as_str()?;
    let version = change["version"].as_u64()?;
    match (before, after) {
        (false, true) => Some(("added", document_json(id, version, &change["after"]))),
        (true, true) => Some(("modified", document_json(id, version, &change["after"]))),
        (true, false) => Some((
            "removed",
            document_json(
                id,
                version,
                if change["after"].is_null() {
                    &change["before"]
                } else {
                    &change["after"]
                },
            ),
        )),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection with `queued` bytes unread, as the budget sees it.
    fn connection(
        queued: usize,
    ) -> (
        Arc<Unread>,
        CloseOnce,
        tokio::sync::oneshot::Receiver<(u16, String)>,
    ) {
        let unread = Arc::new(Unread::default());
        unread.queued.store(queued, Ordering::Relaxed);
        let (close, closed) = tokio::sync::oneshot::channel();
        (unread, Arc::new(std::sync::Mutex::new(Some(close))), closed)
    }

    #[test]
    fn past_the_budget_the_largest_open_holder_is_closed_not_the_sender() {
        let metrics = metering::Metrics::new();
        let budget = Budget::new(4 << 20);
        let (reader, reader_close, mut reader_closed) = connection(3 << 19);
        let (idle, idle_close, mut idle_closed) = connection(3 << 20);
        let _r = budget.register(reader.clone(), &reader_close);
        let _i = budget.register(idle.clone(), &idle_close);
        budget
            .used
            .store(reader.total() + idle.total(), Ordering::Relaxed);

        // The reader (1.5 MiB, over its floor) sends past the limit: the
        // idle one (3 MiB) goes, and the reader's message is kept.
        assert!(matches!(
            budget.relieve(&reader, 4000, &metrics),
            Relief::Keep
        ));
        assert_eq!(idle_closed.try_recv().unwrap().0, TRY_AGAIN_LATER);
        assert!(reader_closed.try_recv().is_err());
        // While the idle one closes, its bytes count as given back.
        assert!(matches!(
            budget.relieve(&reader, 4000, &metrics),
            Relief::Keep
        ));
        assert!(reader_closed.try_recv().is_err());
    }

    #[test]
    fn the_sender_holding_the_most_is_closed_and_one_within_its_floor_is_kept() {
        let metrics = metering::Metrics::new();
        let budget = Budget::new(1 << 20);
        let (small, small_close, mut small_closed) = connection(OUT_BUFFER_FLOOR / 2);
        let (big, big_close, mut big_closed) = connection(OUT_BUFFER_FLOOR * 2);
        let _s = budget.register(small.clone(), &small_close);
        let _b = budget.register(big.clone(), &big_close);
        budget
            .used
            .store(small.total() + big.total(), Ordering::Relaxed);
        assert!(matches!(
            budget.relieve(&big, 10, &metrics),
            Relief::CloseMe
        ));
        assert_eq!(big_closed.try_recv().unwrap().0, TRY_AGAIN_LATER);
        // Only the small one is open, within its floor: kept.
        budget
            .used
            .store(small.total() + (2 << 20), Ordering::Relaxed);
        assert!(matches!(budget.relieve(&small, 10, &metrics), Relief::Keep));
        assert!(small_closed.try_recv().is_err());
        // A connection whose senders are gone counts as closing: with its
        // bytes given back the budget has room.
        drop(big_close);
        drop(_b);
        let (gone, gone_close, _) = connection(4 << 20);
        let _g = budget.register(gone.clone(), &gone_close);
        drop(gone_close);
        budget
            .used
            .store(small.total() + gone.total(), Ordering::Relaxed);
        assert!(matches!(budget.relieve(&small, 10, &metrics), Relief::Keep));
        // Bytes being written count too: the writer's message is the
        // connection's.
        let (writer, writer_close, mut writer_closed) = connection(0);
        let _w = budget.register(writer.clone(), &writer_close);
        let held = Held::new(&budget, &writer, 0);
        writer.writing.store(3 << 20, Ordering::Relaxed);
        budget
            .used
            .store(small.total() + gone.total() + (3 << 20), Ordering::Relaxed);
        assert!(matches!(budget.relieve(&small, 10, &metrics), Relief::Keep));
        assert_eq!(writer_closed.try_recv().unwrap().0, TRY_AGAIN_LATER);
        drop(held);
        assert_eq!(writer.total(), 0);
    }
}
