//! The `lambda` protocol: wok serves the AWS Lambda Runtime API
//! (`/2018-06-01/runtime/...`) to each instance at
//! `AWS_LAMBDA_RUNTIME_API` (127.0.0.1:9001 in the instance's own network
//! namespace), so a runtime interface client (`awslambdaric`, Rust's
//! `lambda_runtime`, a `bootstrap`) runs unmodified. An instance is ready
//! when it first asks for the next invocation; it runs one at a time.
//!
//! An HTTP request arrives as the Function URL / API Gateway v2 payload
//! (format 2.0) and its answer maps back (an object with `statusCode`, or
//! any other JSON as a 200 `application/json` body); a CloudEvents request
//! (a trigger's delivery) arrives as the event's JSON, and its answer is
//! the response body. An error the handler reports (`/error`) fails the
//! request with `function_trap` and the error's type and message; an
//! `/init/error` fails the start.

use super::*;
use base64::Engine;
use http_body_util::Full;

/// A whole body, up to [`MAX_PAYLOAD`] bytes.
async fn collect<B>(body: B) -> Result<Bytes, String>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| error.to_string())?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_PAYLOAD {
                return Err(format!("larger than {MAX_PAYLOAD} bytes"));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Where the Runtime API listens inside the instance.
pub(super) const RUNTIME_API_PORT: u16 = 9001;

/// Largest event or answer (Lambda's own limit is 6 MB).
const MAX_PAYLOAD: usize = 16 << 20;

/// Connections to the Runtime API an instance may hold at once.
const MAX_API_CONNECTIONS: usize = 4;

/// What the handler answered.
pub(super) enum Reply {
    Response(Bytes),
    Error { kind: String, body: Bytes },
}

pub(super) struct Job {
    id: String,
    event: Bytes,
    deadline_ms: u64,
    reply: tokio::sync::oneshot::Sender<Reply>,
}

/// One instance's Runtime API: the invocation waiting for `/next`, the
/// ones taken and not answered yet.
pub(super) struct RuntimeApi {
    function: String,
    jobs: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>,
    sender: tokio::sync::mpsc::Sender<Job>,
    taken: Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<Reply>>>,
    /// Set when the program first asks for work (`Ok`) or reports an
    /// init error.
    ready: tokio::sync::watch::Sender<Option<Result<(), String>>>,
}

fn json_response(status: http::StatusCode, body: serde_json::Value) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

impl RuntimeApi {
    pub(super) fn new(function: String) -> Arc<RuntimeApi> {
        let (sender, jobs) = tokio::sync::mpsc::channel(1);
        Arc::new(RuntimeApi {
            function,
            jobs: tokio::sync::Mutex::new(jobs),
            sender,
            taken: Mutex::new(Default::default()),
            ready: tokio::sync::watch::channel(None).0,
        })
    }

    async fn handle(
        self: Arc<Self>,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
            return json_response(
                http::StatusCode::NOT_FOUND,
                serde_json::json!({"errorType": "NotFound", "errorMessage": "no such path"}),
            );
        };
        if method == http::Method::GET && rest == "invocation/next" {
            return self.next().await;
        }
        if method != http::Method::POST {
            return json_response(
                http::StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"errorType": "MethodNotAllowed", "errorMessage": "use POST"}),
            );
        }
        // The path decides before any body is read.
        let known = rest == "init/error"
            || rest
                .strip_prefix("invocation/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(id, what)| {
                    matches!(what, "response" | "error")
                        && self
                            .taken
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .contains_key(id)
                });
        if !known {
            return json_response(
                http::StatusCode::BAD_REQUEST,
                serde_json::json!({"errorType": "InvalidRequestID", "errorMessage": "no invocation waits for an answer at this path"}),
            );
        }
        let error_type = request
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = match collect(request.into_body()).await {
            Ok(body) => body,
            Err(_) => {
                return json_response(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    serde_json::json!({"errorType": "RequestEntityTooLarge", "errorMessage": format!("payloads are limited to {MAX_PAYLOAD} bytes")}),
                );
            }
        };
        if rest == "init/error" {
            let message = String::from_utf8_lossy(&body).into_owned();
            self.ready.send_replace(Some(Err(message)));
            return json_response(
                http::StatusCode::ACCEPTED,
                serde_json::json!({"status": "OK"}),
            );
        }
        let answered = rest
            .strip_prefix("invocation/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(id, what)| {
                let reply = match what {
                    "response" => Reply::Response(body.clone()),
                    "error" => Reply::Error {
                        kind: error_type.clone().unwrap_or_else(|| {
                            // awslambdaric sends no header: the type is in the body.
                            serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|error| error["errorType"].as_str().map(str::to_owned))
                                .unwrap_or_else(|| "Unhandled".to_owned())
                        }),
                        body: body.clone(),
                    },
                    _ => return None,
                };
                let waiting = self
                    .taken
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id)?;
                let _ = waiting.send(reply);
                Some(())
            });
        match answered {
            Some(()) => json_response(
                http::StatusCode::ACCEPTED,
                serde_json::json!({"status": "OK"}),
            ),
            None => json_response(
                http::StatusCode::BAD_REQUEST,
                serde_json::json!({"errorType": "InvalidRequestID", "errorMessage": "no invocation waits for an answer with this id"}),
            ),
        }
    }

    /// `GET .../invocation/next`: waits for the next invocation.
    async fn next(&self) -> http::Response<Full<Bytes>> {
        self.ready.send_if_modified(|ready| {
            let first = ready.is_none();
            if first {
                *ready = Some(Ok(()));
            }
            first
        });
        let mut jobs = self.jobs.lock().await;
        let Some(job) = jobs.recv().await else {
            return json_response(
                http::StatusCode::GONE,
                serde_json::json!({"errorType": "Gone", "errorMessage": "the instance is stopping"}),
            );
        };
        drop(jobs);
        self.taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), job.reply);
        http::Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("lambda-runtime-aws-request-id", &job.id)
            .header("lambda-runtime-deadline-ms", job.deadline_ms.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                format!("arn:aws:lambda:wok:000000000000:function:{}", self.function),
            )
            .header("lambda-runtime-trace-id", format!("Root=1-{}", job.id))
            .body(Full::new(job.event))
            .expect("a valid response")
    }
}

