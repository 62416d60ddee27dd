//! Composition: configuration, wiring of the layers, and shutdown.
//!
//! Layer: composition. Builds the store, artifacts, recorder, runtime,
//! function registry and gateway, serves until told to stop, then drains
//! in-flight requests (bounded) and flushes every record before returning.
//!
//! The data directory is its owner's alone: the umask is set to 077 and
//! the directory to 0700 at start (files an older server made are brought
//! to 0600). It holds `wok.db` with its WAL and key-value journal,
//! `objects/` (object bytes, fanned out), `artifacts/` (uploaded
//! components), `compiled/` (their precompiled forms), `tmp/`, the
//! `disk-reserve`, and files of their own, 0600, made on first start:
//! `admin-token`, `metrics-token`, `server-key` (seals S3 secrets), and
//! `endpoint` (the URL the CLI finds).
//!
//! Start: the open-files limit is raised to the hard limit (every
//! connection is a file descriptor), and the listening socket has a
//! backlog of 4096. Background tasks, each owned and stopped: the
//! functions' maintenance, the trigger reconciler and dispatcher, the
//! expiry of abandoned multipart uploads (`upload_expiry`), the pruning of
//! old events (`event_retention`), with a shared database the deletion of
//! expired key-value entries and the sweep of blobs nothing names (each
//! chore on one node at a time: `maintenance.rs`), and the disk watch
//! (while the disk is full, `Reserve::recheck` every 2 s).
//!
//! Shutdown: stop accepting; give in-flight requests `shutdown_grace`,
//! then cut them off; stop the maintenance and the periodic tasks; stop
//! the reconciler, then the dispatcher with the same grace (what it does
//! not finish is delivered after the next start); flush the records. Only
//! a full drain leaves `objects/clean-stop`, which lets the next start
//! skip the sweep for blobs that nothing names.

use anyhow::Context;
use blob::{ArtifactStore, FileBlobs, Layout};
pub use blob_s3::S3Config;
use domain::ByteSize;
use functions::Functions;
pub use gateway::ConnectionLimits;
use gateway::Gateway;
use metering::{Metrics, Recorder};
use runtime_wasm::{WasmConfig, WasmRuntime};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Stores;
pub use store::events::AsyncQueueLimit;
pub use store_postgres::PgOptions;
use store_sqlite::SqliteStore;

mod maintenance;

/// The file in the data directory holding the admin credential.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The file in the data directory naming the URL the server listens on.
pub const ENDPOINT_FILE: &str = "endpoint";
/// The file in the data directory holding the token that reads `/metrics`.
pub const METRICS_TOKEN_FILE: &str = "metrics-token";
/// The file in the data directory holding the key that seals S3 secrets.
pub const SERVER_KEY_FILE: &str = "server-key";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_upload: ByteSize,
    /// How long in-flight requests may take to finish after a stop signal.
    pub shutdown_grace: Duration,
    /// Multipart uploads neither completed nor aborted are aborted this
    /// long after they began.
    pub upload_expiry: Duration,
    /// Events every trigger has passed are deleted this long after they
    /// were logged (finished asynchronous invocations too).
    pub event_retention: Duration,
    /// What each HTTP connection may hold, and how many there may be.
    pub connections: gateway::ConnectionLimits,
    /// Asynchronous requests that may wait per function, and their size.
    pub async_queue: AsyncQueueLimit,
    /// `/metrics` without a credential.
    pub public_metrics: bool,
    /// Take a client's address from the last `X-Forwarded-For` entry (the
    /// load balancer's), for per-address limits.
    pub trust_forwarded_for: bool,
    /// The URL clients reach this server at, for links in mails (default:
    /// `http://` and the address it listens on).
    pub public_url: Option<String>,
    /// Let app users sign in with OpenID Connect providers whose issuer
    /// (and endpoints) are plain http or at a loopback or private address:
    /// for tests on loopback only.
    pub allow_http_issuers: bool,
    /// Room kept on the data directory's disk for deletes once it fills.
    pub disk_reserve: ByteSize,
    /// Bytes all realtime clients together may have unread.
    pub realtime_buffer: ByteSize,
    pub wasm: WasmConfig,
    pub process: ProcessSettings,
    /// The PostgreSQL database several nodes share; `None`: the embedded
    /// SQLite database of the data directory.
    pub database: Option<store_postgres::PgOptions>,
    /// The S3 bucket (and prefix) several nodes share object bytes and
    /// function code in; `None`: files in the data directory.
    pub blobs: Option<blob_s3::S3Config>,
}

