//! Events: triggers deliver queue messages, document changes and cron ticks
//! to functions as CloudEvents; failures are retried, then dead-lettered,
//! and can be re-driven; nothing accepted is lost across a SIGKILL.
use crate::*;
use test_support::guest_events::*;

use serde_json::{Value, json};

#[tokio::test]
async fn queue_messages_reach_functions_as_cloudevents() {
    let server = server();
    deploy(
        &server,
        "worker",
        guests::EVENTS,
        &["--trigger", "queue=orders"],
    );

    // Through the CLI: JSON, with a subject.
    let stdout = server.cli_ok(&["publish", "orders", r#"{"order": 1}"#, "--subject", "o-1"]);
    let id = stdout.split_whitespace().nth(1).unwrap().to_owned();
    let first = delivered(&server, &id).await;
    assert_eq!(first.kind, "wok.queue.message");
    assert_eq!(first.source, "/projects/default/topics/orders");
    assert_eq!(first.subject, "o-1");
    assert_eq!(first.content_type, "application/json");
    assert_eq!(first.body, r#"{"order": 1}"#);
    assert_eq!(first.attempt, 1);

    // Through REST, with an ordering key.
    let id = publish(&server, "orders", "?key=customer-7", "plain text").await;
    let second = delivered(&server, &id).await;
    assert_eq!(
        (second.key.as_str(), second.body.as_str()),
        ("customer-7", "plain text")
    );
    assert_eq!(second.content_type, "text/plain");

    // A topic nobody reads keeps its messages; it can be read and replayed.
    publish(&server, "audit", "", "kept").await;
    let page = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/topics/audit/events",
    ))
    .await;
    assert_eq!(page.json()["events"][0]["data"], "kept");
    assert_eq!(page.json()["events"][0]["type"], "wok.queue.message");

    // Deliveries are invocations, recorded with their trigger.
    let records = wait_for_records(&server, 2).await;
    assert!(
        records
            .iter()
            .filter(|record| record["trigger"] == "queue")
            .count()
            >= 2,
        "{records:?}"
    );
    let triggers = server.cli_ok(&["events", "triggers"]);
    assert!(triggers.contains("worker/queue-orders"), "{triggers}");
    assert!(triggers.contains("retrying 0  dead 0"), "{triggers}");

    // Replaying from the start delivers both messages again.
    let before = delivery_count(&server).await;
    server.cli_ok(&["events", "replay", "worker", "queue-orders", "--from", "0"]);
    deliveries(&server, before + 2).await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_dead_lettered_and_can_be_redriven() {
    let server = server();
    let trigger = "queue=jobs;max_attempts=3;retry_delay=50ms";
    deploy(&server, "worker", guests::EVENTS, &["--trigger", trigger]);

    // Fails once, then succeeds on the retry.
    let id = publish(&server, "jobs", "", "fail-until-2").await;
    assert_eq!(delivered(&server, &id).await.attempt, 2);

    // Fails every time: a dead letter after three attempts.
    let doomed = publish(&server, "jobs", "", "fail-always").await;
    let dead = wait_for("a dead letter", Duration::from_secs(30), || async {
        let page = send(control(&server, reqwest::Method::GET, "/v1/events/dead")).await;
        let letters = page.json()["dead_letters"].as_array().cloned().unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["event"]["id"], doomed.as_str());
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["function"], "worker");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("500 Internal Server Error: failing as asked"),
        "{dead:?}"
    );
    let listed = server.cli_ok(&["events", "dead"]);
    assert!(
        listed.contains("worker/queue-jobs") && listed.contains("attempts 3"),
        "{listed}"
    );
    // Metrics: the retries, and the trigger's dead-letter gauge.
    let labels = r#"{function="default/worker",trigger="queue-jobs",kind="queue"}"#;
    let metrics = wait_for("the dead-letter gauge", Duration::from_secs(30), || async {
        let metrics = send(control(&server, reqwest::Method::GET, "/metrics"))
            .await
            .text();
        metrics
            .contains(&format!("wok_event_dead_letter_size{labels} 1"))
            .then_some(metrics)
    })
    .await;
    assert!(
        metrics.contains(&format!("wok_event_retries_total{labels} 3")),
        "{metrics}"
    );
    // Each attempt left its log line (written off the delivery path).
    let attempt_lines = format!("received wok.queue.message {doomed} attempt");
    wait_for(
        "three log lines of the doomed event",
        Duration::from_secs(30),
        || async {
            let logs = server.cli_ok(&["logs", "worker"]);
            (logs.matches(&attempt_lines).count() == 3).then_some(())
        },
    )
    .await;
    let failed_records = wait_for_records(&server, 5).await;
    assert_eq!(
        failed_records
            .iter()
            .filter(|record| record["trigger"] == "queue")
            .count(),
        5,
        "2 + 3 deliveries"
    );

    // The fix is deployed, then the dead letter re-driven: delivered.
    deploy(
        &server,
        "worker",
        guests::EVENTS,
        &["--trigger", trigger, "--env", "HEALED=1"],
    );
    let redriven = server.cli_ok(&["events", "redrive", "--function", "worker"]);
    assert!(redriven.contains("re-driving 1 dead letters"), "{redriven}");
    let healed = delivered(&server, &doomed).await;
    assert_eq!(healed.body, "fail-always");
    let page = send(control(&server, reqwest::Method::GET, "/v1/events/dead")).await;
    assert_eq!(page.json()["dead_letters"], json!([]));

    // Bad input: clear errors. A batch just over the 16 MiB body limit (just
    // over: the server stops reading at the limit, and a client still
    // writing megabytes would see its connection reset first):
    let huge: Vec<Value> = (0..16)
        .map(|_| json!({"data": "x".repeat(1 << 20)}))
        .collect();
    let too_big = send(
        control(&server, reqwest::Method::POST, "/v1/topics/jobs/_batch")
            .json(&json!({"messages": huge})),
    )
    .await;
    assert_eq!(
        (too_big.status, too_big.error_code().as_str()),
        (413, "payload_too_large")
    );
    let bad = send(
        control(&server, reqwest::Method::POST, "/v1/events/dead/_redrive").body("{\"fn\": 1}"),
    )
    .await;
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_body")
    );
    let missing = send(
        control(
            &server,
            reqwest::Method::POST,
            "/v1/functions/worker/triggers/nope/_replay",
        )
        .json(&json!({"from": "0"})),
    )
    .await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "trigger_not_found")
    );
}

