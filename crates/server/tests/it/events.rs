//! Events: triggers deliver queue messages, document changes and cron ticks
//! to functions as CloudEvents; failures are retried, then dead-lettered,
//! and can be re-driven; nothing accepted is lost across a SIGKILL.
use crate::*;
use test_support::guest_events::*;

use serde_json::{Value, json};

#[tokio::test]
async fn messages_with_an_ordering_key_arrive_in_order_through_retries() {
    let server = app();
    deploy(
        &server,
        "worker",
        guests::EVENTS,
        &["--trigger", "queue=updates;concurrency=8;retry_delay=20ms"],
    )
    .await;
    // Key a: its second message fails once; the ones after it must wait.
    let mut messages = Vec::new();
    for n in 0..6 {
        for key in ["a", "b"] {
            let body = if key == "a" && n == 1 {
                format!("{key}{n} fail-until-2")
            } else {
                format!("{key}{n}")
            };
            messages.push(json!({"data_base64": base64_text(&body), "key": key, "content_type": "text/plain"}));
        }
    }
    let ids = publish_batch(&server, "updates", Value::Array(messages)).await;
    // The failure waits for its retry, due by the server's clock: time
    // passes once it is recorded.
    wait_for("the failure recorded", Duration::from_secs(30), || async {
        let triggers = send(control(&server, reqwest::Method::GET, "/v1/triggers"))
            .await
            .json();
        (triggers["triggers"][0]["retrying"].as_u64() == Some(1)).then_some(())
    })
    .await;
    server.clock.advance(Duration::from_secs(1));
    // The guest records an event, then counts it: wait for the counts too.
    deliveries(&server, ids.len() as u64).await;
    let log = delivery_log(&server).await;
    for key in ["a", "b"] {
        let bodies: Vec<String> = log
            .iter()
            .filter(|(_, entry_key, _)| entry_key == key)
            .map(|(_, _, body)| body.split(' ').next().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (0..6).map(|n| format!("{key}{n}")).collect();
        assert_eq!(bodies, expected, "key {key} out of order: {log:?}");
    }
}

fn base64_text(text: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn document_changes_trigger_a_function_that_does_not_trigger_itself() {
    let server = app();
    // On each new order the guest creates another order: its own write,
    // which must not trigger it again.
    deploy(
        &server,
        "echo",
        guests::EVENTS,
        &[
            "--trigger",
            "docs=orders;on=created",
            "--env",
            "ECHO_COLLECTION=orders",
        ],
    )
    .await;
    let create = |id: &str| {
        control(
            &server,
            reqwest::Method::PUT,
            &format!("/v1/docs/orders/{id}"),
        )
        .json(&json!({"total": 12}))
    };
    assert_eq!(send(create("first")).await.status, 201);
    let log_entries = {
        deliveries(&server, 1).await;
        delivery_log(&server).await
    };
    let first = received(&server, &log_entries[0].0).await.unwrap();
    assert_eq!(first.kind, "wok.document.created");
    assert_eq!(first.source, "/projects/default/collections/orders");
    assert_eq!(first.subject, "first");
    let data: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(data["before"], Value::Null);
    assert_eq!(data["after"], json!({"total": 12}));
    assert_eq!(data["id"], "first");

    // An update is not a creation; a second creation by a client is
    // delivered, and by then the echo's own write has been passed over.
    let update = control(&server, reqwest::Method::PATCH, "/v1/docs/orders/first")
        .json(&json!({"total": 13}));
    assert_eq!(send(update).await.status, 200);
    // A batch that fails commits nothing, so it emits nothing: "lost" never
    // reaches the function.
    let batch = json!({"writes": [
        {"op": "create", "collection": "orders", "id": "lost", "data": {"total": 1}},
        {"op": "create", "collection": "orders", "id": "first", "data": {"total": 1}},
    ]});
    let failed =
        send(control(&server, reqwest::Method::POST, "/v1/docs/_batch").json(&batch)).await;
    assert_eq!(failed.status, 409, "{}", failed.text());
    assert_eq!(send(create("second")).await.status, 201);
    deliveries(&server, 2).await;
    // Let the echo of "second" be logged and passed over too, then check.
    let listed = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/docs/orders?limit=100",
    ))
    .await;
    let documents = listed.json()["documents"].as_array().unwrap().len();
    assert!(
        documents >= 3,
        "the guest's echoes were written: {}",
        listed.text()
    );
    let log = delivery_log(&server).await;
    let subjects: Vec<String> = {
        let mut subjects = Vec::new();
        for (id, _, _) in &log {
            subjects.push(received(&server, id).await.unwrap().subject);
        }
        subjects
    };
    assert_eq!(subjects, ["first", "second"], "only clients' creations");
}

