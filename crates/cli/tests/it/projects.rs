use crate::*;

fn with_token(request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    request.bearer_auth(token)
}

#[tokio::test]
async fn projects_keep_functions_and_usage_apart() {
    let server = server();
    assert_eq!(
        server.cli_ok(&["project", "create", "shop"]),
        "created project shop\n"
    );
    assert_eq!(server.cli_ok(&["project", "ls"]), "default\nshop\n");
    let again = server.cli(&["project", "create", "shop"]);
    assert!(!again.success());
    assert!(
        again.stderr().contains("project_exists"),
        "{}",
        again.stderr()
    );
    let bad = server.cli(&["project", "create", "Not_A_Name"]);
    assert!(!bad.success());
    assert!(bad.stderr().contains("invalid_name"), "{}", bad.stderr());

    deploy(&server, "hello", guests::HELLO, &["--project", "shop"]);
    deploy(&server, "counter", guests::COUNTER, &[]);
    let answer = get(&server, "/p/shop/fn/hello").await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "hello from wok\n")
    );
    assert_eq!(
        server.cli_ok(&["--project", "shop", "invoke", "hello"]),
        "hello from wok\n"
    );
    for (path, code) in [
        ("/fn/hello", "function_not_found"),
        ("/p/shop/fn/counter", "function_not_found"),
        ("/p/ghost/fn/hello", "function_not_found"),
    ] {
        let answer = get(&server, path).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (404, code),
            "{path}"
        );
    }
    assert_eq!(get(&server, "/fn/counter").await.status, 200);

    let list = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/shop/functions",
    ))
    .await
    .json();
    let functions = list["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!(functions[0]["name"], "hello");
    assert_eq!(functions[0]["project"], "shop");
    assert_eq!(functions[0]["url_path"], "/p/shop/fn/hello");
    assert!(server.cli_ok(&["ls"]).contains("counter"));
    assert!(!server.cli_ok(&["ls"]).contains("hello"));

    // Usage and records are per project: shop served 2, default 1.
    wait_for_records(&server, 1).await;
    let usage = |path: &'static str| {
        let server = &server;
        async move {
            for _ in 0..100 {
                let usage = send(control(server, reqwest::Method::GET, path))
                    .await
                    .json();
                if usage["requests"] == 2 || path == "/v1/usage" {
                    return usage;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("usage of {path} never reached 2 requests");
        }
    };
    assert_eq!(usage("/v1/projects/shop/usage").await["requests"], 2);
    assert_eq!(usage("/v1/usage").await["requests"], 1);

    let answer = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/ghost/functions",
    ))
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (404, "project_not_found")
    );

    // Removal: never the default project, never a project with functions,
    // and a removed name is not given out again.
    let output = server.cli(&["project", "rm", "default"]);
    assert!(!output.success() && output.stderr().contains("always exists"));
    let output = server.cli(&["project", "rm", "shop"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("project_not_empty"),
        "{}",
        output.stderr()
    );
    server.cli_ok(&["--project", "shop", "rm", "hello"]);
    // Data too: each kind keeps the project until it is gone.
    let shop = ["--project", "shop"];
    let data: [(&[&str], &[&str]); 3] = [
        (
            &["kv", "set", "cache", "k", "v"],
            &["kv", "rm", "cache", "k"],
        ),
        (
            &["docs", "set", "notes", "n", "{}"],
            &["docs", "rm", "notes", "n"],
        ),
        (&["objects", "mb", "files"], &["objects", "rb", "files"]),
    ];
    // An app user too: its account would outlive the project unreachable.
    let user: serde_json::Value = serde_json::from_str(
        &server.cli_ok(&[&shop[..], &["auth", "users", "create", "ann@example.com"]].concat()),
    )
    .unwrap();
    let user = user["id"].as_str().unwrap().to_owned();
    let user_rm = ["auth", "users", "rm", user.as_str()];
    let data = data
        .into_iter()
        .chain([(&["auth", "users", "ls"][..], &user_rm[..])]);
    for (create, remove) in data {
        server.cli_ok(&[&shop[..], create].concat());
        let refused = server.cli(&["project", "rm", "shop"]);
        assert!(
            refused.stderr().contains("project_not_empty"),
            "{create:?}: {}",
            refused.stderr()
        );
        server.cli_ok(&[&shop[..], remove].concat());
    }
    assert_eq!(
        server.cli_ok(&["project", "rm", "shop"]),
        "removed project shop\n"
    );
    assert_eq!(server.cli_ok(&["project", "ls"]), "default\n");
    // Its routes are gone at once (they were in use a moment ago).
    let gone = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/shop/functions",
    ))
    .await;
    assert_eq!(
        (gone.status, gone.error_code().as_str()),
        (404, "project_not_found")
    );
    let output = server.cli(&["project", "create", "shop"]);
    assert!(
        output.stderr().contains("project_exists"),
        "{}",
        output.stderr()
    );
}

