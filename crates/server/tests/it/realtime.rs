//! Realtime push over one WebSocket: topic subscriptions, live document
//! queries (snapshot, then added/modified/removed), resuming after a
//! reconnect, access rules on every event, and slow clients cut off.
use crate::*;
use test_support::realtime::*;

use futures::{SinkExt, StreamExt};

use serde_json::{Value, json};

use tokio_tungstenite::tungstenite::Message;

async fn put_doc(server: &TestApp, id: &str, data: Value) {
    let answer = send(
        control(
            server,
            reqwest::Method::PUT,
            &format!("/v1/docs/orders/{id}"),
        )
        .json(&data),
    )
    .await;
    assert!(
        answer.status == 200 || answer.status == 201,
        "{}",
        answer.text()
    );
}

#[tokio::test]
async fn a_live_query_sends_a_snapshot_then_every_change_and_resumes_after_a_reconnect() {
    let server = app();
    let token = server.admin_token();
    put_doc(&server, "a", json!({"status": "open", "total": 5})).await;
    put_doc(&server, "b", json!({"status": "closed"})).await;
    let mut socket = connect(&server, &token).await;
    let subscribe = json!({
        "type": "subscribe",
        "id": "open-orders",
        "collection": "orders",
        "query": {"where": ["status", "==", "open"]},
    });
    send_json(&mut socket, subscribe.clone()).await;
    let snapshot = next(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["id"], "open-orders");
    assert_eq!(
        snapshot["documents"],
        json!([{"id": "a", "version": 1, "data": {"status": "open", "total": 5}}])
    );
    assert_eq!(next(&mut socket).await["type"], "subscribed");

    let expect = async |socket: &mut Socket, change: &str, id: &str| -> Value {
        let message = next(socket).await;
        assert_eq!(
            (
                message["type"].as_str(),
                message["change"].as_str(),
                message["document"]["id"].as_str()
            ),
            (Some("change"), Some(change), Some(id)),
            "{message}"
        );
        message
    };
    put_doc(&server, "c", json!({"status": "open"})).await;
    expect(&mut socket, "added", "c").await;
    let patch =
        |total: Value| control(&server, reqwest::Method::PATCH, "/v1/docs/orders/a").json(&total);
    assert_eq!(send(patch(json!({"total": 6}))).await.status, 200);
    let modified = expect(&mut socket, "modified", "a").await;
    assert_eq!(modified["document"]["data"]["total"], 6);
    // Stops matching: removed, though the document lives on.
    assert_eq!(send(patch(json!({"status": "closed"}))).await.status, 200);
    expect(&mut socket, "removed", "a").await;
    let deleted = send(control(
        &server,
        reqwest::Method::DELETE,
        "/v1/docs/orders/c",
    ))
    .await;
    assert_eq!(deleted.status, 204);
    expect(&mut socket, "removed", "c").await;
    // A change that matches neither before nor after is not sent.
    put_doc(&server, "b", json!({"status": "closed", "note": 1})).await;
    put_doc(&server, "d", json!({"status": "open"})).await;
    let last = expect(&mut socket, "added", "d").await;
    let position = last["position"].as_i64().unwrap();

    // Disconnected meanwhile: resumed from the last position, nothing lost.
    socket.close(None).await.unwrap();
    put_doc(&server, "e", json!({"status": "open"})).await;
    let mut socket = connect(&server, &token).await;
    let mut resume = subscribe;
    resume["after"] = json!(position);
    send_json(&mut socket, resume).await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    expect(&mut socket, "added", "e").await;

    // Bad subscriptions get clear errors and leave the connection open.
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "x", "collection": "Bad"}),
    )
    .await;
    let error = next(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("invalid_name"))
    );
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "y", "collection": "orders", "query": {"wher": 1}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["code"], "invalid_query");
    socket.send(Message::Text("nonsense".into())).await.unwrap();
    assert_eq!(next(&mut socket).await["code"], "invalid_message");
    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn a_client_that_closes_gets_the_closing_handshake() {
    let server = app();
    let mut socket = connect(&server, &server.admin_token()).await;
    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");
    let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    };
    socket.send(Message::Close(Some(frame))).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an answer within 10 s");
    match reply {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("no closing frame came back: {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_with_a_reason() {
    let server = app();
    let mut socket = connect(&server, &server.admin_token()).await;
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "t", "topic": "firehose"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    // Publish far more than the connection may buffer, without reading,
    // until the server gives up on the client.
    let slow = "wok_realtime_closed_total{reason=\"slow_consumer\"}";
    let mut bursts = 0;
    while metric(&server, slow).await < 1.0 {
        publish_burst(&server, "firehose").await;
        bursts += 1;
        assert!(
            bursts < 200,
            "the server kept buffering for a client that does not read"
        );
    }
    // Reading now: what was sent already, then the close frame with its
    // reason (it waits a few seconds for a client that reads again).
    let (close, events) = read_to_close(&mut socket).await;
    assert_eq!(u16::from(close.code), 4008);
    assert!(close.reason.contains("slow consumer"), "{}", close.reason);
    assert!(
        events < bursts * 400,
        "the server stopped before sending everything"
    );
    // The server is fine: a new connection works.
    let mut socket = connect(&server, &server.admin_token()).await;
    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn a_live_query_with_too_large_a_snapshot_is_refused_with_a_reason() {
    let server = app();
    // 9 documents of ~1 MB: more than a snapshot (4 MiB) or a REST page
    // (8 MiB) may hold.
    let big = "y".repeat(1_000_000);
    for id in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] {
        put_doc(&server, id, json!({"status": "open", "blob": big})).await;
    }
    let mut socket = connect(&server, &server.admin_token()).await;
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "all", "collection": "orders",
               "query": {"where": ["status", "==", "open"]}}),
    )
    .await;
    let refused = next(&mut socket).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("invalid_query")),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("narrow"),
        "{refused}"
    );
    // A narrower query gets its snapshot on the same connection.
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "one", "collection": "orders",
               "query": {"where": ["blob", "==", "nothing"]}}),
    )
    .await;
    let snapshot = next(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    // A REST page of the same documents ends early, with a cursor.
    let page = send(
        control(&server, reqwest::Method::POST, "/v1/docs/orders/_query")
            .json(&json!({"limit": 9})),
    )
    .await;
    let page = page.json();
    let shown = page["documents"].as_array().unwrap().len();
    assert!((1..9).contains(&shown), "{shown} documents in one page");
    assert!(page["next_cursor"].is_string());
}

