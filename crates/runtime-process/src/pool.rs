//! A version's instances and the requests they serve. An instance is
//! started when a request finds none free (up to `max_instances`), serves
//! up to `concurrency` requests at once, and is stopped once it has been
//! idle for `idle_timeout` (down to `min_instances`). A slot is taken and
//! given back under one lock, and an instance is chosen for stopping under
//! the same lock only when it holds no request: scaling down never cuts a
//! request, and no request goes to an instance being stopped.
//!
//! Starting runs in a task of its own, so a caller that leaves does not
//! leave a half-started instance: it joins the pool idle.
//!
//! Requests go to `$PORT` inside the instance's network namespace over
//! HTTP/1.1 connections kept for reuse; the response streams back. The
//! invocation's timeout covers the wait for a slot, the start, and the
//! whole response: past it the instance is killed. When the program exits
//! (or the kernel kills it for memory), the requests it held end as
//! `function_crashed` (or `function_out_of_memory`) and the instance is
//! replaced on the next request.

use crate::Sandbox;
use crate::cgroup::{Group, GroupLimits};
use crate::helper::SpawnRequest;
use bytes::Bytes;
use domain::{
    FunctionConfig, FunctionName, InvocationId, LogLine, LogStream, Outcome, ProcessProtocol,
    ProjectId, now_millis,
};
use http_body::Frame;
use http_body_util::BodyExt;
use invoke::{
    Body, BoxError, BoxFuture, CountingBody, Failure, InstanceState, Invocation, LoadSpec, LogSink,
    Meter, PreparedFunction, RuntimeMetrics, Scale,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use tokio::time::Instant;

mod exec;
mod lambda;
mod services;

/// The port every instance listens on, inside its own namespace.
const PORT: u16 = 8080;

/// An instance this old takes no new request and is stopped once it holds
/// none (a new one starts on demand): the credentials it was given end
/// an hour and its timeout after it started.
const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a `lambda` bundle without a command runs, as Lambda's custom
/// runtimes do.
pub(crate) const BOOTSTRAP: &str = "bootstrap";

/// Processes (and threads) one instance may have.
const MAX_PIDS: u32 = 512;

/// An instance idle this long is frozen (at the next upkeep tick).
const FREEZE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest log line kept whole; longer ones are split.
const MAX_LOG_LINE: usize = 16 << 10;

/// First unprivileged uid instances run as outside; each instance has two
/// of its own within the next 100,000.
const OUTSIDE_ID_BASE: u32 = 200_000;

type Sender = hyper::client::conn::http1::SendRequest<RequestBody>;
type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What an instance runs on.
pub(crate) enum Root {
    /// A bundle's files, shown at `/app` over the host's system directories.
    Bundle(PathBuf),
    /// An unpacked image: the root itself, and what its config says to run.
    Image {
        rootfs: PathBuf,
        image: crate::image::ImageConfig,
    },
    /// A bundle's files at `/app` of a base image (the image's user,
    /// environment and command, unless the deploy gives its own).
    OnImage {
        app: PathBuf,
        rootfs: PathBuf,
        image: crate::image::ImageConfig,
    },
}

/// Why an instance is gone, read from its cgroup when it ended.
#[derive(Debug, Clone, Copy)]
struct Ended {
    out_of_memory: bool,
    /// The program's exit code (128 + the signal when killed by one), as
    /// its init reported it; `None` when the init itself was killed.
    status: Option<i32>,
    /// All the CPU time the instance used, read before its group goes.
    cpu_us: Option<u64>,
}

pub(crate) struct Instance {
    id: u64,
    pidfd: OwnedFd,
    netns: Arc<OwnedFd>,
    group: Group,
    ended: tokio::sync::watch::Sender<Option<Ended>>,
    /// Its outside uids, free again once it is dropped.
    _uid_slot: crate::UidSlot,
    /// Killed by wok (idle, timed out, its version gone).
    stopping: std::sync::atomic::AtomicBool,
    born: Instant,
    /// The last peak memory read, and when (ms after `born`).
    peak: std::sync::atomic::AtomicU64,
    peak_read_at: std::sync::atomic::AtomicU64,
    connections: Mutex<Vec<Sender>>,
    /// The Runtime API it is served (the `lambda` protocol).
    lambda: Option<Arc<lambda::RuntimeApi>>,
    /// The invocation it serves, or served last, when it serves one at a
    /// time (its output is tagged with it).
    serving: Mutex<Option<InvocationId>>,
    _permit: Permits,
}

/// An instance's places among its project's instances and the server's.
pub(crate) struct Permits {
    _project: tokio::sync::OwnedSemaphorePermit,
    _server: tokio::sync::OwnedSemaphorePermit,
}

impl Instance {
    fn kill(&self) {
        // No request goes to it from now on, dead or not yet.
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: pidfd_send_signal with a pidfd we own; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        // A frozen process acts on the kill only once thawed.
        let _ = self.group.set_frozen(false);
    }

    /// The instance's peak memory, read from its cgroup at most every
    /// 100 ms (a file read per request costs more than the proxying).
    fn peak_memory(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.born.elapsed().as_millis() as u64;
        let (read_at, peak) = (self.peak_read_at.load(Relaxed), self.peak.load(Relaxed));
        if peak != 0 && now.saturating_sub(read_at) < 100 {
            return peak;
        }
        let peak = self.group.peak_memory();
        self.peak.store(peak, Relaxed);
        self.peak_read_at.store(now, Relaxed);
        peak
    }

    /// Whether the instance is past [`MAX_AGE`]: it serves what it holds
    /// and is stopped.
    fn retiring(&self) -> bool {
        self.born.elapsed() >= MAX_AGE
    }

    fn has_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// Whether the instance is known to be gone or going (no system call).
    fn is_gone(&self) -> bool {
        self.has_ended() || self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the instance's init is still running, asked of the kernel
    /// (the watcher may not have seen an exit yet).
    fn is_running(&self) -> bool {
        if self.is_gone() {
            return false;
        }
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&self.pidfd),
            nix::poll::PollFlags::POLLIN,
        )];
        // A pidfd is readable once the process has exited.
        !matches!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
            Ok(1..)
        )
    }

    /// How the instance ended, waiting up to `wait` for it to end.
    async fn ending(&self, wait: std::time::Duration) -> Option<Ended> {
        let mut ended = self.ended.subscribe();
        tokio::time::timeout(wait, ended.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|ended| ended.ok().and_then(|ended| *ended))
    }

    /// A connection to the program: a kept one, else a new one.
    async fn connection(&self, sandbox: &Sandbox) -> std::io::Result<Sender> {
        loop {
            let kept = self
                .connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let Some(mut sender) = kept else { break };
            // Ready at once, unless the program closed it meanwhile.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = sandbox.connector.connect(&self.netns, PORT).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn keep(&self, sender: Sender) {
        // Just after an answer the connection may not be ready yet (hyper
        // finishes the exchange on its own task): kept unless closed.
        if !sender.is_closed() && self.is_running() {
            self.connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sender);
        }
    }
}

