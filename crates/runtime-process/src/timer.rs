//! Short waits, to about a tenth of a millisecond: tokio's timer ticks
//! every millisecond, which would round each step of a start's readiness
//! poll up to a whole one. One thread holds the deadlines and wakes each
//! waiter when its time comes.

use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Waiter = (Instant, tokio::sync::oneshot::Sender<()>);

pub(crate) struct FineTimer {
    requests: mpsc::Sender<Waiter>,
}

/// A deadline in the heap: the soonest first.
struct Due(Waiter);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0.0 == other.0.0
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.0.cmp(&self.0.0)
    }
}

impl FineTimer {
    pub fn start() -> std::io::Result<FineTimer> {
        let (requests, incoming) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("wok-fine-timer".to_owned())
            .spawn(move || {
                let mut waiting = BinaryHeap::new();
                loop {
                    let now = Instant::now();
                    while waiting.peek().is_some_and(|due: &Due| due.0.0 <= now) {
                        if let Some(Due((_, wake))) = waiting.pop() {
                            let _ = wake.send(());
                        }
                    }
                    let next = match waiting.peek() {
                        Some(due) => incoming.recv_timeout(due.0.0.saturating_duration_since(now)),
                        None => incoming
                            .recv()
                            .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok(waiter) => waiting.push(Due(waiter)),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(FineTimer { requests })
    }

    /// Waits `pause`, give or take a tenth of a millisecond.
    pub async fn sleep(&self, pause: Duration) {
        let (wake, woken) = tokio::sync::oneshot::channel();
        if self.requests.send((Instant::now() + pause, wake)).is_err() {
            // The thread is gone: tokio's timer, coarser, still waits.
            tokio::time::sleep(pause).await;
            return;
        }
        let _ = woken.await;
    }
}
