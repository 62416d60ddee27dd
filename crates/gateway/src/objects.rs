//! Object storage over plain REST, for app clients and scripts: buckets
//! under `/v1/buckets`, objects under `/v1/objects/BUCKET/KEY` (bodies
//! stream both ways), and presigned URLs that need no credential. The S3
//! endpoint (`s3.rs`) serves the same buckets.
//!
//! A presigned URL allows one method (GET, which takes HEAD too, or PUT)
//! on one object of one project until it expires (an hour by default, a
//! week at most). Its signature is an HMAC keyed with the signer's S3
//! secret over method, project, path and expiry
//! (`Auth::presign_signature`), so rotating that secret or revoking the
//! key revokes the URL. The authentication middleware (`projects.rs`)
//! checks it when a request has no credential; the signer is then the
//! caller, and its access is checked as for any request.
use crate::http_util::only_params;
use crate::projects::{
    Gate, PRESIGN_EXPIRES, PRESIGN_KEY, PRESIGN_SIGNATURE, Scope, gate, read_rule, require_service,
    write_rule,
};
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::Caller;
use auth::rules::Operation;
use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use domain::{Access, BucketName, ProjectId, ResourceKind};
use futures::TryStreamExt;
use objects::{BucketLimits, ObjectError, PutOptions};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};
use store::objects::{Bucket, ObjectCondition, ObjectMeta};

/// Most objects one listing page returns.
const MAX_LIST: u32 = 1000;
/// Longest a presigned URL may live.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

