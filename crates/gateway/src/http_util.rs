//! Small HTTP pieces the data routes share: ETags of versions, the
//! precondition headers, strict query parameters (an unknown one is a
//! 400, so a typo fails loudly), JSON request bodies, and closing
//! connections whose request body was not read.
//!
//! JSON bodies ([`read_json_body`]) are bounded three ways: a body
//! declared larger than its route's limit is refused unread (413); a
//! large one first takes its size from one budget of MiB being read and
//! parsed at once ([`JsonBudget`], with a share per project, so one
//! project cannot keep another's out; 429 past it), then must arrive at a
//! minimum rate (408); and it is parsed off the async threads.
use crate::ApiError;
use api_types::ErrorCode;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Refuses query parameters other than `allowed`, so a typo fails loudly.
pub fn only_params(query: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match query.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("unknown query parameter {key:?}"),
        )),
        None => Ok(()),
    }
}

/// A page size from `?limit=`: 1 to `max` (`default` without one); else
/// 400 `invalid_query`.
pub fn page_limit(
    query: &HashMap<String, String>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(value) => value
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=max).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("limit must be a whole number from 1 to {max}, not {value:?}"),
                )
            }),
    }
}

/// A position in a log from `?KEY=` (0 or more); else 400 `invalid_query`.
pub fn log_position(query: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    query
        .get(key)
        .map(|value| {
            value
                .parse::<i64>()
                .ok()
                .filter(|position| *position >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidQuery,
                        format!(
                            "{key} must be a position (a whole number, 0 or more), not {value:?}"
                        ),
                    )
                })
        })
        .transpose()
}

/// The `ETag` of a version: `"N"`.
pub fn etag(version: u64) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

/// What the precondition headers of a versioned write ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// `If-Match: "N"`: only at version N.
    Version(u64),
    /// `If-Match: *`: only if it exists.
    Exists,
    /// `If-None-Match: *`: only if it does not.
    Absent,
}

/// Reads `If-Match` (a version this API gave out, or `*`) and
/// `If-None-Match` (only `*`).
pub fn precondition(headers: &http::HeaderMap) -> Result<Precondition, ApiError> {
    if let Some(value) = headers.get(http::header::IF_MATCH) {
        let text = value.to_str().unwrap_or_default().trim();
        if text == "*" {
            return Ok(Precondition::Exists);
        }
        let version = text.trim_matches('"').parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                ErrorCode::InvalidHeader,
                format!("If-Match must be an ETag this API gave out, like \"12\"; got {text:?}"),
            )
        })?;
        return Ok(Precondition::Version(version));
    }
    if let Some(value) = headers.get(http::header::IF_NONE_MATCH) {
        if value.to_str().unwrap_or_default().trim() == "*" {
            return Ok(Precondition::Absent);
        }
        return Err(ApiError::bad_request(
            ErrorCode::InvalidHeader,
            "If-None-Match supports only `*` (create only)",
        ));
    }
    Ok(Precondition::None)
}

/// Bodies up to this size are parsed as JSON on the async thread that
/// read them; larger ones on the blocking pool.
pub(crate) const SMALL_BODY: usize = 64 << 10;

/// The MiB of large JSON request bodies read or parsed at once (see
/// `read_json_body`).
pub const JSON_BODY_BUDGET_MIB: usize = 16;

/// The MiB of them one project may hold: one whole batch, so the others
/// always have the rest.
const JSON_BODY_SHARE_MIB: usize = 10;

/// How long a large body waits for its turn before the request is refused.
const JSON_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Slowest a large JSON body may arrive once it has its share of the
/// budget (a second, after 10 s): 64 KiB, so a 10 MiB batch has 170 s.
const JSON_BODY_MIN_RATE: usize = 64 << 10;

/// The budget for large JSON bodies: MiB being read or parsed at once,
/// and what each project holds of them (at most
/// `JSON_BODY_SHARE_MIB`), so one project's slow or many bodies never
/// keep another's out.
pub struct JsonBudget {
    permits: Arc<tokio::sync::Semaphore>,
    shares: std::sync::Mutex<HashMap<domain::ProjectId, usize>>,
}

impl JsonBudget {
    pub fn new(mib: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(tokio::sync::Semaphore::new(mib)),
            shares: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Takes `mib` of the project's share, if it has that much left.
    fn take_share(self: &Arc<Self>, project: &domain::ProjectId, mib: usize) -> Option<Share> {
        let mut shares = self
            .shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = shares.entry(project.clone()).or_default();
        if *held + mib > JSON_BODY_SHARE_MIB {
            if *held == 0 {
                shares.remove(project);
            }
            return None;
        }
        *held += mib;
        Some(Share {
            budget: self.clone(),
            project: project.clone(),
            mib,
        })
    }
}

/// A project's part of the [`JsonBudget`], given back on drop.
struct Share {
    budget: Arc<JsonBudget>,
    project: domain::ProjectId,
    mib: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self
            .budget
            .shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = shares.get_mut(&self.project) {
            *held = held.saturating_sub(self.mib);
            if *held == 0 {
                shares.remove(&self.project);
            }
        }
    }
}