/// Native (process) functions.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// The `wok` binary, started again as the sandbox helper; `None`: the
    /// server runs no process functions.
    pub helper_program: Option<PathBuf>,
    /// Process instances of all functions together.
    pub max_instances: u32,
    /// Process instances of one project's functions together.
    pub max_instances_per_project: u32,
}

/// The first argument that makes `wok` the sandbox helper.
pub const SANDBOX_HELPER_ARG: &str = runtime_process::HELPER_ARG;

/// Runs this process as the sandbox helper (see `runtime-process`).
pub fn run_sandbox_helper() -> ! {
    runtime_process::helper_main()
}

/// The data directory used when none is given: `$WOK_DATA`, else
/// `$XDG_DATA_HOME/wok`, else `~/.local/share/wok`, else `./.wok`.
pub fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env("WOK_DATA").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("wok");
    }
    if let Some(home) = env("HOME").filter(|home| !home.is_empty()) {
        return PathBuf::from(home).join(".local/share/wok");
    }
    PathBuf::from(".wok")
}

/// Reads the admin token, creating one (readable by the owner only) on first start.
pub fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    secret_file(&data_dir.join(ADMIN_TOKEN_FILE), "wok_admin_")
}

/// Reads the metrics token, creating one (readable by the owner only) on
/// first start: what a scraper sends to read `/metrics`.
pub fn metrics_token(data_dir: &Path) -> anyhow::Result<String> {
    secret_file(&data_dir.join(METRICS_TOKEN_FILE), "wok_metrics_")
}

/// The key that seals key S3 secrets at rest, made on first start.
pub fn server_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let text = secret_file(&data_dir.join(SERVER_KEY_FILE), "wok_serverkey_")?;
    let bytes = text
        .strip_prefix("wok_serverkey_")
        .and_then(|hex_key| hex::decode(hex_key).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not hold a server key (wok_serverkey_ and 64 hex digits)",
                data_dir.join(SERVER_KEY_FILE).display()
            )
        })?;
    Ok(bytes)
}

