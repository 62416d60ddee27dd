//! Function lifecycle: deploy, rollback, remove, the registry of live
//! versions, and [`Functions::invoke`], the one path every call of a
//! function takes (HTTP requests, trigger deliveries, asynchronous
//! invocations): the live version, its admission, the meter its record
//! comes from, and the executor of its runtime kind.
//!
//! Layer: functions. Rules over the contracts (`store`, `blob`), the data
//! services the guests get, and the runtimes, reached only through
//! `invoke::Executor` (one per `RuntimeKind`). Knows no wire format and no
//! wasmtime.
//!
//! Invariant: the registry switches a function to a new version in one step
//! (an `Arc` swap under a write lock), after the version is compiled, loaded
//! and stored; a failed deploy leaves the previous version serving.

mod guest_caller;
mod guest_docs;
mod guest_kv;
mod guest_messaging;
mod guest_objects;
use blob::ArtifactStore;
use domain::{FunctionConfig, FunctionName, InvocationId, ProjectId, RuntimeKind, SpecError};
use invoke::{
    Admission, AdmissionError, Body, DeployError, Executor, Failure, Invocation, LoadSpec, Loaded,
    Meter, MeterInit, PreparedFunction, RecordSink,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use store::{FunctionStore, FunctionVersion, NewVersion, StoreError};

/// A live function version: what a request to it runs.
pub struct Deployed {
    pub version: FunctionVersion,
    pub prepared: Arc<dyn PreparedFunction>,
    pub admission: Admission,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionsError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error("function {0:?} does not exist")]
    NoSuchFunction(String),
    #[error("function {function:?} has no version {version}")]
    NoSuchVersion { function: String, version: u32 },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    DiskFull(String),
    #[error("loading the compiled function failed: {0}")]
    Load(String),
    /// A function other live functions run on (their `base`).
    #[error("function {function:?} is the base of {users}: deploy those without it first")]
    InUse { function: String, users: String },
}

impl From<StoreError> for FunctionsError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSuchFunction(function) => FunctionsError::NoSuchFunction(function),
            StoreError::NoSuchVersion { function, version } => {
                FunctionsError::NoSuchVersion { function, version }
            }
            error @ StoreError::DiskFull(_) => FunctionsError::DiskFull(error.to_string()),
            other => FunctionsError::Storage(other.to_string()),
        }
    }
}

impl From<blob::BlobError> for FunctionsError {
    fn from(error: blob::BlobError) -> Self {
        match error {
            error @ blob::BlobError::DiskFull { .. } => FunctionsError::DiskFull(error.to_string()),
            error => FunctionsError::Storage(error.to_string()),
        }
    }
}

type Key = (ProjectId, FunctionName);

/// The running upkeep task; stop it before shutting down.
pub struct Maintenance {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Maintenance {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The services a function's guests are given, each bound to its project
/// when a version is loaded.
pub struct GuestServices {
    pub kv: Arc<data::KeyValue>,
    pub docs: Arc<data::Documents>,
    pub objects: Arc<objects::Objects>,
    pub events: Arc<dyn store::EventStore>,
    /// The data API in process, for guests acting with their caller's
    /// access (set once the gateway exists).
    pub local_api: Arc<invoke::LocalApiSlot>,
}

/// A call's answer: the invocation's id and the response, whose body
/// streams (the record is written once it has ended).
pub struct Invoked {
    pub id: InvocationId,
    pub response: http::Response<Body>,
}

/// Why a call did not reach the function's code, or failed there before
/// answering.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function {0:?} does not exist")]
    NoSuchFunction(String),
    #[error("function {function:?} is at capacity: {error}; retry later")]
    AtCapacity {
        function: String,
        error: AdmissionError,
    },
    /// The guest failed (trapped, timed out, ran out of memory...) before
    /// its response head: an outcome of the guest, not of wok. The
    /// invocation has its id and its record all the same.
    #[error("{}: {}", .failure.outcome.code(), .failure.message)]
    Failed { id: InvocationId, failure: Failure },
}

pub struct Functions {
    store: Arc<dyn FunctionStore>,
    services: GuestServices,
    artifacts: ArtifactStore,
    /// One per runtime kind.
    executors: HashMap<RuntimeKind, Arc<dyn Executor>>,
    /// Where invocation records go.
    records: Arc<dyn RecordSink>,
    live: RwLock<HashMap<Key, Arc<Deployed>>>,
    /// Serialises the store-then-registry step of deploys, rollbacks and
    /// removals so the registry always ends on the store's current version.
    switch: tokio::sync::Mutex<()>,
    /// Bumped whenever the registry changes.
    changes: tokio::sync::watch::Sender<u64>,
}

/// Runs a change of the live versions in a task of its own, to its end:
/// a caller that stops waiting (a client that goes) must not leave the
/// store on one version and the registry on another.
async fn to_the_end<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, FunctionsError>> + Send + 'static,
) -> Result<T, FunctionsError> {
    match tokio::spawn(change).await {
        Ok(result) => result,
        Err(error) => Err(FunctionsError::Storage(format!(
            "a change of versions failed: {error}"
        ))),
    }
}

