//! The JSON shapes of the control API, shared by the gateway and the CLI.
//!
//! Layer: vocabulary. Plain serde types, the one table of public error
//! codes (`errors.rs`) and the one shape of deploy settings
//! (`settings.rs`, read into `domain` types); no I/O, and no internal
//! crate but `domain`.

mod errors;
mod settings;
pub mod stored;

pub use errors::ErrorCode;
pub use settings::{DeploySettings, Trigger};

use serde::{Deserialize, Serialize};

/// Every error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// One function version as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionInfo {
    pub project: String,
    pub name: String,
    pub version: u32,
    /// `wasi:http@0.2` or `wasi:http@0.3`.
    pub world: String,
    /// sha256 of the uploaded component.
    pub artifact: String,
    pub size_bytes: u64,
    pub memory: String,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
    pub max_queue: u32,
    pub env_keys: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// `fresh` or `reuse`.
    pub isolation: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Where the function answers, relative to the server.
    pub url_path: String,
    /// Its triggers, each as its canonical line.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// A native bundle's base image: `FUNCTION@VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Who may call it over HTTP: `none` (anyone), `any` or `user`.
    #[serde(default = "anyone")]
    pub require_auth: String,
    /// With whose access its guest reaches data: `service` or `caller`.
    #[serde(default = "service")]
    pub data_access: String,
}

fn anyone() -> String {
    "none".to_owned()
}

