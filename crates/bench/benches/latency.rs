//! In-process latency of the wasm runtime, no network: from handing a
//! request to `PreparedFunction::invoke` to the response head, and to the
//! last body byte, for the hello guest with a fresh instance and with reuse.
//!
//! `cargo bench -p bench --bench latency`
use domain::{
    FunctionConfig, FunctionName, InvocationRecord, Isolation, LogLine, ProjectId, ReuseLimits,
};
use http_body_util::BodyExt;
use invoke::ServiceFuture;
use invoke::{Executor, Invocation, LoadSpec, Meter, MeterInit, RecordSink, RuntimeMetrics};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Discard;
impl RecordSink for Discard {
    fn record(&self, _record: InvocationRecord) {}
}
impl invoke::LogSink for Discard {
    fn log(&self, _line: LogLine) {}
}
impl invoke::GuestKeyValue for Discard {
    fn open(&self, _store: &str) -> Result<(), invoke::GuestKvError> {
        Ok(())
    }
    fn get<'a>(
        &'a self,
        _store: &'a str,
        _key: &'a str,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, invoke::GuestKvError> {
        Box::pin(async { Ok(None) })
    }
    fn set<'a>(
        &'a self,
        _store: &'a str,
        _key: &'a str,
        _value: Vec<u8>,
    ) -> ServiceFuture<'a, (), invoke::GuestKvError> {
        Box::pin(async { Ok(()) })
    }
    fn delete<'a>(
        &'a self,
        _store: &'a str,
        _key: &'a str,
    ) -> ServiceFuture<'a, (), invoke::GuestKvError> {
        Box::pin(async { Ok(()) })
    }
    fn list<'a>(
        &'a self,
        _store: &'a str,
        _after: Option<&'a str>,
    ) -> ServiceFuture<'a, invoke::GuestKeyPage, invoke::GuestKvError> {
        Box::pin(async {
            Ok(invoke::GuestKeyPage {
                keys: Vec::new(),
                next: None,
            })
        })
    }
    fn increment<'a>(
        &'a self,
        _store: &'a str,
        _key: &'a str,
        delta: i64,
    ) -> ServiceFuture<'a, i64, invoke::GuestKvError> {
        Box::pin(async move { Ok(delta) })
    }
}

impl invoke::GuestDocuments for Discard {
    fn get<'a>(
        &'a self,
        _collection: &'a str,
        _id: &'a str,
    ) -> ServiceFuture<'a, Option<invoke::GuestDocument>, invoke::GuestDocError> {
        Box::pin(async { Ok(None) })
    }
    fn write<'a>(
        &'a self,
        _writes: Vec<invoke::GuestDocWrite>,
    ) -> ServiceFuture<'a, Vec<invoke::GuestDocWritten>, invoke::GuestDocError> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn query<'a>(
        &'a self,
        _collection: &'a str,
        _query: &'a str,
    ) -> ServiceFuture<'a, invoke::GuestDocPage, invoke::GuestDocError> {
        Box::pin(async {
            Ok(invoke::GuestDocPage {
                documents: Vec::new(),
                next_cursor: None,
            })
        })
    }
    fn count<'a>(
        &'a self,
        _collection: &'a str,
        _query: &'a str,
    ) -> ServiceFuture<'a, u64, invoke::GuestDocError> {
        Box::pin(async { Ok(0) })
    }
}
impl invoke::GuestObjects for Discard {
    fn read<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _range: Option<(u64, u64)>,
    ) -> invoke::ServiceFuture<'a, Option<Vec<u8>>, invoke::GuestObjectError> {
        Box::pin(async { Ok(None) })
    }
    fn head<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
    ) -> invoke::ServiceFuture<'a, Option<invoke::GuestObjectInfo>, invoke::GuestObjectError> {
        Box::pin(async { Ok(None) })
    }
    fn write<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _data: Vec<u8>,
        _content_type: Option<String>,
    ) -> invoke::ServiceFuture<'a, invoke::GuestObjectInfo, invoke::GuestObjectError> {
        Box::pin(async { Err(invoke::GuestObjectError::Other("discarded".to_owned())) })
    }
    fn delete<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
    ) -> invoke::ServiceFuture<'a, bool, invoke::GuestObjectError> {
        Box::pin(async { Ok(false) })
    }
    fn list<'a>(
        &'a self,
        _bucket: &'a str,
        _prefix: &'a str,
        _delimiter: Option<&'a str>,
        _cursor: Option<&'a str>,
        _limit: u32,
    ) -> invoke::ServiceFuture<'a, invoke::GuestObjectPage, invoke::GuestObjectError> {
        Box::pin(async {
            Ok(invoke::GuestObjectPage {
                objects: Vec::new(),
                common_prefixes: Vec::new(),
                next_cursor: None,
            })
        })
    }
}
impl invoke::GuestMessaging for Discard {
    fn publish<'a>(
        &'a self,
        _topic: &'a str,
        _messages: Vec<invoke::GuestMessage>,
    ) -> invoke::ServiceFuture<'a, Vec<String>, invoke::GuestMessagingError> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