/// A random token in a file of its own (mode 0600), made on first use.
fn secret_file(path: &Path, prefix: &str) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("generating a token: {error}"))?;
    let token = format!("{prefix}{}", hex::encode(bytes));
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// The secrets every node sharing a database must hold alike (the admin
/// credential, the metrics token, the server key): the first node to
/// start stores its own, every other node takes them and writes them into
/// its data directory (where the CLI and the rest of the start read them).
async fn adopt_shared_secrets(
    store: &store_postgres::PgStore,
    data_dir: &Path,
) -> anyhow::Result<()> {
    for (file, prefix) in [
        (ADMIN_TOKEN_FILE, "wok_admin_"),
        (METRICS_TOKEN_FILE, "wok_metrics_"),
        (SERVER_KEY_FILE, "wok_serverkey_"),
    ] {
        let path = data_dir.join(file);
        let local = secret_file(&path, prefix)?;
        let shared = store
            .shared_secret(file, &local)
            .await
            .with_context(|| format!("reading the shared {file} from the database"))?;
        if shared != local {
            use std::os::unix::fs::OpenOptionsExt;
            let temporary = data_dir.join(format!("{file}.new"));
            let _ = std::fs::remove_file(&temporary);
            let mut new = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .with_context(|| format!("creating {}", temporary.display()))?;
            std::io::Write::write_all(&mut new, shared.as_bytes())?;
            new.sync_all()?;
            std::fs::rename(&temporary, &path)
                .with_context(|| format!("replacing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The data directory holds every project's data: only its owner may
/// enter it, and what the server creates in it is the owner's alone
/// (files 0600, directories 0700, whatever the umask was).
fn restrict_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", data_dir.display()))?;
    // Files a server from before this made with the old umask.
    for name in ["wok.db", "wok.db-wal", "wok.db-shm", "wok.db-kv-journal"] {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {} to its owner", path.display()))?;
        }
    }
    Ok(())
}

/// Runs the platform until `shutdown` resolves. `on_ready` gets the bound address.
pub async fn run(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, Arc::new(events::SystemClock), on_ready, shutdown).await
}

/// [`run`] on a given clock: what key-value expiry, event retries,
/// schedules and asynchronous invocations go by (tests move one by hand
/// instead of waiting).
pub async fn run_with(
    config: ServerConfig,
    clock: Arc<dyn events::Clock>,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    raise_open_files_limit();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    restrict_data_dir(&config.data_dir)?;
    let shared = match &config.database {
        None => None,
        Some(options) => {
            let store = store_postgres::PgStore::connect(options)
                .await
                .context("connecting to the database")?;
            adopt_shared_secrets(&store, &config.data_dir).await?;
            Some(Arc::new(store))
        }
    };
    let token = admin_token(&config.data_dir)?;
    let disk = Arc::new(
        blob::Reserve::open(&config.data_dir, config.disk_reserve.bytes())
            .context("keeping the disk reserve")?,
    );
    let metrics_access = if config.public_metrics {
        gateway::MetricsAccess::Public
    } else {
        gateway::MetricsAccess::Token(metrics_token(&config.data_dir)?)
    };
    let stores = match &shared {
        Some(store) => Stores::of(store.clone()),
        None => {
            let database = config.data_dir.join("wok.db");
            Stores::of(Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open(&database))
                    .await?
                    .context("opening the metadata database")?,
            ))
        }
    };
    let data = &config.data_dir;
    let (object_blobs, component_blobs): (Arc<dyn blob::BlobStore>, Arc<dyn blob::BlobStore>) =
        match &config.blobs {
            Some(s3) => {
                let under = |part: &str| blob_s3::S3Config {
                    prefix: if s3.prefix.is_empty() {
                        part.to_owned()
                    } else {
                        format!("{}/{part}", s3.prefix)
                    },
                    ..s3.clone()
                };
                (
                    Arc::new(
                        blob_s3::S3Blobs::open(under("objects"))
                            .await
                            .context("opening the S3 store of object bytes")?,
                    ),
                    Arc::new(
                        blob_s3::S3Blobs::open(under("artifacts"))
                            .await
                            .context("opening the S3 store of function code")?,
                    ),
                )
            }
            None => (
                Arc::new(
                    FileBlobs::open(
                        &data.join("objects"),
                        Layout::FannedOut,
                        &data.join("objects").join("tmp"),
                    )
                    .context("opening the object directory")?,
                ),
                Arc::new(
                    FileBlobs::open(
                        &data.join("artifacts"),
                        Layout::Flat,
                        &data.join("tmp").join("artifacts"),
                    )
                    .context("opening the artifact directory")?,
                ),
            ),
        };
    // With a shared database, blobs unnamed at start may be another
    // node's uploads in flight: no sweep at start then (the trash is still
    // emptied), but one node sweeps the old ones (`maintenance.rs`).
    let sweep = shared.is_none() && !take_clean_stop(&config.data_dir)?;
    let objects = objects::Objects::open(stores.objects.clone(), object_blobs, sweep)
        .await
        .context("opening object storage")?;
    let artifacts = ArtifactStore::new(
        component_blobs,
        FileBlobs::open(
            &data.join("compiled"),
            Layout::Flat,
            &data.join("tmp").join("compiled"),
        )
        .context("opening the directory of precompiled code")?,
    );
    let key_value = Arc::new(data::KeyValue::new(stores.kv.clone(), clock.clone()));
    let documents = Arc::new(data::Documents::new(stores.docs.clone()));
    let metrics = Arc::new(Metrics::new());
    let recorder = Recorder::start(stores.records.clone(), metrics.clone());
    let runtime = Arc::new(WasmRuntime::new(
        config.wasm.clone(),
        recorder.clone(),
        metrics.clone(),
    )?);
    let auth = Arc::new(
        auth::Auth::open(
            stores.projects.clone(),
            token,
            server_key(&config.data_dir)?,
        )
        .await
        .context("loading the project keys")?,
    );
    let accounts = Arc::new(
        auth::Accounts::open(
            stores.accounts.clone(),
            server_key(&config.data_dir)?,
            clock.now(),
        )
        .await
        .context("loading the signing keys of app users' tokens")?
        .allow_http_issuers(config.allow_http_issuers),
    );
    // Connections native functions open to wok's API from inside their
    // sandboxes, served with the listener's.
    let (inside, inside_connections) = tokio::sync::mpsc::channel(INSIDE_BACKLOG);
    let mut executors: Vec<Arc<dyn invoke::Executor>> = vec![runtime];
    if let Some(helper_program) = &config.process.helper_program {
        let process = runtime_process::ProcessConfig {
            helper_program: helper_program.clone(),
            dir: config.data_dir.join("process"),
            max_bundle_bytes: config.max_upload.bytes().saturating_mul(4),
            max_instances: config.process.max_instances,
            max_instances_per_project: config.process.max_instances_per_project,
        };
        let platform = Arc::new(PlatformForFunctions {
            auth: auth.clone(),
            inside,
        });
        match runtime_process::ProcessRuntime::new(
            process,
            Some(platform),
            recorder.clone(),
            metrics.clone(),
        ) {
            Ok(runtime) => executors.push(Arc::new(runtime)),
            Err(error) => tracing::warn!("native (process) functions are off: {error}"),
        }
    }
    let local_api = Arc::new(invoke::LocalApiSlot::default());
    let functions = Functions::new(
        stores.functions.clone(),
        functions::GuestServices {
            kv: key_value.clone(),
            docs: documents.clone(),
            objects: objects.clone(),
            events: stores.events.clone(),
            local_api: local_api.clone(),
        },
        artifacts,
        executors,
        recorder.clone(),
    );
    let loaded = functions.load_all().await?;
    let dispatcher = events::Dispatcher::new(
        stores.events.clone(),
        Arc::new(triggers::FunctionDeliver {
            functions: functions.clone(),
            events: stores.events.clone(),
        }),
        clock.clone(),
        metrics.clone(),
    );

    let listener = listen(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let gateway = Arc::new(Gateway {
        functions: functions.clone(),
        projects: stores.projects.clone(),
        records: stores.records.clone(),
        recorder: recorder.clone(),
        metrics,
        kv: key_value,
        docs: documents,
        objects: objects.clone(),
        auth,
        accounts,
        trust_forwarded_for: config.trust_forwarded_for,
        hub: Arc::new(events::Hub::new(
            stores.events.clone(),
            dispatcher.streams(),
        )),
        events: stores.events.clone(),
        dispatcher: dispatcher.clone(),
        max_upload_bytes: config.max_upload.bytes(),
        async_queue: config.async_queue,
        realtime_budget: Arc::new(gateway::RealtimeBudget::new(
            usize::try_from(config.realtime_buffer.bytes()).unwrap_or(usize::MAX),
        )),
        metrics_access,
        disk: disk.clone(),
        json_bodies: gateway::JsonBudget::new(gateway::JSON_BODY_BUDGET_MIB),
        clock,
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}")),
    });
    // Guests acting with their caller's access reach data through the
    // data API, in process.
    local_api.set(gateway::local_api(gateway.clone()));
    std::fs::write(
        config.data_dir.join(ENDPOINT_FILE),
        format!("http://{address}\n"),
    )
    .context("writing the endpoint file")?;
    tracing::info!("loaded {loaded} functions in {:?}", started.elapsed());
    on_ready(address);

    let maintenance = functions.start_maintenance();
    let reconciler = triggers::Reconciler::start(functions.clone(), dispatcher.clone());
    let expiry = tokio::spawn(maintenance::on_one_node(
        stores.events.clone(),
        dispatcher.holder().to_owned(),
        maintenance::UPLOAD_EXPIRY,
        maintenance::quarter(config.upload_expiry),
        {
            let (objects, age) = (objects.clone(), config.upload_expiry);
            move || {
                let objects = objects.clone();
                async move { maintenance::expire_uploads(&objects, age).await }
            }
        },
    ));
    let disk_watch = tokio::spawn(watch_disk(disk));
    let pruning = tokio::spawn(maintenance::on_one_node(
        stores.events.clone(),
        dispatcher.holder().to_owned(),
        maintenance::EVENT_PRUNING,
        maintenance::quarter(config.event_retention),
        {
            let (projects, events) = (stores.projects.clone(), stores.events.clone());
            let retention = config.event_retention;
            move || {
                let (projects, events) = (projects.clone(), events.clone());
                async move { maintenance::prune_events(&*projects, &*events, retention).await }
            }
        },
    ));
    let cluster_chores = shared.clone().map_or_else(Vec::new, |shared| {
        maintenance::cluster_chores(
            shared,
            stores.events.clone(),
            dispatcher.holder(),
            objects.clone(),
        )
    });
    // Other nodes' changes of keys, rules and live versions.
    let follow = shared.clone().map(|store| {
        tokio::spawn(follow_other_nodes(
            store,
            gateway.auth.clone(),
            gateway.accounts.clone(),
            functions.clone(),
        ))
    });
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let app = gateway::app(gateway.clone());
    let serve = gateway::serve(
        listener,
        inside_connections,
        app,
        config.connections.clone(),
        gateway.metrics.clone(),
        async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        },
    );
    let serving = tokio::spawn(serve);
    // Wait for the stop signal, then give in-flight requests a bounded time.
    let mut serving = serving;
    let drained = tokio::select! {
        result = &mut serving => { result?; true }
        _ = stopping_rx => {
            tracing::info!("stopping: waiting up to {:?} for in-flight requests", config.shutdown_grace);
            match tokio::time::timeout(config.shutdown_grace, &mut serving).await {
                Ok(result) => { result?; true }
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish within {:?}; closing them", config.shutdown_grace);
                    serving.abort();
                    false
                }
            }
        }
    };
    maintenance.stop().await;
    if let Some(follow) = follow {
        follow.abort();
    }
    expiry.abort();
    pruning.abort();
    for chore in cluster_chores {
        chore.abort();
    }
    maintenance::release(&*stores.events, dispatcher.holder()).await;
    disk_watch.abort();
    // Deliveries under way get the same grace; what they do not finish is
    // delivered again after the next start.
    reconciler.stop().await;
    dispatcher.stop(config.shutdown_grace).await;
    // Records of aborted requests are written when their meters drop, which
    // the abort above has done by now.
    tokio::task::spawn_blocking(move || recorder.shutdown()).await?;
    // Cut-off requests may have left an object file without its commit:
    // only a full drain counts as a clean stop. (Nodes sharing a database
    // sweep old blobs instead, and need no marker.)
    if drained && shared.is_none() {
        mark_clean_stop(&config.data_dir)?;
    }
    Ok(())
}

