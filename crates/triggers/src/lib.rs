//! Triggers reach functions as HTTP: an event becomes a `POST /` to the
//! function carrying a CloudEvents 1.0 envelope in binary mode (`ce-*`
//! headers, the payload as the body), or, for a batch, a JSON array of
//! events (`application/cloudevents-batch+json`). A 2xx acknowledges;
//! another status, a trap or a timeout is a failure the `events` service
//! retries.
//!
//! Layer: front. Turns `events` deliveries into invocations of the live
//! version (through `functions` and the `invoke` traits, never a runtime),
//! metered and recorded like HTTP requests but with the trigger's kind.
//!
//! An asynchronous invocation's event holds the request itself
//! ([`async_request`]); delivering it replays that request. Each attempt
//! is recorded (status, headers, the start of the body), so
//! `GET /v1/invocations/ID` can tell where it stands, and the final
//! outcome is sent to the topic or function the function's configuration
//! names (`on_success`, `on_failure`).
//!
//! [`Reconciler`] keeps the dispatcher's workers in step with the
//! registry: it watches `Functions::watch` and hands the dispatcher every
//! live trigger after each deploy, rollback and removal. [`source`] names
//! an event's CloudEvents `source`.

use domain::{Destination, FunctionName, ProjectId, TriggerSource};
use events::{BoxFuture, Deliver, Dispatcher, Target};
use functions::Functions;
use http_body_util::BodyExt;
use invoke::BoxError;
use std::sync::Arc;
use store::EventStore;
use store::events::{AsyncAttempt, Event, NewEvent};

/// The CloudEvents batch content type.
const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// Most bytes of a failed delivery's response kept as its error.
const ERROR_SNIPPET: usize = 512;

/// Most bytes of an asynchronous invocation's response kept.
const MAX_ASYNC_RESPONSE: usize = 1 << 20;

/// Delivers events by invoking functions.
#[derive(Clone)]
pub struct FunctionDeliver {
    pub functions: Arc<Functions>,
    /// Where asynchronous invocations record their outcome and send it on.
    pub events: Arc<dyn EventStore>,
}

/// The event that queues an asynchronous invocation: the request itself.
pub fn async_request(
    function: &FunctionName,
    method: &http::Method,
    path_and_query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> NewEvent {
    use base64::Engine;
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let request = serde_json::json!({
        "method": method.as_str(),
        "path": path_and_query,
        "headers": headers,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
    });
    NewEvent {
        stream: domain::async_stream(function),
        kind: "wok.invocation.requested".to_owned(),
        subject: Some(path_and_query.to_owned()),
        key: None,
        content_type: Some("application/json".to_owned()),
        data: request.to_string().into_bytes(),
        origin: None,
    }
}

/// The request an asynchronous invocation's event holds.
fn decode_async(event: &Event) -> Result<http::Request<bytes::Bytes>, String> {
    use base64::Engine;
    let corrupt = |what: &str| format!("the queued request is unreadable: {what}");
    let request: serde_json::Value =
        serde_json::from_slice(&event.data).map_err(|error| corrupt(&error.to_string()))?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(request["body_base64"].as_str().unwrap_or_default())
        .map_err(|error| corrupt(&error.to_string()))?;
    let mut builder = http::Request::builder()
        .method(request["method"].as_str().unwrap_or("POST"))
        .uri(format!(
            "http://localhost{}",
            request["path"].as_str().unwrap_or("/")
        ));
    for pair in request["headers"].as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) {
            builder = builder.header(name, value);
        }
    }
    builder
        .header("x-wok-async-id", &event.id)
        .body(bytes::Bytes::from(body))
        .map_err(|error| corrupt(&error.to_string()))
}

