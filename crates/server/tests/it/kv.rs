//! Key-value over REST, written as exchanges held to their expected text
//! (`check`): versions as ETags, conditions, expiry by the server's clock,
//! counters, the errors of each mistake.
use crate::*;
use expect_test::expect;

#[tokio::test]
async fn key_value_exchanges() {
    let app = app();
    check(
        &app,
        "PUT /v1/kv/cache/greeting\n\nhello",
        expect![[r#"
        200
        {
          "version": 1
        }"#]],
    )
    .await;
    check(
        &app,
        "GET /v1/kv/cache/greeting",
        expect![[r#"
        200
        hello"#]],
    )
    .await;
    check(
        &app,
        "PUT /v1/kv/cache/greeting\nIf-Match: \"7\"\n\nstale",
        expect![[r#"412 precondition_failed: the entry is not at the version If-Match names, or If-None-Match: * found it"#]],
    )
    .await;
    check(
        &app,
        "PUT /v1/kv/cache/greeting\nIf-None-Match: *\n\nagain",
        expect![[r#"412 precondition_failed: the entry is not at the version If-Match names, or If-None-Match: * found it"#]],
    )
    .await;
    check(
        &app,
        "PUT /v1/kv/cache/greeting\nIf-Match: \"1\"\n\nswapped",
        expect![[r#"
        200
        {
          "version": 2
        }"#]],
    )
    .await;
    check(
        &app,
        "POST /v1/kv/cache/hits?increment=5",
        expect![[r#"
        200
        {
          "value": 5
        }"#]],
    )
    .await;
    check(
        &app,
        "POST /v1/kv/cache/greeting?increment=1",
        expect![[
            r#"409 not_a_number: the value is not a decimal integer, so it cannot be incremented"#
        ]],
    )
    .await;
    check(
        &app,
        "GET /v1/kv/cache/nope",
        expect![[r#"404 key_not_found: no key "nope" in this store"#]],
    )
    .await;
    check(&app, "GET /v1/kv/Not%20A%20Store/key", expect![[r#"400 invalid_name: store name "Not A Store" may only contain lowercase letters, digits and '-', and must start with a letter or digit"#]])
        .await;
    check(
        &app,
        "PUT /v1/kv/cache/session?ttl=never\n\ns",
        expect![[
            r#"400 invalid_query: ttl must be a positive duration like 30s or 1h, not "never""#
        ]],
    )
    .await;
}

#[tokio::test]
async fn an_entry_expires_when_the_clock_says_so() {
    let app = app();
    check(
        &app,
        "PUT /v1/kv/cache/session?ttl=30s\n\ns",
        expect![[r#"
        200
        {
          "version": 1
        }"#]],
    )
    .await;
    app.clock.advance(Duration::from_millis(29_999));
    check(
        &app,
        "GET /v1/kv/cache/session",
        expect![[r#"
        200
        s"#]],
    )
    .await;
    app.clock.advance(Duration::from_millis(1));
    check(
        &app,
        "GET /v1/kv/cache/session",
        expect![[r#"404 key_not_found: no key "session" in this store"#]],
    )
    .await;
    check(
        &app,
        "GET /v1/kv/cache",
        expect![[r#"
        200
        {
          "cursor": null,
          "keys": []
        }"#]],
    )
    .await;
}

fn kv(server: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    control(server, method, &format!("/v1/kv{path}"))
}

#[tokio::test]
async fn guests_use_wasi_keyvalue_on_the_same_data_as_rest() {
    let server = app();
    create_project(&server, "alpha").await;
    deploy(&server, "kv", guests::KV, &[]).await;
    deploy(&server, "kv", guests::KV, &["--project", "alpha"]).await;
    let guest = |method: reqwest::Method, path: &str| {
        http().request(method, format!("{}/fn/kv{path}", server.url))
    };

    // Guest writes, REST reads; REST writes, the guest increments.
    let answer = send(guest(reqwest::Method::PUT, "/cache/greeting").body("hi")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let read = |key: &str| send(kv(&server, reqwest::Method::GET, &format!("/cache/{key}")));
    assert_eq!(read("greeting").await.text(), "hi");
    send(kv(&server, reqwest::Method::PUT, "/cache/n").body("41")).await;
    let answer = send(guest(reqwest::Method::POST, "/cache/n?incr=1")).await;
    assert_eq!(answer.text(), "42");
    assert_eq!(read("n").await.text(), "42");
    assert_eq!(
        send(guest(reqwest::Method::GET, "/cache/greeting?exists"))
            .await
            .text(),
        "true"
    );
    assert_eq!(
        send(guest(reqwest::Method::DELETE, "/cache/greeting"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(guest(reqwest::Method::GET, "/cache/greeting?exists"))
            .await
            .text(),
        "false"
    );
    assert_eq!(
        send(kv(&server, reqwest::Method::GET, "/cache/greeting"))
            .await
            .status,
        404
    );

    // Batches, and listing past one page through the guest's cursors.
    let lines: Vec<String> = (0..1001).map(|i| format!("item{i:04}={i}")).collect();
    let answer = send(guest(reqwest::Method::POST, "/bulk?set-many").body(lines.join("\n"))).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let listed = send(guest(reqwest::Method::GET, "/bulk?list")).await.text();
    assert_eq!(listed.lines().count(), 1001);
    assert_eq!(listed.lines().last(), Some("item1000"));
    let many = send(guest(reqwest::Method::GET, "/bulk?get-many=item0007,nope"))
        .await
        .text();
    assert_eq!(many, "item0007=7\nnope=<none>");

    // A guest sees only its own project's stores.
    let alpha = |path: &str| http().get(format!("{}/p/alpha/fn/kv{path}", server.url));
    assert_eq!(send(alpha("/cache/n")).await.status, 404);
    assert_eq!(send(alpha("/bulk?list")).await.text(), "");
    let answer = send(alpha("/Not_A_Store/x")).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (400, "Error::NoSuchStore")
    );
}
