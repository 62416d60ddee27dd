//! What a connection may hold: timeouts for headers, idle keep-alives and
//! slow bodies, the connection cap and its shedding, and JSON answers for
//! requests hyper cannot parse.
use crate::*;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(server: &WokServer) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or `limit` passes);
/// returns what it sent and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return (received, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_while_a_healthy_client_is_served() {
    let server = WokServer::start_with(
        WOK,
        &[
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "2s",
            "--min-body-rate",
            "1KiB",
        ],
    );
    let address = address(&server);
    let token = server.admin_token();

    // Silent connections, slowloris (a header byte every 500 ms), idle
    // keep-alives (one request, then nothing) and trickled bodies.
    let mut attackers = Vec::new();
    for index in 0..2000 {
        if index % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let address = address.clone();
        let token = token.clone();
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            let kind = index % 4;
            let started = Instant::now();
            match kind {
                0 => {}
                1 => {
                    for byte in b"GET /healthz HTTP/1.1\r\nHost: wok\r\n".iter() {
                        if stream.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                2 => {
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wok\r\n\r\n")
                        .await
                        .unwrap();
                }
                _ => {
                    let head = format!(
                        "PUT /v1/kv/slow/k HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
                    );
                    stream.write_all(head.as_bytes()).await.unwrap();
                    // A byte every 2 s: far below 1 KiB a second.
                    let (mut reader, mut writer) = stream.into_split();
                    let trickle = tokio::spawn(async move {
                        while writer.write_all(b"x").await.is_ok() {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    });
                    let mut received = Vec::new();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        reader.read_to_end(&mut received),
                    )
                    .await;
                    trickle.abort();
                    return (kind, started.elapsed(), received);
                }
            }
            let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(60)).await;
            assert!(closed, "kind {kind}: still open after 60 s");
            (kind, started.elapsed(), received)
        }));
    }

    // Meanwhile a healthy client keeps being served.
    let client = http();
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(14) {
        let answer = send(client.get(format!("{}/healthz", server.url))).await;
        assert_eq!((answer.status, answer.text().as_str()), (200, "ok\n"));
        served += 1;
    }
    assert!(served > 10, "only {served} healthy requests were served");

    for attacker in attackers {
        let (kind, lasted, received) = attacker.await.unwrap();
        let text = String::from_utf8_lossy(&received);
        match kind {
            // Closed without an answer, at the header timeout.
            0 | 1 => {
                assert!(received.is_empty(), "kind {kind}: {text}");
                assert!(lasted < Duration::from_secs(10), "kind {kind}: {lasted:?}");
            }
            2 => {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                assert!(lasted < Duration::from_secs(10), "idle: {lasted:?}");
            }
            _ => {
                assert!(
                    text.starts_with("HTTP/1.1 408"),
                    "slow body after {lasted:?}: {text}"
                );
                assert!(text.contains("\"request_timeout\""), "{text}");
                assert!(
                    lasted < Duration::from_secs(30),
                    "a slow body was held {lasted:?}"
                );
            }
        }
    }
    for (reason, at_least) in [("header", 1000.0), ("idle", 500.0), ("body", 500.0)] {
        let counted = metric(
            &server,
            &format!("wok_connections_timed_out_total{{reason=\"{reason}\"}}"),
        )
        .await;
        assert!(counted >= at_least, "{reason}: {counted}");
    }
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_refuse() {
    let server = WokServer::start_with(WOK, &["--max-connections", "20"]);
    deploy(&server, "slow", guests::SLEEP, &[]);
    deploy(&server, "stream", guests::STREAM, &[]);
    let address = address(&server);

    // Twenty idle connections do not keep a new client out: the oldest
    // idle one is closed to make room.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = send(http().get(format!("{}/healthz", server.url))).await;
    assert_eq!(answer.status, 200);
    let (_, closed) = read_until_closed(&mut idle[0], Duration::from_secs(5)).await;
    assert!(closed, "the oldest idle connection was closed to make room");
    drop(idle);

    // Twenty busy connections: a new one is refused with a 503. Nineteen
    // are seen running (the metrics take a connection, so they are read
    // before the cap is reached), then the twentieth; a busy machine must
    // not make them look idle.
    let mut busy = Vec::new();
    let open_busy = async || {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /fn/slow?ms=8000 HTTP/1.1\r\nHost: wok\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        stream
    };
    for _ in 0..19 {
        busy.push(open_busy().await);
    }
    wait_for(
        "nineteen requests running",
        Duration::from_secs(20),
        || async { (metric(&server, "wok_instances_in_flight").await >= 19.0).then_some(()) },
    )
    .await;
    // The twentieth: a response larger than the socket's buffers, unread
    // once its status line is in, so it is seen being served (a request
    // the server has not read yet would look idle on a loaded machine).
    let mut streaming = TcpStream::connect(&address).await.unwrap();
    streaming
        .write_all(
            b"GET /fn/stream?bytes=67108864 HTTP/1.1\r\nHost: wok\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), streaming.read_exact(&mut head))
        .await
        .expect("the streamed response starts")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut refused = TcpStream::connect(&address).await.unwrap();
    let (answer, closed) = read_until_closed(&mut refused, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    // The busy ones were served.
    for mut stream in busy {
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
        let answer = String::from_utf8_lossy(&answer).to_string();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("slept 8000\n"), "{answer}");
    }
    drop(streaming);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(metric(&server, "wok_connections_shed_total{how=\"closed_idle\"}").await >= 1.0);
    assert!(metric(&server, "wok_connections_shed_total{how=\"refused\"}").await >= 1.0);
}

/// A response the client has not read yet is still being served: at the
/// cap, an idle connection makes room, not one whose answer is still in
/// the server's buffers.
#[tokio::test]
async fn at_the_connection_cap_an_unread_response_is_not_cut() {
    let server = WokServer::start_with(WOK, &["--max-connections", "2"]);
    let address = address(&server);
    let token = server.admin_token();
    // A page of documents of 6 MB: one body, past what the kernel buffers
    // for a socket (about 3 MB on loopback), so the rest of it waits in
    // the server once the page is made.
    let filler = "x".repeat(100_000);
    for n in 0..60 {
        let put = send(
            control(
                &server,
                reqwest::Method::PUT,
                &format!("/v1/docs/big/d{n:02}"),
            )
            .json(&serde_json::json!({ "filler": filler })),
        )
        .await;
        assert_eq!(put.status, 201, "{}", put.text());
    }
    // Wait until the control requests' connections are gone.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A client that does not read it (a small receive window).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut download = socket.connect(address.parse().unwrap()).await.unwrap();
    download
        .write_all(
            format!(
                "GET /v1/docs/big?limit=100 HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The cap is reached, then passed: the idle one makes room.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut newer = TcpStream::connect(&address).await.unwrap();
    newer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wok\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut newer, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(closed, "the idle connection made room");

    // The page is whole.
    let mut received = Vec::new();
    let mut buffer = [0u8; 65536];
    let body = loop {
        let read = tokio::time::timeout(Duration::from_secs(10), download.read(&mut buffer))
            .await
            .expect("the answer goes on")
            .unwrap();
        assert!(
            read > 0,
            "the answer was cut after {} bytes",
            received.len()
        );
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            if received.len() >= end + 4 + length {
                break received[end + 4..].to_vec();
            }
        }
    };
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["documents"].as_array().map(Vec::len), Some(60));
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_the_json_error_body() {
    let server = server();
    let address = address(&server);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: wok\r\n\r\n", "a".repeat(70_000));
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: wok\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    for (request, status, code) in [
        (
            b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
            "400",
            "invalid_request",
        ),
        (long_uri.into_bytes(), "414", "uri_too_long"),
        (big_header.into_bytes(), "431", "headers_too_large"),
    ] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let _ = stream.write_all(&request).await;
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(closed);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(body).expect(&answer);
        assert_eq!(body["error"]["code"], code, "{answer}");
    }

    // A method a path does not take.
    for (method, path) in [
        (reqwest::Method::PATCH, "/v1/functions"),
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::DELETE, "/metrics"),
    ] {
        let answer = send(control(&server, method.clone(), path)).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.error_code(), "method_not_allowed", "{method} {path}");
        assert!(answer.header("allow").contains("GET"), "{method} {path}");
    }
}
