use crate::*;

fn kv(server: &WokServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    control(server, method, &format!("/v1/kv{path}"))
}

#[tokio::test]
async fn key_value_over_rest_and_the_cli() {
    let server = server();
    // Set, get (raw bytes, ETag = version), keys with slashes and spaces.
    let answer =
        send(kv(&server, reqwest::Method::PUT, "/cache/user/1%20a").body(vec![0u8, 159, 146, 150]))
            .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let version = answer.json()["version"].as_u64().unwrap();
    assert_eq!(answer.header("etag"), format!("\"{version}\""));
    let answer = send(kv(&server, reqwest::Method::GET, "/cache/user/1%20a")).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (200, vec![0u8, 159, 146, 150])
    );
    assert_eq!(answer.header("etag"), format!("\"{version}\""));
    let answer = send(kv(&server, reqwest::Method::GET, "/cache/nope")).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (404, "key_not_found")
    );

    // Compare-and-swap and create-only: 412 when the condition fails.
    let stale = send(
        kv(&server, reqwest::Method::PUT, "/cache/user/1%20a")
            .header("if-match", format!("\"{}\"", version + 1000))
            .body("x"),
    )
    .await;
    assert_eq!(
        (stale.status, stale.error_code().as_str()),
        (412, "precondition_failed")
    );
    let exists = send(
        kv(&server, reqwest::Method::PUT, "/cache/user/1%20a")
            .header("if-none-match", "*")
            .body("x"),
    )
    .await;
    assert_eq!(exists.status, 412);
    let swapped = send(
        kv(&server, reqwest::Method::PUT, "/cache/user/1%20a")
            .header("if-match", format!("\"{version}\""))
            .body("swapped"),
    )
    .await;
    assert_eq!(swapped.status, 200);
    assert_eq!(
        server.cli_ok(&["kv", "get", "cache", "user/1 a"]),
        "swapped"
    );

    // Listing with a prefix, page by page through the cursor.
    for i in 0..5 {
        server.cli_ok(&["kv", "set", "cache", &format!("page/{i}"), "v"]);
    }
    let mut keys = Vec::new();
    let mut path = "/cache?prefix=page/&limit=2".to_owned();
    loop {
        let page = send(kv(&server, reqwest::Method::GET, &path)).await.json();
        keys.extend(
            page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| key.as_str().unwrap().to_owned()),
        );
        match page["cursor"].as_str() {
            Some(cursor) => {
                path = format!("/cache?prefix=page/&limit=2&cursor={}", urlencoding(cursor))
            }
            None => break,
        }
    }
    assert_eq!(keys, ["page/0", "page/1", "page/2", "page/3", "page/4"]);
    assert_eq!(
        server.cli_ok(&["kv", "ls", "cache", "--prefix", "page/"]),
        "page/0\npage/1\npage/2\npage/3\npage/4\n"
    );

    // Counters.
    assert_eq!(server.cli_ok(&["kv", "incr", "cache", "hits"]), "1\n");
    assert_eq!(
        server.cli_ok(&["kv", "incr", "cache", "hits", "--by", "-5"]),
        "-4\n"
    );
    let answer = send(kv(
        &server,
        reqwest::Method::POST,
        "/cache/page/0?increment=1",
    ))
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (409, "not_a_number")
    );

    // Expiry goes by the server's clock: see the in-process suite
    // (crates/server/tests/it/kv.rs), which moves it.

    // Delete; stores listed.
    assert_eq!(
        server.cli_ok(&["kv", "rm", "cache", "hits"]),
        "removed hits\n"
    );
    assert_eq!(
        send(kv(&server, reqwest::Method::GET, "/cache/hits"))
            .await
            .status,
        404
    );
    let stores = send(kv(&server, reqwest::Method::GET, "")).await.json();
    assert_eq!(stores["stores"], serde_json::json!(["cache"]));

    // Bad input: clear 4xx, never a 500.
    for (method, path, body, status, code) in [
        (
            reqwest::Method::PUT,
            "/Bad_Store/k",
            Vec::new(),
            400,
            "invalid_name",
        ),
        (
            reqwest::Method::PUT,
            "/cache/k?ttl=soon",
            Vec::new(),
            400,
            "invalid_query",
        ),
        (
            reqwest::Method::PUT,
            "/cache/k?color=red",
            Vec::new(),
            400,
            "invalid_query",
        ),
        (
            reqwest::Method::PUT,
            "/cache/k",
            vec![0u8; (1 << 20) + 1],
            413,
            "payload_too_large",
        ),
        (
            reqwest::Method::GET,
            &format!("/cache/{}", "k".repeat(1025)),
            Vec::new(),
            400,
            "invalid_key",
        ),
        (
            reqwest::Method::POST,
            "/cache/k?increment=lots",
            Vec::new(),
            400,
            "invalid_query",
        ),
        (
            reqwest::Method::GET,
            "/cache?limit=0",
            Vec::new(),
            400,
            "invalid_query",
        ),
        // Not UTF-8 once decoded: axum refuses it before any handler.
        (
            reqwest::Method::GET,
            "/cache/%FF",
            Vec::new(),
            400,
            "invalid_request",
        ),
    ] {
        let answer = send(kv(&server, method.clone(), path).body(body)).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (status, code),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn key_value_data_is_per_project_and_service_keys_reach_only_their_own() {
    let server = server();
    server.cli_ok(&["project", "create", "alpha"]);
    server.cli_ok(&["kv", "set", "cache", "secret", "of-default"]);
    server.cli_ok(&[
        "--project",
        "alpha",
        "kv",
        "set",
        "cache",
        "secret",
        "of-alpha",
    ]);
    assert_eq!(
        server.cli_ok(&["kv", "get", "cache", "secret"]),
        "of-default"
    );
    assert_eq!(
        server.cli_ok(&["--project", "alpha", "kv", "get", "cache", "secret"]),
        "of-alpha"
    );
    // Keys that need percent-encoding work in a project's scope too.
    server.cli_ok(&[
        "--project",
        "alpha",
        "kv",
        "set",
        "cache",
        "a b/100%?#",
        "odd",
    ]);
    assert_eq!(
        server.cli_ok(&["--project", "alpha", "kv", "get", "cache", "a b/100%?#"]),
        "odd"
    );

    let token = server
        .cli_ok(&["--project", "alpha", "keys", "create", "--kind", "service"])
        .trim()
        .to_owned();
    let as_key = |method: reqwest::Method, path: &str| {
        http()
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(&token)
    };
    let answer = send(as_key(
        reqwest::Method::GET,
        "/v1/projects/alpha/kv/cache/secret",
    ))
    .await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "of-alpha"));
    // Unscoped paths mean the key's own project.
    let answer = send(as_key(reqwest::Method::GET, "/v1/kv/cache/secret")).await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "of-alpha"));
    for (method, path) in [
        (reqwest::Method::GET, "/v1/projects/default/kv/cache/secret"),
        (reqwest::Method::GET, "/v1/projects/default/kv/cache"),
        (reqwest::Method::PUT, "/v1/projects/default/kv/cache/secret"),
        (reqwest::Method::GET, "/v1/projects/default/kv"),
    ] {
        let answer = send(as_key(method.clone(), path)).await;
        assert_eq!(answer.status, 403, "{method} {path}");
        assert!(!answer.text().contains("of-default"));
    }
    assert_eq!(
        server.cli_ok(&["kv", "get", "cache", "secret"]),
        "of-default"
    );
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn every_acknowledged_key_value_write_survives_sigkill() {
    let mut server = server();
    let url = server.url.clone();
    let token = server.admin_token();
    // Writers keep writing until the server dies under them; each remembers
    // what the server acknowledged.
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let key = format!("w{writer}-{i}");
                    let value = format!("value of {key}");
                    let sent = client
                        .put(format!("{url}/v1/kv/durable/{key}"))
                        .bearer_auth(&token)
                        .body(value.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 200 => acknowledged.push((key, value)),
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server = server.crash_and_restart();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 100,
        "only {} writes before the kill",
        acknowledged.len()
    );
    for (key, value) in &acknowledged {
        let answer = send(kv(
            &server,
            reqwest::Method::GET,
            &format!("/durable/{key}"),
        ))
        .await;
        assert_eq!(
            (answer.status, answer.text()),
            (200, value.clone()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_store_is_dropped_whole_and_its_versions_go_on() {
    let server = server();
    let first = send(kv(&server, reqwest::Method::PUT, "/sessions/a").body("1")).await;
    let old_etag = first.header("etag");
    server.cli_ok(&["kv", "set", "sessions", "b", "2"]);
    server.cli_ok(&["kv", "set", "other", "c", "3"]);
    assert_eq!(
        server.cli_ok(&["kv", "drop", "sessions"]),
        "dropped store sessions\n"
    );
    let gone = send(kv(&server, reqwest::Method::GET, "/sessions/a")).await;
    assert_eq!(gone.error_code(), "key_not_found");
    assert_eq!(server.cli_ok(&["kv", "ls", "sessions"]), "");
    let stores = send(kv(&server, reqwest::Method::GET, "")).await;
    assert_eq!(stores.json(), serde_json::json!({"stores": ["other"]}));
    let again = send(kv(&server, reqwest::Method::DELETE, "/sessions")).await;
    assert_eq!(again.error_code(), "store_not_found");
    // Written again: a new version, so an ETag from before never matches.
    let stale = send(
        kv(&server, reqwest::Method::PUT, "/sessions/a")
            .header("if-match", &old_etag)
            .body("x"),
    )
    .await;
    assert_eq!(stale.status, 412);
    let fresh = send(kv(&server, reqwest::Method::PUT, "/sessions/a").body("x")).await;
    assert_ne!(fresh.header("etag"), old_etag);

    // Dropping stores is how a project's key-value data is emptied before
    // removal; a public key cannot.
    server.cli_ok(&["project", "create", "temp"]);
    server.cli_ok(&["--project", "temp", "kv", "set", "cache", "k", "v"]);
    let busy = server.cli(&["project", "rm", "temp"]);
    assert!(
        busy.stderr().contains("project_not_empty"),
        "{}",
        busy.stderr()
    );
    let issued = send(
        control(&server, reqwest::Method::POST, "/v1/projects/temp/keys")
            .json(&serde_json::json!({"kind": "public"})),
    )
    .await;
    let public = issued.json()["token"].as_str().unwrap().to_owned();
    let refused = send(
        http()
            .delete(format!("{}/v1/kv/cache", server.url))
            .bearer_auth(&public),
    )
    .await;
    assert_eq!(refused.status, 403);
    server.cli_ok(&["--project", "temp", "kv", "drop", "cache"]);
    server.cli_ok(&["project", "rm", "temp"]);
}
