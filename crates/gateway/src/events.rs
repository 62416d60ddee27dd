//! Topics, triggers and dead letters over REST, for the scope's project:
//! `POST /v1/topics/TOPIC` publishes, `GET /v1/topics/TOPIC/events` reads
//! (and replays), `GET /v1/triggers` shows where each trigger's delivery
//! stands, `/v1/events/dead` lists, re-drives and purges dead letters;
//! topic access rules; and the asynchronous branch of the function route
//! (`Prefer: respond-async`): the request is queued durably as an event
//! (a bounded queue per function, in requests and bytes: 429 past it) and
//! answered 202 with its id. An `Idempotency-Key` is scoped to the
//! caller's `Authorization` and bound to the request it came with (method,
//! path and body): the same key on another request is refused.
use crate::control::{function_name, parse_time};
use crate::http_util::{log_position, only_params, page_limit};
use crate::projects::Scope;
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use api_types::{
    Count, DeadLetter, DeadLetterFilter, DeadLetterPage, EventInfo, EventPage, PublishBatch,
    Published, PublishedList, ReplayRequest, Replayed, TriggerInfo, TriggerList,
};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use base64::Engine;
use domain::{TopicName, TriggerName, topic_stream};
use std::collections::HashMap;
use store::events::{
    Event, FailedFilter, MAX_EVENT_BYTES, MAX_EVENT_KEY_BYTES, MessageError, NewEvent,
    check_messages,
};

/// Largest body of a batch publish (up to 1,000 messages).
pub(crate) const MAX_BATCH_BODY: usize = 16 << 20;

/// Most events or dead letters one page returns.
const MAX_PAGE: u32 = 1000;

fn topic_name(name: &str) -> Result<TopicName, ApiError> {
    TopicName::new(name)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidName, error.to_string()))
}

fn check(messages: &[NewEvent]) -> Result<(), ApiError> {
    check_messages(messages).map_err(|error| match error {
        MessageError::Invalid(message) => ApiError::bad_request(ErrorCode::InvalidEvent, message),
        MessageError::TooLarge(message) => ApiError::PayloadTooLarge(message),
    })
}

pub(crate) fn event_info(event: &Event) -> EventInfo {
    let (data, data_base64) = match std::str::from_utf8(&event.data) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&event.data)),
        ),
    };
    EventInfo {
        seq: event.seq,
        id: event.id.clone(),
        source: triggers::source(&event.project, &event.stream),
        kind: event.kind.clone(),
        subject: event.subject.clone(),
        key: event.key.clone(),
        time: event.time,
        content_type: event.content_type.clone(),
        data,
        data_base64,
        authtype: event.actor.as_ref().map(|actor| actor.kind.clone()),
        authid: event.actor.as_ref().and_then(|actor| actor.id.clone()),
    }
}

fn published(events: Vec<Event>) -> Vec<Published> {
    events
        .into_iter()
        .map(|event| Published {
            id: event.id,
            seq: event.seq,
            time: event.time,
        })
        .collect()
}

/// `POST /v1/topics/TOPIC[?key=K&subject=S]`: the body is the message, its
/// `Content-Type` the message's.
/// A topic's event as per-user rules see it: `resource` of a `read` rule
/// (who receives it), `request` of a `create` rule (who publishes it).
/// `data` is the payload's JSON (null when it is not JSON).
pub(crate) fn event_json(
    key: Option<&str>,
    subject: Option<&str>,
    content_type: Option<&str>,
    data: &[u8],
) -> serde_json::Value {
    serde_json::json!({
        "key": key,
        "subject": subject,
        "content_type": content_type,
        "data": serde_json::from_slice::<serde_json::Value>(data).unwrap_or_default(),
    })
}

