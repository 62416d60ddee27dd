use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-function admission: at most `max_concurrency` invocations run, at most
/// `max_queue` wait for a slot, the rest are refused at once.
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
    max_concurrency: u32,
    max_queue: u32,
}

/// A running invocation's slot; released on drop.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "{running} invocations are running and {waiting} are waiting, the most this function allows"
    )]
    Overloaded { running: u32, waiting: u32 },
}

impl Admission {
    pub fn new(max_concurrency: u32, max_queue: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrency as usize)),
            waiting: AtomicU32::new(0),
            max_concurrency,
            max_queue,
        }
    }

    pub async fn admit(&self) -> Result<Permit, AdmissionError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Permit { _permit: permit });
        }
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AdmissionError::Overloaded {
                running: self.max_concurrency,
                waiting,
            });
        }
        // Decrement the queue count even if the caller gives up while waiting.
        struct Waiting<'a>(&'a AtomicU32);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&self.waiting);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Ok(Permit { _permit: permit })
    }
}