fn cannot_load(version: &FunctionVersion, error: &FunctionsError) {
    tracing::error!(
        "function {}/{} version {} cannot be loaded: {error}",
        version.project,
        version.function,
        version.version
    );
}

/// Runs blocking work (SQLite, files, compilation) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task panicked")
}

impl Functions {
    pub fn new(
        store: Arc<dyn FunctionStore>,
        services: GuestServices,
        artifacts: ArtifactStore,
        executors: Vec<Arc<dyn Executor>>,
        records: Arc<dyn RecordSink>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            services,
            artifacts,
            executors: executors
                .into_iter()
                .map(|executor| (executor.kind(), executor))
                .collect(),
            records,
            live: RwLock::new(HashMap::new()),
            switch: Default::default(),
            changes: tokio::sync::watch::channel(0).0,
        })
    }

    /// The live version of a function, if any. The request hot path.
    pub fn get(&self, project: &ProjectId, function: &FunctionName) -> Option<Arc<Deployed>> {
        let live = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.get(&(project.clone(), function.clone())).cloned()
    }

    /// Every live version.
    pub fn live(&self) -> Vec<Arc<Deployed>> {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Changes each time a function is deployed, rolled back or removed.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn live_count(&self) -> usize {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    fn install(
        &self,
        version: FunctionVersion,
        prepared: Arc<dyn PreparedFunction>,
    ) -> Arc<Deployed> {
        let limits = &version.config.limits;
        let deployed = Arc::new(Deployed {
            admission: Admission::new(limits.max_concurrency, limits.max_queue),
            version,
            prepared,
        });
        let key = (
            deployed.version.project.clone(),
            deployed.version.function.clone(),
        );
        self.live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, deployed.clone());
        self.changed();
        deployed
    }

    /// The executor of a runtime kind.
    fn executor(&self, kind: RuntimeKind) -> Result<Arc<dyn Executor>, FunctionsError> {
        self.executors.get(&kind).cloned().ok_or_else(|| {
            FunctionsError::Deploy(DeployError::new(format!(
                "this server runs no {} functions",
                kind.as_str()
            )))
        })
    }

    /// Calls the live version of a function: the one path of every call
    /// (HTTP, triggers, asynchronous invocations). Waits for a slot within
    /// the function's concurrency and queue, meters the call (the record
    /// names `trigger` and is written once the response body has ended),
    /// and runs it on the executor of the version's runtime.
    pub async fn invoke(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        request: http::Request<Body>,
        trigger: &'static str,
    ) -> Result<Invoked, InvokeError> {
        let deployed = self
            .get(project, function)
            .ok_or_else(|| InvokeError::NoSuchFunction(function.to_string()))?;
        let permit = deployed
            .admission
            .admit()
            .await
            .map_err(|error| InvokeError::AtCapacity {
                function: function.to_string(),
                error,
            })?;
        let id = InvocationId(uuid::Uuid::now_v7().simple().to_string());
        let meter = Arc::new(Meter::new(
            MeterInit {
                id: id.clone(),
                project: project.clone(),
                function: function.clone(),
                version: deployed.version.version,
                trigger,
                memory_mib: deployed.version.config.limits.memory_mib(),
                // Set by the gateway (or kept by the queue) after every
                // client-sent `x-wok-*` header was removed.
                caller: invoke::CallerIdentity::from_headers(request.headers()),
            },
            Some(permit),
            self.records.clone(),
        ));
        let invocation = Invocation {
            id: id.clone(),
            request,
            meter,
        };
        match deployed.prepared.invoke(invocation).await {
            Ok(response) => Ok(Invoked { id, response }),
            Err(failure) => Err(InvokeError::Failed { id, failure }),
        }
    }

    /// What the runtime needs to load a version: its precompiled code and
    /// the project's services, bound to it.
    fn load_spec(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        config: &FunctionConfig,
        precompiled: std::path::PathBuf,
    ) -> LoadSpec {
        if config.data_access == domain::DataAccess::Caller {
            let caller = Arc::new(guest_caller::CallerServices {
                project: project.clone(),
                api: self.services.local_api.clone(),
            });
            return LoadSpec {
                project: project.clone(),
                function: function.clone(),
                config: config.clone(),
                precompiled,
                key_value: caller.clone(),
                documents: caller.clone(),
                objects: caller.clone(),
                messaging: caller,
            };
        }
        LoadSpec {
            project: project.clone(),
            function: function.clone(),
            config: config.clone(),
            precompiled,
            key_value: Arc::new(guest_kv::ProjectKeyValue {
                project: project.clone(),
                kv: self.services.kv.clone(),
            }),
            documents: Arc::new(guest_docs::ProjectDocuments {
                project: project.clone(),
                function: function.clone(),
                docs: self.services.docs.clone(),
            }),
            objects: Arc::new(guest_objects::ProjectObjects {
                project: project.clone(),
                function: function.clone(),
                objects: self.services.objects.clone(),
            }),
            messaging: Arc::new(guest_messaging::ProjectMessaging {
                project: project.clone(),
                function: function.clone(),
                events: self.services.events.clone(),
            }),
        }
    }

    /// Loads a version from its precompiled form in the node-local cache:
    /// `None` when there is none for this engine, or it is unusable (then
    /// the caller compiles again). Blocking: a look at a file, then the
    /// runtime maps and checks it.
    fn load_precompiled(
        &self,
        executor: &Arc<dyn Executor>,
        artifact: &str,
        project: &ProjectId,
        function: &FunctionName,
        config: &FunctionConfig,
    ) -> Result<Option<Loaded>, FunctionsError> {
        let Some(compiled) = self.artifacts.compiled(artifact, &executor.engine_key())? else {
            return Ok(None);
        };
        let spec = self.load_spec(project, function, config, compiled.clone());
        Ok(match executor.load(spec) {
            Ok(loaded) => Some(loaded),
            Err(error) => {
                tracing::warn!(
                    "precompiled {} is unusable ({error}); compiling again",
                    compiled.display()
                );
                None
            }
        })
    }

    /// Loads code from its precompiled form when this engine has one, else
    /// compiles it (`code`, or the stored component) and keeps the result.
    /// Loading checks the code again, so a cached compile is as validated
    /// as a fresh one. Compiling and loading run off the async threads.
    async fn prepare(
        self: &Arc<Self>,
        kind: RuntimeKind,
        artifact: &str,
        code: Option<Arc<Vec<u8>>>,
        project: &ProjectId,
        function: &FunctionName,
        config: &FunctionConfig,
    ) -> Result<Loaded, FunctionsError> {
        let executor = self.executor(kind)?;
        let cached = {
            let (this, executor) = (self.clone(), executor.clone());
            let (artifact, project, function, config) = (
                artifact.to_owned(),
                project.clone(),
                function.clone(),
                config.clone(),
            );
            blocking(move || {
                this.load_precompiled(&executor, &artifact, &project, &function, &config)
            })
            .await?
        };
        if let Some(loaded) = cached {
            return Ok(loaded);
        }
        let code = match code {
            Some(code) => code,
            None => Arc::new(self.artifacts.read_component(artifact).await?),
        };
        let output = {
            let (executor, config) = (executor.clone(), config.clone());
            blocking(move || executor.compile(&code, &config)).await?
        };
        let compiled = self
            .artifacts
            .put_compiled(artifact, &executor.engine_key(), &output.precompiled)
            .await?;
        let spec = self.load_spec(project, function, config, compiled);
        blocking(move || executor.load(spec))
            .await
            .map_err(FunctionsError::Load)
    }

    /// The version a process bundle's `base` names (its live one for a
    /// bare name), ready on this node: an image unpacked once per node,
    /// whoever asks first.
    async fn base_version(
        self: &Arc<Self>,
        project: &ProjectId,
        config: &FunctionConfig,
    ) -> Result<Option<FunctionVersion>, FunctionsError> {
        let Some(reference) = config.process.base_reference() else {
            return Ok(None);
        };
        let (name, version) = reference?;
        let wanted = match version {
            Some(version) => Some(version),
            None => self
                .get(project, &name)
                .map(|deployed| deployed.version.version),
        };
        let found = match wanted {
            Some(wanted) => self
                .store
                .versions(project, &name)
                .await?
                .into_iter()
                .find(|stored| stored.version == wanted),
            None => None,
        };
        let base = found.ok_or_else(|| {
            SpecError::BaseNotFound(match wanted {
                Some(version) => format!("{name}@{version} does not exist"),
                None => format!("{name} is not a live function of this project"),
            })
        })?;
        if base.runtime.kind() != RuntimeKind::Process {
            return Err(SpecError::BaseNotFound(format!(
                "{name} is a component, not a process function deployed from an image"
            ))
            .into());
        }
        self.prepare(
            RuntimeKind::Process,
            &base.artifact,
            None,
            project,
            &base.function,
            &base.config,
        )
        .await?;
        Ok(Some(base))
    }

    async fn load_version(
        self: &Arc<Self>,
        version: &FunctionVersion,
    ) -> Result<Arc<dyn PreparedFunction>, FunctionsError> {
        self.base_version(&version.project, &version.config).await?;
        let loaded = self
            .prepare(
                version.runtime.kind(),
                &version.artifact,
                None,
                &version.project,
                &version.function,
                &version.config,
            )
            .await?;
        Ok(loaded.prepared)
    }

    /// Loads every live function of every project (start-up): those with a
    /// precompiled form, the usual case, in one blocking section (a thread
    /// hop per function would cost more than many loads); the rest are
    /// compiled again, one by one.
    pub async fn load_all(self: &Arc<Self>) -> Result<usize, FunctionsError> {
        let mut versions = Vec::new();
        for project in self.store.projects_with_functions().await? {
            versions.extend(self.store.list(&project).await?);
        }
        // Every version may be rolled back to: all keep their code; and
        // the images live bundles run on.
        let mut in_use = self.store.artifacts_in_use().await?;
        in_use.extend(
            versions
                .iter()
                .filter_map(|version| version.config.process.base_artifact.clone()),
        );
        let executors: Vec<_> = self.executors.values().cloned().collect();
        blocking(move || {
            for executor in executors {
                executor.collect_garbage(&in_use);
            }
        })
        .await;
        let this = self.clone();
        let (mut loaded, uncached) = blocking(move || {
            let mut loaded = 0;
            let mut uncached = Vec::new();
            for version in versions {
                let attempt = this.executor(version.runtime.kind()).and_then(|executor| {
                    this.load_precompiled(
                        &executor,
                        &version.artifact,
                        &version.project,
                        &version.function,
                        &version.config,
                    )
                });
                match attempt {
                    Ok(Some(ready)) => {
                        this.install(version, ready.prepared);
                        loaded += 1;
                    }
                    Ok(None) => uncached.push(version),
                    Err(error) => cannot_load(&version, &error),
                }
            }
            (loaded, uncached)
        })
        .await;
        for version in uncached {
            match self.load_version(&version).await {
                Ok(prepared) => {
                    self.install(version, prepared);
                    loaded += 1;
                }
                Err(error) => cannot_load(&version, &error),
            }
        }
        Ok(loaded)
    }

    /// Brings the registry in step with the store: the versions other
    /// nodes sharing it deployed, rolled back to or removed since. A
    /// version new to this node is fetched and loaded (compiled on first
    /// sight) before it is served; one that cannot be loaded is logged and
    /// left out, as at start. Returns how many functions changed.
    pub async fn sync(self: &Arc<Self>) -> Result<usize, FunctionsError> {
        let _switch = self.switch.lock().await;
        let mut current = HashMap::new();
        for project in self.store.projects_with_functions().await? {
            for version in self.store.list(&project).await? {
                current.insert((version.project.clone(), version.function.clone()), version);
            }
        }
        let mut changed = 0;
        let gone: Vec<Key> = self
            .live()
            .iter()
            .map(|deployed| {
                (
                    deployed.version.project.clone(),
                    deployed.version.function.clone(),
                )
            })
            .filter(|key| !current.contains_key(key))
            .collect();
        if !gone.is_empty() {
            let mut live = self
                .live
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for key in &gone {
                live.remove(key);
            }
            changed += gone.len();
        }
        for (key, version) in current {
            let served = self
                .get(&key.0, &key.1)
                .is_some_and(|deployed| deployed.version.version == version.version);
            if served {
                continue;
            }
            match self.load_version(&version).await {
                Ok(prepared) => {
                    self.install(version, prepared);
                    changed += 1;
                }
                Err(error) => cannot_load(&version, &error),
            }
        }
        if changed > 0 {
            self.changed();
        }
        Ok(changed)
    }

    /// Validates, compiles (by the runtime of `kind`), stores and switches
    /// to a new version.
    pub async fn deploy(
        self: &Arc<Self>,
        project: ProjectId,
        function: FunctionName,
        kind: RuntimeKind,
        code: Vec<u8>,
        mut config: FunctionConfig,
    ) -> Result<Arc<Deployed>, FunctionsError> {
        config.validate()?;
        // A bundle's base is pinned to the version live now.
        config.process.base_artifact = None;
        if let Some(base) = self.base_version(&project, &config).await? {
            config.process.base = Some(format!("{}@{}", base.function, base.version));
            config.process.base_artifact = Some(base.artifact);
        }
        // Validate (compile, or load a cached compile) before storing
        // anything: a refused upload leaves no file behind.
        let artifact = blob::content_hash(&code);
        let code = Arc::new(code);
        let loaded = self
            .prepare(
                kind,
                &artifact,
                Some(code.clone()),
                &project,
                &function,
                &config,
            )
            .await?;
        self.artifacts.put_component(&code).await?;
        let new = NewVersion {
            artifact,
            size_bytes: code.len() as u64,
            runtime: loaded.runtime,
            config,
        };
        let prepared = loaded.prepared;
        let this = self.clone();
        to_the_end(async move {
            let _switch = this.switch.lock().await;
            let version = this.store.create_version(&project, &function, new).await?;
            Ok(this.install(version, prepared))
        })
        .await
    }

    /// Makes an earlier version current again.
    pub async fn rollback(
        self: &Arc<Self>,
        project: ProjectId,
        function: FunctionName,
        version: u32,
    ) -> Result<Arc<Deployed>, FunctionsError> {
        let this = self.clone();
        to_the_end(async move {
            let _switch = this.switch.lock().await;
            let stored = this
                .store
                .versions(&project, &function)
                .await?
                .into_iter()
                .find(|stored| stored.version == version)
                .ok_or_else(|| FunctionsError::NoSuchVersion {
                    function: function.to_string(),
                    version,
                })?;
            let prepared = this.load_version(&stored).await?;
            let stored = this.store.set_current(&project, &function, version).await?;
            Ok(this.install(stored, prepared))
        })
        .await
    }

    /// Removes a function: requests to it get 404 at once.
    pub async fn remove(
        self: &Arc<Self>,
        project: ProjectId,
        function: FunctionName,
    ) -> Result<(), FunctionsError> {
        let this = self.clone();
        to_the_end(async move {
            let _switch = this.switch.lock().await;
            let users: Vec<String> = this
                .live()
                .iter()
                .filter(|deployed| {
                    deployed.version.project == project
                        && deployed.version.function != function
                        && matches!(
                            deployed.version.config.process.base_reference(),
                            Some(Ok((base, _))) if base == function
                        )
                })
                .map(|deployed| deployed.version.function.to_string())
                .collect();
            if !users.is_empty() {
                return Err(FunctionsError::InUse {
                    function: function.to_string(),
                    users: users.join(", "),
                });
            }
            let existed = this.store.remove(&project, &function).await?;
            this.live
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&(project, function.clone()));
            this.changed();
            if existed {
                Ok(())
            } else {
                Err(FunctionsError::NoSuchFunction(function.to_string()))
            }
        })
        .await
    }

    /// Starts the owned upkeep task (idle-instance reaping, every second).
    pub fn start_maintenance(self: &Arc<Self>) -> Maintenance {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let this = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = interval.tick() => {}
                }
                let Some(this) = this.upgrade() else { break };
                let live: Vec<Arc<Deployed>> = this
                    .live
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for deployed in live {
                    deployed.prepared.maintain();
                }
            }
        });
        Maintenance { stop, task }
    }

    pub async fn list(
        self: &Arc<Self>,
        project: ProjectId,
    ) -> Result<Vec<FunctionVersion>, FunctionsError> {
        Ok(self.store.list(&project).await?)
    }

    pub async fn versions(
        self: &Arc<Self>,
        project: ProjectId,
        function: FunctionName,
    ) -> Result<Vec<FunctionVersion>, FunctionsError> {
        Ok(self.store.versions(&project, &function).await?)
    }
}
