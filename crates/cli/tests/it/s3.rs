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
    boto3_and_aws_cli_suite(&server(), &[]).await;
}

/// The whole S3 suite against `server`, both phases; `extra` goes to its
/// environment.
pub async fn boto3_and_aws_cli_suite(server: &WokServer, extra: &[(String, String)]) {
    let admin = send(control(server, reqwest::Method::GET, "/v1/s3/credentials")).await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    assert_eq!(admin.json()["access_key_id"], "wok_admin");
    server.cli_ok(&["project", "create", "other"]);
    let (_, other) = issue_key(server, "other", "service").await;
    let (_, public) = issue_key(server, "default", "public").await;
    let (revoked_id, revoked) = issue_key(server, "default", "service").await;
    let mut env = pair_env("", &admin.json());
    env.extend(pair_env("OTHER_", &other));
    env.extend(pair_env("PUBLIC_", &public));
    env.extend(pair_env("REVOKED_", &revoked));
    env.extend(extra.iter().cloned());

    run_suite(server, "main", &env).await;

    // The suite's "revoked" phase expects this key refused, and deletes
    // everything last.
    let revocation = send(control(
        server,
        reqwest::Method::DELETE,
        &format!("/v1/projects/default/keys/{revoked_id}"),
    ))
    .await;
    assert_eq!(revocation.status, 204, "{}", revocation.text());
    run_suite(server, "revoked", &env).await;
}

/// What an S3 client holding `pair` gets when it lists the buckets: `ok`,
/// or the S3 error code.
fn list_buckets_with(server: &WokServer, pair: &serde_json::Value) -> String {
    let script = "\
import os, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
s3 = boto3.client('s3', endpoint_url=os.environ['WOK_S3_ENDPOINT'], region_name='us-east-1',
                  config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
try:
    s3.list_buckets()
    print('ok')
except ClientError as error:
    print(error.response['Error']['Code'])
";
    crate::succeed(
        std::process::Command::new(s3_tools().join("bin/python"))
            .args(["-c", script])
            .env("WOK_S3_ENDPOINT", &server.url)
            .env("AWS_ACCESS_KEY_ID", pair["access_key_id"].as_str().unwrap())
            .env(
                "AWS_SECRET_ACCESS_KEY",
                pair["secret_access_key"].as_str().unwrap(),
            ),
    )
    .trim()
    .to_owned()
}

#[tokio::test]
async fn each_keys_s3_secret_is_its_own_and_rotates_alone() {
    let server = server();
    let (id, pair) = issue_key(&server, "default", "service").await;
    let (_, other) = issue_key(&server, "default", "service").await;
    let admin = send(control(&server, reqwest::Method::GET, "/v1/s3/credentials"))
        .await
        .json();
    assert_eq!(list_buckets_with(&server, &pair), "ok");
    // Stored sealed: the secret is nowhere in the database in the clear.
    let secret = pair["secret_access_key"].as_str().unwrap().as_bytes();
    for file in ["wok.db", "wok.db-wal"] {
        let bytes = std::fs::read(server.data_dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "{file}"
        );
    }

    // The admin token changes (as an operator rotates it): the keys' S3
    // pairs go on working; the admin's own pair is the new token's.
    let server = server.restart_after(|data| {
        std::fs::write(
            data.join("admin-token"),
            format!("wok_admin_{}", "5".repeat(64)),
        )
        .unwrap();
    });
    assert_eq!(list_buckets_with(&server, &pair), "ok");
    assert_eq!(list_buckets_with(&server, &admin), "SignatureDoesNotMatch");
    let new_admin = send(control(&server, reqwest::Method::GET, "/v1/s3/credentials"))
        .await
        .json();
    assert_eq!(list_buckets_with(&server, &new_admin), "ok");

    // One key's secret rotates alone; its token and the other keys stay.
    send(control(&server, reqwest::Method::PUT, "/v1/buckets/media")).await;
    let put =
        send(control(&server, reqwest::Method::PUT, "/v1/objects/media/a.txt").body("a")).await;
    assert_eq!(put.status, 200);
    let token =
        send(control(&server, reqwest::Method::POST, "/v1/keys").json(&json!({"kind": "service"})))
            .await
            .json();
    let (token_id, token) = (
        token["key"]["id"].as_str().unwrap().to_owned(),
        token["token"].as_str().unwrap().to_owned(),
    );
    let presigned = send(
        http()
            .post(format!("{}/v1/objects/media/a.txt", server.url))
            .bearer_auth(&token)
            .json(&json!({"method": "GET", "expires_in": "1h"})),
    )
    .await
    .json();
    let url = presigned["url"].as_str().unwrap().to_owned();
    assert_eq!(send(http().get(&url)).await.status, 200);
    let rotated = server.cli_ok(&["keys", "rotate-s3", &token_id]);
    assert!(rotated.contains("AWS_SECRET_ACCESS_KEY="), "{rotated}");
    assert_eq!(
        send(http().get(&url)).await.status,
        403,
        "URLs presigned with the old secret stop working"
    );
    let answer = send(
        http()
            .get(format!("{}/v1/buckets", server.url))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(answer.status, 200, "the key's token is unchanged");
    let rotated = send(control(
        &server,
        reqwest::Method::POST,
        &format!("/v1/keys/{id}/s3-secret"),
    ))
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    assert_ne!(rotated["secret_access_key"], pair["secret_access_key"]);
    assert_eq!(list_buckets_with(&server, &pair), "SignatureDoesNotMatch");
    assert_eq!(list_buckets_with(&server, &rotated), "ok");
    assert_eq!(list_buckets_with(&server, &other), "ok");
    let missing = send(control(
        &server,
        reqwest::Method::POST,
        "/v1/keys/nosuchkey/s3-secret",
    ))
    .await;
    assert_eq!(missing.status, 404);
}
