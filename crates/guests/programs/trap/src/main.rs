//! Traps on every request (a Rust panic aborts to `unreachable`).
use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    panic!("this guest always traps");
}