/// The outcome record sent to a destination.
fn outcome_record(
    target: &Target,
    event: &Event,
    succeeded: bool,
    attempts: u32,
    response: Option<&Answer>,
    error: Option<&str>,
) -> serde_json::Value {
    let request: serde_json::Value = serde_json::from_slice(&event.data).unwrap_or_default();
    serde_json::json!({
        "id": event.id,
        "function": target.function.as_str(),
        "status": if succeeded { "succeeded" } else { "failed" },
        "attempts": attempts,
        "request": request,
        "response": response.map(|(status, _, body)| serde_json::json!({
            "status": status,
            "body": String::from_utf8_lossy(body),
        })),
        "error": error,
    })
}

/// The CloudEvents `source` of an event: the topic, collection, bucket or
/// schedule it comes from.
pub fn source(project: &ProjectId, stream: &str) -> String {
    let path = match stream.split_once('/') {
        Some(("topic", topic)) => format!("topics/{topic}"),
        Some(("docs", collection)) => format!("collections/{collection}"),
        Some(("objects", bucket)) => format!("buckets/{bucket}"),
        Some(("cron", rest)) => match rest.split_once('/') {
            Some((function, trigger)) => format!("functions/{function}/triggers/{trigger}"),
            None => rest.to_owned(),
        },
        _ => stream.to_owned(),
    };
    format!("/projects/{project}/{path}")
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The CloudEvents extension attributes that say who made the write an
/// event logs (as Firebase's `authtype` and `authid`): how it proved who
/// it is (`user`, `service-key`, `public-key`, `admin`, `function`,
/// `none`), and the user's or key's id.
const AUTH_TYPE: &str = "authtype";
const AUTH_ID: &str = "authid";

/// An event in CloudEvents' JSON format (for batches).
fn structured(event: &Event) -> serde_json::Value {
    let mut json = serde_json::json!({
        "specversion": "1.0",
        "id": event.id,
        "source": source(&event.project, &event.stream),
        "type": event.kind,
        "time": rfc3339(event.time),
    });
    if let Some(subject) = &event.subject {
        json["subject"] = subject.clone().into();
    }
    if let Some(key) = &event.key {
        json["partitionkey"] = key.clone().into();
    }
    if let Some(content_type) = &event.content_type {
        json["datacontenttype"] = content_type.clone().into();
    }
    if let Some(actor) = &event.actor {
        json[AUTH_TYPE] = actor.kind.clone().into();
        if let Some(id) = &actor.id {
            json[AUTH_ID] = id.clone().into();
        }
    }
    let is_json = event
        .content_type
        .as_deref()
        .is_some_and(|content_type| content_type.contains("json"));
    match serde_json::from_slice::<serde_json::Value>(&event.data) {
        Ok(data) if is_json => json["data"] = data,
        _ => match std::str::from_utf8(&event.data) {
            Ok(text) if !is_json => json["data"] = text.into(),
            _ => {
                use base64::Engine;
                json["data_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(&event.data)
                    .into();
            }
        },
    }
    json
}

/// The request a delivery makes.
fn request(
    target: &Target,
    events: &[Event],
    attempt: u32,
) -> Result<http::Request<bytes::Bytes>, http::Error> {
    let builder = http::Request::builder()
        .method(http::Method::POST)
        .uri("http://localhost/")
        .header("ce-woktrigger", target.trigger.name.as_str())
        .header("ce-wokattempt", attempt.to_string());
    match events {
        [event] => {
            let mut builder = builder
                .header("ce-specversion", "1.0")
                .header("ce-id", &event.id)
                .header("ce-source", source(&event.project, &event.stream))
                .header("ce-type", &event.kind)
                .header("ce-time", rfc3339(event.time));
            if let Some(subject) = &event.subject {
                builder = builder.header("ce-subject", subject);
            }
            if let Some(key) = &event.key {
                builder = builder.header("ce-partitionkey", key);
            }
            if let Some(actor) = &event.actor {
                builder = builder.header(format!("ce-{AUTH_TYPE}"), &actor.kind);
                if let Some(id) = &actor.id {
                    builder = builder.header(format!("ce-{AUTH_ID}"), id);
                }
            }
            if let Some(content_type) = &event.content_type {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
            }
            builder.body(bytes::Bytes::from(event.data.clone()))
        }
        events => {
            let batch: Vec<serde_json::Value> = events.iter().map(structured).collect();
            builder
                .header(http::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
                .body(bytes::Bytes::from(
                    serde_json::Value::Array(batch).to_string(),
                ))
        }
    }
}

/// What an invocation answered: status, headers, and the start of the body.
type Answer = store::events::StoredResponse;

/// Why an answer is not an acknowledgement (`None`: a 2xx, it is one):
/// its status and the start of its body.
fn refusal((status, _, body): &Answer) -> Option<String> {
    if (200..300).contains(status) {
        return None;
    }
    let reason = http::StatusCode::from_u16(*status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_SNIPPET)]);
    Some(format!(
        "the function answered {status} {reason}: {}",
        text.trim()
    ))
}

impl FunctionDeliver {
    /// Invokes the live version on `request`; reads the response to its
    /// end (the invocation, and its record, end with it), keeping up to
    /// `keep` bytes of the body.
    async fn invoke(
        &self,
        target: &Target,
        request: http::Request<bytes::Bytes>,
        keep: usize,
    ) -> Result<Answer, String> {
        let request = request.map(|body| {
            http_body_util::Full::new(body)
                .map_err(|never| -> BoxError { match never {} })
                .boxed_unsync()
        });
        let response = self
            .functions
            .invoke(
                &target.project,
                &target.function,
                request,
                target.trigger.kind(),
            )
            .await
            .map_err(|error| error.to_string())?
            .response;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| format!("the response failed: {error}"))?;
            if let Some(data) = frame.data_ref()
                && kept.len() < keep
            {
                let room = keep - kept.len();
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok((status, headers, kept))
    }

    /// Sends an asynchronous invocation's outcome on, as its function's
    /// configuration says.
    async fn send_outcome(
        &self,
        target: &Target,
        event: &Event,
        succeeded: bool,
        attempts: u32,
        response: Option<&Answer>,
        error: Option<&str>,
    ) {
        let Some(deployed) = self.functions.get(&target.project, &target.function) else {
            return;
        };
        let config = &deployed.version.config.async_invocation;
        let destination = if succeeded {
            &config.on_success
        } else {
            &config.on_failure
        };
        let Some(destination) = destination else {
            return;
        };
        let record = outcome_record(target, event, succeeded, attempts, response, error);
        let kind = if succeeded {
            "wok.invocation.succeeded"
        } else {
            "wok.invocation.failed"
        };
        let sent = match destination {
            Destination::Topic(topic) => {
                let message = NewEvent {
                    stream: domain::topic_stream(topic),
                    kind: kind.to_owned(),
                    subject: Some(event.id.clone()),
                    key: None,
                    content_type: Some("application/json".to_owned()),
                    data: record.to_string().into_bytes(),
                    origin: Some(target.function.clone()),
                };
                self.events
                    .publish(&target.project, vec![message])
                    .await
                    .map(|_| ())
            }
            Destination::Function(function) => {
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                headers.insert("ce-type", http::HeaderValue::from_static(kind));
                let request = async_request(
                    function,
                    &http::Method::POST,
                    "/",
                    &headers,
                    record.to_string().as_bytes(),
                );
                // Not bounded: the outcomes come at the pace of the
                // sender's own (bounded) queue.
                let request = store::events::AsyncRequest {
                    request,
                    idempotency_key: None,
                    fingerprint: String::new(),
                    limit: None,
                };
                self.events
                    .enqueue_async(&target.project, function, request)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(error) = sent {
            tracing::warn!(
                "{}/{}: sending the outcome of {} to {} failed: {error}",
                target.project,
                target.function,
                event.id,
                destination.to_text()
            );
        }
    }

    async fn deliver_async(
        &self,
        target: &Target,
        event: Event,
        attempt: u32,
    ) -> Result<(), String> {
        let request = decode_async(&event)?;
        let result = self.invoke(target, request, MAX_ASYNC_RESPONSE).await;
        let (succeeded, response, error) = match result {
            Ok(answer) => match refusal(&answer) {
                None => (true, Some(answer), None),
                Some(error) => (false, Some(answer), Some(error)),
            },
            Err(error) => (false, None, Some(error)),
        };
        let attempt_record = AsyncAttempt {
            attempts: attempt,
            succeeded,
            failed: false,
            response: response.clone(),
            error: error.clone(),
        };
        self.events
            .record_async(&target.project, &event.id, attempt_record)
            .await
            .map_err(|error| format!("recording the outcome: {error}"))?;
        if succeeded {
            self.send_outcome(target, &event, true, attempt, response.as_ref(), None)
                .await;
            Ok(())
        } else {
            Err(error.unwrap_or_default())
        }
    }
}

impl Deliver for FunctionDeliver {
    fn deliver(
        &self,
        target: Arc<Target>,
        events: Vec<Event>,
        attempt: u32,
    ) -> BoxFuture<Result<(), String>> {
        let this = self.clone();
        Box::pin(async move {
            if matches!(target.trigger.source, TriggerSource::Async) {
                let event = events
                    .into_iter()
                    .next()
                    .ok_or_else(|| "no event".to_owned())?;
                return this.deliver_async(&target, event, attempt).await;
            }
            let request = request(&target, &events, attempt)
                .map_err(|error| format!("the event cannot be sent as HTTP: {error}"))?;
            let answer = this.invoke(&target, request, ERROR_SNIPPET).await?;
            match refusal(&answer) {
                None => Ok(()),
                Some(error) => Err(error),
            }
        })
    }

    fn dead_lettered(
        &self,
        target: Arc<Target>,
        event: Event,
        attempts: u32,
        error: String,
    ) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            if !matches!(target.trigger.source, TriggerSource::Async) {
                return;
            }
            let attempt = AsyncAttempt {
                attempts,
                succeeded: false,
                failed: true,
                response: None,
                error: Some(error.clone()),
            };
            if let Err(failure) = this
                .events
                .record_async(&target.project, &event.id, attempt)
                .await
            {
                tracing::warn!("recording the failure of {}: {failure}", event.id);
            }
            this.send_outcome(&target, &event, false, attempts, None, Some(&error))
                .await;
        })
    }
}

