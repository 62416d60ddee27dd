//! The dispatcher with a real store, a scripted `Deliver` and an injected
//! clock: retries wait for the clock, not for the wall.
use domain::Clock as _;
use domain::{FunctionName, ProjectId, TriggerSpec};
use events::{BoxFuture, Deliver, Dispatcher, ManualClock, NoMetrics, Target};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::events::{Event, NewEvent};
use store::{EventStore, FunctionStore, NewVersion};
use store_sqlite::SqliteStore;

/// Fails each event's first delivery, then acknowledges; reports each
/// attempt.
struct FailOnce {
    attempts: tokio::sync::mpsc::UnboundedSender<(String, u32)>,
    seen: Mutex<Vec<String>>,
}

impl Deliver for FailOnce {
    fn deliver(
        &self,
        _target: Arc<Target>,
        events: Vec<Event>,
        attempt: u32,
    ) -> BoxFuture<Result<(), String>> {
        let id = events[0].id.clone();
        let first = {
            let mut seen = self.seen.lock().unwrap();
            let first = !seen.contains(&id);
            seen.push(id.clone());
            first
        };
        let _ = self.attempts.send((id, attempt));
        Box::pin(async move {
            if first {
                Err("first attempt fails".to_owned())
            } else {
                Ok(())
            }
        })
    }
}

async fn next(
    attempted: &mut tokio::sync::mpsc::UnboundedReceiver<(String, u32)>,
) -> (String, u32) {
    tokio::time::timeout(Duration::from_secs(10), attempted.recv())
        .await
        .expect("an attempt within 10 s")
        .unwrap()
}

#[tokio::test]
async fn a_failed_event_is_retried_when_the_clock_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
    let project = ProjectId::default_project();
    let function = FunctionName::new("worker").unwrap();
    let trigger = TriggerSpec::parse("queue=jobs;retry_delay=60s;max_attempts=3").unwrap();
    store
        .create_version(
            &project,
            &function,
            NewVersion {
                artifact: "aaa".to_owned(),
                size_bytes: 1,
                runtime: domain::Runtime::Wasm(domain::HttpWorld::P2),
                config: domain::FunctionConfig {
                    triggers: vec![trigger.clone()],
                    ..domain::FunctionConfig::default()
                },
            },
        )
        .await
        .unwrap();
    let start = domain::now_millis();
    let clock = Arc::new(ManualClock::default());
    clock.set(start);
    let (attempts, mut attempted) = tokio::sync::mpsc::unbounded_channel();
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(FailOnce {
            attempts,
            seen: Mutex::new(Vec::new()),
        }),
        clock.clone(),
        Arc::new(NoMetrics),
    );
    dispatcher.sync(vec![Target {
        project: project.clone(),
        function: function.clone(),
        trigger: trigger.clone(),
    }]);
    let published = store
        .publish(
            &project,
            vec![NewEvent {
                stream: "topic/jobs".to_owned(),
                kind: "wok.queue.message".to_owned(),
                subject: None,
                key: None,
                content_type: None,
                data: b"job".to_vec(),
                origin: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(next(&mut attempted).await, (published[0].id.clone(), 1));

    // The retry is due 30-60 s later by the injected clock: not yet.
    let trigger_name = trigger.name.clone();
    let due_now = {
        let store = store.clone();
        let (project, function, trigger_name) =
            (project.clone(), function.clone(), trigger_name.clone());
        move |now| {
            let (store, project, function, trigger_name) = (
                store.clone(),
                project.clone(),
                function.clone(),
                trigger_name.clone(),
            );
            async move {
                store
                    .failures_due(&project, &function, &trigger_name, now, 10)
                    .await
                    .unwrap()
            }
        }
    };
    // Wait until the failure is recorded (the worker records it right
    // after the attempt).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while due_now(i64::MAX).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the failure was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pending = due_now(i64::MAX).await;
    assert!(pending[0].next_at >= start + 30_000 && pending[0].next_at <= start + 60_000);
    assert!(due_now(clock.now()).await.is_empty());
    assert!(attempted.try_recv().is_err(), "retried before its time");

    // Time passes (for the clock): retried, and acknowledged.
    clock.set(start + 61_000);
    assert_eq!(next(&mut attempted).await, (published[0].id.clone(), 2));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !due_now(i64::MAX).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the retry was not settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dispatcher.stop(Duration::from_secs(5)).await;
}
