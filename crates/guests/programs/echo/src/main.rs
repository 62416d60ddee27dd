//! Echoes the request: method, path-with-query and headers in response headers,
//! the body streamed back unchanged. The path `/fail` answers with an error
//! code instead, and `/status/NNN` answers with status NNN.
use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let (parts, body) = request.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let path_with_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    if path_with_query == "/fail" {
        return Err(wstd::http::Error::msg("asked to fail"));
    }
    if let Some(status) = path_with_query.strip_prefix("/status/") {
        let status = wstd::http::StatusCode::from_bytes(status.as_bytes())?;
        return Ok(Response::builder().status(status).body(Body::from("as asked"))?);
    }
    Ok(Response::builder()
        .header("x-echo-method", parts.method.as_str())
        .header("x-echo-path-with-query", path_with_query)
        .header("x-echo-headers", serde_json::to_string(&headers)?)
        .body(body)?)
}
