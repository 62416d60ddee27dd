//! Realtime push over one WebSocket: topic subscriptions, live document
//! queries (snapshot, then added/modified/removed), resuming after a
//! reconnect, access rules on every event, and slow clients cut off.
use crate::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &WokServer, token: &str) -> Socket {
    let url = format!(
        "{}/v1/realtime?access_token={token}",
        server.url.replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(url.into_client_request().unwrap())
        .await
        .expect("the WebSocket opens");
    socket
}

async fn send_json(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message (bounded wait).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

async fn put_doc(server: &WokServer, id: &str, data: Value) {
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
    let server = server();
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
async fn topics_push_to_public_keys_only_as_their_access_rule_allows() {
    let server = server();
    let public = server
        .cli_ok(&["keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    let set_rule = |access: &str| {
        control(&server, reqwest::Method::PUT, "/v1/topics/chat/_access")
            .json(&json!({"access": access}))
    };
    let mut socket = connect(&server, &public).await;
    let subscribe = json!({"type": "subscribe", "id": "chat", "topic": "chat"});
    send_json(&mut socket, subscribe.clone()).await;
    let refused = next(&mut socket).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );

    assert_eq!(send(set_rule("public-read")).await.status, 200);
    send_json(&mut socket, subscribe).await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    let id = send(
        control(&server, reqwest::Method::POST, "/v1/topics/chat?key=room-1")
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = next(&mut socket).await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["event"]["id"], id.as_str());
    assert_eq!(event["event"]["data"], "hello");
    assert_eq!(event["event"]["key"], "room-1");

    // The rule is checked for every event: made private, the next is not sent.
    assert_eq!(send(set_rule("private")).await.status, 200);
    send(control(&server, reqwest::Method::POST, "/v1/topics/chat").body("secret")).await;
    let revoked = next(&mut socket).await;
    assert_eq!(
        (revoked["type"].as_str(), revoked["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{revoked}"
    );

    // No key, no connection.
    let url = format!("{}/v1/realtime", server.url.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_with_a_reason() {
    let server = server();
    let mut socket = connect(&server, &server.admin_token()).await;
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "t", "topic": "firehose"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    // Publish far more than the connection may buffer, without reading.
    let payload = "x".repeat(4000);
    for _ in 0..75 {
        let messages: Vec<Value> = (0..400).map(|_| json!({"data": payload})).collect();
        let answer = send(
            control(&server, reqwest::Method::POST, "/v1/topics/firehose/_batch")
                .json(&json!({"messages": messages})),
        )
        .await;
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    // Reading now: some events, then the close frame with its reason.
    let mut events = 0;
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the server closes within 30 s");
        match message {
            Some(Ok(Message::Text(_))) => events += 1,
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame with a reason"),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 4008);
    assert!(close.reason.contains("slow consumer"), "{}", close.reason);
    assert!(
        events < 30_000,
        "the server stopped before sending everything"
    );
    // The server is fine: a new connection works.
    let mut socket = connect(&server, &server.admin_token()).await;
    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");
}
