//! The HTTP front: function routes (`/fn/NAME/...`), the control API
//! (`/v1/...`), `/metrics` and `/healthz`.
//!
//! Layer: front. The only crate that picks status codes and error codes (see
//! `error.rs`, one table). Reaches runtimes only through `invoke` traits via
//! the `functions` registry; knows nothing of wasmtime.
//!
//! A request's way: `serve.rs` (the connection loop and its bounds), then
//! [`app`] (`s3::App`: a full disk, S3 or not), the project scope and
//! authentication (`projects.rs`), then the routes, one file per area
//! (`invoke_route.rs`, `control.rs`, `kv.rs`, `docs.rs`, `objects.rs`,
//! `events.rs`, `realtime.rs`). The auth routes (`gotrue.rs`, GoTrue's
//! protocol and error shape) are apart, under `/auth/v1`. `/metrics` takes the metrics token or the
//! admin's, unless the server makes it public.

mod aws_chunked;
mod control;
mod convert;
mod docs;
mod error;
mod events;
mod gotrue;
mod http_util;
mod invoke_route;
mod kv;
mod objects;
mod projects;
mod realtime;
mod rules;
mod s3;
mod serve;

pub use error::ApiError;
pub use http_util::{JSON_BODY_BUDGET_MIB, JsonBudget};
pub use realtime::Budget as RealtimeBudget;
pub use serve::{BODY_GRACE, ClientAddr, ConnectionLimits, InsideConnection, serve};

use axum::Router;
use axum::routing::{any, delete, get, post, put};
use functions::Functions;
use metering::{Metrics, Recorder};
use std::sync::Arc;

/// Who may read `/metrics`.
#[derive(Debug, Clone)]
pub enum MetricsAccess {
    /// Anyone (`wok up --public-metrics`).
    Public,
    /// The admin token, or this token.
    Token(String),
}

/// What the routes share.
pub struct Gateway {
    pub functions: Arc<Functions>,
    /// Projects and keys (what `auth` does not keep: listings).
    pub projects: Arc<dyn store::ProjectStore>,
    /// Invocation records and logs.
    pub records: Arc<dyn store::RecordStore>,
    pub recorder: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
    /// Key-value stores, with their rules.
    pub kv: Arc<data::KeyValue>,
    /// Document collections, with their rules.
    pub docs: Arc<data::Documents>,
    /// Buckets and objects (S3 and REST).
    pub objects: Arc<::objects::Objects>,
    /// Checks the admin credential and project keys.
    pub auth: Arc<auth::Auth>,
    /// App users, their sessions and access tokens.
    pub accounts: Arc<auth::Accounts>,
    /// Whether a client's address is the last `X-Forwarded-For` entry.
    pub trust_forwarded_for: bool,
    /// The URL clients reach this server at (`--public-url`): the links
    /// in mails point there, never at a `Host` a client sent.
    pub public_url: String,
    /// Topics, change streams, subscriptions and dead letters.
    pub events: Arc<dyn store::EventStore>,
    /// The trigger workers (for replays).
    pub dispatcher: Arc<::events::Dispatcher>,
    /// Live streams followed by realtime clients.
    pub hub: Arc<::events::Hub>,
    /// Largest component upload accepted by deploy.
    pub max_upload_bytes: u64,
    /// MiB of large JSON bodies being read and parsed at once (see
    /// `http_util::read_json_body`).
    pub json_bodies: Arc<http_util::JsonBudget>,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// Room kept on the data directory's disk (see `blob::Reserve`).
    pub disk: Arc<blob::Reserve>,
    /// How many asynchronous requests of one function may wait, and their size.
    pub async_queue: store::events::AsyncQueueLimit,
    /// Bytes all realtime clients may have unread.
    pub realtime_budget: Arc<RealtimeBudget>,
    /// What time it is, for presigned URLs' expiry.
    pub clock: Arc<dyn domain::Clock>,
}

pub type SharedGateway = Arc<Gateway>;

/// Runs blocking work (a large parse) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task panicked")
}

/// Largest body that axum reads whole for a control route, unless the
/// route says otherwise.
const SMALL_BODY_LIMIT: usize = 64 << 10;

