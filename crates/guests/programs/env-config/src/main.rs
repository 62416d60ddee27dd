//! Answers with its environment (`wasi:cli/environment`) and its configuration
//! (`wasi:config/store`) as JSON: `{"env": {...}, "config": {...}}`.
use std::collections::BTreeMap;
use wstd::http::{Body, Request, Response};

wit_bindgen::generate!({
    path: "wit/config",
    world: "wasi:config/imports@0.2.0-rc.1",
});

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let config: BTreeMap<String, String> = match wasi::config::store::get_all() {
        Ok(pairs) => pairs.into_iter().collect(),
        Err(error) => return Err(wstd::http::Error::msg(format!("config error: {error:?}"))),
    };
    let json = serde_json::json!({ "env": env, "config": config });
    Ok(Response::new(json.to_string().into()))
}
