//! Key-value over REST: `/v1/kv/STORE/KEY` for the scope's project.
use crate::http_util::{Precondition, etag, only_params, precondition};
use crate::projects::Scope;
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use data::MAX_LIST;
use std::collections::HashMap;
use store::{Condition, MAX_VALUE_BYTES};

/// `If-Match: "N"` (compare-and-swap) or `If-None-Match: *` (create only).
fn condition(headers: &http::HeaderMap) -> Result<Condition, ApiError> {
    Ok(match precondition(headers)? {
        Precondition::None => Condition::Always,
        Precondition::Version(version) => Condition::Version(version),
        Precondition::Absent => Condition::Absent,
        Precondition::Exists => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidHeader,
                "If-Match on a key must be an ETag this API gave out, like \"12\"",
            ));
        }
    })
}

pub async fn list_stores(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
) -> Result<Json<api_types::KvStoreList>, ApiError> {
    let stores = gateway.kv.stores(&project).await?;
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
    let limit = crate::http_util::page_limit(&query, 100, MAX_LIST)?;
    let prefix = query.get("prefix").map_or("", String::as_str);
    let cursor = query.get("cursor").map(String::as_str);
    let page = gateway
        .kv
        .list(&project, &store, prefix, cursor, limit)
        .await?;
    Ok(Json(api_types::KvKeyList {
        keys: page.keys,
        cursor: page.cursor,
    }))
}

/// `DELETE /v1/kv/STORE`: every entry of the store, in one write.
pub async fn drop_store(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(store): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    if gateway.kv.drop_store(&project, &store).await? {
        Ok(http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFoundCode {
            code: ErrorCode::StoreNotFound,
            message: format!("no store {store} in this project (or it is empty)"),
        })
    }
}

pub async fn get(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let entry = gateway
        .kv
        .get(&project, &store, &key)
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
    // Names first: a value is read only for a write that can happen.
    data::KeyValue::store_name(&store)?;
    data::KeyValue::check_key(&key)?;
    let condition = condition(request.headers())?;
    let ttl = query
        .get("ttl")
        .map(|ttl| {
            humantime::parse_duration(ttl)
                .ok()
                .filter(|ttl| !ttl.is_zero())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidQuery,
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
    let version = gateway
        .kv
        .set(&project, &store, &key, value.to_vec(), ttl, condition)
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
    let condition = condition(&headers)?;
    gateway.kv.delete(&project, &store, &key, condition).await?;
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
    let by = query
        .get("increment")
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                "POST on a key needs ?increment=N (a signed 64-bit integer)",
            )
        })?
        .parse::<i64>()
        .map_err(|_| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                "increment must be a signed 64-bit integer",
            )
        })?;
    let value = gateway.kv.increment(&project, &store, &key, by).await?;
    Ok(Json(api_types::KvCounter { value }))
}
