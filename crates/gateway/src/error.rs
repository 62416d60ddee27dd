//! The one table from error kinds to public codes and statuses.
use api_types::{ErrorBody, ErrorDetail};
use axum::Json;
use axum::response::{IntoResponse, Response};
use domain::Outcome;
use functions::FunctionsError;
use http::StatusCode;
use invoke::Failure;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    /// No credential (or a wrong one) where a particular one is needed.
    NotAllowedUnauthenticated(String),
    /// A key-shaped credential that no live key matches.
    InvalidKey,
    Forbidden,
    /// A valid credential that may not do this.
    NotAllowed(String),
    NotFound(String),
    /// Not found, with a code saying what (`bucket_not_found`, ...).
    NotFoundCode {
        code: &'static str,
        message: String,
    },
    UnsupportedMediaType(String),
    RangeNotSatisfiable {
        message: String,
        /// The object's size, for `Content-Range: bytes */SIZE`.
        size: u64,
    },
    ProjectNotFound(String),
    KeyNotFound(String),
    DocumentNotFound(String),
    PreconditionFailed(String),
    /// A write of an atomic batch failed, so none was written.
    Batch {
        write: usize,
        error: Box<ApiError>,
    },
    Conflict {
        code: &'static str,
        message: String,
    },
    FunctionNotFound(String),
    /// Well-formed, but not something that can be done (422).
    Unprocessable {
        code: &'static str,
        message: String,
    },
    BadRequest {
        code: &'static str,
        message: String,
    },
    PayloadTooLarge(String),
    /// A path that does not take the request's method.
    MethodNotAllowed(String),
    /// The client was too slow (a request body below the minimum rate).
    RequestTimeout(String),
    Overloaded(String),
    /// The disk is full: writes are refused until space is freed.
    InsufficientStorage(String),
    Guest(Failure),
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The public code and message (for errors sent outside an HTTP
    /// response, such as over a WebSocket).
    pub(crate) fn code_and_message(&self) -> (&'static str, String) {
        if let ApiError::Internal(detail) = self {
            tracing::error!("internal error: {detail}");
        }
        (self.status_and_code().1, self.message())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::InvalidKey => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotAllowedUnauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden | ApiError::NotAllowed(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotFoundCode { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type_refused")
            }
            ApiError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::ProjectNotFound(_) => (StatusCode::NOT_FOUND, "project_not_found"),
            ApiError::KeyNotFound(_) => (StatusCode::NOT_FOUND, "key_not_found"),
            ApiError::DocumentNotFound(_) => (StatusCode::NOT_FOUND, "document_not_found"),
            ApiError::Batch { error, .. } => error.status_and_code(),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::FunctionNotFound(_) => (StatusCode::NOT_FOUND, "function_not_found"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::Guest(failure) => {
                let status = match failure.outcome {
                    Outcome::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    Outcome::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_GATEWAY,
                };
                (status, failure.outcome.code())
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Unauthorized => {
                "this API needs the admin credential or a service key: send `Authorization: Bearer TOKEN`".to_owned()
            }
            ApiError::InvalidKey => "the key is unknown or revoked".to_owned(),
            ApiError::Forbidden => "the credential sent is not valid for this API".to_owned(),
            ApiError::NotAllowed(message)
            | ApiError::NotAllowedUnauthenticated(message)
            | ApiError::ProjectNotFound(message)
            | ApiError::KeyNotFound(message)
            | ApiError::DocumentNotFound(message)
            | ApiError::PreconditionFailed(message)
            | ApiError::Conflict { message, .. }
            | ApiError::NotFound(message)
            | ApiError::NotFoundCode { message, .. }
            | ApiError::UnsupportedMediaType(message)
            | ApiError::RangeNotSatisfiable { message, .. }
            | ApiError::FunctionNotFound(message)
            | ApiError::BadRequest { message, .. }
            | ApiError::Unprocessable { message, .. }
            | ApiError::PayloadTooLarge(message)
            | ApiError::RequestTimeout(message)
            | ApiError::MethodNotAllowed(message)
            | ApiError::Overloaded(message)
            | ApiError::InsufficientStorage(message) => message.clone(),
            ApiError::Guest(failure) => failure.message.clone(),
            ApiError::Batch { write, error } => format!(
                "write {write} of the batch failed, so nothing was written: {}",
                error.message()
            ),
            // Internals are logged, not shown.
            ApiError::Internal(_) => {
                "wok failed to handle the request; the server log has details".to_owned()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!("internal error: {detail}");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.message(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable { size, .. } = &self
            && let Ok(value) = http::HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response
                .headers_mut()
                .insert(http::header::CONTENT_RANGE, value);
        }
        if let ApiError::Overloaded(_) = self {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        if self.is_disk_full() {
            response.extensions_mut().insert(DiskFilled);
        }
        response
    }
}

/// Marks a response answering a write that failed for a full disk (the
/// status alone says nothing: a function's own answer may be a 507).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DiskFilled;

impl ApiError {
    fn is_disk_full(&self) -> bool {
        match self {
            ApiError::InsufficientStorage(_) => true,
            ApiError::Batch { error, .. } => error.is_disk_full(),
            _ => false,
        }
    }
}

/// A whole HTTP/1.1 error answer as bytes (JSON error body, then the
/// connection closes), for answers written to a socket without hyper: a
/// connection refused at the cap, or a request hyper could not parse.
pub(crate) fn raw_error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    headers: &[(&str, &str)],
) -> bytes::Bytes {
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    })
    .expect("an error body serializes");
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&body);
    answer.into()
}

impl From<FunctionsError> for ApiError {
    fn from(error: FunctionsError) -> Self {
        match error {
            FunctionsError::Spec(error) => {
                ApiError::bad_request("invalid_config", error.to_string())
            }
            FunctionsError::Deploy(error) => {
                ApiError::bad_request("invalid_component", error.to_string())
            }
            FunctionsError::NoSuchFunction(name) => {
                ApiError::FunctionNotFound(format!("function {name:?} does not exist"))
            }
            error @ FunctionsError::NoSuchVersion { .. } => ApiError::NotFound(error.to_string()),
            FunctionsError::DiskFull(message) => ApiError::InsufficientStorage(message),
            error @ (FunctionsError::Storage(_) | FunctionsError::Load(_)) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        match error {
            store::StoreError::NoSuchProject(_) => ApiError::ProjectNotFound(error.to_string()),
            store::StoreError::ProjectExists(_) => ApiError::Conflict {
                code: "project_exists",
                message: error.to_string(),
            },
            store::StoreError::ProjectNotEmpty(_) => ApiError::Conflict {
                code: "project_not_empty",
                message: error.to_string(),
            },
            store::StoreError::ConditionFailed => ApiError::PreconditionFailed(
                "the entry is not at the version If-Match names, or If-None-Match: * found it"
                    .to_owned(),
            ),
            store::StoreError::NoSuchDocument(id) => {
                ApiError::DocumentNotFound(format!("no document {id:?} in this collection"))
            }
            store::StoreError::DocumentExists(_) => ApiError::Conflict {
                code: "document_exists",
                message: error.to_string(),
            },
            store::StoreError::IndexExists(_) => ApiError::Conflict {
                code: "index_exists",
                message: error.to_string(),
            },
            store::StoreError::InvalidDocument(message) => {
                ApiError::bad_request("invalid_document", message)
            }
            store::StoreError::InvalidQuery(message) => {
                ApiError::bad_request("invalid_query", message)
            }
            store::StoreError::UnindexedQuery(message) => {
                ApiError::bad_request("unindexed_query", message)
            }
            store::StoreError::BatchFailed { write, error } => ApiError::Batch {
                write,
                error: Box::new((*error).into()),
            },
            store::StoreError::NotANumber => ApiError::Conflict {
                code: "not_a_number",
                message: "the value is not a decimal integer, so it cannot be incremented"
                    .to_owned(),
            },
            store::StoreError::IdempotencyKeyReused => ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: error.to_string(),
            },
            store::StoreError::AsyncQueueFull { .. } => ApiError::Overloaded(error.to_string()),
            store::StoreError::DiskFull(_) => ApiError::InsufficientStorage(error.to_string()),
            store::StoreError::Overflow => ApiError::Conflict {
                code: "overflow",
                message: error.to_string(),
            },
            error => FunctionsError::from(error).into(),
        }
    }
}

impl From<data::DataError> for ApiError {
    fn from(error: data::DataError) -> Self {
        use data::DataError;
        match error {
            DataError::InvalidName(message) => ApiError::bad_request("invalid_name", message),
            DataError::InvalidKey(message) => ApiError::bad_request("invalid_key", message),
            DataError::TooLarge(message) => ApiError::PayloadTooLarge(message),
            DataError::InvalidQuery(message) => ApiError::bad_request("invalid_query", message),
            DataError::InvalidBatch(message) => ApiError::bad_request("invalid_batch", message),
            DataError::InvalidIndex(message) => ApiError::bad_request("invalid_index", message),
            DataError::Store(error) => error.into(),
        }
    }
}

impl From<auth::AuthError> for ApiError {
    fn from(error: auth::AuthError) -> Self {
        match error {
            auth::AuthError::InvalidKey => ApiError::InvalidKey,
            auth::AuthError::NotACredential => ApiError::Forbidden,
            auth::AuthError::Store(error) => ApiError::Internal(error.to_string()),
        }
    }
}