impl From<ObjectError> for ApiError {
    fn from(error: ObjectError) -> Self {
        let message = error.to_string();
        match error {
            ObjectError::NoSuchBucket(_) => ApiError::NotFoundCode {
                code: ErrorCode::BucketNotFound,
                message,
            },
            ObjectError::NoSuchKey(_) => ApiError::NotFoundCode {
                code: ErrorCode::ObjectNotFound,
                message,
            },
            ObjectError::NoSuchUpload(_) => ApiError::NotFoundCode {
                code: ErrorCode::UploadNotFound,
                message,
            },
            ObjectError::BucketExists(_) => ApiError::Conflict {
                code: ErrorCode::BucketExists,
                message,
            },
            ObjectError::BucketNotEmpty(_) => ApiError::Conflict {
                code: ErrorCode::BucketNotEmpty,
                message,
            },
            ObjectError::PreconditionFailed => ApiError::PreconditionFailed(message),
            ObjectError::DiskFull(_) => ApiError::InsufficientStorage(message),
            ObjectError::TooLarge { .. } => ApiError::PayloadTooLarge(message),
            ObjectError::ContentTypeRefused { .. } => ApiError::UnsupportedMediaType(message),
            ObjectError::BadDigest(_) => ApiError::bad_request(ErrorCode::BadDigest, message),
            ObjectError::IncompleteBody(_) => {
                ApiError::bad_request(ErrorCode::IncompleteBody, message)
            }
            ObjectError::InvalidPart(_)
            | ObjectError::InvalidPartOrder
            | ObjectError::EntityTooSmall { .. }
            | ObjectError::InvalidArgument(_) => {
                ApiError::bad_request(ErrorCode::InvalidRequest, message)
            }
            ObjectError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
            ObjectError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

fn bucket_name(name: &str) -> Result<BucketName, ApiError> {
    BucketName::new(name)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidName, error.to_string()))
}

/// The bucket a request names, if the caller may `access` it (some of
/// its keys, under per-user rules).
fn bucket_for(
    gateway: &SharedGateway,
    caller: &Caller,
    project: &ProjectId,
    name: &str,
    access: Access,
) -> Result<(BucketName, Gate), ApiError> {
    let bucket = bucket_name(name)?;
    let gate = gate(
        gateway,
        caller,
        project,
        ResourceKind::Bucket,
        bucket.as_str(),
        access,
    )?;
    Ok((bucket, gate))
}

/// An object as per-user rules see it (`resource`).
fn object_json(object: &ObjectMeta) -> serde_json::Value {
    serde_json::json!({
        "key": object.key,
        "size": object.size,
        "content_type": object.content_type,
        "etag": object.etag,
        "metadata": metadata_json(&object.metadata),
        "last_modified": object.last_modified,
    })
}

fn metadata_json(pairs: &[(String, String)]) -> serde_json::Value {
    pairs
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The answer to a read the rules refuse: the one a missing object gets,
/// so that a refusal never tells that the object exists.
fn hidden(key: &str) -> ApiError {
    ObjectError::NoSuchKey(key.to_owned()).into()
}

/// The object a ruled write replaces (`None`: there is none), with the
/// write's own condition checked against it; the write is then made on
/// the condition that the object is still the one the rules saw.
async fn ruled_target(
    gateway: &SharedGateway,
    project: &ProjectId,
    bucket: &BucketName,
    key: &str,
    asked: &ObjectCondition,
) -> Result<(Option<ObjectMeta>, ObjectCondition), ApiError> {
    let current = match gateway.objects.head(project, bucket, key).await {
        Ok(object) => Some(object),
        Err(ObjectError::NoSuchKey(_)) => None,
        Err(error) => return Err(error.into()),
    };
    let holds = match (asked, &current) {
        (ObjectCondition::Always, _) => true,
        (ObjectCondition::Absent, current) => current.is_none(),
        (ObjectCondition::ETag(etag), Some(object)) => *etag == object.etag,
        (ObjectCondition::ETag(_), None) => false,
    };
    if !holds {
        return Err(ObjectError::PreconditionFailed.into());
    }
    let condition = match &current {
        Some(object) => ObjectCondition::ETag(object.etag.clone()),
        None => ObjectCondition::Absent,
    };
    Ok((current, condition))
}

fn bucket_info(bucket: Bucket) -> api_types::BucketInfo {
    api_types::BucketInfo {
        name: bucket.name.to_string(),
        created_at: bucket.created_at,
        max_object_bytes: bucket.max_object_bytes,
        content_types: bucket.content_types,
    }
}

fn header_value(text: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(text).ok()
}

pub async fn list_buckets(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<api_types::BucketList>, ApiError> {
    require_service(&caller, &project)?;
    let buckets = gateway.objects.buckets(&project).await?;
    Ok(Json(api_types::BucketList {
        buckets: buckets.into_iter().map(bucket_info).collect(),
    }))
}

/// `PUT /v1/buckets/NAME` with optional limits.
pub async fn create_bucket(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(http::StatusCode, Json<api_types::BucketInfo>), ApiError> {
    require_service(&caller, &project)?;
    let name = bucket_name(&name)?;
    let request: api_types::CreateBucket = if body.is_empty() {
        api_types::CreateBucket::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(ErrorCode::InvalidBody,
                format!(
                    "expected {{\"max_object_bytes\": N, \"content_types\": [\"image/\", ...]}}: {error}"
                ),
            )
        })?
    };
    if let Some(bad) = request.content_types.iter().find(|content_type| {
        !content_type.contains('/') || content_type.contains(char::is_whitespace)
    }) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("{bad:?} is not a content type like image/png, or a family like image/"),
        ));
    }
    let limits = BucketLimits {
        max_object_bytes: request.max_object_bytes,
        content_types: request
            .content_types
            .iter()
            .map(|content_type| content_type.to_ascii_lowercase())
            .collect(),
    };
    let bucket = gateway
        .objects
        .create_bucket(&project, &name, limits)
        .await?;
    Ok((http::StatusCode::CREATED, Json(bucket_info(bucket))))
}

pub async fn delete_bucket(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    require_service(&caller, &project)?;
    let name = bucket_name(&name)?;
    remove_bucket(&gateway.objects, &gateway.auth, &project, &name).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// Deletes an empty bucket; its access rule goes with it (in the store's
/// transaction, and here from `Auth`'s memory), so a bucket of the same
/// name created later starts private.
pub(crate) async fn remove_bucket(
    objects: &::objects::Objects,
    auth: &auth::Auth,
    project: &ProjectId,
    bucket: &BucketName,
) -> Result<(), ObjectError> {
    objects.delete_bucket(project, bucket).await?;
    auth.forget_rule(project, ResourceKind::Bucket, bucket.as_str());
    Ok(())
}

/// `GET /v1/buckets/B/_access`.
pub async fn get_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    let name = bucket_name(&name)?;
    read_rule(
        &gateway,
        &caller,
        project,
        ResourceKind::Bucket,
        name.to_string(),
    )
    .await
}

