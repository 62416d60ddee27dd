//! `ProcessRuntime`: native functions (any language, any binary) as Linux
//! processes in a sandbox wok sets up itself, behind the same
//! `invoke::Executor` as wasm.
//!
//! Layer: runtimes. Knows `domain` and `invoke` only: no store, gateway or
//! wasm. The only crate that starts function processes.
//!
//! - `bundle.rs`: the uploaded `.tar`/`.tar.gz`/`.zip`, checked and
//!   unpacked into the node-local root cache (what "compile" means here);
//!   `image.rs`: the same for OCI images.
//! - `helper.rs`: the small helper process that makes each sandboxed
//!   instance (namespaces, read-only root, cgroups, unprivileged user).
//! - `cgroup.rs`: each instance's memory, pids and CPU limits and readings.
//! - `seccomp.rs`: the system calls a program may not make.
//! - `pool.rs`: a version's instances: started on demand, each serving up
//!   to `concurrency` requests, more started while requests wait, idle
//!   ones stopped (drained: never while they hold a request); requests
//!   proxied to `$PORT` inside the instance's network namespace;
//!   `pool/exec.rs` and `pool/lambda.rs` the other two protocols;
//!   `pool/services.rs` what every instance finds on its loopback besides
//!   (wok's API through [`Platform`], the outbound proxy).
//! - `netns.rs`, `timer.rs`: sockets made inside a namespace; waits finer
//!   than tokio's timer (the readiness poll).
//!
//! Invariants: a process never shares a sandbox with another function or
//! version; a failure of the program (exit, crash, timeout, out of memory)
//! is a `Failure` with its outcome, never an `Err` of wok.

mod bundle;
mod cgroup;
mod helper;
mod image;
mod netns;
mod pool;
mod seccomp;
mod timer;

pub use helper::{HELPER_ARG, helper_main};

use domain::{FunctionConfig, ProcessProtocol, ProjectId, Runtime, RuntimeKind};
use invoke::{Compiled, DeployError, Executor, LoadSpec, Loaded, LogSink, RuntimeMetrics};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Settings of the process runtime.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `wok` binary, started again as the sandbox helper.
    pub helper_program: PathBuf,
    /// Node-local directory for unpacked bundles and the sandbox's mount
    /// point (inside the data directory).
    pub dir: PathBuf,
    /// Largest unpacked bundle.
    pub max_bundle_bytes: u64,
    /// Most instances of all process functions together.
    pub max_instances: u32,
    /// Most instances of one project's process functions together.
    pub max_instances_per_project: u32,
}

/// What the server offers a program inside its instance besides its
/// requests: wok's own API, reached from inside (`WOK_API`), and
/// credentials for it (`WOK_TOKEN`, and an S3 pair).
pub trait Platform: Send + Sync {
    /// Credentials for `project`'s data, valid for `lifetime`.
    fn credentials(&self, project: &ProjectId, lifetime: std::time::Duration) -> Credentials;

    /// Serves a connection a program opened to `WOK_API` as any client's;
    /// `hold` is kept until it closes.
    fn serve(&self, stream: tokio::net::TcpStream, hold: Box<dyn std::any::Any + Send>);
}

/// What [`Platform::credentials`] gives an instance.
pub struct Credentials {
    /// A bearer token for wok's REST API and realtime.
    pub token: String,
    /// An S3 access key pair for wok's S3 endpoint.
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The server's side of the helper and what every instance shares.
pub(crate) struct Sandbox {
    helper: Mutex<Helper>,
    pub hierarchy: cgroup::Hierarchy,
    pub mount_point: PathBuf,
    pub connector: netns::Connector,
    /// Waits finer than tokio's millisecond (the readiness poll).
    pub timer: timer::FineTimer,
    next_id: std::sync::atomic::AtomicU64,
    /// Instances of every function together, bounded by the config.
    pub instances: Arc<tokio::sync::Semaphore>,
    /// Each project's instances, bounded by the config (a project's
    /// semaphore is dropped once it has no instance).
    projects: Mutex<std::collections::HashMap<ProjectId, Arc<tokio::sync::Semaphore>>>,
    max_per_project: usize,
    /// The outside uid pairs of live instances, by number.
    uid_slots: Arc<Mutex<std::collections::BTreeSet<u32>>>,
    /// wok's API for programs, when the server offers it.
    pub platform: Option<Arc<dyn Platform>>,
}

/// Outside uid pairs an instance may take: no two live instances share one.
const UID_SLOTS: u32 = 50_000;

/// A live instance's outside uid pair, given back when it is dropped
/// (after the instance has ended).
pub(crate) struct UidSlot {
    slots: Arc<Mutex<std::collections::BTreeSet<u32>>>,
    pub number: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.number);
    }
}

