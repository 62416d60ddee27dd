//! Answers who called it, as JSON: `wit` is what `wok:auth` says, and
//! `headers` every `x-wok-*` request header it received.
use wstd::http::{Body, Request, Response};

mod auth {
    wit_bindgen::generate!({
        path: "../../../../wit/auth",
        world: "wok:auth/imports",
        generate_all,
    });
}

use auth::wok::auth::caller::{self, AuthKind};

#[wstd::http_server]
async fn main(request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-wok-"))
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    let identity = caller::current();
    let auth = match identity.auth {
        AuthKind::None => "none",
        AuthKind::PublicKey => "public-key",
        AuthKind::ServiceKey => "service-key",
        AuthKind::Admin => "admin",
        AuthKind::Function => "function",
        AuthKind::User => "user",
    };
    let answer = serde_json::json!({
        "wit": {
            "auth": auth,
            "user_id": identity.user_id,
            "session_id": identity.session_id,
            "claims": identity.claims,
            "aal": identity.aal,
            "key_id": identity.key_id,
        },
        "headers": headers,
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(answer.to_string()))?)
}
