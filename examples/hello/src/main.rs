//! Answers every request with a greeting and the path it was called with.
use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let path = request.uri().path_and_query().map_or("/", |path| path.as_str());
    Ok(Response::new(format!("hello from wok ({path})\n").into()))
}
