//! The HTTP/1.1 server loop: accepts connections and bounds what each one
//! can make the server hold.
//!
//! - **A cap on open connections.** At the cap, the oldest connection
//!   waiting for a request (idle, or still sending its headers) is closed
//!   to make room; when every connection is busy, the new one is refused
//!   with a 503. Both are counted (`wok_connections_shed_total`) and logged
//!   (at most every 10 s).
//! - **Timeouts** (`wok_connections_timed_out_total`): a new connection, or
//!   a request that has begun, must finish its headers within
//!   `header_timeout`; a kept-alive connection waits `idle_timeout` for its
//!   next request; a request body must keep up `min_body_rate` once
//!   `BODY_GRACE` has passed (time the server spends not reading does not
//!   count); a write that makes no progress for `write_timeout` (a client
//!   that does not read its response) closes the connection.
//! - hyper's own answers to requests it cannot parse (400, 414, 431) are
//!   rewritten into the JSON error body.
//!
//! Each connection task checks its deadlines on one timer, re-armed when
//! the connection changes state; the clock is tokio's, so tests can pause
//! it.
//!
//! The loop is its own, not `axum::serve`: the cap, the deadlines and the
//! lingering close need the socket and hyper's connection in hand. Each
//! connection is hyper's HTTP/1.1 connection on a task of a `JoinSet` the
//! loop owns. On stop the listener closes, each connection finishes its
//! request in flight (hyper's graceful shutdown) and the loop waits for
//! them; dropping the loop drops them all.
//!
//! Lingering close: once hyper is done with a connection that the client
//! still writes to (a refused upload, say), the server shuts its side and
//! reads on, bounded in time, until the client closes. Closing a socket
//! with unread bytes makes the kernel reset it, and the client would see
//! the reset instead of the answer.
use crate::error::raw_error_response;
use api_types::ErrorCode;
use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use metering::Metrics;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long a request body may arrive at any pace before
/// [`ConnectionLimits::min_body_rate`] applies.
pub const BODY_GRACE: Duration = Duration::from_secs(10);

/// What one connection may hold, and how many there may be.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From a connection's start, or a request's first byte, to the end of
    /// its headers.
    pub header_timeout: Duration,
    /// How long a kept-alive connection waits for its next request.
    pub idle_timeout: Duration,
    /// Slowest request body accepted after [`BODY_GRACE`], in bytes a second.
    pub min_body_rate: u64,
    /// Longest a write to the client may make no progress.
    pub write_timeout: Duration,
    /// Largest request line and headers, in bytes.
    pub max_header_bytes: usize,
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    Header,
    Idle,
    Body,
    Write,
}

impl TimedOut {
    pub fn as_str(self) -> &'static str {
        match self {
            TimedOut::Header => "header",
            TimedOut::Idle => "idle",
            TimedOut::Body => "body",
            TimedOut::Write => "write",
        }
    }
}

/// Milliseconds since the server started, plus one (0 means "not set").
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
}

impl Clock {
    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64 + 1
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.base + Duration::from_millis(stamp.saturating_sub(1))
    }
}

/// One connection's state, shared by its task, its IO and its requests.
struct Connection {
    clock: Clock,
    /// A request is in flight: from its headers to the end of its response body.
    busy: AtomicBool,
    /// Some of the last response may still be in hyper's buffer: from a
    /// request's headers until hyper flushes the socket after its end.
    unflushed: AtomicBool,
    /// Handed over to a WebSocket (or another upgrade): no longer ours.
    upgraded: AtomicBool,
    /// At least one request was served (the next wait is an idle one).
    served: AtomicBool,
    /// When it last started waiting for a request (accept, or a response's end).
    waiting_since: AtomicU64,
    /// When the first byte of the next request arrived (0: none yet).
    first_byte: AtomicU64,
    /// Since when a write has made no progress (0: not stalled).
    write_stalled: AtomicU64,
    /// The request body in flight fell below the minimum rate.
    body_too_slow: AtomicBool,
    /// Wakes the task to recompute its deadline.
    changed: tokio::sync::Notify,
    /// Asks the task to close the connection now (shedding).
    close: tokio::sync::Notify,
}

impl Connection {
    fn new(clock: Clock) -> Self {
        Self {
            clock,
            busy: AtomicBool::new(false),
            unflushed: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            served: AtomicBool::new(false),
            waiting_since: AtomicU64::new(clock.stamp(Instant::now())),
            first_byte: AtomicU64::new(0),
            write_stalled: AtomicU64::new(0),
            body_too_slow: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            close: tokio::sync::Notify::new(),
        }
    }