/// `POST /v1/topics/TOPIC`: one message. Service keys publish to every
/// topic; public keys and app users as the topic's rule says
/// (`public-read-write`, or per-user `create` rules).
pub async fn publish(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<auth::Caller>,
    Path(topic): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<(http::StatusCode, Json<Published>), ApiError> {
    let topic = topic_name(&topic)?;
    only_params(&query, &["key", "subject"])?;
    let refused = || ApiError::NotAllowed(format!("this key may not publish to topic {topic:?}"));
    let decision = gateway.auth.decide(
        &caller,
        &project,
        domain::ResourceKind::Topic,
        topic.as_str(),
        domain::Access::Write,
    );
    // Access first: the body is read only for a caller who may publish.
    if matches!(
        decision,
        auth::Decision::Paths(..) | auth::Decision::Nothing
    ) {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let body = axum::body::to_bytes(body, store::events::MAX_EVENT_BYTES)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "a message is at most {}",
                domain::ByteSize(store::events::MAX_EVENT_BYTES as u64)
            ))
        })?;
    match decision {
        auth::Decision::Rules(rules, subject) => {
            let request = event_json(
                query.get("key").map(String::as_str),
                query.get("subject").map(String::as_str),
                headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok()),
                &body,
            );
            let now = gateway.clock.now();
            let (null, op) = (serde_json::Value::Null, auth::rules::Operation::Create);
            if !rules.allows_with(op, &subject, &null, &request, None, now) {
                return Err(refused());
            }
        }
        auth::Decision::All | auth::Decision::Paths(..) | auth::Decision::Nothing => {}
    }
    let key = query.get("key").cloned();
    let subject = query.get("subject").cloned();
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let event = NewEvent {
        stream: topic_stream(&topic),
        kind: "wok.queue.message".to_owned(),
        subject,
        key,
        content_type,
        data: body.to_vec(),
        origin: None,
    };
    check(std::slice::from_ref(&event))?;
    let events = gateway.events.publish(&project, vec![event]).await?;
    let first = published(events)
        .pop()
        .ok_or_else(|| ApiError::Internal("a publish returned no event".to_owned()))?;
    Ok((http::StatusCode::CREATED, Json(first)))
}

/// `POST /v1/topics/TOPIC/_batch`: several messages, in one write.
pub async fn publish_batch(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(topic): Path<String>,
    request: axum::extract::Request,
) -> Result<(http::StatusCode, Json<PublishedList>), ApiError> {
    let topic = topic_name(&topic)?;
    let invalid = |error: String| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("expected {{\"messages\": [{{\"data\": ...}}, ...]}}: {error}"),
        )
    };
    let (batch, _permit): (PublishBatch, _) = crate::http_util::read_json_body(
        &gateway,
        request,
        MAX_BATCH_BODY,
        || Err(invalid("the body is empty".to_owned())),
        |error| {
            ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!("expected {{\"messages\": [{{\"data\": ...}}, ...]}}: {error}"),
            )
        },
    )
    .await?;
    let mut events = Vec::with_capacity(batch.messages.len());
    for (at, message) in batch.messages.into_iter().enumerate() {
        let invalid = |message: String| {
            ApiError::bad_request(ErrorCode::InvalidEvent, format!("message {at}: {message}"))
        };
        let (data, content_type) = match (message.data, message.data_base64) {
            (Some(data), None) => (
                data.to_string().into_bytes(),
                Some("application/json".to_owned()),
            ),
            (None, Some(encoded)) => (
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|error| invalid(format!("data_base64 is not base64: {error}")))?,
                message.content_type,
            ),
            (None, None) => (Vec::new(), message.content_type),
            (Some(_), Some(_)) => {
                return Err(invalid("give data or data_base64, not both".to_owned()));
            }
        };
        events.push(NewEvent {
            stream: topic_stream(&topic),
            kind: "wok.queue.message".to_owned(),
            subject: message.subject,
            key: message.key,
            content_type,
            data,
            origin: None,
        });
    }
    check(&events)?;
    let events = gateway.events.publish(&project, events).await?;
    Ok((
        http::StatusCode::CREATED,
        Json(PublishedList {
            events: published(events),
        }),
    ))
}

