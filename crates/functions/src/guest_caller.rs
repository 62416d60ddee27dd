//! The guest services of a function deployed with `data_access = caller`:
//! every data call the guest makes is a request of wok's data API, served
//! in process (`invoke::local`), with the credential the invocation came
//! with. The caller's key or access token decides, with the rules it
//! would meet calling the API itself: what it may not read is missing,
//! what it may not write is refused, listings are what its rules cover,
//! and a caller without a credential reaches nothing.
use domain::ProjectId;
use invoke::local::{LocalApiSlot, current_credential};
use invoke::{
    GuestDocError, GuestDocOp, GuestDocPage, GuestDocWrite, GuestDocWritten, GuestDocument,
    GuestDocuments, GuestKeyPage, GuestKeyValue, GuestKvError, GuestMessage, GuestMessaging,
    GuestMessagingError, GuestObjectError, GuestObjectInfo, GuestObjectPage, GuestObjects,
    ServiceFuture,
};
use serde_json::Value;
use std::sync::Arc;

/// The four guest services, as the caller.
pub struct CallerServices {
    pub project: ProjectId,
    pub api: Arc<LocalApiSlot>,
}

/// An answer of the data API.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The error's message (wok's JSON error body), or the status.
    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .map_or_else(|| self.status.to_string(), str::to_owned)
    }

    fn ok(&self) -> bool {
        self.status.is_success()
    }
}

/// A path of the data API: `/v1/projects/P/` and `parts`, each encoded
/// whole as one segment (a `/` in a key too, which the API decodes back),
/// so that nothing a guest names can reach another route.
fn path(project: &ProjectId, parts: &[&str]) -> String {
    let mut path = format!("/v1/projects/{project}");
    for part in parts {
        path.push('/');
        path.push_str(&urlencoding::encode(part));
    }
    path
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let pairs: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", urlencoding::encode((*value)?))))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// A guest service's error, from an answer of the data API.
trait FromAnswer: Sized {
    /// The API could not be asked.
    fn other(message: String) -> Self;
    /// The API refused or failed.
    fn from_answer(answer: &Answer) -> Self;
}

impl FromAnswer for GuestMessagingError {
    fn other(message: String) -> Self {
        GuestMessagingError::Other(message)
    }

    fn from_answer(answer: &Answer) -> Self {
        let message = answer.message();
        match answer.status.as_u16() {
            400 => GuestMessagingError::Invalid(message),
            413 => GuestMessagingError::TooLarge(message),
            status => GuestMessagingError::Other(format!("{status}: {message}")),
        }
    }
}

impl CallerServices {
    /// A request of the data API ([`CallerServices::send`]); not being
    /// able to ask it is the service's error.
    async fn request<E: FromAnswer>(
        &self,
        method: http::Method,
        uri: String,
        headers: &[(http::HeaderName, String)],
        body: Vec<u8>,
    ) -> Result<Answer, E> {
        self.send(method, uri, headers, body)
            .await
            .map_err(E::other)
    }

    /// A request of the data API that must succeed (2xx).
    async fn success<E: FromAnswer>(
        &self,
        method: http::Method,
        uri: String,
        headers: &[(http::HeaderName, String)],
        body: Vec<u8>,
    ) -> Result<Answer, E> {
        let answer = self.request::<E>(method, uri, headers, body).await?;
        if answer.ok() {
            Ok(answer)
        } else {
            Err(E::from_answer(&answer))
        }
    }

    /// A GET of the data API: the answer (200), None (404: missing, or
    /// hidden from the caller), or the service's error.
    async fn found<E: FromAnswer>(&self, uri: String) -> Result<Option<Answer>, E> {
        let answer = self
            .request::<E>(http::Method::GET, uri, &[], Vec::new())
            .await?;
        match answer.status.as_u16() {
            200 => Ok(Some(answer)),
            404 => Ok(None),
            _ => Err(E::from_answer(&answer)),
        }
    }

    /// Sends a request of the data API with the current invocation's
    /// credential (none: the API answers 401).
    async fn send(
        &self,
        method: http::Method,
        uri: String,
        headers: &[(http::HeaderName, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let api = self
            .api
            .get()
            .ok_or_else(|| "the data API is not ready yet".to_owned())?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(bytes::Bytes::from(body))
            .map_err(|error| format!("a request of the data API: {error}"))?;
        current_credential()
            .unwrap_or_default()
            .apply(request.headers_mut());
        for (name, value) in headers {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                request.headers_mut().insert(name.clone(), value);
            }
        }
        let (parts, body) = api.call(request).await.into_parts();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

// ---- key-value

impl FromAnswer for GuestKvError {
    fn other(message: String) -> Self {
        GuestKvError::Other(message)
    }

    fn from_answer(answer: &Answer) -> Self {
        match answer.status.as_u16() {
            401 | 403 => GuestKvError::AccessDenied(answer.message()),
            _ => GuestKvError::Other(answer.message()),
        }
    }
}

impl GuestKeyValue for CallerServices {
    fn open(&self, store: &str) -> Result<(), GuestKvError> {
        data::KeyValue::store_name(store)
            .map(|_| ())
            .map_err(|_| GuestKvError::NoSuchStore(store.to_owned()))
    }

    fn get<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestKvError> {
        Box::pin(async move {
            let uri = path(&self.project, &["kv", store, key]);
            let answer = self.found::<GuestKvError>(uri).await?;
            Ok(answer.map(|answer| answer.body.to_vec()))
        })
    }

    fn set<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> ServiceFuture<'a, (), GuestKvError> {
        Box::pin(async move {
            let uri = path(&self.project, &["kv", store, key]);
            self.success::<GuestKvError>(http::Method::PUT, uri, &[], value)
                .await
                .map(|_| ())
        })
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> ServiceFuture<'a, (), GuestKvError> {
        Box::pin(async move {
            let uri = path(&self.project, &["kv", store, key]);
            let answer = self
                .request::<GuestKvError>(http::Method::DELETE, uri, &[], Vec::new())
                .await?;
            // Deleting what is not there (or hidden from the caller) is
            // done, as for the project's own access.
            if answer.ok() || answer.status == http::StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(GuestKvError::from_answer(&answer))
            }
        })
    }

    fn list<'a>(
        &'a self,
        store: &'a str,
        after: Option<&'a str>,
    ) -> ServiceFuture<'a, GuestKeyPage, GuestKvError> {
        Box::pin(async move {
            let uri = path(&self.project, &["kv", store]) + &query(&[("cursor", after)]);
            let answer = self
                .success::<GuestKvError>(http::Method::GET, uri, &[], Vec::new())
                .await?;
            let page = answer.json();
            Ok(GuestKeyPage {
                keys: page["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|key| key.as_str().map(str::to_owned))
                    .collect(),
                next: page["cursor"].as_str().map(str::to_owned),
            })
        })
    }

    fn increment<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        delta: i64,
    ) -> ServiceFuture<'a, i64, GuestKvError> {
        Box::pin(async move {
            let uri = path(&self.project, &["kv", store, key]) + &format!("?increment={delta}");
            let answer = self
                .success::<GuestKvError>(http::Method::POST, uri, &[], Vec::new())
                .await?;
            answer.json()["value"]
                .as_i64()
                .ok_or_else(|| GuestKvError::Other("the counter's answer has no value".to_owned()))
        })
    }
}

