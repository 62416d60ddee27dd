use crate::*;
use reqwest::Method;

async fn deploy_bytes(
    server: &test_support::WokServer,
    name: &str,
    bytes: Vec<u8>,
    query: &str,
) -> Answer {
    send(
        control(
            server,
            Method::POST,
            &format!("/v1/functions/{name}/versions{query}"),
        )
        .body(bytes),
    )
    .await
}

#[tokio::test]
async fn bad_uploads_are_refused_with_a_message_naming_the_problem() {
    let server = server();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "empty"),
        (
            "random",
            b"definitely not wasm at all".to_vec(),
            "not a WebAssembly binary",
        ),
        (
            "core",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module",
        ),
        (
            "command",
            guests::bytes(guests::COMMAND),
            "does not export a wasi:http handler",
        ),
        (
            "import",
            guests::bytes(guests::UNKNOWN_IMPORT),
            "example:unknown/oracle",
        ),
    ];
    for (name, bytes, expected) in cases {
        let answer = deploy_bytes(&server, name, bytes, "").await;
        assert_eq!(answer.status, 400, "{name}: {}", answer.text());
        assert_eq!(answer.error_code(), "invalid_component", "{name}");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains(expected),
            "{name}: {message:?} should mention {expected:?}"
        );
    }
    // Nothing was stored.
    let list = send(control(&server, Method::GET, "/v1/functions"))
        .await
        .json();
    assert_eq!(list["functions"].as_array().unwrap().len(), 0);

    // The CLI prints the message on one line and exits non-zero.
    let garbage = server.data_dir().join("garbage.wasm");
    std::fs::write(&garbage, b"garbage").unwrap();
    let output = server.cli(&["deploy", "bad", garbage.to_str().unwrap()]);
    assert!(!output.success());
    assert!(
        output.stderr().starts_with("error: "),
        "{}",
        output.stderr()
    );
    assert!(
        output.stderr().contains("not a WebAssembly binary"),
        "{}",
        output.stderr()
    );
    assert_eq!(
        output.stderr().trim_end().lines().count(),
        1,
        "{}",
        output.stderr()
    );
}

#[tokio::test]
async fn bad_settings_and_oversized_uploads_are_refused() {
    let server = test_support::WokServer::start_with(WOK, &["--max-upload", "1MiB"]);
    let hello = guests::bytes(guests::HELLO);
    let answer = deploy_bytes(&server, "hello", hello.clone(), "?memory=lots").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (400, "invalid_config"),
        "{}",
        answer.text()
    );
    let answer = deploy_bytes(&server, "hello", hello.clone(), "?memroy=64MiB").await;
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("memroy"), "{}", answer.text());
    for timeout in ["0s", "50ms"] {
        // Below what a guest blocked in a host call can be held to.
        let answer = deploy_bytes(
            &server,
            "hello",
            hello.clone(),
            &format!("?timeout={timeout}"),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, "invalid_config"),
            "{timeout}"
        );
        assert!(answer.text().contains("100ms"), "{}", answer.text());
    }
    let answer = deploy_bytes(&server, "Bad_Name", hello.clone(), "").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (400, "invalid_name")
    );
    let answer = deploy_bytes(&server, "big", vec![0u8; 2 << 20], "").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "payload_too_large")
    );

    // The server refuses before reading the upload; the CLI, still
    // sending, shows the refusal (not a broken pipe).
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![0u8; 64 << 20]).unwrap();
    let big = big.path().to_str().unwrap();
    // (A closing server that does not read the rest resets the
    // connection, and the reset often loses the answer: a few tries each.)
    for _ in 0..5 {
        for (args, expected) in [
            (&["big"][..], "(payload_too_large, HTTP 413)"),
            (&["Bad_Name"], "(invalid_name, HTTP 400)"),
            (&["big", "--token", "wrong"], "(forbidden, HTTP 403)"),
            (
                &["big", "--project", "nope"],
                "(project_not_found, HTTP 404)",
            ),
        ] {
            let mut command = vec!["deploy", args[0], big];
            command.extend_from_slice(&args[1..]);
            let output = server.cli(&command);
            assert!(!output.success());
            assert!(
                output.stderr().contains(expected),
                "{command:?}: {}",
                output.stderr()
            );
        }
    }

    let output = server.cli(&["deploy", "hello", guests::HELLO, "--env", "NOEQUALS"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("NAME=VALUE"),
        "{}",
        output.stderr()
    );
}

#[tokio::test]
async fn every_deploy_is_a_version_that_can_be_rolled_back_and_removed() {
    let server = server();
    deploy(&server, "app", guests::HELLO, &[]);
    deploy(&server, "app", guests::COUNTER, &[]);
    assert_eq!(get(&server, "/fn/app").await.text(), "1");

    let versions = server.cli_ok(&["versions", "app"]);
    assert!(
        versions
            .lines()
            .any(|line| line.starts_with('*') && line.contains(" 2 ")),
        "{versions}"
    );
    assert_eq!(versions.lines().count(), 3, "{versions}");

    server.cli_ok(&["rollback", "app", "1"]);
    assert_eq!(get(&server, "/fn/app").await.text(), "hello from wok\n");
    let output = server.cli(&["rollback", "app", "9"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("no version 9"),
        "{}",
        output.stderr()
    );

    let listed = server.cli_ok(&["ls"]);
    assert!(
        listed.contains("app") && listed.contains("/fn/app"),
        "{listed}"
    );

    server.cli_ok(&["rm", "app"]);
    let answer = get(&server, "/fn/app").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (404, "function_not_found")
    );
    let output = server.cli(&["rm", "app"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("does not exist"),
        "{}",
        output.stderr()
    );

    // A new deploy under the same name continues the numbering.
    deploy(&server, "app", guests::HELLO, &[]);
    let info = send(control(&server, Method::GET, "/v1/functions/app"))
        .await
        .json();
    assert_eq!(info["version"], 3);
}

#[tokio::test]
async fn a_failed_deploy_leaves_the_previous_version_serving() {
    let server = server();
    deploy(&server, "app", guests::HELLO, &[]);
    let answer = deploy_bytes(&server, "app", b"\0asm\x01\0\0\0".to_vec(), "").await;
    assert_eq!(answer.status, 400);
    assert_eq!(get(&server, "/fn/app").await.text(), "hello from wok\n");
    let versions = send(control(&server, Method::GET, "/v1/functions/app/versions"))
        .await
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_switches_atomically_while_requests_run() {
    let server = server();
    deploy(&server, "app", guests::HELLO, &[]);
    let url = format!("{}/fn/app", server.url);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, stop) = (url.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client = http();
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = send(client.get(&url)).await;
                answers.push((answer.status, answer.text()));
            }
            answers
        }));
    }
    let server = std::sync::Arc::new(server);
    for guest in [guests::COUNTER, guests::HELLO, guests::COUNTER] {
        let server = server.clone();
        tokio::task::spawn_blocking(move || deploy(&server, "app", guest, &[]))
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = 0;
    for task in load {
        for (status, body) in task.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            assert!(
                body == "hello from wok\n" || body == "1",
                "a request saw {body:?}"
            );
            seen += 1;
        }
    }
    assert!(seen > 0);
    assert_eq!(get(&server, "/fn/app").await.text(), "1");
}
