//! HTTP helpers over any [`Endpoint`]: requests with the admin credential,
//! answers read whole, waits bounded by a deadline, deploys through the
//! control API, and [`check`], which holds an exchange to an expected text
//! (`expect_test`: `UPDATE_EXPECT=1` rewrites the expectations).
use crate::Endpoint;
use std::time::{Duration, Instant};

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("an HTTP client")
}

/// A request with the server's admin token.
pub fn control(
    server: &impl Endpoint,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", server.url()))
        .bearer_auth(server.admin_token())
}

/// An answer, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    /// The `code` of a wok error body, which must be in the one table of
    /// codes (`api_types::ErrorCode`, README's "Error codes") with the
    /// status the response has.
    pub fn error_code(&self) -> String {
        let code = self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let known = api_types::ErrorCode::ALL
            .iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| {
                panic!(
                    "the error code {code:?} is not in the table: {}",
                    self.text()
                )
            });
        assert_eq!(
            known.status(),
            self.status,
            "{code} is answered with the table's status"
        );
        code
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("an ASCII header").to_owned())
            .unwrap_or_default()
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request reaches the server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("reading the body").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(server: &impl Endpoint, path: &str) -> Answer {
    send(http().get(format!("{}{path}", server.url()))).await
}

/// The value of one sample of `/metrics` (0 if absent).
pub async fn metric(server: &impl Endpoint, sample: &str) -> f64 {
    let text = send(control(server, reqwest::Method::GET, "/metrics"))
        .await
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `probe` until it answers `Some`, for at most `within`: for what
/// happens off the request path (records written in batches, deliveries
/// made by workers). Panics naming `what` when time is up.
pub async fn wait_for<T, F>(what: &str, within: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the records of `count` invocations are stored (they are
/// written in batches off the request path), for at most 30 s; returns
/// what is stored then.
pub async fn wait_for_records(server: &impl Endpoint, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = send(control(
            server,
            reqwest::Method::GET,
            "/v1/invocations?limit=100000",
        ))
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let records = answer.json()["invocations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if records.len() >= count || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deploys the component at `guest` as `name` of `project` through the
/// control API, with deploy settings as query pairs (`[("memory",
/// "64MiB")]`); the answer is the API's (a 201 with the version, or the
/// error).
pub async fn deploy_api(
    server: &impl Endpoint,
    project: &str,
    name: &str,
    guest: &str,
    settings: &[(&str, &str)],
) -> Answer {
    let code = std::fs::read(guest).unwrap_or_else(|error| panic!("reading {guest}: {error}"));
    let query: String = settings
        .iter()
        .map(|(key, value)| format!("{key}={}", urlencoding::encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/projects/{project}/functions/{name}/versions?{query}"),
        )
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(code),
    )
    .await
}

/// The JSON fields whose values change from run to run.
const REDACTED: [&str; 10] = [
    "created_at",
    "updated_at",
    "time",
    "start",
    "duration_us",
    "billed_ms",
    "last_modified",
    "id",
    "next_at",
    "first_failed_at",
];

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                if REDACTED.contains(&key.as_str()) && !value.is_null() {
                    *value = serde_json::Value::String(format!("<{key}>"));
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Renders an answer for [`check`]: the status and, for an error, its
/// code and message; else the body (JSON pretty-printed, with the fields
/// that change from run to run redacted).
pub fn render(answer: &Answer) -> String {
    if answer.status >= 400 && !answer.body.is_empty() {
        let body = answer.json();
        return format!(
            "{} {}: {}",
            answer.status,
            answer.error_code(),
            body["error"]["message"].as_str().unwrap_or_default()
        );
    }
    let body = match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(mut json) => {
            redact(&mut json);
            serde_json::to_string_pretty(&json).expect("JSON renders")
        }
        Err(_) => answer.text(),
    };
    if body.is_empty() {
        answer.status.to_string()
    } else {
        format!("{}\n{body}", answer.status)
    }
}

/// Sends `request` with the admin credential and holds the answer (see
/// `render`) to `expect`. The request is its first line, `METHOD
/// /path?query`, then header lines, then a blank line and the body:
///
/// ```text
/// PUT /v1/kv/cache/greeting?ttl=1h
/// If-None-Match: *
///
/// hello
/// ```
pub async fn check(server: &impl Endpoint, request: &str, expect: expect_test::Expect) {
    let (head, body) = request
        .trim_start_matches('\n')
        .split_once("\n\n")
        .unwrap_or((request.trim(), ""));
    let mut lines = head.lines();
    let first = lines.next().expect("a request line");
    let (method, path) = first.split_once(' ').expect("METHOD /path");
    let mut builder = control(
        server,
        reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method"),
        path,
    );
    for line in lines {
        let (name, value) = line.split_once(':').expect("Header: value");
        builder = builder.header(name.trim(), value.trim());
    }
    if !body.is_empty() {
        builder = builder.body(body.to_owned());
    }
    expect.assert_eq(&render(&send(builder).await));
}