// ---- documents

impl FromAnswer for GuestDocError {
    fn other(message: String) -> Self {
        GuestDocError::Other(message)
    }

    fn from_answer(answer: &Answer) -> Self {
        let message = answer.message();
        match answer.status.as_u16() {
            404 => GuestDocError::NotFound(message),
            409 => GuestDocError::Exists(message),
            412 => GuestDocError::PreconditionFailed(message),
            400 if answer.json()["error"]["code"] == "unindexed_query" => {
                GuestDocError::Unindexed(message)
            }
            400 | 413 => GuestDocError::Invalid(message),
            status => GuestDocError::Other(format!("{status}: {message}")),
        }
    }
}

fn document(value: &Value) -> Option<GuestDocument> {
    Some(GuestDocument {
        id: value["id"].as_str()?.to_owned(),
        version: value["version"].as_u64()?,
        data: value["data"].to_string(),
    })
}

impl CallerServices {
    /// One write, as its REST request.
    async fn doc_write(&self, write: GuestDocWrite) -> Result<GuestDocWritten, GuestDocError> {
        let mut headers = Vec::new();
        if let Some(version) = write.if_version {
            headers.push((http::header::IF_MATCH, format!("\"{version}\"")));
        }
        let (method, uri) = match (write.op, &write.id) {
            (GuestDocOp::Create, None) => (
                http::Method::POST,
                path(&self.project, &["docs", &write.collection]),
            ),
            (GuestDocOp::Create, Some(id)) => {
                headers.push((http::header::IF_NONE_MATCH, "*".to_owned()));
                (
                    http::Method::PUT,
                    path(&self.project, &["docs", &write.collection, id]),
                )
            }
            (op, Some(id)) => (
                match op {
                    GuestDocOp::Set => http::Method::PUT,
                    GuestDocOp::Patch => http::Method::PATCH,
                    _ => http::Method::DELETE,
                },
                path(&self.project, &["docs", &write.collection, id]),
            ),
            (_, None) => {
                return Err(GuestDocError::Invalid(
                    "a set, patch or delete names its document's id".to_owned(),
                ));
            }
        };
        let body = write.data.map(String::into_bytes).unwrap_or_default();
        if !body.is_empty() {
            headers.push((http::header::CONTENT_TYPE, "application/json".to_owned()));
        }
        let answer = self
            .success::<GuestDocError>(method, uri, &headers, body)
            .await?;
        let written = answer.json();
        Ok(GuestDocWritten {
            id: written["id"]
                .as_str()
                .map(str::to_owned)
                .or(write.id)
                .unwrap_or_default(),
            version: written["version"].as_u64(),
        })
    }
}

