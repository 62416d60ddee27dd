use crate::client::Client;
use anyhow::{Context, bail};
use api_types::{DeploySettings, FunctionInfo};
use futures::StreamExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Deploy a WebAssembly component, or a native program (`--runtime
/// process`: a directory, `.tar` or `.tar.gz` and a `--command`), as a new
/// immutable version of a function; with no NAME and PATH, deploy every
/// function `wok.toml` names.
#[derive(clap::Args, Default)]
pub struct Deploy {
    /// Function name (lowercase letters, digits and '-').
    #[arg(requires = "path")]
    name: Option<String>,
    /// The component (.wasm) to deploy; with `--runtime process`, a
    /// directory, `.tar`, `.tar.gz` or `.zip` of the program's files.
    path: Option<PathBuf>,
    /// The manifest read when NAME and PATH are not given.
    #[arg(long, default_value = "wok.toml", conflicts_with = "name")]
    manifest: PathBuf,
    /// What runs the code: wasm (the default) or process (a native program in a sandbox).
    #[arg(long)]
    runtime: Option<String>,
    /// With --runtime process: the program and its arguments, run in /app, e.g. "python3 app.py".
    #[arg(long)]
    command: Option<String>,
    /// With --runtime process: how the program receives work: http (it serves HTTP on $PORT) exec (a process per request: the body on stdin, the answer from stdout) or lambda (the AWS Lambda Runtime API).
    #[arg(long)]
    protocol: Option<String>,
    /// With --runtime process: requests one instance serves at once (default 1).
    #[arg(long)]
    concurrency: Option<u32>,
    /// With --runtime process: instances kept running when idle (default 0).
    #[arg(long)]
    min_instances: Option<u32>,
    /// With --runtime process: most instances at once (default 10).
    #[arg(long)]
    max_instances: Option<u32>,
    /// With --runtime process: an instance idle this long is stopped (default 5m).
    #[arg(long)]
    idle_timeout: Option<String>,
    /// With --runtime process: CPU cores per instance, e.g. 0.5 (default: a core per 1,769 MiB of memory).
    #[arg(long)]
    cpu: Option<String>,
    /// With --runtime process: run the bundle on the image of another process function of the project (NAME, or NAME@VERSION) instead of the host's system directories.
    #[arg(long)]
    base: Option<String>,
    /// Memory limit, e.g. 128MiB.
    #[arg(long)]
    memory: Option<String>,
    /// Wall-clock timeout per invocation, e.g. 10s.
    #[arg(long)]
    timeout: Option<String>,
    /// Environment and config variable NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Host outbound HTTP may reach: HOST, HOST:PORT or *.DOMAIN (repeatable).
    #[arg(long = "allow-outbound", value_name = "HOST")]
    allow_outbound: Vec<String>,
    /// Invocations running at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Invocations waiting for a slot before 429.
    #[arg(long)]
    max_queue: Option<u32>,
    /// Largest request body, e.g. 16MiB.
    #[arg(long)]
    max_request_body: Option<String>,
    /// Largest response body, e.g. 1GiB.
    #[arg(long)]
    max_response_body: Option<String>,
    /// Reuse instances across requests (for guests with slow start-up; not for componentize-js guests).
    #[arg(long)]
    reuse: bool,
    /// With --reuse: requests one instance serves before it is replaced.
    #[arg(long)]
    reuse_max_requests: Option<u32>,
    /// With --reuse: an instance idle this long is dropped, e.g. 60s.
    #[arg(long)]
    reuse_idle_timeout: Option<String>,
    /// A trigger (repeatable): `queue=TOPIC`, `cron=SCHEDULE`, `docs=COLLECTION`
    /// or `objects=BUCKET`, then `;KEY=VALUE` settings (see the README).
    #[arg(long = "trigger", value_name = "TRIGGER")]
    triggers: Vec<String>,
    /// Where a successful asynchronous invocation's outcome goes: topic:NAME or function:NAME.
    #[arg(long)]
    on_success: Option<String>,
    /// Where a failed asynchronous invocation's outcome goes: topic:NAME or function:NAME.
    #[arg(long)]
    on_failure: Option<String>,
    /// Deliveries of an asynchronous invocation before it fails (default 3).
    #[arg(long)]
    async_max_attempts: Option<u32>,
    /// First wait before an asynchronous invocation is retried (default 1s; doubles).
    #[arg(long)]
    async_retry_delay: Option<String>,
    /// Oldest an asynchronous invocation is tried (default 6h).
    #[arg(long)]
    async_max_age: Option<String>,
    /// Who may call it over HTTP: none (anyone, the default), any (a key
    /// of the project or a signed-in app user) or user (a signed-in app user).
    #[arg(long, value_name = "WHO")]
    require_auth: Option<String>,
    /// With whose access a wasm function reaches the project's data:
    /// service (the project's, the default) or caller (the caller's keys
    /// and per-user rules, as if it called the data API itself).
    #[arg(long, value_name = "WHOSE")]
    data_access: Option<String>,
    /// The settings a manifest gave, instead of the flags.
    #[arg(skip)]
    manifest_settings: Option<DeploySettings>,
}