    /// Whether it waits for a request, its last response all written (may
    /// be closed to make room).
    fn is_waiting(&self) -> bool {
        !self.busy.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
            && !self.unflushed.load(Ordering::Relaxed)
            && self.write_stalled.load(Ordering::Relaxed) == 0
    }

    fn begin_request(&self) {
        self.busy.store(true, Ordering::Relaxed);
        self.unflushed.store(true, Ordering::Relaxed);
        self.first_byte.store(0, Ordering::Relaxed);
        self.body_too_slow.store(false, Ordering::Relaxed);
    }

    fn end_request(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.waiting_since
            .store(self.clock.stamp(Instant::now()), Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// When the connection is next due to be closed, and why.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, TimedOut)> {
        if self.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        let stalled = self.write_stalled.load(Ordering::Relaxed);
        let write = (stalled != 0).then(|| {
            (
                self.clock.instant(stalled) + limits.write_timeout,
                TimedOut::Write,
            )
        });
        if self.busy.load(Ordering::Relaxed) {
            return write;
        }
        let first_byte = self.first_byte.load(Ordering::Relaxed);
        let waiting = if first_byte != 0 {
            (
                self.clock.instant(first_byte) + limits.header_timeout,
                TimedOut::Header,
            )
        } else {
            let since = self
                .clock
                .instant(self.waiting_since.load(Ordering::Relaxed));
            if self.served.load(Ordering::Relaxed) {
                (since + limits.idle_timeout, TimedOut::Idle)
            } else {
                (since + limits.header_timeout, TimedOut::Header)
            }
        };
        Some(match write {
            Some(write) if write.0 < waiting.0 => write,
            _ => waiting,
        })
    }
}

/// The open connections, in the order they were accepted.
struct Registry {
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// Sheddings since the last log line: idle connections closed, new ones refused.
    closed_idle: AtomicUsize,
    refused: AtomicUsize,
    last_log: Mutex<Option<Instant>>,
}

/// What to do with a new connection.
enum Admission {
    Admitted(Guard),
    Refused,
}

/// A connection's place in the registry, given back on drop.
struct Guard {
    id: u64,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.id);
        self.metrics.connection_closed();
    }
}

impl Registry {
    fn new() -> Self {
        Self {
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            closed_idle: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            last_log: Mutex::new(None),
        }
    }

    /// Registers a new connection, making room by closing the oldest
    /// waiting one if the cap is reached.
    fn admit(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        max: usize,
        metrics: &Arc<Metrics>,
    ) -> Admission {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len() >= max {
            // The oldest connection that is not serving a request.
            let victim = open
                .iter()
                .find(|(_, connection)| connection.is_waiting())
                .map(|(id, connection)| (*id, connection.clone()));
            match victim {
                Some((id, victim)) => {
                    open.remove(&id);
                    victim.close.notify_one();
                    metrics.connection_shed("closed_idle");
                    self.closed_idle.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    drop(open);
                    metrics.connection_shed("refused");
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    self.log_shedding(max);
                    return Admission::Refused;
                }
            }
            self.log_shedding(max);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, connection.clone());
        metrics.connection_opened();
        Admission::Admitted(Guard {
            id,
            registry: self.clone(),
            metrics: metrics.clone(),
        })
    }

    /// Logs sheddings, at most every 10 s.
    fn log_shedding(&self, max: usize) {
        let now = Instant::now();
        let mut last = self
            .last_log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(10)) {
            return;
        }
        *last = Some(now);
        let closed = self.closed_idle.swap(0, Ordering::Relaxed);
        let refused = self.refused.swap(0, Ordering::Relaxed);
        tracing::warn!(
            "at the connection limit ({max}, --max-connections): closed {closed} idle connections and refused {refused} new ones since the last report"
        );
    }

    fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// The socket of one connection, watched: reads note a request's first
/// byte, writes note when they stall, and hyper's own error answers are
/// rewritten as JSON. When hyper is done with a connection the client has
/// not closed, the socket is handed back to the connection's task to
/// linger (see [`linger`]).
struct WatchedIo {
    /// Taken only when the socket is handed back for lingering, on drop.
    stream: Option<TcpStream>,
    connection: Arc<Connection>,
    /// Bytes still to write in place of an answer hyper wrote itself.
    rewritten: Option<(Bytes, usize)>,
    /// The client closed its sending side: nothing is left to read.
    read_eof: bool,
    linger: Option<tokio::sync::oneshot::Sender<(TcpStream, Guard)>>,
    guard: Option<Guard>,
    /// What an inside connection holds (its place among its instance's),
    /// for as long as its socket lives, upgraded (a WebSocket) or not.
    _hold: Option<Box<dyn std::any::Any + Send>>,
}

