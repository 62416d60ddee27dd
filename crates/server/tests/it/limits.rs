use crate::*;

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

#[tokio::test]
async fn failing_guests_get_clear_errors_and_hurt_nobody_else() {
    let server = app();
    deploy(&server, "hello", guests::HELLO, &[]).await;
    let limits = ["--timeout", "1s", "--memory", "32MiB"];
    for (name, guest) in [
        ("trap", guests::TRAP),
        ("spin", guests::SPIN),
        ("alloc", guests::ALLOC),
        ("deep", guests::STACK_OVERFLOW),
    ] {
        deploy(&server, name, guest, &limits).await;
    }

    // A steady load against the healthy function, during all the failures.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, stop) = (format!("{}/fn/hello", server.url), stop.clone());
        load.push(tokio::spawn(async move {
            let client = http();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let answer = send(client.get(&url)).await;
                if answer.status == 200 && answer.body == b"hello from wok\n" {
                    ok += 1;
                } else {
                    failed.push((answer.status, answer.text()));
                }
            }
            (ok, failed)
        }));
    }

    let expected = [
        ("trap", 502, "function_trap"),
        ("spin", 504, "function_timeout"),
        ("alloc", 502, "function_out_of_memory"),
        ("deep", 502, "function_stack_overflow"),
    ];
    let mut failures = Vec::new();
    for round in 0..2 {
        let calls = expected.iter().map(|(name, _, _)| {
            let url = format!("{}/fn/{name}", server.url);
            async move { send(http().get(url)).await }
        });
        let answers = futures::future::join_all(calls).await;
        for ((name, status, code), answer) in expected.iter().zip(answers) {
            assert_eq!(
                answer.status,
                *status,
                "round {round} {name}: {}",
                answer.text()
            );
            assert_eq!(answer.error_code(), *code, "round {round} {name}");
            failures.push(answer.header("x-wok-invocation-id"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut healthy = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(
            failed.is_empty(),
            "the healthy function saw errors: {failed:?}"
        );
        healthy += ok;
    }
    assert!(healthy > 0);

    // Each failure's record names the same outcome.
    let records = wait_for_records(&server, healthy as usize + failures.len()).await;
    for (index, id) in failures.iter().enumerate() {
        let record = records
            .iter()
            .find(|r| r["id"] == id.as_str())
            .expect("a record per failure");
        assert_eq!(record["outcome"], expected[index % 4].2, "{record}");
    }
    let alloc = records.iter().find(|r| r["function"] == "alloc").unwrap();
    let peak = alloc["peak_memory_bytes"].as_u64().unwrap();
    assert!(
        peak > 16 << 20 && peak <= 32 << 20,
        "peak memory {peak} is near the 32MiB limit"
    );
}

#[tokio::test]
async fn concurrency_beyond_the_limit_and_queue_gets_429() {
    let server = app();
    deploy(
        &server,
        "slow",
        guests::SLEEP,
        &["--max-concurrency", "1", "--max-queue", "1"],
    )
    .await;
    let calls = (0..3).map(|_| {
        let url = format!("{}/fn/slow?ms=1500", server.url);
        async move { send(http().get(url)).await }
    });
    let answers = futures::future::join_all(calls).await;
    let mut statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 429]);
    let refused = answers.iter().find(|answer| answer.status == 429).unwrap();
    assert_eq!(refused.error_code(), "too_many_requests");
    assert_eq!(refused.header("retry-after"), "1");
}