/// The marker a clean stop leaves, once no write is in flight any more:
/// the next start then skips the sweep of blobs that nothing names.
fn clean_stop_marker(data_dir: &Path) -> PathBuf {
    data_dir.join("objects").join("clean-stop")
}

/// Whether the last run stopped cleanly; the marker is consumed, so a
/// crash of this run is not mistaken for a clean stop.
fn take_clean_stop(data_dir: &Path) -> anyhow::Result<bool> {
    let marker = clean_stop_marker(data_dir);
    match std::fs::remove_file(&marker) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("removing {}", marker.display())),
    }
}

fn mark_clean_stop(data_dir: &Path) -> anyhow::Result<()> {
    let marker = clean_stop_marker(data_dir);
    std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))
}

/// Connections from inside native functions handed to the server and not
/// taken yet; past this, a new one is closed at once.
const INSIDE_BACKLOG: usize = 1024;

/// What native functions get of the platform: credentials for their
/// project, and their connections to `WOK_API` served like any client's.
struct PlatformForFunctions {
    auth: Arc<auth::Auth>,
    inside: tokio::sync::mpsc::Sender<gateway::InsideConnection>,
}

impl runtime_process::Platform for PlatformForFunctions {
    fn credentials(
        &self,
        project: &domain::ProjectId,
        lifetime: std::time::Duration,
    ) -> runtime_process::Credentials {
        let credentials = self.auth.function_credentials(project, lifetime);
        runtime_process::Credentials {
            token: credentials.token,
            access_key_id: credentials.s3.access_key_id,
            secret_access_key: credentials.s3.secret_access_key,
        }
    }

