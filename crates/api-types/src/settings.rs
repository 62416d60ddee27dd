//! [`DeploySettings`]: a deploy's settings in the one shape that `wok
//! deploy`'s flags, `wok.toml`, the control API's query string and the
//! store all use. Values are in their text forms (`128MiB`, `10s`, trigger
//! lines, `topic:NAME`); absent ones take their defaults. [`to_config`] is
//! the one place they are read into a `domain::FunctionConfig`, and
//! [`from_config`] writes one back.
//!
//! [`to_config`]: DeploySettings::to_config
//! [`from_config`]: DeploySettings::from_config

use domain::{
    ByteSize, DataAccess, Destination, FunctionConfig, Isolation, ProcessProtocol, RequireAuth,
    ReuseLimits, RuntimeKind, TriggerSpec,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A deploy's settings. Unknown keys are refused in every form, so that a
/// typo fails loudly instead of deploying with a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySettings {
    /// What runs the code: `wasm` (the default) or `process`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// A process function's program and arguments, as a shell would split
    /// them (`python3 app.py --port 8080`); run in `/app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How a process function receives work: `http` (the default: it
    /// serves HTTP on `$PORT`), `exec` (a process per request) or `lambda`
    /// (the AWS Lambda Runtime API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Requests one process instance serves at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Process instances kept running when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instances: Option<u32>,
    /// Most process instances at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// A process instance idle this long is stopped, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// A process instance's CPU share in cores, e.g. `0.5` (default: scales
    /// with memory, a core per 1,769 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// The image a process bundle runs on: another process function of the
    /// project deployed from an image, `NAME` or `NAME@VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The base version's artifact, as the server found it (stored; a
    /// deploy's own is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_artifact: Option<String>,
    /// Memory limit, e.g. `128MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Wall-clock timeout per invocation, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Environment and config variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Hosts outbound HTTP may reach: `HOST`, `HOST:PORT` or `*.DOMAIN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_outbound: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body: Option<String>,
    /// Reuse instances across requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_idle_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// `topic:NAME` or `function:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_retry_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_max_age: Option<String>,
    /// Who may call it over HTTP: `none` (anyone, the default), `any` (a
    /// key of the project or a signed-in app user) or `user` (a signed-in
    /// app user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_auth: Option<String>,
    /// With whose access a guest reaches its project's data: `service`
    /// (the project's, the default) or `caller` (the caller's rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_access: Option<String>,
}

/// A trigger: its line (`queue=jobs;max_attempts=2`), or (in `wok.toml`)
/// a table of the same settings (`{ queue = "jobs", max_attempts = 2 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Trigger {
    Line(String),
    Table(BTreeMap<String, serde_json::Value>),
}

/// The sources a trigger table may start with.
const SOURCES: [&str; 4] = ["cron", "queue", "docs", "objects"];

impl Trigger {
    /// The trigger's line.
    pub fn line(&self) -> Result<String, String> {
        let table = match self {
            Trigger::Line(line) => return Ok(line.clone()),
            Trigger::Table(table) => table,
        };
        let text = |key: &str, value: &serde_json::Value| match value {
            serde_json::Value::String(text) => Ok(text.clone()),
            serde_json::Value::Number(number) => Ok(number.to_string()),
            serde_json::Value::Bool(flag) => Ok(flag.to_string()),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(|items| items.join(","))
                .ok_or_else(|| format!("trigger {key}: a list of strings")),
            _ => Err(format!(
                "trigger {key}: not a string, number, boolean or list"
            )),
        };
        let sources: Vec<&str> = SOURCES
            .into_iter()
            .filter(|source| table.contains_key(*source))
            .collect();
        let [source] = sources[..] else {
            return Err(format!(
                "a trigger table needs exactly one of {}",
                SOURCES.join(", ")
            ));
        };
        let mut parts = vec![format!("{source}={}", text(source, &table[source])?)];
        for (key, value) in table {
            if key != source {
                parts.push(format!("{key}={}", text(key, value)?));
            }
        }
        Ok(parts.join(";"))
    }
}

fn duration(key: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|error| format!("{key}={value:?} is not a duration (like 10s or 500ms): {error}"))
}

fn size(key: &str, value: &str) -> Result<ByteSize, String> {
    ByteSize::parse(value).map_err(|error| format!("{key}: {error}"))
}

fn number(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("{key}={value:?} is not a whole number"))
}

fn text_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

