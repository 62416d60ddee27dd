//! Drives a running wok server for the events benchmarks (`bench/events.sh`):
//!
//! - `queue URL TOKEN RATE SECONDS`: publishes RATE messages a second (four
//!   publishers, batches of 250) to topic `bench` for SECONDS, then waits for the
//!   trigger to drain; prints the publish and delivery rates and the
//!   publish-to-delivery latency percentiles (from the server's histogram
//!   `wok_event_delivery_latency_seconds`, whose buckets are exact to the
//!   millisecond below 5 ms).
//! - `burst URL TOKEN COUNT`: publishes COUNT messages as fast as four
//!   publishers go and times until the last is delivered (the ceiling).
//! - `cron URL TOKEN FUNCTION TICKS`: waits for TICKS invocation records of
//!   a cron trigger firing every second, and prints how late each started
//!   after its whole second.
//! - `fanout URL TOKEN CLIENTS WRITES`: opens CLIENTS WebSockets, each with
//!   a live query on collection `live`, then writes WRITES documents one
//!   at a time; prints the percentiles of write-to-client latency.
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The delivery-latency histogram of trigger `queue-bench`: (upper bound
/// in seconds, cumulative count), and the deliveries.
async fn histogram(http: &reqwest::Client, url: &str, token: &str) -> (Vec<(f64, u64)>, u64) {
    let text = http
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut buckets = Vec::new();
    let mut delivered = 0;
    for line in text.lines() {
        if !line.contains("trigger=\"queue-bench\"") {
            continue;
        }
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap_or(0);
        if line.starts_with("wok_event_delivery_latency_seconds_bucket") {
            let le = line
                .split("le=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets.push((bound, value));
        } else if line.starts_with("wok_event_deliveries_total") {
            delivered = value;
        }
    }
    (buckets, delivered)
}

/// Waits until `published` more deliveries than `before` are counted, or
/// the deadline; returns the deliveries counted.
async fn drain(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    before: u64,
    published: u64,
    deadline: Instant,
) -> u64 {
    loop {
        let (_, delivered) = histogram(http, url, token).await;
        if delivered - before >= published || Instant::now() > deadline {
            return delivered - before;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn histogram_percentile(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> f64 {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect();
    let total = counts.last().map_or(0, |(_, count)| *count);
    let wanted = ((p / 100.0) * total as f64).ceil() as u64;
    counts
        .iter()
        .find(|(_, count)| *count >= wanted)
        .map_or(f64::NAN, |(bound, _)| *bound)
}

/// Four publishers post batches of `batch` messages to topic `bench`, each
/// until it sent `share` messages or `until` passed, a batch every
/// `interval` (`None`: back to back). Returns the messages published.
async fn publish(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    batch: u64,
    share: u64,
    until: Instant,
    interval: Option<Duration>,
) -> u64 {
    let messages: Vec<Value> = (0..batch).map(|n| json!({"data": {"n": n}})).collect();
    let body = json!({ "messages": messages }).to_string();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, token, body) =
            (http.clone(), url.to_owned(), token.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut published = 0u64;
            let mut next = Instant::now();
            while published < share && Instant::now() < until {
                let answer = http
                    .post(format!("{url}/v1/topics/bench/_batch"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
                published += batch;
                if let Some(interval) = interval {
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            published
        }));
    }
    let mut published = 0;
    for task in tasks {
        published += task.await.unwrap();
    }
    published
}

async fn queue(url: &str, token: &str, rate: u64, seconds: u64) {
    let http = reqwest::Client::new();
    let (before, delivered_before) = histogram(&http, url, token).await;
    // Each of the four publishers a quarter of the rate, 250 messages a batch.
    let batch = 250u64;
    let interval = Duration::from_secs_f64((batch * 4) as f64 / rate as f64);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let published = publish(&http, url, token, batch, u64::MAX, until, Some(interval)).await;
    let publishing = started.elapsed();
    // Drain: wait until every message is delivered (bounded).
    let delivered = drain(
        &http,
        url,
        token,
        delivered_before,
        published,
        started + publishing * 4,
    )
    .await;
    let total = started.elapsed();
    let (after, _) = histogram(&http, url, token).await;
    println!(
        "published {published} in {:.2} s ({:.0}/s); delivered {delivered} in {:.2} s ({:.0}/s)",
        publishing.as_secs_f64(),
        published as f64 / publishing.as_secs_f64(),
        total.as_secs_f64(),
        delivered as f64 / total.as_secs_f64()
    );
    for p in [50.0, 90.0, 99.0, 99.9] {
        println!(
            "publish-to-delivery p{p}: <= {:.0} ms",
            histogram_percentile(&before, &after, p) * 1e3
        );
    }
}

/// Publishes `count` messages as fast as four publishers go, then times
/// until the last is delivered: the delivery ceiling.
async fn burst(url: &str, token: &str, count: u64) {
    let http = reqwest::Client::new();
    let (_, delivered_before) = histogram(&http, url, token).await;
    let started = Instant::now();
    let until = started + Duration::from_secs(300);
    let published = publish(&http, url, token, 500, count.div_ceil(4), until, None).await;
    let publishing = started.elapsed();
    let delivered = drain(
        &http,
        url,
        token,
        delivered_before,
        published,
        started + Duration::from_secs(300),
    )
    .await;
    let total = started.elapsed();
    println!(
        "published {published} in {:.2} s; delivered {delivered} in {:.2} s: {:.0} deliveries/s",
        publishing.as_secs_f64(),
        total.as_secs_f64(),
        delivered as f64 / total.as_secs_f64()
    );
}

async fn cron(url: &str, token: &str, function: &str, ticks: usize) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(ticks as u64 + 30);
    let records = loop {
        let answer: Value = http
            .get(format!(
                "{url}/v1/invocations?function={function}&trigger=cron&limit=100000"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = answer["invocations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if records.len() >= ticks || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut starts: Vec<i64> = records
        .iter()
        .map(|record| record["start"].as_i64().unwrap())
        .collect();
    starts.sort();
    let in_order: Vec<String> = starts
        .iter()
        .map(|start| (start % 1000).to_string())
        .collect();
    println!("lateness in order (ms): {}", in_order.join(" "));
    let mut late: Vec<f64> = starts.iter().map(|start| (start % 1000) as f64).collect();
    late.sort_by(f64::total_cmp);
    println!(
        "{} ticks; started after the scheduled second: p50 {} ms, p99 {} ms, max {} ms",
        late.len(),
        percentile(&late, 50.0),
        percentile(&late, 99.0),
        late.last().copied().unwrap_or(f64::NAN)
    );
}

async fn fanout(url: &str, token: &str, clients: usize, writes: usize) {
    let ws_url = format!(
        "{}/v1/realtime?access_token={token}",
        url.replace("http://", "ws://")
    );
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut ready = Vec::new();
    for _ in 0..clients {
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("a WebSocket");
        let subscribe = json!({
            "type": "subscribe", "id": "q", "collection": "live",
            "query": {"where": ["kind", "==", "bench"]},
        });
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                subscribe.to_string().into(),
            ))
            .await
            .unwrap();
        let sender = sender.clone();
        let (up, up_rx) = tokio::sync::oneshot::channel();
        ready.push(up_rx);
        tokio::spawn(async move {
            let mut up = Some(up);
            while let Some(Ok(message)) = socket.next().await {
                let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
                    continue;
                };
                let now = Instant::now();
                let message: Value = serde_json::from_str(text.as_str()).unwrap();
                match message["type"].as_str() {
                    Some("subscribed") => {
                        if let Some(up) = up.take() {
                            let _ = up.send(());
                        }
                    }
                    Some("change") => {
                        let n = message["document"]["data"]["n"].as_u64().unwrap() as usize;
                        let _ = sender.send((n, now));
                    }
                    _ => {}
                }
            }
        });
    }
    for up in ready {
        up.await.unwrap();
    }
    println!("{clients} clients subscribed");
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for n in 0..writes {
        let sent = Instant::now();
        let answer = http
            .put(format!("{url}/v1/docs/live/d{n}"))
            .bearer_auth(token)
            .json(&json!({"kind": "bench", "n": n}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        let mut got = 0;
        while got < clients {
            let (seen, at) = tokio::time::timeout(Duration::from_secs(30), receiver.recv())
                .await
                .expect("every client gets the change within 30 s")
                .unwrap();
            assert_eq!(seen, n);
            latencies.push(at.duration_since(sent).as_secs_f64() * 1e3);
            got += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} deliveries: write-to-client p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: events-bench queue URL TOKEN RATE SECONDS | burst URL TOKEN COUNT | cron URL TOKEN FUNCTION TICKS | fanout URL TOKEN CLIENTS WRITES";
    match args.get(1).map(String::as_str) {
        Some("queue") if args.len() == 6 => {
            queue(
                &args[2],
                &args[3],
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            )
            .await
        }
        Some("burst") if args.len() == 5 => {
            burst(&args[2], &args[3], args[4].parse().unwrap()).await
        }
        Some("cron") if args.len() == 6 => {
            cron(&args[2], &args[3], &args[4], args[5].parse().unwrap()).await
        }
        Some("fanout") if args.len() == 6 => {
            fanout(
                &args[2],
                &args[3],
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            )
            .await
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