impl CallerServices {
    /// A query (JSON) POSTed to `docs/COLLECTION/ROUTE` (`_query`,
    /// `_count`): the answer's JSON.
    async fn doc_query(
        &self,
        collection: &str,
        route: &str,
        query: &str,
    ) -> Result<Value, GuestDocError> {
        let uri = path(&self.project, &["docs", collection, route]);
        let headers = [(http::header::CONTENT_TYPE, "application/json".to_owned())];
        let answer = self
            .success::<GuestDocError>(http::Method::POST, uri, &headers, query.as_bytes().to_vec())
            .await?;
        Ok(answer.json())
    }
}

impl GuestDocuments for CallerServices {
    fn get<'a>(
        &'a self,
        collection: &'a str,
        id: &'a str,
    ) -> ServiceFuture<'a, Option<GuestDocument>, GuestDocError> {
        Box::pin(async move {
            let uri = path(&self.project, &["docs", collection, id]);
            let answer = self.found::<GuestDocError>(uri).await?;
            Ok(answer.and_then(|answer| document(&answer.json())))
        })
    }

    fn write<'a>(
        &'a self,
        mut writes: Vec<GuestDocWrite>,
    ) -> ServiceFuture<'a, Vec<GuestDocWritten>, GuestDocError> {
        Box::pin(async move {
            // A batch under rules is the service side's, as over REST.
            if writes.len() != 1 {
                return Err(GuestDocError::Other(
                    "403: with the caller's access, documents are written one at a time".to_owned(),
                ));
            }
            let write = writes.pop().expect("one write");
            Ok(vec![self.doc_write(write).await?])
        })
    }

    fn query<'a>(
        &'a self,
        collection: &'a str,
        query: &'a str,
    ) -> ServiceFuture<'a, GuestDocPage, GuestDocError> {
        Box::pin(async move {
            let page = self.doc_query(collection, "_query", query).await?;
            Ok(GuestDocPage {
                documents: page["documents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(document)
                    .collect(),
                next_cursor: page["next_cursor"].as_str().map(str::to_owned),
            })
        })
    }

    fn count<'a>(
        &'a self,
        collection: &'a str,
        query: &'a str,
    ) -> ServiceFuture<'a, u64, GuestDocError> {
        Box::pin(async move {
            self.doc_query(collection, "_count", query).await?["count"]
                .as_u64()
                .ok_or_else(|| GuestDocError::Other("the count's answer has no count".to_owned()))
        })
    }
}

// ---- objects

impl FromAnswer for GuestObjectError {
    fn other(message: String) -> Self {
        GuestObjectError::Other(message)
    }

    fn from_answer(answer: &Answer) -> Self {
        let message = answer.message();
        match answer.status.as_u16() {
            404 => GuestObjectError::NoSuchBucket(message),
            412 => GuestObjectError::PreconditionFailed(message),
            413 | 507 => GuestObjectError::TooLarge(message),
            400 | 415 => GuestObjectError::Invalid(message),
            status => GuestObjectError::Other(format!("{status}: {message}")),
        }
    }
}

/// Whether a 404 is a missing (or hidden) object rather than a missing
/// bucket.
fn missing_object(answer: &Answer) -> bool {
    answer.status == http::StatusCode::NOT_FOUND
        && answer.json()["error"]["code"] != "bucket_not_found"
}

fn object_info(value: &Value) -> Option<GuestObjectInfo> {
    Some(GuestObjectInfo {
        key: value["key"].as_str()?.to_owned(),
        size: value["size"].as_u64()?,
        etag: value["etag"].as_str()?.to_owned(),
        content_type: value["content_type"].as_str().map(str::to_owned),
        last_modified: value["last_modified"].as_i64()?,
    })
}

