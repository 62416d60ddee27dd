//! End-to-end tests: the real `wok` binary as server and CLI, real guests.
//! One test binary for the crate (link time); each test runs its own server.

// The tests run `wok`, Python suites and shell lines: processes (ARCHITECTURE.md lets cli's tests).
#![allow(clippy::disallowed_methods)]

mod connections;
mod deploy;
mod disk;
mod docs;
mod durability;
mod events;
mod foreign;
mod invoke;
mod isolation;
mod kv;
mod lifecycle;
mod limits;
mod objects;
mod projects;
mod readme;
mod realtime;
mod records;
mod s3;

use std::time::Duration;
use test_support::WokServer;

pub const WOK: &str = env!("CARGO_BIN_EXE_wok");

/// The S3 clients (boto3, aws-cli) in the virtualenv that
/// `scripts/install-s3-tools.sh` makes; installed once per test run.
pub fn s3_tools() -> std::path::PathBuf {
    static VENV: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let output = std::process::Command::new("bash")
            .arg(root.join("scripts/install-s3-tools.sh"))
            .output()
            .expect("running scripts/install-s3-tools.sh");
        assert!(
            output.status.success(),
            "scripts/install-s3-tools.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::path::PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
    .clone()
}

/// A Python script using boto3 (the S3 tools) against a server's S3
/// endpoint, with the admin's S3 key pair.
pub struct Boto3 {
    script: tempfile::NamedTempFile,
    url: String,
    credentials: serde_json::Value,
}

impl Boto3 {
    pub async fn new(server: &WokServer, script: &str) -> Self {
        let credentials = send(control(server, reqwest::Method::GET, "/v1/s3/credentials"))
            .await
            .json();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), script).unwrap();
        Self {
            script: file,
            url: server.url.clone(),
            credentials,
        }
    }

    /// A run of the script (add its arguments).
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(s3_tools().join("bin/python"));
        command
            .arg(self.script.path())
            .env("WOK_S3_ENDPOINT", &self.url)
            .env(
                "AWS_ACCESS_KEY_ID",
                self.credentials["access_key_id"].as_str().unwrap(),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                self.credentials["secret_access_key"].as_str().unwrap(),
            );
        command
    }
}

pub fn server() -> WokServer {
    WokServer::start(WOK)
}

/// Deploys a guest through the CLI; panics with the CLI's message on failure.
pub fn deploy(server: &WokServer, name: &str, guest: &str, flags: &[&str]) {
    let mut args = vec!["deploy", name, guest];
    args.extend_from_slice(flags);
    let stdout = server.cli_ok(&args);
    assert!(
        stdout.contains(&format!("deployed {name} version")),
        "unexpected deploy output: {stdout}"
    );
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// A control-API request with the server's admin token.
pub fn control(server: &WokServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(server.admin_token())
}

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

    /// The `code` of a wok error body, which must be in the one table
    /// of codes (`api_types::ErrorCode`, README's "Error codes") with the
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
            .map(|value| value.to_str().unwrap().to_owned())
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

/// The value of one sample of `/metrics` (0 if absent).
pub async fn metric(server: &WokServer, sample: &str) -> f64 {
    let text = send(control(server, reqwest::Method::GET, "/metrics"))
        .await
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn get(server: &WokServer, path: &str) -> Answer {
    send(http().get(format!("{}{path}", server.url))).await
}

/// Waits until the records of `count` invocations are stored (they are
/// written in batches off the request path), bounded by a deadline.
pub async fn wait_for_records(server: &WokServer, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
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
        if records.len() >= count || std::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