/// A WebSocket opened by hand, to send frames no client library sends.
async fn raw_socket(server: &TestApp) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /v1/realtime HTTP/1.1\r\nHost: wok\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        server.admin_token()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first];
    match payload.len() {
        length @ 0..=125 => bytes.push(0x80 | length as u8),
        length @ 126..=65535 => {
            bytes.push(0x80 | 126);
            bytes.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            bytes.push(0x80 | 127);
            bytes.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    let mask = [1u8, 2, 3, 4];
    bytes.extend_from_slice(&mask);
    bytes.extend(
        payload
            .iter()
            .enumerate()
            .map(|(at, byte)| byte ^ mask[at % 4]),
    );
    bytes
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_their_codes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = app();
    for (sent, code) in [
        // A text frame that is not UTF-8.
        (frame(0x81, &[0xff, 0xfe, 0xfd]), 1007u16),
        // A message over 64 KiB.
        (frame(0x81, &vec![b' '; 100 << 10]), 1009),
        // Reserved bits set.
        (frame(0xf1, b"{}"), 1002),
    ] {
        let mut stream = raw_socket(&server).await;
        let _ = stream.write_all(&sent).await;
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
            .await
            .expect("the server closes within 10 s");
        // A close frame from the server: 0x88, length, then the code.
        let close = received
            .windows(4)
            .find(|window| window[0] == 0x88)
            .unwrap_or_else(|| panic!("no close frame for code {code}: {received:?}"));
        assert_eq!(u16::from_be_bytes([close[2], close[3]]), code);
    }
}

#[tokio::test]
async fn revoking_a_key_closes_its_sockets_and_a_rule_change_ends_its_subscriptions() {
    let server = app();
    let public = create_key(&server, "public", "app").await;
    let rule = |access: &str| {
        control(&server, reqwest::Method::PUT, "/v1/topics/chat/_access")
            .json(&json!({"access": access}))
    };
    assert_eq!(send(rule("public-read")).await.status, 200);
    let mut socket = connect(&server, &public).await;
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "chat", "topic": "chat"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    // Made private: the subscription ends at once, with nothing published.
    assert_eq!(send(rule("private")).await.status, 200);
    let ended = next(&mut socket).await;
    assert_eq!(
        (
            ended["type"].as_str(),
            ended["id"].as_str(),
            ended["code"].as_str()
        ),
        (Some("error"), Some("chat"), Some("forbidden")),
        "{ended}"
    );
    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");

    // Revoked: the socket closes with 1008 and a reason.
    let keys = send(control(&server, reqwest::Method::GET, "/v1/keys"))
        .await
        .json();
    let id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == "app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = send(control(
        &server,
        reqwest::Method::DELETE,
        &format!("/v1/projects/default/keys/{id}"),
    ))
    .await;
    assert_eq!(revoked.status, 204, "{}", revoked.text());
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s of the revocation");
        match message {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame"),
            Some(Ok(_)) => continue,
            other => panic!("ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("revoked"), "{}", close.reason);
}

#[tokio::test]
async fn a_plain_request_to_the_realtime_route_is_told_what_is_missing() {
    let app = app();
    check(
        &app,
        "GET /v1/realtime",
        expect_test::expect!["400 invalid_request: Connection header did not include 'upgrade'"],
    )
    .await;
}
