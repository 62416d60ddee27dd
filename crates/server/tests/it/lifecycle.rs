use crate::*;

use reqwest::Method;

#[tokio::test]
async fn deploying_bytes_already_compiled_reuses_the_compiled_artifact() {
    let server = app();
    deploy(&server, "first", guests::HELLO, &[]).await;
    let before = test_support::compiled_files(server.data_dir());
    deploy(&server, "second", guests::HELLO, &["--memory", "64MiB"]).await;
    deploy(&server, "first", guests::HELLO, &["--env", "NEW=1"]).await;
    assert_eq!(
        test_support::compiled_files(server.data_dir()),
        before,
        "no compile happened for known bytes"
    );
    assert_eq!(get(&server, "/fn/second").await.text(), "hello from wok\n");
    let info = send(control(&server, Method::GET, "/v1/functions/first"))
        .await
        .json();
    assert_eq!(
        (info["version"].as_u64(), info["world"].as_str()),
        (Some(2), Some("wasi:http@0.2"))
    );
}

#[tokio::test]
async fn a_start_without_the_compiled_cache_compiles_each_function_again() {
    let server = app();
    deploy(&server, "hello", guests::HELLO, &[]).await;
    deploy(&server, "echo", guests::ECHO, &[]).await;
    let compiled = test_support::compiled_files(server.data_dir());
    assert_eq!(compiled.len(), 2, "{compiled:?}");
    for (name, _) in &compiled {
        std::fs::remove_file(server.data_dir().join("compiled").join(name)).unwrap();
    }

    let server = server.restart();
    assert_eq!(get(&server, "/fn/hello").await.text(), "hello from wok\n");
    let echo = send(http().post(format!("{}/fn/echo", server.url)).body("back")).await;
    assert_eq!(echo.text(), "back");
    let names = |files: Vec<(String, std::time::SystemTime)>| -> Vec<String> {
        files.into_iter().map(|(name, _)| name).collect()
    };
    assert_eq!(
        names(test_support::compiled_files(server.data_dir())),
        names(compiled),
        "the cache is made again, under the same names"
    );
}

#[tokio::test]
async fn metrics_count_invocations_by_outcome() {
    let server = app();
    deploy(&server, "hello", guests::HELLO, &[]).await;
    deploy(&server, "trap", guests::TRAP, &[]).await;
    for _ in 0..3 {
        get(&server, "/fn/hello").await;
    }
    get(&server, "/fn/trap").await;
    wait_for_records(&server, 4).await;
    let text = send(control(&server, reqwest::Method::GET, "/metrics"))
        .await
        .text();
    let value = |needle: &str| -> f64 {
        let line = text
            .lines()
            .find(|line| line.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        value(r#"wok_invocations_total{project="default",function="hello",outcome="success"}"#),
        3.0
    );
    assert_eq!(
        value(
            r#"wok_invocations_total{project="default",function="trap",outcome="function_trap"}"#
        ),
        1.0
    );
    assert_eq!(
        value(r#"wok_invocation_duration_seconds_count{function="default/hello"}"#),
        3.0
    );
    assert_eq!(
        value(r#"wok_instantiation_seconds_count{function="default/hello"}"#),
        3.0
    );
    assert_eq!(value("wok_instances_in_flight"), 0.0);
    // Every function request, answered or failed, had its head timed.
    assert_eq!(value("wok_response_head_seconds_count"), 4.0);
}

#[tokio::test]
async fn query_parameters_are_checked_with_invalid_query() {
    let server = app();
    deploy(&server, "hello", guests::HELLO, &[]).await;
    send(control(&server, reqwest::Method::PUT, "/v1/buckets/media")).await;
    for path in [
        "/v1/topics/news/events?limit=0",
        "/v1/topics/news/events?after=-1",
        "/v1/topics/news/events?limit=5000",
        "/v1/events/dead?limit=0",
        "/v1/events/dead?seq=-3",
        "/v1/functions/hello/logs?after=-1",
        "/v1/functions/hello/logs?limit=0",
        "/v1/invocations?limit=0",
        "/v1/kv/cache?limit=0",
        "/v1/objects/media?limit=0",
        "/v1/docs/notes?limit=0",
        "/v1/usage?bogus=1",
        "/v1/kv/cache?limit=%zz",
    ] {
        let answer = send(control(&server, reqwest::Method::GET, path)).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, "invalid_query"),
            "{path}: {}",
            answer.text()
        );
    }
}
