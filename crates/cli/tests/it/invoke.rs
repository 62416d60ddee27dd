use crate::*;
use std::io::{Read, Write};

#[tokio::test]
async fn hello_answers_over_http_and_through_the_cli() {
    let server = server();
    deploy(&server, "hello", guests::HELLO, &[]);
    let answer = get(&server, "/fn/hello").await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "hello from wok\n")
    );
    assert_eq!(answer.header("x-wok-invocation-id").len(), 32);
    assert_eq!(server.cli_ok(&["invoke", "hello"]), "hello from wok\n");

    let answer = get(&server, "/fn/nobody").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (404, "function_not_found")
    );
    assert!(answer.text().contains("nobody"));
    let output = server.cli(&["invoke", "nobody"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("function_not_found"),
        "{}",
        output.stderr()
    );
}

#[tokio::test]
async fn wasi_http_0_3_components_run() {
    let server = server();
    deploy(&server, "p3", guests::HELLO_P3, &[]);
    let answer = get(&server, "/fn/p3/anything").await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "hello from wasi 0.3\n")
    );
    let info = send(control(&server, reqwest::Method::GET, "/v1/functions/p3"))
        .await
        .json();
    assert_eq!(info["world"], "wasi:http@0.3");

    // Fresh instances by default; with --reuse, an instance serves again.
    // (An instance goes back to the pool when its call has ended, which can
    // be just after the client has read the whole answer: the next request
    // may then start a second instance, so reuse is asserted, not its turn.)
    for _ in 0..3 {
        assert_eq!(get(&server, "/fn/p3/count").await.text(), "1");
    }
    deploy(&server, "p3-reuse", guests::HELLO_P3, &["--reuse"]);
    let mut counts = Vec::new();
    for _ in 0..10 {
        counts.push(get(&server, "/fn/p3-reuse/count").await.text());
        if counts.last().is_some_and(|count| count != "1") {
            break;
        }
    }
    assert_eq!(counts.first().map(String::as_str), Some("1"));
    assert!(
        counts.iter().any(|count| count == "2"),
        "no instance served twice in ten requests: {counts:?}"
    );
}

#[tokio::test]
async fn an_error_code_answer_is_a_502_and_recorded_as_such() {
    let server = server();
    deploy(&server, "echo", guests::ECHO, &[]);
    deploy(&server, "p3", guests::HELLO_P3, &[]);
    let mut ids = Vec::new();
    for path in ["/fn/echo/fail", "/fn/p3/fail"] {
        let answer = get(&server, path).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (502, "function_no_response"),
            "{path}"
        );
        assert!(answer.text().contains("error code"), "{}", answer.text());
        ids.push(answer.header("x-wok-invocation-id"));
    }
    let records = wait_for_records(&server, 2).await;
    for id in &ids {
        let record = records
            .iter()
            .find(|record| record["id"] == id.as_str())
            .unwrap();
        assert_eq!(record["outcome"], "function_no_response");
    }
}

