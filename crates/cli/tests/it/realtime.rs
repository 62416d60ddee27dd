//! Realtime push over one WebSocket: topic subscriptions, live document
//! queries (snapshot, then added/modified/removed), resuming after a
//! reconnect, access rules on every event, and slow clients cut off.
use crate::*;
use test_support::realtime::*;

use serde_json::json;

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

/// The server's resident memory, in bytes.
fn rss(server: &WokServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

#[tokio::test]
async fn clients_that_never_read_are_dropped_and_the_server_does_not_grow() {
    let server = server();
    let mut sockets = Vec::new();
    for index in 0..8 {
        let mut socket = connect(&server, &server.admin_token()).await;
        send_json(
            &mut socket,
            json!({"type": "subscribe", "id": format!("s{index}"), "topic": "firehose"}),
        )
        .await;
        assert_eq!(next(&mut socket).await["type"], "subscribed");
        sockets.push(socket);
    }
    let before = rss(&server);
    let mut peak = before;
    // 8 clients that never read again: 100 MB of messages for each.
    let started = std::time::Instant::now();
    for _ in 0..60 {
        publish_burst(&server, "firehose").await;
        peak = peak.max(rss(&server));
    }
    // Each is dropped (no close frame can reach a client that does not
    // read) within the write and close timeouts.
    let dropped = "wok_realtime_closed_total{reason=\"slow_consumer\"}";
    while metric(&server, dropped).await < 8.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all slow clients were dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss(&server));
    }
    loop {
        // The metrics request's own connection is the one left.
        if metric(&server, "wok_connections_open").await <= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sockets are still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        peak - before < 400 << 20,
        "the server grew by {} MiB for 8 clients that do not read",
        (peak - before) >> 20
    );
    drop(sockets);
}

/// All clients together hold at most `--realtime-buffer` unread: beyond,
/// one that does not read is closed with 1013 (try again later) before
/// its own buffer is full, and a client that reads goes on.
#[tokio::test]
async fn the_server_wide_realtime_buffer_closes_clients_that_do_not_read() {
    let server = WokServer::start_with(WOK, &["--realtime-buffer", "4MiB"]);
    let mut reader = connect(&server, &server.admin_token()).await;
    let mut idle = connect(&server, &server.admin_token()).await;
    for socket in [&mut reader, &mut idle] {
        send_json(
            socket,
            json!({"type": "subscribe", "id": "t", "topic": "firehose"}),
        )
        .await;
        assert_eq!(next(socket).await["type"], "subscribed");
    }
    let busy = "wok_realtime_closed_total{reason=\"server_busy\"}";
    let mut bursts = 0;
    let mut read = 0;
    while metric(&server, busy).await < 1.0 {
        publish_burst(&server, "firehose").await;
        bursts += 1;
        // The reader keeps up with every burst.
        for _ in 0..400 {
            assert_eq!(next(&mut reader).await["type"], "event");
            read += 1;
        }
        assert!(bursts < 50, "the server kept buffering past its budget");
    }
    // Cut off before its own 16 MiB were unread (that is 4008).
    let (close, _) = read_to_close(&mut idle).await;
    assert_eq!(u16::from(close.code), 1013, "{}", close.reason);
    assert!(close.reason.contains("server busy"), "{}", close.reason);
    // The reader was not touched.
    publish_burst(&server, "firehose").await;
    for _ in 0..400 {
        assert_eq!(next(&mut reader).await["type"], "event");
    }
    assert_eq!(read, bursts * 400);
    assert_eq!(
        metric(
            &server,
            "wok_realtime_closed_total{reason=\"slow_consumer\"}"
        )
        .await,
        0.0
    );
}
