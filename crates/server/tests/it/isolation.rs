//! The isolation matrix: every data API over REST, called with another
//! project's credentials (service and public keys, scoped and unscoped
//! paths), is refused or sees only its own project, and nothing of the
//! other project shows in answers. (S3 is covered by the S3 suite; guest
//! interfaces by the guest tests of each service.)
use crate::*;

use serde_json::json;

#[tokio::test]
async fn no_data_api_crosses_projects() {
    let server = app();
    create_project(&server, "alpha").await;
    create_project(&server, "beta").await;
    // Alpha's data, all marked with a secret word, all public-read-write
    // so that only the project boundary stands in the way.
    let secret = "alpha-secret-7f3a";
    let alpha = |method: reqwest::Method, path: &str| {
        control(&server, method, &format!("/v1/projects/alpha{path}"))
    };
    for request in [
        alpha(reqwest::Method::PUT, "/kv/cache/k").body(secret),
        alpha(reqwest::Method::PUT, "/docs/notes/n").json(&json!({ "text": secret })),
        alpha(reqwest::Method::PUT, "/docs/notes/_access")
            .json(&json!({"access": "public-read-write"})),
        alpha(reqwest::Method::PUT, "/buckets/files"),
        alpha(reqwest::Method::PUT, "/buckets/files/_access")
            .json(&json!({"access": "public-read-write"})),
        alpha(reqwest::Method::PUT, "/objects/files/o").body(secret),
    ] {
        let answer = send(request).await;
        assert!(answer.status < 300, "{}", answer.text());
    }
    let mut beta_tokens = Vec::new();
    for kind in ["service", "public"] {
        let issued = send(
            control(&server, reqwest::Method::POST, "/v1/projects/beta/keys")
                .json(&json!({ "kind": kind })),
        )
        .await;
        beta_tokens.push((kind, issued.json()["token"].as_str().unwrap().to_owned()));
    }

    let attempts: Vec<(reqwest::Method, &str, Option<serde_json::Value>)> = vec![
        (reqwest::Method::GET, "/kv", None),
        (reqwest::Method::GET, "/kv/cache", None),
        (reqwest::Method::GET, "/kv/cache/k", None),
        (reqwest::Method::PUT, "/kv/cache/k", None),
        (reqwest::Method::DELETE, "/kv/cache/k", None),
        (reqwest::Method::POST, "/kv/cache/k?increment=1", None),
        (reqwest::Method::GET, "/docs", None),
        (reqwest::Method::GET, "/docs/notes", None),
        (reqwest::Method::GET, "/docs/notes/n", None),
        (reqwest::Method::PUT, "/docs/notes/n", Some(json!({"x": 1}))),
        (
            reqwest::Method::PATCH,
            "/docs/notes/n",
            Some(json!({"x": 1})),
        ),
        (reqwest::Method::DELETE, "/docs/notes/n", None),
        (reqwest::Method::POST, "/docs/notes/_query", Some(json!({}))),
        (reqwest::Method::POST, "/docs/notes/_count", Some(json!({}))),
        (
            reqwest::Method::POST,
            "/docs/_batch",
            Some(json!({"writes": [{"op": "delete", "collection": "notes", "id": "n"}]})),
        ),
        (reqwest::Method::GET, "/buckets", None),
        (reqwest::Method::DELETE, "/buckets/files", None),
        (reqwest::Method::GET, "/objects/files", None),
        (reqwest::Method::GET, "/objects/files/o", None),
        (reqwest::Method::PUT, "/objects/files/o", None),
        (reqwest::Method::DELETE, "/objects/files/o", None),
        (reqwest::Method::POST, "/objects/files/o", Some(json!({}))),
    ];
    for (kind, token) in &beta_tokens {
        for (method, path, body) in &attempts {
            let build = |url: String| {
                let request = http().request(method.clone(), url).bearer_auth(token);
                match body {
                    Some(body) => request.json(body),
                    None => request.body("beta"),
                }
            };
            // Naming alpha: refused before anything is read.
            let scoped = send(build(format!("{}/v1/projects/alpha{path}", server.url))).await;
            assert_eq!(
                scoped.status,
                403,
                "{kind} key, {method} alpha{path}: {}",
                scoped.text()
            );
            assert!(
                !scoped.text().contains(secret),
                "{kind} key, {method} alpha{path}"
            );
            // Unscoped: the key's own project, which has none of it.
            let own = send(build(format!("{}/v1{path}", server.url))).await;
            assert!(
                !own.text().contains(secret),
                "{kind} key, {method} {path} answered alpha's data: {}",
                own.text()
            );
        }
    }

    // Alpha's data is untouched by all of that.
    let kv = send(alpha(reqwest::Method::GET, "/kv/cache/k")).await;
    assert_eq!(kv.text(), secret);
    let doc = send(alpha(reqwest::Method::GET, "/docs/notes/n")).await;
    assert_eq!(doc.json()["data"]["text"], secret);
    let object = send(alpha(reqwest::Method::GET, "/objects/files/o")).await;
    assert_eq!(object.text(), secret);
}
