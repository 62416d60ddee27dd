//! Drives a running wok server through the exhaustion cases of
//! `bench/abuse.sh`, each beside a healthy client, and reports the healthy
//! client's latency and the server's resident memory during the case,
//! side by side with a baseline run of the healthy client alone.
//!
//! `abuse-bench URL TOKEN PUBLIC_TOKEN SERVER_PID SECONDS [CASE...]`
//! (`bench/abuse.sh` runs each case on a fresh server, so that one case's
//! memory is not the next one's).
//!
//! The healthy client calls `GET /fn/hello` one request at a time on one
//! kept-alive connection (a new connection after an error). Cases:
//!
//! - `baseline`: nothing else.
//! - `connections`: 2,000 silent connections, 1,000 slowloris (a header
//!   byte every 2 s), 1,000 idle keep-alives and 200 request bodies
//!   trickled a byte every 5 s, each opened again when the server closes it.
//! - `async-flood`: 8 clients queue asynchronous requests of 64 KiB to
//!   `hello` as fast as they are answered (most get 429 once the queue is
//!   full).
//! - `batch-parse`: 3 clients send 10 MiB document batches of small
//!   numbers (the costliest JSON to parse) with the service key, 3 more
//!   with a public key.
//! - `realtime`: 8 WebSockets subscribed to a topic that never read, while
//!   a publisher sends batches of 400 messages of 4 KB.
//! - `live-queries`: 4 WebSockets with 20 live queries each over 4 MB of
//!   documents, opened again when closed.
//! - `spinners`: 4 clients keep calling `spin`, a guest that loops until
//!   its 2 s timeout.
//! - `unknown-keys`: 4 clients send tokens of key ids that do not exist,
//!   each a new one; then the median time of a refusal for an unknown key
//!   and for a known key with a wrong secret, side by side.
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Target {
    url: String,
    address: String,
    token: String,
    public: String,
    pid: u32,
    seconds: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// What the healthy client saw.
struct Healthy {
    latencies_ms: Vec<f64>,
    errors: u64,
}

async fn healthy_client(url: String, stop: Arc<AtomicBool>) -> Healthy {
    let mut client = reqwest::Client::new();
    let mut latencies_ms = Vec::new();
    let mut errors = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let response = client.get(format!("{url}/fn/hello")).send().await?;
            let status = response.status();
            response.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) if status.is_success() => {
                latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
            }
            _ => {
                errors += 1;
                client = reqwest::Client::new();
            }
        }
        // About 100 requests a second: a client, not a load.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Healthy {
        latencies_ms,
        errors,
    }
}