#[tokio::test]
async fn object_changes_trigger_functions_by_key_filters() {
    let server = app();
    let created = send(control(&server, reqwest::Method::PUT, "/v1/buckets/photos")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    // On each new .jpg the guest writes echo-KEY (also a .jpg) to the same
    // bucket: its own write, passed over.
    deploy(
        &server,
        "thumbs",
        guests::EVENTS,
        &[
            "--trigger",
            "objects=photos;on=created;suffix=.jpg",
            "--env",
            "ECHO_BUCKET=photos",
        ],
    )
    .await;
    let put = |key: &str| {
        control(
            &server,
            reqwest::Method::PUT,
            &format!("/v1/objects/photos/{key}"),
        )
        .header("content-type", "image/jpeg")
        .body(vec![7u8; 10])
    };
    assert_eq!(send(put("a.jpg")).await.status, 200);
    deliveries(&server, 1).await;
    // Not a .jpg; a deletion (on=created only); then one more .jpg.
    assert_eq!(send(put("notes.txt")).await.status, 200);
    let deleted = send(control(
        &server,
        reqwest::Method::DELETE,
        "/v1/objects/photos/a.jpg",
    ))
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(send(put("c.jpg")).await.status, 200);
    deliveries(&server, 2).await;
    let log = delivery_log(&server).await;
    let mut deliveries = Vec::new();
    for (id, _, _) in &log {
        deliveries.push(received(&server, id).await.unwrap());
    }
    let subjects: Vec<&str> = deliveries.iter().map(|d| d.subject.as_str()).collect();
    assert_eq!(subjects, ["a.jpg", "c.jpg"]);
    assert_eq!(deliveries[0].kind, "wok.object.created");
    assert_eq!(deliveries[0].source, "/projects/default/buckets/photos");
    let data: Value = serde_json::from_str(&deliveries[0].body).unwrap();
    assert_eq!(
        (
            data["key"].as_str(),
            data["size"].as_u64(),
            data["content_type"].as_str()
        ),
        (Some("a.jpg"), Some(10), Some("image/jpeg"))
    );
    // The echoes were written, and each was an event the trigger passed over.
    let echo = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/objects/photos/echo-c.jpg",
    ))
    .await;
    assert_eq!(echo.status, 200);
}

