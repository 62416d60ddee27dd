//! Uses `wok:documents` over HTTP, so tests can check it against wok's REST
//! API: `GET /C/ID` (the data; 404 if absent), `POST /C` (body: document;
//! answers the new id), `PUT /C/ID[?if-version=N]` (answers the version),
//! `PATCH /C/ID[?if-version=N]`, `DELETE /C/ID`, `POST /C?query` (body: a
//! query; answers the ids of every page, one a line), `POST /C?count`,
//! `POST /?batch` (body: a JSON list of `{op, collection, id, data,
//! if_version}`; answers `id version` lines). A failed call answers the
//! error's kind as the status (404, 409, 412, 400, 500) and
//! `kind: message` as the body.
use serde_json::Value;
use wstd::http::{Body, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../../../wit/documents",
    world: "wok:documents/imports",
    generate_all,
});

use wok::documents::documents::{self as docs, Error, Op, Write};

fn answer(status: StatusCode, body: impl Into<Body>) -> wstd::http::Result<Response<Body>> {
    Ok(Response::builder().status(status).body(body.into())?)
}

fn failed(error: Error) -> wstd::http::Result<Response<Body>> {
    let (status, kind, message) = match error {
        Error::NotFound(message) => (StatusCode::NOT_FOUND, "not-found", message),
        Error::Exists(message) => (StatusCode::CONFLICT, "exists", message),
        Error::PreconditionFailed(message) => {
            (StatusCode::PRECONDITION_FAILED, "precondition-failed", message)
        }
        Error::Invalid(message) => (StatusCode::BAD_REQUEST, "invalid", message),
        Error::Unindexed(message) => (StatusCode::BAD_REQUEST, "unindexed", message),
        Error::Other(message) => (StatusCode::INTERNAL_SERVER_ERROR, "other", message),
    };
    answer(status, format!("{kind}: {message}"))
}

fn if_version(query: &str) -> Option<u64> {
    query.strip_prefix("if-version=")?.parse().ok()
}

fn batch(body: &str) -> Result<String, Error> {
    let items: Vec<Value> = serde_json::from_str(body)
        .map_err(|error| Error::Invalid(format!("the batch is not a JSON list: {error}")))?;
    let writes = items
        .iter()
        .map(|item| {
            let op = match item["op"].as_str() {
                Some("create") => Op::Create,
                Some("set") => Op::Set,
                Some("patch") => Op::Patch,
                _ => Op::Delete,
            };
            Write {
                op,
                collection: item["collection"].as_str().unwrap_or_default().to_owned(),
                id: item["id"].as_str().map(str::to_owned),
                data: item.get("data").map(Value::to_string),
                if_version: item["if_version"].as_u64(),
            }
        })
        .collect::<Vec<_>>();
    let done = docs::batch(&writes)?;
    Ok(done
        .iter()
        .map(|written| format!("{} {}\n", written.id, written.version.unwrap_or(0)))
        .collect())
}

fn query_ids(collection: &str, body: &str) -> Result<String, Error> {
    let mut query: Value = serde_json::from_str(body)
        .map_err(|error| Error::Invalid(format!("the query is not JSON: {error}")))?;
    let mut ids = String::new();
    loop {
        let page = docs::query(collection, &query.to_string())?;
        for document in &page.documents {
            ids.push_str(&document.id);
            ids.push('\n');
        }
        match page.next_cursor {
            Some(cursor) => query["cursor"] = Value::from(cursor),
            None => return Ok(ids),
        }
    }
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (collection, id) = match path.split_once('/') {
        Some((collection, id)) => (collection.to_owned(), Some(id.to_owned())),
        None => (path.clone(), None),
    };
    let method = request.method().clone();
    let body = String::from_utf8_lossy(&request.body_mut().contents().await?.to_vec()).into_owned();
    let result = match (method.as_str(), id, query.as_str()) {
        ("GET", Some(id), _) => match docs::get(&collection, &id) {
            Ok(Some(document)) => Ok(document.data),
            Ok(None) => return answer(StatusCode::NOT_FOUND, "absent"),
            Err(error) => Err(error),
        },
        ("POST", None, "query") => query_ids(&collection, &body),
        ("POST", None, "count") => docs::count(&collection, &body).map(|count| count.to_string()),
        ("POST", None, "batch") => batch(&body),
        ("POST", None, _) => docs::create(&collection, None, &body).map(|written| written.id),
        ("PUT", Some(id), query) => docs::set(&collection, &id, &body, if_version(query))
            .map(|written| written.version.unwrap_or(0).to_string()),
        ("PATCH", Some(id), query) => docs::patch(&collection, &id, &body, if_version(query))
            .map(|written| written.version.unwrap_or(0).to_string()),
        ("DELETE", Some(id), query) => {
            docs::delete(&collection, &id, if_version(query)).map(|_| String::new())
        }
        _ => return answer(StatusCode::METHOD_NOT_ALLOWED, "unknown request"),
    };
    match result {
        Ok(text) => answer(StatusCode::OK, text),
        Err(error) => failed(error),
    }
}