impl GuestObjects for CallerServices {
    fn read<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestObjectError> {
        Box::pin(async move {
            let uri = path(&self.project, &["objects", bucket, key]);
            let mut headers = Vec::new();
            if let Some((offset, length)) = range {
                if length == 0 {
                    return Ok(Some(Vec::new()));
                }
                let last = offset.saturating_add(length - 1);
                headers.push((http::header::RANGE, format!("bytes={offset}-{last}")));
            }
            let answer = self
                .request::<GuestObjectError>(http::Method::GET, uri, &headers, Vec::new())
                .await?;
            match answer.status.as_u16() {
                200 | 206 => Ok(Some(answer.body.to_vec())),
                // A range past the end reads nothing.
                416 => Ok(Some(Vec::new())),
                _ if missing_object(&answer) => Ok(None),
                _ => Err(GuestObjectError::from_answer(&answer)),
            }
        })
    }

    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<GuestObjectInfo>, GuestObjectError> {
        Box::pin(async move {
            let uri = path(&self.project, &["objects", bucket, key]);
            let answer = self
                .request::<GuestObjectError>(http::Method::HEAD, uri, &[], Vec::new())
                .await?;
            if answer.status == http::StatusCode::NOT_FOUND {
                // A HEAD's answer has no body to tell a missing bucket from
                // a missing (or hidden) object: both are no object.
                return Ok(None);
            }
            if !answer.ok() {
                return Err(GuestObjectError::from_answer(&answer));
            }
            let header = |name: http::HeaderName| {
                answer
                    .headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            let last_modified = header(http::header::LAST_MODIFIED)
                .and_then(|date| httpdate::parse_http_date(&date).ok())
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_millis() as i64);
            Ok(Some(GuestObjectInfo {
                key: key.to_owned(),
                size: header(http::header::CONTENT_LENGTH)
                    .and_then(|length| length.parse().ok())
                    .unwrap_or(0),
                etag: header(http::header::ETAG)
                    .map(|etag| etag.trim_matches('"').to_owned())
                    .unwrap_or_default(),
                content_type: header(http::header::CONTENT_TYPE),
                last_modified,
            }))
        })
    }

    fn write<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> ServiceFuture<'a, GuestObjectInfo, GuestObjectError> {
        Box::pin(async move {
            let uri = path(&self.project, &["objects", bucket, key]);
            let mut headers = vec![(http::header::CONTENT_LENGTH, data.len().to_string())];
            if let Some(content_type) = content_type {
                headers.push((http::header::CONTENT_TYPE, content_type));
            }
            let answer = self
                .success::<GuestObjectError>(http::Method::PUT, uri, &headers, data)
                .await?;
            object_info(&answer.json()).ok_or_else(|| {
                GuestObjectError::Other("the write's answer names no object".to_owned())
            })
        })
    }

    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, bool, GuestObjectError> {
        Box::pin(async move {
            let uri = path(&self.project, &["objects", bucket, key]);
            let answer = self
                .request::<GuestObjectError>(http::Method::DELETE, uri, &[], Vec::new())
                .await?;
            match answer.status.as_u16() {
                204 | 200 => Ok(true),
                _ if missing_object(&answer) => Ok(false),
                _ => Err(GuestObjectError::from_answer(&answer)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> ServiceFuture<'a, GuestObjectPage, GuestObjectError> {
        Box::pin(async move {
            let limit = limit.to_string();
            let uri = path(&self.project, &["objects", bucket])
                + &query(&[
                    ("prefix", Some(prefix)),
                    ("delimiter", delimiter),
                    ("cursor", cursor),
                    ("limit", Some(&limit)),
                ]);
            let answer = self
                .success::<GuestObjectError>(http::Method::GET, uri, &[], Vec::new())
                .await?;
            let page = answer.json();
            Ok(GuestObjectPage {
                objects: page["objects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(object_info)
                    .collect(),
                common_prefixes: page["common_prefixes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|prefix| prefix.as_str().map(str::to_owned))
                    .collect(),
                next_cursor: page["next_cursor"].as_str().map(str::to_owned),
            })
        })
    }
}

// ---- messaging

impl GuestMessaging for CallerServices {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        mut messages: Vec<GuestMessage>,
    ) -> ServiceFuture<'a, Vec<String>, GuestMessagingError> {
        Box::pin(async move {
            // A batch is the service side's, as over REST.
            if messages.len() != 1 {
                return Err(GuestMessagingError::Other(
                    "403: with the caller's access, messages are published one at a time"
                        .to_owned(),
                ));
            }
            let message = messages.pop().expect("one message");
            let uri = path(&self.project, &["topics", topic])
                + &query(&[
                    ("key", message.key.as_deref()),
                    ("subject", message.subject.as_deref()),
                ]);
            let mut headers = Vec::new();
            if let Some(content_type) = message.content_type {
                headers.push((http::header::CONTENT_TYPE, content_type));
            }
            let answer = self
                .success::<GuestMessagingError>(http::Method::POST, uri, &headers, message.data)
                .await?;
            Ok(answer.json()["id"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect())
        })
    }
}