impl DeploySettings {
    /// The runtime the code is for.
    pub fn runtime_kind(&self) -> Result<RuntimeKind, String> {
        match self.runtime.as_deref() {
            None | Some("wasm") => Ok(RuntimeKind::Wasm),
            Some("process") => Ok(RuntimeKind::Process),
            Some(other) => Err(format!(
                "runtime {other:?} is not one wok runs (wasm, process)"
            )),
        }
    }

    /// Whether any setting of process functions is given.
    pub fn has_process_settings(&self) -> bool {
        self.command.is_some()
            || self.protocol.is_some()
            || self.concurrency.is_some()
            || self.min_instances.is_some()
            || self.max_instances.is_some()
            || self.idle_timeout.is_some()
            || self.cpu.is_some()
            || self.base.is_some()
    }

    /// Settings from the control API's query string (`memory=128MiB&
    /// env=NAME%3DVALUE&trigger=...`; `env`, `allow_outbound` and
    /// `trigger` repeat).
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut settings = DeploySettings::default();
        for (key, value) in pairs {
            let owned = || Some(value.clone());
            match key.as_str() {
                "runtime" => settings.runtime = owned(),
                "command" => settings.command = owned(),
                "protocol" => settings.protocol = owned(),
                "concurrency" => settings.concurrency = Some(number(key, value)?),
                "min_instances" => settings.min_instances = Some(number(key, value)?),
                "max_instances" => settings.max_instances = Some(number(key, value)?),
                "idle_timeout" => settings.idle_timeout = owned(),
                "cpu" => settings.cpu = owned(),
                "base" => settings.base = owned(),
                "memory" => settings.memory = owned(),
                "timeout" => settings.timeout = owned(),
                "env" => {
                    let (name, env) = value
                        .split_once('=')
                        .ok_or_else(|| format!("env {value:?} must look like NAME=VALUE"))?;
                    settings.env.insert(name.to_owned(), env.to_owned());
                }
                "allow_outbound" => settings.allow_outbound.push(value.clone()),
                "max_concurrency" => settings.max_concurrency = Some(number(key, value)?),
                "max_queue" => settings.max_queue = Some(number(key, value)?),
                "max_request_body" => settings.max_request_body = owned(),
                "max_response_body" => settings.max_response_body = owned(),
                "reuse" => {
                    settings.reuse = Some(match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("reuse={value:?} must be true or false")),
                    })
                }
                "reuse_max_requests" => settings.reuse_max_requests = Some(number(key, value)?),
                "reuse_idle_timeout" => settings.reuse_idle_timeout = owned(),
                "trigger" => settings.triggers.push(Trigger::Line(value.clone())),
                "on_success" => settings.on_success = owned(),
                "on_failure" => settings.on_failure = owned(),
                "async_max_attempts" => settings.async_max_attempts = Some(number(key, value)?),
                "async_retry_delay" => settings.async_retry_delay = owned(),
                "async_max_age" => settings.async_max_age = owned(),
                "require_auth" => settings.require_auth = owned(),
                "data_access" => settings.data_access = owned(),
                _ => return Err(format!("unknown deploy setting {key:?}")),
            }
        }
        Ok(settings)
    }

    /// The query string pairs of these settings (what [`from_query`]
    /// reads back).
    ///
    /// [`from_query`]: DeploySettings::from_query
    pub fn query_pairs(&self) -> Result<Vec<(&'static str, String)>, String> {
        let mut pairs = Vec::new();
        let mut optional = |key: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        optional("runtime", self.runtime.clone());
        optional("command", self.command.clone());
        optional("protocol", self.protocol.clone());
        optional("concurrency", self.concurrency.map(|n| n.to_string()));
        optional("min_instances", self.min_instances.map(|n| n.to_string()));
        optional("max_instances", self.max_instances.map(|n| n.to_string()));
        optional("idle_timeout", self.idle_timeout.clone());
        optional("cpu", self.cpu.clone());
        optional("base", self.base.clone());
        optional("memory", self.memory.clone());
        optional("timeout", self.timeout.clone());
        optional(
            "max_concurrency",
            self.max_concurrency.map(|n| n.to_string()),
        );
        optional("max_queue", self.max_queue.map(|n| n.to_string()));
        optional("max_request_body", self.max_request_body.clone());
        optional("max_response_body", self.max_response_body.clone());
        optional("reuse", self.reuse.map(|reuse| reuse.to_string()));
        optional(
            "reuse_max_requests",
            self.reuse_max_requests.map(|n| n.to_string()),
        );
        optional("reuse_idle_timeout", self.reuse_idle_timeout.clone());
        optional("on_success", self.on_success.clone());
        optional("on_failure", self.on_failure.clone());
        optional(
            "async_max_attempts",
            self.async_max_attempts.map(|n| n.to_string()),
        );
        optional("async_retry_delay", self.async_retry_delay.clone());
        optional("async_max_age", self.async_max_age.clone());
        optional("require_auth", self.require_auth.clone());
        optional("data_access", self.data_access.clone());
        for (name, value) in &self.env {
            pairs.push(("env", format!("{name}={value}")));
        }
        for host in &self.allow_outbound {
            pairs.push(("allow_outbound", host.clone()));
        }
        for trigger in &self.triggers {
            pairs.push(("trigger", trigger.line()?));
        }
        Ok(pairs)
    }

    /// The configuration these settings make, defaults where they are
    /// silent. The error says which setting is wrong; what the values must
    /// be together is `FunctionConfig::validate`'s.
    pub fn to_config(&self) -> Result<FunctionConfig, String> {
        let mut config = FunctionConfig::default();
        let limits = &mut config.limits;
        if let Some(memory) = &self.memory {
            limits.memory = size("memory", memory)?;
        }
        if let Some(timeout) = &self.timeout {
            limits.timeout = duration("timeout", timeout)?;
        }
        if let Some(max) = self.max_concurrency {
            limits.max_concurrency = max;
        }
        if let Some(max) = self.max_queue {
            limits.max_queue = max;
        }
        if let Some(max) = &self.max_request_body {
            limits.max_request_body = size("max_request_body", max)?;
        }
        if let Some(max) = &self.max_response_body {
            limits.max_response_body = size("max_response_body", max)?;
        }
        config.env = self
            .env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        config.allowed_outbound_hosts = self.allow_outbound.clone();
        let reuse_given = self.reuse_max_requests.is_some() || self.reuse_idle_timeout.is_some();
        if self.reuse.unwrap_or(reuse_given) {
            let mut reuse = ReuseLimits {
                max_requests: 10_000,
                max_concurrent: 1,
                idle_timeout: Duration::from_secs(60),
            };
            if let Some(max) = self.reuse_max_requests {
                reuse.max_requests = max;
            }
            if let Some(idle) = &self.reuse_idle_timeout {
                reuse.idle_timeout = duration("reuse_idle_timeout", idle)?;
            }
            config.isolation = Isolation::Reuse(reuse);
        }
        for trigger in &self.triggers {
            let line = trigger.line()?;
            config
                .triggers
                .push(TriggerSpec::parse(&line).map_err(|error| error.to_string())?);
        }
        let asynchronous = &mut config.async_invocation;
        for (destination, text) in [
            (&mut asynchronous.on_success, &self.on_success),
            (&mut asynchronous.on_failure, &self.on_failure),
        ] {
            if let Some(text) = text {
                *destination = Some(Destination::parse(text).map_err(|error| error.to_string())?);
            }
        }
        if let Some(attempts) = self.async_max_attempts {
            if !(1..=100).contains(&attempts) {
                return Err("async_max_attempts must be from 1 to 100".to_owned());
            }
            asynchronous.retry.max_attempts = attempts;
        }
        if let Some(delay) = &self.async_retry_delay {
            asynchronous.retry.delay = duration("async_retry_delay", delay)?;
        }
        if let Some(age) = &self.async_max_age {
            asynchronous.retry.max_age = duration("async_max_age", age)?;
        }
        let process = &mut config.process;
        if let Some(command) = &self.command {
            process.command = shell_words::split(command).map_err(|error| {
                format!("command {command:?} cannot be split into words: {error}")
            })?;
            if process.command.is_empty() {
                return Err("command is empty".to_owned());
            }
        }
        if let Some(protocol) = &self.protocol {
            process.protocol = ProcessProtocol::parse(protocol).ok_or_else(|| {
                format!("protocol {protocol:?} is not one wok speaks (http, exec, lambda)")
            })?;
        }
        if let Some(concurrency) = self.concurrency {
            process.concurrency = concurrency;
        }
        if let Some(min) = self.min_instances {
            process.min_instances = min;
        }
        if let Some(max) = self.max_instances {
            process.max_instances = max;
        }
        if let Some(idle) = &self.idle_timeout {
            process.idle_timeout = duration("idle_timeout", idle)?;
        }
        if let Some(cpu) = &self.cpu {
            let cores: f64 = cpu
                .parse()
                .ok()
                .filter(|cores: &f64| cores.is_finite() && *cores > 0.0)
                .ok_or_else(|| format!("cpu={cpu:?} is not a number of cores (like 0.5 or 2)"))?;
            process.cpu_millis = Some((cores * 1000.0).round() as u32);
        }
        process.base = self.base.clone();
        process.base_artifact = self.base_artifact.clone().filter(|_| self.base.is_some());
        if let Some(require) = &self.require_auth {
            config.require_auth = RequireAuth::parse(require)
                .ok_or_else(|| format!("require_auth={require:?} must be none, any or user"))?;
        }
        if let Some(access) = &self.data_access {
            config.data_access = DataAccess::parse(access)
                .ok_or_else(|| format!("data_access={access:?} must be service or caller"))?;
        }
        Ok(config)
    }

    /// The settings that make `config` of a `kind` function again: every
    /// value written out, so that a change of defaults does not change a
    /// stored version (a wasm version's name no process settings).
    pub fn from_config(config: &FunctionConfig, kind: RuntimeKind) -> Self {
        let limits = &config.limits;
        let (reuse, reuse_max_requests, reuse_idle_timeout) = match &config.isolation {
            Isolation::Fresh => (Some(false), None, None),
            Isolation::Reuse(reuse) => (
                Some(true),
                Some(reuse.max_requests),
                Some(text_duration(reuse.idle_timeout)),
            ),
        };
        let asynchronous = &config.async_invocation;
        let process = &config.process;
        let is_process = kind == RuntimeKind::Process;
        DeploySettings {
            runtime: None,
            // An image's own command, or a Lambda bundle's bootstrap, when
            // none was given.
            command: Some(shell_words::join(&process.command))
                .filter(|command| !command.is_empty()),
            protocol: is_process.then(|| process.protocol.as_str().to_owned()),
            concurrency: is_process.then_some(process.concurrency),
            min_instances: is_process.then_some(process.min_instances),
            max_instances: is_process.then_some(process.max_instances),
            idle_timeout: is_process.then(|| text_duration(process.idle_timeout)),
            cpu: process
                .cpu_millis
                .filter(|_| is_process)
                .map(|millis| format!("{}", millis as f64 / 1000.0)),
            base: process.base.clone(),
            base_artifact: process.base_artifact.clone(),
            memory: Some(limits.memory.to_string()),
            timeout: Some(text_duration(limits.timeout)),
            env: config.env.iter().cloned().collect(),
            allow_outbound: config.allowed_outbound_hosts.clone(),
            max_concurrency: Some(limits.max_concurrency),
            max_queue: Some(limits.max_queue),
            max_request_body: Some(limits.max_request_body.to_string()),
            max_response_body: Some(limits.max_response_body.to_string()),
            reuse,
            reuse_max_requests,
            reuse_idle_timeout,
            triggers: config
                .triggers
                .iter()
                .map(|trigger| Trigger::Line(trigger.to_text()))
                .collect(),
            on_success: asynchronous.on_success.as_ref().map(Destination::to_text),
            on_failure: asynchronous.on_failure.as_ref().map(Destination::to_text),
            async_max_attempts: Some(asynchronous.retry.max_attempts),
            async_retry_delay: Some(text_duration(asynchronous.retry.delay)),
            async_max_age: Some(text_duration(asynchronous.retry.max_age)),
            // Written out only when set: versions from before it stay as
            // they were shown.
            require_auth: (config.require_auth != RequireAuth::None)
                .then(|| config.require_auth.as_str().to_owned()),
            data_access: (config.data_access != DataAccess::Service)
                .then(|| config.data_access.as_str().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_to_the_same_config() {
        let query: Vec<(String, String)> = [
            ("memory", "96MiB"),
            ("timeout", "1500ms"),
            ("env", "B=2"),
            ("env", "A=1"),
            ("allow_outbound", "*.example.com"),
            ("max_concurrency", "7"),
            ("reuse_max_requests", "50"),
            ("trigger", "queue=jobs;max_attempts=2"),
            ("trigger", "cron=0 3 * * *"),
            ("on_failure", "topic:failed"),
            ("async_retry_delay", "3s"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let settings = DeploySettings::from_query(&query).unwrap();
        let config = settings.to_config().unwrap();
        assert_eq!(config.limits.memory, ByteSize::mib(96));
        assert_eq!(config.limits.timeout, Duration::from_millis(1500));
        assert!(matches!(&config.isolation, Isolation::Reuse(reuse) if reuse.max_requests == 50));
        assert_eq!(config.triggers.len(), 2);

        // Written out and read back, as the store does; as a query, as the
        // CLI sends it; as TOML, as wok.toml holds it.
        let stored = DeploySettings::from_config(&config, RuntimeKind::Wasm);
        let json: DeploySettings =
            serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
        assert_eq!(json.to_config().unwrap(), config);
        let pairs: Vec<(String, String)> = stored
            .query_pairs()
            .unwrap()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        assert_eq!(
            DeploySettings::from_query(&pairs)
                .unwrap()
                .to_config()
                .unwrap(),
            config
        );
        let table: DeploySettings = toml::from_str(
            r#"
            memory = "96MiB"
            timeout = "1500ms"
            env = { A = "1", B = "2" }
            allow_outbound = ["*.example.com"]
            max_concurrency = 7
            reuse_max_requests = 50
            triggers = [{ queue = "jobs", max_attempts = 2 }, "cron=0 3 * * *"]
            on_failure = "topic:failed"
            async_retry_delay = "3s"
            "#,
        )
        .unwrap();
        assert_eq!(table.to_config().unwrap(), config);
    }

    #[test]
    fn process_settings_read_back_in_every_form() {
        let query: Vec<(String, String)> = [
            ("runtime", "process"),
            ("command", "python3 'my app.py' --port 8080"),
            ("concurrency", "8"),
            ("min_instances", "1"),
            ("max_instances", "4"),
            ("idle_timeout", "30s"),
            ("cpu", "0.5"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let settings = DeploySettings::from_query(&query).unwrap();
        assert_eq!(settings.runtime_kind().unwrap(), RuntimeKind::Process);
        let config = settings.to_config().unwrap();
        let process = &config.process;
        assert_eq!(process.command, ["python3", "my app.py", "--port", "8080"]);
        assert_eq!(process.concurrency, 8);
        assert_eq!(process.min_instances, 1);
        assert_eq!(process.max_instances, 4);
        assert_eq!(process.idle_timeout, Duration::from_secs(30));
        assert_eq!(process.cpu_millis, Some(500));
        let stored = DeploySettings::from_config(&config, RuntimeKind::Process);
        let json: DeploySettings =
            serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
        assert_eq!(json.to_config().unwrap(), config);
        let table: DeploySettings = toml::from_str(
            r#"
            runtime = "process"
            command = "python3 'my app.py' --port 8080"
            concurrency = 8
            min_instances = 1
            max_instances = 4
            idle_timeout = "30s"
            cpu = "0.5"
            "#,
        )
        .unwrap();
        assert_eq!(table.to_config().unwrap(), config);
        // A wasm version's stored settings name no process setting.
        let wasm = DeploySettings::from_config(&FunctionConfig::default(), RuntimeKind::Wasm);
        assert!(!wasm.has_process_settings());
        // An image's version (no command: the image's own) keeps its
        // process settings all the same.
        let mut image = config.clone();
        image.process.command.clear();
        image.process.protocol = ProcessProtocol::Lambda;
        let stored = DeploySettings::from_config(&image, RuntimeKind::Process);
        assert_eq!(stored.command, None);
        let json: DeploySettings =
            serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
        assert_eq!(json.to_config().unwrap(), image);
    }

    #[test]
    fn mistakes_name_the_setting() {
        let refuse = |key: &str, value: &str| {
            DeploySettings::from_query(&[(key.to_owned(), value.to_owned())])
                .and_then(|settings| settings.to_config())
                .unwrap_err()
        };
        assert_eq!(
            refuse("memroy", "1MiB"),
            "unknown deploy setting \"memroy\""
        );
        assert!(refuse("memory", "lots").starts_with("memory:"));
        assert!(refuse("timeout", "soon").starts_with("timeout=\"soon\""));
        assert!(refuse("env", "NOEQUALS").contains("NAME=VALUE"));
        assert!(refuse("async_max_attempts", "0").contains("1 to 100"));
        assert!(refuse("cpu", "lots").starts_with("cpu=\"lots\""));
        assert!(refuse("protocol", "smtp").contains("http"));
        assert!(refuse("command", "python3 'app.py").contains("cannot be split"));
        assert!(toml::from_str::<DeploySettings>("memroy = \"1MiB\"").is_err());
        assert_eq!(
            DeploySettings {
                runtime: Some("jvm".to_owned()),
                ..DeploySettings::default()
            }
            .runtime_kind()
            .unwrap_err(),
            "runtime \"jvm\" is not one wok runs (wasm, process)"
        );
    }
}
