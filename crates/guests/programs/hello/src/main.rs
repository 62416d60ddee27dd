use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    Ok(Response::new("hello from wok\n".into()))
}
