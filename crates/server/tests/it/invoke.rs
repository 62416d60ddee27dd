use crate::*;

use std::io::{Read, Write};

#[tokio::test]
async fn wasi_http_0_3_components_run() {
    let server = app();
    deploy(&server, "p3", guests::HELLO_P3, &[]).await;
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
    deploy(&server, "p3-reuse", guests::HELLO_P3, &["--reuse"]).await;
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
    let server = app();
    deploy(&server, "echo", guests::ECHO, &[]).await;
    deploy(&server, "p3", guests::HELLO_P3, &[]).await;
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
async fn a_client_leaving_mid_stream_frees_the_function_and_is_recorded_as_such() {
    let server = app();
    // One request at a time and no queue: the next request is served only
    // once the abandoned invocation has fully ended.
    deploy(
        &server,
        "stream",
        guests::STREAM,
        &["--max-concurrency", "1", "--max-queue", "0"],
    )
    .await;
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
    let server = app();
    let allowed = address.to_string();
    deploy(
        &server,
        "allowed",
        guests::OUTBOUND,
        &["--allow-outbound", &allowed],
    )
    .await;
    deploy(
        &server,
        "denied",
        guests::OUTBOUND,
        &["--allow-outbound", "example.com"],
    )
    .await;
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
async fn a_fresh_instance_serves_every_request_unless_reuse_is_chosen() {
    let server = app();
    deploy(&server, "fresh", guests::COUNTER, &[]).await;
    deploy(
        &server,
        "reused",
        guests::COUNTER,
        &["--reuse", "--reuse-max-requests", "3"],
    )
    .await;
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
