//! From error kinds to the public codes of the one table
//! (`api_types::ErrorCode`, whose status each code carries): every error
//! the gateway answers goes through [`ApiError::code`].
use api_types::{ErrorBody, ErrorCode, ErrorDetail};
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
        code: ErrorCode,
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
        code: ErrorCode,
        message: String,
    },
    FunctionNotFound(String),
    /// Well-formed, but not something that can be done (422).
    Unprocessable {
        code: ErrorCode,
        message: String,
    },
    BadRequest {
        code: ErrorCode,
        message: String,
    },
    PayloadTooLarge(String),
    /// A path that does not take the request's method.
    MethodNotAllowed(String),
    /// The client was too slow (a request body below the minimum rate).
    RequestTimeout(String),
    Overloaded(String),
    /// The database could not be reached, or the connection to it was
    /// lost: a write's outcome is unknown (it may have committed).
    StoreUnavailable(String),
    /// The disk is full: writes are refused until space is freed.
    InsufficientStorage(String),
    Guest(Failure),
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The public code and message (for errors sent outside an HTTP
    /// response, such as over a WebSocket).
    pub(crate) fn code_and_message(&self) -> (ErrorCode, String) {
        if let ApiError::Internal(detail) = self {
            tracing::error!("internal error: {detail}");
        }
        (self.code(), self.message())
    }

    /// The public code (and through it the status) this error answers
    /// with: the one mapping from kinds to the table.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized
            | ApiError::InvalidKey
            | ApiError::NotAllowedUnauthenticated(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden | ApiError::NotAllowed(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::NotFoundCode { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. } => *code,
            ApiError::UnsupportedMediaType(_) => ErrorCode::ContentTypeRefused,
            ApiError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            ApiError::ProjectNotFound(_) => ErrorCode::ProjectNotFound,
            ApiError::KeyNotFound(_) => ErrorCode::KeyNotFound,
            ApiError::DocumentNotFound(_) => ErrorCode::DocumentNotFound,
            ApiError::Batch { error, .. } => error.code(),
            ApiError::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            ApiError::FunctionNotFound(_) => ErrorCode::FunctionNotFound,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::RequestTimeout(_) => ErrorCode::RequestTimeout,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Overloaded(_) => ErrorCode::TooManyRequests,
            ApiError::StoreUnavailable(_) => ErrorCode::StoreUnavailable,
            ApiError::InsufficientStorage(_) => ErrorCode::InsufficientStorage,
            ApiError::Guest(failure) => outcome_code(failure.outcome),
            ApiError::Internal(_) => ErrorCode::InternalError,
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
            // What failed is logged, not shown.
            ApiError::StoreUnavailable(_) => "the database could not be reached; a write may or may not have been made: read before trying again".to_owned(),
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
        let code = self.code();
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let ApiError::Internal(detail) = &self {
            tracing::error!("internal error: {detail}");
        }
        if let ApiError::StoreUnavailable(detail) = &self {
            tracing::warn!("the store is unavailable: {detail}");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
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
        if let ApiError::Overloaded(_) | ApiError::StoreUnavailable(_) = self {
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

/// The code of a guest's failure.
fn outcome_code(outcome: Outcome) -> ErrorCode {
    match outcome {
        Outcome::Trap => ErrorCode::FunctionTrap,
        Outcome::Timeout => ErrorCode::FunctionTimeout,
        Outcome::OutOfMemory => ErrorCode::FunctionOutOfMemory,
        Outcome::StackOverflow => ErrorCode::FunctionStackOverflow,
        Outcome::NoResponse => ErrorCode::FunctionNoResponse,
        Outcome::ClientDisconnected => ErrorCode::ClientDisconnected,
        Outcome::Crashed => ErrorCode::FunctionCrashed,
        // A failure is never a success; were it one, it is wok's fault.
        Outcome::Internal | Outcome::Success => ErrorCode::InternalError,
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
    code: ErrorCode,
    message: &str,
    headers: &[(&str, &str)],
) -> bytes::Bytes {
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_owned(),
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
                ApiError::bad_request(ErrorCode::InvalidConfig, error.to_string())
            }
            FunctionsError::Deploy(error) if error.too_large => {
                ApiError::PayloadTooLarge(error.message)
            }
            FunctionsError::Deploy(error) => {
                ApiError::bad_request(ErrorCode::InvalidComponent, error.message)
            }
            FunctionsError::NoSuchFunction(name) => {
                ApiError::FunctionNotFound(format!("function {name:?} does not exist"))
            }
            error @ FunctionsError::NoSuchVersion { .. } => ApiError::NotFound(error.to_string()),
            FunctionsError::DiskFull(message) => ApiError::InsufficientStorage(message),
            error @ FunctionsError::InUse { .. } => ApiError::Conflict {
                code: ErrorCode::FunctionInUse,
                message: error.to_string(),
            },
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
                code: ErrorCode::ProjectExists,
                message: error.to_string(),
            },
            store::StoreError::ProjectNotEmpty(_) => ApiError::Conflict {
                code: ErrorCode::ProjectNotEmpty,
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
                code: ErrorCode::DocumentExists,
                message: error.to_string(),
            },
            store::StoreError::IndexExists(_) => ApiError::Conflict {
                code: ErrorCode::IndexExists,
                message: error.to_string(),
            },
            store::StoreError::InvalidDocument(message) => {
                ApiError::bad_request(ErrorCode::InvalidDocument, message)
            }
            store::StoreError::InvalidQuery(message) => {
                ApiError::bad_request(ErrorCode::InvalidQuery, message)
            }
            store::StoreError::UnindexedQuery(message) => {
                ApiError::bad_request(ErrorCode::UnindexedQuery, message)
            }
            store::StoreError::BatchFailed { write, error } => ApiError::Batch {
                write,
                error: Box::new((*error).into()),
            },
            store::StoreError::NotANumber => ApiError::Conflict {
                code: ErrorCode::NotANumber,
                message: "the value is not a decimal integer, so it cannot be incremented"
                    .to_owned(),
            },
            store::StoreError::IdempotencyKeyReused => ApiError::Unprocessable {
                code: ErrorCode::IdempotencyKeyReused,
                message: error.to_string(),
            },
            store::StoreError::AsyncQueueFull { .. } => ApiError::Overloaded(error.to_string()),
            store::StoreError::DiskFull(_) => ApiError::InsufficientStorage(error.to_string()),
            error if error.is_retryable() => ApiError::StoreUnavailable(error.to_string()),
            store::StoreError::Overflow => ApiError::Conflict {
                code: ErrorCode::Overflow,
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
            DataError::InvalidName(message) => {
                ApiError::bad_request(ErrorCode::InvalidName, message)
            }
            DataError::InvalidKey(message) => ApiError::bad_request(ErrorCode::InvalidKey, message),
            DataError::TooLarge(message) => ApiError::PayloadTooLarge(message),
            DataError::InvalidQuery(message) => {
                ApiError::bad_request(ErrorCode::InvalidQuery, message)
            }
            DataError::InvalidBatch(message) => {
                ApiError::bad_request(ErrorCode::InvalidBatch, message)
            }
            DataError::InvalidIndex(message) => {
                ApiError::bad_request(ErrorCode::InvalidIndex, message)
            }
            DataError::Store(error) => error.into(),
        }
    }
}

impl From<auth::AuthError> for ApiError {
    fn from(error: auth::AuthError) -> Self {
        match error {
            auth::AuthError::InvalidKey => ApiError::InvalidKey,
            auth::AuthError::NotACredential => ApiError::Forbidden,
            auth::AuthError::Expired => ApiError::NotAllowedUnauthenticated(
                "these function credentials have expired (they last an hour, the function's timeout and a minute from their instance's start)"
                    .to_owned(),
            ),
            auth::AuthError::InvalidToken
            | auth::AuthError::TokenExpired
            | auth::AuthError::SessionEnded => ApiError::NotAllowedUnauthenticated(format!(
                "{error}: sign in again (or refresh the session) for a new access token"
            )),
            auth::AuthError::Store(error) => error.into(),
        }
    }
}