/// Serves the Runtime API inside the instance until it ends.
pub(super) fn serve(
    listener: tokio::net::TcpListener,
    instance: &Arc<Instance>,
    api: Arc<RuntimeApi>,
) {
    // A runtime client needs a connection or two; a program that opens
    // more waits for one to close.
    super::services::accept_until_ended(
        listener,
        instance,
        MAX_API_CONNECTIONS,
        move |stream, permit| {
            let api = api.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request| {
                    let api = api.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        },
    );
}

/// `day/Mon/year:hh:mm:ss +0000`, as API Gateway writes `requestContext.time`.
fn gateway_time(millis: u64) -> String {
    let seconds = millis / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn is_text(content_type: Option<&str>) -> bool {
    let Some(kind) = content_type else {
        return true;
    };
    let kind = kind.to_ascii_lowercase();
    kind.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded", "yaml"]
            .iter()
            .any(|text| kind.contains(text))
}

/// The event for a request: its CloudEvent as JSON when it is one, else
/// the API Gateway v2 (format 2.0) payload.
fn event_of(
    id: &InvocationId,
    parts: &http::request::Parts,
    body: &Bytes,
) -> (serde_json::Value, bool) {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let content_type = header("content-type");
    if header("ce-id").is_some() {
        let mut event = serde_json::Map::new();
        for (name, value) in &parts.headers {
            if let (Some(attribute), Ok(value)) =
                (name.as_str().strip_prefix("ce-"), value.to_str())
            {
                event.insert(attribute.to_owned(), value.into());
            }
        }
        if let Some(kind) = content_type {
            event.insert("datacontenttype".to_owned(), kind.into());
        }
        let data = if content_type.is_some_and(|kind| kind.contains("json")) {
            serde_json::from_slice(body).unwrap_or_else(|_| String::from_utf8_lossy(body).into())
        } else if std::str::from_utf8(body).is_ok() {
            String::from_utf8_lossy(body).into()
        } else {
            event.insert(
                "data_base64".to_owned(),
                base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into(),
            );
            serde_json::Value::Null
        };
        if !data.is_null() {
            event.insert("data".to_owned(), data);
        }
        return (serde_json::Value::Object(event), false);
    }
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(|cookie| cookie.trim().to_owned()));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), value.into());
            }
        }
    }
    let query = parts.uri.query().unwrap_or("");
    let mut parameters = serde_json::Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match parameters.get_mut(key) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                parameters.insert(key.to_owned(), value.into());
            }
        }
    }
    let text = is_text(content_type) && std::str::from_utf8(body).is_ok();
    let now = now_millis();
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "wok",
            "domainName": header("host").unwrap_or("localhost"),
            "domainPrefix": "wok",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": header("user-agent").unwrap_or(""),
            },
            "requestId": id.0,
            "routeKey": "$default",
            "stage": "$default",
            "time": gateway_time(now as u64),
            "timeEpoch": now,
        },
        "isBase64Encoded": !text && !body.is_empty(),
    });
    if !cookies.is_empty() {
        event["cookies"] = cookies.into();
    }
    if !parameters.is_empty() {
        event["queryStringParameters"] = parameters.into();
    }
    if !body.is_empty() {
        event["body"] = if text {
            String::from_utf8_lossy(body).into()
        } else {
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into()
        };
    }
    (event, true)
}