#[tokio::test]
async fn request_and_response_sizes_are_limited() {
    let server = app();
    deploy(
        &server,
        "echo",
        guests::ECHO,
        &["--max-request-body", "1KiB"],
    )
    .await;
    deploy(
        &server,
        "stream",
        guests::STREAM,
        &["--max-response-body", "1MiB"],
    )
    .await;
    let answer = send(
        http()
            .post(format!("{}/fn/echo", server.url))
            .body(vec![b'x'; 2048]),
    )
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "payload_too_large")
    );
    let answer = send(
        http()
            .post(format!("{}/fn/echo", server.url))
            .body(vec![b'x'; 1000]),
    )
    .await;
    assert_eq!((answer.status, answer.body.len()), (200, 1000));

    let small = send(http().get(format!("{}/fn/stream?bytes=1000000", server.url))).await;
    assert_eq!((small.status, small.body.len()), (200, 1_000_000));
    let response = http()
        .get(format!("{}/fn/stream?bytes=3000000", server.url))
        .send()
        .await
        .unwrap();
    assert!(
        response.bytes().await.is_err(),
        "a response over the limit is cut, not delivered whole"
    );
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_still_times_out() {
    let server = app();
    deploy(&server, "slow", guests::SLEEP, &["--timeout", "1s"]).await;
    let started = std::time::Instant::now();
    let answer = get(&server, "/fn/slow?ms=30000").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (504, "function_timeout"),
        "{}",
        answer.text()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    let answer = get(&server, "/fn/slow?ms=10").await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "slept 10\n"));
}

/// Sends `request` on `stream` and reads one response head and body
/// (`Content-Length` bodies only).
fn exchange(stream: &mut std::net::TcpStream, request: &[u8]) -> String {
    use std::io::{Read, Write};
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "closed before a whole response: {received:?}");
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |length| length.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[test]
fn a_request_refused_before_its_body_is_read_closes_the_connection() {
    // boto3 sends `Expect: 100-continue` and, after a second without an
    // answer, the body anyway: bytes the server did not read must not be
    // taken for the client's next request, so such a refusal says
    // `Connection: close` and the client opens a new connection.
    let server = app();
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = server.admin_token();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let refused = exchange(
        &mut stream,
        b"PUT /v1/kv/s/k HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer wrong\r\n\
          Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );

    // A body that was read leaves the connection open for the next request.
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let put = format!(
        "PUT /v1/kv/s/k HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 5\r\n\r\nvalue"
    );
    let written = exchange(&mut stream, put.as_bytes());
    assert!(written.starts_with("HTTP/1.1 200"), "{written}");
    assert!(
        !written.to_ascii_lowercase().contains("connection: close"),
        "{written}"
    );
    let get =
        format!("GET /v1/kv/s/k HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\r\n");
    let read = exchange(&mut stream, get.as_bytes());
    assert!(
        read.starts_with("HTTP/1.1 200") && read.ends_with("value"),
        "{read}"
    );
}

/// Large JSON bodies share a budget, and one project holds at most its
/// share of it: a project's slow or many bodies never keep another's out.
#[tokio::test]
async fn one_projects_large_bodies_never_keep_another_projects_out() {
    use tokio::io::AsyncWriteExt;
    let server = app();
    create_project(&server, "other").await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = server.admin_token();
    // A 10 MiB batch of the default project that is slow to come.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/docs/_batch HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"writes\": [",
        10 << 20
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The same project's next large body finds its share taken.
    let started = std::time::Instant::now();
    let refused = send(
        control(&server, reqwest::Method::POST, "/v1/docs/_batch").json(&big_batch(2, 100_000)),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (429, "too_many_requests"),
        "{}",
        refused.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    // Another project's 5 MB batch goes through meanwhile.
    let other = send(
        control(
            &server,
            reqwest::Method::POST,
            "/v1/projects/other/docs/_batch",
        )
        .json(&big_batch(5, 1_000_000)),
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.text());
    drop(slow);
}

/// A large JSON body that holds its part of the budget has to keep
/// coming: 64 KiB a second after 10 s, else 408.
#[tokio::test]
async fn a_large_json_body_that_trickles_is_cut_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = app();
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = server.admin_token();
    let body = big_batch(1, 100_000).to_string();
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/docs/_batch HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // 4 KB a second: above the connection's 1 KiB, below 64 KiB.
    let trickle = tokio::spawn(async move {
        for chunk in body.as_bytes().chunks(4000) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buffer))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cut after {:?}",
        started.elapsed()
    );
    trickle.abort();
}

/// A document batch of `documents` documents of `size` bytes each.
fn big_batch(documents: usize, size: usize) -> serde_json::Value {
    let filler = "x".repeat(size);
    let writes: Vec<_> = (0..documents)
        .map(|n| {
            serde_json::json!({
                "op": "set", "collection": "big", "id": format!("d{n}"),
                "data": {"filler": filler},
            })
        })
        .collect();
    serde_json::json!({ "writes": writes })
}
