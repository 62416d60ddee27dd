//! Sleeps `?ms=N` milliseconds (in a host call; 1000 without `ms`), then
//! answers `slept N`.
use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let ms: u64 = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
    Ok(Response::new(format!("slept {ms}\n").into()))
}
