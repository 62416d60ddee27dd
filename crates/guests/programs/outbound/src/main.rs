//! Fetches `?url=...` with outbound `wasi:http` and answers with what came back:
//! 200 and the upstream body, or 502 and `outbound error: ...` when the call failed.
use wstd::http::{Body, Client, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let query = request.uri().query().unwrap_or("");
    let Some(url) = query.strip_prefix("url=") else {
        return Ok(Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body("missing ?url=\n".into())?);
    };
    let outgoing = Request::get(url).body(Body::empty())?;
    match Client::new().send(outgoing).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let text = body.str_contents().await?.to_owned();
            Ok(Response::new(format!("upstream {status}: {text}").into()))
        }
        Err(error) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(format!("outbound error: {error}").into())?),
    }
}
