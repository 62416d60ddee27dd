use crate::*;

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