struct Helper {
    socket: OwnedFd,
    child: std::process::Child,
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the socket tells the helper to kill (and thaw) every
        // instance and exit; it is killed if it has not within a second.
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.socket),
            nix::sys::socket::Shutdown::Both,
        );
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    /// A number for a new instance: its cgroup and hostname, and with it
    /// the unprivileged uid it runs as outside.
    pub fn next_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The semaphore of `project`'s instances; projects with no instance
    /// left are forgotten on the way (their semaphores are whole again).
    pub(crate) fn project_instances(&self, project: &ProjectId) -> Arc<tokio::sync::Semaphore> {
        let mut projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.max_per_project;
        if projects.len() > 64 {
            projects.retain(|_, semaphore| {
                Arc::strong_count(semaphore) > 1 || semaphore.available_permits() < max
            });
        }
        projects
            .entry(project.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(max)))
            .clone()
    }

    /// The lowest free outside uid pair.
    pub(crate) fn take_uid_slot(&self) -> Option<UidSlot> {
        let mut used = self.uid_slots.lock().unwrap_or_else(|p| p.into_inner());
        let number = (0..UID_SLOTS).find(|number| !used.contains(number))?;
        used.insert(number);
        Some(UidSlot {
            slots: self.uid_slots.clone(),
            number,
        })
    }

    /// Asks the helper for an instance. Blocking (a few milliseconds).
    /// `fds`: the write ends of stdout, stderr and status, then the read
    /// end of stdin if the request has one.
    pub(crate) fn spawn(
        &self,
        request: &helper::SpawnRequest,
        fds: &[&OwnedFd],
    ) -> Result<helper::Spawned, String> {
        let helper = self.helper.lock().unwrap_or_else(|p| p.into_inner());
        let fds: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        helper::call(helper.socket.as_fd(), request, &fds)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.hierarchy.remove();
    }
}

/// The process runtime: an [`Executor`] for [`RuntimeKind::Process`].
pub struct ProcessRuntime {
    config: ProcessConfig,
    sandbox: Arc<Sandbox>,
    logs: Arc<dyn LogSink>,
    metrics: Arc<dyn RuntimeMetrics>,
}

