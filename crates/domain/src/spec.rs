use crate::{AsyncConfig, ByteSize, FunctionName, TriggerError, TriggerSpec};
use std::time::Duration;

/// A deploy setting that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "memory limit {0} is out of range: it must be a whole number of MiB between 1MiB and 4GiB"
    )]
    Memory(ByteSize),
    #[error(
        "timeout {0:?} is out of range: it must be between 100ms (what a guest blocked in a host call is held to) and 15m"
    )]
    Timeout(Duration),
    #[error("max concurrency {0} is out of range: it must be between 1 and 10000")]
    Concurrency(u32),
    #[error("max queue {0} is out of range: it must be between 0 and 100000")]
    Queue(u32),
    #[error(
        "environment variable name {0:?} is invalid: it must be non-empty and contain no '=' or NUL"
    )]
    EnvName(String),
    #[error(
        "outbound host {0:?} is invalid: use HOST or HOST:PORT, optionally with a leading '*.'"
    )]
    OutboundHost(String),
    #[error("instance reuse needs max requests per instance of at least 1")]
    ReuseRequests,
    #[error("instance reuse needs max concurrent requests per instance between 1 and 1000")]
    ReuseConcurrency,
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(
        "process instances: concurrency must be from 1 to 1000, max_instances from 1 to 1000, min_instances at most max_instances, and idle_timeout from 1s to 24h"
    )]
    ProcessScale,
    #[error("cpu must be from 50 to 64000 thousandths of a core")]
    ProcessCpu,
    #[error("base {0:?} is not a function name, or NAME@VERSION")]
    Base(String),
    #[error("base {0}")]
    BaseNotFound(String),
    #[error(
        "asynchronous invocations: the retry delay must be from 10ms to 1h, and the max age from 1s to 14 days"
    )]
    AsyncRetry,
}

/// Resource limits applied to every invocation of a function version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory (all memories of the instance together) and tables.
    pub memory: ByteSize,
    /// Wall-clock time from the start of the invocation to its last body byte.
    pub timeout: Duration,
    /// Invocations running at once; more wait in a queue.
    pub max_concurrency: u32,
    /// Invocations allowed to wait for a slot; beyond that: 429.
    pub max_queue: u32,
    /// Largest request body accepted (413 beyond).
    pub max_request_body: ByteSize,
    /// Largest response body streamed back (the stream is cut beyond).
    pub max_response_body: ByteSize,
}

impl Limits {
    pub const DEFAULT_MEMORY: ByteSize = ByteSize::mib(128);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The shortest timeout: a guest blocked in a host call is stopped up
    /// to 50 ms after its deadline (busy ones within 2 ms), so a shorter
    /// timeout would not be what it says.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

    pub fn validate(&self) -> Result<(), SpecError> {
        let memory = self.memory.bytes();
        if !(ByteSize::MIB..=4 * ByteSize::GIB).contains(&memory)
            || !memory.is_multiple_of(ByteSize::MIB)
        {
            return Err(SpecError::Memory(self.memory));
        }
        if self.timeout < Self::MIN_TIMEOUT || self.timeout > Duration::from_secs(15 * 60) {
            return Err(SpecError::Timeout(self.timeout));
        }
        if !(1..=10_000).contains(&self.max_concurrency) {
            return Err(SpecError::Concurrency(self.max_concurrency));
        }
        if self.max_queue > 100_000 {
            return Err(SpecError::Queue(self.max_queue));
        }
        Ok(())
    }

    /// The configured memory in whole MiB, the unit usage is billed in.
    pub fn memory_mib(&self) -> u64 {
        self.memory.bytes() / ByteSize::MIB
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: Self::DEFAULT_MEMORY,
            timeout: Self::DEFAULT_TIMEOUT,
            max_concurrency: 100,
            max_queue: 1000,
            max_request_body: ByteSize::mib(64),
            max_response_body: ByteSize(8 * ByteSize::GIB),
        }
    }
}

/// Bounds for reusing one instance across requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReuseLimits {
    /// Requests an instance serves before it is dropped.
    pub max_requests: u32,
    /// Requests one instance serves at the same time.
    pub max_concurrent: u32,
    /// An instance idle this long is dropped.
    pub idle_timeout: Duration,
}

/// How instances are created for requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A fresh instance per request: no state survives between requests.
    #[default]
    Fresh,
    /// Instances are kept and reused within the bounds, never across
    /// functions or versions. For guests with expensive start-up.
    Reuse(ReuseLimits),
}

/// The wasi:http world a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpWorld {
    /// `wasi:http/incoming-handler@0.2.x` (the `proxy` world)
    P2,
    /// `wasi:http/handler@0.3.x` (the `service` world)
    P3,
}

impl HttpWorld {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpWorld::P2 => "wasi:http@0.2",
            HttpWorld::P3 => "wasi:http@0.3",
        }
    }
}

