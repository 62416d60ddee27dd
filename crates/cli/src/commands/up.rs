use domain::ByteSize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run the platform in the foreground (embedded storage unless --database
/// names a shared one; Ctrl-C to stop).
#[derive(clap::Args)]
pub struct Up {
    /// A PostgreSQL database to keep all shared state in, instead of the
    /// embedded SQLite: `postgres://USER@HOST:PORT/DATABASE`. Several nodes
    /// given the same database (and the same --blobs) serve the same
    /// projects. Keep the password out of the command line: put it in
    /// `PGPASSWORD`, or give the whole URL in `WOK_DATABASE_URL`. With
    /// `?sslmode=require`, TLS with the server's certificate verified (the
    /// system's roots, and `PGSSLROOTCERT`'s PEM file); else plain text.
    #[arg(
        long,
        env = "WOK_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// An S3-compatible bucket to keep object bytes and function code in,
    /// instead of the data directory: `s3://BUCKET[/PREFIX][?endpoint=URL&
    /// region=REGION]`; the key pair from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (never in the URL). Every node sharing a
    /// --database needs the same --blobs.
    #[arg(long, env = "WOK_BLOBS", value_name = "URL")]
    blobs: Option<String>,
    /// Connections this node opens to the database at most.
    #[arg(long, default_value_t = 32, value_name = "N")]
    database_connections: usize,
    /// Where state is kept (same as --data-dir).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "WOK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest component upload a deploy accepts.
    #[arg(long, default_value = "256MiB")]
    max_upload: ByteSize,
    /// Time in-flight requests get to finish after Ctrl-C or SIGTERM.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Multipart uploads neither completed nor aborted are aborted (their
    /// parts deleted) this long after they began.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    upload_expiry: Duration,
    /// Events (topic messages, change logs, ticks, asynchronous requests)
    /// are kept this long once every trigger reading them has passed them,
    /// for replays and reconnecting clients; idempotency keys as long.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    event_retention: Duration,
    /// Allocate instances on demand instead of from the pooling allocator.
    #[arg(long)]
    no_pooling: bool,
    /// Instances that can exist at once (pooling allocator slots).
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Process instances (of native functions) that can run at once.
    #[arg(long, default_value_t = 200)]
    max_process_instances: u32,
    /// Process instances one project's functions can run at once, so that
    /// no project takes them all (default: half of --max-process-instances).
    #[arg(long)]
    max_process_instances_per_project: Option<u32>,
    /// Run no native (process) functions: no sandbox helper is started.
    #[arg(long)]
    no_process: bool,
    /// HTTP connections open at once (default: 10000, or three quarters of
    /// the open-files limit if that is lower). At the limit, the oldest
    /// idle connection is closed to make room; if none is idle, the new
    /// one gets a 503.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Time a new connection, or a request that has begun, has to send its
    /// whole headers.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Slowest request body accepted (a second), once its first 10 seconds
    /// have passed; slower bodies are cut with 408 request_timeout.
    #[arg(long, default_value = "1KiB")]
    min_body_rate: ByteSize,
    /// Time a response write may make no progress (a client that does not
    /// read) before the connection is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// Asynchronous requests (`Prefer: respond-async`) that may wait for
    /// each function, queued or retrying; beyond, 429.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    async_max_queued: u64,
    /// Total size of the stored requests that may wait for each function.
    #[arg(long, default_value = "256MiB")]
    async_max_queued_bytes: ByteSize,
    /// Serve `/metrics` to anyone (by default it needs the metrics token,
    /// `metrics-token` in the data directory, or the admin token).
    #[arg(long)]
    public_metrics: bool,
    /// Behind a load balancer: take each client's address from the last
    /// `X-Forwarded-For` entry (which the balancer must set), for the
    /// per-address limits of sign-ins and sign-ups.
    #[arg(long, env = "WOK_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// The URL clients reach this server at (e.g. behind a load balancer,
    /// https://api.example.com): the links in app users' mails point
    /// there. Default: http:// and the address it listens on.
    #[arg(long, env = "WOK_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Let app users sign in with OpenID Connect providers whose issuer is
    /// plain http or at a loopback or private address (by default only
    /// https issuers and endpoints at public addresses are called). For
    /// tests against a provider on loopback; never in production.
    #[arg(long, env = "WOK_ALLOW_HTTP_ISSUERS")]
    allow_http_issuers: bool,
    /// Room kept on the data directory's disk (a file of zeros) and
    /// released when the disk fills, so that deletes still work; writes get
    /// 507 until twice this is free again. 0 keeps none.
    #[arg(long, default_value = "64MiB")]
    disk_reserve: ByteSize,
    /// Bytes of messages all realtime clients together may have unread;
    /// beyond, a client holding more than 1 MiB of them is closed (1013).
    #[arg(long, default_value = "1GiB")]
    realtime_buffer: ByteSize,
}

/// Largest request line and headers a connection accepts.
const MAX_HEADER_BYTES: usize = 64 << 10;

async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// `WOK_LOG` (default `info`). The S3 protocol crate logs every refused
/// request (a bad signature, an unknown key) as an error; those are the
/// client's mistakes, answered with an S3 error, so it is silenced unless
/// `WOK_LOG` names it.
fn log_filter(wok_log: Option<String>) -> tracing_subscriber::EnvFilter {
    let mut directives = wok_log.unwrap_or_else(|| "info".to_owned());
    if !directives.contains("s3s") {
        directives.push_str(",s3s=off");
    }
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off"))
}

impl Up {
    pub async fn run(self, data_dir: PathBuf) -> anyhow::Result<ExitCode> {
        let data_dir = self.data.clone().unwrap_or(data_dir);
        tracing_subscriber::fmt()
            .with_env_filter(log_filter(std::env::var("WOK_LOG").ok()))
            .with_writer(std::io::stderr)
            .init();
        if self.max_instances == 0 {
            anyhow::bail!("--max-instances must be at least 1");
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("--public-url {url:?} must start with http:// or https://");
        }
        if self.max_process_instances == 0 || self.max_process_instances_per_project == Some(0) {
            anyhow::bail!("--max-process-instances and its per-project share must be at least 1");
        }
        if self.upload_expiry.is_zero() {
            anyhow::bail!("--upload-expiry must be longer than zero");
        }
        if self.event_retention.is_zero() {
            anyhow::bail!("--event-retention must be longer than zero");
        }
        for (flag, duration) in [
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
        ] {
            if duration < Duration::from_millis(100) {
                anyhow::bail!("{flag} must be at least 100ms");
            }
        }
        if self.async_max_queued == 0 || self.async_max_queued_bytes.bytes() == 0 {
            anyhow::bail!("--async-max-queued and --async-max-queued-bytes must be above zero");
        }
        if self.realtime_buffer.bytes() == 0 {
            anyhow::bail!("--realtime-buffer must be above zero");
        }
        if self.min_body_rate.bytes() == 0 {
            anyhow::bail!("--min-body-rate must be at least 1 byte");
        }
        let max_connections = match self.max_connections {
            Some(0) => anyhow::bail!("--max-connections must be at least 1"),
            Some(max) => max,
            None => server::default_max_connections(),
        };
        if self.database_connections < 2 {
            anyhow::bail!("--database-connections must be at least 2");
        }
        let database = self.database.map(|url| server::PgOptions {
            password: std::env::var("PGPASSWORD").ok(),
            root_certificates: std::env::var_os("PGSSLROOTCERT").map(std::path::PathBuf::from),
            max_connections: self.database_connections,
            ..server::PgOptions::new(url)
        });
        let blobs = match &self.blobs {
            None => None,
            Some(url) => Some(
                server::S3Config::from_url(url, &|name| std::env::var(name).ok())
                    .map_err(|error| anyhow::anyhow!("--blobs: {error}"))?,
            ),
        };
        if blobs.is_some() && database.is_none() {
            anyhow::bail!(
                "--blobs needs --database: nodes that share blobs must share their metadata too"
            );
        }
        let config = server::ServerConfig {
            database,
            blobs,
            listen: self.listen,
            data_dir: data_dir.clone(),
            max_upload: self.max_upload,
            shutdown_grace: self.shutdown_grace,
            upload_expiry: self.upload_expiry,
            event_retention: self.event_retention,
            public_metrics: self.public_metrics,
            trust_forwarded_for: self.trust_forwarded_for,
            public_url: self.public_url.clone(),
            allow_http_issuers: self.allow_http_issuers,
            disk_reserve: self.disk_reserve,
            realtime_buffer: self.realtime_buffer,
            async_queue: server::AsyncQueueLimit {
                requests: self.async_max_queued,
                bytes: self.async_max_queued_bytes.bytes(),
            },
            connections: server::ConnectionLimits {
                max_connections,
                header_timeout: self.header_timeout,
                idle_timeout: self.idle_timeout,
                min_body_rate: self.min_body_rate.bytes(),
                write_timeout: self.write_timeout,
                max_header_bytes: MAX_HEADER_BYTES,
            },
            wasm: runtime_wasm::WasmConfig {
                pooling: !self.no_pooling,
                max_instances: self.max_instances,
            },
            process: server::ProcessSettings {
                helper_program: if self.no_process {
                    None
                } else {
                    Some(std::env::current_exe()?)
                },
                max_instances: self.max_process_instances,
                max_instances_per_project: self
                    .max_process_instances_per_project
                    .unwrap_or(self.max_process_instances.div_ceil(2))
                    .min(self.max_process_instances),
            },
        };
        server::run(
            config,
            |address| {
                println!("wok listening on http://{address}");
                println!("data directory: {}", data_dir.display());
                use std::io::Write;
                let _ = std::io::stdout().flush();
            },
            stop_signal(),
        )
        .await?;
        eprintln!("wok stopped");
        Ok(ExitCode::SUCCESS)
    }
}