impl Drop for WatchedIo {
    fn drop(&mut self) {
        if !self.read_eof
            && let (Some(stream), Some(guard), Some(linger)) =
                (self.stream.take(), self.guard.take(), self.linger.take())
        {
            let _ = linger.send((stream, guard));
        }
    }
}

/// The JSON answer for one of hyper's own error answers (the head it wrote
/// when it could not parse a request), if `written` is one.
fn rewrite_hyper_answer(written: &[u8]) -> Option<Bytes> {
    let status = written.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (code, message) = match status {
        b"400" => (
            ErrorCode::InvalidRequest,
            "the request is not valid HTTP/1.1",
        ),
        b"414" => (ErrorCode::UriTooLong, "the request URI is too long"),
        b"431" => (
            ErrorCode::HeadersTooLarge,
            "the request's headers are too large",
        ),
        _ => return None,
    };
    Some(raw_error_response(code, message, &[]))
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let had_room = buf.remaining() > 0;
        let polled = self.stream().poll_read(cx, buf);
        if had_room && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.read_eof = true;
        }
        if buf.filled().len() > before {
            let connection = &self.connection;
            if !connection.busy.load(Ordering::Relaxed)
                && connection.first_byte.load(Ordering::Relaxed) == 0
            {
                connection
                    .first_byte
                    .store(connection.clock.stamp(Instant::now()), Ordering::Relaxed);
                connection.changed.notify_one();
            }
        }
        polled
    }
}

