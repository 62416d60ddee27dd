use crate::*;

use serde_json::{Value, json};

fn docs(server: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    control(server, method, &format!("/v1/docs{path}"))
}

async fn post_json(server: &TestApp, path: &str, body: Value) -> Answer {
    send(docs(server, reqwest::Method::POST, path).json(&body)).await
}

#[tokio::test]
async fn documents_over_rest() {
    let server = app();
    // Create with a server-chosen id: 201, ETag, then read it back.
    let created = post_json(&server, "/users", json!({"name": "ada", "age": 36})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let version = created.json()["version"].as_u64().unwrap();
    assert_eq!(created.header("etag"), format!("\"{version}\""));
    let fetched = send(docs(&server, reqwest::Method::GET, &format!("/users/{id}"))).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["data"], json!({"name": "ada", "age": 36}));
    assert_eq!(fetched.header("etag"), format!("\"{version}\""));

    // PUT creates (201) then replaces (200); If-Match guards, 412 when stale.
    let put = |body: Value| docs(&server, reqwest::Method::PUT, "/users/bob").json(&body);
    assert_eq!(send(put(json!({"name": "bob"}))).await.status, 201);
    let replaced = send(put(json!({"name": "bob", "age": 40}))).await;
    assert_eq!(replaced.status, 200);
    let v2 = replaced.json()["version"].as_u64().unwrap();
    let stale = send(put(json!({})).header("if-match", format!("\"{}\"", v2 - 1))).await;
    assert_eq!(
        (stale.status, stale.error_code().as_str()),
        (412, "precondition_failed")
    );
    let exists = send(put(json!({})).header("if-none-match", "*")).await;
    assert_eq!(exists.status, 412);

    // Merge patch: nested fields merge, null removes.
    let patched = send(
        docs(&server, reqwest::Method::PATCH, "/users/bob")
            .header("if-match", format!("\"{v2}\""))
            .json(&json!({"age": null, "address": {"city": "Oslo"}})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let bob = send(docs(&server, reqwest::Method::GET, "/users/bob")).await;
    assert_eq!(
        bob.json()["data"],
        json!({"name": "bob", "address": {"city": "Oslo"}})
    );
    let missing =
        send(docs(&server, reqwest::Method::PATCH, "/users/nobody").json(&json!({"a": 1}))).await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "document_not_found")
    );

    // Bad input: clear 4xx, nothing written.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            docs(&server, reqwest::Method::POST, "/users").body("{not json"),
            400,
            "invalid_json",
        ),
        (
            docs(&server, reqwest::Method::POST, "/users").json(&json!([1, 2])),
            400,
            "invalid_document",
        ),
        (
            docs(&server, reqwest::Method::PUT, "/users/_secret").json(&json!({})),
            400,
            "invalid_document",
        ),
        (
            docs(&server, reqwest::Method::POST, "/Bad_Name").json(&json!({})),
            400,
            "invalid_name",
        ),
        (
            docs(&server, reqwest::Method::POST, "/users")
                .json(&json!({"blob": "x".repeat(1_100_000)})),
            400,
            "invalid_document",
        ),
        (
            docs(&server, reqwest::Method::POST, "/users")
                .body(format!("{{\"blob\": \"{}\"}}", "x".repeat(3 << 20))),
            413,
            "payload_too_large",
        ),
        (
            docs(&server, reqwest::Method::POST, "/users/_query")
                .json(&json!({"where": ["age", "~", 1]})),
            400,
            "invalid_query",
        ),
        (
            docs(&server, reqwest::Method::POST, "/users/_query")
                .json(&json!({"where": ["age", ">", [1]]})),
            400,
            "invalid_query",
        ),
        (
            docs(&server, reqwest::Method::POST, "/users/_query").json(&json!({"limt": 3})),
            400,
            "invalid_query",
        ),
    ];
    for (request, status, code) in cases {
        let answer = send(request).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (status, code),
            "{}",
            answer.text()
        );
    }
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let too_deep = post_json(&server, "/users", deep).await;
    assert_eq!(too_deep.status, 400);
    assert!(
        too_deep.text().contains("levels deep"),
        "{}",
        too_deep.text()
    );
    let count = post_json(&server, "/users/_count", json!({})).await;
    assert_eq!(count.json()["count"], 2);

    // Delete is idempotent; a condition still guards it.
    let guarded =
        send(docs(&server, reqwest::Method::DELETE, "/users/bob").header("if-match", "\"1\""))
            .await;
    assert_eq!(guarded.status, 412);
    assert_eq!(
        send(docs(&server, reqwest::Method::DELETE, "/users/bob"))
            .await
            .status,
        204
    );
    assert_eq!(
        send(docs(&server, reqwest::Method::DELETE, "/users/bob"))
            .await
            .status,
        204
    );
    let gone = send(docs(&server, reqwest::Method::GET, "/users/bob")).await;
    assert_eq!(gone.error_code(), "document_not_found");
}

