//! Small HTTP pieces the data routes share: ETags of versions, the
//! precondition headers, and strict query parameters.
use crate::ApiError;
use std::collections::HashMap;

/// Refuses query parameters other than `allowed`, so a typo fails loudly.
pub fn only_params(query: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match query.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ApiError::bad_request(
            "invalid_query",
            format!("unknown query parameter {key:?}"),
        )),
        None => Ok(()),
    }
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
                "invalid_header",
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
            "invalid_header",
            "If-None-Match supports only `*` (create only)",
        ));
    }
    Ok(Precondition::None)
}
