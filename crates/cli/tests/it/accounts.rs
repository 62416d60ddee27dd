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