/// Most bytes of a refused request body read and thrown away.
const DRAIN_CAP: usize = 64 << 20;

/// Reads and discards a refused request body in the background (bounded).
/// Closing a connection with unread data makes the kernel reset it, and the
/// client would see the reset instead of our 413.
pub(crate) fn drain_in_background(body: axum::body::Body) {
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = body;
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |data| data.len());
            if drained > DRAIN_CAP {
                break;
            }
        }
    });
}

/// The `/v1` routes of one project (the request's `Scope`) plus project and
/// key management, behind authentication.
fn control_router(gateway: SharedGateway) -> Router {
    let project_routes = Router::new()
        .route("/v1/functions", get(control::list_functions))
        .route(
            "/v1/functions/{name}",
            get(control::get_function).delete(control::remove_function),
        )
        .route(
            "/v1/functions/{name}/versions",
            get(control::list_versions).post(control::deploy),
        )
        .route("/v1/functions/{name}/rollback", post(control::rollback))
        .route("/v1/functions/{name}/logs", get(control::logs))
        .route(
            "/v1/functions/{name}/triggers/{trigger}/_replay",
            post(events::replay),
        )
        .route("/v1/triggers", get(events::list_triggers))
        .route("/v1/topics/{topic}/_batch", post(events::publish_batch))
        .route("/v1/topics/{topic}/events", get(events::read_topic))
        .route(
            "/v1/events/dead",
            get(events::dead_letters).delete(events::purge_dead),
        )
        .route("/v1/events/dead/_redrive", post(events::redrive))
        .route("/v1/usage", get(control::usage))
        .route("/v1/invocations", get(control::invocations))
        .route("/v1/invocations/{id}", get(events::async_invocation))
        .route("/v1/kv", get(kv::list_stores))
        .route_layer(axum::middleware::from_fn(projects::require_project_access));
    // Data routes: public keys too, each handler asking `authorize`.
    let data_routes = Router::new()
        .route("/v1/s3/credentials", get(projects::own_s3_credentials))
        .route("/v1/buckets", get(objects::list_buckets))
        .route(
            "/v1/buckets/{bucket}",
            put(objects::create_bucket).delete(objects::delete_bucket),
        )
        .route(
            "/v1/buckets/{bucket}/_access",
            get(objects::get_access).put(objects::set_access),
        )
        .route("/v1/kv/{store}", get(kv::list_keys).delete(kv::drop_store))
        // `_access` is a store's rule, not a key (as `_query` is no
        // document).
        .route(
            "/v1/kv/{store}/_access",
            get(kv::get_access).put(kv::set_access),
        )
        .route(
            "/v1/kv/{store}/{*key}",
            get(kv::get)
                .put(kv::put)
                .delete(kv::delete)
                .post(kv::increment),
        )
        .route("/v1/objects/{bucket}", get(objects::list_objects))
        .route(
            "/v1/objects/{bucket}/{*key}",
            get(objects::get_object)
                .put(objects::put_object)
                .delete(objects::delete_object)
                .post(objects::presign),
        )
        .route(
            "/v1/topics/{topic}",
            post(events::publish).layer(axum::extract::DefaultBodyLimit::max(
                store::events::MAX_EVENT_BYTES,
            )),
        )
        .route("/v1/realtime", get(realtime::realtime))
        .route(
            "/v1/topics/{topic}/_access",
            get(events::get_access).put(events::set_access),
        )
        .route("/v1/rules/_test", post(rules::test))
        .route("/v1/docs", get(docs::list_collections))
        .route("/v1/docs/_batch", post(docs::batch))
        .route(
            "/v1/docs/{collection}",
            get(docs::list_documents)
                .post(docs::create)
                .delete(docs::drop_collection),
        )
        .route("/v1/docs/{collection}/_query", post(docs::query))
        .route("/v1/docs/{collection}/_count", post(docs::count))
        .route("/v1/docs/{collection}/_explain", post(docs::explain))
        .route("/v1/docs/{collection}/_indexes", get(docs::list_indexes))
        .route(
            "/v1/docs/{collection}/_access",
            get(docs::get_access).put(docs::set_access),
        )
        .route(
            "/v1/docs/{collection}/_indexes/{name}",
            put(docs::create_index).delete(docs::drop_index),
        )
        .route(
            "/v1/docs/{collection}/{id}",
            get(docs::get)
                .put(docs::put)
                .patch(docs::patch)
                .delete(docs::delete),
        )
        .route_layer(axum::middleware::from_fn(projects::require_project_member));
    let admin_routes = Router::new()
        .route(
            "/v1/projects",
            get(projects::list_projects).post(projects::create_project),
        )
        .route("/v1/projects/{name}", delete(projects::remove_project))
        .route(
            "/v1/keys",
            get(projects::list_keys).post(projects::create_key),
        )
        .route("/v1/keys/{id}", delete(projects::revoke_key))
        .route("/v1/keys/{id}/s3-secret", post(projects::rotate_s3_secret))
        .route_layer(axum::middleware::from_fn(projects::require_admin));
    project_routes
        .merge(data_routes)
        .merge(admin_routes)
        .fallback(control::not_found)
        // Bodies read whole by axum (settings, rules, names) are small;
        // routes that take more say so, or read their body themselves.
        .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            projects::authenticate,
        ))
        .layer(axum::middleware::map_response(projects::json_errors))
        .with_state(gateway)
}

