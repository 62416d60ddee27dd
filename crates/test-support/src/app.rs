//! The whole server in-process (`server::run_with`, the composition `wok
//! up` runs), on a loopback port of its own, with a fresh data directory
//! and a [`ManualClock`]: key-value expiry, event retries, schedules and
//! asynchronous invocations go by the clock the test moves. It runs on a
//! thread and runtime of its own, so a test's runtime (and its flavor)
//! does not matter, and dropping the app stops it.
use events::ManualClock;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The server's clock: move it with `set` or `advance`.
    pub clock: Arc<ManualClock>,
    data_dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The settings of a test server: `wok up`'s defaults, but for a pool of
/// 64 instances (tests run many servers at once), no disk reserve and a
/// short grace at shutdown.
pub fn test_config(data_dir: &Path) -> server::ServerConfig {
    server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        data_dir: data_dir.to_owned(),
        max_upload: domain::ByteSize::mib(256),
        shutdown_grace: Duration::from_secs(5),
        upload_expiry: Duration::from_secs(7 * 24 * 3600),
        event_retention: Duration::from_secs(7 * 24 * 3600),
        trust_forwarded_for: false,
        public_url: None,
        allow_http_issuers: false,
        public_metrics: false,
        disk_reserve: domain::ByteSize(0),
        realtime_buffer: domain::ByteSize(1 << 30),
        async_queue: server::AsyncQueueLimit {
            requests: 1000,
            bytes: 256 << 20,
        },
        connections: server::ConnectionLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            min_body_rate: 1024,
            write_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        },
        wasm: runtime_wasm::WasmConfig {
            pooling: true,
            max_instances: 64,
        },
        // The test binary cannot be the sandbox helper: native functions
        // are tested through the real binary.
        process: server::ProcessSettings {
            helper_program: None,
            max_instances: 16,
            max_instances_per_project: 8,
        },
        database: None,
        blobs: None,
    }
}

impl TestApp {
    /// A server with the test settings and a new, empty data directory.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A server with the test settings as `configure` leaves them.
    pub fn start_with(configure: impl FnOnce(&mut server::ServerConfig)) -> Self {
        let data_dir = tempfile::tempdir().expect("creating a data directory");
        let mut config = test_config(data_dir.path());
        configure(&mut config);
        Self::launch(config, data_dir, Arc::new(ManualClock::default()))
    }

    fn launch(
        config: server::ServerConfig,
        data_dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
    ) -> Self {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_clock = clock.clone();
        let thread = std::thread::Builder::new()
            .name("test-app".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                let failed = ready_tx.clone();
                let result = runtime.block_on(server::run_with(
                    config,
                    server_clock,
                    move |address| {
                        let _ = ready_tx.send(Ok(address));
                    },
                    async move {
                        let _ = stopped.await;
                    },
                ));
                if let Err(error) = result {
                    let _ = failed.send(Err(format!("{error:#}")));
                }
            })
            .expect("starting the server thread");
        let address = ready
            .recv_timeout(Duration::from_secs(120))
            .expect("the server started within 120 s")
            .unwrap_or_else(|error| panic!("the server failed to start: {error}"));
        Self {
            url: format!("http://{address}"),
            clock,
            data_dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Stops the server as a stop signal does (in-flight requests finish,
    /// records are written) and starts it again on the same data
    /// directory and clock (on another port: see `url`).
    pub fn restart(mut self) -> Self {
        self.shut_down();
        let data_dir = std::mem::replace(
            &mut self.data_dir,
            tempfile::tempdir().expect("a placeholder directory"),
        );
        let config = test_config(data_dir.path());
        Self::launch(config, data_dir, self.clock.clone())
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl crate::Endpoint for TestApp {
    fn url(&self) -> &str {
        &self.url
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin-token"))
            .expect("the admin token file")
            .trim()
            .to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shut_down();
    }
}