/// The HTTP answer of a handler's response (format 2.0).
fn http_answer(answer: &Bytes) -> http::Response<Bytes> {
    let json: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let Some(serde_json::Value::Object(object)) =
        json.filter(|json| json.get("statusCode").is_some())
    else {
        // Anything else is the body of a 200, as JSON.
        return http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(answer.clone())
            .expect("a valid response");
    };
    let status = object
        .get("statusCode")
        .and_then(serde_json::Value::as_u64)
        .and_then(|status| http::StatusCode::from_u16(status as u16).ok())
        .unwrap_or(http::StatusCode::OK);
    let mut response = http::Response::builder().status(status);
    if let Some(serde_json::Value::Object(headers)) = object.get("headers") {
        for (name, value) in headers {
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            response = response.header(name.as_str(), value);
        }
    }
    if let Some(serde_json::Value::Array(cookies)) = object.get("cookies") {
        for cookie in cookies.iter().filter_map(|cookie| cookie.as_str()) {
            response = response.header(http::header::SET_COOKIE, cookie);
        }
    }
    let body = match object.get("body") {
        Some(serde_json::Value::String(text))
            if object.get("isBase64Encoded") == Some(&serde_json::Value::Bool(true)) =>
        {
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_default(),
            )
        }
        Some(serde_json::Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
        None => Bytes::new(),
    };
    response.body(body).unwrap_or_else(|_| {
        http::Response::builder()
            .status(http::StatusCode::BAD_GATEWAY)
            .body(Bytes::from_static(
                b"the function answered an invalid response",
            ))
            .expect("a valid response")
    })
}