#[tokio::test]
async fn a_manifest_deploys_functions_with_their_triggers() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guests::EVENTS, dir.path().join("events.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wok.toml"),
        r#"
[functions.worker]
path = "events.wasm"
memory = "64MiB"
triggers = [
    "queue=orders;batch=1",
    { queue = "returns", max_attempts = 2, name = "returns" },
]
"#,
    )
    .unwrap();
    let output = server
        .command(&["deploy"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("deployed worker version 1"), "{stdout}");
    assert!(
        stdout.contains("trigger queue=returns;batch=1;name=returns"),
        "{stdout}"
    );
    let id = publish(&server, "returns", "", "back").await;
    assert_eq!(delivered(&server, &id).await.body, "back");

    // A typo fails loudly, naming it.
    std::fs::write(
        dir.path().join("wok.toml"),
        "[functions.worker]\npath = \"events.wasm\"\ntriger = []\n",
    )
    .unwrap();
    let output = server
        .command(&["deploy"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("triger"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn no_accepted_event_is_lost_when_the_server_is_killed() {
    let server = server();
    deploy(
        &server,
        "worker",
        guests::EVENTS,
        &["--trigger", "queue=stream;concurrency=4"],
    );
    // Publish while deliveries run; kill the server in the middle.
    let mut ids = Vec::new();
    for round in 0..10 {
        let messages: Vec<Value> = (0..30)
            .map(|n| json!({"data": {"round": round, "n": n}}))
            .collect();
        ids.extend(publish_batch(&server, "stream", Value::Array(messages)).await);
    }
    let server = server.crash_and_restart();
    for round in 10..12 {
        let messages: Vec<Value> = (0..30)
            .map(|n| json!({"data": {"round": round, "n": n}}))
            .collect();
        ids.extend(publish_batch(&server, "stream", Value::Array(messages)).await);
    }
    for id in &ids {
        delivered(&server, id).await;
    }
    deliveries(&server, ids.len() as u64).await;
}

/// Waits (bounded) until an asynchronous invocation is `status`.
pub(crate) async fn async_status(server: &WokServer, id: &str, status: &str) -> Value {
    wait_for(
        &format!("invocation {id} {status}"),
        Duration::from_secs(30),
        || async move {
            let answer = send(control(
                server,
                reqwest::Method::GET,
                &format!("/v1/invocations/{id}"),
            ))
            .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            (answer.json()["status"] == status).then(|| answer.json())
        },
    )
    .await
}

#[tokio::test]
async fn asynchronous_invocations_are_queued_retried_and_report_their_outcome() {
    let server = server();
    deploy(&server, "echo", guests::ECHO, &[]);
    // 202 with an id at once; the response is kept for later.
    let accepted = send(
        http()
            .post(format!("{}/fn/echo/hello?x=1", server.url))
            .header("prefer", "respond-async")
            .body("ping"),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert_eq!(accepted.header("preference-applied"), "respond-async");
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        accepted.header("location"),
        format!("/v1/projects/default/invocations/{id}")
    );
    let done = async_status(&server, &id, "succeeded").await;
    assert_eq!(done["response"]["status"], 200);
    assert_eq!(done["response"]["body"], "ping");
    assert_eq!(done["attempts"], 1);
    let path = done["response"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "x-echo-path-with-query")
        .map(|pair| pair[1].clone());
    assert_eq!(path, Some(json!("/hello?x=1")));
    let shown = server.cli_ok(&["invocation", &id]);
    assert!(
        shown.contains("succeeded") && shown.contains("ping"),
        "{shown}"
    );

    // A failing function: retried, then failed, its outcome sent to a
    // topic; a successful one's to another.
    deploy(
        &server,
        "worker",
        guests::EVENTS,
        &[
            "--async-max-attempts",
            "2",
            "--async-retry-delay",
            "20ms",
            "--on-failure",
            "topic:failures",
            "--on-success",
            "topic:done",
        ],
    );
    let queued = server.cli_ok(&["invoke", "worker", "--async", "-d", "fail-always"]);
    let failing = queued.split_whitespace().nth(1).unwrap().to_owned();
    let failed = async_status(&server, &failing, "failed").await;
    assert_eq!(failed["attempts"], 2);
    assert_eq!(failed["response"]["status"], 500);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("failing as asked")
    );
    let outcome = topic_events(&server, "failures").await[0].clone();
    assert_eq!(outcome["type"], "wok.invocation.failed");
    let record: Value = serde_json::from_str(outcome["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            record["id"].as_str(),
            record["status"].as_str(),
            record["attempts"].as_u64()
        ),
        (Some(failing.as_str()), Some("failed"), Some(2))
    );

    // An idempotency key: the second call returns the first's id, and the
    // function runs once.
    let call = || {
        http()
            .post(format!("{}/fn/worker", server.url))
            .header("prefer", "respond-async")
            .header("idempotency-key", "order-42")
            .body("once")
    };
    let first = send(call()).await;
    assert_eq!(first.status, 202);
    let second = send(call()).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(first.json()["id"], second.json()["id"]);
    let once = first.json()["id"].as_str().unwrap().to_owned();
    async_status(&server, &once, "succeeded").await;
    // The outcome is sent on after the status is recorded.
    let done_events = topic_events(&server, "done").await;
    assert_eq!(done_events.len(), 1, "one success outcome: {done_events:?}");
    let records = wait_for_records(&server, 4).await;
    let worker_runs = records
        .iter()
        .filter(|record| record["function"] == "worker" && record["trigger"] == "async")
        .count();
    assert_eq!(worker_runs, 3, "two failed attempts and one success");
    // Usage by trigger: the echo call and the worker's three (a 500 is
    // an answer, not an error of the function: errors count traps and
    // timeouts).
    let usage = server.cli_ok(&["usage", "--trigger", "async", "--json"]);
    let usage: Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(
        (usage["requests"].as_u64(), usage["errors"].as_u64()),
        (Some(4), Some(0)),
        "{usage}"
    );
    let http_usage = server.cli_ok(&["usage", "--trigger", "http", "--json"]);
    let http_usage: Value = serde_json::from_str(&http_usage).unwrap();
    assert_eq!(http_usage["requests"].as_u64(), Some(0), "{http_usage}");
    let bad = server.cli(&["usage", "--trigger", "smoke-signal"]);
    assert!(
        !bad.success() && bad.stderr().contains("the triggers are"),
        "{}",
        bad.stderr()
    );

    // One attempt only, its failure sent to another function, invoked
    // asynchronously with the outcome as its body.
    deploy(&server, "audit", guests::ECHO, &[]);
    deploy(
        &server,
        "once",
        guests::EVENTS,
        &[
            "--async-max-attempts",
            "1",
            "--on-failure",
            "function:audit",
        ],
    );
    let queued = server.cli_ok(&["invoke", "once", "--async", "-d", "fail-always"]);
    let once_id = queued.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(
        async_status(&server, &once_id, "failed").await["attempts"],
        1
    );
    let audit_run = wait_for(
        "the audit function runs",
        Duration::from_secs(30),
        || async {
            let records = send(control(
                &server,
                reqwest::Method::GET,
                "/v1/invocations?function=audit&trigger=async",
            ))
            .await;
            records.json()["invocations"]
                .as_array()
                .and_then(|records| records.first().cloned())
        },
    )
    .await;
    assert_eq!(audit_run["outcome"], "success");

    // Bad input.
    let unknown = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/invocations/nope",
    ))
    .await;
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "invocation_not_found")
    );
    let too_big = send(
        http()
            .post(format!("{}/fn/echo", server.url))
            .header("prefer", "respond-async")
            .body(vec![b'x'; (1 << 20) + 1]),
    )
    .await;
    assert_eq!(too_big.status, 413);
    let bad = server.cli(&["deploy", "x", guests::ECHO, "--on-failure", "queue:x"]);
    assert!(!bad.success());
    assert!(
        bad.stderr().contains("topic:NAME or function:NAME"),
        "{}",
        bad.stderr()
    );
}

