//! What the `events` test guest records of each delivery it gets (into the
//! `received` key-value store of its project), read back; and publishing.
use crate::{Endpoint, control, send, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// One delivery, as the guest recorded it.
#[derive(Debug)]
pub struct Received {
    pub attempt: u32,
    pub kind: String,
    pub source: String,
    pub subject: String,
    pub key: String,
    pub content_type: String,
    /// CloudEvents' `time`.
    pub time: String,
    /// Who made the write the event logs (`ce-authtype`, `ce-authid`;
    /// empty when the event names nobody).
    pub auth_type: String,
    pub auth_id: String,
    pub body: String,
}

/// The delivery of event `id`, if the guest has it.
pub async fn received(server: &impl Endpoint, id: &str) -> Option<Received> {
    let answer = send(control(
        server,
        reqwest::Method::GET,
        &format!("/v1/kv/received/{id}"),
    ))
    .await;
    if answer.status == 404 {
        return None;
    }
    assert_eq!(answer.status, 200, "{}", answer.text());
    let text = answer.text();
    let mut lines = text.splitn(10, '\n');
    let mut next = || lines.next().unwrap_or_default().to_owned();
    Some(Received {
        attempt: next().parse().expect("an attempt number"),
        kind: next(),
        source: next(),
        subject: next(),
        key: next(),
        content_type: next(),
        time: next(),
        auth_type: next(),
        auth_id: next(),
        body: next(),
    })
}

/// Waits (at most 30 s) until the guest recorded the event `id`.
pub async fn delivered(server: &impl Endpoint, id: &str) -> Received {
    wait_for(
        &format!("event {id} delivered"),
        Duration::from_secs(30),
        || received(server, id),
    )
    .await
}

/// The deliveries the guest counted.
pub async fn delivery_count(server: &impl Endpoint) -> u64 {
    let answer = send(control(
        server,
        reqwest::Method::GET,
        "/v1/kv/received/count",
    ))
    .await;
    if answer.status == 404 {
        return 0;
    }
    answer.text().parse().expect("a count")
}

/// Waits (at most 30 s) until the guest counted at least `n` deliveries.
pub async fn deliveries(server: &impl Endpoint, n: u64) {
    wait_for(
        &format!("{n} deliveries"),
        Duration::from_secs(30),
        || async move { (delivery_count(server).await >= n).then_some(()) },
    )
    .await
}

/// The guest's log of deliveries, in order: (event id, ordering key,
/// body) each.
pub async fn delivery_log(server: &impl Endpoint) -> Vec<(String, String, String)> {
    let mut entries = Vec::new();
    for n in 1..=delivery_count(server).await {
        // The guest counts a delivery, then writes its log entry.
        let text = wait_for(
            &format!("log entry {n}"),
            Duration::from_secs(30),
            || async move {
                let answer = send(control(
                    server,
                    reqwest::Method::GET,
                    &format!("/v1/kv/received/log-{n:08}"),
                ))
                .await;
                (answer.status == 200).then(|| answer.text())
            },
        )
        .await;
        let mut parts = text.splitn(3, ' ');
        let mut next = || parts.next().unwrap_or_default().to_owned();
        entries.push((next(), next(), next()));
    }
    entries
}

/// Waits (at most 30 s) until a topic holds a message; its messages.
pub async fn topic_events(server: &impl Endpoint, topic: &str) -> Vec<Value> {
    wait_for(
        &format!("a message on {topic}"),
        Duration::from_secs(30),
        || async move {
            let page = send(control(
                server,
                reqwest::Method::GET,
                &format!("/v1/topics/{topic}/events"),
            ))
            .await;
            let events = page.json()["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (!events.is_empty()).then_some(events)
        },
    )
    .await
}

/// Publishes a text message (`query`: `?key=K` and the like); its id.
pub async fn publish(server: &impl Endpoint, topic: &str, query: &str, body: &str) -> String {
    let answer = send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/topics/{topic}{query}"),
        )
        .header("content-type", "text/plain")
        .body(body.to_owned()),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()["id"].as_str().expect("an id").to_owned()
}

/// Publishes messages in one batch; their ids.
pub async fn publish_batch(server: &impl Endpoint, topic: &str, messages: Value) -> Vec<String> {
    let answer = send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/topics/{topic}/_batch"),
        )
        .json(&json!({ "messages": messages })),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["id"].as_str().expect("an id").to_owned())
        .collect()
}
