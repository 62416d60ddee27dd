use crate::*;

use reqwest::Method;

use std::time::Duration;

#[tokio::test]
async fn a_restart_keeps_every_function_without_recompiling() {
    let server = server();
    deploy(&server, "hello", guests::HELLO, &[]);
    deploy(&server, "echo", guests::ECHO, &["--env", "KEPT=yes"]);
    deploy(&server, "echo", guests::ENV_CONFIG, &["--env", "KEPT=yes"]);
    server.cli_ok(&["rollback", "echo", "1"]);
    let before = test_support::compiled_files(server.data_dir());
    assert_eq!(
        before.len(),
        3,
        "one precompiled artifact per distinct component: {before:?}"
    );

    let server = server.restart();
    assert_eq!(
        test_support::compiled_files(server.data_dir()),
        before,
        "nothing was compiled again"
    );
    assert_eq!(get(&server, "/fn/hello").await.text(), "hello from wok\n");
    let echo = send(
        http()
            .post(format!("{}/fn/echo", server.url))
            .body("still here"),
    )
    .await;
    assert_eq!(
        echo.text(),
        "still here",
        "the rolled-back version still serves"
    );
    let versions = send(control(&server, Method::GET, "/v1/functions/echo/versions"))
        .await
        .json();
    assert_eq!(versions["current"], 1);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_exits_zero() {
    let mut server = server();
    deploy(&server, "slow", guests::SLEEP, &[]);
    let url = format!("{}/fn/slow?ms=1500", server.url);
    let in_flight = tokio::spawn(async move { send(http().get(url)).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.send_terminate();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "slept 1500\n")
    );
    let status = server.wait();
    assert!(status.success(), "wok exited with {status}");
}

#[tokio::test]
async fn the_control_api_needs_the_admin_credential_and_function_urls_do_not() {
    let server = server();
    deploy(&server, "hello", guests::HELLO, &[]);
    let answer = send(http().get(format!("{}/v1/functions", server.url))).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (401, "unauthorized")
    );
    let answer = send(
        http()
            .get(format!("{}/v1/functions", server.url))
            .bearer_auth("wrong"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (403, "forbidden")
    );
    let answer = send(
        http()
            .post(format!("{}/v1/functions/x/versions", server.url))
            .body("x"),
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(get(&server, "/fn/hello").await.status, 200);

    let output = server
        .command(&["ls"])
        .env("WOK_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("forbidden"));
    // The local CLI found the credential by itself (deploy above), and the
    // token file is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.data_dir().join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "admin-token is readable by others: {mode:o}"
    );
}

#[tokio::test]
async fn metrics_need_the_metrics_or_admin_token_unless_made_public() {
    let server = server();
    let metrics_token = std::fs::read_to_string(server.data_dir().join("metrics-token")).unwrap();
    let service = server
        .cli_ok(&["keys", "create", "--kind", "service"])
        .trim()
        .to_owned();
    let read = |token: Option<&str>| {
        let request = http().get(format!("{}/metrics", server.url));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        send(request)
    };
    for token in [None, Some("wrong"), Some(service.as_str())] {
        let answer = read(token).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (401, "unauthorized"),
            "{token:?}"
        );
        assert!(answer.text().contains("metrics-token"), "{}", answer.text());
    }
    for token in [metrics_token.trim().to_owned(), server.admin_token()] {
        let answer = read(Some(&token)).await;
        assert_eq!(answer.status, 200);
        assert!(answer.text().contains("wok_connections_open"));
    }

    let public = WokServer::start_with(WOK, &["--public-metrics"]);
    assert_eq!(get(&public, "/metrics").await.status, 200);
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_its_owners_alone() {
    let server = server();
    deploy(&server, "hello", guests::HELLO, &[]);
    server.cli_ok(&["kv", "set", "s", "k", "v"]);
    server.cli_ok(&["objects", "mb", "media"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"bytes").unwrap();
    server.cli_ok(&[
        "objects",
        "put",
        "media",
        "a.txt",
        file.path().to_str().unwrap(),
    ]);
    server.cli_ok(&["docs", "set", "posts", "p1", "{\"a\": 1}"]);
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut pending = vec![server.data_dir().to_owned()];
    while let Some(path) = pending.pop() {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        seen += 1;
        if path.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        }
    }
    assert!(seen > 10, "only {seen} files and directories");
}