struct Slot {
    instance: Arc<Instance>,
    in_flight: u32,
    /// Started for a waiting request, which has not been served yet: its
    /// first request is a cold start (one started ahead, for
    /// `min_instances`, serves warm).
    cold_pending: bool,
    /// How long it took to start.
    started_in: std::time::Duration,
    idle_since: Instant,
    frozen: bool,
}

impl Slot {
    fn state(&self) -> InstanceState {
        if self.in_flight > 0 {
            InstanceState::Busy
        } else if self.frozen {
            InstanceState::Frozen
        } else {
            InstanceState::Idle
        }
    }
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    starting: u32,
}

pub(crate) struct Pool {
    me: Weak<Pool>,
    project: ProjectId,
    function: FunctionName,
    config: Arc<FunctionConfig>,
    root: Root,
    sandbox: Arc<Sandbox>,
    logs: Arc<dyn LogSink>,
    metrics: Arc<dyn RuntimeMetrics>,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
    /// `exec`: processes of this version running at once.
    exec_slots: Arc<tokio::sync::Semaphore>,
}

/// A request's hold on an instance; given back when dropped.
struct Lease {
    pool: Arc<Pool>,
    instance: Arc<Instance>,
    cold: bool,
    /// The instance's CPU time when the call began, when it serves one
    /// call at a time (then the difference is the call's).
    cpu_start: Option<u64>,
    /// The instance's start, when it was made for this call.
    init: Option<std::time::Duration>,
}

impl Lease {
    /// Ends the call as a failure: its record and its error.
    fn fail(&self, meter: &Meter, outcome: Outcome, message: String) -> Failure {
        self.meter_cpu(meter);
        meter.finish(outcome, self.instance.peak_memory(), self.cold);
        Failure::new(outcome, message)
    }