impl WatchedIo {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only when the IO is dropped"),
        )
    }

    fn note_write<T>(&self, polled: &Poll<io::Result<T>>) {
        let connection = &self.connection;
        match polled {
            Poll::Pending => {
                if connection.write_stalled.load(Ordering::Relaxed) == 0 {
                    connection
                        .write_stalled
                        .store(connection.clock.stamp(Instant::now()), Ordering::Relaxed);
                    connection.changed.notify_one();
                }
            }
            Poll::Ready(_) => connection.write_stalled.store(0, Ordering::Relaxed),
        }
    }

    /// Writes what is left of a rewritten answer.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.rewritten {
            if *written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let bytes = bytes.slice(*written..);
            let polled = self.stream().poll_write(cx, &bytes);
            self.note_write(&polled);
            match polled {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(count)) => {
                    if let Some((_, written)) = &mut self.rewritten {
                        *written += count;
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl WatchedIo {
    /// Whether `first` (the start of what hyper writes) is one of hyper's
    /// own answers to a request it could not parse, rewritten now: once
    /// the last response is flushed, hyper writes while no request is in
    /// flight only to answer one it could not parse, and closes the
    /// connection after.
    fn rewrites(&mut self, first: &[u8]) -> bool {
        let connection = &self.connection;
        if self.rewritten.is_none()
            && !connection.busy.load(Ordering::Relaxed)
            && !connection.unflushed.load(Ordering::Relaxed)
            && !connection.upgraded.load(Ordering::Relaxed)
            && connection.first_byte.load(Ordering::Relaxed) != 0
            && let Some(answer) = rewrite_hyper_answer(first)
        {
            self.rewritten = Some((answer, 0));
        }
        self.rewritten.is_some()
    }

    /// Writes the rewritten answer in place of `len` bytes hyper wrote.
    fn poll_instead(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<usize>> {
        match self.poll_rewritten(cx) {
            // What hyper wrote is dropped: the rewritten answer stands for it.
            Poll::Ready(Ok(())) => Poll::Ready(Ok(len)),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrites(buf) {
            return this.poll_instead(cx, buf.len());
        }
        let polled = this.stream().poll_write(cx, buf);
        this.note_write(&polled);
        polled
    }

    // Vectored, as the socket is: hyper then writes a response's head and
    // body chunks without copying them into one buffer.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs
            .iter()
            .find(|buf| !buf.is_empty())
            .map_or(&[][..], |buf| &buf[..]);
        if this.rewrites(first) {
            let len = bufs.iter().map(|buf| buf.len()).sum();
            return this.poll_instead(cx, len);
        }
        let polled = this.stream().poll_write_vectored(cx, bufs);
        this.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|stream| stream.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.stream().poll_flush(cx);
        self.note_write(&polled);
        // Hyper flushes once its buffer is empty: after a response's end,
        // all of it is written.
        let connection = &self.connection;
        if matches!(polled, Poll::Ready(Ok(()))) && !connection.busy.load(Ordering::Relaxed) {
            connection.unflushed.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.rewritten.is_some() {
            std::task::ready!(self.poll_rewritten(cx))?;
        }
        self.stream().poll_shutdown(cx)
    }
}

/// A request body that must keep up a minimum rate once its grace has
/// passed. Only time spent waiting for the client counts.
struct RateLimitedBody {
    inner: Incoming,
    connection: Arc<Connection>,
    min_rate: u64,
    received: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a request body ends with when it is too slow.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes a second")]
pub struct BodyTooSlow(u64);

impl http_body::Body for RateLimitedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.received += data.len() as u64;
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let allowed = BODY_GRACE
                    + Duration::from_secs_f64(this.received as f64 / this.min_rate.max(1) as f64);
                let deadline = since + allowed.saturating_sub(this.waited);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if now >= deadline || timer.as_mut().poll(cx).is_ready() {
                    this.connection.body_too_slow.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow(this.min_rate)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the end of its request when it is done with
/// (read to its end or dropped).
struct EndOfRequest {
    inner: Body,
    connection: Arc<Connection>,
}

impl Drop for EndOfRequest {
    fn drop(&mut self) {
        self.connection.end_request();
    }
}

impl http_body::Body for EndOfRequest {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The address a request came from (in its extensions): `None` for a
/// native function's connection from inside its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

/// The service of one connection: the app, with each request's body
/// rate-limited and its lifetime tracked.
#[derive(Clone)]
struct ConnectionService {
    app: crate::s3::App,
    connection: Arc<Connection>,
    peer: ClientAddr,
    min_body_rate: u64,
    metrics: Arc<Metrics>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<
        Box<dyn Future<Output = Result<http::Response<Body>, std::convert::Infallible>> + Send>,
    >;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let connection = self.connection.clone();
        connection.begin_request();
        let mut request = request.map(|inner| {
            Body::new(RateLimitedBody {
                inner,
                connection: connection.clone(),
                min_rate: self.min_body_rate,
                received: 0,
                waited: Duration::ZERO,
                waiting_since: None,
                timer: None,
            })
        });
        request.extensions_mut().insert(self.peer);
        let mut app = self.app.clone();
        let min_body_rate = self.min_body_rate;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            use tower::Service;
            let response = match app.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if connection.body_too_slow.load(Ordering::Relaxed) {
                metrics.connection_timed_out(TimedOut::Body.as_str());
                let mut response = crate::ApiError::RequestTimeout(format!(
                    "the request body arrived slower than {min_body_rate} bytes a second after its first {}s",
                    BODY_GRACE.as_secs()
                ))
                .into_response();
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                response
            } else {
                response
            };
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                connection.upgraded.store(true, Ordering::Relaxed);
            }
            Ok(response.map(|inner| {
                Body::new(EndOfRequest {
                    inner,
                    connection: connection.clone(),
                })
            }))
        })
    }
}

/// A connection a native function's instance opened to wok's API from
/// inside its sandbox (the process runtime listens there and hands it
/// over), with what it holds until it closes (its place among its
/// instance's connections).
pub type InsideConnection = (TcpStream, Box<dyn std::any::Any + Send>);

/// Serves `app` on `listener`, and on the connections that come through
/// `inside`, until `shutdown` resolves, then lets each connection finish
/// its request in flight and returns once all are closed (upgraded
/// connections are not waited for). Dropping the future closes every
/// connection. Both kinds are the same to every limit and timeout.
pub async fn serve(
    listener: TcpListener,
    mut inside: tokio::sync::mpsc::Receiver<InsideConnection>,
    app: crate::s3::App,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let registry = Arc::new(Registry::new());
    let clock = Clock {
        base: Instant::now(),
    };
    let limits = Arc::new(limits);
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer, hold) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, Some(peer.ip()), None),
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            Some((stream, hold)) = inside.recv() => (stream, None, Some(hold)),
            Some(_) = connections.join_next() => continue,
            _ = &mut shutdown => break,
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let connection = Arc::new(Connection::new(clock));
        let guard = match registry.admit(&connection, limits.max_connections, &metrics) {
            Admission::Admitted(guard) => guard,
            Admission::Refused => {
                refuse(stream, limits.max_connections);
                continue;
            }
        };
        let (linger, lingering) = tokio::sync::oneshot::channel();
        let io = WatchedIo {
            stream: Some(stream),
            connection: connection.clone(),
            rewritten: None,
            read_eof: false,
            linger: Some(linger),
            guard: Some(guard),
            _hold: hold,
        };
        let serving = serve_connection(
            io,
            lingering,
            ConnectionService {
                app: app.clone(),
                connection,
                peer: ClientAddr(peer),
                min_body_rate: limits.min_body_rate,
                metrics: metrics.clone(),
            },
            limits.clone(),
            metrics.clone(),
            stop.clone(),
        );
        connections.spawn(serving);
    }
    drop(listener);
    let _ = stopping.send(true);
    tracing::debug!("stopping: {} connections open", registry.len());
    while connections.join_next().await.is_some() {}
}