/// `PUT /v1/buckets/B/_access` with `{"access": ...}`.
pub async fn set_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    let name = bucket_name(&name)?;
    write_rule(
        &gateway,
        &caller,
        project,
        ResourceKind::Bucket,
        name.to_string(),
        &body,
    )
    .await
}

/// `GET /v1/objects/B?prefix=&delimiter=&cursor=&limit=`.
pub async fn list_objects(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<api_types::ObjectList>, ApiError> {
    let (name, gate) = bucket_for(&gateway, &caller, &project, &name, Access::Read)?;
    only_params(&params, &["prefix", "delimiter", "cursor", "limit"])?;
    gate.allows_listing(
        params.get("prefix").map_or("", String::as_str),
        gateway.clock.now(),
    )?;
    let limit = crate::http_util::page_limit(&params, MAX_LIST, MAX_LIST)?;
    let listing = gateway
        .objects
        .list(
            &project,
            &name,
            params.get("prefix").map_or("", String::as_str),
            params.get("delimiter").map(String::as_str),
            params.get("cursor").map(String::as_str),
            limit,
        )
        .await?;
    Ok(Json(api_types::ObjectList {
        objects: listing
            .objects
            .into_iter()
            .map(|object| api_types::ObjectInfo {
                key: object.key,
                size: object.size,
                etag: object.etag,
                content_type: object.content_type,
                last_modified: object.last_modified,
            })
            .collect(),
        common_prefixes: listing.common_prefixes,
        next_cursor: listing.next_after,
    }))
}

/// `If-Match: "etag"` or `If-None-Match: *` of a write.
fn write_condition(headers: &http::HeaderMap) -> ObjectCondition {
    if let Some(etag) = headers
        .get(http::header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
    {
        return ObjectCondition::ETag(etag.trim().trim_matches('"').to_owned());
    }
    match headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
    {
        Some("*") => ObjectCondition::Absent,
        _ => ObjectCondition::Always,
    }
}

/// `x-amz-meta-NAME` headers, as S3 clients send user metadata.
fn user_metadata(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    pairs.sort();
    pairs
}

/// `PUT /v1/objects/B/KEY`: the body, streamed into the object.
pub async fn put_object(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((name, key)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (name, gate) = bucket_for(&gateway, &caller, &project, &name, Access::Write)?;
    let headers = request.headers();
    let mut options = PutOptions {
        content_type: headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        metadata: user_metadata(headers),
        headers: objects::KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect(),
        content_md5: headers
            .get("content-md5")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        length: headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok()),
        condition: write_condition(headers),
        ..PutOptions::default()
    };
    if let Gate::Paths(..) = gate {
        let (current, condition) =
            ruled_target(&gateway, &project, &name, &key, &options.condition).await?;
        let write = serde_json::json!({
            "key": key,
            "size": options.length,
            "content_type": options.content_type,
            "metadata": metadata_json(&options.metadata),
        });
        let (op, resource) = match &current {
            Some(object) => (Operation::Update, object_json(object)),
            None => (Operation::Create, serde_json::Value::Null),
        };
        if !gate.allows(op, &key, &resource, &write, gateway.clock.now()) {
            return Err(ApiError::NotAllowed(format!(
                "the rules of bucket {name} do not allow this write of {key:?}"
            )));
        }
        options.condition = condition;
    }
    let body = request.into_body().into_data_stream();
    let object = gateway
        .objects
        .put(&project, &name, &key, body, options, Vec::new)
        .await?;
    let mut response = Json(api_types::ObjectInfo {
        key: object.key.clone(),
        size: object.size,
        etag: object.etag.clone(),
        content_type: object.content_type.clone(),
        last_modified: object.last_modified,
    })
    .into_response();
    if let Some(etag) = header_value(&format!("\"{}\"", object.etag)) {
        response.headers_mut().insert(http::header::ETAG, etag);
    }
    Ok(response)
}

/// A single `Range: bytes=...` of an object of `size` bytes: `None` for
/// the whole object, `Err` when it cannot be satisfied.
fn range(headers: &http::HeaderMap, size: u64) -> Result<Option<std::ops::Range<u64>>, ApiError> {
    let Some(value) = headers
        .get(http::header::RANGE)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(None);
    };
    let unsatisfiable = || ApiError::RangeNotSatisfiable {
        message: format!("the range {value:?} is not within the object's {size} bytes"),
        size,
    };
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(unsatisfiable)?;
    let (first, last) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let length: u64 = suffix.parse().map_err(|_| unsatisfiable())?;
            size.saturating_sub(length)..size
        }
        (first, "") => first.parse().map_err(|_| unsatisfiable())?..size,
        (first, last) => {
            let first: u64 = first.parse().map_err(|_| unsatisfiable())?;
            let last: u64 = last.parse().map_err(|_| unsatisfiable())?;
            first..(last.saturating_add(1)).min(size)
        }
    };
    if range.start >= range.end || range.start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}

