use crate::{FunctionName, InvocationId, ProjectId, UnixMillis};

/// How an invocation ended. Guest failures are outcomes, not host errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap,
    /// The guest ran past its wall-clock timeout.
    Timeout,
    /// The guest tried to grow memory past its limit.
    OutOfMemory,
    /// The guest exhausted its call stack.
    StackOverflow,
    /// The guest returned without producing a response, or answered with an error code.
    NoResponse,
    /// The client went away before the response was complete.
    ClientDisconnected,
    /// A native function's process exited (or was killed by a signal)
    /// while it held the invocation.
    Crashed,
    /// wok itself failed to run the guest.
    Internal,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Success,
        Outcome::Trap,
        Outcome::Timeout,
        Outcome::OutOfMemory,
        Outcome::StackOverflow,
        Outcome::NoResponse,
        Outcome::ClientDisconnected,
        Outcome::Crashed,
        Outcome::Internal,
    ];

    /// The stable code used in records, error bodies and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Trap => "function_trap",
            Outcome::Timeout => "function_timeout",
            Outcome::OutOfMemory => "function_out_of_memory",
            Outcome::StackOverflow => "function_stack_overflow",
            Outcome::NoResponse => "function_no_response",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::Crashed => "function_crashed",
            Outcome::Internal => "internal_error",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.code() == code)
    }

    /// Whether the invocation counts as an error in usage.
    pub fn is_error(self) -> bool {
        !matches!(self, Outcome::Success | Outcome::ClientDisconnected)
    }
}

/// The durable record one invocation leaves. Usage is an exact sum of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub id: InvocationId,
    pub project: ProjectId,
    pub function: FunctionName,
    pub version: u32,
    /// What started it: `http` for now.
    pub trigger: String,
    pub start: UnixMillis,
    /// Wall-clock duration in microseconds.
    pub duration_us: u64,
    /// Duration rounded up to the next millisecond, at least 1.
    pub billed_ms: u64,
    /// Configured memory in MiB (what GB-seconds are billed on).
    pub memory_mib: u64,
    /// Highest linear memory the instance reached, in bytes.
    pub peak_memory_bytes: u64,
    /// CPU time the instance used during the call, in microseconds, where
    /// it can be told apart: a native instance serving one call at a time.
    pub cpu_us: Option<u64>,
    pub outcome: Outcome,
    /// Whether a new instance was created for it.
    pub cold: bool,
    /// How long that new instance took to start (to be ready), in
    /// microseconds, within `duration_us`: native instances.
    pub init_us: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How the caller proved who it is (`none`, `public-key`,
    /// `service-key`, `admin`, `function`, `user`), as the gateway
    /// verified it; `None` in records from before it was kept.
    pub auth: Option<String>,
    /// The signed-in app user that called, if one did.
    pub user_id: Option<String>,
}

impl InvocationRecord {
    /// Rounds a duration up to whole milliseconds, with a minimum of one.
    pub fn billed_ms_for(duration_us: u64) -> u64 {
        duration_us.div_ceil(1000).max(1)
    }

    /// This record's contribution to usage, in MiB-milliseconds.
    pub fn mib_ms(&self) -> u64 {
        self.billed_ms * self.memory_mib
    }
}

/// Which records a usage query sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub since: Option<UnixMillis>,
    pub until: Option<UnixMillis>,
    pub function: Option<FunctionName>,
    /// Only invocations started this way: `http`, `queue`, `cron`, `docs`,
    /// `objects` or `async`.
    pub trigger: Option<String>,
}

/// Exact sums over invocation records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub errors: u64,
    pub billed_ms: u64,
    /// Sum of billed milliseconds times configured MiB: exact.
    pub mib_ms: u64,
}

impl Usage {
    /// GB-seconds (1 GB = 1024 MiB, as Lambda bills), derived from `mib_ms`.
    pub fn gb_seconds(&self) -> f64 {
        self.mib_ms as f64 / 1024.0 / 1000.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line a guest wrote, tagged with the invocation that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub project: ProjectId,
    pub function: FunctionName,
    pub invocation: InvocationId,
    /// The native instance that wrote it (`None` for components, whose
    /// instances live for one call or a reuse pool's while).
    pub instance: Option<String>,
    pub time: UnixMillis,
    pub stream: LogStream,
    pub line: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_up_to_the_millisecond() {
        assert_eq!(InvocationRecord::billed_ms_for(0), 1);
        assert_eq!(InvocationRecord::billed_ms_for(1), 1);
        assert_eq!(InvocationRecord::billed_ms_for(1000), 1);
        assert_eq!(InvocationRecord::billed_ms_for(1001), 2);
    }

    #[test]
    fn outcome_codes_round_trip() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::from_code(outcome.code()), Some(outcome));
        }
    }
}
