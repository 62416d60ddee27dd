//! Uses `wasi:keyvalue` (store, atomics, batch) over HTTP, so tests can
//! check it against wok's REST API:
//! `PUT /STORE/KEY` (body: value), `GET /STORE/KEY` (404 if absent),
//! `GET /STORE/KEY?exists`, `DELETE /STORE/KEY`, `POST /STORE/KEY?incr=N`,
//! `GET /STORE?list` (every key, following cursors),
//! `POST /STORE?set-many` (body: `k=v` lines), `GET /STORE?get-many=a,b`.
//! A store that cannot be opened answers 400 with the error.
use wstd::http::{Body, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../../../wit/deps/keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

fn answer(status: StatusCode, body: impl Into<Body>) -> wstd::http::Result<Response<Body>> {
    Ok(Response::builder().status(status).body(body.into())?)
}

fn failed(error: store::Error) -> wstd::http::Result<Response<Body>> {
    answer(StatusCode::BAD_REQUEST, format!("{error:?}"))
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (store_name, key) = match path.split_once('/') {
        Some((store_name, key)) => (store_name.to_owned(), Some(key.to_owned())),
        None => (path.clone(), None),
    };
    let bucket = match store::open(&store_name) {
        Ok(bucket) => bucket,
        Err(error) => return failed(error),
    };
    let method = request.method().clone();
    let body = request.body_mut().contents().await?.to_vec();
    let result = match (method.as_str(), key, query.as_str()) {
        ("PUT", Some(key), _) => bucket.set(&key, &body).map(|()| String::new()),
        ("GET", Some(key), "exists") => bucket.exists(&key).map(|exists| exists.to_string()),
        ("GET", Some(key), _) => match bucket.get(&key) {
            Ok(Some(value)) => Ok(String::from_utf8_lossy(&value).into_owned()),
            Ok(None) => return answer(StatusCode::NOT_FOUND, "absent"),
            Err(error) => Err(error),
        },
        ("DELETE", Some(key), _) => bucket.delete(&key).map(|()| String::new()),
        ("POST", Some(key), query) if query.starts_with("incr=") => {
            let delta: u64 = query["incr=".len()..].parse().unwrap_or(1);
            atomics::increment(&bucket, &key, delta).map(|value| value.to_string())
        }
        ("GET", None, "list") => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                match bucket.list_keys(cursor) {
                    Ok(page) => {
                        keys.extend(page.keys);
                        match page.cursor {
                            Some(next) => cursor = Some(next),
                            None => break Ok(keys.join("\n")),
                        }
                    }
                    Err(error) => break Err(error),
                }
            }
        }
        ("POST", None, "set-many") => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let pairs: Vec<(String, Vec<u8>)> = text
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()))
                .collect();
            batch::set_many(&bucket, &pairs).map(|()| String::new())
        }
        ("GET", None, query) if query.starts_with("get-many=") => {
            let keys: Vec<String> = query["get-many=".len()..].split(',').map(str::to_owned).collect();
            batch::get_many(&bucket, &keys).map(|found| {
                keys.iter()
                    .zip(found)
                    .map(|(key, entry)| match entry {
                        Some((_, value)) => format!("{key}={}", String::from_utf8_lossy(&value)),
                        None => format!("{key}=<none>"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        _ => return answer(StatusCode::NOT_FOUND, "no such route"),
    };
    match result {
        Ok(text) => answer(StatusCode::OK, text),
        Err(error) => failed(error),
    }
}
