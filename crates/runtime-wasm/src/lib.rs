//! Runs WebAssembly components that export a `wasi:http` handler.
//!
//! Layer: runtimes. The only crate that names wasmtime. It implements
//! `invoke::Executor` (validate + precompile at deploy, load at start-up) and
//! `invoke::PreparedFunction` (serve one request). It knows nothing of the
//! store, the gateway or the wire formats: records leave through the
//! invocation's `Meter`, guest output through a `LogSink`.
//!
//! Isolation: by default every request gets a fresh instance from a
//! pre-linked `InstancePre` in the pooling allocator; instance reuse is an
//! opt-in per function and never crosses functions or versions.
//!
//! One `Engine` (pooling allocator, falling back to on-demand allocation
//! where the pool cannot be set up; epoch interruption; the component
//! model's async for p3) and one `Linker` for every function: `wasi:cli`
//! and `wasi:http` in their p2 and p3 versions, `wasi:config` (the
//! function's env), and the project's services: `wasi:keyvalue`
//! (`keyvalue.rs`), `wok:documents`, `wok:objects`, `wok:messaging` and
//! `wok:auth` (`documents.rs`, `objects.rs`, `messaging.rs`, `caller.rs`),
//! each bound from its WIT under `wit/`.
//!
//! Deploy refuses, in words a user can act on: an empty upload, bytes
//! that are not wasm, a core module, an invalid component, one that
//! exports no `wasi:http` handler, and an import wok does not provide
//! (named by wasmtime's `instantiate_pre`). Loading a precompiled artifact
//! repeats the export and import checks.
//!
//! Time: an epoch ticker thread advances the engine's epoch every
//! `EPOCH_TICK` (2 ms) while a guest runs, and fires the `watchdog.rs`
//! deadlines; it sleeps while no invocation or instantiation holds one,
//! and is stopped and joined on drop. Instances: a semaphore sized to the
//! pool (`max_instances`) makes a request wait for a free slot, up to its
//! deadline, instead of failing.

mod caller;
mod documents;
mod host;
mod instance;
mod keyvalue;
mod messaging;
mod objects;
mod watchdog;

use domain::{FunctionConfig, HttpWorld, Runtime, RuntimeKind};
use host::{HostState, OutputTarget};
use instance::{FunctionInner, Pre};
use invoke::{Compiled, DeployError, Executor, LoadSpec, Loaded, LogSink, RuntimeMetrics};

/// Why a component cannot be deployed, in this runtime's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("the upload is empty")]
    Empty,
    #[error("the upload is not a WebAssembly binary (it does not start with \\0asm)")]
    NotWasm,
    #[error(
        "the upload is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("the upload is not a valid component: {0}")]
    Invalid(String),
    #[error(
        "the component does not export a wasi:http handler (wasi:http/incoming-handler@0.2 or wasi:http/handler@0.3); it exports: {0}"
    )]
    NoHandler(String),
    #[error("the component imports something wok does not provide: {0}")]
    UnsatisfiedImport(String),
}

impl From<Refusal> for DeployError {
    fn from(refusal: Refusal) -> Self {
        DeployError::new(refusal.to_string())
    }
}
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances while a guest runs: the granularity of
/// timeouts and of the time slices after which a running guest yields to
/// other work (2 ms: a short request waits a few ms behind busy guests;
/// each yield costs microseconds).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Settings of the wasm runtime.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Use the pooling allocator (fast instantiation, reserved address space).
    pub pooling: bool,
    /// Instances that can exist at once when pooling.
    pub max_instances: u32,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
        }
    }
}

pub struct WasmRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    log_sink: Arc<dyn LogSink>,
    metrics: Arc<dyn RuntimeMetrics>,
    watchdog: Arc<watchdog::Watchdog>,
    /// One permit per instance the allocator can hold: a request waits for
    /// a slot instead of failing when the pool is full.
    slots: Arc<tokio::sync::Semaphore>,
    _ticker: EpochTicker,
}

