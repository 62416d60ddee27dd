use crate::Meter;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type requests and responses cross the boundary with.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// A body that counts its bytes into a [`Meter`] and ends with an error once
/// more than `limit` bytes went through. It holds the meter, so the record is
/// written only after the body is finished or dropped.
pub struct CountingBody<B> {
    inner: B,
    meter: Arc<Meter>,
    direction: Direction,
    seen: u64,
    limit: u64,
    /// The body reached its end (or failed on its own): dropping it then is
    /// not the client going away.
    complete: Cell<bool>,
    wire_length: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl<B> CountingBody<B> {
    pub fn request(inner: B, meter: Arc<Meter>, limit: u64) -> Self {
        Self {
            inner,
            meter,
            direction: Direction::In,
            seen: 0,
            limit,
            complete: Cell::new(false),
            wire_length: None,
        }
    }

    /// A response body. `wire_length` is how many bytes the HTTP layer
    /// will send, when it knows: 0 for a HEAD request or a 204 or 304
    /// answer, the `content-length` otherwise. Dropped before its end (or
    /// before that many bytes) means the client left, which the meter is told.
    pub fn response(inner: B, meter: Arc<Meter>, limit: u64, wire_length: Option<u64>) -> Self {
        Self {
            inner,
            meter,
            direction: Direction::Out,
            seen: 0,
            limit,
            complete: Cell::new(wire_length == Some(0)),
            wire_length,
        }
    }
}

/// A function's response with its body counted into `meter` and cut past
/// `limit` bytes. How many bytes the client is owed (0 for a HEAD request,
/// a 1xx, 204 or 304 answer, else the `content-length`) tells a finished
/// body from a client that left.
pub fn metered_response<B>(
    response: http::Response<B>,
    meter: Arc<Meter>,
    limit: u64,
    head_request: bool,
) -> http::Response<Body>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let status = response.status();
    let wire_length = if head_request
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
    {
        Some(0)
    } else {
        response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
    };
    response.map(|body| CountingBody::response(body, meter, limit, wire_length).boxed_unsync())
}

impl<B> Drop for CountingBody<B> {
    fn drop(&mut self) {
        if self.direction == Direction::Out && !self.complete.get() {
            self.meter.client_left();
        }
    }
}

impl<B> http_body::Body for CountingBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    this.seen += len;
                    if this.seen > this.limit {
                        this.complete.set(true);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                    match this.direction {
                        Direction::In => this.meter.add_bytes_in(len),
                        Direction::Out => this.meter.add_bytes_out(len),
                    }
                    if this.wire_length.is_some_and(|length| this.seen >= length) {
                        this.complete.set(true);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.complete.set(true);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                this.complete.set(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.complete.set(true);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
