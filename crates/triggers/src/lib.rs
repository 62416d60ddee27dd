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

use domain::{FunctionName, InvocationId, ProjectId};
use events::{BoxFuture, Deliver, Dispatcher, Target};
use functions::Functions;
use http_body_util::BodyExt;
use invoke::{BoxError, Invocation, Meter, MeterInit, RecordSink};
use std::sync::Arc;
use store::events::Event;

/// The CloudEvents batch content type.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// Most bytes of a failed delivery's response kept as its error.
const ERROR_SNIPPET: usize = 512;

/// Delivers events by invoking functions.
pub struct FunctionDeliver {
    pub functions: Arc<Functions>,
    pub records: Arc<dyn RecordSink>,
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
pub fn request(
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

impl Deliver for FunctionDeliver {
    fn deliver(
        &self,
        target: Arc<Target>,
        events: Vec<Event>,
        attempt: u32,
    ) -> BoxFuture<Result<(), String>> {
        let functions = self.functions.clone();
        let records = self.records.clone();
        Box::pin(async move {
            let deployed = functions
                .get(&target.project, &target.function)
                .ok_or_else(|| format!("function {:?} does not exist", target.function.as_str()))?;
            let permit = deployed
                .admission
                .admit()
                .await
                .map_err(|error| format!("the function is at capacity: {error}"))?;
            let limits = &deployed.version.config.limits;
            let id = InvocationId(uuid::Uuid::now_v7().simple().to_string());
            let meter = Arc::new(Meter::new(
                MeterInit {
                    id: id.clone(),
                    project: target.project.clone(),
                    function: target.function.clone(),
                    version: deployed.version.version,
                    trigger: target.trigger.kind(),
                    memory_mib: limits.memory_mib(),
                },
                Some(permit),
                records,
            ));
            let request = request(&target, &events, attempt)
                .map_err(|error| format!("the event cannot be sent as HTTP: {error}"))?;
            let request = request.map(|body| {
                http_body_util::Full::new(body)
                    .map_err(|never| -> BoxError { match never {} })
                    .boxed_unsync()
            });
            let response = deployed
                .prepared
                .invoke(Invocation { id, request, meter })
                .await
                .map_err(|failure| format!("{}: {}", failure.outcome.code(), failure.message))?;
            let status = response.status();
            // Read the body to its end: the invocation (and its record) ends
            // with it; a failure keeps the start as the error.
            let mut body = response.into_body();
            let mut snippet = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|error| format!("the response failed: {error}"))?;
                if let Some(data) = frame.data_ref()
                    && snippet.len() < ERROR_SNIPPET
                {
                    let room = ERROR_SNIPPET - snippet.len();
                    snippet.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            if status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&snippet);
                Err(format!("the function answered {status}: {}", text.trim()))
            }
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
                .triggers
                .iter()
                .map(|trigger| Target {
                    project: version.project.clone(),
                    function: version.function.clone(),
                    trigger: trigger.clone(),
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
        .triggers
        .iter()
        .find(|trigger| trigger.name.as_str() == name)?;
    Some(Target {
        project: project.clone(),
        function: function.clone(),
        trigger: trigger.clone(),
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
