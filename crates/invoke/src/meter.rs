use crate::Permit;
use domain::{
    FunctionName, InvocationId, InvocationRecord, LogLine, Outcome, ProjectId, UnixMillis,
    now_millis,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Where finished invocation records go (batched to the store by metering).
pub trait RecordSink: Send + Sync + 'static {
    fn record(&self, record: InvocationRecord);
}

/// Where guest output lines go.
pub trait LogSink: Send + Sync + 'static {
    fn log(&self, line: LogLine);
}

struct Finish {
    outcome: Outcome,
    duration_us: u64,
    peak_memory_bytes: u64,
    cold: bool,
}

/// Accumulates one invocation's record. The runtime calls [`Meter::finish`]
/// when the guest is done; bodies add their byte counts. The record is sent
/// when the last holder drops the meter, so it includes every byte streamed.
pub struct Meter {
    id: InvocationId,
    project: ProjectId,
    function: FunctionName,
    version: u32,
    trigger: &'static str,
    memory_mib: u64,
    start: UnixMillis,
    started: Instant,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    client_left: AtomicBool,
    /// What the caller was answered, when that decides the outcome.
    answered: Mutex<Option<Outcome>>,
    cpu_us: Mutex<Option<u64>>,
    init_us: Mutex<Option<u64>>,
    finish: Mutex<Option<Finish>>,
    // Held until the record is written: the concurrency slot is free only
    // once the invocation is entirely over.
    permit: Mutex<Option<Permit>>,
    sink: std::sync::Arc<dyn RecordSink>,
    caller: crate::CallerIdentity,
}

pub struct MeterInit {
    pub id: InvocationId,
    pub project: ProjectId,
    pub function: FunctionName,
    pub version: u32,
    pub trigger: &'static str,
    pub memory_mib: u64,
    /// Who called (its record keeps how it proved it and the user id).
    pub caller: crate::CallerIdentity,
}

impl Meter {
    pub fn new(
        init: MeterInit,
        permit: Option<Permit>,
        sink: std::sync::Arc<dyn RecordSink>,
    ) -> Self {
        Self {
            id: init.id,
            project: init.project,
            function: init.function,
            version: init.version,
            trigger: init.trigger,
            memory_mib: init.memory_mib,
            start: now_millis(),
            started: Instant::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            client_left: AtomicBool::new(false),
            answered: Mutex::new(None),
            cpu_us: Mutex::new(None),
            init_us: Mutex::new(None),
            finish: Mutex::new(None),
            permit: Mutex::new(permit),
            sink,
            caller: init.caller,
        }
    }

    pub fn id(&self) -> &InvocationId {
        &self.id
    }

    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    pub fn function(&self) -> &FunctionName {
        &self.function
    }

    pub fn add_bytes_in(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The client went away before the whole response reached it.
    pub fn client_left(&self) {
        self.client_left.store(true, Ordering::Relaxed);
    }

    /// The caller got an error for this outcome (the guest answered with an
    /// error code): the record says so, however the guest's run ends.
    pub fn answered_with(&self, outcome: Outcome) {
        *self
            .answered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outcome);
    }

    /// The CPU time the call used, where the runtime can measure it.
    pub fn cpu_time(&self, micros: u64) {
        *self
            .cpu_us
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(micros);
    }

    /// How long the new instance made for this call took to start.
    pub fn init_time(&self, micros: u64) {
        *self
            .init_us
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(micros);
    }

    /// Marks the guest's work as done. The first call wins.
    pub fn finish(&self, outcome: Outcome, peak_memory_bytes: u64, cold: bool) {
        let duration_us = self.started.elapsed().as_micros() as u64;
        let mut finish = self
            .finish
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if finish.is_none() {
            *finish = Some(Finish {
                outcome,
                duration_us,
                peak_memory_bytes,
                cold,
            });
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let finish = self
            .finish
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let finish = finish.unwrap_or(Finish {
            // Nobody said how it ended: wok lost track of it, which is ours to own.
            outcome: Outcome::Internal,
            duration_us: self.started.elapsed().as_micros() as u64,
            peak_memory_bytes: 0,
            cold: false,
        });
        // A guest that fails once nobody reads its answer (most fail on the
        // closed stream) did not fail on its own. Limits it ran into stay
        // its own.
        let answered = *self
            .answered
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = match answered.unwrap_or(finish.outcome) {
            Outcome::Success | Outcome::Trap if self.client_left.load(Ordering::Relaxed) => {
                Outcome::ClientDisconnected
            }
            outcome => outcome,
        };
        let record = InvocationRecord {
            id: self.id.clone(),
            project: self.project.clone(),
            function: self.function.clone(),
            version: self.version,
            trigger: self.trigger.to_owned(),
            start: self.start,
            duration_us: finish.duration_us,
            billed_ms: InvocationRecord::billed_ms_for(finish.duration_us),
            memory_mib: self.memory_mib,
            peak_memory_bytes: finish.peak_memory_bytes,
            cpu_us: *self
                .cpu_us
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            outcome,
            cold: finish.cold,
            init_us: *self
                .init_us
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            auth: Some(self.caller.auth.as_str().to_owned()),
            user_id: self.caller.user_id.take(),
        };
        self.sink.record(record);
        drop(self.permit.get_mut().map(Option::take));
    }
}