impl Pool {
    /// Waits until a launched instance asks for work (or fails to start).
    pub(super) async fn lambda_ready(
        &self,
        instance: &Arc<Instance>,
        api: &Arc<RuntimeApi>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let mut ready = api.ready.subscribe();
        let waited = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                ready = ready.wait_for(Option::is_some) => ready.ok().and_then(|ready| ready.clone()),
                ended = instance.ending(std::time::Duration::MAX) => {
                    Some(Err(describe_end(ended)))
                }
            }
        })
        .await;
        match waited {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(message))) => {
                instance.kill();
                Err(Failure::new(
                    Outcome::Crashed,
                    format!("the function failed to start: {message}"),
                ))
            }
            Ok(None) => {
                instance.kill();
                Err(Failure::new(
                    Outcome::Crashed,
                    "the function failed to start",
                ))
            }
            Err(_) => {
                instance.kill();
                Err(Failure::new(
                    Outcome::Timeout,
                    "the program did not ask the Runtime API for work within the function's timeout",
                ))
            }
        }
    }

    pub(super) async fn call_lambda(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<http::Response<Body>, Failure> {
        let limits = self.config.limits.clone();
        let deadline = Instant::now() + limits.timeout;
        let Invocation { id, request, meter } = invocation;
        let lease = self.lease_for(deadline, &id, &meter).await?;
        let instance = lease.instance.clone();
        let fail = |outcome: Outcome, message: String| lease.fail(&meter, outcome, message);
        let head_request = request.method() == http::Method::HEAD;
        let (parts, body) = request.into_parts();
        let body = CountingBody::request(body, meter.clone(), limits.max_request_body.bytes());
        let body = match tokio::time::timeout_at(deadline, collect(body)).await {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => {
                return Err(fail(
                    Outcome::NoResponse,
                    format!(
                        "the request cannot be a Lambda event: {error} (events are limited to {MAX_PAYLOAD} bytes)"
                    ),
                ));
            }
            Err(_) => {
                return Err(fail(
                    Outcome::Timeout,
                    "the function ran past its timeout".to_owned(),
                ));
            }
        };
        let (event, is_http) = event_of(&id, &parts, &body);
        let Some(api) = instance.lambda.clone() else {
            return Err(fail(
                Outcome::Internal,
                "the instance has no Runtime API".to_owned(),
            ));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let deadline_ms = now_millis() as u64 + (deadline - Instant::now()).as_millis() as u64;
        let job = Job {
            id: id.0.clone(),
            event: Bytes::from(event.to_string()),
            deadline_ms,
            reply,
        };
        if api.sender.try_send(job).is_err() {
            return Err(fail(Outcome::Internal, "the instance is busy".to_owned()));
        }
        // The wait holds the instance until the runtime answers (or the
        // deadline passes), even if the caller goes: the next call must not
        // find it busy with this one.
        let waiting = instance.clone();
        let held = tokio::spawn(async move {
            let lease = lease;
            let answered = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    answer = answer => answer.ok(),
                    _ = waiting.ending(std::time::Duration::MAX) => None,
                }
            })
            .await;
            if answered.is_err() {
                waiting.kill();
            }
            (lease, answered)
        })
        .await;
        let Ok((lease, answered)) = held else {
            return Err(Failure::new(
                Outcome::Internal,
                "waiting for the runtime failed",
            ));
        };
        let fail = |outcome: Outcome, message: String| lease.fail(&meter, outcome, message);
        let response = match answered {
            Err(_) => {
                instance.kill();
                return Err(fail(
                    Outcome::Timeout,
                    "the function ran past its timeout".to_owned(),
                ));
            }
            Ok(None) => {
                let ended = instance.ending(std::time::Duration::from_millis(200)).await;
                let outcome = if ended.is_some_and(|ended| ended.out_of_memory) {
                    Outcome::OutOfMemory
                } else {
                    Outcome::Crashed
                };
                return Err(fail(outcome, describe_end(ended)));
            }
            Ok(Some(Reply::Error { kind, body })) => {
                let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let message = error["errorMessage"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                return Err(fail(Outcome::Trap, format!("{kind}: {message}")));
            }
            Ok(Some(Reply::Response(answer))) => {
                if is_http {
                    http_answer(&answer)
                } else {
                    http::Response::new(answer)
                }
            }
        };
        lease.meter_cpu(&meter);
        meter.finish(Outcome::Success, instance.peak_memory(), lease.cold);
        drop(lease);
        Ok(invoke::metered_response(
            response.map(|body| Full::new(body).map_err(|never| match never {})),
            meter,
            limits.max_response_body.bytes(),
            head_request,
        ))
    }
}

/// Why an instance ended, for its caller.
fn describe_end(ended: Option<Ended>) -> String {
    match ended {
        Some(Ended {
            out_of_memory: true,
            ..
        }) => "the program ran out of memory".to_owned(),
        Some(Ended {
            status: Some(status),
            ..
        }) if status > 128 => {
            format!("the program was killed by signal {}", status - 128)
        }
        Some(Ended {
            status: Some(status),
            ..
        }) => {
            format!("the program exited with status {status}; see its logs")
        }
        _ => "the program was killed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_time_is_written_as_api_gateway_does() {
        // 2020-03-04T19:03:58.390Z, the example of AWS's documentation.
        assert_eq!(
            gateway_time(1_583_348_638_390),
            "04/Mar/2020:19:03:58 +0000"
        );
        assert_eq!(gateway_time(0), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn an_answer_with_a_status_code_is_an_http_response_and_any_other_a_json_body() {
        let answer = http_answer(&Bytes::from(
            r#"{"statusCode": 201, "headers": {"x-a": "b"}, "cookies": ["c=d"], "body": "aGk=", "isBase64Encoded": true}"#,
        ));
        assert_eq!(answer.status(), 201);
        assert_eq!(answer.headers()["x-a"], "b");
        assert_eq!(answer.headers()["set-cookie"], "c=d");
        assert_eq!(answer.body(), "hi");
        let answer = http_answer(&Bytes::from(r#"{"hello": "world"}"#));
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["content-type"], "application/json");
        assert_eq!(answer.body(), r#"{"hello": "world"}"#);
    }
}