/// The triggers of every live function.
pub fn targets(functions: &Functions) -> Vec<Target> {
    functions
        .live()
        .into_iter()
        .flat_map(|deployed| {
            let version = &deployed.version;
            version
                .config
                .all_triggers()
                .into_iter()
                .map(|trigger| Target {
                    project: version.project.clone(),
                    function: version.function.clone(),
                    trigger,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The trigger `name` of a live function.
pub fn target(
    functions: &Functions,
    project: &ProjectId,
    function: &FunctionName,
    name: &str,
) -> Option<Target> {
    let deployed = functions.get(project, function)?;
    let trigger = deployed
        .version
        .config
        .all_triggers()
        .into_iter()
        .find(|trigger| trigger.name.as_str() == name)?;
    Some(Target {
        project: project.clone(),
        function: function.clone(),
        trigger,
    })
}

/// Keeps the dispatcher's workers in step with the live functions: at
/// start and after every deploy, rollback and removal. Owned; stop it
/// before the dispatcher.
pub struct Reconciler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Reconciler {
    pub fn start(functions: Arc<Functions>, dispatcher: Arc<Dispatcher>) -> Reconciler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let mut changes = functions.watch();
        let task = tokio::spawn(async move {
            loop {
                changes.borrow_and_update();
                dispatcher.sync(targets(&functions));
                tokio::select! {
                    _ = &mut stopped => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
            }
        });
        Reconciler { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