/// Which kind of runtime runs a function: the executor a version is
/// loaded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// A WebAssembly component (`runtime-wasm`).
    Wasm,
    /// A native program in a Linux sandbox (`runtime-process`).
    Process,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Wasm => "wasm",
            RuntimeKind::Process => "process",
        }
    }
}

/// How a native process receives work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProcessProtocol {
    /// It serves HTTP/1.1 on `$PORT` (Cloud Run, Knative, OpenFaaS of-watchdog).
    #[default]
    Http,
    /// A process per request: the body on stdin, the answer from stdout
    /// (the OpenFaaS classic watchdog).
    Exec,
    /// The AWS Lambda Runtime API, served to each instance.
    Lambda,
}

impl ProcessProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessProtocol::Http => "http",
            ProcessProtocol::Exec => "exec",
            ProcessProtocol::Lambda => "lambda",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(ProcessProtocol::Http),
            "exec" => Some(ProcessProtocol::Exec),
            "lambda" => Some(ProcessProtocol::Lambda),
            _ => None,
        }
    }
}

/// What a version's code is, as its runtime found it at deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// A component exporting this `wasi:http` world.
    Wasm(HttpWorld),
    /// A native program receiving work by this protocol.
    Process(ProcessProtocol),
}

impl Runtime {
    pub fn kind(self) -> RuntimeKind {
        match self {
            Runtime::Wasm(_) => RuntimeKind::Wasm,
            Runtime::Process(_) => RuntimeKind::Process,
        }
    }

    /// How the code receives requests, for people: `wasi:http@0.2`.
    pub fn describe(self) -> &'static str {
        match self {
            Runtime::Wasm(world) => world.as_str(),
            Runtime::Process(ProcessProtocol::Http) => "process http",
            Runtime::Process(ProcessProtocol::Exec) => "process exec",
            Runtime::Process(ProcessProtocol::Lambda) => "process lambda",
        }
    }
}

/// How a native function's instances are run and scaled. Ignored by wasm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program and its arguments, run in the bundle's directory (`/app`).
    pub command: Vec<String>,
    pub protocol: ProcessProtocol,
    /// Requests one instance serves at once.
    pub concurrency: u32,
    /// Instances kept running when idle.
    pub min_instances: u32,
    /// Most instances at once; requests beyond what they serve wait.
    pub max_instances: u32,
    /// An instance idle this long is stopped (down to `min_instances`).
    pub idle_timeout: Duration,
    /// CPU share in thousandths of a core; `None`: scales with memory,
    /// a whole core per 1,769 MiB as on Lambda.
    pub cpu_millis: Option<u32>,
    /// The image a bundle runs on instead of the host's system
    /// directories: another process function of the project whose code is
    /// an image, `NAME` (its live version, as given) or `NAME@VERSION`
    /// (as stored: a version is immutable, so is what it runs on).
    pub base: Option<String>,
    /// The base version's artifact (its content hash), found at deploy.
    pub base_artifact: Option<String>,
}

impl ProcessSpec {
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

    /// The base function and version (`None`: its live one).
    pub fn base_reference(&self) -> Option<Result<(FunctionName, Option<u32>), SpecError>> {
        let text = self.base.as_deref()?;
        let invalid = || SpecError::Base(text.to_owned());
        let (name, version) = match text.split_once('@') {
            Some((name, version)) => (name, Some(version.parse::<u32>().map_err(|_| invalid()))),
            None => (text, None),
        };
        Some(match (FunctionName::new(name), version.transpose()) {
            (Ok(name), Ok(version)) => Ok((name, version)),
            _ => Err(invalid()),
        })
    }

    /// The CPU share for `memory`, in thousandths of a core.
    pub fn cpu_millis_for(&self, memory: ByteSize) -> u32 {
        self.cpu_millis.unwrap_or_else(|| {
            let mib = memory.bytes() / ByteSize::MIB;
            ((mib * 1000).div_ceil(1769)).clamp(50, 4000) as u32
        })
    }
}

impl Default for ProcessSpec {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            protocol: ProcessProtocol::Http,
            concurrency: 1,
            min_instances: 0,
            max_instances: 10,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            cpu_millis: None,
            base: None,
            base_artifact: None,
        }
    }
}

/// Who may call a function over HTTP, checked before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequireAuth {
    /// Anyone (the default); the function sees who called, if anyone.
    #[default]
    None,
    /// A key of the function's project, the admin, or one of its app users.
    Any,
    /// A signed-in app user of the function's project.
    User,
}

impl RequireAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            RequireAuth::None => "none",
            RequireAuth::Any => "any",
            RequireAuth::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(RequireAuth::None),
            "any" => Some(RequireAuth::Any),
            "user" => Some(RequireAuth::User),
            _ => None,
        }
    }
}

