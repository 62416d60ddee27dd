//! The control API under `/v1/`: functions, usage, invocations and logs of
//! one project (its `Scope`).
use crate::convert;
use crate::projects::Scope;
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use api_types::{FunctionList, InvocationList, LogPage, RollbackRequest, VersionList};
use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use domain::{ByteSize, FunctionConfig, FunctionName, UnixMillis, UsageFilter};
use std::collections::HashMap;
use std::time::Duration;

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

/// `GET /metrics`: with the admin token or the metrics token (unless the
/// server makes metrics public), as a scraper is configured.
pub async fn metrics(State(gateway): State<SharedGateway>, headers: http::HeaderMap) -> Response {
    if let crate::MetricsAccess::Token(expected) = &gateway.metrics_access {
        let sent = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let allowed = sent.is_some_and(|token| {
            auth::constant_time_eq(token.as_bytes(), expected.as_bytes())
                || matches!(gateway.auth.authenticate(token), Ok(auth::Caller::Admin))
        });
        if !allowed {
            return ApiError::NotAllowedUnauthenticated(
                "/metrics needs the metrics token (`metrics-token` in the data directory) or the admin token: send `Authorization: Bearer TOKEN`".to_owned(),
            )
            .into_response();
        }
    }
    let mut response = gateway.metrics.encode().into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}

pub(crate) fn function_name(name: &str) -> Result<FunctionName, ApiError> {
    FunctionName::new(name)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidName, error.to_string()))
}

pub async fn list_functions(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
) -> Result<Json<FunctionList>, ApiError> {
    let versions = gateway.functions.list(project.clone()).await?;
    Ok(Json(FunctionList {
        functions: versions.iter().map(convert::function_info).collect(),
    }))
}

pub async fn get_function(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(name): Path<String>,
) -> Result<Json<api_types::FunctionInfo>, ApiError> {
    let function = function_name(&name)?;
    let deployed = gateway
        .functions
        .get(&project.clone(), &function)
        .ok_or_else(|| ApiError::FunctionNotFound(format!("function {name:?} does not exist")))?;
    Ok(Json(convert::function_info(&deployed.version)))
}

pub async fn remove_function(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    crate::projects::require_manager(&caller, &project)?;
    gateway
        .functions
        .remove(project.clone(), function_name(&name)?)
        .await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub async fn list_versions(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(name): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    let function = function_name(&name)?;
    let versions = gateway
        .functions
        .versions(project.clone(), function.clone())
        .await?;
    let current = gateway
        .functions
        .get(&project.clone(), &function)
        .map(|deployed| deployed.version.version)
        .unwrap_or(0);
    Ok(Json(VersionList {
        current,
        versions: versions.iter().map(convert::function_info).collect(),
    }))
}

pub async fn rollback(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<api_types::FunctionInfo>, ApiError> {
    crate::projects::require_manager(&caller, &project)?;
    let request: RollbackRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("expected {{\"version\": N}}: {error}"),
        )
    })?;
    let deployed = gateway
        .functions
        .rollback(project.clone(), function_name(&name)?, request.version)
        .await?;
    Ok(Json(convert::function_info(&deployed.version)))
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(value).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidConfig,
            format!("{key}={value:?} is not a duration (like 10s or 500ms): {error}"),
        )
    })
}

/// Reads a deploy's settings from its query string (the one shape,
/// `api_types::DeploySettings`), and checks what the server checks of
/// them: the values together, and each trigger against what exists.
fn deploy_settings(
    pairs: &[(String, String)],
) -> Result<(domain::RuntimeKind, FunctionConfig), ApiError> {
    let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidConfig, message);
    let settings = api_types::DeploySettings::from_query(pairs).map_err(invalid)?;
    let kind = settings.runtime_kind().map_err(invalid)?;
    if kind == domain::RuntimeKind::Wasm && settings.has_process_settings() {
        return Err(invalid(
            "command, protocol, concurrency, min_instances, max_instances, idle_timeout, cpu and base are settings of process functions (runtime=process)".to_owned(),
        ));
    }
    let config = settings.to_config().map_err(invalid)?;
    config
        .validate()
        .map_err(|error| invalid(error.to_string()))?;
    for trigger in &config.triggers {
        events::validate_trigger(trigger)
            .map_err(|message| invalid(format!("trigger {:?}: {message}", trigger.to_text())))?;
    }
    Ok((kind, config))
}