    fn serve(&self, stream: tokio::net::TcpStream, hold: Box<dyn std::any::Any + Send>) {
        // Full: the server is far behind; the program sees the close.
        let _ = self.inside.try_send((stream, hold));
    }
}

/// Connections the kernel may queue before the server accepts them
/// (capped by `net.core.somaxconn`): a burst beyond the queue has its
/// handshakes dropped and retried, or worse lost.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft limit on open files to the hard limit: every connection
/// is a file descriptor, and the usual soft limit (1,024) is far below
/// what the connection cap allows.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("raising the open-files limit: {error}");
        }
    }
}

/// The default connection cap: 10,000, or three quarters of the open-files
/// limit (as [`run`] raises it) if that is lower; the rest is for the
/// database, objects and artifacts.
pub fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let files = limit.maximum.or(limit.current).unwrap_or(u64::MAX);
    (files / 4 * 3).clamp(64, 10_000) as usize
}

/// While the disk is full, looks every 2 s for the room to take writes
/// again.
/// How often a node sharing a database looks for other nodes' changes of
/// keys, access rules and live versions: a revoked key is refused by every
/// node, and a deploy served by every node, this long after it commits
/// (plus the time to load the new version).
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Follows the changes other nodes make to what this node keeps in memory:
/// polls the database's change counter, and when it moves, reads keys and
/// rules again and brings the registry of live versions in step (the
/// trigger workers follow the registry).
async fn follow_other_nodes(
    store: Arc<store_postgres::PgStore>,
    auth: Arc<auth::Auth>,
    accounts: Arc<auth::Accounts>,
    functions: Arc<Functions>,
) {
    let mut seen: Option<i64> = None;
    let mut ticks = tokio::time::interval(FOLLOW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let version = match store.control_version().await {
            Ok(version) => version,
            Err(error) => {
                tracing::warn!("cannot read the database's change counter: {error}");
                continue;
            }
        };
        if seen == Some(version) {
            continue;
        }
        let reloaded = async {
            auth.reload().await?;
            accounts.reload(domain::now_millis()).await?;
            functions
                .sync()
                .await
                .map_err(|error| store::StoreError::backend(error.to_string(), true))?;
            Ok::<_, store::StoreError>(())
        };
        match reloaded.await {
            // Read again at the next tick if this failed.
            Ok(()) => seen = Some(version),
            Err(error) => tracing::warn!("cannot follow other nodes' changes: {error}"),
        }
    }
}

async fn watch_disk(disk: Arc<blob::Reserve>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(2));
    loop {
        ticks.tick().await;
        if disk.is_full() {
            let disk = disk.clone();
            let _ = tokio::task::spawn_blocking(move || disk.recheck()).await;
        }
    }
}