#[tokio::test]
async fn method_path_query_headers_and_body_reach_the_guest_unchanged() {
    let server = server();
    deploy(&server, "echo", guests::ECHO, &[]);
    let body: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let answer = send(
        http()
            .patch(format!("{}/fn/echo/a/b%20c?x=1&y=%2F&x=2", server.url))
            .header("x-custom", "value one")
            .body(body.clone()),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-echo-method"), "PATCH");
    assert_eq!(
        answer.header("x-echo-path-with-query"),
        "/a/b%20c?x=1&y=%2F&x=2"
    );
    let headers: Vec<(String, String)> =
        serde_json::from_str(&answer.header("x-echo-headers")).unwrap();
    assert!(
        headers.contains(&("x-custom".to_owned(), "value one".to_owned())),
        "{headers:?}"
    );
    assert_eq!(answer.body, body, "the body came back unchanged");

    let output = server.cli_ok(&[
        "invoke",
        "echo",
        "--data",
        "from the cli",
        "--path",
        "/p?q=1",
        "-i",
    ]);
    assert!(output.contains("x-echo-method: POST"), "{output}");
    assert!(
        output.contains("x-echo-path-with-query: /p?q=1"),
        "{output}"
    );
    assert!(output.ends_with("from the cli"), "{output}");
}

#[tokio::test]
async fn environment_and_config_reach_the_guest() {
    let server = server();
    deploy(
        &server,
        "env",
        guests::ENV_CONFIG,
        &["--env", "GREETING=hi there", "--env", "MODE=test=1"],
    );
    let json = get(&server, "/fn/env").await.json();
    assert_eq!(json["env"]["GREETING"], "hi there");
    assert_eq!(json["env"]["MODE"], "test=1");
    assert_eq!(json["config"]["GREETING"], "hi there");
    assert_eq!(json["config"]["MODE"], "test=1");
    // Nothing of the host's environment leaks in.
    assert!(
        json["env"].get("HOME").is_none() && json["env"].get("PATH").is_none(),
        "{json}"
    );
}

fn server_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_one_gib_response_streams_in_bounded_memory() {
    let server = server();
    deploy(&server, "stream", guests::STREAM, &["--timeout", "300s"]);
    let before = server_rss_kib(server.pid());
    let total: u64 = 1 << 30;
    let mut response = http()
        .get(format!(
            "{}/fn/stream?bytes={total}&chunk=65536",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pattern: Vec<u8> = (0..26 * 4096).map(|i| b'a' + (i % 26) as u8).collect();
    let (mut received, mut peak) = (0u64, before);
    while let Some(chunk) = response.chunk().await.unwrap() {
        // Byte i is b'a' + i % 26: compare against the pattern at the right phase.
        let mut offset = 0;
        while offset < chunk.len() {
            let phase = ((received + offset as u64) % 26) as usize;
            let len = (chunk.len() - offset).min(pattern.len() - 26);
            assert_eq!(
                &chunk[offset..offset + len],
                &pattern[phase..phase + len],
                "byte {received}+{offset}"
            );
            offset += len;
        }
        received += chunk.len() as u64;
        if received % (64 << 20) < chunk.len() as u64 {
            peak = peak.max(server_rss_kib(server.pid()));
        }
    }
    assert_eq!(received, total);
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 256,
        "server memory grew by {growth_mib} MiB while streaming 1 GiB"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_frees_the_function_and_is_recorded_as_such() {
    let server = server();
    // One request at a time and no queue: the next request is served only
    // once the abandoned invocation has fully ended.
    deploy(
        &server,
        "stream",
        guests::STREAM,
        &["--max-concurrency", "1", "--max-queue", "0"],
    );
    let total: u64 = 1 << 30;
    let mut response = http()
        .get(format!(
            "{}/fn/stream?bytes={total}&chunk=65536",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response
        .headers()
        .get("x-wok-invocation-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);

    let records = wait_for_records(&server, 1).await;
    let record = records
        .iter()
        .find(|record| record["id"] == id.as_str())
        .expect("the abandoned invocation has a record");
    let sent = record["bytes_out"].as_u64().unwrap();
    assert!(sent > 0 && sent < total, "bytes_out {sent}");
    // The guest fails on the closed stream; that is not its own failure.
    assert_eq!(record["outcome"], "client_disconnected");

    let answer = get(&server, "/fn/stream?bytes=100").await;
    assert_eq!((answer.status, answer.body.len()), (200, 100));
    // A HEAD answer has no body on the wire: nobody left early.
    let head = http()
        .head(format!("{}/fn/stream?bytes=100", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let records = wait_for_records(&server, 3).await;
    let outcomes: Vec<_> = records
        .iter()
        .filter(|record| record["id"] != id.as_str())
        .map(|record| record["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "success"]);
}

#[tokio::test]
async fn outbound_http_reaches_only_allowed_hosts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
            );
        }
    });
    let server = server();
    let allowed = address.to_string();
    deploy(
        &server,
        "allowed",
        guests::OUTBOUND,
        &["--allow-outbound", &allowed],
    );
    deploy(
        &server,
        "denied",
        guests::OUTBOUND,
        &["--allow-outbound", "example.com"],
    );
    let url = format!("http://{address}/");
    let answer = get(&server, &format!("/fn/allowed?url={url}")).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "upstream 200 OK: upstream")
    );
    let started = std::time::Instant::now();
    let answer = get(&server, &format!("/fn/denied?url={url}")).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(
        answer.text().starts_with("outbound error"),
        "{}",
        answer.text()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "denial is immediate, not a hang"
    );
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the denied call never reached the host"
    );
}

#[tokio::test]
async fn guest_output_goes_to_the_function_logs_tagged_by_invocation() {
    let server = server();
    deploy(&server, "talk", guests::STDIO, &[]);
    // Concurrent invocations of one function: each line keeps its own id.
    let calls =
        (0..8).map(|_| async { get(&server, "/fn/talk").await.header("x-wok-invocation-id") });
    let ids = futures::future::join_all(calls).await;
    wait_for_records(&server, ids.len()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logs = loop {
        let logs = server.cli_ok(&["logs", "talk"]);
        if logs.lines().count() >= 3 * ids.len() || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(logs.lines().count(), 3 * ids.len(), "{logs}");
    for id in &ids {
        let lines: Vec<&str> = logs
            .lines()
            .filter(|line| line.contains(id.as_str()))
            .collect();
        assert_eq!(lines.len(), 3, "{logs}");
        assert!(lines[0].ends_with("stdout: to stdout, line one"), "{logs}");
        assert!(lines[1].ends_with("stdout: to stdout, line two"), "{logs}");
        assert!(lines[2].ends_with("stderr: to stderr"), "{logs}");
    }

    // --follow prints lines as they come.
    let mut follow = server
        .command(&["logs", "talk", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let third = get(&server, "/fn/talk").await.header("x-wok-invocation-id");
    let stdout = follow.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let found = (0..200).any(|_| {
        receiver
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_ok_and(|line| line.contains(&third))
    });
    follow.kill().unwrap();
    let _ = follow.wait();
    assert!(
        found,
        "wok logs --follow showed the new invocation's output"
    );
}

#[tokio::test]
async fn a_fresh_instance_serves_every_request_unless_reuse_is_chosen() {
    let server = server();
    deploy(&server, "fresh", guests::COUNTER, &[]);
    deploy(
        &server,
        "reused",
        guests::COUNTER,
        &["--reuse", "--reuse-max-requests", "3"],
    );
    for _ in 0..5 {
        assert_eq!(
            get(&server, "/fn/fresh").await.text(),
            "1",
            "no state survives between requests"
        );
    }
    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(get(&server, "/fn/reused").await.text());
    }
    assert_eq!(
        answers,
        ["1", "2", "3", "1", "2", "3", "1"],
        "an instance serves at most 3 requests"
    );
    // Instances are never shared between functions: `fresh` still starts at 1.
    assert_eq!(get(&server, "/fn/fresh").await.text(), "1");
    let records = wait_for_records(&server, 13).await;
    let cold = |function: &str| {
        records
            .iter()
            .filter(|r| r["function"] == function && r["cold"] == true)
            .count()
    };
    assert_eq!(cold("fresh"), 6);
    assert_eq!(cold("reused"), 3);
}
