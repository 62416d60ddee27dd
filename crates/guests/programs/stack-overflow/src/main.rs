//! Recurses without bound until the wasm call stack is exhausted.
use wstd::http::{Body, Request, Response};

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // The addition after the call keeps it from becoming a loop.
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + 1
}

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let depth = recurse(0);
    Ok(Response::new(format!("{depth}").into()))
}