/// Largest answer of the data API served in process (an object a guest
/// reads, a page of documents).
const LOCAL_ANSWER_LIMIT: usize = 64 << 20;

/// The data API served in process (`invoke::local`), for guests that
/// reach data with their caller's access: the `/v1` routes, behind the
/// project-scope rewrite, with every check they make over HTTP. Never a
/// function's route: a guest cannot call functions through it.
pub fn local_api(gateway: SharedGateway) -> Arc<dyn invoke::LocalApi> {
    Arc::new(LocalData {
        router: control_router(gateway),
    })
}

struct LocalData {
    router: Router,
}

impl invoke::LocalApi for LocalData {
    fn call(&self, request: http::Request<bytes::Bytes>) -> invoke::local::ApiFuture {
        let router = self.router.clone();
        Box::pin(async move {
            let request = projects::scope_from_path(request.map(axum::body::Body::from));
            let response = match tower::ServiceExt::oneshot(router, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (mut parts, body) = response.into_parts();
            match axum::body::to_bytes(body, LOCAL_ANSWER_LIMIT).await {
                Ok(bytes) => http::Response::from_parts(parts, bytes),
                Err(_) => {
                    parts.status = http::StatusCode::PAYLOAD_TOO_LARGE;
                    parts.headers.clear();
                    http::Response::from_parts(parts, bytes::Bytes::new())
                }
            }
        })
    }
}

/// The whole HTTP service: requests signed for S3 go to the S3 endpoint
/// (`s3.rs`); the rest to [`router`], behind the rewrite of project-scoped
/// control paths, which must happen before routing.
pub fn app(gateway: SharedGateway) -> s3::App {
    let s3 = s3::service(gateway.objects.clone(), gateway.auth.clone());
    s3::App {
        disk: gateway.disk.clone(),
        inner: tower::util::MapRequest::new(
            router(gateway),
            projects::scope_from_path as fn(axum::extract::Request) -> axum::extract::Request,
        ),
        s3,
    }
}

pub fn router(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/fn/{name}", any(invoke_route::invoke))
        .route("/fn/{name}/", any(invoke_route::invoke))
        .route("/fn/{name}/{*rest}", any(invoke_route::invoke))
        .route("/p/{project}/fn/{name}", any(invoke_route::invoke))
        .route("/p/{project}/fn/{name}/", any(invoke_route::invoke))
        .route("/p/{project}/fn/{name}/{*rest}", any(invoke_route::invoke))
        .with_state(gateway.clone())
        .merge(
            Router::new()
                .route("/metrics", get(control::metrics))
                .route("/healthz", get(|| async { "ok\n" }))
                .layer(axum::middleware::map_response(projects::json_errors))
                .with_state(gateway.clone()),
        )
        .nest("/auth/v1", gotrue::routes(gateway.clone()))
        .nest("/p/{project}/auth/v1", gotrue::routes(gateway.clone()))
        .merge(control_router(gateway))
        .fallback(control::not_found)
}