    /// Puts the call's CPU time on its meter, when it can be told.
    fn meter_cpu(&self, meter: &Meter) {
        if let (Some(start), Some(now)) = (self.cpu_start, self.instance.group.cpu_micros()) {
            meter.cpu_time(now.saturating_sub(start));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // `serving` keeps naming this invocation: output read a moment
        // after the answer is still its own.
        let mut state = self.pool.lock();
        if let Some(slot) = state
            .slots
            .iter_mut()
            .find(|slot| slot.instance.id == self.instance.id)
        {
            slot.in_flight -= 1;
            slot.idle_since = Instant::now();
            if slot.in_flight == 0 {
                self.pool
                    .metrics
                    .instance_state(Some(InstanceState::Busy), Some(InstanceState::Idle));
            }
        }
        drop(state);
        self.pool.changed.notify_waiters();
    }
}

impl Pool {
    pub fn new(
        spec: LoadSpec,
        root: Root,
        sandbox: Arc<Sandbox>,
        logs: Arc<dyn LogSink>,
        metrics: Arc<dyn RuntimeMetrics>,
    ) -> Arc<Pool> {
        let max_instances = spec.config.process.max_instances as usize;
        Arc::new_cyclic(|me| Pool {
            me: me.clone(),
            project: spec.project,
            function: spec.function,
            config: Arc::new(spec.config),
            root,
            sandbox,
            logs,
            metrics,
            exec_slots: Arc::new(tokio::sync::Semaphore::new(max_instances)),
            state: Mutex::new(State::default()),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes slots out of the pool (their instances are gone or going).
    fn remove_slots(&self, state: &mut State, gone: impl Fn(&Slot) -> bool) -> Vec<Slot> {
        let (removed, kept): (Vec<Slot>, Vec<Slot>) = std::mem::take(&mut state.slots)
            .into_iter()
            .partition(|slot| gone(slot));
        state.slots = kept;
        for slot in &removed {
            self.metrics.instance_state(Some(slot.state()), None);
        }
        removed
    }

    fn this(&self) -> Arc<Pool> {
        self.me.upgrade().expect("a pool in use is alive")
    }

    /// A slot on an instance: a free one, else a new instance, else the
    /// first one freed; `None` past the deadline.
    async fn acquire(
        &self,
        deadline: Instant,
        invocation: &InvocationId,
    ) -> Result<Lease, Failure> {
        let process = &self.config.process;
        // A Lambda runtime takes one invocation at a time.
        let concurrency = match process.protocol {
            ProcessProtocol::Lambda => 1,
            _ => process.concurrency,
        };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let failure = {
                let mut state = self.lock();
                self.remove_slots(&mut state, |slot| slot.instance.is_gone());
                // The least busy running instance; a frozen one last.
                let free = state
                    .slots
                    .iter_mut()
                    .filter(|slot| slot.in_flight < concurrency && !slot.instance.retiring())
                    .min_by_key(|slot| (slot.frozen, slot.in_flight));
                // The kernel is asked about the chosen one only (its
                // watcher may not have seen an exit yet).
                if let Some(slot) = free.as_ref()
                    && !slot.instance.is_running()
                {
                    let dead = slot.instance.id;
                    self.remove_slots(&mut state, |slot| slot.instance.id == dead);
                    continue;
                }
                if let Some(slot) = free {
                    let was = slot.state();
                    if slot.frozen {
                        // A write to the cgroup: microseconds.
                        if let Err(error) = slot.instance.group.set_frozen(false) {
                            tracing::warn!("thawing instance {}: {error}", slot.instance.id);
                        }
                        slot.frozen = false;
                    }
                    if slot.in_flight == 0 {
                        self.metrics
                            .instance_state(Some(was), Some(InstanceState::Busy));
                    }
                    slot.in_flight += 1;
                    let cold = std::mem::take(&mut slot.cold_pending);
                    let init = cold.then_some(slot.started_in);
                    let instance = slot.instance.clone();
                    drop(state);
                    if concurrency == 1 {
                        *instance.serving.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(invocation.clone());
                    }
                    let cpu_start = (concurrency == 1)
                        .then(|| instance.group.cpu_micros())
                        .flatten();
                    return Ok(Lease {
                        pool: self.this(),
                        instance,
                        cold,
                        cpu_start,
                        init,
                    });
                }
                let running = state
                    .slots
                    .iter()
                    .filter(|slot| !slot.instance.retiring())
                    .count() as u32;
                if running + state.starting < process.max_instances {
                    state.starting += 1;
                    drop(state);
                    self.metrics
                        .scaled(&self.project, &self.function, Scale::Out);
                    self.start_in_background(deadline, true)
                } else {
                    None
                }
            };
            if let Some(start) = failure {
                // A start that failed fails the request that asked for it.
                match start.await {
                    Ok(Ok(())) => continue,
                    Ok(Err(failure)) => return Err(failure),
                    Err(_) => {
                        return Err(Failure::new(
                            Outcome::Internal,
                            "starting an instance failed",
                        ));
                    }
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(Failure::new(
                    Outcome::Timeout,
                    "no instance was free within the function's timeout",
                ));
            }
        }
    }

    /// Starts an instance in a task of its own (its `starting` count taken
    /// by the caller); it joins the pool idle.
    fn start_in_background(
        &self,
        deadline: Instant,
        for_request: bool,
    ) -> Option<tokio::task::JoinHandle<Result<(), Failure>>> {
        let pool = self.this();
        self.metrics
            .instance_state(None, Some(InstanceState::Starting));
        Some(tokio::spawn(async move {
            let begun = Instant::now();
            let started = pool.start(deadline).await;
            let started_in = begun.elapsed();
            let mut state = pool.lock();
            state.starting -= 1;
            match &started {
                Ok(_) => {
                    pool.metrics.instantiated(
                        &pool.project,
                        &pool.function,
                        started_in.as_secs_f64(),
                    );
                    pool.metrics
                        .instance_state(Some(InstanceState::Starting), Some(InstanceState::Idle));
                }
                Err(_) => pool
                    .metrics
                    .instance_state(Some(InstanceState::Starting), None),
            }
            let result = started.map(|instance| {
                state.slots.push(Slot {
                    instance,
                    in_flight: 0,
                    cold_pending: for_request,
                    started_in,
                    idle_since: Instant::now(),
                    frozen: false,
                });
            });
            drop(state);
            pool.changed.notify_waiters();
            result
        }))
    }

    fn spawn_request(&self, uid_slot: u32, group: &Group) -> SpawnRequest {
        let mut env = vec![
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            ("HOME".to_owned(), "/tmp".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ];
        // wok's API and the way out: the image's or the deploy's own
        // settings, below, win.
        let proxy = format!("http://127.0.0.1:{}", services::PROXY_PORT);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.push((name.to_owned(), proxy.clone()));
        }
        for name in ["NO_PROXY", "no_proxy"] {
            env.push((name.to_owned(), "127.0.0.1,localhost".to_owned()));
        }
        let mut listen = vec![services::PROXY_PORT];
        if let Some(platform) = &self.sandbox.platform {
            let api = format!("http://127.0.0.1:{}", services::API_PORT);
            let credentials = platform.credentials(
                &self.project,
                MAX_AGE + self.config.limits.timeout + std::time::Duration::from_secs(60),
            );
            env.extend(
                [
                    ("WOK_API", api.as_str()),
                    ("WOK_TOKEN", credentials.token.as_str()),
                    ("WOK_PROJECT", self.project.as_str()),
                    ("WOK_FUNCTION", self.function.as_str()),
                    ("AWS_ENDPOINT_URL", api.as_str()),
                    ("AWS_ACCESS_KEY_ID", credentials.access_key_id.as_str()),
                    (
                        "AWS_SECRET_ACCESS_KEY",
                        credentials.secret_access_key.as_str(),
                    ),
                ]
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
            );
            listen.push(services::API_PORT);
        }
        let command = &self.config.process.command;
        let (argv, cwd, app, image_root, uid, gid, image_env) = match &self.root {
            Root::Bundle(app) => (
                if command.is_empty() {
                    vec![format!("./{BOOTSTRAP}")]
                } else {
                    command.clone()
                },
                "/app".to_owned(),
                Some(app.clone()),
                None,
                crate::helper::INSIDE_ID,
                crate::helper::INSIDE_ID,
                Vec::new(),
            ),
            Root::Image { rootfs, image } => (
                if command.is_empty() {
                    image.command.clone()
                } else {
                    command.clone()
                },
                image.working_dir.clone(),
                None,
                Some(rootfs.clone()),
                image.uid,
                image.gid,
                image.env.clone(),
            ),
            Root::OnImage { app, rootfs, image } => (
                if command.is_empty() {
                    image.command.clone()
                } else {
                    command.clone()
                },
                "/app".to_owned(),
                Some(app.clone()),
                Some(rootfs.clone()),
                image.uid,
                image.gid,
                image.env.clone(),
            ),
        };
        // The image's, then the deploy's: each overrides what came before.
        for (name, value) in image_env.iter().chain(&self.config.env) {
            env.retain(|(existing, _)| existing != name);
            env.push((name.clone(), value.clone()));
        }
        env.retain(|(name, _)| name != "PORT");
        env.push(("PORT".to_owned(), PORT.to_string()));
        if self.config.process.protocol == ProcessProtocol::Lambda {
            let memory = self.config.limits.memory_mib().to_string();
            env.extend(
                [
                    ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
                    ("AWS_LAMBDA_FUNCTION_NAME", self.function.as_str()),
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.as_str()),
                    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                    ("LAMBDA_TASK_ROOT", "/app"),
                    ("AWS_REGION", "wok"),
                ]
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
            );
        }
        SpawnRequest {
            argv,
            env,
            cwd,
            app,
            image_root,
            uid,
            gid,
            mount_point: self.sandbox.mount_point.clone(),
            // Its pages are charged to the memory limit: half of it, so that
            // a full /tmp is ENOSPC, not an OOM kill.
            tmp_bytes: self.config.limits.memory.bytes() / 2,
            outside_id: OUTSIDE_ID_BASE + 2 * uid_slot,
            cgroup_procs: group.procs(),
            stdin: false,
            listen: {
                if self.config.process.protocol == ProcessProtocol::Lambda {
                    listen.push(lambda::RUNTIME_API_PORT);
                }
                listen
            },
            hostname: "wok".to_owned(),
        }
    }

    /// Starts an instance and waits until its port accepts.
    async fn start(self: &Arc<Self>, deadline: Instant) -> Result<Arc<Instance>, Failure> {
        let permit = self.instance_permit(deadline).await?;
        let id = self.sandbox.next_id();
        let launched = self.launch(id, permit, false, Vec::new()).await?;
        self.serve_launched(launched, deadline).await
    }

    /// Room for one more instance of this project, and on this server,
    /// waited for until the deadline.
    async fn instance_permit(&self, deadline: Instant) -> Result<Permits, Failure> {
        let take = |semaphore: Arc<tokio::sync::Semaphore>, whose: &'static str| async move {
            tokio::time::timeout_at(deadline, semaphore.acquire_owned())
                .await
                .map_err(|_| {
                    Failure::new(
                        Outcome::Timeout,
                        format!("{whose} runs its most process instances; none was freed within the function's timeout"),
                    )
                })?
                .map_err(|_| Failure::new(Outcome::Internal, "the process runtime is closed"))
        };
        let project = take(self.sandbox.project_instances(&self.project), "the project").await?;
        let server = take(self.sandbox.instances.clone(), "the server").await?;
        Ok(Permits {
            _project: project,
            _server: server,
        })
    }

    /// A launched `http` instance: its output to the logs, ready once its
    /// port accepts, its CPU capped from then on.
    async fn serve_launched(
        self: &Arc<Self>,
        launched: Launched,
        deadline: Instant,
    ) -> Result<Arc<Instance>, Failure> {
        let instance = launched.instance.clone();
        for (pipe, stream) in [
            (launched.stdout, LogStream::Stdout),
            (launched.stderr, LogStream::Stderr),
        ] {
            tokio::spawn(self.clone().read_log(instance.clone(), pipe, stream));
        }
        match &instance.lambda {
            Some(api) => self.lambda_ready(&instance, api, deadline).await?,
            _ => self.port_ready(&instance, deadline).await?,
        }
        // The start ran at full speed; from now on, its share.
        let millis = self
            .config
            .process
            .cpu_millis_for(self.config.limits.memory);
        if let Err(error) = instance.group.cap_cpu(millis) {
            instance.kill();
            return Err(Failure::new(
                Outcome::Internal,
                format!("capping the instance's CPU: {error}"),
            ));
        }
        Ok(instance)
    }

    /// Waits until the program accepts on its port; keeps that connection.
    async fn port_ready(&self, instance: &Arc<Instance>, deadline: Instant) -> Result<(), Failure> {
        // Fine steps first (a static server listens within a few
        // milliseconds), growing to 10 ms.
        let mut pause = std::time::Duration::from_micros(100);
        loop {
            match self.sandbox.connector.connect(&instance.netns, PORT).await {
                Ok(stream) => {
                    let sender = async {
                        let (sender, connection) = hyper::client::conn::http1::handshake(
                            hyper_util::rt::TokioIo::new(stream),
                        )
                        .await?;
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        Ok::<_, hyper::Error>(sender)
                    }
                    .await;
                    if let Ok(sender) = sender {
                        instance.keep(sender);
                    }
                    return Ok(());
                }
                Err(_) if instance.has_ended() => {
                    return Err(Failure::new(
                        Outcome::Crashed,
                        format!(
                            "the program exited before it listened on $PORT ({PORT}); see its logs"
                        ),
                    ));
                }
                Err(_) if Instant::now() + pause >= deadline => {
                    instance.kill();
                    return Err(Failure::new(
                        Outcome::Timeout,
                        format!(
                            "the program did not listen on $PORT ({PORT}) within the function's timeout"
                        ),
                    ));
                }
                Err(_) => {
                    if pause < std::time::Duration::from_millis(2) {
                        self.sandbox.timer.sleep(pause).await;
                    } else {
                        tokio::time::sleep(pause).await;
                    }
                    pause = (pause * 3 / 2).min(std::time::Duration::from_millis(10));
                }
            }
        }
    }

    /// Makes an instance: its cgroup, its pipes, the sandbox (by the
    /// helper), and the task that watches for its end.
    async fn launch(
        self: &Arc<Self>,
        id: u64,
        permit: Permits,
        stdin: bool,
        extra_env: Vec<(String, String)>,
    ) -> Result<Launched, Failure> {
        let internal = |message: String| Failure::new(Outcome::Internal, message);
        let limits = GroupLimits {
            memory_bytes: self.config.limits.memory.bytes(),
            pids: MAX_PIDS,
            cpu_millis: self
                .config
                .process
                .cpu_millis_for(self.config.limits.memory),
        };
        let this = self.clone();
        let uid_slot = self
            .sandbox
            .take_uid_slot()
            .ok_or_else(|| internal("no outside uid is free for another instance".to_owned()))?;
        let spawned = tokio::task::spawn_blocking(move || {
            let group = this
                .sandbox
                .hierarchy
                .group(&format!("i{id}"), limits)
                .map_err(|error| error.to_string())?;
            let pipes = (|| -> nix::Result<_> {
                let flags = nix::fcntl::OFlag::O_CLOEXEC;
                Ok((
                    nix::unistd::pipe2(flags)?,
                    nix::unistd::pipe2(flags)?,
                    nix::unistd::pipe2(flags)?,
                    nix::unistd::pipe2(flags)?,
                ))
            })();
            let (out, err, status, input) = match pipes {
                Ok(pipes) => pipes,
                Err(error) => {
                    let _ = group.remove();
                    return Err(format!("pipes: {error}"));
                }
            };
            let mut request = this.spawn_request(uid_slot.number, &group);
            request.stdin = stdin;
            request.env.extend(extra_env);
            let mut fds = vec![&out.1, &err.1, &status.1];
            if stdin {
                fds.push(&input.0);
            }
            match this.sandbox.spawn(&request, &fds) {
                Ok(spawned) => {
                    let listeners = request.listen.iter().copied().zip(spawned.listeners);
                    Ok((
                        group,
                        spawned.pidfd,
                        spawned.netns,
                        listeners.collect::<Vec<_>>(),
                        out.0,
                        err.0,
                        status.0,
                        input.1,
                        uid_slot,
                    ))
                }
                Err(error) => {
                    let _ = group.remove();
                    Err(error)
                }
            }
        })
        .await
        .map_err(|error| internal(error.to_string()))?
        .map_err(|error| internal(format!("the sandbox could not start: {error}")))?;
        let (group, pidfd, netns, listeners, stdout, stderr, status, stdin_write, uid_slot) =
            spawned;
        let instance = Arc::new(Instance {
            id,
            pidfd,
            netns: Arc::new(netns),
            group,
            ended: tokio::sync::watch::channel(None).0,
            stopping: std::sync::atomic::AtomicBool::new(false),
            born: Instant::now(),
            peak: std::sync::atomic::AtomicU64::new(0),
            peak_read_at: std::sync::atomic::AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
            lambda: (self.config.process.protocol == ProcessProtocol::Lambda)
                .then(|| lambda::RuntimeApi::new(self.function.to_string())),
            serving: Mutex::new(None),
            _permit: permit,
            _uid_slot: uid_slot,
        });
        tokio::spawn(watch_exit(instance.clone(), status, Arc::downgrade(self)));
        for (port, listener) in listeners {
            let listener = match services::tokio_listener(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    instance.kill();
                    return Err(internal(format!("listening inside the instance: {error}")));
                }
            };
            match port {
                services::API_PORT => {
                    if let Some(platform) = &self.sandbox.platform {
                        services::serve_api(listener, &instance, platform.clone());
                    }
                }
                services::PROXY_PORT => services::serve_proxy(
                    listener,
                    &instance,
                    self.config.clone(),
                    self.function.clone(),
                ),
                _ => {
                    if let Some(api) = &instance.lambda {
                        lambda::serve(listener, &instance, api.clone());
                    }
                }
            }
        }
        Ok(Launched {
            instance,
            stdout,
            stderr,
            stdin: stdin.then_some(stdin_write),
        })
    }