/// `GET /v1/topics/TOPIC/events?after=SEQ|since=TIME&limit=N`: the topic's
/// events in order, from a position or a time.
pub async fn read_topic(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(topic): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<EventPage>, ApiError> {
    let topic = topic_name(&topic)?;
    only_params(&query, &["after", "since", "limit"])?;
    let limit = page_limit(&query, 100, MAX_PAGE)?;
    let stream = topic_stream(&topic);
    let store = &gateway.events;
    let after = match (log_position(&query, "after")?, query.get("since")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                "give after or since, not both",
            ));
        }
        (Some(after), None) => after,
        (None, Some(since)) => {
            let since = parse_time("since", since)?;
            store.position_at(&project, &stream, since).await?
        }
        (None, None) => 0,
    };
    let events = store.events(&project, &stream, after, limit).await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|event| event.seq))
        .flatten();
    Ok(Json(EventPage {
        events: events.iter().map(event_info).collect(),
        next,
    }))
}

/// `GET /v1/triggers`: every trigger of the project's live functions.
pub async fn list_triggers(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
) -> Result<Json<TriggerList>, ApiError> {
    let mut live: Vec<_> = gateway
        .functions
        .live()
        .into_iter()
        .filter(|deployed| deployed.version.project == project)
        .collect();
    live.sort_by(|a, b| a.version.function.cmp(&b.version.function));
    let store = &gateway.events;
    let counts = store.failure_counts(&project).await?;
    let mut triggers = Vec::new();
    for deployed in live {
        let function = &deployed.version.function;
        let subscriptions = store.subscriptions(&project, function).await?;
        for spec in &deployed.version.config.all_triggers() {
            let cursor = subscriptions
                .iter()
                .find(|subscription| subscription.trigger == spec.name)
                .map_or(0, |subscription| subscription.cursor);
            let (retrying, dead) = counts
                .iter()
                .find(|(f, t, _, _)| f == function && *t == spec.name)
                .map_or((0, 0), |(_, _, waiting, dead)| (*waiting, *dead));
            triggers.push(TriggerInfo {
                function: function.to_string(),
                trigger: spec.name.to_string(),
                spec: spec.to_text(),
                cursor,
                retrying,
                dead,
            });
        }
    }
    Ok(Json(TriggerList { triggers }))
}

/// `POST /v1/functions/NAME/triggers/TRIGGER/_replay` `{"from": TIME}`.
pub async fn replay(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path((name, trigger)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Replayed>, ApiError> {
    let function = function_name(&name)?;
    let request: ReplayRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("expected {{\"from\": TIME}}: {error}"),
        )
    })?;
    let from = parse_time("from", &request.from)?;
    let target =
        triggers::target(&gateway.functions, &project, &function, &trigger).ok_or_else(|| {
            ApiError::NotFoundCode {
                code: ErrorCode::TriggerNotFound,
                message: format!("function {name:?} has no trigger {trigger:?}"),
            }
        })?;
    let cursor = gateway
        .dispatcher
        .replay(&target, from)
        .await?
        .ok_or_else(|| ApiError::NotFoundCode {
            code: ErrorCode::TriggerNotFound,
            message: format!("function {name:?} has no trigger {trigger:?}"),
        })?;
    Ok(Json(Replayed { cursor }))
}

fn failed_filter(filter: DeadLetterFilter) -> Result<FailedFilter, ApiError> {
    Ok(FailedFilter {
        function: filter.function.as_deref().map(function_name).transpose()?,
        trigger: filter
            .trigger
            .map(|trigger| {
                TriggerName::new(trigger).map_err(|error| {
                    ApiError::bad_request(ErrorCode::InvalidName, error.to_string())
                })
            })
            .transpose()?,
        seq: filter.seq,
    })
}

