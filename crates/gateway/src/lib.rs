//! The HTTP front: function routes (`/fn/NAME/...`), the control API
//! (`/v1/...`), `/metrics` and `/healthz`.
//!
//! Layer: front. The only crate that picks status codes and error codes (see
//! `error.rs`, one table). Reaches runtimes only through `invoke` traits via
//! the `functions` registry; knows nothing of wasmtime.

mod control;
mod convert;
mod error;
mod invoke_route;

pub use error::ApiError;

use axum::Router;
use axum::routing::{any, get, post};
use functions::Functions;
use metering::{Metrics, Recorder};
use std::sync::Arc;
use store::MetaStore;

/// What the routes share.
pub struct Gateway {
    pub functions: Arc<Functions>,
    pub store: Arc<dyn MetaStore>,
    pub recorder: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
    /// The admin credential the control API requires.
    pub admin_token: String,
    /// Largest component upload accepted by deploy.
    pub max_upload_bytes: u64,
}

pub type SharedGateway = Arc<Gateway>;

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

pub fn router(gateway: SharedGateway) -> Router {
    let control = Router::new()
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
        .route("/v1/usage", get(control::usage))
        .route("/v1/invocations", get(control::invocations))
        .fallback(control::not_found)
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            control::require_admin,
        ));
    Router::new()
        .route("/fn/{name}", any(invoke_route::invoke))
        .route("/fn/{name}/", any(invoke_route::invoke))
        .route("/fn/{name}/{*rest}", any(invoke_route::invoke))
        .route("/metrics", get(control::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(control)
        .fallback(control::not_found)
        .with_state(gateway)
}