pub async fn deploy(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    request: Request,
) -> Result<(http::StatusCode, Json<api_types::FunctionInfo>), ApiError> {
    crate::projects::require_manager(&caller, &project)?;
    let function = function_name(&name)?;
    let (kind, config) = deploy_settings(&pairs)?;
    let limit = gateway.max_upload_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the upload is larger than the limit of {}",
            ByteSize(limit)
        ))
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        crate::drain_in_background(request.into_body());
        return Err(too_large());
    }
    let code = axum::body::to_bytes(request.into_body(), limit as usize)
        .await
        .map_err(|error| {
            let too_big = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_big {
                too_large()
            } else {
                ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    format!("reading the upload failed: {error}"),
                )
            }
        })?;
    let deployed = gateway
        .functions
        .deploy(project.clone(), function, kind, code.to_vec(), config)
        .await?;
    Ok((
        http::StatusCode::CREATED,
        Json(convert::function_info(&deployed.version)),
    ))
}

/// Accepts Unix milliseconds or an RFC 3339 time.
pub(crate) fn parse_time(key: &str, value: &str) -> Result<UnixMillis, ApiError> {
    if let Ok(millis) = value.parse::<i64>() {
        return Ok(millis);
    }
    humantime::parse_rfc3339_weak(value)
        .map(|time| {
            time.duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis() as i64)
                .unwrap_or(0)
        })
        .map_err(|_| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("{key}={value:?} is not a time (Unix milliseconds or RFC 3339)"),
            )
        })
}

fn usage_filter(
    query: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<UsageFilter, ApiError> {
    crate::http_util::only_params(query, allowed)?;
    Ok(UsageFilter {
        since: query
            .get("since")
            .map(|value| parse_time("since", value))
            .transpose()?,
        until: query
            .get("until")
            .map(|value| parse_time("until", value))
            .transpose()?,
        function: query
            .get("function")
            .map(|value| function_name(value))
            .transpose()?,
        trigger: query
            .get("trigger")
            .map(|value| match value.as_str() {
                "http" | "queue" | "cron" | "docs" | "objects" | "async" => Ok(value.clone()),
                _ => Err(ApiError::bad_request(ErrorCode::InvalidQuery,
                    format!(
                        "trigger={value:?}: the triggers are http, queue, cron, docs, objects and async"
                    ),
                )),
            })
            .transpose()?,
    })
}

pub async fn usage(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api_types::Usage>, ApiError> {
    let filter = usage_filter(&query, &["since", "until", "function", "trigger"])?;
    let usage = gateway.records.usage(&project, &filter).await?;
    Ok(Json(convert::usage(&usage)))
}

pub async fn invocations(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<InvocationList>, ApiError> {
    let filter = usage_filter(&query, &["since", "until", "function", "trigger", "limit"])?;
    let limit = crate::http_util::page_limit(&query, 100, 100_000)?;
    let records = gateway.records.records(&project, &filter, limit).await?;
    Ok(Json(InvocationList {
        invocations: records.iter().map(convert::record).collect(),
    }))
}

pub async fn logs(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<LogPage>, ApiError> {
    for key in query.keys() {
        if !["after", "limit", "wait"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("unknown query parameter {key:?}"),
            ));
        }
    }
    let function = function_name(&name)?;
    let after = crate::http_util::log_position(&query, "after")?.unwrap_or(0);
    let limit = crate::http_util::page_limit(&query, 1000, 10_000)?;
    // `wait` long-polls: with nothing new, answer when lines arrive or the wait ends.
    let wait = query
        .get("wait")
        .map(|value| parse_duration("wait", value))
        .transpose()?
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(60));
    loop {
        let lines = gateway
            .records
            .logs(&project, &function, after, limit)
            .await?;
        if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = lines.last().map_or(after, |line| line.seq);
            return Ok(Json(LogPage {
                lines: lines.iter().map(convert::log_line).collect(),
                next,
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