impl RuntimeMetrics for Discard {
    fn instantiated(&self, _project: &ProjectId, _function: &FunctionName, _seconds: f64) {}
    fn instances_in_flight(&self, _delta: i64) {}
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(label: &str, function: &Arc<dyn invoke::PreparedFunction>, iterations: usize) {
    let sink: Arc<dyn RecordSink> = Arc::new(Discard);
    let (mut head, mut whole) = (
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
    );
    for i in 0..iterations + 1000 {
        let meter = Arc::new(Meter::new(
            MeterInit {
                id: domain::InvocationId(i.to_string()),
                project: ProjectId::default_project(),
                function: FunctionName::new("hello").unwrap(),
                version: 1,
                trigger: "http",
                memory_mib: 128,
                caller: Default::default(),
            },
            None,
            sink.clone(),
        ));
        let request = http::Request::builder()
            .uri("http://localhost/")
            .body(invoke::empty_body())
            .unwrap();
        let started = Instant::now();
        let response = function
            .invoke(Invocation {
                id: domain::InvocationId(i.to_string()),
                request,
                meter,
            })
            .await
            .expect("hello answers");
        let first = started.elapsed();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let last = started.elapsed();
        assert_eq!(&body[..], b"hello from wok\n");
        if i >= 1000 {
            head.push(first);
            whole.push(last);
        }
    }
    head.sort();
    whole.sort();
    println!(
        "{label:<28} head p50 {:>7.1?} p99 {:>7.1?} | whole p50 {:>7.1?} p99 {:>7.1?}",
        percentile(&head, 0.5),
        percentile(&head, 0.99),
        percentile(&whole, 0.5),
        percentile(&whole, 0.99)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let discard = Arc::new(Discard);
        let wasm = runtime_wasm::WasmRuntime::new(
            runtime_wasm::WasmConfig::default(),
            discard.clone(),
            discard,
        )
        .expect("engine");
        let code = guests::bytes(guests::HELLO);
        let compiled = wasm
            .compile(&code, &domain::FunctionConfig::default())
            .expect("hello compiles");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.cwasm");
        std::fs::write(&path, &compiled.precompiled).unwrap();
        let load = |isolation| {
            wasm.load(LoadSpec {
                project: ProjectId::default_project(),
                function: FunctionName::new("hello").unwrap(),
                config: FunctionConfig {
                    isolation,
                    ..FunctionConfig::default()
                },
                precompiled: path.clone(),
                key_value: Arc::new(Discard),
                documents: Arc::new(Discard),
                objects: Arc::new(Discard),
                messaging: Arc::new(Discard),
            })
            .unwrap()
            .prepared
        };
        let iterations = 20_000;
        measure("hello, fresh instance", &load(Isolation::Fresh), iterations).await;
        let reuse = ReuseLimits {
            max_requests: u32::MAX,
            max_concurrent: 1,
            idle_timeout: Duration::from_secs(60),
        };
        measure(
            "hello, instance reuse",
            &load(Isolation::Reuse(reuse)),
            iterations,
        )
        .await;
    });
}
