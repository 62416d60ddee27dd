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