    async fn read_log(self: Arc<Self>, instance: Arc<Instance>, pipe: OwnedFd, stream: LogStream) {
        use tokio::io::AsyncReadExt;
        let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else {
            return;
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 8192];
        loop {
            let read = pipe.read(&mut chunk).await.unwrap_or(0);
            if read == 0 {
                if !pending.is_empty() {
                    self.log(&instance, stream, &pending);
                }
                return;
            }
            pending.extend_from_slice(&chunk[..read]);
            while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                self.log(&instance, stream, &line[..line.len() - 1]);
            }
            if pending.len() > MAX_LOG_LINE {
                let line: Vec<u8> = pending.drain(..MAX_LOG_LINE).collect();
                self.log(&instance, stream, &line);
            }
        }
    }

    fn log(&self, instance: &Instance, stream: LogStream, line: &[u8]) {
        let name = format!("instance-{}", instance.id);
        let invocation = instance
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| InvocationId(name.clone()));
        self.logs.log(LogLine {
            project: self.project.clone(),
            function: self.function.clone(),
            invocation,
            instance: Some(name),
            time: now_millis(),
            stream,
            line: String::from_utf8_lossy(line).into_owned(),
        });
    }

    /// A slot for a call, or its failure recorded.
    async fn lease_for(
        &self,
        deadline: Instant,
        id: &InvocationId,
        meter: &Meter,
    ) -> Result<Lease, Failure> {
        let lease = self.acquire(deadline, id).await.inspect_err(|failure| {
            meter.finish(failure.outcome, 0, true);
        })?;
        if let Some(init) = lease.init {
            meter.init_time(init.as_micros() as u64);
        }
        Ok(lease)
    }

    async fn call(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<http::Response<Body>, Failure> {
        let limits = &self.config.limits;
        let deadline = Instant::now() + limits.timeout;
        let Invocation { id, request, meter } = invocation;
        let lease = self.lease_for(deadline, &id, &meter).await?;
        let instance = lease.instance.clone();
        let fail = |outcome: Outcome, message: String| lease.fail(&meter, outcome, message);
        let sender =
            match tokio::time::timeout_at(deadline, instance.connection(&self.sandbox)).await {
                Ok(Ok(sender)) => sender,
                Ok(Err(error)) => {
                    let outcome = self.failure_outcome(&instance).await;
                    return Err(fail(
                        outcome,
                        format!("the program refused the connection: {error}"),
                    ));
                }
                Err(_) => {
                    instance.kill();
                    return Err(fail(
                        Outcome::Timeout,
                        "the function ran past its timeout".to_owned(),
                    ));
                }
            };
        let head_request = request.method() == http::Method::HEAD;
        let (mut parts, body) = request.into_parts();
        // Origin form: the program sees the path and query, and the Host header.
        parts.uri = origin_form(&parts.uri);
        let body = CountingBody::request(body, meter.clone(), limits.max_request_body.bytes())
            .boxed_unsync();
        let mut sender = sender;
        let sent = tokio::time::timeout_at(
            deadline,
            sender.send_request(http::Request::from_parts(parts, body)),
        )
        .await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let outcome = self.failure_outcome(&instance).await;
                return Err(fail(
                    outcome,
                    format!("the program did not answer: {error}"),
                ));
            }
            Err(_) => {
                instance.kill();
                return Err(fail(
                    Outcome::Timeout,
                    "the function ran past its timeout".to_owned(),
                ));
            }
        };
        let (head, incoming) = response.into_parts();
        let body = ProxyBody {
            inner: incoming,
            sender: Some(sender),
            lease: Some(lease),
            meter: meter.clone(),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            done: false,
        };
        Ok(invoke::metered_response(
            http::Response::from_parts(head, body),
            meter,
            limits.max_response_body.bytes(),
            head_request,
        ))
    }

    /// What a broken connection means: the program ended (for memory, or
    /// otherwise), or it closed the connection without an answer.
    async fn failure_outcome(&self, instance: &Instance) -> Outcome {
        match instance.ending(std::time::Duration::from_millis(200)).await {
            Some(Ended {
                out_of_memory: true,
                ..
            }) => Outcome::OutOfMemory,
            Some(_) => Outcome::Crashed,
            None => Outcome::NoResponse,
        }
    }
}

