//! A realtime client: a WebSocket to `/v1/realtime`, JSON messages, the
//! server's close read to its end.
use crate::{Endpoint, control, send};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(server: &impl Endpoint, token: &str) -> Socket {
    let url = format!(
        "{}/v1/realtime?access_token={token}",
        server.url().replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(url.into_client_request().expect("a URL"))
        .await
        .expect("the WebSocket opens");
    socket
}

pub async fn send_json(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("the message goes out");
}

/// The next JSON message (at most 20 s); panics at a close.
pub async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Reads what the server sent until its close frame (at most 30 s): the
/// frame, and how many messages came before it.
pub async fn read_to_close(socket: &mut Socket) -> (CloseFrame, usize) {
    let mut messages = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the server closes within 30 s");
        match message {
            Some(Ok(Message::Text(_))) => messages += 1,
            Some(Ok(Message::Close(frame))) => {
                return (frame.expect("a close frame with a reason"), messages);
            }
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// Publishes 400 messages of 4 kB to `topic` at once.
pub async fn publish_burst(server: &impl Endpoint, topic: &str) {
    let payload = "x".repeat(4000);
    let messages: Vec<Value> = (0..400).map(|_| json!({"data": payload})).collect();
    let answer = send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/topics/{topic}/_batch"),
        )
        .json(&json!({"messages": messages})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
}
