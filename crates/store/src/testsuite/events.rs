//! The `EventStore` contract: the log, the outbox, subscriptions kept in
//! step with deploys, failed events, schedules, pruning, asynchronous
//! invocations.
use crate::docs::{DocCondition, DocWrite};
use crate::events::{
    AsyncAttempt, AsyncQueueLimit, AsyncRequest, AsyncStatus, Event, FailedEvent, FailedFilter,
    NewEvent, Settle,
};
use crate::{DocStore, EventStore, FunctionStore, NewVersion};
use domain::{FunctionConfig, FunctionName, HttpWorld, ProjectId, TriggerName, TriggerSpec};
use serde_json::json;

fn message(stream: &str, data: &str, key: Option<&str>) -> NewEvent {
    NewEvent {
        stream: stream.to_owned(),
        kind: "wok.queue.message".to_owned(),
        subject: None,
        key: key.map(str::to_owned),
        content_type: Some("text/plain".to_owned()),
        data: data.as_bytes().to_vec(),
        origin: None,
    }
}

/// Deploys a version of `function` with `triggers` (each as `--trigger`
/// takes it).
pub async fn deploy(
    store: &dyn FunctionStore,
    project: &ProjectId,
    function: &str,
    triggers: &[&str],
) {
    let config = FunctionConfig {
        triggers: triggers
            .iter()
            .map(|line| TriggerSpec::parse(line).unwrap())
            .collect(),
        ..FunctionConfig::default()
    };
    store
        .create_version(
            project,
            &FunctionName::new(function).unwrap(),
            NewVersion {
                artifact: "aaa".to_owned(),
                size_bytes: 1,
                runtime: domain::Runtime::Wasm(HttpWorld::P2),
                config,
            },
        )
        .await
        .unwrap();
}

fn set_doc(id: &str, condition: DocCondition) -> DocWrite {
    DocWrite::Set {
        collection: domain::CollectionName::new("orders").unwrap(),
        id: Some(id.to_owned()),
        data: json!({"n": 1}).as_object().unwrap().clone(),
        condition,
    }
}

fn failed(
    function: &str,
    trigger: &str,
    event: &Event,
    attempts: u32,
    next_at: i64,
) -> FailedEvent {
    FailedEvent {
        function: FunctionName::new(function).unwrap(),
        trigger: TriggerName::new(trigger).unwrap(),
        event: event.clone(),
        dead: false,
        attempts,
        next_at,
        first_failed_at: next_at,
        error: "boom".to_owned(),
    }
}