/// Waits a little after a failed accept: out of file descriptors, say,
/// which closing connections will give back.
async fn accept_failed(error: &io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);
    let now = Instant::now();
    let due = {
        let mut last = LAST_LOG
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10));
        if due {
            *last = Some(now);
        }
        due
    };
    if due {
        tracing::error!("accepting a connection failed: {error}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// How long a closing connection keeps reading what the client still
/// sends, at most, and at most between two reads.
const LINGER_TOTAL: Duration = Duration::from_secs(30);
const LINGER_QUIET: Duration = Duration::from_secs(2);

/// Reads and throws away what the client still sends after the server
/// answered and shut its side down, until the client closes (bounded in
/// time). Closing a socket with unread bytes makes the kernel reset the
/// connection, and a reset discards the answer the client has not read
/// yet: a client still sending a body the server refused would see a
/// broken pipe instead of the refusal (nginx's lingering close).
async fn linger(mut stream: TcpStream) {
    // hyper may have shut the sending side down already.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    let deadline = Instant::now() + LINGER_TOTAL;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let quiet = (Instant::now() + LINGER_QUIET).min(deadline);
        match tokio::time::timeout_at(
            quiet,
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        {
            Ok(Ok(read)) if read > 0 => continue,
            _ => return,
        }
    }
}

/// Answers a connection beyond the cap with a 503 (as much of it as the
/// socket takes at once) and closes it.
fn refuse(stream: TcpStream, max: usize) {
    let answer = raw_error_response(
        ErrorCode::TooManyConnections,
        &format!("the server holds its limit of {max} connections, all busy; retry later"),
        &[("retry-after", "1")],
    );
    let _ = stream.try_write(&answer);
    // Unread bytes at close make the kernel reset the connection, which
    // can discard the answer: read what has arrived already.
    let mut buffer = [0u8; 4096];
    while matches!(stream.try_read(&mut buffer), Ok(read) if read > 0) {}
}

async fn serve_connection(
    io: WatchedIo,
    mut lingering: tokio::sync::oneshot::Receiver<(TcpStream, Guard)>,
    service: ConnectionService,
    limits: Arc<ConnectionLimits>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let connection = service.connection.clone();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(limits.max_header_bytes.max(8192))
        // Deadlines are ours (below); hyper's would need its timer.
        .header_read_timeout(None);
    let serving = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    // Boxed, to be dropped (and the socket with it) before lingering.
    let mut serving = Box::pin(serving);
    let timer = tokio::time::sleep(Duration::ZERO);
    let mut timer = std::pin::pin!(timer);
    let mut due = connection.deadline(&limits);
    if let Some((at, _)) = due {
        timer.as_mut().reset(at);
    }
    let mut stopping = false;
    loop {
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!("connection ended: {error}");
                }
                break;
            }
            _ = &mut timer, if due.is_some() => {
                due = connection.deadline(&limits);
                match due {
                    Some((at, reason)) if at <= Instant::now() => {
                        metrics.connection_timed_out(reason.as_str());
                        tracing::debug!("closing a connection: {} timeout", reason.as_str());
                        return;
                    }
                    Some((at, _)) => timer.as_mut().reset(at),
                    None => {}
                }
            }
            _ = connection.changed.notified() => {
                due = connection.deadline(&limits);
                if let Some((at, _)) = due {
                    timer.as_mut().reset(at);
                }
            }
            // Shed to make room for a new connection.
            _ = connection.close.notified() => return,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                serving.as_mut().graceful_shutdown();
            }
        }
    }
    // hyper is done: the socket comes back here unless the client closed it.
    drop(serving);
    if let Ok((stream, _guard)) = lingering.try_recv() {
        tokio::select! {
            _ = linger(stream) => {}
            _ = connection.close.notified() => {}
        }
    }
}