#[tokio::test]
async fn functions_publish_to_topics_that_several_functions_read() {
    let server = app();
    // relay reads `inbox` and publishes what it gets to `outbox`, which two
    // functions read, each at its own position.
    deploy(
        &server,
        "relay",
        guests::EVENTS,
        &["--trigger", "queue=inbox", "--env", "FORWARD_TOPIC=outbox"],
    )
    .await;
    for reader in ["left", "right"] {
        deploy(
            &server,
            reader,
            guests::EVENTS,
            &["--trigger", "queue=outbox"],
        )
        .await;
    }
    publish(&server, "inbox", "?key=k1", "relayed").await;
    deliveries(&server, 3).await;
    let mut sources = Vec::new();
    for (id, key, body) in delivery_log(&server).await {
        assert_eq!((key.as_str(), body.as_str()), ("k1", "relayed"));
        sources.push(received(&server, &id).await.unwrap().source);
    }
    sources.sort();
    assert_eq!(
        sources,
        [
            "/projects/default/topics/inbox",
            "/projects/default/topics/outbox",
            "/projects/default/topics/outbox"
        ]
    );
    let triggers = send(control(&server, reqwest::Method::GET, "/v1/triggers")).await;
    let cursors: Vec<i64> = triggers.json()["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|trigger| trigger["trigger"] == "queue-outbox")
        .map(|trigger| trigger["cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(cursors.len(), 2, "{}", triggers.text());
}

#[tokio::test]
async fn a_queue_trigger_with_a_batch_size_gets_messages_together() {
    let server = app();
    deploy(
        &server,
        "batcher",
        guests::EVENTS,
        &["--trigger", "queue=bulk;batch=5"],
    )
    .await;
    // Five messages in one write: one call, with all five.
    let messages: Vec<Value> = (0..5).map(|n| json!({"data": {"n": n}})).collect();
    let ids = publish_batch(&server, "bulk", Value::Array(messages)).await;
    deliveries(&server, 1).await;
    let batch = received(&server, "batch").await.unwrap();
    assert_eq!(batch.content_type, "application/cloudevents-batch+json");
    let events: Value = serde_json::from_str(&batch.body).unwrap();
    let events = events.as_array().unwrap();
    let batch_ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        batch_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(events[3]["specversion"], "1.0");
    assert_eq!(events[3]["type"], "wok.queue.message");
    assert_eq!(events[3]["source"], "/projects/default/topics/bulk");
    assert_eq!(events[3]["data"], json!({"n": 3}));
    assert_eq!(
        delivery_count(&server).await,
        1,
        "one invocation for the batch"
    );
}

#[tokio::test]
async fn a_cron_trigger_fires_at_each_time_of_its_schedule_by_the_clock() {
    let server = app();
    // The clock stands at a minute's 30th second; the schedule fires at
    // each minute's start.
    let minute = 60_000;
    let start = (domain::now_millis() / minute + 1) * minute + 30_000;
    server.clock.set(start);
    deploy(
        &server,
        "ticker",
        guests::EVENTS,
        &["--trigger", "cron=0 * * * * *;name=every-minute"],
    )
    .await;
    let at_minute = |n: i64| start - 30_000 + n * minute;
    // The schedule's worker starts a moment after the deploy: time moves a
    // minute at a time until two ticks have come (a tick whose time passed
    // before the worker ran is not made up later, as after a restart).
    let mut minutes = 0;
    while delivery_count(&server).await < 2 {
        minutes += 1;
        assert!(minutes <= 10, "no two ticks in ten minutes of the clock");
        let before = delivery_count(&server).await;
        server.clock.set(at_minute(minutes));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while delivery_count(&server).await == before && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let log = delivery_log(&server).await;
    let mut times = Vec::new();
    for (id, _, _) in &log {
        let tick = received(&server, id).await.unwrap();
        assert_eq!(tick.kind, "wok.cron.tick");
        assert_eq!(
            tick.source,
            "/projects/default/functions/ticker/triggers/every-minute"
        );
        let data: Value = serde_json::from_str(&tick.body).unwrap();
        let scheduled = data["scheduled"].as_str().unwrap().to_owned();
        // CloudEvents' `time` is when the occurrence happened: the
        // scheduled time, not when the tick was logged.
        assert_eq!(tick.time, scheduled);
        times.push(scheduled);
    }
    // One delivery a time of the schedule, at its time: the last minutes
    // the clock reached, each once.
    let expected: Vec<String> = (minutes - 1..=minutes)
        .map(|n| rfc3339(at_minute(n)))
        .collect();
    assert_eq!(times, expected);
    let records = wait_for_records(&server, 2).await;
    assert!(records.iter().all(|record| record["trigger"] == "cron"));

    // Bad schedules are refused at deploy, with the reason.
    for (trigger, says) in [
        ("cron=* * *", "is invalid"),
        ("cron=0 0 0 30 2 *", "never fires"),
        ("cron=0 * * * * * 2030", "fields"),
        ("cron=* * * * *;tz=Mars/Olympus", "IANA"),
        ("queue=Orders", "lowercase"),
        ("docs=users;batch=3", "not a setting"),
    ] {
        let answer = test_support::deploy_api(
            &server,
            "default",
            "bad",
            guests::EVENTS,
            &[("trigger", trigger)],
        )
        .await;
        assert_eq!(answer.error_code(), "invalid_config", "{trigger}");
        assert!(answer.text().contains(says), "{trigger}: {}", answer.text());
    }
}

/// A time as RFC 3339 in UTC with milliseconds, as CloudEvents' `time`.
fn rfc3339(millis: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(millis as u64);
    humantime::format_rfc3339_millis(time).to_string()
}