impl ProcessRuntime {
    /// Starts the sandbox helper and makes this server's cgroup. Fails
    /// (the server then runs no process functions) where the host cannot
    /// sandbox: no user namespaces, no writable cgroups. `platform`: what
    /// programs may call from inside (none: no `WOK_API`).
    pub fn new(
        config: ProcessConfig,
        platform: Option<Arc<dyn Platform>>,
        logs: Arc<dyn LogSink>,
        metrics: Arc<dyn RuntimeMetrics>,
    ) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let mount_point = config.dir.join("mnt");
        std::fs::create_dir_all(config.dir.join("roots"))
            .and_then(|()| std::fs::create_dir_all(&mount_point))
            .map_err(|error| format!("{}: {error}", config.dir.display()))?;
        let hierarchy = cgroup::Hierarchy::create(&format!("wok-{}", std::process::id()))
            .map_err(|error| format!("cgroups: {error}"))?;
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|error| format!("socketpair: {error}"))?;
        // Started by posix_spawn (no pre_exec): the server is never forked.
        #[allow(clippy::disallowed_methods)]
        let child = std::process::Command::new(&config.helper_program)
            .arg0("wok-sandbox")
            .arg(HELPER_ARG)
            .env_clear()
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|error| {
                format!(
                    "starting the sandbox helper {}: {error}",
                    config.helper_program.display()
                )
            })?;
        let sandbox = Arc::new(Sandbox {
            helper: Mutex::new(Helper {
                socket: ours,
                child,
            }),
            hierarchy,
            mount_point,
            connector: netns::Connector::start().map_err(|error| format!("netns: {error}"))?,
            timer: timer::FineTimer::start().map_err(|error| format!("timer: {error}"))?,
            next_id: std::sync::atomic::AtomicU64::new(1),
            instances: Arc::new(tokio::sync::Semaphore::new(config.max_instances as usize)),
            projects: Mutex::new(std::collections::HashMap::new()),
            max_per_project: config.max_instances_per_project.max(1) as usize,
            uid_slots: Default::default(),
            platform,
        });
        Ok(Self {
            config,
            sandbox,
            logs,
            metrics,
        })
    }

    fn root_of(&self, hash: &str) -> PathBuf {
        self.config.dir.join("roots").join(hash)
    }

    /// What an unpacked root is, and whether `config` can run it.
    fn root_kind(
        &self,
        root: &std::path::Path,
        config: &FunctionConfig,
    ) -> Result<pool::Root, String> {
        let command = &config.process.command;
        if let Some(base) = &config.process.base_artifact {
            return self.on_image(root, base, config);
        }
        match std::fs::read(root.join("image.json")) {
            Ok(text) => {
                let image: image::ImageConfig =
                    serde_json::from_slice(&text).map_err(|error| error.to_string())?;
                if command.is_empty() && image.command.is_empty() {
                    return Err("the image has no Entrypoint or Cmd: give a command (--command)".to_owned());
                }
                Ok(pool::Root::Image {
                    rootfs: root.join("rootfs"),
                    image,
                })
            }
            Err(_) if command.is_empty() && config.process.protocol == ProcessProtocol::Lambda => {
                // A Lambda deployment package: its `bootstrap` runs.
                use std::os::unix::fs::PermissionsExt;
                match std::fs::metadata(root.join("app").join(pool::BOOTSTRAP)) {
                    Ok(file) if file.is_file() && file.permissions().mode() & 0o111 != 0 => {
                        Ok(pool::Root::Bundle(root.join("app")))
                    }
                    Ok(_) => Err(format!(
                        "the bundle's {} is not an executable file",
                        pool::BOOTSTRAP
                    )),
                    Err(_) => Err(format!(
                        "a lambda bundle without a command needs an executable {} at its root (or give --command)",
                        pool::BOOTSTRAP
                    )),
                }
            }
            Err(_) if command.is_empty() => Err(
                "a process function needs a command (--command \"python3 app.py\", or command in wok.toml)"
                    .to_owned(),
            ),
            Err(_) => Ok(pool::Root::Bundle(root.join("app"))),
        }
    }
}

impl ProcessRuntime {
    /// An image's config, if `root` is an unpacked image.
    fn image_of(root: &std::path::Path) -> Result<Option<image::ImageConfig>, String> {
        match std::fs::read(root.join("image.json")) {
            Ok(text) => serde_json::from_slice(&text)
                .map(Some)
                .map_err(|error| error.to_string()),
            Err(_) => Ok(None),
        }
    }

