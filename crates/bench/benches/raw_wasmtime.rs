//! The floor under wok's function path: wasmtime alone, in-process, doing
//! what serving one request to the hello guest takes (new store, instantiate
//! from an `InstancePre` in the pooling allocator, `handle`, collect the
//! body, drop the store), with none of wok around it. It is the work
//! `wasmtime serve` also does per request, and no server built on wasmtime
//! 48 can do less; `bench/run.sh` feeds the figure to `hyper-hello --spin`
//! to find what a server doing this much work per request can reach.
//!
//! `cargo bench -p bench --bench raw_wasmtime` (prints the p50 in µs last).
//!
//! `… --bench raw_wasmtime -- --serve ADDRESS` serves that same work over
//! HTTP with hyper and nothing else (no limits, records, logs or routing):
//! the most a server built on wasmtime 48 can answer for the hello guest
//! with a fresh instance per request on this machine. `bench/run.sh` runs it
//! side by side with wok and `wasmtime serve`.
//!
//! This dev-only benchmark is the one place besides `runtime-wasm` that
//! names wasmtime: it measures wasmtime itself.
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

struct State {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

fn engine() -> Engine {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(100)
        .total_memories(200)
        .total_tables(400)
        .total_stacks(100)
        .total_core_instances(400)
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).expect("engine")
}

fn new_store(engine: &Engine) -> Store<State> {
    Store::new(
        engine,
        State {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
        },
    )
}

/// One request through `proxy`; the response with its body collected.
async fn handle<B>(
    store: &mut Store<State>,
    proxy: &Proxy,
    request: http::Request<B>,
) -> http::Response<bytes::Bytes>
where
    B: http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
{
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .unwrap();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .unwrap();
    // The hello guest writes its whole body within the call.
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, outparam)
        .await
        .expect("handle");
    let (parts, body) = receiver.await.unwrap().unwrap().into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

/// One request through a fresh instance, dropped afterwards.
async fn serve_one<B>(
    pre: &ProxyPre<State>,
    engine: &Engine,
    request: http::Request<B>,
) -> http::Response<bytes::Bytes>
where
    B: http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
{
    let mut store = new_store(engine);
    let proxy = pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let response = handle(&mut store, &proxy, request).await;
    drop(store);
    response
}

async fn serve(address: String, pre: ProxyPre<State>, engine: Engine) {
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .expect("binding");
    println!(
        "raw wasmtime server listening on http://{}",
        listener.local_addr().unwrap()
    );
    let shared = std::sync::Arc::new((pre, engine));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let request = request.map(|body| {
                            body.map_err(|error| {
                                wasmtime_wasi_http::Error::InternalError(Some(error.to_string()))
                            })
                        });
                        let response = serve_one(&shared.0, &shared.1, request).await;
                        Ok::<_, std::convert::Infallible>(response.map(http_body_util::Full::new))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn empty_request() -> http::Request<
    impl http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
> {
    http::Request::builder()
        .uri("http://localhost/")
        .body(
            http_body_util::Empty::<bytes::Bytes>::new()
                .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        )
        .unwrap()
}

/// p50 and p99 of `iterations` runs of `run`, after 1,000 to warm up.
async fn measure<F: AsyncFnMut()>(iterations: usize, mut run: F) -> (Duration, Duration) {
    let mut times: Vec<Duration> = Vec::with_capacity(iterations);
    for i in 0..iterations + 1000 {
        let started = Instant::now();
        run().await;
        if i >= 1000 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let serve_at = match (args.next().as_deref(), args.next()) {
        (Some("--serve"), Some(address)) => Some(address),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = engine();
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
        let component = Component::new(&engine, guests::bytes(guests::HELLO)).unwrap();
        let pre = ProxyPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        if let Some(address) = serve_at {
            return serve(address, pre, engine).await;
        }
        let (fresh_p50, fresh_p99) = measure(20_000, async || {
            let response = serve_one(&pre, &engine, empty_request()).await;
            assert_eq!(&response.body()[..], b"hello from wok\n");
        })
        .await;
        let mut store = new_store(&engine);
        let proxy = pre.instantiate_async(&mut store).await.unwrap();
        let (reuse_p50, reuse_p99) = measure(20_000, async || {
            let response = handle(&mut store, &proxy, empty_request()).await;
            assert_eq!(&response.body()[..], b"hello from wok\n");
        })
        .await;
        println!("raw wasmtime, fresh instance:  p50 {fresh_p50:>7.1?} p99 {fresh_p99:>7.1?}");
        println!("raw wasmtime, reused instance: p50 {reuse_p50:>7.1?} p99 {reuse_p99:>7.1?}");
        println!("{}", fresh_p50.as_micros());
    });
}
