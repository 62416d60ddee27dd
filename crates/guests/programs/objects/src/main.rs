//! Uses `wok:objects` over HTTP, so tests can check it against wok's REST
//! API: `PUT /B/KEY` (body and `content-type`; answers the ETag),
//! `GET /B/KEY` (the bytes; 404 if absent), `GET /B/KEY?range=OFFSET,LENGTH`,
//! `GET /B/KEY?head` (`SIZE ETAG CONTENT-TYPE`), `DELETE /B/KEY` (`true` or
//! `false`), `GET /B?list=PREFIX` (every key, following cursors, one a
//! line). A failed call answers the error's kind as the status (404, 412,
//! 413, 400, 500) and `kind: message` as the body.
use wstd::http::{Body, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../../../wit/objects",
    world: "wok:objects/imports",
    generate_all,
});

use wok::objects::objects::{self as store, Error};

fn answer(status: StatusCode, body: impl Into<Body>) -> wstd::http::Result<Response<Body>> {
    Ok(Response::builder().status(status).body(body.into())?)
}

fn failed(error: Error) -> wstd::http::Result<Response<Body>> {
    let (status, kind, message) = match error {
        Error::NoSuchBucket(message) => (StatusCode::NOT_FOUND, "no-such-bucket", message),
        Error::PreconditionFailed(message) => {
            (StatusCode::PRECONDITION_FAILED, "precondition-failed", message)
        }
        Error::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large", message),
        Error::Invalid(message) => (StatusCode::BAD_REQUEST, "invalid", message),
        Error::Other(message) => (StatusCode::INTERNAL_SERVER_ERROR, "other", message),
    };
    answer(status, format!("{kind}: {message}"))
}

fn found(bytes: Option<Vec<u8>>) -> wstd::http::Result<Response<Body>> {
    match bytes {
        Some(bytes) => answer(StatusCode::OK, bytes),
        None => answer(StatusCode::NOT_FOUND, "absent"),
    }
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) => (bucket.to_owned(), Some(key.to_owned())),
        None => (path.clone(), None),
    };
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let method = request.method().clone();
    let body = request.body_mut().contents().await?.to_vec();
    match (method.as_str(), key, query.as_str()) {
        ("PUT", Some(key), _) => match store::write(&bucket, &key, &body, content_type.as_deref()) {
            Ok(info) => answer(StatusCode::OK, info.etag),
            Err(error) => failed(error),
        },
        ("GET", Some(key), "head") => match store::head(&bucket, &key) {
            Ok(Some(info)) => answer(
                StatusCode::OK,
                format!("{} {} {}", info.size, info.etag, info.content_type.unwrap_or_default()),
            ),
            Ok(None) => answer(StatusCode::NOT_FOUND, "absent"),
            Err(error) => failed(error),
        },
        ("GET", Some(key), query) if query.starts_with("range=") => {
            let (offset, length) = query["range=".len()..].split_once(',').unwrap_or(("0", "0"));
            let (offset, length) = (offset.parse().unwrap_or(0), length.parse().unwrap_or(0));
            match store::read_range(&bucket, &key, offset, length) {
                Ok(bytes) => found(bytes),
                Err(error) => failed(error),
            }
        }
        ("GET", Some(key), _) => match store::read(&bucket, &key) {
            Ok(bytes) => found(bytes),
            Err(error) => failed(error),
        },
        ("DELETE", Some(key), _) => match store::delete(&bucket, &key) {
            Ok(existed) => answer(StatusCode::OK, existed.to_string()),
            Err(error) => failed(error),
        },
        ("GET", None, query) if query.starts_with("list=") => {
            let prefix = &query["list=".len()..];
            let mut keys = String::new();
            let mut cursor: Option<String> = None;
            loop {
                match store::list_objects(&bucket, prefix, None, cursor.as_deref(), 2) {
                    Ok(page) => {
                        for object in page.objects {
                            keys.push_str(&object.key);
                            keys.push('\n');
                        }
                        match page.next_cursor {
                            Some(next) => cursor = Some(next),
                            None => break answer(StatusCode::OK, keys),
                        }
                    }
                    Err(error) => break failed(error),
                }
            }
        }
        _ => answer(StatusCode::METHOD_NOT_ALLOWED, "unknown request"),
    }
}