/// With whose access a function's guest reaches its project's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataAccess {
    /// The project's service access (the default).
    #[default]
    Service,
    /// The caller's: its key's or its user's access rules, as if it
    /// called the data API itself.
    Caller,
}

impl DataAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            DataAccess::Service => "service",
            DataAccess::Caller => "caller",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "service" => Some(DataAccess::Service),
            "caller" => Some(DataAccess::Caller),
            _ => None,
        }
    }
}

/// Everything a deploy sets besides the code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionConfig {
    pub limits: Limits,
    /// Visible through `wasi:cli/environment` and `wasi:config/store`.
    pub env: Vec<(String, String)>,
    /// Hosts (`example.com`, `*.example.com`, `127.0.0.1:9000`) outbound HTTP may reach.
    pub allowed_outbound_hosts: Vec<String>,
    pub isolation: Isolation,
    /// What runs the function besides HTTP requests.
    pub triggers: Vec<TriggerSpec>,
    /// Retries and destinations of asynchronous invocations.
    pub async_invocation: AsyncConfig,
    /// How a native function runs (ignored by wasm).
    pub process: ProcessSpec,
    /// Who may call it over HTTP.
    pub require_auth: RequireAuth,
    /// With whose access its guest reaches data.
    pub data_access: DataAccess,
}

impl FunctionConfig {
    /// The declared triggers and the implicit one of asynchronous
    /// invocations.
    pub fn all_triggers(&self) -> Vec<TriggerSpec> {
        let mut triggers = self.triggers.clone();
        triggers.push(TriggerSpec::async_invocations(
            &self.async_invocation,
            self.limits.max_concurrency,
        ));
        triggers
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        self.limits.validate()?;
        for (name, _) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(SpecError::EnvName(name.clone()));
            }
        }
        for host in &self.allowed_outbound_hosts {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            let valid = !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !valid {
                return Err(SpecError::OutboundHost(host.clone()));
            }
        }
        crate::validate_triggers(&self.triggers)?;
        let retry = &self.async_invocation.retry;
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&retry.delay)
            || !(Duration::from_secs(1)..=Duration::from_secs(14 * 86400)).contains(&retry.max_age)
        {
            return Err(SpecError::AsyncRetry);
        }
        let process = &self.process;
        if !(1..=1000).contains(&process.concurrency)
            || !(1..=1000).contains(&process.max_instances)
            || process.min_instances > process.max_instances
            || !(Duration::from_secs(1)..=Duration::from_secs(86400))
                .contains(&process.idle_timeout)
        {
            return Err(SpecError::ProcessScale);
        }
        if process
            .cpu_millis
            .is_some_and(|cpu| !(50..=64_000).contains(&cpu))
        {
            return Err(SpecError::ProcessCpu);
        }
        if let Some(Err(error)) = process.base_reference() {
            return Err(error);
        }
        if let Isolation::Reuse(reuse) = &self.isolation {
            if reuse.max_requests == 0 {
                return Err(SpecError::ReuseRequests);
            }
            if !(1..=1000).contains(&reuse.max_concurrent) {
                return Err(SpecError::ReuseConcurrency);
            }
        }
        Ok(())
    }

    /// Whether outbound HTTP may reach `authority` (`host` or `host:port`).
    pub fn allows_outbound(&self, authority: &str) -> bool {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    host
                } else {
                    authority
                }
            });
        self.allowed_outbound_hosts.iter().any(|allowed| {
            if let Some(suffix) = allowed.strip_prefix("*.") {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            } else {
                allowed.eq_ignore_ascii_case(authority) || allowed.eq_ignore_ascii_case(host)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hosts(hosts: &[&str]) -> FunctionConfig {
        FunctionConfig {
            allowed_outbound_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..FunctionConfig::default()
        }
    }

    #[test]
    fn outbound_allow_list_matches_hosts_ports_and_wildcards() {
        let config = with_hosts(&["api.example.com", "*.internal.net", "127.0.0.1:9000"]);
        assert!(config.allows_outbound("api.example.com"));
        assert!(config.allows_outbound("api.example.com:443"));
        assert!(config.allows_outbound("db.internal.net"));
        assert!(!config.allows_outbound("internal.net"));
        assert!(!config.allows_outbound("evilinternal.net"));
        assert!(config.allows_outbound("127.0.0.1:9000"));
        assert!(!config.allows_outbound("127.0.0.1:9001"));
        assert!(!config.allows_outbound("example.com"));
        assert!(!with_hosts(&[]).allows_outbound("api.example.com"));
    }

    #[test]
    fn limits_are_range_checked() {
        let mut limits = Limits::default();
        assert_eq!(limits.validate(), Ok(()));
        limits.memory = ByteSize(1000);
        assert!(matches!(limits.validate(), Err(SpecError::Memory(_))));
        limits.memory = ByteSize::mib(64);
        limits.timeout = Duration::ZERO;
        assert!(matches!(limits.validate(), Err(SpecError::Timeout(_))));
    }
}