/// A request's target as sent to the host itself: the path and query.
fn origin_form(uri: &http::Uri) -> http::Uri {
    uri.path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// An instance just made, and the server's ends of its pipes.
struct Launched {
    instance: Arc<Instance>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    stdin: Option<OwnedFd>,
}

/// Waits for the instance to end, records why, and cleans up after it.
async fn watch_exit(instance: Arc<Instance>, status: OwnedFd, pool: Weak<Pool>) {
    if let Ok(pidfd) = instance.pidfd.try_clone() {
        // SAFETY: an OwnedFd moved in: open, and the same, while registered.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        };
        // A pidfd is readable once the process has ended.
        if let Ok(pidfd) = registered {
            let _ = pidfd.readable().await;
        }
    }
    // Its init wrote the status before it exited (the pipe's other end
    // is closed now: this read does not wait).
    let mut code = [0u8; 4];
    let status =
        matches!(nix::unistd::read(&status, &mut code), Ok(4)).then(|| i32::from_le_bytes(code));
    let ended = Ended {
        out_of_memory: instance.group.oom_killed(),
        status,
        cpu_us: instance.group.cpu_micros(),
    };
    instance.ended.send_replace(Some(ended));
    instance
        .connections
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    if let Some(pool) = pool.upgrade() {
        let mut state = pool.lock();
        pool.remove_slots(&mut state, |slot| slot.instance.id == instance.id);
        drop(state);
        pool.changed.notify_waiters();
    }
    let cleanup = instance.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(error) = cleanup.group.remove() {
            tracing::warn!("removing instance {}'s cgroup: {error}", cleanup.id);
        }
    })
    .await;
}

