//! Deadlines for guests blocked in host calls, where epochs do not reach.
//!
//! A per-request tokio timer would wake the thread holding the time driver
//! on every request (measured: a context switch per request); instead the
//! epoch ticker thread checks this registry every tick and fires the expired
//! ones. Registering and dropping a deadline is a mutex-guarded map insert.
//! Every running invocation holds a deadline, so the ticker sleeps while
//! there is none (an idle server does not tick), and the first
//! registration wakes it.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Watchdog {
    next: AtomicU64,
    deadlines: Mutex<HashMap<u64, (Instant, oneshot::Sender<()>)>>,
    /// The ticker thread, woken when the first deadline is registered.
    ticker: std::sync::OnceLock<std::thread::Thread>,
}

/// A registered deadline; dropping it unregisters.
pub struct Deadline<'a> {
    watchdog: &'a Watchdog,
    id: u64,
    /// Resolves when the deadline passes.
    pub expired: oneshot::Receiver<()>,
}

impl Watchdog {
    pub fn register(&self, at: Instant) -> Deadline<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, expired) = oneshot::channel();
        let mut deadlines = self.lock();
        let first = deadlines.is_empty();
        deadlines.insert(id, (at, sender));
        drop(deadlines);
        if first && let Some(ticker) = self.ticker.get() {
            ticker.unpark();
        }
        Deadline {
            watchdog: self,
            id,
            expired,
        }
    }

    /// Makes the calling thread the ticker that registrations wake.
    pub fn set_ticker(&self) {
        let _ = self.ticker.set(std::thread::current());
    }

    /// Whether no invocation is running (no deadline is registered).
    pub fn is_idle(&self) -> bool {
        self.lock().is_empty()
    }

    /// Fires every deadline that has passed; called by the ticker thread.
    pub fn fire_expired(&self, now: Instant) {
        let mut deadlines = self.lock();
        let expired: Vec<u64> = deadlines
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, sender)) = deadlines.remove(&id) {
                let _ = sender.send(());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, oneshot::Sender<()>)>> {
        self.deadlines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.watchdog.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_passed_deadlines_fire_and_dropped_ones_are_forgotten() {
        let watchdog = Watchdog::default();
        let now = Instant::now();
        let mut soon = watchdog.register(now + Duration::from_millis(5));
        let mut later = watchdog.register(now + Duration::from_secs(60));
        let dropped = watchdog.register(now);
        drop(dropped);
        watchdog.fire_expired(now + Duration::from_millis(10));
        assert!(soon.expired.try_recv().is_ok());
        assert!(later.expired.try_recv().is_err());
        drop((soon, later));
        assert!(watchdog.lock().is_empty());
    }
}