/// What a large JSON body holds of the [`JsonBudget`] while its value lives.
pub(crate) struct JsonPermit {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _share: Option<Share>,
}

/// Reads a request body of at most `limit` bytes and parses it as JSON.
///
/// A parsed JSON value takes up to ~16 times its text in memory, so large
/// bodies (over [`SMALL_BODY`], or of unknown length) take their size from
/// [`crate::Gateway::json_bodies`] (and from their project's share of it:
/// 429 past it) before they are read and give it back when the returned
/// permit drops (hold it while the value lives); they then have to arrive
/// at [`JSON_BODY_MIN_RATE`] (408). A body declared larger than `limit` is
/// refused unread (413). Large bodies are parsed off the async threads. An
/// empty body is `empty`.
pub(crate) async fn read_json_body<T: serde::de::DeserializeOwned + Send + 'static>(
    gateway: &crate::SharedGateway,
    request: Request,
    limit: usize,
    empty: impl FnOnce() -> Result<T, ApiError>,
    invalid: fn(serde_json::Error) -> ApiError,
) -> Result<(T, Option<JsonPermit>), ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("the body is larger than {limit} bytes"));
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let expected = declared.map_or(limit, |length| length as usize);
    let permit = if expected > SMALL_BODY {
        let mib = expected
            .div_ceil(1 << 20)
            .min(JSON_BODY_SHARE_MIB)
            .min(JSON_BODY_BUDGET_MIB);
        let budget = &gateway.json_bodies;
        let share = match request.extensions().get::<crate::projects::Scope>() {
            Some(crate::projects::Scope(project)) => {
                Some(budget.take_share(project, mib).ok_or_else(|| {
                    ApiError::Overloaded(
                        "this project is sending other large request bodies; retry later"
                            .to_owned(),
                    )
                })?)
            }
            None => None,
        };
        let waited = tokio::time::timeout(
            JSON_BODY_WAIT,
            budget.permits.clone().acquire_many_owned(mib as u32),
        )
        .await;
        match waited {
            Ok(Ok(permit)) => Some(JsonPermit {
                _permit: permit,
                _share: share,
            }),
            _ => {
                return Err(ApiError::Overloaded(
                    "the server is reading other large request bodies; retry later".to_owned(),
                ));
            }
        }
    } else {
        None
    };
    let read = axum::body::to_bytes(request.into_body(), limit);
    let read = match permit {
        // Holding the budget: the body has to keep coming.
        Some(_) => {
            let allowed =
                std::time::Duration::from_secs(10 + (expected / JSON_BODY_MIN_RATE) as u64);
            match tokio::time::timeout(allowed, read).await {
                Ok(read) => read,
                Err(_) => {
                    return Err(ApiError::RequestTimeout(format!(
                        "a request body over {SMALL_BODY} bytes must arrive at {JSON_BODY_MIN_RATE} bytes a second at least"
                    )));
                }
            }
        }
        None => read.await,
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(error) => {
            use std::error::Error;
            let limited = error.source().is_some_and(|source| {
                source.is::<http_body_util::LengthLimitError>()
                    || source
                        .source()
                        .is_some_and(|inner| inner.is::<http_body_util::LengthLimitError>())
            });
            return Err(if limited {
                too_large()
            } else {
                ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    format!("reading the body failed: {error}"),
                )
            });
        }
    };
    if bytes.is_empty() {
        return Ok((empty()?, permit));
    }
    let value = if bytes.len() > SMALL_BODY {
        crate::blocking(move || serde_json::from_slice(&bytes)).await
    } else {
        serde_json::from_slice(&bytes)
    }
    .map_err(invalid)?;
    Ok((value, permit))
}

/// Whether a request comes with a body.
pub(crate) fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// A request body that tells when it has been read to its end.
struct WatchedBody {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Watches whether the request's body gets read to its end.
pub(crate) fn watch_body(request: Request) -> (Request, Arc<AtomicBool>) {
    let ended = Arc::new(AtomicBool::new(false));
    let watched = ended.clone();
    let request = request.map(|inner| {
        Body::new(WatchedBody {
            inner,
            ended: watched,
        })
    });
    (request, ended)
}

/// Closes the connection after a response given before the request's body
/// was read (a refusal, a size limit). What the client does with the body
/// it holds is unknown then: one that sent `Expect: 100-continue` (boto3
/// does) may send it anyway after a second without an answer, and those
/// bytes must not be taken for its next request.
pub(crate) fn close_unless_read(mut response: Response, ended: &AtomicBool) -> Response {
    if !ended.load(Ordering::Relaxed) {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}
