//! Key-value over REST: `/v1/kv/STORE/KEY` for the scope's project.
//!
//! Service keys reach every store. Public keys and app users reach a
//! store's keys as its access rule says: a preset, or per-user rules per
//! key pattern (`auth::rules::PathRules`), which see `resource` (`key`,
//! `version`, `size`, `expires_at`, and `value` when the stored value is
//! JSON) and, for writes, `request` (`key`, `size`, `value`, `ttl_s`, or
//! `increment`). Under rules a write is made on the condition that the
//! entry is still the one the rules saw, and a key the caller may not read
//! answers as a missing one.
use crate::http_util::{Precondition, etag, only_params, precondition};
use crate::projects::{Gate, Scope, gate, read_rule, require_service, write_rule};
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::Caller;
use auth::rules::Operation;
use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use data::MAX_LIST;
use domain::{Access, ResourceKind};
use serde_json::{Value, json};
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

/// What the caller may do in a store (its name checked first).
fn store_for(
    gateway: &SharedGateway,
    caller: &Caller,
    project: &domain::ProjectId,
    store: &str,
    access: Access,
) -> Result<Gate, ApiError> {
    data::KeyValue::store_name(store)?;
    gate(
        gateway,
        caller,
        project,
        ResourceKind::KvStore,
        store,
        access,
    )
}

/// A value as rules see it: its JSON, if it is JSON.
fn value_json(value: &[u8]) -> Value {
    serde_json::from_slice(value).unwrap_or(Value::Null)
}

/// An entry as rules see it (`resource`).
fn entry_json(key: &str, entry: &store::KvEntry) -> Value {
    json!({
        "key": key,
        "version": entry.version,
        "size": entry.value.len(),
        "expires_at": entry.expires_at,
        "value": value_json(&entry.value),
    })
}

fn missing(key: &str) -> ApiError {
    ApiError::KeyNotFound(format!("no key {key:?} in this store"))
}

/// The entry a ruled write replaces (`None`: there is none), with the
/// write's own condition checked against it, and the condition the write
/// is then made on: that the entry is still the one the rules saw.
async fn ruled_target(
    gateway: &SharedGateway,
    project: &domain::ProjectId,
    store: &str,
    key: &str,
    asked: Condition,
) -> Result<(Option<store::KvEntry>, Condition), ApiError> {
    let current = gateway.kv.get(project, store, key).await?;
    let holds = match (asked, &current) {
        (Condition::Always, _) => true,
        (Condition::Absent, current) => current.is_none(),
        (Condition::Version(version), Some(entry)) => version == entry.version,
        (Condition::Version(_), None) => false,
    };
    if !holds {
        return Err(store::StoreError::ConditionFailed.into());
    }
    let exact = match &current {
        Some(entry) => Condition::Version(entry.version),
        None => Condition::Absent,
    };
    Ok((current, exact))
}

/// Whether the rules let the caller write `key`, given what is there.
fn ruled_write(
    gate: &Gate,
    key: &str,
    current: Option<&store::KvEntry>,
    request: &Value,
    now: domain::UnixMillis,
) -> Result<(), ApiError> {
    let (op, resource) = match current {
        Some(entry) => (Operation::Update, entry_json(key, entry)),
        None => (Operation::Create, Value::Null),
    };
    if gate.allows(op, key, &resource, request, now) {
        Ok(())
    } else {
        Err(ApiError::NotAllowed(format!(
            "the rules of this store do not allow this write of {key:?}"
        )))
    }
}

pub async fn list_keys(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(store): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api_types::KvKeyList>, ApiError> {
    let gate = store_for(&gateway, &caller, &project, &store, Access::Read)?;
    only_params(&query, &["prefix", "cursor", "limit"])?;
    let limit = crate::http_util::page_limit(&query, 100, MAX_LIST)?;
    let prefix = query.get("prefix").map_or("", String::as_str);
    gate.allows_listing(prefix, gateway.clock.now())?;
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
    Extension(caller): Extension<Caller>,
    Path(store): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    require_service(&caller, &project)?;
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
    Extension(caller): Extension<Caller>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let gate = store_for(&gateway, &caller, &project, &store, Access::Read)?;
    let entry = gateway
        .kv
        .get(&project, &store, &key)
        .await?
        .ok_or_else(|| missing(&key))?;
    if !gate.may_read(&key, &entry_json(&key, &entry), gateway.clock.now()) {
        return Err(missing(&key));
    }
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
    Extension(caller): Extension<Caller>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    only_params(&query, &["ttl"])?;
    // Names and access first: a value is read only for a write that can
    // happen.
    let gate = store_for(&gateway, &caller, &project, &store, Access::Write)?;
    data::KeyValue::check_key(&key)?;
    let mut condition = condition(request.headers())?;
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
    if let Gate::Paths(..) = gate {
        let (current, exact) = ruled_target(&gateway, &project, &store, &key, condition).await?;
        let request = json!({
            "key": key,
            "size": value.len(),
            "value": value_json(&value),
            "ttl_s": ttl.map(|ttl| ttl.as_secs()),
        });
        ruled_write(&gate, &key, current.as_ref(), &request, gateway.clock.now())?;
        condition = exact;
    }
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
    Extension(caller): Extension<Caller>,
    Path((store, key)): Path<(String, String)>,
    headers: http::HeaderMap,
) -> Result<http::StatusCode, ApiError> {
    let gate = store_for(&gateway, &caller, &project, &store, Access::Write)?;
    data::KeyValue::check_key(&key)?;
    let mut condition = condition(&headers)?;
    if let Gate::Paths(..) = gate {
        // Under rules, a missing key and one the caller may not read
        // answer the same.
        let (current, exact) = ruled_target(&gateway, &project, &store, &key, condition).await?;
        let entry = current.ok_or_else(|| missing(&key))?;
        let (resource, now) = (entry_json(&key, &entry), gateway.clock.now());
        if !gate.allows(Operation::Delete, &key, &resource, &Value::Null, now) {
            if !gate.may_read(&key, &resource, now) {
                return Err(missing(&key));
            }
            return Err(ApiError::NotAllowed(format!(
                "the rules of this store do not allow deleting {key:?}"
            )));
        }
        condition = exact;
    }
    gateway.kv.delete(&project, &store, &key, condition).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `POST /v1/kv/STORE/KEY?increment=N`: atomic add.
pub async fn increment(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api_types::KvCounter>, ApiError> {
    let gate = store_for(&gateway, &caller, &project, &store, Access::Write)?;
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
    if let Gate::Paths(..) = gate {
        // The rules see the entry as it is before the increment (an
        // increment has no condition to hold it to that).
        data::KeyValue::check_key(&key)?;
        let current = gateway.kv.get(&project, &store, &key).await?;
        let request = json!({"key": key, "increment": by});
        ruled_write(&gate, &key, current.as_ref(), &request, gateway.clock.now())?;
    }
    let value = gateway.kv.increment(&project, &store, &key, by).await?;
    Ok(Json(api_types::KvCounter { value }))
}

/// `GET /v1/kv/STORE/_access`.
pub async fn get_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(store): Path<String>,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    data::KeyValue::store_name(&store)?;
    read_rule(&gateway, &caller, project, ResourceKind::KvStore, store).await
}

/// `PUT /v1/kv/STORE/_access`: a preset, or per-user rules per key
/// pattern.
pub async fn set_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(store): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    data::KeyValue::store_name(&store)?;
    write_rule(
        &gateway,
        &caller,
        project,
        ResourceKind::KvStore,
        store,
        &body,
    )
    .await
}