impl Deploy {
    /// The flags as deploy settings, the one shape the control API takes.
    fn settings(&self) -> anyhow::Result<DeploySettings> {
        if let Some(settings) = &self.manifest_settings {
            return Ok(settings.clone());
        }
        let mut env = std::collections::BTreeMap::new();
        for pair in &self.env {
            let Some((name, value)) = pair.split_once('=') else {
                bail!("--env {pair:?} must look like NAME=VALUE");
            };
            env.insert(name.to_owned(), value.to_owned());
        }
        Ok(DeploySettings {
            runtime: self.runtime.clone(),
            command: self.command.clone(),
            protocol: self.protocol.clone(),
            concurrency: self.concurrency,
            min_instances: self.min_instances,
            max_instances: self.max_instances,
            idle_timeout: self.idle_timeout.clone(),
            cpu: self.cpu.clone(),
            base: self.base.clone(),
            base_artifact: None,
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            env,
            allow_outbound: self.allow_outbound.clone(),
            max_concurrency: self.max_concurrency,
            max_queue: self.max_queue,
            max_request_body: self.max_request_body.clone(),
            max_response_body: self.max_response_body.clone(),
            reuse: self.reuse.then_some(true),
            reuse_max_requests: self.reuse_max_requests,
            reuse_idle_timeout: self.reuse_idle_timeout.clone(),
            triggers: self
                .triggers
                .iter()
                .map(|line| api_types::Trigger::Line(line.clone()))
                .collect(),
            on_success: self.on_success.clone(),
            on_failure: self.on_failure.clone(),
            async_max_attempts: self.async_max_attempts,
            async_retry_delay: self.async_retry_delay.clone(),
            require_auth: self.require_auth.clone(),
            data_access: self.data_access.clone(),
            async_max_age: self.async_max_age.clone(),
        })
    }

    fn query(&self) -> anyhow::Result<String> {
        let pairs = self.settings()?.query_pairs().map_err(anyhow::Error::msg)?;
        Ok(pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", urlencoding::encode(value)))
            .collect::<Vec<_>>()
            .join("&"))
    }

    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let (Some(name), Some(path)) = (&self.name, &self.path) else {
            for function in crate::manifest::read(&self.manifest)? {
                let deploy = Deploy::from_manifest(function.name, function.path, function.settings);
                Box::pin(deploy.run(client.clone())).await?;
            }
            return Ok(ExitCode::SUCCESS);
        };
        let (name, path) = (name.clone(), path.clone());
        let query = self.query()?;
        let code = if path.is_dir() {
            let dir = path.clone();
            tokio::task::spawn_blocking(move || pack(&dir))
                .await?
                .with_context(|| format!("packing {}", path.display()))?
        } else {
            tokio::fs::read(&path)
                .await
                .with_context(|| format!("reading {}", path.display()))?
        };
        let total = code.len() as u64;
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bytes}/{total_bytes} {wide_bar} {eta}",
            )
            .expect("a valid template"),
        );
        if total < 4 << 20 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(code)
            .chunks(256 << 10)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        let progress = bar.clone();
        let stream = futures::stream::iter(chunks).map(move |chunk| {
            progress.inc(chunk.len() as u64);
            Ok::<_, std::io::Error>(chunk)
        });
        let request = client
            .control(
                reqwest::Method::POST,
                &format!("/v1/functions/{name}/versions?{query}"),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(stream));
        let result = client.json::<FunctionInfo>(request).await;
        bar.finish_and_clear();
        let info = result?;
        println!(
            "deployed {} version {} ({}) at {}{}",
            info.name, info.version, info.world, client.base, info.url_path
        );
        for trigger in &info.triggers {
            println!("  trigger {trigger}");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A directory as a gzipped tar of its files, paths relative to it
/// (what a process function's bundle is).
fn pack(dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut archive = tar::Builder::new(encoder);
    archive.follow_symlinks(false);
    archive.append_dir_all(".", dir)?;
    Ok(archive.into_inner()?.finish()?)
}

impl Deploy {
    /// A deploy of `path` as `name`, with settings from a manifest.
    fn from_manifest(name: String, path: PathBuf, settings: DeploySettings) -> Deploy {
        Deploy {
            name: Some(name),
            path: Some(path),
            manifest_settings: Some(settings),
            ..Deploy::default()
        }
    }
}