#[tokio::test]
async fn service_keys_act_for_their_own_project_until_revoked() {
    let server = server();
    server.cli_ok(&["project", "create", "alpha"]);
    server.cli_ok(&["project", "create", "beta"]);
    deploy(
        &server,
        "beta-secret",
        guests::HELLO,
        &["--project", "beta"],
    );
    let token = server
        .cli_ok(&[
            "--project",
            "alpha",
            "keys",
            "create",
            "--kind",
            "service",
            "--name",
            "ci",
        ])
        .trim()
        .to_owned();
    assert!(token.starts_with("wok_sk_alpha_"), "{token}");
    let public = server
        .cli_ok(&["--project", "alpha", "keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    assert!(public.starts_with("wok_pk_alpha_"), "{public}");

    // The service key deploys and manages its own project.
    let output = server.cli(&[
        "--token",
        &token,
        "--project",
        "alpha",
        "deploy",
        "api",
        guests::HELLO,
    ]);
    assert!(output.success(), "{}", output.stderr());
    assert_eq!(get(&server, "/p/alpha/fn/api").await.status, 200);
    let as_key = |method: reqwest::Method, path: &str, token: &str| {
        with_token(
            http().request(method, format!("{}{path}", server.url)),
            token,
        )
    };
    let answer = send(as_key(
        reqwest::Method::GET,
        "/v1/projects/alpha/functions",
        &token,
    ))
    .await;
    assert_eq!(answer.status, 200);
    // Unscoped paths mean the key's own project.
    let unscoped = send(as_key(reqwest::Method::GET, "/v1/functions", &token)).await;
    assert_eq!(unscoped.json(), answer.json());

    // Nothing else: other projects (their names stay out of the answer),
    // the default project, project and key management.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/projects/beta/functions"),
        (
            reqwest::Method::GET,
            "/v1/projects/beta/functions/beta-secret",
        ),
        (reqwest::Method::GET, "/v1/projects/beta/usage"),
        (
            reqwest::Method::GET,
            "/v1/projects/no-such-project/functions",
        ),
        (reqwest::Method::GET, "/v1/projects/default/functions"),
        (reqwest::Method::GET, "/v1/projects"),
        (reqwest::Method::POST, "/v1/projects/alpha/keys"),
        (reqwest::Method::GET, "/v1/projects/alpha/keys"),
    ] {
        let answer = send(as_key(method.clone(), path, &token)).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (403, "forbidden"),
            "{method} {path}"
        );
        assert!(!answer.text().contains("beta-secret"), "{}", answer.text());
    }
    // A public key is for app clients, not the control API.
    let answer = send(as_key(
        reqwest::Method::GET,
        "/v1/projects/alpha/functions",
        &public,
    ))
    .await;
    assert_eq!(answer.status, 403);

    // A wrong secret is refused; listings never show secrets.
    let forged = format!("{}0", &token[..token.len() - 1]);
    let forged = if forged == token {
        format!("{}1", &token[..token.len() - 1])
    } else {
        forged
    };
    let answer = send(as_key(
        reqwest::Method::GET,
        "/v1/projects/alpha/functions",
        &forged,
    ))
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (401, "unauthorized")
    );
    let keys = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/alpha/keys",
    ))
    .await;
    let secret = token.rsplit('_').next().unwrap();
    assert!(!keys.text().contains(secret));
    let keys = keys.json();
    let id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Revocation takes effect at once.
    assert_eq!(
        server.cli_ok(&["--project", "alpha", "keys", "revoke", &id]),
        format!("revoked key {id}\n")
    );
    let answer = send(as_key(
        reqwest::Method::GET,
        "/v1/projects/alpha/functions",
        &token,
    ))
    .await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (401, "unauthorized")
    );
    let output = server.cli(&["--token", &token, "--project", "alpha", "ls"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("unknown or revoked"),
        "{}",
        output.stderr()
    );
    assert!(
        server
            .cli_ok(&["--project", "alpha", "keys", "ls"])
            .contains("revoked")
    );
}
