//! Key-value over REST: `/v1/kv/STORE/KEY` for the scope's project.
use crate::http_util::{Precondition, etag, only_params, precondition};
use crate::projects::Scope;
use crate::{ApiError, SharedGateway};
use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use domain::{StoreName, now_millis};
use std::collections::HashMap;
use store::{Condition, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Most keys one listing returns.
const MAX_LIST: u32 = 1000;

fn store_name(name: &str) -> Result<StoreName, ApiError> {
    StoreName::new(name).map_err(|error| ApiError::bad_request("invalid_name", error.to_string()))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("a key is 1 to {MAX_KEY_BYTES} bytes of UTF-8"),
        ));
    }
    Ok(())
}

/// `If-Match: "N"` (compare-and-swap) or `If-None-Match: *` (create only).
fn condition(headers: &http::HeaderMap) -> Result<Condition, ApiError> {
    Ok(match precondition(headers)? {
        Precondition::None => Condition::Always,
        Precondition::Version(version) => Condition::Version(version),
        Precondition::Absent => Condition::Absent,
        Precondition::Exists => {
            return Err(ApiError::bad_request(
                "invalid_header",
                "If-Match on a key must be an ETag this API gave out, like \"12\"",
            ));
        }
    })
}

pub async fn list_stores(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
) -> Result<Json<api_types::KvStoreList>, ApiError> {
    let stores = gateway.kv.kv_stores(&project).await?;
    Ok(Json(api_types::KvStoreList {
        stores: stores.iter().map(ToString::to_string).collect(),
    }))
}

pub async fn list_keys(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(store): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api_types::KvKeyList>, ApiError> {
    only_params(&query, &["prefix", "cursor", "limit"])?;
    let store = store_name(&store)?;
    let limit = crate::http_util::page_limit(&query, 100, MAX_LIST)?;
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let cursor = query.get("cursor").cloned();
    // One more than asked tells whether there is a next page.
    let mut keys = gateway
        .kv
        .kv_list(
            &project,
            &store,
            &prefix,
            cursor.as_deref(),
            limit + 1,
            now_millis(),
        )
        .await?;
    let cursor = if keys.len() > limit as usize {
        keys.truncate(limit as usize);
        keys.last().cloned()
    } else {
        None
    };
    Ok(Json(api_types::KvKeyList { keys, cursor }))
}

/// `DELETE /v1/kv/STORE`: every entry of the store, in one write.
pub async fn drop_store(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(store): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    let store = store_name(&store)?;
    if gateway.kv.kv_drop_store(&project, &store).await? {
        Ok(http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFoundCode {
            code: "store_not_found",
            message: format!("no store {store} in this project (or it is empty)"),
        })
    }
}

pub async fn get(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let store = store_name(&store)?;
    check_key(&key)?;
    // A point read on the key-value reader connection takes microseconds
    // and waits for no writer (WAL): cheaper inline than a thread hop.
    let entry = gateway
        .kv
        .kv_get(&project, &store, &key, now_millis())
        .await?
        .ok_or_else(|| ApiError::KeyNotFound(format!("no key {key:?} in this store")))?;
    let mut response = entry.value.into_response();
    let headers = response.headers_mut();
    headers.insert(http::header::ETAG, etag(entry.version));
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(expires_at) = entry.expires_at {
        headers.insert(
            "x-wok-expires-at",
            http::HeaderValue::from_str(&expires_at.to_string()).expect("digits"),
        );
    }
    Ok(response)
}

pub async fn put(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    only_params(&query, &["ttl"])?;
    let store = store_name(&store)?;
    check_key(&key)?;
    let condition = condition(request.headers())?;
    let ttl = query
        .get("ttl")
        .map(|ttl| {
            humantime::parse_duration(ttl)
                .ok()
                .filter(|ttl| !ttl.is_zero())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("ttl must be a positive duration like 30s or 1h, not {ttl:?}"),
                    )
                })
        })
        .transpose()?;
    let value = axum::body::to_bytes(request.into_body(), MAX_VALUE_BYTES)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "a value is at most {}",
                domain::ByteSize(MAX_VALUE_BYTES as u64)
            ))
        })?;
    let now = now_millis();
    let expires_at = ttl.map(|ttl| now.saturating_add(ttl.as_millis() as i64));
    let version = gateway
        .kv
        .kv_set(
            &project,
            &store,
            &key,
            value.to_vec(),
            expires_at,
            condition,
            now,
        )
        .await?;
    let mut response = Json(api_types::KvWritten { version }).into_response();
    response
        .headers_mut()
        .insert(http::header::ETAG, etag(version));
    Ok(response)
}

pub async fn delete(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path((store, key)): Path<(String, String)>,
    headers: http::HeaderMap,
) -> Result<http::StatusCode, ApiError> {
    let store = store_name(&store)?;
    check_key(&key)?;
    let condition = condition(&headers)?;
    gateway
        .kv
        .kv_delete(&project, &store, &key, condition, now_millis())
        .await?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `POST /v1/kv/STORE/KEY?increment=N`: atomic add.
pub async fn increment(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api_types::KvCounter>, ApiError> {
    only_params(&query, &["increment"])?;
    let store = store_name(&store)?;
    check_key(&key)?;
    let by = query
        .get("increment")
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "POST on a key needs ?increment=N (a signed 64-bit integer)",
            )
        })?
        .parse::<i64>()
        .map_err(|_| {
            ApiError::bad_request("invalid_query", "increment must be a signed 64-bit integer")
        })?;
    let value = gateway
        .kv
        .kv_increment(&project, &store, &key, by, now_millis())
        .await?;
    Ok(Json(api_types::KvCounter { value }))
}
