//! `wok.toml`: the functions of a directory, deployed by a bare `wok deploy`.
//!
//! ```toml
//! [functions.resize]
//! path = "target/wasm32-wasip2/release/resize.wasm"   # relative to wok.toml
//! memory = "128MiB"
//! env = { BUCKET = "photos" }
//! triggers = [
//!     "objects=photos;on=created;suffix=.jpg",
//!     { cron = "0 */5 * * * *", tz = "Europe/Paris", name = "sweep" },
//! ]
//! ```
use crate::commands::deploy::Deploy;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    functions: BTreeMap<String, Function>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Function {
    path: PathBuf,
    #[serde(flatten)]
    settings: RawSettings,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    memory: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    allow_outbound: Vec<String>,
    max_concurrency: Option<u32>,
    max_queue: Option<u32>,
    max_request_body: Option<String>,
    max_response_body: Option<String>,
    #[serde(default)]
    reuse: bool,
    reuse_max_requests: Option<u32>,
    reuse_idle_timeout: Option<String>,
    #[serde(default)]
    triggers: Vec<Trigger>,
    on_success: Option<String>,
    on_failure: Option<String>,
    async_max_attempts: Option<u32>,
    async_retry_delay: Option<String>,
    async_max_age: Option<String>,
}

/// A trigger: its line, or a table of the same settings.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Trigger {
    Line(String),
    Table(BTreeMap<String, toml::Value>),
}

/// A function's deploy settings, as `wok deploy` flags take them.
pub struct Settings {
    pub memory: Option<String>,
    pub timeout: Option<String>,
    pub env: Vec<String>,
    pub allow_outbound: Vec<String>,
    pub max_concurrency: Option<u32>,
    pub max_queue: Option<u32>,
    pub max_request_body: Option<String>,
    pub max_response_body: Option<String>,
    pub reuse: bool,
    pub reuse_max_requests: Option<u32>,
    pub reuse_idle_timeout: Option<String>,
    pub triggers: Vec<String>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub async_max_attempts: Option<u32>,
    pub async_retry_delay: Option<String>,
    pub async_max_age: Option<String>,
}

/// The sources a trigger table may start with.
const SOURCES: [&str; 4] = ["cron", "queue", "docs", "objects"];

fn trigger_line(function: &str, trigger: Trigger) -> anyhow::Result<String> {
    let table = match trigger {
        Trigger::Line(line) => return Ok(line),
        Trigger::Table(table) => table,
    };
    let text = |value: &toml::Value| match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(","))
            .ok_or_else(|| anyhow::anyhow!("a list of strings")),
        other => bail!("{} is not a string, number or boolean", other.type_str()),
    };
    let sources: Vec<&str> = SOURCES
        .into_iter()
        .filter(|source| table.contains_key(*source))
        .collect();
    let [source] = sources[..] else {
        bail!(
            "function {function:?}: a trigger table needs exactly one of {}",
            SOURCES.join(", ")
        );
    };
    let mut parts = vec![format!("{source}={}", text(&table[source])?)];
    for (key, value) in &table {
        if key != source {
            let value =
                text(value).with_context(|| format!("function {function:?}: trigger {key}"))?;
            parts.push(format!("{key}={value}"));
        }
    }
    Ok(parts.join(";"))
}

/// The deploys `path` names, in name order.
pub fn read(path: &Path) -> anyhow::Result<Vec<Deploy>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no NAME and PATH given, and there is no {} here to deploy from",
                path.display()
            )
        } else {
            anyhow::anyhow!("reading {}: {error}", path.display())
        }
    })?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    if manifest.functions.is_empty() {
        bail!("{} names no functions ([functions.NAME])", path.display());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    manifest
        .functions
        .into_iter()
        .map(|(name, function)| {
            let raw = function.settings;
            let triggers = raw
                .triggers
                .into_iter()
                .map(|trigger| trigger_line(&name, trigger))
                .collect::<anyhow::Result<_>>()?;
            let settings = Settings {
                memory: raw.memory,
                timeout: raw.timeout,
                env: raw
                    .env
                    .into_iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect(),
                allow_outbound: raw.allow_outbound,
                max_concurrency: raw.max_concurrency,
                max_queue: raw.max_queue,
                max_request_body: raw.max_request_body,
                max_response_body: raw.max_response_body,
                reuse: raw.reuse,
                reuse_max_requests: raw.reuse_max_requests,
                reuse_idle_timeout: raw.reuse_idle_timeout,
                triggers,
                on_success: raw.on_success,
                on_failure: raw.on_failure,
                async_max_attempts: raw.async_max_attempts,
                async_retry_delay: raw.async_retry_delay,
                async_max_age: raw.async_max_age,
            };
            Ok(Deploy::from_manifest(
                name,
                base.join(function.path),
                settings,
            ))
        })
        .collect()
}