fn object_headers(object: &ObjectMeta, headers: &mut http::HeaderMap) {
    if let Some(etag) = header_value(&format!("\"{}\"", object.etag)) {
        headers.insert(http::header::ETAG, etag);
    }
    let modified = UNIX_EPOCH + Duration::from_millis(object.last_modified.max(0) as u64);
    if let Some(date) = header_value(&httpdate::fmt_http_date(modified)) {
        headers.insert(http::header::LAST_MODIFIED, date);
    }
    headers.insert(
        http::header::ACCEPT_RANGES,
        http::HeaderValue::from_static("bytes"),
    );
    for (name, value) in &object.metadata {
        if let (Ok(name), Some(value)) = (
            http::HeaderName::from_bytes(format!("x-amz-meta-{name}").as_bytes()),
            header_value(value),
        ) {
            headers.insert(name, value);
        }
    }
    for (name, value) in &object.headers {
        if let (Ok(name), Some(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            header_value(value),
        ) {
            headers.insert(name, value);
        }
    }
}

/// `GET /v1/objects/B/KEY` (and `HEAD`): the bytes, streamed; one
/// `Range`; `If-None-Match` answers 304.
pub async fn get_object(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((name, key)): Path<(String, String)>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    let (name, gate) = bucket_for(&gateway, &caller, &project, &name, Access::Read)?;
    let object = gateway.objects.head(&project, &name, &key).await?;
    if !gate.may_read(&key, &object_json(&object), gateway.clock.now()) {
        return Err(hidden(&key));
    }
    let mut response_headers = http::HeaderMap::new();
    object_headers(&object, &mut response_headers);
    let not_modified = headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|wanted| {
            wanted == "*"
                || wanted.split(',').any(|etag| {
                    etag.trim().trim_start_matches("W/").trim_matches('"') == object.etag
                })
        });
    if not_modified {
        return Ok((http::StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let range = range(&headers, object.size)?;
    let (status, span) = match &range {
        Some(range) => {
            if let Some(value) = header_value(&format!(
                "bytes {}-{}/{}",
                range.start,
                range.end - 1,
                object.size
            )) {
                response_headers.insert(http::header::CONTENT_RANGE, value);
            }
            (http::StatusCode::PARTIAL_CONTENT, range.clone())
        }
        None => (http::StatusCode::OK, 0..object.size),
    };
    response_headers.insert(
        http::header::CONTENT_TYPE,
        object
            .content_type
            .as_deref()
            .and_then(header_value)
            .unwrap_or(http::HeaderValue::from_static("application/octet-stream")),
    );
    response_headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(span.end - span.start),
    );
    let stream = gateway
        .objects
        .read(&object, span)
        .map_err(axum::Error::new);
    let body = axum::body::Body::from_stream(stream);
    Ok((status, response_headers, body).into_response())
}

pub async fn delete_object(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((name, key)): Path<(String, String)>,
    headers: http::HeaderMap,
) -> Result<http::StatusCode, ApiError> {
    let (name, gate) = bucket_for(&gateway, &caller, &project, &name, Access::Write)?;
    let mut condition = write_condition(&headers);
    if let Gate::Paths(..) = gate {
        let (current, exact) = ruled_target(&gateway, &project, &name, &key, &condition).await?;
        let Some(object) = current else {
            return Err(hidden(&key));
        };
        let (resource, now) = (object_json(&object), gateway.clock.now());
        if !gate.allows(
            Operation::Delete,
            &key,
            &resource,
            &serde_json::Value::Null,
            now,
        ) {
            // Unless it may read it, the caller learns nothing of it.
            if !gate.may_read(&key, &resource, now) {
                return Err(hidden(&key));
            }
            return Err(ApiError::NotAllowed(format!(
                "the rules of bucket {name} do not allow deleting {key:?}"
            )));
        }
        condition = exact;
    }
    gateway
        .objects
        .delete(&project, &name, &key, condition)
        .await?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `POST /v1/objects/B/KEY` with `{"method": "GET"|"PUT", "expires_in":
/// "1h"}`: a URL that does that, without a credential, until it expires or
/// the signer's key is revoked.
pub async fn presign(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((name, key)): Path<(String, String)>,
    request: Request,
) -> Result<Json<api_types::PresignedUrl>, ApiError> {
    let bucket = bucket_name(&name)?;
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    // The path as the gateway sees it after the project scope was taken
    // off: what the presigned request will be checked against.
    let path = request.uri().path().to_owned();
    let body = axum::body::to_bytes(request.into_body(), 64 << 10)
        .await
        .map_err(|_| ApiError::PayloadTooLarge("the body is larger than 64 KiB".to_owned()))?;
    let wanted: api_types::Presign = if body.is_empty() {
        api_types::Presign::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::bad_request(ErrorCode::InvalidBody, error.to_string()))?
    };
    let (method, access) = match wanted.method.as_deref().unwrap_or("GET") {
        "GET" => ("GET", Access::Read),
        "PUT" => ("PUT", Access::Write),
        other => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!("method must be GET or PUT, not {other:?}"),
            ));
        }
    };
    let gate = gate(
        &gateway,
        &caller,
        &project,
        ResourceKind::Bucket,
        bucket.as_str(),
        access,
    )?;
    // Under rules, a URL to read is made only for an object the caller
    // may read now; each use asks the rules again (a write's too, with
    // what it brings).
    if let (Gate::Paths(..), Access::Read) = (&gate, access) {
        let object = gateway.objects.head(&project, &bucket, &key).await?;
        if !gate.may_read(&key, &object_json(&object), gateway.clock.now()) {
            return Err(hidden(&key));
        }
    }
    let lifetime = match wanted.expires_in.as_deref() {
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|lifetime| !lifetime.is_zero() && *lifetime <= MAX_PRESIGN)
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    format!(
                        "expires_in must be a duration up to 7 days, like 15m or 1h, not {text:?}"
                    ),
                )
            })?,
        None => Duration::from_secs(3600),
    };
    let expires_at = gateway.clock.now() / 1000 + lifetime.as_secs() as i64;
    let access_key = caller.s3_access_key();
    let signature = gateway
        .auth
        .presign_signature(&access_key, method, &project, &path, expires_at)
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "the S3 secret of {access_key} cannot be opened (another server key?)"
            ))
        })?;
    // Address the project explicitly unless it is the signer's own.
    let own = caller.own_project();
    let public_path = if own == project {
        path.clone()
    } else {
        path.replacen("/v1/", &format!("/v1/projects/{project}/"), 1)
    };
    let full = format!(
        "{public_path}?{PRESIGN_KEY}={}&{PRESIGN_EXPIRES}={expires_at}&{PRESIGN_SIGNATURE}={signature}",
        urlencoding::encode(&access_key)
    );
    Ok(Json(api_types::PresignedUrl {
        method: method.to_owned(),
        url: format!("http://{host}{full}"),
        path: full,
        expires_at,
    }))
}
