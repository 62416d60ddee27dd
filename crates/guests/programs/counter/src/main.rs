//! Counts the requests its instance has served, in a global: with a fresh
//! instance per request every answer is `1`.
use std::sync::atomic::{AtomicU64, Ordering};
use wstd::http::{Body, Request, Response};

static SERVED: AtomicU64 = AtomicU64::new(0);

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Response::new(format!("{served}").into()))
}