fn service() -> String {
    "service".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionList {
    pub functions: Vec<FunctionInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionList {
    /// The version requests are served by.
    pub current: u32,
    pub versions: Vec<FunctionInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RollbackRequest {
    pub version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub requests: u64,
    pub errors: u64,
    pub billed_ms: u64,
    /// Exact: the sum over records of billed milliseconds times configured MiB.
    pub mib_milliseconds: u64,
    /// Derived from `mib_milliseconds` (1 GB = 1024 MiB).
    pub gb_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvocationRecord {
    pub id: String,
    pub project: String,
    pub function: String,
    pub version: u32,
    pub trigger: String,
    /// Unix milliseconds.
    pub start: i64,
    pub duration_us: u64,
    pub billed_ms: u64,
    pub memory_mib: u64,
    pub peak_memory_bytes: u64,
    /// CPU time of a native instance serving one call at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us: Option<u64>,
    pub outcome: String,
    pub cold: bool,
    /// A cold native instance's start, within `duration_us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_us: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How the caller proved who it is: `none`, `public-key`,
    /// `service-key`, `admin`, `function` or `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The app user that called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvocationList {
    pub invocations: Vec<InvocationRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// Position, for `?after=`.
    pub seq: i64,
    pub invocation: String,
    /// The native instance that wrote it (`instance-N`); absent for
    /// components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Unix milliseconds.
    pub time: i64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `?after=` to get what follows.
    pub next: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProjectInfo {
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProjectList {
    pub projects: Vec<ProjectInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
}

/// A project key as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyInfo {
    pub id: String,
    pub project: String,
    /// `service` or `public`.
    pub kind: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `service` or `public`.
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A key just created: `token` is shown this once and never stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IssuedKey {
    pub key: KeyInfo,
    pub token: String,
    /// The same key as an S3 access key pair, for the S3 endpoint.
    pub s3: S3Credentials,
}

/// An S3 access key pair (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KvStoreList {
    pub stores: Vec<String>,
}

/// A page of keys; `cursor` (the last key) fetches the next page, `null`
/// when this was the last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KvKeyList {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KvWritten {
    /// Also the `ETag`; send it back as `If-Match` to compare-and-swap.
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KvCounter {
    pub value: i64,
}

/// A stored document. `version` is also its `ETag`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Document {
    pub id: String,
    pub version: u64,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// What a document write did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocWritten {
    pub id: String,
    /// The new version; `null` after a delete.
    pub version: Option<u64>,
}

/// A page of query results; `next_cursor` fetches the next page, `null`
/// when this was the last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocPage {
    pub documents: Vec<Document>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocCount {
    pub count: u64,
}

/// How a query runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocExplain {
    /// `index` (a range of `index`), `by-id` (the primary key), `scan`
    /// (every document of the collection) or `union` (a range per branch
    /// of an `or`, in `branches`).
    pub strategy: String,
    pub index: Option<String>,
    pub index_terms: Vec<String>,
    /// The ranges of a `union`; empty otherwise.
    #[serde(default)]
    pub branches: Vec<DocExplainBranch>,
    pub residual_terms: Vec<String>,
    pub sorts_in_memory: bool,
    pub collection_documents: u64,
}

/// One range of a union: an index, and the terms that bound the range.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocExplainBranch {
    pub index: String,
    pub index_terms: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocIndex {
    pub name: String,
    /// Field paths in order; `-` in front sorts that field descending.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateDocIndex {
    pub fields: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocCollection {
    pub name: String,
    pub documents: u64,
    pub indexes: Vec<DocIndex>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocCollectionList {
    pub collections: Vec<DocCollection>,
}

/// One write of `POST /v1/docs/_batch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DocBatchWrite {
    /// `create` (fails if the id exists; no id: a new one), `set` (create
    /// or replace), `patch` (JSON merge patch of an existing document) or
    /// `delete`.
    pub op: String,
    pub collection: String,
    #[serde(default)]
    pub id: Option<String>,
    /// The document (`create`, `set`) or the patch (`patch`).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Only if the document is at this version (as `If-Match`).
    #[serde(default)]
    pub if_version: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DocBatch {
    pub writes: Vec<DocBatchWrite>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocBatchResult {
    pub results: Vec<DocWritten>,
}

/// The access rule of a collection or bucket: `private` (service keys
/// only), `public-read` or `public-read-write`; or, for a collection,
/// per-user `rules` (`access` is then `rules`): a CEL expression per
/// operation (`read`, `list`, `create`, `update`, `delete`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessSetting {
    #[serde(default)]
    pub access: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<serde_json::Value>,
}

/// A bucket and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BucketInfo {
    pub name: String,
    pub created_at: i64,
    pub max_object_bytes: Option<u64>,
    pub content_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BucketList {
    pub buckets: Vec<BucketInfo>,
}

/// `PUT /v1/buckets/NAME`: limits of a new bucket (all optional).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    #[serde(default)]
    pub max_object_bytes: Option<u64>,
    /// Accepted content types; `image/` accepts every image type.
    #[serde(default)]
    pub content_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub last_modified: i64,
}

/// A page of objects; `next_cursor` fetches the next, `null` on the last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectList {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/objects/BUCKET/KEY`: a presigned URL for one method.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Presign {
    /// `GET` (the default) or `PUT`.
    #[serde(default)]
    pub method: Option<String>,
    /// How long the URL works, e.g. `15m`, `1h` (default 1h, at most 7 days).
    #[serde(default)]
    pub expires_in: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresignedUrl {
    pub method: String,
    /// Absolute, from the request's `Host`.
    pub url: String,
    /// The same, without scheme and host.
    pub path: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// One message of `POST /v1/topics/TOPIC/_batch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PublishMessage {
    /// A JSON payload (content type `application/json`)...
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// ...or any bytes, base64-encoded.
    #[serde(default)]
    pub data_base64: Option<String>,
    /// Messages with the same ordering key are delivered one at a time, in order.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// The payload's content type (with `data_base64`).
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublishBatch {
    pub messages: Vec<PublishMessage>,
}

/// A message published: durable once this is answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub id: String,
    /// Its position in the project's event log.
    pub seq: i64,
    /// Unix milliseconds.
    pub time: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedList {
    pub events: Vec<Published>,
}

/// An event as the API shows it (CloudEvents attribute names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventInfo {
    pub seq: i64,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: Option<String>,
    pub key: Option<String>,
    /// Unix milliseconds.
    pub time: i64,
    pub content_type: Option<String>,
    /// The payload as text when it is UTF-8...
    pub data: Option<String>,
    /// ...else base64.
    pub data_base64: Option<String>,
    /// Who made the write the event logs: `user`, `service-key`,
    /// `public-key`, `admin`, `function` or `none`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authtype: Option<String>,
    /// ...and the user's or key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authid: Option<String>,
}

/// A page of a topic's events; `next` (a position) fetches the next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventPage {
    pub events: Vec<EventInfo>,
    pub next: Option<i64>,
}

/// A trigger of a live function and where its delivery stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TriggerInfo {
    pub function: String,
    pub trigger: String,
    /// Its canonical line.
    pub spec: String,
    /// Every event up to this position was handled.
    pub cursor: i64,
    /// Events waiting for a retry.
    pub retrying: u64,
    /// Dead letters.
    pub dead: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TriggerList {
    pub triggers: Vec<TriggerInfo>,
}

/// An event whose delivery failed for good.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub function: String,
    pub trigger: String,
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// Unix milliseconds.
    pub first_failed_at: i64,
    pub died_at: i64,
    pub event: EventInfo,
}

/// A page of dead letters; `next` (a position) fetches the next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    pub next: Option<i64>,
}

/// Which dead letters `_redrive` and `DELETE` take (all fields optional).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub seq: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Count {
    pub count: u64,
}

/// `POST /v1/functions/NAME/triggers/TRIGGER/_replay`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Unix milliseconds or an RFC 3339 time: events from then on are
    /// delivered again.
    pub from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Replayed {
    pub cursor: i64,
}

/// `202 Accepted` for `Prefer: respond-async`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AsyncAccepted {
    pub id: String,
    /// `queued`, or where an earlier call with the same idempotency key stands.
    pub status: String,
    /// Where the status and the response can be read (control API).
    pub url: String,
}

/// The response an asynchronous invocation got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AsyncResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text when it is UTF-8 (at most 1 MiB is kept)...
    pub body: Option<String>,
    /// ...else base64.
    pub body_base64: Option<String>,
}

/// `GET /v1/invocations/ID`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AsyncInvocationInfo {
    pub id: String,
    pub function: String,
    /// `queued`, `retrying`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub response: Option<AsyncResponse>,
    pub error: Option<String>,
}
