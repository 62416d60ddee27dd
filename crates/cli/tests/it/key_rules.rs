//! Per-user rules on buckets (REST and presigned URLs), key-value stores
//! and topics, end to end: two app users and a public key, each reaching
//! only what the rules give it.
use crate::rules::App;
use crate::*;
use serde_json::{Value, json};
use test_support::realtime::*;

/// A project `shop` with a public key, and the key's app.
fn shop(server: &WokServer) -> App<'_> {
    server.cli_ok(&["project", "create", "shop"]);
    let key = server
        .cli_ok(&["--project", "shop", "keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    App { server, key }
}

/// Sets the rules of `what` (`objects BUCKET`, `kv STORE`, `events
/// TOPIC`) through the CLI.
fn set_rules(server: &WokServer, what: &[&str], rules: Value) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules.to_string()).unwrap();
    let mut args = vec!["--project", "shop"];
    args.extend_from_slice(what);
    args.extend(["--rules", file.path().to_str().unwrap()]);
    server.cli_ok(&args)
}

fn keys_of(listing: &Value, field: &str) -> Vec<String> {
    listing[field]
        .as_array()
        .unwrap_or_else(|| panic!("not a listing: {listing}"))
        .iter()
        .map(|item| item.get("key").unwrap_or(item).as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn app_users_reach_only_their_own_objects_under_bucket_rules() {
    let server = server();
    let app = shop(&server);
    let created = send(control(
        &server,
        reqwest::Method::PUT,
        "/v1/projects/shop/buckets/media",
    ))
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let own = "auth.uid == path.uid";
    let printed = set_rules(
        &server,
        &["objects", "access", "media"],
        json!({
            "users/{uid}/**": {
                "read": own, "list": own, "delete": own,
                "create": format!("{own} && request.size <= 1000 && request.content_type == 'image/png'"),
                "update": format!("{own} && request.size <= 1000 && resource.size > 0"),
            },
            "public/**": {"read": "true", "list": "true"},
        }),
    );
    assert!(printed.starts_with("media\trules"), "{printed}");
    let (ann, ann_id) = app.user("ann@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    let object = |token: Option<&str>, method: reqwest::Method, key: &str| {
        app.request(token, method, &format!("/v1/objects/media/{key}"))
    };
    let put = |token: Option<&str>, key: &str, body: &'static [u8]| {
        object(token, reqwest::Method::PUT, key)
            .header("content-type", "image/png")
            .body(body)
    };
    let mine = format!("users/{ann_id}/a.png");

    // Writes: only under one's own prefix, and as the rules shape them.
    let answer = send(put(Some(&ann), &mine, b"ann's picture")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    for (token, key) in [
        (Some(&ann), format!("users/{bob_id}/x.png")),
        (None, format!("users/{ann_id}/x.png")),
        (Some(&ann), "other/x.png".to_owned()),
    ] {
        assert_eq!(
            send(put(token.map(String::as_str), &key, b"x"))
                .await
                .status,
            403,
            "{key}"
        );
    }
    let wrong_type = object(
        Some(&ann),
        reqwest::Method::PUT,
        &format!("users/{ann_id}/b.txt"),
    )
    .header("content-type", "text/plain")
    .body("text");
    assert_eq!(send(wrong_type).await.status, 403);
    let too_large = object(
        Some(&ann),
        reqwest::Method::PUT,
        &format!("users/{ann_id}/c.png"),
    )
    .header("content-type", "image/png")
    .body(vec![0u8; 2000]);
    assert_eq!(send(too_large).await.status, 403);
    // Overwriting is an update, and her own condition still holds.
    assert_eq!(
        send(put(Some(&ann), &mine, b"ann's new picture"))
            .await
            .status,
        200
    );
    let absent_only = put(Some(&ann), &mine, b"again").header("if-none-match", "*");
    assert_eq!(send(absent_only).await.status, 412);

    // Reads: what Bob and the bare key may not read does not exist.
    let read = send(object(Some(&ann), reqwest::Method::GET, &mine)).await;
    assert_eq!(
        (read.status, read.text().as_str()),
        (200, "ann's new picture")
    );
    let missing = send(object(
        Some(&ann),
        reqwest::Method::GET,
        &format!("users/{ann_id}/none.png"),
    ))
    .await;
    for token in [Some(bob.as_str()), None] {
        let hidden = send(object(token, reqwest::Method::GET, &mine)).await;
        assert_eq!(hidden.status, 404);
        assert_eq!(hidden.json()["code"], missing.json()["code"]);
    }
    let logo = send(
        control(
            &server,
            reqwest::Method::PUT,
            "/v1/projects/shop/objects/media/public/logo.png",
        )
        .body("logo"),
    )
    .await;
    assert_eq!(logo.status, 200);
    assert_eq!(
        send(object(None, reqwest::Method::GET, "public/logo.png"))
            .await
            .status,
        200
    );

    // Listings: within a pattern that covers the prefix, for its owner.
    let list = |token: Option<&str>, prefix: &str| {
        app.request(
            token,
            reqwest::Method::GET,
            &format!("/v1/objects/media?prefix={}", urlencoding::encode(prefix)),
        )
    };
    let listed = send(list(Some(&ann), &format!("users/{ann_id}/"))).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(
        keys_of(&listed.json(), "objects"),
        std::slice::from_ref(&mine)
    );
    for prefix in [
        format!("users/{bob_id}/"),
        "users/".to_owned(),
        String::new(),
        format!("users/{ann_id}"),
    ] {
        assert_eq!(
            send(list(Some(&ann), &prefix)).await.status,
            403,
            "{prefix:?}"
        );
    }
    assert_eq!(
        keys_of(&send(list(None, "public/")).await.json(), "objects"),
        ["public/logo.png"]
    );

    // Presigned URLs carry the user: they work for what its rules allow,
    // and while its session lives.
    let presign = |token: &str, key: &str, method: &str| {
        object(Some(token), reqwest::Method::POST, key).json(&json!({"method": method}))
    };
    let url = send(presign(&ann, &mine, "GET")).await.json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.contains(&ann_id), "{url}");
    let fetched = send(http().get(&url)).await;
    assert_eq!(
        (fetched.status, fetched.text().as_str()),
        (200, "ann's new picture")
    );
    assert_eq!(send(presign(&bob, &mine, "GET")).await.status, 404);
    let upload = send(presign(&ann, &format!("users/{ann_id}/up.png"), "PUT"))
        .await
        .json();
    let uploaded = send(
        http()
            .put(upload["url"].as_str().unwrap())
            .header("content-type", "image/png")
            .body("uploaded"),
    )
    .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    // A URL to write where the rules do not let her is refused at use.
    let elsewhere = send(presign(&ann, &format!("users/{bob_id}/up.png"), "PUT"))
        .await
        .json();
    let refused = send(
        http()
            .put(elsewhere["url"].as_str().unwrap())
            .header("content-type", "image/png")
            .body("forged"),
    )
    .await;
    assert_eq!(refused.status, 403);
    // A forged user in the URL breaks its signature.
    let forged = send(http().get(url.replace(&ann_id, &bob_id))).await;
    assert_eq!(forged.status, 403);

    // Deletes: Bob cannot tell hers exists; she deletes it.
    assert_eq!(
        send(object(Some(&bob), reqwest::Method::DELETE, &mine))
            .await
            .status,
        404
    );
    assert_eq!(
        send(object(Some(&ann), reqwest::Method::DELETE, &mine))
            .await
            .status,
        204
    );
    assert_eq!(
        send(object(Some(&ann), reqwest::Method::GET, &mine))
            .await
            .status,
        404
    );

    // Her session ends: her presigned URLs stop working.
    let still = send(presign(&ann, &format!("users/{ann_id}/up.png"), "GET"))
        .await
        .json();
    let still = still["url"].as_str().unwrap().to_owned();
    assert_eq!(send(http().get(&still)).await.status, 200);
    let logout = send(
        http()
            .post(format!("{}/auth/v1/logout", server.url))
            .header("apikey", &app.key)
            .bearer_auth(&ann),
    )
    .await;
    assert_eq!(logout.status, 204);
    assert_eq!(send(http().get(&still)).await.status, 403);
}

#[tokio::test]
async fn app_users_reach_only_their_own_keys_under_store_rules() {
    let server = server();
    let app = shop(&server);
    let own = "auth.uid == path.uid";
    set_rules(
        &server,
        &["kv", "access", "prefs"],
        json!({
            "users/{uid}/**": {
                "read": own, "list": own, "delete": own,
                // An increment brings `increment`, a value its `size`.
                "create": format!("{own} && (has(request.increment) || request.size <= 100)"),
                "update": format!("{own} && (request.value == null || request.value.theme in ['dark', 'light'])"),
            },
        }),
    );
    // The rules are shown as set.
    let shown = server.cli_ok(&["--project", "shop", "kv", "access", "prefs"]);
    assert!(shown.contains("users/{uid}/**"), "{shown}");
    let (ann, ann_id) = app.user("ann@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let key = |token: Option<&str>, method: reqwest::Method, key: &str| {
        app.request(token, method, &format!("/v1/kv/prefs/{key}"))
    };
    let theme = format!("users/{ann_id}/theme");

    let answer =
        send(key(Some(&ann), reqwest::Method::PUT, &theme).body(r#"{"theme":"dark"}"#)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The update rule reads the value the write brings.
    let odd = key(Some(&ann), reqwest::Method::PUT, &theme).body(r#"{"theme":"pink"}"#);
    assert_eq!(send(odd).await.status, 403);
    let light = key(Some(&ann), reqwest::Method::PUT, &theme).body(r#"{"theme":"light"}"#);
    assert_eq!(send(light).await.status, 200);
    let big = key(
        Some(&ann),
        reqwest::Method::PUT,
        &format!("users/{ann_id}/big"),
    )
    .body(vec![b'x'; 200]);
    assert_eq!(send(big).await.status, 403);
    let forged = key(Some(&bob), reqwest::Method::PUT, &theme).body(r#"{"theme":"dark"}"#);
    assert_eq!(send(forged).await.status, 403);

    let read = send(key(Some(&ann), reqwest::Method::GET, &theme)).await;
    assert_eq!(
        (read.status, read.text().as_str()),
        (200, r#"{"theme":"light"}"#)
    );
    for token in [Some(bob.as_str()), None] {
        assert_eq!(
            send(key(token, reqwest::Method::GET, &theme)).await.status,
            404
        );
    }

    // Counters: her own only.
    let count = format!("users/{ann_id}/visits?increment=2");
    let counted = send(key(Some(&ann), reqwest::Method::POST, &count)).await;
    assert_eq!(counted.json()["value"], 2);
    assert_eq!(
        send(key(Some(&bob), reqwest::Method::POST, &count))
            .await
            .status,
        403
    );

    // Listings: her own prefix only.
    let list = |token: &str, prefix: &str| {
        app.request(
            Some(token),
            reqwest::Method::GET,
            &format!("/v1/kv/prefs?prefix={}", urlencoding::encode(prefix)),
        )
    };
    let listed = send(list(&ann, &format!("users/{ann_id}/"))).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(
        keys_of(&listed.json(), "keys"),
        [theme.clone(), format!("users/{ann_id}/visits")]
    );
    for prefix in [
        format!("users/{ann_id}/"),
        "users/".to_owned(),
        String::new(),
    ] {
        assert_eq!(send(list(&bob, &prefix)).await.status, 403, "{prefix:?}");
    }

    // Deletes: Bob learns nothing; she deletes hers.
    assert_eq!(
        send(key(Some(&bob), reqwest::Method::DELETE, &theme))
            .await
            .status,
        404
    );
    assert_eq!(
        send(key(Some(&ann), reqwest::Method::DELETE, &theme))
            .await
            .status,
        204
    );
    assert_eq!(
        send(key(Some(&ann), reqwest::Method::GET, &theme))
            .await
            .status,
        404
    );

    // A key no pattern matches is nobody's but the service side's.
    let outside = send(
        control(
            &server,
            reqwest::Method::PUT,
            "/v1/projects/shop/kv/prefs/x",
        )
        .body("service"),
    )
    .await;
    assert_eq!(outside.status, 200);
    assert_eq!(
        send(key(Some(&ann), reqwest::Method::GET, "x"))
            .await
            .status,
        404
    );
    // A store without rules stays the service side's; dropping a store
    // too.
    let secret = send(app.request(Some(&ann), reqwest::Method::GET, "/v1/kv/secret/x")).await;
    assert_eq!(secret.status, 403);
    assert_eq!(
        send(app.request(Some(&ann), reqwest::Method::DELETE, "/v1/kv/prefs"))
            .await
            .status,
        403
    );
    // The service side is not bound by the rules.
    let service = send(control(
        &server,
        reqwest::Method::GET,
        &format!("/v1/projects/shop/kv/prefs/users/{ann_id}/visits"),
    ))
    .await;
    assert_eq!((service.status, service.text().as_str()), (200, "2"));
}

#[tokio::test]
async fn bucket_and_topic_rules_are_tried_on_samples() {
    let server = server();
    let own = "auth.uid == path.uid";
    let file = tempfile::NamedTempFile::new().unwrap();
    let run = |test: Value| {
        std::fs::write(file.path(), test.to_string()).unwrap();
        server.cli(&["rules", "test", file.path().to_str().unwrap()])
    };
    let bucket = json!({
        "kind": "bucket",
        "rules": {"users/{uid}/**": {"read": own, "list": own,
                                     "create": format!("{own} && request.size <= 10")}},
        "cases": [
            {"name": "owner reads", "op": "read", "auth": {"uid": "u1"},
             "key": "users/u1/a.png", "resource": {"size": 1}, "expect": true},
            {"name": "stranger reads", "op": "read", "auth": {"uid": "u2"},
             "key": "users/u1/a.png", "resource": {"size": 1}, "expect": false},
            {"name": "too large", "op": "create", "auth": {"uid": "u1"},
             "key": "users/u1/b.png", "request": {"size": 11}, "expect": false},
            {"name": "owner lists", "op": "list", "auth": {"uid": "u1"},
             "prefix": "users/u1/", "expect": true},
            {"name": "lists everyone", "op": "list", "auth": {"uid": "u1"},
             "prefix": "users/", "expect": false},
        ],
    });
    let output = run(bucket.clone());
    assert!(output.success(), "{}", output.stdout());
    assert_eq!(
        output
            .stdout()
            .lines()
            .filter(|line| line.starts_with("ok"))
            .count(),
        5
    );
    let mut wrong = bucket;
    wrong["cases"][4]["expect"] = json!(true);
    let failed = run(wrong);
    assert!(!failed.success());
    assert!(
        failed.stdout().contains("FAIL lists everyone"),
        "{}",
        failed.stdout()
    );
    let topic = run(json!({
        "kind": "topic",
        "rules": {"read": "resource.data.to == auth.uid"},
        "cases": [
            {"op": "read", "auth": {"uid": "u1"}, "resource": {"data": {"to": "u1"}}, "expect": true},
            {"op": "read", "auth": {"uid": "u2"}, "resource": {"data": {"to": "u1"}}, "expect": false},
        ],
    }));
    assert!(topic.success(), "{}", topic.stdout());
    // A topic takes no list rule; a bucket case names its key.
    let refused = run(json!({"kind": "topic", "rules": {"list": "true"}, "cases": []}));
    assert!(!refused.success());
    let keyless = run(
        json!({"kind": "bucket", "rules": {"a/**": {"read": "true"}},
                             "cases": [{"op": "read"}]}),
    );
    assert!(!keyless.success());
}

#[tokio::test]
async fn topic_rules_decide_who_publishes_and_who_receives_each_event() {
    let server = server();
    let app = shop(&server);
    set_rules(
        &server,
        &["events", "access", "inbox"],
        json!({
            "create": "auth.uid != null && request.data.from == auth.uid",
            "read": "resource.data.to == auth.uid",
        }),
    );
    let (ann, ann_id) = app.user("ann@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    let mut sockets = Vec::new();
    for token in [&ann, &bob] {
        let mut socket = connect(&server, token).await;
        send_json(
            &mut socket,
            json!({"type": "subscribe", "id": "inbox", "topic": "inbox"}),
        )
        .await;
        assert_eq!(next(&mut socket).await["type"], "subscribed");
        sockets.push(socket);
    }
    let publish = |token: Option<&str>, message: Value| {
        app.request(token, reqwest::Method::POST, "/v1/topics/inbox")
            .header("content-type", "application/json")
            .body(message.to_string())
    };
    for (token, message) in [
        (
            Some(&ann),
            json!({"from": ann_id, "to": bob_id, "text": "hi bob"}),
        ),
        (
            Some(&ann),
            json!({"from": ann_id, "to": ann_id, "text": "note to self"}),
        ),
        (
            Some(&bob),
            json!({"from": bob_id, "to": ann_id, "text": "hi ann"}),
        ),
    ] {
        let answer = send(publish(token.map(String::as_str), message)).await;
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    // Nobody publishes as someone else, nor without a user; batches stay
    // the service side's.
    let forged = publish(
        Some(&ann),
        json!({"from": bob_id, "to": ann_id, "text": "forged"}),
    );
    assert_eq!(send(forged).await.status, 403);
    let bare = publish(None, json!({"from": null, "to": ann_id, "text": "bare"}));
    assert_eq!(send(bare).await.status, 403);
    let batch = app
        .request(Some(&ann), reqwest::Method::POST, "/v1/topics/inbox/_batch")
        .json(&json!({"messages": [{"data": "x"}]}));
    assert_eq!(send(batch).await.status, 403);

    // Each receives what is addressed to it, in order, and nothing else.
    let text = |event: &Value| -> String {
        let data: Value = serde_json::from_str(event["event"]["data"].as_str().unwrap()).unwrap();
        data["text"].as_str().unwrap().to_owned()
    };
    let [ann_socket, bob_socket] = &mut sockets[..] else {
        unreachable!()
    };
    assert_eq!(text(&next(ann_socket).await), "note to self");
    assert_eq!(text(&next(ann_socket).await), "hi ann");
    assert_eq!(text(&next(bob_socket).await), "hi bob");
    // Bob's next is the service side's event to him: Ann's note to herself
    // and Bob's to Ann never reached him.
    let to_bob = send(
        control(
            &server,
            reqwest::Method::POST,
            "/v1/projects/shop/topics/inbox",
        )
        .body(json!({"from": "service", "to": bob_id, "text": "from the service"}).to_string()),
    )
    .await;
    assert_eq!(to_bob.status, 201);
    assert_eq!(text(&next(bob_socket).await), "from the service");
}

/// A guest deployed with `--data-access caller` reaches data with its
/// caller's access: the rules its caller would meet calling the data API
/// itself, for documents and key-value alike; the same guest deployed
/// with the default keeps the project's service access.
#[tokio::test]
async fn a_guest_with_its_callers_access_meets_the_callers_rules() {
    let server = server();
    let app = shop(&server);
    set_rules(
        &server,
        &["docs", "access", "notes"],
        json!({
            "read": "resource.data.owner == auth.uid",
            "list": "resource.data.owner == auth.uid",
            "create": "request.data.owner == auth.uid",
            "update": "resource.data.owner == auth.uid && request.data.owner == auth.uid",
        }),
    );
    let own = "auth.uid == path.uid";
    set_rules(
        &server,
        &["kv", "access", "prefs"],
        json!({"users/{uid}/**": {"read": own, "create": own, "update": own, "delete": own}}),
    );
    let deploy_in_shop = |name: &str, guest: &str, flags: &[&str]| {
        let mut args = vec!["--project", "shop", "deploy", name, guest];
        args.extend_from_slice(flags);
        server.cli_ok(&args);
    };
    deploy_in_shop("notes", guests::DOCS, &["--data-access", "caller"]);
    deploy_in_shop("notes-admin", guests::DOCS, &[]);
    deploy_in_shop("prefs", guests::KV, &["--data-access", "caller"]);
    let shown = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/shop/functions/notes",
    ))
    .await
    .json();
    assert_eq!(shown["data_access"], "caller");
    let (ann, ann_id) = app.user("ann@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    let call = |function: &str, method: reqwest::Method, path: &str, token: Option<&str>| {
        let request = http().request(
            method,
            format!("{}/p/shop/fn/{function}/{path}", server.url),
        );
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };

    // Documents: Ann writes hers through the function; Bob can neither
    // read it nor write as her; queries see one's own only.
    let created = send(
        call("notes", reqwest::Method::POST, "notes", Some(&ann))
            .body(json!({"owner": ann_id, "title": "ann's"}).to_string()),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.text();
    let read = |function: &'static str, token: Option<&str>| {
        send(call(
            function,
            reqwest::Method::GET,
            &format!("notes/{id}"),
            token,
        ))
    };
    let mine = read("notes", Some(&ann)).await;
    assert_eq!(mine.status, 200, "{}", mine.text());
    assert!(mine.text().contains("ann's"));
    assert_eq!(
        read("notes", Some(&bob)).await.status,
        404,
        "hidden from Bob"
    );
    let nobody = read("notes", None).await;
    assert_ne!(nobody.status, 200, "no credential, no data");
    assert_eq!(
        read("notes-admin", Some(&bob)).await.status,
        200,
        "the default is the project's own access"
    );
    let forged = send(
        call("notes", reqwest::Method::POST, "notes", Some(&bob))
            .body(json!({"owner": ann_id, "title": "forged"}).to_string()),
    )
    .await;
    assert_ne!(forged.status, 200, "{}", forged.text());
    assert!(forged.text().contains("403"), "{}", forged.text());
    let bobs = send(
        call("notes", reqwest::Method::POST, "notes", Some(&bob))
            .body(json!({"owner": bob_id, "title": "bob's"}).to_string()),
    )
    .await;
    assert_eq!(bobs.status, 200, "{}", bobs.text());
    let listed =
        send(call("notes", reqwest::Method::POST, "notes?query", Some(&bob)).body("{}")).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.text().lines().collect::<Vec<_>>(), [bobs.text()]);
    let counted =
        send(call("notes", reqwest::Method::POST, "notes?count", Some(&ann)).body("{}")).await;
    assert_eq!(counted.text(), "1");

    // Key-value: each user's own keys.
    let theme = format!("prefs/users/{ann_id}/theme");
    let put = send(call("prefs", reqwest::Method::PUT, &theme, Some(&ann)).body("dark")).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let got = send(call("prefs", reqwest::Method::GET, &theme, Some(&ann))).await;
    assert_eq!((got.status, got.text().as_str()), (200, "dark"));
    assert_eq!(
        send(call("prefs", reqwest::Method::GET, &theme, Some(&bob)))
            .await
            .status,
        404
    );
    let denied = send(call("prefs", reqwest::Method::PUT, &theme, Some(&bob)).body("pink")).await;
    assert_eq!(denied.status, 400, "{}", denied.text());
    assert!(denied.text().contains("AccessDenied"), "{}", denied.text());
    let still = send(call("prefs", reqwest::Method::GET, &theme, Some(&ann))).await;
    assert_eq!(still.text(), "dark");
}