    /// A bundle (unpacked at `root`) on the base image unpacked as
    /// `base`: the base must be an image, and gets an `/app` to bind the
    /// bundle at.
    fn on_image(
        &self,
        root: &std::path::Path,
        base: &str,
        config: &FunctionConfig,
    ) -> Result<pool::Root, String> {
        let name = config.process.base.as_deref().unwrap_or(base);
        if Self::image_of(root)?.is_some() {
            return Err("an image runs on its own root: a base is for bundles".to_owned());
        }
        let base_root = self.root_of(base);
        let image = Self::image_of(&base_root)?.ok_or_else(|| {
            format!("the base {name} is not an image (deploy an image as the base function)")
        })?;
        if config.process.command.is_empty() && image.command.is_empty() {
            return Err(format!(
                "the base {name} has no Entrypoint or Cmd: give a command (--command)"
            ));
        }
        let rootfs = base_root.join("rootfs");
        let app = rootfs.join("app");
        match std::fs::symlink_metadata(&app) {
            Ok(found) if found.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "the base {name} has a file at /app, where the bundle goes"
                ));
            }
            Err(_) => {
                use std::os::unix::fs::PermissionsExt;
                match std::fs::create_dir(&app) {
                    // Another load made it meanwhile.
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    made => made,
                }
                .and_then(|()| {
                    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(|error| format!("making /app in the base {name}: {error}"))?
            }
        }
        Ok(pool::Root::OnImage {
            app: root.join("app"),
            rootfs,
            image,
        })
    }
}

/// What `compile` keeps as the precompiled form: where the bundle was
/// unpacked.
#[derive(serde::Serialize, serde::Deserialize)]
struct Unpacked {
    root: String,
}

impl Executor for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    fn engine_key(&self) -> String {
        "process-1".to_owned()
    }

    fn compile(&self, code: &[u8], config: &FunctionConfig) -> Result<Compiled, DeployError> {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(code));
        let root = self.root_of(&hash);
        if !root.is_dir() {
            // Unpack beside, then rename: a root is whole or absent.
            let partial = self.config.dir.join("roots").join(format!(
                ".{hash}.{}.{}",
                std::process::id(),
                self.sandbox.next_id()
            ));
            let _ = std::fs::remove_dir_all(&partial);
            let unpacked = if image::is_image(code) {
                image::unpack(code, &partial, self.config.max_bundle_bytes).and_then(|image| {
                    let text = serde_json::to_vec(&image).expect("serialises");
                    Ok(std::fs::write(partial.join("image.json"), text)?)
                })
            } else {
                bundle::unpack(code, &partial.join("app"), self.config.max_bundle_bytes)
            };
            if let Err(error) = unpacked {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(match error {
                    bundle::BundleError::TooLarge { .. } => {
                        DeployError::too_large(error.to_string())
                    }
                    error => DeployError::new(error.to_string()),
                });
            }
            std::fs::rename(&partial, &root).map_err(|error| {
                DeployError::new(format!("keeping the unpacked bundle: {error}"))
            })?;
        }
        let unpacked = Unpacked { root: hash };
        // What it runs is known now: a bundle needs a command, an image
        // has its own unless it is empty.
        self.root_kind(&root, config).map_err(DeployError::new)?;
        Ok(Compiled {
            runtime: Runtime::Process(config.process.protocol),
            precompiled: serde_json::to_vec(&unpacked).expect("serialises"),
        })
    }

    /// Removes unpacked roots no stored version uses, and what an
    /// interrupted unpack left.
    fn collect_garbage(&self, in_use: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.config.dir.join("roots")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !in_use.contains(&name) {
                if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!("removing the unused root {name}: {error}");
                } else {
                    tracing::info!("removed the unpacked root {name}: no version uses it");
                }
            }
        }
    }

    fn load(&self, spec: LoadSpec) -> Result<Loaded, String> {
        let text = std::fs::read(&spec.precompiled).map_err(|error| error.to_string())?;
        let unpacked: Unpacked =
            serde_json::from_slice(&text).map_err(|error| error.to_string())?;
        let root = self.root_of(&unpacked.root);
        if !root.is_dir() {
            return Err(format!("the unpacked bundle {} is gone", root.display()));
        }
        let root = self.root_kind(&root, &spec.config)?;
        // The protocol is the version's setting (a cached unpack may have
        // been made for another version of the same bundle).
        let protocol = spec.config.process.protocol;
        let pool = pool::Pool::new(
            spec,
            root,
            self.sandbox.clone(),
            self.logs.clone(),
            self.metrics.clone(),
        );
        Ok(Loaded {
            prepared: pool,
            runtime: Runtime::Process(protocol),
        })
    }
}