#[tokio::test]
async fn batches_commit_all_or_nothing() {
    let server = app();
    let failing = post_json(
        &server,
        "/_batch",
        json!({"writes": [
            {"op": "create", "collection": "orders", "id": "o1", "data": {"total": 10}},
            {"op": "patch", "collection": "stock", "id": "widget", "data": {"count": 4}},
        ]}),
    )
    .await;
    assert_eq!(
        (failing.status, failing.error_code().as_str()),
        (404, "document_not_found")
    );
    assert!(
        failing.text().contains("write 1 of the batch failed"),
        "{}",
        failing.text()
    );
    let order = send(docs(&server, reqwest::Method::GET, "/orders/o1")).await;
    assert_eq!(order.status, 404);

    let ok = post_json(
        &server,
        "/_batch",
        json!({"writes": [
            {"op": "set", "collection": "stock", "id": "widget", "data": {"count": 5}},
            {"op": "create", "collection": "orders", "id": "o1", "data": {"total": 10}},
            {"op": "create", "collection": "orders", "data": {"total": 3}},
        ]}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let results = ok.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    let stock_version = results[0]["version"].as_u64().unwrap();
    let stale = post_json(
        &server,
        "/_batch",
        json!({"writes": [
            {"op": "patch", "collection": "stock", "id": "widget", "data": {"count": 4}, "if_version": stock_version},
            {"op": "delete", "collection": "orders", "id": "o1", "if_version": stock_version + 100},
        ]}),
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    let widget = send(docs(&server, reqwest::Method::GET, "/stock/widget")).await;
    assert_eq!(widget.json()["data"]["count"], 5);

    for (body, code) in [
        (json!({"writes": []}), "invalid_batch"),
        (
            json!({"writes": [{"op": "upsert", "collection": "a", "id": "x"}]}),
            "invalid_batch",
        ),
        (
            json!({"writes": [{"op": "set", "collection": "a", "data": {}}]}),
            "invalid_batch",
        ),
        (json!({"rights": []}), "invalid_batch"),
    ] {
        let answer = post_json(&server, "/_batch", body).await;
        assert_eq!((answer.status, answer.error_code().as_str()), (400, code));
    }
}

#[tokio::test]
async fn guests_use_wok_documents_on_the_same_data_as_rest() {
    let server = app();
    create_project(&server, "alpha").await;
    deploy(&server, "docs", guests::DOCS, &[]).await;
    deploy(&server, "docs", guests::DOCS, &["--project", "alpha"]).await;
    let guest = |method: reqwest::Method, path: &str| {
        http().request(method, format!("{}/fn/docs{path}", server.url))
    };

    // Guest writes, REST reads; REST writes, the guest patches.
    let created =
        send(guest(reqwest::Method::POST, "/notes").body(r#"{"text": "from a guest"}"#)).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.text();
    let read = send(docs(&server, reqwest::Method::GET, &format!("/notes/{id}"))).await;
    assert_eq!(read.json()["data"], json!({"text": "from a guest"}));
    let put = send(
        docs(&server, reqwest::Method::PUT, "/notes/n1").json(&json!({"text": "rest", "n": 1})),
    )
    .await;
    let version = put.json()["version"].as_u64().unwrap();
    let patched = send(
        guest(
            reqwest::Method::PATCH,
            &format!("/notes/n1?if-version={version}"),
        )
        .body(r#"{"n": 2}"#),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let stale = send(
        guest(
            reqwest::Method::PATCH,
            &format!("/notes/n1?if-version={version}"),
        )
        .body(r#"{"n": 3}"#),
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    let read = send(guest(reqwest::Method::GET, "/notes/n1")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&read.body).unwrap(),
        json!({"text": "rest", "n": 2})
    );
    let missing = send(guest(reqwest::Method::GET, "/notes/nope")).await;
    assert_eq!(missing.status, 404);

    // Batches are atomic for guests too.
    let failing = send(
        guest(reqwest::Method::POST, "/?batch").body(
            json!([
                {"op": "set", "collection": "notes", "id": "b1", "data": {"n": 1}},
                {"op": "create", "collection": "notes", "id": "n1", "data": {}},
            ])
            .to_string(),
        ),
    )
    .await;
    assert_eq!(failing.status, 409, "{}", failing.text());
    assert!(
        failing.text().contains("write 1 of the batch failed"),
        "{}",
        failing.text()
    );
    assert_eq!(
        send(docs(&server, reqwest::Method::GET, "/notes/b1"))
            .await
            .status,
        404
    );
    let done = send(
        guest(reqwest::Method::POST, "/?batch").body(
            json!([
                {"op": "set", "collection": "notes", "id": "b1", "data": {"n": 10}},
                {"op": "set", "collection": "notes", "id": "b2", "data": {"n": 20}},
                {"op": "delete", "collection": "notes", "id": "n1"},
            ])
            .to_string(),
        ),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());

    // Queries and counts: the REST query language, pages followed by the guest.
    let ids = send(
        guest(reqwest::Method::POST, "/notes?query")
            .body(r#"{"where": ["n", ">=", 10], "order_by": ["-n"], "limit": 1}"#),
    )
    .await;
    assert_eq!(ids.text(), "b2\nb1\n");
    let count = send(
        guest(reqwest::Method::POST, "/notes?count").body(r#"{"where": ["n", "exists", true]}"#),
    )
    .await;
    assert_eq!(count.text(), "2");
    let bad =
        send(guest(reqwest::Method::POST, "/notes?query").body(r#"{"where": ["n", "=~", 1]}"#))
            .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().starts_with("invalid: unknown operator"),
        "{}",
        bad.text()
    );
    let bad = send(guest(reqwest::Method::POST, "/Notes").body("{}")).await;
    assert_eq!(bad.status, 400, "{}", bad.text());

    // The same guest in project alpha sees only alpha's documents.
    let alpha = |method: reqwest::Method, path: &str| {
        http().request(method, format!("{}/p/alpha/fn/docs{path}", server.url))
    };
    assert_eq!(
        send(alpha(reqwest::Method::GET, "/notes/b1")).await.status,
        404
    );
    assert_eq!(
        send(alpha(reqwest::Method::POST, "/notes?count").body("{}"))
            .await
            .text(),
        "0"
    );
    send(alpha(reqwest::Method::PUT, "/notes/a1").body(r#"{"alpha": true}"#)).await;
    assert_eq!(
        send(docs(&server, reqwest::Method::GET, "/notes/a1"))
            .await
            .status,
        404
    );
    let count = send(
        control(
            &server,
            reqwest::Method::POST,
            "/v1/projects/alpha/docs/notes/_count",
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(count.json()["count"], 1, "{}", count.text());
}