/// Runs `attack` beside the healthy client for the target's time; prints
/// one line.
async fn run_case<F>(target: &Target, name: &str, attack: F)
where
    F: FnOnce(Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let rss_before = rss_mib(target.pid);
    let attackers = attack(stop.clone());
    // The attack settles in first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healthy = tokio::spawn(healthy_client(target.url.clone(), stop.clone()));
    let started = Instant::now();
    let mut rss = rss_mib(target.pid);
    while started.elapsed() < Duration::from_secs(target.seconds) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss = rss.max(rss_mib(target.pid));
    }
    stop.store(true, Ordering::Relaxed);
    let mut healthy = healthy.await.unwrap();
    for attacker in attackers {
        attacker.abort();
    }
    healthy
        .latencies_ms
        .sort_by(|a, b| a.partial_cmp(b).unwrap());
    let sorted = &healthy.latencies_ms;
    println!(
        "{name:<14} healthy: {:>5} ok {:>3} failed  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms   server RSS {:>6.1} -> max {:>7.1} MiB",
        sorted.len(),
        healthy.errors,
        percentile(sorted, 50.0),
        percentile(sorted, 99.0),
        sorted.last().copied().unwrap_or(f64::NAN),
        rss_before,
        rss,
    );
    // Let the server settle before the next case.
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// Opens connections again and again, each doing `behave` until the
/// server closes it.
fn connection_loop<F, Fut>(
    address: &str,
    count: usize,
    stop: &Arc<AtomicBool>,
    behave: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    (0..count)
        .map(|_| {
            let (address, stop, behave) = (address.to_owned(), stop.clone(), behave.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio::net::TcpStream::connect(&address).await {
                        Ok(stream) => behave(stream).await,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        })
        .collect()
}

/// Waits until the server closes the connection.
async fn until_closed(mut stream: tokio::net::TcpStream) {
    let mut buffer = [0u8; 1024];
    while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
}

fn connections(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = connection_loop(&target.address, 2000, &stop, until_closed);
    tasks.extend(connection_loop(
        &target.address,
        1000,
        &stop,
        |mut stream| async move {
            for byte in b"GET /healthz HTTP/1.1\r\nHost: wok\r\n" {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        },
    ));
    tasks.extend(connection_loop(
        &target.address,
        1000,
        &stop,
        |mut stream| async move {
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: wok\r\n\r\n")
                .await
                .is_ok()
            {
                until_closed(stream).await;
            }
        },
    ));
    let token = target.token.clone();
    tasks.extend(connection_loop(
        &target.address,
        200,
        &stop,
        move |mut stream| {
            let token = token.clone();
            async move {
                let head = format!(
                    "PUT /v1/kv/slow/k HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while stream.write_all(b"x").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        },
    ));
    tasks
}

fn async_flood(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let accepted = Arc::new(AtomicU64::new(0));
    (0..8)
        .map(|_| {
            let (url, stop, accepted) = (target.url.clone(), stop.clone(), accepted.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let body = vec![b'x'; 64 << 10];
                while !stop.load(Ordering::Relaxed) {
                    let answer = client
                        .post(format!("{url}/fn/hello"))
                        .header("prefer", "respond-async")
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(answer) = answer
                        && answer.status().as_u16() == 202
                    {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// A batch of about 10 MiB whose documents hold arrays of zeros: the
/// largest parsed JSON a body that size makes.
fn costly_batch() -> Vec<u8> {
    let zeros = vec!["0"; 10_000].join(",");
    let writes: Vec<String> = (0..490)
        .map(|at| {
            format!(
                "{{\"op\":\"set\",\"collection\":\"abuse\",\"id\":\"d{at}\",\"data\":{{\"z\":[{zeros}]}}}}"
            )
        })
        .collect();
    format!("{{\"writes\":[{}]}}", writes.join(",")).into_bytes()
}

fn batch_parse(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let batch = Arc::new(costly_batch());
    [&target.token, &target.token, &target.token]
        .into_iter()
        .chain([&target.public, &target.public, &target.public])
        .map(|token| {
            let (url, stop, batch, token) = (
                target.url.clone(),
                stop.clone(),
                batch.clone(),
                token.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let _ = client
                        .post(format!("{url}/v1/docs/_batch"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(batch.as_ref().clone())
                        .send()
                        .await;
                }
            })
        })
        .collect()
}

fn websocket_url(target: &Target) -> String {
    format!(
        "{}/v1/realtime?access_token={}",
        target.url.replace("http://", "ws://"),
        target.token
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `count` clients that open a WebSocket again and again, each doing
/// `behave(index, socket)` until the server drops it.
fn socket_loop<F, Fut>(
    target: &Target,
    count: usize,
    stop: &Arc<AtomicBool>,
    behave: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(usize, Socket) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    (0..count)
        .map(|index| {
            let (url, stop, behave) = (websocket_url(target), stop.clone(), behave.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio_tungstenite::connect_async(&url).await {
                        Ok((socket, _)) => behave(index, socket).await,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        })
        .collect()
}

fn realtime(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = socket_loop(target, 8, &stop, |index, mut socket| async move {
        let subscribe =
            json!({"type": "subscribe", "id": format!("s{index}"), "topic": "firehose"});
        let _ = socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                subscribe.to_string().into(),
            ))
            .await;
        // Never reads: the server drops it in time; then again.
        let (mut sink, _stream) = socket.split();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if sink
                .send(tokio_tungstenite::tungstenite::Message::Ping(vec![].into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (url, token) = (target.url.clone(), target.token.clone());
    tasks.push(tokio::spawn(async move {
        let client = reqwest::Client::new();
        let payload = "x".repeat(4000);
        let messages: Vec<_> = (0..400).map(|_| json!({"data": payload})).collect();
        let body = json!({"messages": messages}).to_string();
        while !stop.load(Ordering::Relaxed) {
            let _ = client
                .post(format!("{url}/v1/topics/firehose/_batch"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
        }
    }));
    tasks
}

async fn prepare_live_documents(target: &Target) {
    let client = reqwest::Client::new();
    let blob = "y".repeat(1_000_000);
    for id in ["a", "b", "c", "d"] {
        client
            .put(format!("{}/v1/docs/live/{id}", target.url))
            .bearer_auth(&target.token)
            .json(&json!({"blob": blob}))
            .send()
            .await
            .unwrap();
    }
}

fn live_queries(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    socket_loop(target, 4, &stop, |_, mut socket| async move {
        for index in 0..20 {
            let subscribe = json!({"type": "subscribe", "id": format!("q{index}"),
                            "collection": "live", "query": {}});
            let _ = socket
                .send(tokio_tungstenite::tungstenite::Message::Text(
                    subscribe.to_string().into(),
                ))
                .await;
        }
        // Reads slowly.
        while let Some(Ok(_)) = socket.next().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// A token of key `id` of project `default` with a random-looking secret.
fn forged_token(kind: &str, id: &str, n: u64) -> String {
    format!("wok_{kind}_default_{id}_{n:064x}")
}

fn unknown_keys(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4u64)
        .map(|client| {
            let (url, stop) = (target.url.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut n = client << 40;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let _ = http
                        .get(format!("{url}/v1/buckets"))
                        .bearer_auth(forged_token("pk", &format!("{n:012x}"), n))
                        .send()
                        .await;
                }
            })
        })
        .collect()
}

/// The median time of a refusal of an unknown key id, and of a known key
/// with a wrong secret.
async fn refusal_timing(target: &Target) {
    let http = reqwest::Client::new();
    let known_id = target
        .public
        .split('_')
        .nth(3)
        .expect("a public token")
        .to_owned();
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for n in 0..2000u64 {
        for (times, token) in [
            (
                &mut unknown,
                forged_token("pk", &format!("{:012x}", n + 1), n),
            ),
            (&mut wrong, forged_token("pk", &known_id, n)),
        ] {
            let started = Instant::now();
            let answer = http
                .get(format!("{}/v1/buckets", target.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 401);
            answer.bytes().await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    for times in [&mut unknown, &mut wrong] {
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "{:<14} refusal, median of 2000 each: unknown key id {:>6.1} µs, known id with a wrong secret {:>6.1} µs (ratio {:.2})",
        "unknown-keys",
        percentile(&unknown, 50.0),
        percentile(&wrong, 50.0),
        percentile(&unknown, 50.0) / percentile(&wrong, 50.0)
    );
}

fn spinners(target: &Target, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|_| {
            let (url, stop) = (target.url.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let _ = client.get(format!("{url}/fn/spin")).send().await;
                }
            })
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: abuse-bench URL TOKEN PUBLIC_TOKEN SERVER_PID SECONDS [CASE...]");
        std::process::exit(2);
    }
    let target = Target {
        address: args[1].trim_start_matches("http://").to_owned(),
        url: args[1].clone(),
        token: args[2].clone(),
        public: args[3].clone(),
        pid: args[4].parse().expect("a process id"),
        seconds: args[5].parse().expect("seconds"),
    };
    let all = [
        "baseline",
        "connections",
        "async-flood",
        "batch-parse",
        "realtime",
        "live-queries",
        "spinners",
        "unknown-keys",
    ];
    let cases: Vec<&str> = if args.len() > 6 {
        args[6..].iter().map(String::as_str).collect()
    } else {
        all.to_vec()
    };
    for case in cases {
        match case {
            "baseline" => run_case(&target, case, |_| Vec::new()).await,
            "connections" => run_case(&target, case, |stop| connections(&target, stop)).await,
            "async-flood" => run_case(&target, case, |stop| async_flood(&target, stop)).await,
            "batch-parse" => run_case(&target, case, |stop| batch_parse(&target, stop)).await,
            "realtime" => run_case(&target, case, |stop| realtime(&target, stop)).await,
            "live-queries" => {
                prepare_live_documents(&target).await;
                run_case(&target, case, |stop| live_queries(&target, stop)).await
            }
            "spinners" => run_case(&target, case, |stop| spinners(&target, stop)).await,
            "unknown-keys" => {
                refusal_timing(&target).await;
                run_case(&target, case, |stop| unknown_keys(&target, stop)).await
            }
            other => {
                eprintln!("unknown case {other:?}");
                std::process::exit(2);
            }
        }
    }
}