#[tokio::test]
async fn a_trap_or_a_timeout_is_a_failed_delivery() {
    let server = server();
    deploy(
        &server,
        "crashy",
        guests::TRAP,
        &["--trigger", "queue=work;max_attempts=2;retry_delay=20ms"],
    );
    deploy(
        &server,
        "slowpoke",
        guests::SLEEP,
        &[
            "--timeout",
            "100ms",
            "--trigger",
            "queue=work;max_attempts=1",
        ],
    );
    publish(&server, "work", "", "job").await;
    let dead = wait_for("two dead letters", Duration::from_secs(30), || async {
        let page = send(control(&server, reqwest::Method::GET, "/v1/events/dead")).await;
        let letters = page.json()["dead_letters"].as_array().cloned().unwrap();
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let of = |function: &str| {
        dead.iter()
            .find(|letter| letter["function"] == function)
            .cloned()
            .unwrap()
    };
    let crashy = of("crashy");
    assert_eq!(crashy["attempts"], 2);
    assert!(
        crashy["error"]
            .as_str()
            .unwrap()
            .starts_with("function_trap"),
        "{crashy}"
    );
    let slowpoke = of("slowpoke");
    assert_eq!(slowpoke["attempts"], 1);
    assert!(
        slowpoke["error"]
            .as_str()
            .unwrap()
            .starts_with("function_timeout"),
        "{slowpoke}"
    );
    let records = wait_for_records(&server, 3).await;
    let outcomes: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["function"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == ("crashy", "function_trap"))
            .count(),
        2,
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("slowpoke", "function_timeout")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn asynchronous_requests_are_bounded_and_idempotency_keys_belong_to_their_caller() {
    let server = test_support::WokServer::start_with(
        WOK,
        &[
            "--async-max-queued",
            "3",
            "--async-max-queued-bytes",
            "64KiB",
        ],
    );
    // One at a time, each taking a while: requests wait in the queue.
    for name in ["slow", "slower"] {
        deploy(&server, name, guests::SLEEP, &["--max-concurrency", "1"]);
    }
    let queue = |function: &str, body: Vec<u8>| {
        http()
            .post(format!("{}/fn/{function}?ms=3000", server.url))
            .header("prefer", "respond-async")
            .body(body)
    };
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = send(queue("slow", b"x".to_vec())).await;
        if answer.status == 429 {
            assert_eq!(answer.error_code(), "too_many_requests");
            assert_eq!(answer.header("retry-after"), "1");
            assert!(
                answer.text().contains("asynchronous requests"),
                "{}",
                answer.text()
            );
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429, 429]);
    // Bytes: two requests of 20 KiB fit in 64 KiB (as stored), a third
    // does not; another function's queue is its own.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(queue("slower", vec![b'y'; 20 << 10])).await.status);
    }
    assert_eq!(statuses, [202, 202, 429]);
    let text = send(control(&server, reqwest::Method::GET, "/metrics"))
        .await
        .text();
    assert!(
        text.contains("wok_async_refused_total{function=\"default/slow\"} 3"),
        "{text}"
    );

    // Idempotency keys: per caller (the credential it sends), and bound to
    // the request.
    let keyed = |token: &str, body: &str| {
        http()
            .post(format!("{}/fn/slower?ms=1", server.url))
            .header("prefer", "respond-async")
            .header("idempotency-key", "order-7")
            .bearer_auth(token)
            .body(body.to_owned())
    };
    wait_for("room in the queue", Duration::from_secs(30), || async {
        let answer = send(keyed("alice", "pay 10")).await;
        (answer.status == 202).then(|| answer.json())
    })
    .await;
    let again = send(keyed("alice", "pay 10")).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let other_caller = wait_for("room in the queue", Duration::from_secs(30), || async {
        let answer = send(keyed("bob", "pay 10")).await;
        (answer.status != 429).then_some(answer)
    })
    .await;
    assert_eq!(other_caller.status, 202, "another caller's key is its own");
    assert_ne!(other_caller.json()["id"], again.json()["id"]);
    let changed = send(keyed("alice", "pay 1000")).await;
    assert_eq!(
        (changed.status, changed.error_code().as_str()),
        (422, "idempotency_key_reused"),
        "{}",
        changed.text()
    );
}

#[tokio::test]
async fn change_events_name_who_made_the_write() {
    let server = server();
    let key = server
        .cli_ok(&["keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    let app = crate::rules::App {
        server: &server,
        key,
    };
    let rules = send(
        control(&server, reqwest::Method::PUT, "/v1/docs/notes/_access")
            .json(&json!({"rules": {"create": "auth.uid != null"}})),
    )
    .await;
    assert_eq!(rules.status, 200, "{}", rules.text());
    deploy(
        &server,
        "watcher",
        guests::EVENTS,
        &["--trigger", "docs=notes"],
    );
    deploy(&server, "writer", guests::DOCS, &[]);
    let (ann, ann_id) = app.user("ann@example.com").await;

    // Ann writes over REST, then through a function she calls; the
    // service side writes too.
    let rest = app
        .request(Some(&ann), reqwest::Method::POST, "/v1/docs/notes")
        .json(&json!({"by": "rest"}));
    assert_eq!(send(rest).await.status, 201);
    let through = send(
        http()
            .post(format!("{}/fn/writer/notes", server.url))
            .bearer_auth(&ann)
            .body(r#"{"by": "function"}"#),
    )
    .await;
    assert_eq!(through.status, 200, "{}", through.text());
    let service = send(
        control(&server, reqwest::Method::POST, "/v1/docs/notes").json(&json!({"by": "admin"})),
    )
    .await;
    assert_eq!(service.status, 201);

    deliveries(&server, 3).await;
    let mut seen = std::collections::BTreeMap::new();
    for (id, _, _) in delivery_log(&server).await {
        let received = delivered(&server, &id).await;
        let change: Value = serde_json::from_str(&received.body).unwrap();
        let by = change["after"]["by"].as_str().unwrap().to_owned();
        seen.insert(by, (received.auth_type, received.auth_id));
    }
    let user = ("user".to_owned(), ann_id.clone());
    assert_eq!(seen["rest"], user);
    assert_eq!(seen["function"], user);
    assert_eq!(seen["admin"], ("admin".to_owned(), String::new()));
}
