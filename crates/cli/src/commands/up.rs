use domain::ByteSize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run the platform in the foreground (embedded storage; Ctrl-C to stop).
#[derive(clap::Args)]
pub struct Up {
    /// Where state is kept (same as --data-dir).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
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
}

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
        if self.upload_expiry.is_zero() {
            anyhow::bail!("--upload-expiry must be longer than zero");
        }
        if self.event_retention.is_zero() {
            anyhow::bail!("--event-retention must be longer than zero");
        }
        let config = server::ServerConfig {
            listen: self.listen,
            data_dir: data_dir.clone(),
            max_upload: self.max_upload,
            shutdown_grace: self.shutdown_grace,
            upload_expiry: self.upload_expiry,
            event_retention: self.event_retention,
            wasm: runtime_wasm::WasmConfig {
                pooling: !self.no_pooling,
                max_instances: self.max_instances,
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
