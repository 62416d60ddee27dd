use crate::client::Client;
use api_types::{KvCounter, KvKeyList, KvWritten};
use std::io::Write;
use std::process::ExitCode;

/// Read and write the key-value stores of a project (`--project`).
#[derive(clap::Subcommand)]
pub enum Kv {
    /// Print a value (raw bytes).
    Get { store: String, key: String },
    /// Write a value.
    Set {
        store: String,
        key: String,
        /// The value; `@FILE` reads a file.
        value: String,
        /// Expire after this long, e.g. 30s, 1h.
        #[arg(long)]
        ttl: Option<String>,
        /// Write only if the key is at this version (compare-and-swap).
        #[arg(long, conflicts_with = "if_absent")]
        if_version: Option<u64>,
        /// Write only if the key does not exist.
        #[arg(long)]
        if_absent: bool,
    },
    /// List keys (all pages).
    Ls {
        store: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete a key.
    Rm { store: String, key: String },
    /// Delete a whole store: every key.
    Drop { store: String },
    /// Add to a counter atomically and print the new value.
    Incr {
        store: String,
        key: String,
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
    },
    /// Show or set what public keys and app users may do with a store:
    /// `private` (service keys only, the default), `public-read`,
    /// `public-read-write`, or per-user `--rules FILE`.
    Access {
        store: String,
        rule: Option<String>,
        /// Per-user rules instead of a preset: a JSON file of key patterns
        /// (`users/{uid}/**`), each an object of CEL expressions by
        /// operation (read, list, create, update, delete).
        #[arg(long, value_name = "FILE", conflicts_with = "rule")]
        rules: Option<std::path::PathBuf>,
    },
}

fn key_path(store: &str, key: &str) -> String {
    let key: Vec<String> = key
        .split('/')
        .map(|part| urlencoding::encode(part).into_owned())
        .collect();
    format!("/v1/kv/{store}/{}", key.join("/"))
}

impl Kv {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        match self {
            Kv::Get { store, key } => {
                let response = client
                    .send(client.control(reqwest::Method::GET, &key_path(&store, &key)))
                    .await?;
                let bytes = response.bytes().await?;
                std::io::stdout().write_all(&bytes)?;
            }
            Kv::Set {
                store,
                key,
                value,
                ttl,
                if_version,
                if_absent,
            } => {
                let value = match value.strip_prefix('@') {
                    Some(path) => std::fs::read(path)
                        .map_err(|error| anyhow::anyhow!("reading {path}: {error}"))?,
                    None => value.into_bytes(),
                };
                let mut path = key_path(&store, &key);
                if let Some(ttl) = ttl {
                    path = format!("{path}?ttl={}", urlencoding::encode(&ttl));
                }
                let mut request = client.control(reqwest::Method::PUT, &path).body(value);
                if let Some(version) = if_version {
                    request = request.header("if-match", format!("\"{version}\""));
                }
                if if_absent {
                    request = request.header("if-none-match", "*");
                }
                let written: KvWritten = client.json(request).await?;
                println!("set {key} (version {})", written.version);
            }
            Kv::Ls { store, prefix } => {
                let mut cursor: Option<String> = None;
                loop {
                    let mut path = format!(
                        "/v1/kv/{store}?limit=1000&prefix={}",
                        urlencoding::encode(&prefix)
                    );
                    if let Some(cursor) = &cursor {
                        path = format!("{path}&cursor={}", urlencoding::encode(cursor));
                    }
                    let page: KvKeyList = client
                        .json(client.control(reqwest::Method::GET, &path))
                        .await?;
                    for key in &page.keys {
                        println!("{key}");
                    }
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
            Kv::Rm { store, key } => {
                client
                    .send(client.control(reqwest::Method::DELETE, &key_path(&store, &key)))
                    .await?;
                println!("removed {key}");
            }
            Kv::Drop { store } => {
                client
                    .send(client.control(reqwest::Method::DELETE, &format!("/v1/kv/{store}")))
                    .await?;
                println!("dropped store {store}");
            }
            Kv::Incr { store, key, by } => {
                let path = format!("{}?increment={by}", key_path(&store, &key));
                let counter: KvCounter = client
                    .json(client.control(reqwest::Method::POST, &path))
                    .await?;
                println!("{}", counter.value);
            }
            Kv::Access { store, rule, rules } => {
                let path = format!("/v1/kv/{store}/_access");
                super::access::show_or_set(&client, &path, &store, rule, rules).await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