pub async fn contract<S: EventStore + DocStore + FunctionStore>(store: &S) {
    let project = ProjectId::default_project();
    let other = ProjectId::new("other").unwrap();
    let worker = FunctionName::new("worker").unwrap();
    let queue = TriggerName::new("queue-jobs").unwrap();

    // The log: numbered in order, per project and stream.
    let published = store
        .publish(
            &project,
            vec![
                message("topic/jobs", "a", None),
                message("topic/jobs", "b", None),
            ],
        )
        .await
        .unwrap();
    assert!(published[0].seq < published[1].seq);
    assert_ne!(published[0].id, published[1].id);
    let read = store.events(&project, "topic/jobs", 0, 10).await.unwrap();
    assert_eq!(read, published);
    assert_eq!(
        store.events(&other, "topic/jobs", 0, 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .events(&project, "topic/jobs", published[0].seq, 10)
            .await
            .unwrap(),
        published[1..]
    );
    // Replaying from a time: just before the first event at or after it.
    assert_eq!(
        store
            .position_at(&project, "topic/jobs", published[0].time)
            .await
            .unwrap(),
        published[0].seq - 1
    );

    // The outbox: changes are logged only while a trigger reads their
    // collection, in the write's own transaction.
    store
        .doc_write(
            &project,
            None,
            vec![set_doc("before", DocCondition::Always)],
        )
        .await
        .unwrap();
    assert_eq!(
        store.events(&project, "docs/orders", 0, 10).await.unwrap(),
        vec![]
    );
    deploy(store, &project, "worker", &["queue=jobs", "docs=orders"]).await;
    let subscriptions = store.subscriptions(&project, &worker).await.unwrap();
    assert_eq!(
        subscriptions.len(),
        3,
        "two triggers and async: {subscriptions:?}"
    );
    let start = subscriptions
        .iter()
        .find(|subscription| subscription.trigger == queue)
        .unwrap()
        .cursor;
    assert!(start >= published[1].seq, "a new trigger starts at the end");
    store
        .doc_write(&project, None, vec![set_doc("one", DocCondition::Always)])
        .await
        .unwrap();
    // A failed batch logs nothing, not even for its writes that applied.
    let failing = store
        .doc_write(
            &project,
            None,
            vec![
                set_doc("two", DocCondition::Always),
                set_doc("one", DocCondition::Absent),
            ],
        )
        .await;
    assert!(failing.is_err());
    let changes = store.events(&project, "docs/orders", 0, 10).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].kind, "wok.document.created");
    assert_eq!(changes[0].subject.as_deref(), Some("one"));
    let data: serde_json::Value = serde_json::from_slice(&changes[0].data).unwrap();
    assert_eq!(data["after"], json!({"n": 1}));

    // Failed events: recorded with the cursor, due later, ordered by key.
    let keyed = store
        .publish(
            &project,
            vec![
                message("topic/jobs", "k1", Some("k")),
                message("topic/jobs", "k2", Some("k")),
            ],
        )
        .await
        .unwrap();
    store
        .advance(
            &project,
            &worker,
            &queue,
            keyed[1].seq,
            vec![
                failed("worker", "queue-jobs", &keyed[0], 1, 100),
                failed("worker", "queue-jobs", &keyed[1], 0, 0),
            ],
        )
        .await
        .unwrap();
    let cursor = async |store: &S| {
        store
            .subscriptions(&project, &worker)
            .await
            .unwrap()
            .into_iter()
            .find(|subscription| subscription.trigger == queue)
            .unwrap()
            .cursor
    };
    assert_eq!(cursor(store).await, keyed[1].seq);
    // Not due yet; then only the first of key k.
    assert_eq!(
        store
            .failures_due(&project, &worker, &queue, 99, 10)
            .await
            .unwrap(),
        vec![]
    );
    let due = store
        .failures_due(&project, &worker, &queue, 100, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event.id, keyed[0].id);
    assert_eq!(
        store.retry_state(&project, &worker, &queue).await.unwrap(),
        // The second waits for the first (due at 100), not for its own 0.
        (Some(100), vec!["k".to_owned()])
    );
    store
        .settle(
            &project,
            &worker,
            &queue,
            keyed[0].seq,
            Settle::Dead {
                attempts: 2,
                error: "still".to_owned(),
            },
        )
        .await
        .unwrap();
    let due = store
        .failures_due(&project, &worker, &queue, 100, 10)
        .await
        .unwrap();
    assert_eq!(
        due[0].event.id, keyed[1].id,
        "a dead letter no longer holds its key"
    );
    store
        .settle(&project, &worker, &queue, keyed[1].seq, Settle::Delivered)
        .await
        .unwrap();
    let dead = store
        .dead_letters(&project, &FailedFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        (dead.len(), dead[0].attempts, dead[0].error.as_str()),
        (1, 2, "still")
    );
    assert_eq!(
        store
            .dead_letters(&other, &FailedFilter::default(), 0, 10)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store.failure_counts(&project).await.unwrap(),
        vec![(worker.clone(), queue.clone(), 0, 1)]
    );
    assert_eq!(
        store
            .redrive(&project, FailedFilter::default())
            .await
            .unwrap(),
        1
    );
    let due = store
        .failures_due(&project, &worker, &queue, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 0));
    store
        .settle(
            &project,
            &worker,
            &queue,
            keyed[0].seq,
            Settle::Dead {
                attempts: 1,
                error: "again".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .purge_dead(&project, FailedFilter::default())
            .await
            .unwrap(),
        1
    );

    // A replay moves the cursor back.
    assert!(
        store
            .set_cursor(&project, &worker, &queue, 0)
            .await
            .unwrap()
    );
    assert_eq!(cursor(store).await, 0);

    // Deploys keep the cursor of a trigger kept, drop a trigger gone.
    store
        .set_cursor(&project, &worker, &queue, keyed[1].seq)
        .await
        .unwrap();
    deploy(store, &project, "worker", &["queue=jobs;concurrency=2"]).await;
    assert_eq!(cursor(store).await, keyed[1].seq);
    let names: Vec<String> = store
        .subscriptions(&project, &worker)
        .await
        .unwrap()
        .iter()
        .map(|subscription| subscription.trigger.to_string())
        .collect();
    assert_eq!(names, ["async", "queue-jobs"]);
    // No trigger reads the collection now: its changes are not logged.
    store
        .doc_write(&project, None, vec![set_doc("three", DocCondition::Always)])
        .await
        .unwrap();
    assert_eq!(
        store
            .events(&project, "docs/orders", 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // A schedule: logged, the cursor past it, due at its time.
    let cron = TriggerName::new("cron").unwrap();
    deploy(store, &project, "ticker", &["cron=* * * * * *"]).await;
    let ticker = FunctionName::new("ticker").unwrap();
    let tick = store
        .schedule(
            &project,
            &ticker,
            &cron,
            message("cron/ticker/cron", "{}", None),
            5_000,
        )
        .await
        .unwrap();
    let due = store
        .failures_due(&project, &ticker, &cron, 5_000, 10)
        .await
        .unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 0));
    assert!(
        store
            .subscriptions(&project, &ticker)
            .await
            .unwrap()
            .iter()
            .any(|s| s.cursor >= tick.seq)
    );
    assert_eq!(
        store
            .failures_due(&project, &ticker, &cron, 4_999, 10)
            .await
            .unwrap(),
        vec![]
    );

    // Pruning: old events every trigger has passed go; others stay.
    store
        .set_cursor(&project, &worker, &queue, keyed[0].seq)
        .await
        .unwrap();
    store.prune_events(&project, i64::MAX).await.unwrap();
    let left = store.events(&project, "topic/jobs", 0, 10).await.unwrap();
    assert_eq!(
        left.len(),
        1,
        "only the event the trigger has not passed: {left:?}"
    );
    assert_eq!(left[0].id, keyed[1].id);

    // Asynchronous invocations: an idempotency key returns the first, for
    // the same request only.
    let limit = AsyncQueueLimit {
        requests: 3,
        bytes: 1000,
    };
    let request = |data: &str, key: Option<&str>, fingerprint: &str| AsyncRequest {
        request: message("invoke/worker", data, None),
        idempotency_key: key.map(str::to_owned),
        fingerprint: fingerprint.to_owned(),
        limit: Some(limit),
    };
    let (first, queued) = store
        .enqueue_async(&project, &worker, request("a", Some("key-1"), "a"))
        .await
        .unwrap();
    assert!(queued);
    let (again, queued) = store
        .enqueue_async(&project, &worker, request("a", Some("key-1"), "a"))
        .await
        .unwrap();
    assert!(!queued);
    assert_eq!(again.id, first.id);
    assert_eq!(first.status, AsyncStatus::Queued);
    assert!(matches!(
        store
            .enqueue_async(&project, &worker, request("b", Some("key-1"), "b"))
            .await,
        Err(crate::StoreError::IdempotencyKeyReused)
    ));
    // The queue is bounded in requests and in bytes; a finished request
    // makes room.
    let (second, _) = store
        .enqueue_async(&project, &worker, request("b", None, "b"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .enqueue_async(&project, &worker, request(&"x".repeat(999), None, "x"))
            .await,
        Err(crate::StoreError::AsyncQueueFull {
            requests: 2,
            bytes: 2,
            ..
        })
    ));
    store
        .enqueue_async(&project, &worker, request("c", None, "c"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .enqueue_async(&project, &worker, request("d", None, "d"))
            .await,
        Err(crate::StoreError::AsyncQueueFull { requests: 3, .. })
    ));
    // Another function's queue is its own.
    let other_function = FunctionName::new("other-worker").unwrap();
    store
        .enqueue_async(&project, &other_function, request("d", None, "d"))
        .await
        .unwrap();
    store
        .record_async(
            &project,
            &first.id,
            AsyncAttempt {
                attempts: 1,
                succeeded: true,
                failed: false,
                response: Some((200, vec![("a".to_owned(), "b".to_owned())], b"ok".to_vec())),
                error: None,
            },
        )
        .await
        .unwrap();
    let found = store
        .async_invocation(&project, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.status, AsyncStatus::Succeeded);
    assert_eq!(found.response.unwrap().2, b"ok");
    store
        .record_async(
            &project,
            &second.id,
            AsyncAttempt {
                attempts: 2,
                succeeded: false,
                failed: true,
                response: None,
                error: Some("trap".to_owned()),
            },
        )
        .await
        .unwrap();
    for data in ["d", "e"] {
        store
            .enqueue_async(&project, &worker, request(data, None, data))
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .enqueue_async(&project, &worker, request("f", None, "f"))
            .await,
        Err(crate::StoreError::AsyncQueueFull { requests: 3, .. })
    ));
    assert_eq!(
        store.async_invocation(&other, &first.id).await.unwrap(),
        None
    );

    // Removing the function removes its subscriptions.
    store.remove(&project, &worker).await.unwrap();
    assert_eq!(
        store.subscriptions(&project, &worker).await.unwrap(),
        vec![]
    );
}
