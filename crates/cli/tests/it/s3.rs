//! The S3 endpoint through unmodified boto3 and aws-cli: the Python suite
//! `tests/s3/suite.py`, in the virtualenv `scripts/install-s3-tools.sh`
//! builds, against a real server.
use crate::*;
use serde_json::json;
use std::path::PathBuf;

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An S3 access key pair as environment variables `WOK_S3_{name}ACCESS_KEY_ID`
/// and `WOK_S3_{name}SECRET_ACCESS_KEY`.
fn pair_env(name: &str, pair: &serde_json::Value) -> Vec<(String, String)> {
    vec![
        (
            format!("WOK_S3_{name}ACCESS_KEY_ID"),
            pair["access_key_id"].as_str().unwrap().to_owned(),
        ),
        (
            format!("WOK_S3_{name}SECRET_ACCESS_KEY"),
            pair["secret_access_key"].as_str().unwrap().to_owned(),
        ),
    ]
}

/// Runs one phase of the suite; panics with its output unless it passes.
async fn run_suite(server: &WokServer, phase: &str, env: &[(String, String)]) {
    let (url, phase_name, env) = (server.url.clone(), phase.to_owned(), env.to_vec());
    let data_dir = server.data_dir().to_owned();
    let admin_token = server.admin_token();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(s3_tools().join("bin/python"))
            .arg(repository_root().join("crates/cli/tests/s3/suite.py"))
            .env("WOK_S3_ENDPOINT", url)
            .env("WOK_S3_PHASE", phase_name)
            .env("WOK_S3_DATA_DIR", data_dir)
            .env("WOK_S3_ADMIN_TOKEN", admin_token)
            .envs(env)
            .env("PYTHONUNBUFFERED", "1")
            .output()
    })
    .await
    .unwrap()
    .expect("running the S3 suite");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the S3 suite (phase {phase}) failed:\n{report}"
    );
    println!("{report}");
}

/// Issues a key of `project`: its id and S3 pair.
async fn issue_key(server: &WokServer, project: &str, kind: &str) -> (String, serde_json::Value) {
    let issued = send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/projects/{project}/keys"),
        )
        .json(&json!({ "kind": kind })),
    )
    .await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    let issued = issued.json();
    (
        issued["key"]["id"].as_str().unwrap().to_owned(),
        issued["s3"].clone(),
    )
}

#[tokio::test]
async fn boto3_and_aws_cli_work_against_the_s3_endpoint() {
    let server = server();
    let admin = send(control(&server, reqwest::Method::GET, "/v1/s3/credentials")).await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    assert_eq!(admin.json()["access_key_id"], "wok_admin");
    server.cli_ok(&["project", "create", "other"]);
    let (_, other) = issue_key(&server, "other", "service").await;
    let (_, public) = issue_key(&server, "default", "public").await;
    let (revoked_id, revoked) = issue_key(&server, "default", "service").await;
    let mut env = pair_env("", &admin.json());
    env.extend(pair_env("OTHER_", &other));
    env.extend(pair_env("PUBLIC_", &public));
    env.extend(pair_env("REVOKED_", &revoked));

    run_suite(&server, "main", &env).await;

    // The suite's "revoked" phase expects this key refused, and deletes
    // everything last.
    let revocation = send(control(
        &server,
        reqwest::Method::DELETE,
        &format!("/v1/projects/default/keys/{revoked_id}"),
    ))
    .await;
    assert_eq!(revocation.status, 204, "{}", revocation.text());
    run_suite(&server, "revoked", &env).await;
}