fn engine_config(settings: &WasmConfig, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        let instances = settings.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_memories_per_module(2)
            .max_tables_per_module(8)
            .table_elements(100_000)
            .max_core_instance_size(4 << 20)
            .max_memory_size(4 << 30)
            // Keeping the first pages resident and scanning the page map to
            // reset only dirty pages measured fastest here.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl WasmRuntime {
    pub fn new(
        settings: WasmConfig,
        log_sink: Arc<dyn LogSink>,
        metrics: Arc<dyn RuntimeMetrics>,
    ) -> anyhow::Result<Self> {
        let engine = match Engine::new(&engine_config(&settings, settings.pooling)) {
            Ok(engine) => engine,
            Err(error) if settings.pooling => {
                tracing::warn!(
                    "pooling allocator unavailable ({error:#}); allocating instances on demand"
                );
                Engine::new(&engine_config(&settings, false)).map_err(host_error)?
            }
            Err(error) => return Err(host_error(error)),
        };
        let mut linker = Linker::<HostState>::new(&engine);
        // Real guests import the whole wasi:cli set, not only the proxy world;
        // the WasiCtx of each store keeps those capabilities closed.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(host_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(host_error)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(host_error)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(host_error)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, |state: &mut HostState| {
            wasmtime_wasi_config::WasiConfig::new(&state.config_vars)
        })
        .map_err(host_error)?;
        keyvalue::add_to_linker(&mut linker).map_err(host_error)?;
        documents::add_to_linker(&mut linker).map_err(host_error)?;
        messaging::add_to_linker(&mut linker).map_err(host_error)?;
        objects::add_to_linker(&mut linker).map_err(host_error)?;
        caller::add_to_linker(&mut linker).map_err(host_error)?;
        let watchdog = Arc::new(watchdog::Watchdog::default());
        let ticker = EpochTicker::start(engine.clone(), watchdog.clone());
        Ok(Self {
            slots: Arc::new(tokio::sync::Semaphore::new(
                settings.max_instances.max(1) as usize
            )),
            watchdog,
            engine,
            linker: Arc::new(linker),
            log_sink,
            metrics,
            _ticker: ticker,
        })
    }

    fn world_of(&self, component: &Component) -> Result<HttpWorld, Refusal> {
        let mut names = Vec::new();
        for (name, _) in component.component_type().exports(&self.engine) {
            if name.starts_with("wasi:http/incoming-handler@0.2.") {
                return Ok(HttpWorld::P2);
            }
            if name.starts_with("wasi:http/handler@0.3.") {
                return Ok(HttpWorld::P3);
            }
            names.push(name.to_owned());
        }
        let exports = if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(", ")
        };
        Err(Refusal::NoHandler(exports))
    }

    fn pre(&self, component: &Component, world: HttpWorld) -> Result<Pre, Refusal> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|error| Refusal::UnsatisfiedImport(format!("{error:#}")))?;
        match world {
            HttpWorld::P2 => wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre)
                .map(Pre::P2)
                .map_err(|error| Refusal::NoHandler(format!("{error:#}"))),
            HttpWorld::P3 => wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre)
                .map(Pre::P3)
                .map_err(|error| Refusal::NoHandler(format!("{error:#}"))),
        }
    }
}

impl Executor for WasmRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Wasm
    }

    fn engine_key(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("wasmtime48-{:016x}", hasher.finish())
    }

    fn compile(&self, code: &[u8], _config: &FunctionConfig) -> Result<Compiled, DeployError> {
        if code.is_empty() {
            return Err(Refusal::Empty.into());
        }
        if code.len() < 8 || &code[..4] != b"\0asm" {
            return Err(Refusal::NotWasm.into());
        }
        match code[4..8] {
            [1, 0, 0, 0] => return Err(Refusal::CoreModule.into()),
            [0x0d, 0, 1, 0] => {}
            _ => {
                return Err(
                    Refusal::Invalid("unknown WebAssembly binary version".to_owned()).into(),
                );
            }
        }
        let component = Component::new(&self.engine, code)
            .map_err(|error| Refusal::Invalid(format!("{error:#}")))?;
        let world = self.world_of(&component)?;
        self.pre(&component, world)?;
        let precompiled = component
            .serialize()
            .map_err(|error| Refusal::Invalid(format!("{error:#}")))?;
        Ok(Compiled {
            runtime: Runtime::Wasm(world),
            precompiled,
        })
    }

    fn load(&self, spec: LoadSpec) -> Result<Loaded, String> {
        // SAFETY: the file was written by `compile` through `Component::serialize`
        // with this engine's settings (its name carries `engine_key`), and it
        // lives in wok's own data directory, which guests and users cannot
        // write. wasmtime additionally checks its header and compatibility hash.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(&self.engine, &spec.precompiled) }
            .map_err(|error| format!("{error:#}"))?;
        let world = self
            .world_of(&component)
            .map_err(|error| error.to_string())?;
        let pre = self
            .pre(&component, world)
            .map_err(|error| error.to_string())?;
        let target = Arc::new(OutputTarget {
            sink: self.log_sink.clone(),
            project: spec.project.clone(),
            function: spec.function.clone(),
        });
        let inner = FunctionInner::new(
            self.engine.clone(),
            pre,
            spec,
            target,
            self.metrics.clone(),
            self.watchdog.clone(),
            self.slots.clone(),
        );
        Ok(Loaded {
            prepared: Arc::new(instance::WasmFunction(Arc::new(inner))),
            runtime: Runtime::Wasm(world),
        })
    }
}

fn host_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own;
/// stopped and joined on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, watchdog: Arc<watchdog::Watchdog>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("wok-epoch".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    watchdog.set_ticker();
                    while !stop.load(Ordering::Relaxed) {
                        // Nothing runs: nothing to slice or time out. A
                        // registration wakes the thread (`park` keeps an
                        // unpark that came first); drop wakes it to stop.
                        if watchdog.is_idle() {
                            std::thread::park();
                            continue;
                        }
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                        watchdog.fire_expired(std::time::Instant::now());
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
