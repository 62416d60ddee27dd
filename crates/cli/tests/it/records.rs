use crate::*;
use reqwest::Method;

#[tokio::test]
async fn usage_is_the_exact_sum_of_the_records() {
    let server = server();
    deploy(&server, "echo", guests::ECHO, &["--memory", "64MiB"]);
    deploy(&server, "trap", guests::TRAP, &["--memory", "200MiB"]);
    let mut sent = Vec::new();
    for size in [0usize, 10, 1000, 100_000] {
        let answer = send(
            http()
                .post(format!("{}/fn/echo", server.url))
                .body(vec![b'z'; size]),
        )
        .await;
        assert_eq!(answer.body.len(), size);
        sent.push((answer.header("x-wok-invocation-id"), size));
    }
    for _ in 0..3 {
        assert_eq!(get(&server, "/fn/trap").await.status, 502);
    }
    let records = wait_for_records(&server, 7).await;
    assert_eq!(records.len(), 7);

    for (id, size) in &sent {
        let record = records.iter().find(|r| r["id"] == id.as_str()).unwrap();
        assert_eq!(record["function"], "echo");
        assert_eq!(record["version"], 1);
        assert_eq!(record["trigger"], "http");
        assert_eq!(record["outcome"], "success");
        assert_eq!(record["memory_mib"], 64);
        assert_eq!(record["bytes_in"], *size as u64);
        assert_eq!(record["bytes_out"], *size as u64);
        assert_eq!(record["cold"], true);
        assert!(record["peak_memory_bytes"].as_u64().unwrap() > 0);
        // A component's CPU time is not told apart from the server's.
        assert!(record.get("cpu_us").is_none(), "{record}");
        let duration_us = record["duration_us"].as_u64().unwrap();
        assert_eq!(
            record["billed_ms"].as_u64().unwrap(),
            duration_us.div_ceil(1000).max(1)
        );
    }

    // Sum the records one by one and compare with the usage API and the CLI.
    let check = |records: &[&serde_json::Value], usage: &serde_json::Value| {
        let requests = records.len() as u64;
        let errors = records.iter().filter(|r| r["outcome"] != "success").count() as u64;
        let billed: u64 = records
            .iter()
            .map(|r| r["billed_ms"].as_u64().unwrap())
            .sum();
        let mib_ms: u64 = records
            .iter()
            .map(|r| r["billed_ms"].as_u64().unwrap() * r["memory_mib"].as_u64().unwrap())
            .sum();
        assert_eq!(usage["requests"], requests, "{usage}");
        assert_eq!(usage["errors"], errors, "{usage}");
        assert_eq!(usage["billed_ms"], billed, "{usage}");
        assert_eq!(usage["mib_milliseconds"], mib_ms, "{usage}");
        assert_eq!(
            usage["gb_seconds"].as_f64().unwrap(),
            mib_ms as f64 / 1024.0 / 1000.0
        );
    };
    let all: Vec<&serde_json::Value> = records.iter().collect();
    check(
        &all,
        &send(control(&server, Method::GET, "/v1/usage"))
            .await
            .json(),
    );
    let traps: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["function"] == "trap").collect();
    assert_eq!(traps.len(), 3);
    let cli: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["usage", "--json", "--function", "trap"])).unwrap();
    check(&traps, &cli);
    let future: serde_json::Value = serde_json::from_str(&server.cli_ok(&[
        "usage",
        "--json",
        "--since",
        "2999-01-01T00:00:00Z",
    ]))
    .unwrap();
    assert_eq!(future["requests"], 0);
    let text = server.cli_ok(&["usage", "--since", "1h"]);
    assert!(
        text.contains("requests    7") && text.contains("errors      3"),
        "{text}"
    );

    let output = server.cli(&["usage", "--since", "yesterday-ish"]);
    assert!(
        !output.success() && output.stderr().contains("is not a time"),
        "{}",
        output.stderr()
    );
    let answer = send(control(&server, Method::GET, "/v1/usage?function=Bad_Name")).await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn no_record_is_lost_on_graceful_shutdown() {
    let server = server();
    deploy(&server, "hello", guests::HELLO, &[]);
    // More concurrent requests than the test server has instance slots (64):
    // they wait for a slot instead of failing.
    let count = 300;
    let client = http();
    let calls = (0..count).map(|_| {
        let request = client.get(format!("{}/fn/hello", server.url));
        async move { send(request).await.status }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|status| *status == 200));
    // Stop at once: the records are still in the batch queue.
    let server = server.restart();
    let answer = send(control(
        &server,
        Method::GET,
        "/v1/invocations?limit=100000",
    ))
    .await;
    assert_eq!(
        answer.json()["invocations"].as_array().unwrap().len(),
        count
    );
    assert_eq!(
        send(control(&server, Method::GET, "/v1/usage"))
            .await
            .json()["requests"],
        count as u64
    );
}