fn filter_from_query(query: &HashMap<String, String>) -> Result<FailedFilter, ApiError> {
    failed_filter(DeadLetterFilter {
        function: query.get("function").cloned(),
        trigger: query.get("trigger").cloned(),
        seq: log_position(query, "seq")?,
    })
}

/// `GET /v1/events/dead?function=F&trigger=T&after=SEQ&limit=N`.
pub async fn dead_letters(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    only_params(&query, &["function", "trigger", "seq", "after", "limit"])?;
    let filter = filter_from_query(&query)?;
    let after = log_position(&query, "after")?.unwrap_or(0);
    let limit = page_limit(&query, 100, MAX_PAGE)?;
    let dead = gateway
        .events
        .dead_letters(&project, &filter, after, limit)
        .await?;
    let next = (dead.len() == limit as usize)
        .then(|| dead.last().map(|failed| failed.event.seq))
        .flatten();
    Ok(Json(DeadLetterPage {
        dead_letters: dead
            .iter()
            .map(|failed| DeadLetter {
                function: failed.function.to_string(),
                trigger: failed.trigger.to_string(),
                attempts: failed.attempts,
                error: failed.error.clone(),
                first_failed_at: failed.first_failed_at,
                died_at: failed.next_at,
                event: event_info(&failed.event),
            })
            .collect(),
        next,
    }))
}

fn filter_from_body(body: &[u8]) -> Result<FailedFilter, ApiError> {
    let filter: DeadLetterFilter = if body.is_empty() {
        DeadLetterFilter::default()
    } else {
        serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(ErrorCode::InvalidBody,
                format!("expected {{\"function\": F, \"trigger\": T, \"seq\": N}} (each optional): {error}"),
            )
        })?
    };
    failed_filter(filter)
}

/// `POST /v1/events/dead/_redrive` `{"function", "trigger", "seq"}` (each
/// optional): the dead letters chosen are delivered again.
pub async fn redrive(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    body: axum::body::Bytes,
) -> Result<Json<Count>, ApiError> {
    let filter = filter_from_body(&body)?;
    let count = gateway.events.redrive(&project, filter).await?;
    Ok(Json(Count { count }))
}

