use crate::*;

use serde_json::{Value, json};

fn docs(server: &WokServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    control(server, method, &format!("/v1/docs{path}"))
}

async fn post_json(server: &WokServer, path: &str, body: Value) -> Answer {
    send(docs(server, reqwest::Method::POST, path).json(&body)).await
}

#[tokio::test]
async fn queries_indexes_and_pages() {
    let server = server();
    // 1,100 events: more than a collection may be read whole for a query.
    for chunk in 0..3 {
        let writes: Vec<Value> = (chunk * 400..(chunk * 400 + 400).min(1100))
            .map(|n| {
                json!({"op": "set", "collection": "events", "id": format!("e{n:04}"),
                       "data": {"kind": if n % 3 == 0 { "click" } else { "view" }, "at": n,
                                "meta": {"tags": if n % 10 == 0 { json!(["promo"]) } else { json!([]) }}}})
            })
            .collect();
        let answer = post_json(&server, "/_batch", json!({ "writes": writes })).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let query = json!({"where": {"and": [["kind", "==", "click"], ["at", ">=", 900]]},
                       "order_by": ["-at"], "limit": 7});
    let refused = post_json(&server, "/events/_query", query.clone()).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (400, "unindexed_query")
    );
    assert!(
        refused.text().contains("[\\\"kind\\\", \\\"-at\\\"]"),
        "{}",
        refused.text()
    );

    // An index in the other direction does not serve it: read backwards,
    // it would break ties the other way.
    server.cli_ok(&["docs", "index", "create", "events", "kind-up", "kind", "at"]);
    let still = post_json(&server, "/events/_query", query.clone()).await;
    assert_eq!(still.error_code(), "unindexed_query", "{}", still.text());
    server.cli_ok(&["docs", "index", "rm", "events", "kind-up"]);
    // The one asked for, declared through the CLI; the query then runs on
    // it, page by page.
    assert_eq!(
        server.cli_ok(&[
            "docs", "index", "create", "events", "kind-at", "kind", "-at"
        ]),
        "created index kind-at on [kind, -at]\n"
    );
    let plan = post_json(&server, "/events/_explain", query.clone()).await;
    assert_eq!(plan.json()["strategy"], "index");
    assert_eq!(plan.json()["index"], "kind-at");
    let mut seen = Vec::new();
    let mut body = query.clone();
    loop {
        let page = post_json(&server, "/events/_query", body.clone()).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        for document in page["documents"].as_array().unwrap() {
            seen.push(document["data"]["at"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => body["cursor"] = json!(cursor),
            None => break,
        }
    }
    let want: Vec<i64> = (900..1100).rev().filter(|n| n % 3 == 0).collect();
    assert_eq!(seen, want);
    let count = post_json(
        &server,
        "/events/_count",
        json!({"where": query["where"].clone()}),
    )
    .await;
    assert_eq!(count.json()["count"], want.len());

    // Residual terms ride on an index; the CLI prints every page. (An
    // equality alone, unordered, is served by an index of just its field:
    // results come by id whatever the index.)
    server.cli_ok(&["docs", "index", "create", "events", "kind", "kind"]);
    let promo = json!({"where": {"and": [["kind", "==", "view"], ["meta.tags", "array-contains", "promo"]]}});
    let lines = server.cli_ok(&["docs", "query", "events", &promo.to_string()]);
    let ids: Vec<String> = lines
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let want: Vec<String> = (0..1100)
        .filter(|n| n % 10 == 0 && n % 3 != 0)
        .map(|n| format!("e{n:04}"))
        .collect();
    // By id: an unordered query's order, on any plan.
    assert_eq!(ids, want);
    assert_eq!(
        server
            .cli_ok(&["docs", "query", "events", &promo.to_string(), "--count"])
            .trim(),
        want.len().to_string()
    );
    let explain = server.cli_ok(&["docs", "query", "events", &promo.to_string(), "--explain"]);
    assert!(explain.contains("meta.tags array-contains"), "{explain}");
    server.cli_ok(&["docs", "index", "rm", "events", "kind"]);

    // Listing by id pages through everything, no offset cap.
    let first = send(docs(&server, reqwest::Method::GET, "/events?limit=1000")).await;
    let first = first.json();
    assert_eq!(first["documents"].as_array().unwrap().len(), 1000);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = send(docs(
        &server,
        reqwest::Method::GET,
        &format!("/events?limit=1000&cursor={cursor}"),
    ))
    .await;
    assert_eq!(rest.json()["documents"].as_array().unwrap().len(), 100);
    assert_eq!(rest.json()["documents"][0]["id"], "e1000");

    let listing = server.cli_ok(&["docs", "ls"]);
    assert_eq!(listing, "events\t1100 documents\tindexes: kind-at\n");
    assert_eq!(
        server.cli_ok(&["docs", "index", "ls", "events"]),
        "kind-at\tkind, -at\n"
    );
    server.cli_ok(&["docs", "index", "rm", "events", "kind-at"]);
    let refused = post_json(&server, "/events/_query", query).await;
    assert_eq!(refused.error_code(), "unindexed_query");
}

#[tokio::test]
async fn documents_through_the_cli_and_across_projects() {
    let server = server();
    let id = server.cli_ok(&["docs", "create", "notes", r#"{"text": "hi", "n": 1}"#]);
    let id = id.trim();
    assert_eq!(
        serde_json::from_str::<Value>(&server.cli_ok(&["docs", "get", "notes", id])).unwrap(),
        json!({"text": "hi", "n": 1})
    );
    assert!(
        server
            .cli_ok(&["docs", "set", "notes", "pinned", r#"{"text": "top"}"#])
            .starts_with("set pinned (version ")
    );
    server.cli_ok(&["docs", "patch", "notes", "pinned", r#"{"n": 2}"#]);
    assert_eq!(
        serde_json::from_str::<Value>(&server.cli_ok(&["docs", "get", "notes", "pinned"])).unwrap(),
        json!({"text": "top", "n": 2})
    );
    let stale = server.cli(&["docs", "set", "notes", "pinned", "{}", "--if-version", "1"]);
    assert!(!stale.success());
    assert!(
        stale.stderr().contains("precondition_failed"),
        "{}",
        stale.stderr()
    );
    let exists = server.cli(&["docs", "create", "notes", "{}", "--id", "pinned"]);
    assert!(!exists.success());
    let bad = server.cli(&["docs", "create", "notes", "{oops"]);
    assert!(!bad.success());
    assert!(bad.stderr().contains("not JSON"), "{}", bad.stderr());
    assert_eq!(
        server.cli_ok(&["docs", "rm", "notes", "pinned"]),
        "removed pinned\n"
    );

    // Another project's service key sees none of it, whatever the path.
    server.cli_ok(&["project", "create", "other"]);
    let issued = send(
        control(&server, reqwest::Method::POST, "/v1/projects/other/keys")
            .json(&json!({"kind": "service"})),
    )
    .await;
    let token = issued.json()["token"].as_str().unwrap().to_owned();
    let as_other = |method: reqwest::Method, path: &str| {
        http()
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(&token)
    };
    let own = send(as_other(reqwest::Method::GET, "/v1/docs")).await;
    assert_eq!(own.json(), json!({"collections": []}));
    let own_get = send(as_other(
        reqwest::Method::GET,
        &format!("/v1/docs/notes/{id}"),
    ))
    .await;
    assert_eq!(own_get.error_code(), "document_not_found");
    for path in [
        format!("/v1/projects/default/docs/notes/{id}"),
        "/v1/projects/default/docs".to_owned(),
    ] {
        let refused = send(as_other(reqwest::Method::GET, &path)).await;
        assert_eq!(refused.status, 403);
        assert!(!refused.text().contains("text"), "{}", refused.text());
    }
    let refused = send(
        as_other(
            reqwest::Method::POST,
            "/v1/projects/default/docs/notes/_query",
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(refused.status, 403);
    // Its own writes land in its own project.
    let mine =
        send(as_other(reqwest::Method::PUT, "/v1/docs/notes/x").json(&json!({"mine": true}))).await;
    assert_eq!(mine.status, 201);
    let listed = server.cli_ok(&["--project", "other", "docs", "query", "notes"]);
    assert_eq!(listed.lines().count(), 1);
    assert!(listed.contains("\"mine\":true"));
    assert_eq!(
        server.cli_ok(&["docs", "query", "notes", "--count"]).trim(),
        "1"
    );
}

#[tokio::test]
async fn acknowledged_document_batches_survive_sigkill_whole_and_torn_ones_vanish() {
    let mut server = server();
    let url = server.url.clone();
    let token = server.admin_token();
    let index = send(
        docs(&server, reqwest::Method::PUT, "/orders/_indexes/by-writer")
            .json(&json!({"fields": ["writer", "n"]})),
    )
    .await;
    assert_eq!(index.status, 201, "{}", index.text());
    // Each batch writes an order and its line in another collection; the
    // writers go on until the server dies under them and remember what
    // was acknowledged and what was in flight.
    let writers: Vec<_> = (0..12)
        .map(|writer| {
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    let body = json!({"writes": [
                        {"op": "set", "collection": "orders", "id": format!("o{writer}-{n}"),
                         "data": {"writer": writer, "n": n}},
                        {"op": "create", "collection": "lines", "id": format!("l{writer}-{n}"),
                         "data": {"order": format!("o{writer}-{n}")}},
                    ]});
                    let sent = client
                        .post(format!("{url}/v1/docs/_batch"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 200 => acknowledged.push(n),
                        _ => return (writer, acknowledged, n),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server = server.crash_and_restart();
    let mut total = 0;
    for handle in writers {
        let (writer, acknowledged, in_flight) = handle.await.unwrap();
        total += acknowledged.len();
        for n in acknowledged.iter().copied().chain([in_flight]) {
            let order = send(docs(
                &server,
                reqwest::Method::GET,
                &format!("/orders/o{writer}-{n}"),
            ))
            .await;
            let line = send(docs(
                &server,
                reqwest::Method::GET,
                &format!("/lines/l{writer}-{n}"),
            ))
            .await;
            if n == in_flight {
                // Unacknowledged: all of the batch, or none of it.
                assert_eq!(order.status, line.status, "batch {writer}-{n} is torn");
            } else {
                assert_eq!(
                    (order.status, line.status),
                    (200, 200),
                    "batch {writer}-{n} was lost"
                );
            }
        }
        // The index agrees with the documents after recovery.
        let indexed = post_json(
            &server,
            "/orders/_query",
            json!({"where": ["writer", "==", writer], "order_by": ["n"], "limit": 1000}),
        )
        .await
        .json();
        let ns: Vec<u64> = indexed["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|document| document["data"]["n"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (0..ns.len() as u64).collect();
        assert_eq!(ns, expected, "writer {writer}");
        assert!(ns.len() >= acknowledged.len());
    }
    assert!(total > 50, "only {total} batches before the kill");
}

#[tokio::test]
async fn access_rules_decide_what_public_keys_may_do() {
    let server = server();
    let issue = |project: &'static str, kind: &'static str| {
        let server = &server;
        async move {
            let issued = send(
                control(
                    server,
                    reqwest::Method::POST,
                    &format!("/v1/projects/{project}/keys"),
                )
                .json(&json!({ "kind": kind })),
            )
            .await;
            issued.json()["token"].as_str().unwrap().to_owned()
        }
    };
    server.cli_ok(&["project", "create", "other"]);
    let public = issue("default", "public").await;
    let foreign = issue("other", "public").await;
    send(docs(&server, reqwest::Method::PUT, "/posts/p1").json(&json!({"title": "hello", "n": 1})))
        .await;
    let as_key = |token: &str, method: reqwest::Method, path: &str| {
        http()
            .request(method, format!("{}/v1/docs{path}", server.url))
            .bearer_auth(token)
    };
    // What a public key tries, and whether it reads or writes.
    let attempts = |token: &str| {
        vec![
            (as_key(token, reqwest::Method::GET, "/posts/p1"), false),
            (as_key(token, reqwest::Method::GET, "/posts"), false),
            (
                as_key(token, reqwest::Method::POST, "/posts/_query")
                    .json(&json!({"where": ["n", "==", 1]})),
                false,
            ),
            (
                as_key(token, reqwest::Method::POST, "/posts/_count").json(&json!({})),
                false,
            ),
            (
                as_key(token, reqwest::Method::PUT, "/posts/p2").json(&json!({"n": 2})),
                true,
            ),
            (
                as_key(token, reqwest::Method::PATCH, "/posts/p1").json(&json!({"n": 1})),
                true,
            ),
            (
                as_key(token, reqwest::Method::POST, "/posts").json(&json!({"n": 3})),
                true,
            ),
            (
                as_key(token, reqwest::Method::POST, "/_batch").json(&json!({"writes": [
                    {"op": "set", "collection": "posts", "id": "p4", "data": {}}]})),
                true,
            ),
        ]
    };
    for (rule, reads, writes) in [
        ("private", false, false),
        ("public-read", true, false),
        ("public-read-write", true, true),
    ] {
        assert_eq!(
            server.cli_ok(&["docs", "access", "posts", rule]),
            format!("posts\t{rule}\n")
        );
        for (request, is_write) in attempts(&public) {
            let allowed = if is_write { writes } else { reads };
            let answer = send(request).await;
            if allowed {
                assert!(answer.status < 300, "{rule}: {}", answer.text());
            } else {
                assert_eq!(
                    (answer.status, answer.error_code().as_str()),
                    (403, "forbidden"),
                    "{rule}"
                );
                assert!(!answer.text().contains("hello"), "{}", answer.text());
            }
        }
        // Another project's public key: never, whatever the rule.
        for (request, _) in attempts(&foreign) {
            let request = request.build().unwrap();
            let path = request
                .url()
                .path()
                .replacen("/v1/", "/v1/projects/default/", 1);
            let method = request.method().clone();
            let answer = send(
                http()
                    .request(method, format!("{}{path}", server.url))
                    .bearer_auth(&foreign)
                    .json(&json!({})),
            )
            .await;
            assert_eq!(answer.status, 403, "{rule} {path}");
        }
    }
    // A collection without a rule is private; management is never public.
    send(docs(&server, reqwest::Method::PUT, "/secrets/s1").json(&json!({"k": "v"}))).await;
    assert_eq!(
        server.cli_ok(&["docs", "access", "secrets"]),
        "secrets\tprivate\n"
    );
    for (method, path) in [
        (reqwest::Method::GET, "/secrets/s1"),
        (reqwest::Method::GET, ""),
        (reqwest::Method::GET, "/posts/_indexes"),
        (reqwest::Method::PUT, "/posts/_indexes/by-n"),
        (reqwest::Method::POST, "/posts/_explain"),
        (reqwest::Method::PUT, "/posts/_access"),
    ] {
        let answer = send(
            as_key(&public, method.clone(), path)
                .json(&json!({"fields": ["n"], "access": "private"})),
        )
        .await;
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.text());
    }
    let bad = server.cli(&["docs", "access", "posts", "world-writable"]);
    assert!(bad.stderr().contains("invalid_access"), "{}", bad.stderr());
    // Public keys still have nothing to do with functions.
    let functions = send(
        http()
            .get(format!("{}/v1/functions", server.url))
            .bearer_auth(&public),
    )
    .await;
    assert_eq!(functions.status, 403);
}

#[tokio::test]
async fn a_collection_is_dropped_whole_and_its_versions_go_on() {
    let server = server();
    let written =
        send(docs(&server, reqwest::Method::PUT, "/logs/l1").json(&json!({"n": 1}))).await;
    assert_eq!(written.status, 201);
    let old_etag = written.header("etag");
    send(docs(&server, reqwest::Method::PUT, "/logs/l2").json(&json!({"n": 2}))).await;
    server.cli_ok(&["docs", "index", "create", "logs", "by-n", "n"]);
    server.cli_ok(&["docs", "access", "logs", "public-read-write"]);

    // Not with a public key, whatever the rule.
    let issued =
        send(control(&server, reqwest::Method::POST, "/v1/keys").json(&json!({"kind": "public"})))
            .await;
    let public = issued.json()["token"].as_str().unwrap().to_owned();
    let refused = send(
        http()
            .delete(format!("{}/v1/docs/logs", server.url))
            .bearer_auth(&public),
    )
    .await;
    assert_eq!(refused.status, 403);

    assert_eq!(
        server.cli_ok(&["docs", "drop", "logs"]),
        "dropped collection logs\n"
    );
    let listed = send(docs(&server, reqwest::Method::GET, "")).await;
    assert_eq!(listed.json(), json!({"collections": []}));
    let gone = send(docs(&server, reqwest::Method::GET, "/logs/l1")).await;
    assert_eq!(gone.error_code(), "document_not_found");
    assert_eq!(
        server.cli_ok(&["docs", "access", "logs"]),
        "logs\tprivate\n"
    );
    let again = send(docs(&server, reqwest::Method::DELETE, "/logs")).await;
    assert_eq!(again.error_code(), "collection_not_found");

    // Written again: a new version, so an ETag from before never matches.
    let stale = send(
        docs(&server, reqwest::Method::PUT, "/logs/l1")
            .header("if-match", &old_etag)
            .json(&json!({"n": 3})),
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    let fresh = send(docs(&server, reqwest::Method::PUT, "/logs/l1").json(&json!({"n": 3}))).await;
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.header("etag"), old_etag);
    let indexes = send(docs(&server, reqwest::Method::GET, "/logs/_indexes")).await;
    assert_eq!(indexes.json(), json!([]));

    // Dropping collections is how a project is emptied before removal.
    server.cli_ok(&["project", "create", "temp"]);
    server.cli_ok(&["--project", "temp", "docs", "set", "notes", "a", "{}"]);
    let busy = server.cli(&["project", "rm", "temp"]);
    assert!(
        busy.stderr().contains("project_not_empty"),
        "{}",
        busy.stderr()
    );
    server.cli_ok(&["--project", "temp", "docs", "drop", "notes"]);
    server.cli_ok(&["project", "rm", "temp"]);
}

/// Sends a request head that announces a body of `length` bytes, and no
/// body: an answer means the server decided without reading it.
async fn answer_without_body(server: &WokServer, path: &str, token: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer before the body was sent")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test]
async fn bodies_are_refused_before_they_are_read_when_access_or_size_rules_them_out() {
    let server = server();
    let issued =
        send(control(&server, reqwest::Method::POST, "/v1/keys").json(&json!({"kind": "public"})))
            .await;
    let public = issued.json()["token"].as_str().unwrap().to_owned();

    // A public key, and no collection it may write: the batch is refused
    // unread, whatever it says.
    let answer = answer_without_body(&server, "/v1/docs/_batch", &public, 5 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("may not write to any collection"),
        "{answer}"
    );
    // Once a collection lets public keys write, its batches go through, and
    // the others' are still refused after the body is read.
    server.cli_ok(&["docs", "access", "guestbook", "public-read-write"]);
    let batch = |collection: &str| {
        http()
            .post(format!("{}/v1/docs/_batch", server.url))
            .bearer_auth(&public)
            .json(
                &json!({"writes": [{"op": "create", "collection": collection, "data": {"hi": 1}}]}),
            )
    };
    assert_eq!(send(batch("guestbook")).await.status, 200);
    let refused = send(batch("secrets")).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (403, "forbidden")
    );
    // Rule changes apply to the early refusal at once.
    server.cli_ok(&["docs", "access", "guestbook", "public-read"]);
    let answer = answer_without_body(&server, "/v1/docs/_batch", &public, 100).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // Limits sized to the route, refused unread when the length says so:
    // a batch of 10 MiB, a query of 256 KiB, a document of 2 MiB.
    let token = server.admin_token();
    for (path, length) in [
        ("/v1/docs/_batch", (10 << 20) + 1),
        ("/v1/docs/posts/_query", (256 << 10) + 1),
        ("/v1/docs/posts/_count", (256 << 10) + 1),
        ("/v1/docs/posts", (2 << 20) + 1),
        ("/v1/topics/news/_batch", (16 << 20) + 1),
    ] {
        let answer = answer_without_body(&server, path, &token, length).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("\"payload_too_large\""), "{path}: {answer}");
    }
    // Small settings bodies are read up to their limit (64 KiB), a message
    // up to its 1 MiB.
    for (path, length) in [
        ("/v1/keys", (64 << 10) + 1),
        ("/v1/topics/news", (1 << 20) + 1),
    ] {
        let answer =
            send(control(&server, reqwest::Method::POST, path).body(vec![b' '; length])).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (413, "payload_too_large"),
            "{path}"
        );
    }
    // A large query body of no declared length is cut at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"where\": [\"a\", \"==\", \"".to_vec()),
        Ok(vec![b'x'; 300 << 10]),
    ];
    let answer = send(
        docs(&server, reqwest::Method::POST, "/posts/_query")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
    )
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "payload_too_large")
    );
}
