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
