//! App users' accounts end to end: the unmodified supabase-js auth client
//! (`tests/auth/supabase.mjs`, installed by `scripts/install-auth-tools.sh`)
//! against a real server, and what a client cannot forge.
use crate::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The directory whose `node_modules` holds supabase-js; installed once
/// per test run.
fn auth_tools() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| run_script("install-auth-tools.sh"))
        .clone()
}

/// A new project with a public key: the key's token.
async fn project_with_public_key(server: &WokServer, project: &str) -> String {
    server.cli_ok(&["project", "create", project]);
    let issued = send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/projects/{project}/keys"),
        )
        .json(&json!({"kind": "public"})),
    )
    .await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    issued.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn supabase_js_signs_up_signs_in_refreshes_and_signs_out() {
    let server = server();
    let key = project_with_public_key(&server, "shop").await;
    let other_key = project_with_public_key(&server, "blog").await;
    let service_key = send(
        control(&server, reqwest::Method::POST, "/v1/projects/shop/keys")
            .json(&json!({"kind": "service"})),
    )
    .await
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tools = auth_tools();
    // Node resolves the package from the script's own directory.
    let script = tools.join(format!("supabase-{}.mjs", std::process::id()));
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth/supabase.mjs"),
        &script,
    )
    .unwrap();
    let url = server.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("node")
            .arg("--experimental-websocket")
            .arg(&script)
            .env("WOK_URL", url)
            .env("WOK_PUBLIC_KEY", key)
            .env("WOK_OTHER_PUBLIC_KEY", other_key)
            .env("WOK_SERVICE_KEY", service_key)
            .output();
        let _ = std::fs::remove_file(&script);
        output
    })
    .await
    .unwrap()
    .expect("running node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the supabase-js suite failed:\n{report}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .ends_with("\nok"),
        "{report}"
    );
}

/// Signs up through the GoTrue route; the session.
async fn sign_up(server: &WokServer, path: &str, key: Option<&str>, email: &str) -> Answer {
    let mut request = http()
        .post(format!("{}{path}/signup", server.url))
        .json(&json!({"email": email, "password": "a long passphrase"}));
    if let Some(key) = key {
        request = request.header("apikey", key);
    }
    send(request).await
}

#[tokio::test]
async fn access_tokens_cannot_be_forged_or_moved_between_projects() {
    let server = server();
    let shop_key = project_with_public_key(&server, "shop").await;
    let blog_key = project_with_public_key(&server, "blog").await;

    // Without a key, the project comes from the path; with neither, no
    // project at all.
    let answer = sign_up(&server, "/auth/v1", None, "ann@example.com").await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["code"], "no_api_key");
    assert_eq!(
        answer
            .headers
            .get("x-supabase-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("2024-01-01")
    );
    let answer = sign_up(&server, "/p/nowhere/auth/v1", None, "ann@example.com").await;
    assert_eq!(answer.status, 404);
    let answer = sign_up(
        &server,
        "/p/shop/auth/v1",
        Some(&blog_key),
        "ann@example.com",
    )
    .await;
    assert_eq!(answer.status, 401, "a key of another project");
    let session = sign_up(&server, "/p/shop/auth/v1", None, "ann@example.com").await;
    assert_eq!(session.status, 200, "{}", session.text());
    let token = session.json()["access_token"].as_str().unwrap().to_owned();

    let user = |path: &str, token: &str, key: Option<&str>| {
        let mut request = http()
            .get(format!("{}{path}/user", server.url))
            .bearer_auth(token);
        if let Some(key) = key {
            request = request.header("apikey", key);
        }
        send(request)
    };
    assert_eq!(user("/auth/v1", &token, Some(&shop_key)).await.status, 200);
    assert_eq!(user("/p/shop/auth/v1", &token, None).await.status, 200);
    // A token of shop on blog's routes.
    let moved = user("/p/blog/auth/v1", &token, None).await;
    assert_eq!(moved.status, 401);
    assert_eq!(moved.json()["code"], "bad_jwt");
    assert_eq!(user("/auth/v1", &token, Some(&blog_key)).await.status, 401);

    // Forged: alg none with the real claims; the payload changed under
    // the real signature; HS256 keyed with the published public key.
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT", "kid": header["kid"]})),
        parts[1]
    );
    claims["app_metadata"] = json!({"role": "admin"});
    let changed = format!("{}.{}.{}", parts[0], encode(&claims), parts[2]);
    let jwks = send(http().get(format!(
        "{}/p/shop/auth/v1/.well-known/jwks.json",
        server.url
    )))
    .await
    .json();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    let hs_header = encode(&json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}));
    let signing_input = format!("{hs_header}.{}", parts[1]);
    let public_key = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_key),
        signing_input.as_bytes(),
    );
    let hs256 = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    for forged in [&none, &changed, &hs256] {
        let answer = user("/p/shop/auth/v1", forged, None).await;
        assert_eq!(answer.status, 401, "{forged}");
        // The data routes refuse it too, rather than taking it for a key.
        let answer = send(
            http()
                .get(format!("{}/v1/docs", server.url))
                .bearer_auth(forged.as_str()),
        )
        .await;
        assert_eq!(answer.status, 401, "{}", answer.text());
    }
    // Blog's JWKS does not list shop's key.
    let blog_jwks = send(http().get(format!(
        "{}/p/blog/auth/v1/.well-known/jwks.json",
        server.url
    )))
    .await
    .json();
    assert!(
        blog_jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|key| key["kid"] != header["kid"])
    );
}

