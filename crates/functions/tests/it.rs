//! `Functions` over the real SQLite store and file blobs, with a runtime
//! that needs no compiler: what the registry promises whoever calls it.
use blob::{ArtifactStore, FileBlobs, Layout};
use domain::{
    FunctionConfig, FunctionName, HttpWorld, InvocationRecord, ProjectId, Runtime, RuntimeKind,
};
use functions::{Functions, GuestServices};
use invoke::{
    Body, Compiled, DeployError, Executor, Failure, Invocation, LoadSpec, Loaded, PreparedFunction,
    RecordSink,
};
use std::sync::Arc;
use store::Stores;
use store_sqlite::SqliteStore;

/// Takes any bytes; a function answers them back.
struct Echoes;

impl Executor for Echoes {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Wasm
    }
    fn engine_key(&self) -> String {
        "echoes".to_owned()
    }
    fn compile(&self, code: &[u8], _config: &FunctionConfig) -> Result<Compiled, DeployError> {
        Ok(Compiled {
            runtime: Runtime::Wasm(HttpWorld::P2),
            precompiled: code.to_vec(),
        })
    }
    fn load(&self, spec: LoadSpec) -> Result<Loaded, String> {
        let code = std::fs::read(&spec.precompiled).map_err(|error| error.to_string())?;
        Ok(Loaded {
            prepared: Arc::new(Echo(code)),
            runtime: Runtime::Wasm(HttpWorld::P2),
        })
    }
}

struct Echo(Vec<u8>);

impl PreparedFunction for Echo {
    fn invoke(
        &self,
        _invocation: Invocation,
    ) -> futures::future::BoxFuture<'static, Result<http::Response<Body>, Failure>> {
        let code = self.0.clone();
        Box::pin(async move { Ok(http::Response::new(invoke::full_body(code))) })
    }
}

struct NoRecords;

impl RecordSink for NoRecords {
    fn record(&self, _record: InvocationRecord) {}
}

async fn functions(dir: &std::path::Path) -> (Arc<Functions>, Stores) {
    let stores = Stores::of(Arc::new(SqliteStore::open(&dir.join("wok.db")).unwrap()));
    let files = |name: &str| {
        FileBlobs::open(&dir.join(name), Layout::Flat, &dir.join("tmp").join(name)).unwrap()
    };
    let objects = objects::Objects::open(stores.objects.clone(), Arc::new(files("objects")), false)
        .await
        .unwrap();
    let services = GuestServices {
        kv: Arc::new(data::KeyValue::new(
            stores.kv.clone(),
            Arc::new(domain::SystemClock),
        )),
        docs: Arc::new(data::Documents::new(stores.docs.clone())),
        objects,
        events: stores.events.clone(),
        local_api: Default::default(),
    };
    let functions = Functions::new(
        stores.functions.clone(),
        services,
        ArtifactStore::new(Arc::new(files("artifacts")), files("compiled")),
        vec![Arc::new(Echoes)],
        Arc::new(NoRecords),
    );
    (functions, stores)
}

/// Polls a call once, so that it has begun, then drops it, as a request
/// handler is dropped when its client goes.
fn begin_then_drop(call: impl std::future::Future) {
    let call = std::pin::pin!(call);
    let _ = call.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_removal_or_rollback_whose_caller_left_ends_with_store_and_registry_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let (functions, stores) = functions(dir.path()).await;
    let project = ProjectId::default_project();
    let (kept, gone) = (
        FunctionName::new("kept").unwrap(),
        FunctionName::new("gone").unwrap(),
    );
    for (name, code) in [(&kept, "v1"), (&kept, "v2"), (&gone, "v1")] {
        let code = code.as_bytes().to_vec();
        functions
            .deploy(
                project.clone(),
                name.clone(),
                RuntimeKind::Wasm,
                code,
                FunctionConfig::default(),
            )
            .await
            .unwrap();
    }

    begin_then_drop(functions.remove(project.clone(), gone.clone()));
    begin_then_drop(functions.rollback(project.clone(), kept.clone(), 1));

    eventually("the removed function left the registry", || {
        functions.get(&project, &gone).is_none()
    })
    .await;
    eventually("the rollback reached the registry", || {
        functions
            .get(&project, &kept)
            .is_some_and(|live| live.version.version == 1)
    })
    .await;
    let stored = stores.functions.list(&project).await.unwrap();
    let stored: Vec<(String, u32)> = stored
        .iter()
        .map(|version| (version.function.to_string(), version.version))
        .collect();
    assert_eq!(stored, vec![("kept".to_owned(), 1)]);
}
