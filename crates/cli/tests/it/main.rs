//! End-to-end tests: the real `wok` binary as server and CLI, real guests.
//! One test binary for the crate (link time); each test runs its own server.

// The tests run `wok`, Python suites and shell lines: processes (ARCHITECTURE.md lets cli's tests).
#![allow(clippy::disallowed_methods)]

mod accounts;
mod cluster;
mod connections;
mod deploy;
mod disk;
mod docs;
mod durability;
mod events;
mod foreign;
mod history;
mod invoke;
mod key_rules;
mod kv;
mod lifecycle;
mod objects;
mod process;
mod projects;
mod readme;
mod realtime;
mod records;
mod rules;
mod s3;

pub use std::time::Duration;
pub use test_support::{
    Answer, Endpoint, WokServer, control, get, http, metric, send, wait_for, wait_for_records,
};

pub const WOK: &str = env!("CARGO_BIN_EXE_wok");

/// Runs one of the project's `scripts/` (which install or build what a
/// test needs) and returns the path it prints.
pub fn run_script(name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = succeed(std::process::Command::new("bash").arg(root.join("scripts").join(name)));
    std::path::PathBuf::from(output.trim())
}

/// Runs `command`, which must succeed (else the test fails with its
/// stderr); its stdout.
pub fn succeed(command: &mut std::process::Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The S3 clients (boto3, aws-cli) in the virtualenv that
/// `scripts/install-s3-tools.sh` makes; installed once per test run.
pub fn s3_tools() -> std::path::PathBuf {
    static VENV: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| run_script("install-s3-tools.sh"))
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