#[tokio::test]
async fn a_replayed_refresh_token_ends_its_session() {
    let server = server();
    project_with_public_key(&server, "shop").await;
    let session = sign_up(&server, "/p/shop/auth/v1", None, "ann@example.com")
        .await
        .json();
    let refresh = |token: Value| {
        send(
            http()
                .post(format!(
                    "{}/p/shop/auth/v1/token?grant_type=refresh_token",
                    server.url
                ))
                .json(&json!({ "refresh_token": token })),
        )
    };
    let turned = refresh(session["refresh_token"].clone()).await;
    assert_eq!(turned.status, 200, "{}", turned.text());
    let turned = turned.json();
    assert_ne!(turned["refresh_token"], session["refresh_token"]);
    // Within the grace, the used token is answered again (a client that
    // lost the answer); after it, it is a replay, which ends the session:
    // its newest access and refresh tokens die with it.
    let again = refresh(session["refresh_token"].clone()).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let user = send(
        http()
            .get(format!("{}/p/shop/auth/v1/user", server.url))
            .bearer_auth(turned["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(user.status, 200);
    // The grace is 10 s (`auth::accounts::REFRESH_GRACE_MS`).
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let replayed = refresh(session["refresh_token"].clone()).await;
    assert_eq!(replayed.status, 400);
    assert_eq!(replayed.json()["code"], "refresh_token_already_used");
    let user = send(
        http()
            .get(format!("{}/p/shop/auth/v1/user", server.url))
            .bearer_auth(turned["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(user.status, 403);
    assert_eq!(user.json()["code"], "session_not_found");
    let newest = refresh(turned["refresh_token"].clone()).await;
    assert_eq!(newest.json()["code"], "refresh_token_not_found");
    // An unknown token, and a made-up one.
    for token in [json!("not-a-token"), json!("")] {
        let answer = refresh(token).await;
        assert_eq!(answer.status, 400);
    }
    let unknown = refresh(json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!(unknown.json()["code"], "refresh_token_not_found");
}

#[tokio::test]
async fn functions_see_the_verified_caller_and_can_require_a_user() {
    let server = server();
    let shop_key = project_with_public_key(&server, "shop").await;
    let blog_key = project_with_public_key(&server, "blog").await;
    let service = send(
        control(&server, reqwest::Method::POST, "/v1/projects/shop/keys")
            .json(&json!({"kind": "service"})),
    )
    .await
    .json();
    let service_token = service["token"].as_str().unwrap().to_owned();
    for (name, flags) in [
        ("open", &["--project", "shop"][..]),
        (
            "members",
            &["--project", "shop", "--require-auth", "any"][..],
        ),
        (
            "users",
            &["--project", "shop", "--require-auth", "user"][..],
        ),
    ] {
        deploy(&server, name, guests::WHOAMI, flags);
    }
    let session = sign_up(&server, "/p/shop/auth/v1", None, "ann@example.com")
        .await
        .json();
    let token = session["access_token"].as_str().unwrap().to_owned();
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    let blogger = sign_up(&server, "/p/blog/auth/v1", None, "ann@example.com")
        .await
        .json();
    let blog_token = blogger["access_token"].as_str().unwrap().to_owned();

    let call = |function: &str, token: Option<&str>| {
        let mut request = http()
            .get(format!("{}/p/shop/fn/{function}/", server.url))
            // What a client claims is never what the function sees.
            .header("x-wok-auth", "admin")
            .header("x-wok-user-id", "somebody-else")
            .header("X-Wok-Claims", "{\"role\":\"service_role\"}");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request)
    };

    // A signed-in user: the same identity in the headers and through
    // `wok:auth`, with its verified claims.
    let answer = call("users", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = answer.json();
    assert_eq!(seen["wit"]["auth"], "user");
    assert_eq!(seen["wit"]["user_id"], user_id.as_str());
    assert_eq!(seen["wit"]["aal"], 1);
    assert_eq!(seen["headers"]["x-wok-auth"], "user");
    assert_eq!(seen["headers"]["x-wok-user-id"], user_id.as_str());
    assert_eq!(
        seen["headers"]["x-wok-session-id"],
        seen["wit"]["session_id"]
    );
    let claims: Value = serde_json::from_str(seen["wit"]["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["email"], "ann@example.com");

    // Nobody, whatever the client sent.
    let seen = call("open", None).await.json();
    assert_eq!(seen["wit"]["auth"], "none");
    assert_eq!(seen["headers"], json!({"x-wok-auth": "none"}));
    // Keys: public and service, with their ids; the admin.
    let seen = call("open", Some(&shop_key)).await.json();
    assert_eq!(seen["wit"]["auth"], "public-key");
    assert!(seen["wit"]["key_id"].is_string());
    let seen = call("open", Some(&service_token)).await.json();
    assert_eq!(seen["wit"]["auth"], "service-key");
    assert_eq!(seen["wit"]["key_id"], service["key"]["id"]);
    // Another project's user or key is nobody here.
    for other in [&blog_token, &blog_key] {
        let seen = call("open", Some(other)).await.json();
        assert_eq!(seen["wit"]["auth"], "none");
    }

    // An asynchronous call keeps the identity of the request that queued
    // it, and what the client forged is gone.
    let accepted = send(
        http()
            .post(format!("{}/p/shop/fn/open/", server.url))
            .header("prefer", "respond-async")
            .header("x-wok-user-id", "somebody-else")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    let done = wait_for(
        "the asynchronous call to finish",
        Duration::from_secs(30),
        || {
            let id = id.clone();
            let server = &server;
            async move {
                let answer = send(control(
                    server,
                    reqwest::Method::GET,
                    &format!("/v1/projects/shop/invocations/{id}"),
                ))
                .await
                .json();
                (answer["status"] == "succeeded").then_some(answer)
            }
        },
    )
    .await;
    let seen: Value = serde_json::from_str(done["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["wit"]["auth"], "user");
    assert_eq!(seen["headers"]["x-wok-user-id"], user_id.as_str());

    // Invocation records keep who called: the user of the synchronous
    // call to `users`, the key of the calls to `open`.
    let records = |function: &'static str| {
        let server = &server;
        async move {
            let answer = send(control(
                server,
                reqwest::Method::GET,
                &format!("/v1/projects/shop/invocations?function={function}"),
            ))
            .await
            .json();
            answer["invocations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let by_user = wait_for(
        "the record of the user's call",
        Duration::from_secs(30),
        || async {
            let found = records("users").await;
            (!found.is_empty()).then_some(found)
        },
    )
    .await;
    assert_eq!(by_user[0]["auth"], "user", "{by_user:?}");
    assert_eq!(by_user[0]["user_id"], user_id.as_str());
    let open = wait_for(
        "the records of the open calls",
        Duration::from_secs(30),
        || async {
            let found = records("open").await;
            (found.len() >= 6).then_some(found)
        },
    )
    .await;
    let kinds: std::collections::BTreeSet<&str> = open
        .iter()
        .map(|record| record["auth"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["none", "public-key", "service-key", "user"]
    );
    assert!(
        open.iter()
            .all(|record| (record["auth"] == "user") == record["user_id"].is_string()),
        "{open:?}"
    );

    // Refused before the function runs.
    for (function, token, status) in [
        ("users", None, 401),
        ("users", Some(shop_key.as_str()), 401),
        ("users", Some(blog_token.as_str()), 401),
        ("members", None, 401),
        ("members", Some(blog_key.as_str()), 401),
        ("members", Some(shop_key.as_str()), 200),
        ("members", Some(token.as_str()), 200),
    ] {
        let answer = call(function, token).await;
        assert_eq!(
            answer.status,
            status,
            "{function} with {token:?}: {}",
            answer.text()
        );
    }
    // An ended session is nobody from then on.
    let logout = send(
        http()
            .post(format!("{}/p/shop/auth/v1/logout", server.url))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(logout.status, 204);
    assert_eq!(call("users", Some(&token)).await.status, 401);
    assert_eq!(
        call("open", Some(&token)).await.json()["wit"]["auth"],
        "none"
    );
    // The setting is shown with the function.
    let shown = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/shop/functions/users",
    ))
    .await
    .json();
    assert_eq!(shown["require_auth"], "user");
}

#[tokio::test]
async fn the_cli_manages_users_sessions_settings_and_signing_keys() {
    let server = server();
    project_with_public_key(&server, "shop").await;
    let cli = |args: &[&str]| {
        let mut all = vec!["--project", "shop", "auth"];
        all.extend_from_slice(args);
        server.cli(&all)
    };
    let ok = |args: &[&str]| {
        let output = cli(args);
        assert!(output.success(), "{args:?}: {}", output.stderr());
        output.stdout()
    };
    // A user made by the service side signs in with the password it was
    // given (from standard input, never the command line).
    let mut create = server.command(&[
        "--project",
        "shop",
        "auth",
        "users",
        "create",
        "bob@example.com",
        "--password-stdin",
        "--confirmed",
        "--app-data",
        r#"{"plan":"pro"}"#,
    ]);
    create.stdin(std::process::Stdio::piped());
    create.stdout(std::process::Stdio::piped());
    create.stderr(std::process::Stdio::piped());
    let mut child = create.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long passphrase\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let user: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["app_metadata"]["plan"], "pro");
    assert!(user["email_confirmed_at"].is_string());
    let sign_in = || {
        send(
            http()
                .post(format!(
                    "{}/p/shop/auth/v1/token?grant_type=password",
                    server.url
                ))
                .json(&json!({"email": "bob@example.com", "password": "a long passphrase"})),
        )
    };
    let session = sign_in().await;
    assert_eq!(session.status, 200, "{}", session.text());
    let token = session.json()["access_token"].as_str().unwrap().to_owned();
    assert!(ok(&["users", "ls"]).contains("bob@example.com"));
    assert!(ok(&["sessions", "ls", &id]).lines().count() == 2);

    // A ban ends its sessions at once and refuses sign-ins until lifted.
    ok(&["users", "ban", &id, "--for", "1h"]);
    let user_answer = |token: String| {
        send(
            http()
                .get(format!("{}/p/shop/auth/v1/user", server.url))
                .bearer_auth(token),
        )
    };
    assert_eq!(user_answer(token.clone()).await.status, 403);
    let refused = sign_in().await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["code"], "user_banned");
    ok(&["users", "unban", &id]);
    let token = sign_in().await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ok(&["sessions", "end", &id]).contains("ended 1 sessions"));
    assert_eq!(user_answer(token).await.status, 403);

    // Settings: sign-ups off, shorter tokens; a wrong name or value is a
    // one-line error.
    ok(&[
        "config",
        "set",
        "signup=false",
        "access_token_lifetime_s=600",
    ]);
    let config: Value = serde_json::from_str(&ok(&["config", "get"])).unwrap();
    assert_eq!(config["signup"], false);
    assert_eq!(config["access_token_lifetime_s"], 600);
    let refused = sign_up(&server, "/p/shop/auth/v1", None, "carl@example.com").await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["code"], "signup_disabled");
    let session = sign_in().await.json();
    assert_eq!(session["expires_in"], 600);
    for bad in [
        &["config", "set", "nonsense=1"][..],
        &["config", "set", "access_token_lifetime_s=5"],
    ] {
        let output = cli(bad);
        assert!(!output.success());
        assert_eq!(
            output.stderr().trim().lines().count(),
            1,
            "{}",
            output.stderr()
        );
    }

    // Keys: a rotation signs with the new key and honours the old one
    // until it is retired.
    let old_token = session["access_token"].as_str().unwrap().to_owned();
    let old_kid = jwt_kid(&old_token);
    ok(&["keys", "rotate"]);
    let new_token = sign_in().await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(jwt_kid(&new_token), old_kid);
    assert_eq!(user_answer(old_token.clone()).await.status, 200);
    assert!(ok(&["keys", "ls"]).contains(&old_kid));
    ok(&["keys", "retire", &old_kid]);
    assert_eq!(user_answer(old_token).await.status, 401);
    assert_eq!(user_answer(new_token).await.status, 200);

    // Deleting the user ends it all.
    ok(&["users", "rm", &id]);
    assert_eq!(sign_in().await.status, 400);
    let missing = cli(&["users", "get", &id]);
    assert!(!missing.success());
    assert!(
        missing.stderr().contains("user_not_found"),
        "{}",
        missing.stderr()
    );
}

fn jwt_kid(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_limits_stop_a_guesser_without_locking_the_owner_out() {
    let server = server();
    project_with_public_key(&server, "shop").await;
    let config = |settings: Value| {
        send(
            control(
                &server,
                reqwest::Method::PUT,
                "/p/shop/auth/v1/admin/config",
            )
            .json(&settings),
        )
    };
    let answer = config(json!({
        "sign_ins_per_account_per_hour": 3,
        "new_users_per_address_per_hour": 2,
    }))
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        sign_up(&server, "/p/shop/auth/v1", None, "ann@example.com")
            .await
            .status,
        200
    );

    // The guesser comes from another loopback address, and claims yet
    // others in X-Forwarded-For, which this server does not trust.
    let guesser = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let sign_in = |client: &reqwest::Client, password: &str, forwarded: usize| {
        send(
            client
                .post(format!(
                    "{}/p/shop/auth/v1/token?grant_type=password",
                    server.url
                ))
                .header("x-forwarded-for", format!("10.0.0.{forwarded}"))
                .json(&json!({"email": "ann@example.com", "password": password})),
        )
    };
    for n in 0..3 {
        let answer = sign_in(&guesser, "a wrong guess!", n).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
    }
    let limited = sign_in(&guesser, "a long passphrase", 9).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.json()["code"], "over_request_rate_limit");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1200).contains(&wait), "{wait}");
    // The owner, from its own address, signs in.
    let owner = sign_in(&http(), "a long passphrase", 0).await;
    assert_eq!(owner.status, 200, "{}", owner.text());

    // New users: two from one address an hour, then 429.
    let anonymous = |client: &reqwest::Client| {
        send(
            client
                .post(format!("{}/p/shop/auth/v1/signup", server.url))
                .json(&json!({})),
        )
    };
    for _ in 0..2 {
        assert_eq!(anonymous(&guesser).await.status, 200);
    }
    assert_eq!(anonymous(&guesser).await.status, 429);
    assert_eq!(
        anonymous(&http()).await.status,
        200,
        "another address is not limited"
    );
}

/// The SMTP sink (`tests/auth/smtp_sink.py`, aiosmtpd from the auth
/// tools' virtualenv) on 127.0.0.1: every message it receives is a JSON
/// line in its file. Stopped when dropped.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    file: tempfile::NamedTempFile,
}

impl SmtpSink {
    fn start() -> Self {
        use std::io::BufRead;
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut child = std::process::Command::new(auth_tools().join("venv/bin/python"))
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth/smtp_sink.py"))
            .arg("0")
            .arg(file.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the SMTP sink");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the sink prints its port");
        Self { child, port, file }
    }

    /// Every message so far.
    fn mails(&self) -> Vec<Value> {
        std::fs::read_to_string(self.file.path())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn mails_to(&self, to: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|mail| mail["to"].as_array().unwrap().iter().any(|t| t == to))
            .collect()
    }

    /// The `n`th message to `to` (from 0), once it has come.
    async fn mail(&self, to: &str, n: usize) -> Value {
        wait_for(
            &format!("mail {n} to {to}"),
            Duration::from_secs(10),
            || {
                let found = self.mails_to(to).get(n).cloned();
                async move { found }
            },
        )
        .await
    }

    /// The project settings that mail through this sink.
    fn smtp(&self) -> Value {
        json!({"host": "127.0.0.1", "port": self.port, "tls": "none",
               "from": "Shop <no-reply@shop.example>"})
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The six-digit code in a mail.
fn code_of(mail: &Value) -> String {
    let body = mail["body"].as_str().unwrap();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|word| word.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body}"))
        .to_owned()
}

/// A key of `kind` for `project`: its token.
async fn key(server: &WokServer, project: &str, kind: &str) -> String {
    let issued = send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/projects/{project}/keys"),
        )
        .json(&json!({ "kind": kind })),
    )
    .await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    issued.json()["token"].as_str().unwrap().to_owned()
}

/// Replaces a project's auth settings.
async fn configure(server: &WokServer, project: &str, settings: Value) -> Value {
    let answer = send(
        control(
            server,
            reqwest::Method::PUT,
            &format!("/p/{project}/auth/v1/admin/config"),
        )
        .json(&settings),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// A POST to a project's auth route, without a key.
async fn post(server: &WokServer, project: &str, route: &str, body: Value) -> Answer {
    send(
        http()
            .post(format!("{}/p/{project}/auth/v1{route}", server.url))
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn supabase_js_signs_in_by_email_code_magic_link_and_recovery() {
    let server = server();
    let sink = SmtpSink::start();
    let shop_key = project_with_public_key(&server, "shop").await;
    let confirm_key = project_with_public_key(&server, "club").await;
    server.cli_ok(&["project", "create", "bare"]);
    let bare_service_key = key(&server, "bare", "service").await;
    configure(
        &server,
        "shop",
        json!({"smtp": sink.smtp(), "site_url": "http://app.test/",
               "redirect_urls": ["http://app.test/welcome/*"],
               "emails_per_recipient_per_hour": 100}),
    )
    .await;
    configure(
        &server,
        "club",
        json!({"smtp": sink.smtp(), "email_confirmation": true,
               "emails_per_recipient_per_hour": 100}),
    )
    .await;
    let tools = auth_tools();
    let script = tools.join(format!("email-{}.mjs", std::process::id()));
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth/email.mjs"),
        &script,
    )
    .unwrap();
    let (url, mails) = (server.url.clone(), sink.file.path().to_owned());
    let output = tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("node")
            .arg("--experimental-websocket")
            .arg(&script)
            .env("WOK_URL", url)
            .env("WOK_MAILS", mails)
            .env("WOK_PUBLIC_KEY", shop_key)
            .env("WOK_CONFIRM_KEY", confirm_key)
            .env("WOK_NO_SMTP_SERVICE_KEY", bare_service_key)
            .output();
        let _ = std::fs::remove_file(&script);
        output
    })
    .await
    .unwrap()
    .expect("running node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the email suite failed:\n{report}");
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .ends_with("\nok"),
        "{report}"
    );
}

#[tokio::test]
async fn a_code_dies_after_five_wrong_tries_and_at_its_expiry() {
    let server = server();
    let sink = SmtpSink::start();
    project_with_public_key(&server, "shop").await;
    configure(
        &server,
        "shop",
        json!({"smtp": sink.smtp(), "emails_per_recipient_per_hour": 100}),
    )
    .await;
    let ann = "ann@example.com";
    let verify = |token: String| {
        post(
            &server,
            "shop",
            "/verify",
            json!({"type": "email", "email": ann, "token": token}),
        )
    };
    assert_eq!(
        post(&server, "shop", "/otp", json!({"email": ann}))
            .await
            .status,
        200
    );
    let right = code_of(&sink.mail(ann, 0).await);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    for _ in 0..5 {
        let answer = verify(wrong.clone()).await;
        assert_eq!(answer.status, 403, "{}", answer.text());
        assert_eq!(answer.json()["code"], "otp_expired");
    }
    let answer = verify(right).await;
    assert_eq!(answer.status, 403, "five wrong codes killed the right one");

    // Four wrong ones leave it working, once.
    post(&server, "shop", "/otp", json!({"email": ann})).await;
    let right = code_of(&sink.mail(ann, 1).await);
    for _ in 0..4 {
        assert_eq!(verify(wrong.clone()).await.status, 403);
    }
    let answer = verify(right.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.json()["access_token"].is_string());
    assert_eq!(verify(right).await.status, 403, "a code works once");

    // Expired: a lifetime of one second.
    configure(
        &server,
        "shop",
        json!({"smtp": sink.smtp(), "emails_per_recipient_per_hour": 100,
               "email_code_lifetime_s": 1}),
    )
    .await;
    post(&server, "shop", "/otp", json!({"email": ann})).await;
    let mail = sink.mail(ann, 2).await;
    assert!(mail["body"].as_str().unwrap().contains("for 1 minute."));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(verify(code_of(&mail)).await.status, 403, "an expired code");
}

/// The median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test]
async fn known_and_unknown_addresses_take_the_same_time() {
    let server = server();
    project_with_public_key(&server, "shop").await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    configure(
        &server,
        "shop",
        json!({"smtp": {"host": "127.0.0.1", "port": silent_port, "tls": "none",
                        "from": "no-reply@shop.example"},
               "email_confirmation": true, "emails_per_recipient_per_hour": 1000,
               "emails_per_address_per_hour": 1000, "new_users_per_address_per_hour": 1000}),
    )
    .await;
    let known = "ann@example.com";
    let signed_up = post(
        &server,
        "shop",
        "/signup",
        json!({"email": known, "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.text());

    // Known and unknown addresses, one after the other, many times: the
    // medians differ by less than what a password hash, a store write or a
    // mail would add to one side only (an argon2 hash here takes tens of
    // milliseconds).
    let timed = |route: &'static str, body: Value| {
        let server = &server;
        async move {
            let started = std::time::Instant::now();
            let answer = post(server, "shop", route, body).await;
            assert_eq!(answer.status, 200, "{route}: {}", answer.text());
            started.elapsed()
        }
    };
    for (route, known_body, unknown_body) in [
        (
            "/recover",
            json!({"email": known}),
            json!({"email": "nobody@example.com"}),
        ),
        (
            "/otp",
            json!({"email": known, "create_user": false}),
            json!({"email": "nobody@example.com", "create_user": false}),
        ),
        (
            "/signup",
            json!({"email": known, "password": "another long passphrase"}),
            Value::Null,
        ),
    ] {
        let (mut on_known, mut on_unknown) = (Vec::new(), Vec::new());
        for round in 0..15 {
            let unknown_body = if unknown_body.is_null() {
                json!({"email": format!("new-{round}@example.com"), "password": "another long passphrase"})
            } else {
                unknown_body.clone()
            };
            on_known.push(timed(route, known_body.clone()).await);
            on_unknown.push(timed(route, unknown_body).await);
        }
        let (known_time, unknown_time) = (median(on_known), median(on_unknown));
        let gap = known_time.abs_diff(unknown_time);
        let allowed = Duration::from_millis(5).max(known_time.max(unknown_time) / 2);
        assert!(
            gap <= allowed,
            "{route}: a known address takes {known_time:?}, an unknown one {unknown_time:?}"
        );
    }
}

#[tokio::test]
async fn unknown_addresses_are_answered_like_known_ones_before_any_mail_goes() {
    let server = server();
    project_with_public_key(&server, "shop").await;
    // An SMTP server that accepts connections and never answers: a mail
    // to it takes the send timeout, which no request waits for.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    configure(
        &server,
        "shop",
        json!({"smtp": {"host": "127.0.0.1", "port": silent_port, "tls": "none",
                        "from": "no-reply@shop.example"},
               "email_confirmation": true, "emails_per_recipient_per_hour": 100}),
    )
    .await;
    let known = "ann@example.com";
    let unknown = "nobody@example.com";
    let signed_up = post(
        &server,
        "shop",
        "/signup",
        json!({"email": known, "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.text());
    assert!(
        signed_up.json()["access_token"].is_null(),
        "no session before confirmation"
    );
    // Its confirmation is as good as unconfirmed and confirmed users go:
    // confirm it through the service side.
    let id = signed_up.json()["id"].as_str().unwrap().to_owned();
    let confirmed = send(
        control(
            &server,
            reqwest::Method::PUT,
            &format!("/p/shop/auth/v1/admin/users/{id}"),
        )
        .json(&json!({"email_confirm": true})),
    )
    .await;
    assert_eq!(confirmed.status, 200);

    let alike = |route: &'static str, body: fn(&str) -> Value| {
        let server = &server;
        async move {
            let started = std::time::Instant::now();
            let known_answer = post(server, "shop", route, body(known)).await;
            let unknown_answer = post(server, "shop", route, body(unknown)).await;
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{route} waited for the mail"
            );
            assert_eq!(known_answer.status, unknown_answer.status, "{route}");
            assert_eq!(known_answer.text(), unknown_answer.text(), "{route}");
            assert_eq!(
                known_answer.headers.get("content-type"),
                unknown_answer.headers.get("content-type")
            );
            known_answer
        }
    };
    assert_eq!(
        alike("/recover", |email| json!({"email": email}))
            .await
            .status,
        200
    );
    assert_eq!(
        alike(
            "/otp",
            |email| json!({"email": email, "create_user": false})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        alike("/resend", |email| json!({"email": email, "type": "signup"}))
            .await
            .status,
        200
    );
    // A sign-up for a taken address: the same shape as a new user's.
    let taken = post(
        &server,
        "shop",
        "/signup",
        json!({"email": known, "password": "another long passphrase"}),
    )
    .await;
    let fresh = post(
        &server,
        "shop",
        "/signup",
        json!({"email": "someone-new@example.com", "password": "another long passphrase"}),
    )
    .await;
    assert_eq!((taken.status, fresh.status), (200, 200), "{}", taken.text());
    let keys = |answer: &Answer| {
        let mut keys: Vec<String> = answer.json().as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&taken), keys(&fresh));
    assert_ne!(taken.json()["id"], json!(id), "not the owner's id");
    // The owner's password did not change.
    let sign_in = send(
        http()
            .post(format!(
                "{}/p/shop/auth/v1/token?grant_type=password",
                server.url
            ))
            .json(&json!({"email": known, "password": "a long passphrase"})),
    )
    .await;
    assert_eq!(sign_in.status, 200, "{}", sign_in.text());

    // Mail limits: per recipient, known or not alike.
    configure(
        &server,
        "shop",
        json!({"smtp": {"host": "127.0.0.1", "port": silent_port, "tls": "none",
                        "from": "no-reply@shop.example"},
               "emails_per_recipient_per_hour": 2}),
    )
    .await;
    for email in [known, unknown] {
        for _ in 0..2 {
            assert_eq!(
                post(&server, "shop", "/recover", json!({"email": email}))
                    .await
                    .status,
                200
            );
        }
        let limited = post(&server, "shop", "/recover", json!({"email": email})).await;
        assert_eq!(limited.status, 429, "{}", limited.text());
        assert_eq!(limited.json()["code"], "over_email_send_rate_limit");
    }
    drop(silent);
}

#[tokio::test]
async fn the_smtp_password_is_sealed_and_never_shown() {
    let server = server();
    project_with_public_key(&server, "shop").await;
    let password = "smtp-secret-8f3a2c91";
    let shown = configure(
        &server,
        "shop",
        json!({"smtp": {"host": "smtp.example.com", "username": "shop", "password": password,
                        "from": "Shop <no-reply@shop.example>"},
               "site_url": "https://shop.example/"}),
    )
    .await;
    let check = |shown: &Value| {
        let text = shown.to_string();
        assert!(!text.contains(password), "{text}");
        assert!(!text.contains("sealed"), "{text}");
        assert_eq!(shown["smtp"]["password_set"], true, "{text}");
        assert_eq!(shown["smtp"]["tls"], "starttls");
        assert_eq!(shown["smtp"]["port"], 587);
    };
    check(&shown);
    let got = send(control(
        &server,
        reqwest::Method::GET,
        "/p/shop/auth/v1/admin/config",
    ))
    .await
    .json();
    check(&got);
    // Put back as shown (as `wok auth config set` does), the password stays.
    let mut again = got.clone();
    again["site_url"] = json!("https://shop.example/app/");
    check(&configure(&server, "shop", again).await);
    // In the database, only sealed.
    let database = server.data_dir().join("wok.db");
    let bytes = std::fs::read(&database).unwrap();
    let wal = std::fs::read(database.with_extension("db-wal")).unwrap_or_default();
    for stored in [&bytes, &wal] {
        assert!(
            !stored
                .windows(password.len())
                .any(|window| window == password.as_bytes()),
            "the SMTP password is stored in the clear"
        );
    }
    // Refused: redirects that could reach elsewhere, a bad sender.
    for bad in [
        json!({"redirect_urls": ["https://app.example.com*"]}),
        json!({"redirect_urls": ["/relative"]}),
        json!({"site_url": "javascript:alert(1)"}),
        json!({"smtp": {"host": "smtp.example.com", "from": "not an address"}}),
        json!({"email_code_lifetime_s": 601}),
    ] {
        let answer = send(
            control(
                &server,
                reqwest::Method::PUT,
                "/p/shop/auth/v1/admin/config",
            )
            .json(&bad),
        )
        .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
    }
    // Removed with an empty password.
    let mut cleared = got;
    cleared["smtp"]["password"] = json!("");
    assert_eq!(
        configure(&server, "shop", cleared).await["smtp"]["password_set"],
        false
    );
}

/// Runs `tests/auth/NAME` with node from the auth tools' directory (where
/// supabase-js resolves), with `env`; fails the test unless it ends `ok`.
async fn run_auth_script(name: &str, env: Vec<(&'static str, String)>) {
    let tools = auth_tools();
    let script = tools.join(format!("{}-{}", std::process::id(), name));
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/auth")
            .join(name),
        &script,
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("node")
            .arg("--experimental-websocket")
            .arg(&script)
            .envs(env)
            .output();
        let _ = std::fs::remove_file(&script);
        output
    })
    .await
    .unwrap()
    .expect("running node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{name} failed:\n{report}");
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .ends_with("\nok"),
        "{report}"
    );
}

#[tokio::test]
async fn supabase_js_enrolls_and_verifies_a_totp_factor_with_pyotp_codes() {
    let server = server();
    let public_key = project_with_public_key(&server, "shop").await;
    let service_key = key(&server, "shop", "service").await;
    let python = auth_tools().join("venv/bin/python");
    run_auth_script(
        "mfa.mjs",
        vec![
            ("WOK_URL", server.url.clone()),
            ("WOK_PUBLIC_KEY", public_key),
            ("WOK_SERVICE_KEY", service_key),
            ("WOK_PYTHON", python.display().to_string()),
        ],
    )
    .await;
}

/// The access token's claims.
fn claims(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn rules_requiring_aal2_take_a_raised_session_and_its_refreshes() {
    let server = server();
    let public_key = project_with_public_key(&server, "shop").await;
    let service_key = key(&server, "shop", "service").await;
    let auth = |method: reqwest::Method, route: &str, token: &str| {
        http()
            .request(method, format!("{}/auth/v1{route}", server.url))
            .header("apikey", &public_key)
            .bearer_auth(token)
    };
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        r#"{"create": "auth.aal >= 2", "read": "auth.aal >= 2"}"#,
    )
    .unwrap();
    server.cli_ok(&[
        "--project",
        "shop",
        "docs",
        "access",
        "vault",
        "--rules",
        rules.path().to_str().unwrap(),
    ]);
    let write_to_vault = |token: String| {
        send(
            http()
                .post(format!("{}/v1/docs/vault", server.url))
                .header("apikey", &public_key)
                .bearer_auth(token)
                .json(&json!({"secret": 42})),
        )
    };
    let session = sign_up(&server, "/p/shop/auth/v1", None, "ann@example.com")
        .await
        .json();
    let token = session["access_token"].as_str().unwrap().to_owned();
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(write_to_vault(token.clone()).await.status, 403, "aal1");
    let enrolled = send(
        auth(reqwest::Method::POST, "/factors", &token)
            .json(&json!({"factor_type": "totp", "friendly_name": "phone"})),
    )
    .await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.text());
    let enrolled = enrolled.json();
    let factor_id = enrolled["id"].as_str().unwrap().to_owned();
    let secret = enrolled["totp"]["secret"].as_str().unwrap().to_owned();
    let code = |offset: i64| {
        succeed(
            std::process::Command::new(auth_tools().join("venv/bin/python"))
                .arg("-c")
                .arg("import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(time.time() + int(sys.argv[2])))")
                .arg(&secret)
                .arg(offset.to_string()),
        )
        .trim()
        .to_owned()
    };
    let verify = |code: String| {
        let auth = &auth;
        let token = token.clone();
        let factor_id = factor_id.clone();
        async move {
            let challenge = send(auth(
                reqwest::Method::POST,
                &format!("/factors/{factor_id}/challenge"),
                &token,
            ))
            .await
            .json();
            send(
                auth(
                    reqwest::Method::POST,
                    &format!("/factors/{factor_id}/verify"),
                    &token,
                )
                .json(&json!({"challenge_id": challenge["id"], "code": code})),
            )
            .await
        }
    };
    let raised = verify(code(0)).await;
    assert_eq!(raised.status, 200, "{}", raised.text());
    let raised = raised.json();
    let raised_token = raised["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&raised_token)["aal"], "aal2");
    let written = write_to_vault(raised_token.clone()).await;
    assert!((200..300).contains(&written.status), "{}", written.text());
    let replayed = verify(code(0)).await;
    assert_eq!(replayed.status, 422, "{}", replayed.text());
    assert_eq!(replayed.json()["code"], "mfa_verification_failed");

    // The refreshed token is at aal2 too, and the rule takes it.
    let refreshed = send(
        http()
            .post(format!(
                "{}/auth/v1/token?grant_type=refresh_token",
                server.url
            ))
            .header("apikey", &public_key)
            .json(&json!({"refresh_token": raised["refresh_token"]})),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let refreshed_token = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims(&refreshed_token)["aal"], "aal2");
    let written = write_to_vault(refreshed_token).await;
    assert!((200..300).contains(&written.status), "{}", written.text());
    let user = send(auth(reqwest::Method::GET, "/user", &raised_token))
        .await
        .json();
    assert_eq!(user["factors"][0]["status"], "verified");
    assert_eq!(user["factors"][0]["friendly_name"], "phone");

    // The service side lists and removes the factor (a lost phone), with
    // the CLI too.
    let listed = server.cli_ok(&[
        "--project",
        "shop",
        "auth",
        "users",
        "factors",
        "ls",
        &user_id,
    ]);
    assert!(
        listed.contains(&factor_id) && listed.contains("verified"),
        "{listed}"
    );
    let refused = send(
        http()
            .delete(format!(
                "{}/auth/v1/admin/users/{user_id}/factors/{factor_id}",
                server.url
            ))
            .header("apikey", &public_key)
            .bearer_auth(&public_key),
    )
    .await;
    assert_eq!(refused.status, 403, "a public key is no admin");
    server.cli_ok(&[
        "--project",
        "shop",
        "auth",
        "users",
        "factors",
        "rm",
        &user_id,
        &factor_id,
    ]);
    let listed = send(
        http()
            .get(format!(
                "{}/auth/v1/admin/users/{user_id}/factors",
                server.url
            ))
            .header("apikey", &service_key)
            .bearer_auth(&service_key),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json(), json!([]));
    let user = send(auth(reqwest::Method::GET, "/user", &token))
        .await
        .json();
    assert!(user.get("factors").is_none(), "{user}");
}

#[tokio::test]
async fn a_login_ticket_from_the_service_side_signs_a_user_in_once() {
    let server = server();
    let public_key = project_with_public_key(&server, "shop").await;
    let blog_key = project_with_public_key(&server, "blog").await;
    let service_key = key(&server, "shop", "service").await;
    let admin = |route: &str, credential: &str| {
        http()
            .post(format!("{}/auth/v1/admin{route}", server.url))
            .header("apikey", credential)
            .bearer_auth(credential)
    };
    let user = send(admin("/users", &service_key).json(&json!({"email": "ann@example.com"})))
        .await
        .json();
    let user_id = user["id"].as_str().unwrap().to_owned();
    let mint = |body: Value| send(admin("/tickets", &service_key).json(&body));
    let exchange = |apikey: String, ticket: String| {
        send(
            http()
                .post(format!("{}/auth/v1/token?grant_type=ticket", server.url))
                .header("apikey", apikey)
                .json(&json!({ "ticket": ticket })),
        )
    };

    let minted = mint(json!({"user_id": user_id})).await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    let minted = minted.json();
    let ticket = minted["ticket"].as_str().unwrap().to_owned();
    let expires_at = minted["expires_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now + 290..=now + 301).contains(&expires_at), "{minted}");
    // Another project's key does not take it.
    let elsewhere = exchange(blog_key.clone(), ticket.clone()).await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.text());
    assert_eq!(elsewhere.json()["code"], "invalid_ticket");
    let session = exchange(public_key.clone(), ticket.clone()).await;
    assert_eq!(session.status, 200, "{}", session.text());
    let session = session.json();
    let access_token = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(session["user"]["id"], user_id.as_str());
    assert_eq!(claims(&access_token)["amr"][0]["method"], "ticket");
    let me = send(
        http()
            .get(format!("{}/auth/v1/user", server.url))
            .header("apikey", &public_key)
            .bearer_auth(&access_token),
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["id"], user_id.as_str());
    let again = exchange(public_key.clone(), ticket.clone()).await;
    assert_eq!(again.status, 403, "a ticket works once");
    run_auth_script(
        "ticket.mjs",
        vec![
            ("WOK_URL", server.url.clone()),
            ("WOK_PUBLIC_KEY", public_key.clone()),
            ("WOK_ACCESS_TOKEN", access_token),
            (
                "WOK_REFRESH_TOKEN",
                session["refresh_token"].as_str().unwrap().to_owned(),
            ),
            ("WOK_USER_ID", user_id.clone()),
        ],
    )
    .await;

    // Refused: an expired ticket, one minted with a public key, one for
    // nobody, one made up, a banned user's.
    let short = mint(json!({"user_id": user_id, "expires_in": 1}))
        .await
        .json();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = exchange(
        public_key.clone(),
        short["ticket"].as_str().unwrap().to_owned(),
    )
    .await;
    assert_eq!(expired.status, 403, "{}", expired.text());
    let public = send(admin("/tickets", &public_key).json(&json!({"user_id": user_id}))).await;
    assert_eq!(public.status, 403, "{}", public.text());
    assert_eq!(public.json()["code"], "not_admin");
    for refused in [
        json!({"user_id": "00000000-0000-4000-8000-000000000000"}),
        json!({"email": "nobody@example.com"}),
    ] {
        assert_eq!(mint(refused).await.status, 404);
    }
    for invalid in [
        json!({"user_id": user_id, "expires_in": 601}),
        json!({"user_id": user_id, "create": true}),
        json!({}),
    ] {
        assert_eq!(mint(invalid).await.status, 400);
    }
    let made_up = exchange(public_key.clone(), "wok_tk_made-up".to_owned()).await;
    assert_eq!(made_up.status, 403);
    let banned = mint(json!({"user_id": user_id})).await.json();
    server.cli_ok(&[
        "--project",
        "shop",
        "auth",
        "users",
        "ban",
        &user_id,
        "--for",
        "1h",
    ]);
    let refused = exchange(
        public_key.clone(),
        banned["ticket"].as_str().unwrap().to_owned(),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["code"], "user_banned");
    server.cli_ok(&["--project", "shop", "auth", "users", "unban", &user_id]);

    // With create, an email that has no user gets a confirmed one.
    let created = mint(json!({"email": "Bob@example.com", "create": true})).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    let session = exchange(
        public_key.clone(),
        created["ticket"].as_str().unwrap().to_owned(),
    )
    .await
    .json();
    assert_eq!(session["user"]["email"], "bob@example.com");
    assert!(session["user"]["email_confirmed_at"].is_string());
    assert_eq!(session["user"]["id"], created["user_id"]);

    // The CLI prints a ticket, which signs in.
    let printed = server.cli_ok(&["--project", "shop", "auth", "users", "ticket", &user_id]);
    let session = exchange(public_key, printed.trim().to_owned()).await;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(session.json()["user"]["id"], user_id.as_str());
}

#[tokio::test]
async fn supabase_js_signs_in_with_an_openid_connect_provider() {
    // The provider (oauth2-mock-server) listens on plain http on loopback.
    let server = WokServer::start_with(WOK, &["--allow-http-issuers"]);
    let public_key = project_with_public_key(&server, "shop").await;
    let service_key = key(&server, "shop", "service").await;
    run_auth_script(
        "oidc.mjs",
        vec![
            ("WOK_URL", server.url.clone()),
            ("WOK_PROJECT", "shop".to_owned()),
            ("WOK_PUBLIC_KEY", public_key),
            ("WOK_SERVICE_KEY", service_key),
        ],
    )
    .await;
}

#[tokio::test]
async fn provider_settings_are_checked_and_their_secret_is_never_shown() {
    let server = server();
    server.cli_ok(&["project", "create", "shop"]);
    let cli = |args: &[&str]| {
        let mut all = vec!["--project", "shop", "auth", "config"];
        all.extend_from_slice(args);
        server.cli(&all)
    };
    let provider = |fields: &str| {
        format!(
            r#"providers=[{{"name":"corp","client_id":"wok","issuer":"https://idp.example"{fields}}}]"#
        )
    };
    // Refused, each with a one-line error: an http issuer without
    // --allow-http-issuers, a bad name, a reserved one, no client id.
    for (bad, says) in [
        (
            r#"providers=[{"name":"corp","client_id":"wok","issuer":"http://127.0.0.1:9"}]"#
                .to_owned(),
            "must be https",
        ),
        (
            r#"providers=[{"name":"Corp","client_id":"wok","issuer":"https://idp.example"}]"#
                .to_owned(),
            "lowercase",
        ),
        (
            r#"providers=[{"name":"email","client_id":"wok","issuer":"https://idp.example"}]"#
                .to_owned(),
            "reserved",
        ),
        (
            r#"providers=[{"name":"corp","client_id":"","issuer":"https://idp.example"}]"#
                .to_owned(),
            "client_id",
        ),
        (
            r#"providers=[{"name":"corp","client_id":"wok","issuer":"https://idp.example/?x=1"}]"#
                .to_owned(),
            "no query",
        ),
    ] {
        let output = cli(&["set", &bad]);
        assert!(!output.success(), "{bad}");
        assert!(output.stderr().contains(says), "{bad}: {}", output.stderr());
        assert_eq!(
            output.stderr().trim().lines().count(),
            1,
            "{}",
            output.stderr()
        );
    }
    // The secret is sealed, shown only as set, and kept when the settings
    // come back without it.
    let output = cli(&["set", &provider(r#","client_secret":"s3cret-value""#)]);
    assert!(output.success(), "{}", output.stderr());
    let shown = cli(&["get"]).stdout();
    assert!(!shown.contains("s3cret-value"), "{shown}");
    let config: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(config["providers"][0]["client_secret_set"], true);
    assert_eq!(
        config["providers"][0]["scopes"],
        json!(["email", "profile"])
    );
    assert!(cli(&["set", &provider("")]).success());
    let config: Value = serde_json::from_str(&cli(&["get"]).stdout()).unwrap();
    assert_eq!(config["providers"][0]["client_secret_set"], true);
    assert!(cli(&["set", &provider(r#","client_secret":"""#)]).success());
    let config: Value = serde_json::from_str(&cli(&["get"]).stdout()).unwrap();
    assert_eq!(config["providers"][0]["client_secret_set"], false);
}
