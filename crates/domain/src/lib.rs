//! Vocabulary of wok: names, sizes, limits, records. No IO, no wire formats.
//!
//! Layer: vocabulary (the bottom). Every other crate may depend on it; it
//! depends on nothing of ours. Types here do not derive serde: the public wire
//! shapes live in `api-types` and the gateway converts.

pub mod actor;
mod keys;
mod names;
mod records;
mod size;
mod spec;
mod triggers;

pub use actor::Actor;
pub use keys::{Access, AccessRule, ApiKey, KeyKind, Project, ResourceKind};
pub use names::{
    BucketName, CollectionName, FunctionName, InvocationId, NameError, ProjectId, StoreName,
    TopicName, TriggerName,
};
pub use records::{InvocationRecord, LogLine, LogStream, Outcome, Usage, UsageFilter};
pub use size::{ByteSize, SizeError};
pub use spec::{
    DataAccess, FunctionConfig, HttpWorld, Isolation, Limits, ProcessProtocol, ProcessSpec,
    RequireAuth, ReuseLimits, Runtime, RuntimeKind, SpecError,
};
pub use triggers::{
    ASYNC_TRIGGER, AsyncConfig, Change, ChangeKinds, Destination, MAX_TRIGGERS, RetryPolicy,
    TriggerError, TriggerSource, TriggerSpec, async_stream, documents_stream, objects_stream,
    topic_stream, validate_triggers,
};

/// Milliseconds since the Unix epoch, the one time unit stored in records.
pub type UnixMillis = i64;

/// The current wall-clock time in Unix milliseconds.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// What time it is: injected wherever a rule depends on it (expiry,
/// schedules, retries), so that tests move time instead of waiting.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixMillis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        now_millis()
    }
}
