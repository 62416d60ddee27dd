//! Streams `?bytes=N` bytes (default 1 MiB) in chunks of `?chunk=M` (default 64 KiB).
//! Byte i of the body is `b'a' + (i % 26)`, so a client can check every byte.
use std::convert::Infallible;
use wstd::http::body::Bytes;
use wstd::http::{Body, Request, Response};

fn query_number(query: &str, name: &str, default: u64) -> u64 {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(default)
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let query = request.uri().query().unwrap_or("");
    let total = query_number(query, "bytes", 1 << 20);
    let chunk = query_number(query, "chunk", 64 << 10).max(1);
    let stream = futures_lite::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let len = chunk.min(total - sent);
        let bytes: Vec<u8> = (sent..sent + len).map(|i| b'a' + (i % 26) as u8).collect();
        Some((Ok::<_, Infallible>(Bytes::from(bytes)), sent + len))
    });
    Ok(Response::builder()
        .header("content-length", total.to_string())
        .body(Body::from_try_stream(stream))?)
}
