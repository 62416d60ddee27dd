//! The whole server, in-process (the fast door): each test starts the
//! composition `wok up` runs (`test_support::TestApp`, on a loopback port,
//! with a clock the test moves) and talks to it over HTTP and WebSockets,
//! deploying real guests through the control API. No `wok` process, no
//! waiting on the wall clock for expiry, retries or schedules. What needs
//! a process (SIGKILL, signals, the CLI itself, clients in other
//! languages) is in `crates/cli/tests/it`.

mod docs;
mod events;
mod invoke;
mod isolation;
mod kv;
mod lifecycle;
mod limits;
mod objects;
mod realtime;

pub use std::time::Duration;
pub use test_support::{
    Answer, Endpoint, TestApp, check, control, get, http, metric, send, wait_for, wait_for_records,
};

pub fn app() -> TestApp {
    TestApp::start()
}

/// Deploys a guest through the control API, with `wok deploy`'s flags
/// (`["--memory", "64MiB", "--reuse"]`, `--project P` for another project
/// than `default`) as its settings; panics with the API's answer on
/// failure.
pub async fn deploy(server: &TestApp, name: &str, guest: &str, flags: &[&str]) {
    let mut project = "default".to_owned();
    let mut settings = Vec::new();
    let mut flags = flags.iter().peekable();
    while let Some(flag) = flags.next() {
        let key = flag
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("{flag} is not a flag"))
            .replace('-', "_");
        match flags.peek() {
            Some(value) if !value.starts_with("--") => {
                let value = flags.next().unwrap().to_string();
                if key == "project" {
                    project = value;
                } else {
                    settings.push((key, value));
                }
            }
            _ => settings.push((key, "true".to_owned())),
        }
    }
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let answer = test_support::deploy_api(server, &project, name, guest, &settings).await;
    assert_eq!(answer.status, 201, "deploying {name}: {}", answer.text());
}

/// Creates a project through the control API.
pub async fn create_project(server: &TestApp, name: &str) {
    let answer = send(
        control(server, reqwest::Method::POST, "/v1/projects")
            .json(&serde_json::json!({ "name": name })),
    )
    .await;
    assert_eq!(
        answer.status,
        201,
        "creating project {name}: {}",
        answer.text()
    );
}

/// Issues a key of the default project (`kind`: `service` or `public`);
/// its token.
pub async fn create_key(server: &TestApp, kind: &str, name: &str) -> String {
    let answer = send(
        control(server, reqwest::Method::POST, "/v1/projects/default/keys")
            .json(&serde_json::json!({ "kind": kind, "name": name })),
    )
    .await;
    assert_eq!(answer.status, 201, "creating a key: {}", answer.text());
    answer.json()["token"].as_str().unwrap().to_owned()
}