/// `DELETE /v1/events/dead?function=F&trigger=T&seq=N`.
pub async fn purge_dead(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Count>, ApiError> {
    only_params(&query, &["function", "trigger", "seq"])?;
    let filter = filter_from_query(&query)?;
    let count = gateway.events.purge_dead(&project, filter).await?;
    Ok(Json(Count { count }))
}

/// Most bytes of an asynchronous invocation's request body.
pub const MAX_ASYNC_REQUEST: usize = MAX_EVENT_BYTES;

/// `POST /fn/NAME/...` with `Prefer: respond-async`: the request is queued
/// durably and answered `202` with its id; an `Idempotency-Key` makes a
/// repeated call return the first one's id instead of queuing again.
pub(crate) async fn invoke_async(
    gateway: &SharedGateway,
    project: domain::ProjectId,
    function: domain::FunctionName,
    parts: http::request::Parts,
    body: axum::body::Body,
    guest_path: String,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "an asynchronous invocation's request body is at most {MAX_ASYNC_REQUEST} bytes"
        ))
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_ASYNC_REQUEST as u64) {
        crate::drain_in_background(body);
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_ASYNC_REQUEST)
        .await
        .map_err(|_| too_large())?;
    let idempotency_key = parts
        .headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|key| !key.is_empty() && key.len() <= MAX_EVENT_KEY_BYTES)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request(ErrorCode::InvalidHeader,
                        format!("Idempotency-Key must be 1 to {MAX_EVENT_KEY_BYTES} visible ASCII characters"),
                    )
                })
        })
        .transpose()?;
    let mut headers = parts.headers.clone();
    for hop in [
        "prefer",
        "idempotency-key",
        "connection",
        "content-length",
        "transfer-encoding",
    ] {
        headers.remove(hop);
    }
    let request = triggers::async_request(&function, &parts.method, &guest_path, &headers, &body);
    // An idempotency key is the caller's own: scoped to the credential it
    // sent (whatever it is: a wok key, or the function's own tokens), and
    // bound to what it asked.
    let caller = parts.headers.get(http::header::AUTHORIZATION).map_or_else(
        || "anonymous".to_owned(),
        |value| digest(&[value.as_bytes()]),
    );
    let fingerprint = digest(&[
        parts.method.as_str().as_bytes(),
        guest_path.as_bytes(),
        &body,
    ]);
    let request = store::events::AsyncRequest {
        request,
        idempotency_key: idempotency_key.map(|key| format!("{caller}:{key}")),
        fingerprint,
        limit: Some(gateway.async_queue),
    };
    let (invocation, queued) = match gateway
        .events
        .enqueue_async(&project, &function, request)
        .await
    {
        Ok(queued) => queued,
        Err(error @ store::StoreError::AsyncQueueFull { .. }) => {
            gateway.metrics.async_refused(&project, &function);
            return Err(ApiError::Overloaded(format!("{error}; retry later")));
        }
        Err(error) => return Err(error.into()),
    };
    let url = format!("/v1/projects/{project}/invocations/{}", invocation.id);
    let accepted = api_types::AsyncAccepted {
        id: invocation.id.clone(),
        status: invocation.status.as_str().to_owned(),
        url: url.clone(),
    };
    let status = if queued {
        http::StatusCode::ACCEPTED
    } else {
        http::StatusCode::OK
    };
    let mut response = (status, Json(accepted)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = http::HeaderValue::from_str(&url) {
        headers.insert(http::header::LOCATION, location);
    }
    headers.insert(
        "preference-applied",
        http::HeaderValue::from_static("respond-async"),
    );
    Ok(response)
}

/// SHA-256 over `parts`, each length-prefixed, in hex (32 characters).
fn digest(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// `GET /v1/invocations/ID`: an asynchronous invocation's status and response.
pub async fn async_invocation(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<api_types::AsyncInvocationInfo>, ApiError> {
    let invocation = gateway
        .events
        .async_invocation(&project, &id)
        .await?
        .ok_or_else(|| ApiError::NotFoundCode {
            code: ErrorCode::InvocationNotFound,
            message: format!("no asynchronous invocation {id:?} in this project"),
        })?;
    let response = invocation.response.map(|(status, headers, body)| {
        let (body, body_base64) = match String::from_utf8(body) {
            Ok(text) => (Some(text), None),
            Err(error) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(error.into_bytes())),
            ),
        };
        api_types::AsyncResponse {
            status,
            headers,
            body,
            body_base64,
        }
    });
    Ok(Json(api_types::AsyncInvocationInfo {
        id: invocation.id,
        function: invocation.function.to_string(),
        status: invocation.status.as_str().to_owned(),
        attempts: invocation.attempts,
        created_at: invocation.created_at,
        finished_at: invocation.finished_at,
        response,
        error: invocation.error,
    }))
}

/// `GET /v1/topics/TOPIC/_access`.
pub async fn get_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<auth::Caller>,
    Path(topic): Path<String>,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    let topic = topic_name(&topic)?;
    crate::projects::read_rule(
        &gateway,
        &caller,
        project,
        domain::ResourceKind::Topic,
        topic.to_string(),
    )
    .await
}

/// `PUT /v1/topics/TOPIC/_access`: `public-read` lets public keys
/// subscribe to the topic over `/v1/realtime`.
pub async fn set_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<auth::Caller>,
    Path(topic): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    let topic = topic_name(&topic)?;
    crate::projects::write_rule(
        &gateway,
        &caller,
        project,
        domain::ResourceKind::Topic,
        topic.to_string(),
        &body,
    )
    .await
}
