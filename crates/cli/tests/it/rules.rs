//! Per-user rules on a collection, end to end: two app users and a public
//! key on REST, queries, counts, single documents and live queries, the
//! rule-test endpoint and its CLI.
use crate::*;
use serde_json::{Value, json};
use test_support::realtime::*;

const RULES: &str = r#"{
  "read":   "resource.data.visibility == 'public' || resource.data.owner == auth.uid",
  "list":   "resource.data.visibility == 'public' || resource.data.owner == auth.uid",
  "create": "auth.uid != null && request.data.owner == auth.uid",
  "update": "resource.data.owner == auth.uid && request.data.owner == auth.uid",
  "delete": "resource.data.owner == auth.uid"
}"#;

pub(crate) struct App<'a> {
    pub server: &'a WokServer,
    pub key: String,
}

impl App<'_> {
    /// A new user's access token and id.
    pub async fn user(&self, email: &str) -> (String, String) {
        let session = send(
            http()
                .post(format!("{}/auth/v1/signup", self.server.url))
                .header("apikey", &self.key)
                .json(&json!({"email": email, "password": "a long passphrase"})),
        )
        .await;
        assert_eq!(session.status, 200, "{}", session.text());
        let session = session.json();
        (
            session["access_token"].as_str().unwrap().to_owned(),
            session["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// A request as supabase-js sends it: the key, and the user's token.
    pub fn request(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let request = http()
            .request(method, format!("{}{path}", self.server.url))
            .header("apikey", &self.key);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|document| document["data"]["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn users_see_and_change_only_what_the_rules_let_them() {
    let server = server();
    server.cli_ok(&["project", "create", "shop"]);
    let key = server
        .cli_ok(&["--project", "shop", "keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    let app = App {
        server: &server,
        key,
    };
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules.path(), RULES).unwrap();
    server.cli_ok(&[
        "--project",
        "shop",
        "docs",
        "access",
        "notes",
        "--rules",
        rules.path().to_str().unwrap(),
    ]);
    for (name, fields) in [
        ("by-visibility", ["visibility", "created"]),
        ("by-owner", ["owner", "created"]),
    ] {
        let answer = send(
            control(
                &server,
                reqwest::Method::PUT,
                &format!("/v1/projects/shop/docs/notes/_indexes/{name}"),
            )
            .json(&json!({ "fields": fields })),
        )
        .await;
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    let (ann, ann_id) = app.user("ann@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;

    // Ann may not write a note as Bob, nor without a user at all.
    let create = |token: Option<&str>, owner: &str, visibility: &str, created: u64, title: &str| {
        app.request(token, reqwest::Method::POST, "/v1/docs/notes")
            .json(&json!({
                "owner": owner, "visibility": visibility, "created": created, "title": title,
            }))
    };
    assert_eq!(
        send(create(Some(&ann), &bob_id, "private", 0, "forged"))
            .await
            .status,
        403
    );
    assert_eq!(
        send(create(None, &ann_id, "public", 0, "anonymous"))
            .await
            .status,
        403
    );
    let mut written = std::collections::HashMap::new();
    for (token, owner, visibility, created, title) in [
        (&ann, &ann_id, "private", 1, "ann-1"),
        (&bob, &bob_id, "private", 2, "bob-2"),
        (&ann, &ann_id, "public", 3, "ann-3"),
        (&bob, &bob_id, "public", 4, "bob-4"),
        (&ann, &ann_id, "private", 5, "ann-5"),
    ] {
        let answer = send(create(Some(token), owner, visibility, created, title)).await;
        assert_eq!(answer.status, 201, "{}", answer.text());
        written.insert(title, answer.json()["id"].as_str().unwrap().to_owned());
    }

    // Listings, queries, pages and counts: one's own and what is public.
    let query = |token: Option<&str>, body: Value| {
        app.request(token, reqwest::Method::POST, "/v1/docs/notes/_query")
            .json(&body)
    };
    let everything = json!({"order_by": ["created"]});
    assert_eq!(
        ids(&send(query(Some(&ann), everything.clone())).await.json()),
        ["ann-1", "ann-3", "bob-4", "ann-5"]
    );
    assert_eq!(
        ids(&send(query(Some(&bob), everything.clone())).await.json()),
        ["bob-2", "ann-3", "bob-4"]
    );
    assert_eq!(
        ids(&send(query(None, everything.clone())).await.json()),
        ["ann-3", "bob-4"]
    );
    // Page by page: full pages, the same sequence.
    let mut paged = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = send(query(
            Some(&ann),
            json!({"order_by": ["created"], "limit": 1, "cursor": cursor}),
        ))
        .await
        .json();
        paged.extend(ids(&page));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(paged, ["ann-1", "ann-3", "bob-4", "ann-5"]);
    let private = json!({"where": ["visibility", "==", "private"], "order_by": ["created"]});
    assert_eq!(
        ids(&send(query(Some(&bob), private.clone())).await.json()),
        ["bob-2"]
    );
    let count = |token: Option<&str>, body: Value| {
        let request = app
            .request(token, reqwest::Method::POST, "/v1/docs/notes/_count")
            .json(&body);
        async move { send(request).await.json()["count"].as_u64().unwrap() }
    };
    assert_eq!(count(Some(&ann), json!({})).await, 4);
    assert_eq!(count(Some(&bob), json!({})).await, 3);
    assert_eq!(
        count(
            Some(&bob),
            json!({"where": ["visibility", "==", "private"]})
        )
        .await,
        1
    );
    // The plain listing too.
    let listed = send(app.request(Some(&bob), reqwest::Method::GET, "/v1/docs/notes")).await;
    let mut listed = ids(&listed.json());
    listed.sort();
    assert_eq!(listed, ["ann-3", "bob-2", "bob-4"]);

    // Single documents: what Ann may not read does not exist for her.
    let document = |token: &str, method: reqwest::Method, title: &str| {
        app.request(
            Some(token),
            method,
            &format!("/v1/docs/notes/{}", written[title]),
        )
    };
    assert_eq!(
        send(document(&ann, reqwest::Method::GET, "bob-2"))
            .await
            .status,
        404
    );
    assert_eq!(
        send(document(&ann, reqwest::Method::GET, "bob-4"))
            .await
            .status,
        200
    );
    let patch = |token: &str, title: &str| {
        document(token, reqwest::Method::PATCH, title).json(&json!({"title": "changed"}))
    };
    assert_eq!(send(patch(&ann, "bob-2")).await.status, 404);
    assert_eq!(send(patch(&ann, "bob-4")).await.status, 403);
    assert_eq!(
        send(document(&ann, reqwest::Method::DELETE, "bob-4"))
            .await
            .status,
        403
    );
    // A write that would hand her note to Bob is refused; her own edit
    // passes.
    let give = document(&ann, reqwest::Method::PUT, "ann-1").json(&json!({
        "owner": bob_id, "visibility": "private", "created": 1, "title": "ann-1",
    }));
    assert_eq!(send(give).await.status, 403);
    let answer = send(patch(&ann, "ann-1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        send(document(&bob, reqwest::Method::DELETE, "bob-2"))
            .await
            .status,
        204
    );
    assert_eq!(count(Some(&bob), json!({})).await, 2);
    // A user token alone, without the key, acts the same.
    let alone = send(
        http()
            .get(format!("{}/v1/docs/notes/{}", server.url, written["ann-5"]))
            .bearer_auth(&bob),
    )
    .await;
    assert_eq!(alone.status, 404);

    // A live query sees only what the user may see, then its changes.
    let mut socket = connect(&server, &ann).await;
    send_json(
        &mut socket,
        json!({"type": "subscribe", "id": "notes", "collection": "notes",
               "query": {"order_by": ["created"]}}),
    )
    .await;
    let (mut snapshot, mut subscribed) = (None, false);
    while snapshot.is_none() || !subscribed {
        let message = next(&mut socket).await;
        match message["type"].as_str() {
            Some("snapshot") => snapshot = Some(message),
            Some("subscribed") => subscribed = true,
            _ => panic!("{message}"),
        }
    }
    let snapshot = snapshot.unwrap();
    let titles: Vec<&str> = snapshot["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|document| document["data"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["changed", "ann-3", "bob-4", "ann-5"]);
    // Bob writes a private note (Ann hears nothing), then a public one.
    assert_eq!(
        send(create(Some(&bob), &bob_id, "private", 6, "bob-6"))
            .await
            .status,
        201
    );
    assert_eq!(
        send(create(Some(&bob), &bob_id, "public", 7, "bob-7"))
            .await
            .status,
        201
    );
    let change = next(&mut socket).await;
    assert_eq!(change["type"], "change", "{change}");
    assert_eq!(change["document"]["data"]["title"], "bob-7", "{change}");
    // Ending her session closes the socket.
    let logout = send(
        http()
            .post(format!("{}/auth/v1/logout", server.url))
            .header("apikey", &app.key)
            .bearer_auth(&ann),
    )
    .await;
    assert_eq!(logout.status, 204);
    let (frame, _) = read_to_close(&mut socket).await;
    assert!(frame.reason.contains("session"), "{frame:?}");
}

#[tokio::test]
async fn rules_are_checked_when_set_and_tried_on_samples() {
    let server = server();
    let set = |rules: Value| {
        send(
            control(&server, reqwest::Method::PUT, "/v1/docs/notes/_access")
                .json(&json!({ "rules": rules })),
        )
    };
    // A list rule that cannot filter queries, and a rule that is not CEL,
    // are refused when set; a bucket's rules go by key pattern, so the
    // collection shape is refused there.
    for (rules, words) in [
        (
            json!({"list": "resource.data.a == resource.data.b"}),
            "cannot filter",
        ),
        (json!({"read": "resource.data.a =="}), "not CEL"),
        (json!({"write": "true"}), "unknown field"),
    ] {
        let answer = set(rules).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(answer.text().contains(words), "{}", answer.text());
    }
    let bucket = send(
        control(&server, reqwest::Method::PUT, "/v1/buckets/pics/_access")
            .json(&json!({"rules": {"read": "true"}})),
    )
    .await;
    assert_eq!(bucket.status, 400, "{}", bucket.text());
    assert!(bucket.text().contains("key patterns"), "{}", bucket.text());
    let rules: Value = serde_json::from_str(RULES).unwrap();
    assert_eq!(set(rules.clone()).await.status, 200);
    let shown = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/docs/notes/_access",
    ))
    .await
    .json();
    assert_eq!(shown["access"], "rules");
    assert_eq!(shown["rules"], rules);

    // The test endpoint and its CLI.
    let cases = json!({
        "rules": rules,
        "cases": [
            {"name": "owner reads", "op": "read", "auth": {"uid": "u1"},
             "resource": {"id": "n", "data": {"owner": "u1", "visibility": "private"}}, "expect": true},
            {"name": "stranger lists", "op": "list", "auth": {"uid": "u2"},
             "resource": {"id": "n", "data": {"owner": "u1", "visibility": "private"}}, "expect": false},
            {"name": "public lists", "op": "list",
             "resource": {"id": "n", "data": {"owner": "u1", "visibility": "public"}}, "expect": true},
            {"name": "no hand-over", "op": "update", "auth": {"uid": "u1"},
             "resource": {"id": "n", "data": {"owner": "u1"}},
             "request": {"data": {"owner": "u2"}}, "expect": false},
        ],
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), cases.to_string()).unwrap();
    let output = server.cli_ok(&["rules", "test", file.path().to_str().unwrap()]);
    assert_eq!(
        output.lines().filter(|line| line.starts_with("ok")).count(),
        4,
        "{output}"
    );
    let answer = send(control(&server, reqwest::Method::POST, "/v1/rules/_test").json(&cases))
        .await
        .json();
    assert_eq!(
        answer["results"][1]["filter"],
        json!({"or": [["visibility", "==", "public"], ["owner", "==", "u2"]]})
    );
    assert_eq!(answer["results"][1]["filter_passes"], false);
    // A wrong expectation fails the command.
    let mut wrong = cases.clone();
    wrong["cases"][0]["expect"] = json!(false);
    std::fs::write(file.path(), wrong.to_string()).unwrap();
    let failed = server.cli(&["rules", "test", file.path().to_str().unwrap()]);
    assert!(!failed.success());
    assert!(
        failed.stdout().contains("FAIL owner reads"),
        "{}",
        failed.stdout()
    );
}
