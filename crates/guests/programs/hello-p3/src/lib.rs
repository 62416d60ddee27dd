//! A `wasi:http@0.3` (`service` world) guest: answers `hello from wasi 0.3`.
//! `/count` answers how many requests its instance has served (`1` with a
//! fresh instance per request); `/fail` answers with an error code.
use std::sync::atomic::{AtomicU64, Ordering};
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Hello);

static SERVED: AtomicU64 = AtomicU64::new(0);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
        let body = match request.get_path_with_query().as_deref() {
            Some("/fail") => {
                return Err(ErrorCode::InternalError(Some("asked to fail".to_owned())));
            }
            Some("/count") => format!("{served}"),
            _ => "hello from wasi 0.3\n".to_owned(),
        };
        let (mut body_tx, body_rx) = wit_stream::new();
        let (body_result_tx, body_result_rx) = wit_future::new(|| Ok(None));
        let (response, _future_result) = Response::new(Fields::new(), Some(body_rx), body_result_rx);
        drop(body_result_tx);
        wit_bindgen::spawn_local(async move {
            let remaining = body_tx.write_all(body.into_bytes()).await;
            assert!(remaining.is_empty());
        });
        Ok(response)
    }
}
