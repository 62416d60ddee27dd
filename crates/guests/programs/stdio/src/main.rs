//! Writes two lines to stdout and one to stderr, then answers.
use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    println!("to stdout, line one");
    println!("to stdout, line two");
    eprintln!("to stderr");
    Ok(Response::new("logged\n".into()))
}