/// The program's response body: ends the invocation when it ends (or the
/// deadline passes), then gives the connection and the slot back.
struct ProxyBody {
    inner: hyper::body::Incoming,
    sender: Option<Sender>,
    lease: Option<Lease>,
    meter: Arc<Meter>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl ProxyBody {
    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(lease) = self.lease.take() {
            let instance = &lease.instance;
            lease.meter_cpu(&self.meter);
            self.meter
                .finish(outcome, instance.peak_memory(), lease.cold);
            if outcome == Outcome::Timeout {
                instance.kill();
            } else if let Some(sender) = self.sender.take()
                && outcome == Outcome::Success
            {
                instance.keep(sender);
            }
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // Dropped before its end: the client left (the counting body
        // around this one tells the meter); the connection, mid-answer, is
        // not reused. At its end (the server stops polling once it has
        // sent the content-length), it is.
        if !http_body::Body::is_end_stream(&self.inner) {
            self.sender = None;
        }
        self.finish(Outcome::Success);
    }
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish(Outcome::Success);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.finish(Outcome::Success);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let crashed = this
                    .lease
                    .as_ref()
                    .is_some_and(|lease| lease.instance.has_ended());
                this.finish(if crashed {
                    Outcome::Crashed
                } else {
                    Outcome::NoResponse
                });
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.finish(Outcome::Timeout);
                    return Poll::Ready(Some(Err("the function ran past its timeout".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl PreparedFunction for Pool {
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'static, Result<http::Response<Body>, Failure>> {
        match self.config.process.protocol {
            ProcessProtocol::Http => Box::pin(self.this().call(invocation)),
            ProcessProtocol::Exec => Box::pin(self.this().call_exec(invocation)),
            ProcessProtocol::Lambda => Box::pin(self.this().call_lambda(invocation)),
        }
    }

    fn idle_instances(&self) -> usize {
        self.lock()
            .slots
            .iter()
            .filter(|slot| slot.in_flight == 0)
            .count()
    }

    /// Stops instances idle past the timeout, down to `min_instances`,
    /// starts instances up to it, and freezes those idle a moment.
    fn maintain(&self) {
        let process = &self.config.process;
        let mut state = self.lock();
        let now = Instant::now();
        let kept = std::cell::Cell::new(state.slots.len() as u32);
        let stop = self.remove_slots(&mut state, |slot| {
            if slot.in_flight == 0 && slot.instance.retiring() {
                kept.set(kept.get() - 1);
                return true;
            }
            let idle =
                slot.in_flight == 0 && now.duration_since(slot.idle_since) >= process.idle_timeout;
            if idle && kept.get() > process.min_instances {
                kept.set(kept.get() - 1);
                true
            } else {
                false
            }
        });
        for slot in &mut state.slots {
            let idle = slot.in_flight == 0 && now.duration_since(slot.idle_since) >= FREEZE_AFTER;
            if idle && !slot.frozen && slot.instance.is_running() {
                match slot.instance.group.set_frozen(true) {
                    Ok(()) => {
                        slot.frozen = true;
                        self.metrics
                            .instance_state(Some(InstanceState::Idle), Some(InstanceState::Frozen));
                    }
                    Err(error) => tracing::warn!("freezing instance {}: {error}", slot.instance.id),
                }
            }
        }
        let running = state
            .slots
            .iter()
            .filter(|slot| !slot.instance.retiring())
            .count() as u32;
        let missing = process
            .min_instances
            .saturating_sub(running + state.starting);
        state.starting += missing;
        drop(state);
        for slot in stop {
            slot.instance.kill();
            self.metrics
                .scaled(&self.project, &self.function, Scale::In);
        }
        for _ in 0..missing {
            let deadline = Instant::now() + self.config.limits.timeout;
            drop(self.start_in_background(deadline, false));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for slot in &self
            .state
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .slots
        {
            slot.instance.kill();
        }
    }
}
