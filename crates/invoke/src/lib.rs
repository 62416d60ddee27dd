//! What runtimes and front ends agree on: an [`Invocation`], how it ends
//! ([`Outcome`], [`Failure`]), how it is metered ([`Meter`]), and the
//! [`Executor`] / [`PreparedFunction`] traits a runtime implements.
//!
//! Layer: boundary. Knows HTTP types (requests and bodies are what functions
//! consume) but no runtime (wasmtime, processes) and no server framework.
//! The gateway reaches runtimes only through these traits.

mod admission;
mod body;
pub mod caller;
pub mod local;
mod meter;
mod services;

pub use admission::{Admission, AdmissionError, Permit};
pub use body::{
    Body, BodyTooLarge, BoxError, CountingBody, empty_body, full_body, metered_response,
};
pub use caller::{AuthKind, CallerIdentity};
pub use domain::Outcome;
pub use local::{Credential, LocalApi, LocalApiSlot};
pub use meter::{LogSink, Meter, MeterInit, RecordSink};
pub use services::{
    GuestDocError, GuestDocOp, GuestDocPage, GuestDocWrite, GuestDocWritten, GuestDocument,
    GuestDocuments, GuestKeyPage, GuestKeyValue, GuestKvError, GuestMessage, GuestMessaging,
    GuestMessagingError, GuestObjectError, GuestObjectInfo, GuestObjectPage, GuestObjects,
    ServiceFuture,
};

use domain::{FunctionConfig, FunctionName, InvocationId, ProjectId, Runtime, RuntimeKind};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// One call of a function: the request and the meter its record comes from.
pub struct Invocation {
    pub id: InvocationId,
    pub request: http::Request<Body>,
    pub meter: Arc<Meter>,
}

/// A guest failure before the response head was produced. Always an outcome
/// of the guest (or of its limits), never a failure of wok's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
}

impl Failure {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A compiled, linked function version, ready to serve invocations.
pub trait PreparedFunction: Send + Sync + 'static {
    /// Runs the invocation. Resolves with the response head as soon as the
    /// guest produced it; the body streams after. A failure after the head is
    /// reported through the meter and ends the body stream with an error.
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'static, Result<http::Response<Body>, Failure>>;

    /// Instances kept warm for reuse right now (0 with fresh instances).
    fn idle_instances(&self) -> usize {
        0
    }

    /// Periodic upkeep: drops instances idle past their timeout.
    fn maintain(&self) {}
}

/// Why uploaded code cannot be deployed: the user's mistake, said plainly
/// by the runtime that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeployError {
    pub message: String,
    /// Refused for its size alone (an HTTP 413).
    pub too_large: bool,
}

impl DeployError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            too_large: false,
        }
    }

    /// Code refused for its size alone.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            too_large: true,
        }
    }
}

/// What a deploy-time compile produced.
pub struct Compiled {
    /// What the code is, as the runtime found it.
    pub runtime: Runtime,
    /// The runtime's precompiled form, cached by content hash and engine.
    pub precompiled: Vec<u8>,
}

/// Everything needed to load one version.
pub struct LoadSpec {
    pub project: ProjectId,
    pub function: FunctionName,
    pub config: FunctionConfig,
    /// The precompiled artifact produced by [`Executor::compile`].
    pub precompiled: PathBuf,
    /// Key-value stores of `project`, for the guest.
    pub key_value: Arc<dyn GuestKeyValue>,
    /// The function's project's document collections.
    pub documents: Arc<dyn GuestDocuments>,
    /// The function's project's buckets.
    pub objects: Arc<dyn GuestObjects>,
    /// The function's project's topics.
    pub messaging: Arc<dyn GuestMessaging>,
}

/// A loaded function version and what it is.
pub struct Loaded {
    pub prepared: Arc<dyn PreparedFunction>,
    pub runtime: Runtime,
}

/// A runtime: turns uploaded code into prepared functions. `functions`
/// holds one per [`RuntimeKind`] and picks it by a version's runtime.
pub trait Executor: Send + Sync + 'static {
    /// The kind of runtime this is.
    fn kind(&self) -> RuntimeKind;
    /// Identifies the compiler and its settings: precompiled artifacts made
    /// under another key must be compiled again.
    fn engine_key(&self) -> String;
    /// Validates and compiles (or unpacks) uploaded code for a version
    /// configured as `config`. CPU- and disk-heavy: call off the async
    /// runtime.
    fn compile(&self, code: &[u8], config: &FunctionConfig) -> Result<Compiled, DeployError>;
    /// Drops what the runtime keeps on this node for code no version uses
    /// any more (`in_use`: the artifacts of every stored version). Called
    /// at start-up, before anything runs.
    fn collect_garbage(&self, in_use: &std::collections::HashSet<String>) {
        let _ = in_use;
    }
    /// Loads a precompiled artifact, checking again that it exports a
    /// handler and that every import is provided. Fails only if the artifact
    /// is unusable (then the caller compiles again).
    fn load(&self, spec: LoadSpec) -> Result<Loaded, String>;
}

/// What a long-lived instance (a native process) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Starting,
    Busy,
    Idle,
    /// Idle and frozen: never scheduled until a request thaws it.
    Frozen,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Busy => "busy",
            InstanceState::Idle => "idle",
            InstanceState::Frozen => "frozen",
        }
    }
}

/// Which way a function's instances were scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    /// An instance started because requests waited.
    Out,
    /// An idle instance was stopped.
    In,
}

/// What a runtime reports for the platform's metrics.
pub trait RuntimeMetrics: Send + Sync + 'static {
    /// A new instance was created in `seconds` (a cold start).
    fn instantiated(&self, project: &ProjectId, function: &FunctionName, seconds: f64);
    /// Instances currently serving an invocation changed by `delta`.
    fn instances_in_flight(&self, delta: i64);
    /// A long-lived instance moved from one state to another (`None`: it
    /// did not exist yet, or is gone).
    fn instance_state(&self, from: Option<InstanceState>, to: Option<InstanceState>) {
        let _ = (from, to);
    }
    /// A function's instances were scaled.
    fn scaled(&self, project: &ProjectId, function: &FunctionName, scale: Scale) {
        let _ = (project, function, scale);
    }
}
