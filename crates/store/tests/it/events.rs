//! The `EventStore` contract: the log, the outbox, subscriptions kept in
//! step with deploys, failed events, schedules, pruning, asynchronous
//! invocations.
use domain::{FunctionConfig, FunctionName, HttpWorld, ProjectId, TriggerName, TriggerSpec};
use serde_json::json;
use store::docs::{DocCondition, DocWrite};
use store::events::{
    AsyncAttempt, AsyncQueueLimit, AsyncRequest, AsyncStatus, Event, FailedEvent, FailedFilter,
    NewEvent, Settle,
};
use store::{DocStore, EventStore, MetaStore, NewVersion, SqliteStore};

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

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

fn deploy(store: &dyn MetaStore, project: &ProjectId, function: &str, triggers: &[&str]) {
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
                world: HttpWorld::P2,
                config,
            },
        )
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

pub fn contract<S: EventStore + DocStore + MetaStore>(store: &S) {
    let project = ProjectId::default_project();
    let other = ProjectId::new("other").unwrap();
    let worker = FunctionName::new("worker").unwrap();
    let queue = TriggerName::new("queue-jobs").unwrap();

    // The log: numbered in order, per project and stream.
    let published = block(store.publish(
        &project,
        vec![
            message("topic/jobs", "a", None),
            message("topic/jobs", "b", None),
        ],
    ))
    .unwrap();
    assert!(published[0].seq < published[1].seq);
    assert_ne!(published[0].id, published[1].id);
    let read = store.events(&project, "topic/jobs", 0, 10).unwrap();
    assert_eq!(read, published);
    assert_eq!(store.events(&other, "topic/jobs", 0, 10).unwrap(), vec![]);
    assert_eq!(
        store
            .events(&project, "topic/jobs", published[0].seq, 10)
            .unwrap(),
        published[1..]
    );
    // Replaying from a time: just before the first event at or after it.
    assert_eq!(
        store
            .position_at(&project, "topic/jobs", published[0].time)
            .unwrap(),
        published[0].seq - 1
    );

    // The outbox: changes are logged only while a trigger reads their
    // collection, in the write's own transaction.
    block(store.doc_write(&project, vec![set_doc("before", DocCondition::Always)])).unwrap();
    assert_eq!(
        store.events(&project, "docs/orders", 0, 10).unwrap(),
        vec![]
    );
    deploy(store, &project, "worker", &["queue=jobs", "docs=orders"]);
    let subscriptions = store.subscriptions(&project, &worker).unwrap();
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
    block(store.doc_write(&project, vec![set_doc("one", DocCondition::Always)])).unwrap();
    // A failed batch logs nothing, not even for its writes that applied.
    let failing = block(store.doc_write(
        &project,
        vec![
            set_doc("two", DocCondition::Always),
            set_doc("one", DocCondition::Absent),
        ],
    ));
    assert!(failing.is_err());
    let changes = store.events(&project, "docs/orders", 0, 10).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].kind, "wok.document.created");
    assert_eq!(changes[0].subject.as_deref(), Some("one"));
    let data: serde_json::Value = serde_json::from_slice(&changes[0].data).unwrap();
    assert_eq!(data["after"], json!({"n": 1}));

    // Failed events: recorded with the cursor, due later, ordered by key.
    let keyed = block(store.publish(
        &project,
        vec![
            message("topic/jobs", "k1", Some("k")),
            message("topic/jobs", "k2", Some("k")),
        ],
    ))
    .unwrap();
    block(store.advance(
        &project,
        &worker,
        &queue,
        keyed[1].seq,
        vec![
            failed("worker", "queue-jobs", &keyed[0], 1, 100),
            failed("worker", "queue-jobs", &keyed[1], 0, 0),
        ],
    ))
    .unwrap();
    let cursor = |store: &S| {
        store
            .subscriptions(&project, &worker)
            .unwrap()
            .into_iter()
            .find(|subscription| subscription.trigger == queue)
            .unwrap()
            .cursor
    };
    assert_eq!(cursor(store), keyed[1].seq);
    // Not due yet; then only the first of key k.
    assert_eq!(
        store
            .failures_due(&project, &worker, &queue, 99, 10)
            .unwrap(),
        vec![]
    );
    let due = store
        .failures_due(&project, &worker, &queue, 100, 10)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event.id, keyed[0].id);
    assert_eq!(
        store.retry_state(&project, &worker, &queue).unwrap(),
        // The second waits for the first (due at 100), not for its own 0.
        (Some(100), vec!["k".to_owned()])
    );
    block(store.settle(
        &project,
        &worker,
        &queue,
        keyed[0].seq,
        Settle::Dead {
            attempts: 2,
            error: "still".to_owned(),
        },
    ))
    .unwrap();
    let due = store
        .failures_due(&project, &worker, &queue, 100, 10)
        .unwrap();
    assert_eq!(
        due[0].event.id, keyed[1].id,
        "a dead letter no longer holds its key"
    );
    block(store.settle(&project, &worker, &queue, keyed[1].seq, Settle::Delivered)).unwrap();
    let dead = store
        .dead_letters(&project, &FailedFilter::default(), 0, 10)
        .unwrap();
    assert_eq!(
        (dead.len(), dead[0].attempts, dead[0].error.as_str()),
        (1, 2, "still")
    );
    assert_eq!(
        store
            .dead_letters(&other, &FailedFilter::default(), 0, 10)
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store.failure_counts(&project).unwrap(),
        vec![(worker.clone(), queue.clone(), 0, 1)]
    );
    assert_eq!(
        block(store.redrive(&project, FailedFilter::default())).unwrap(),
        1
    );
    let due = store
        .failures_due(&project, &worker, &queue, i64::MAX, 10)
        .unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 0));
    block(store.settle(
        &project,
        &worker,
        &queue,
        keyed[0].seq,
        Settle::Dead {
            attempts: 1,
            error: "again".to_owned(),
        },
    ))
    .unwrap();
    assert_eq!(
        block(store.purge_dead(&project, FailedFilter::default())).unwrap(),
        1
    );

    // A replay moves the cursor back.
    assert!(block(store.set_cursor(&project, &worker, &queue, 0)).unwrap());
    assert_eq!(cursor(store), 0);

    // Deploys keep the cursor of a trigger kept, drop a trigger gone.
    block(store.set_cursor(&project, &worker, &queue, keyed[1].seq)).unwrap();
    deploy(store, &project, "worker", &["queue=jobs;concurrency=2"]);
    assert_eq!(cursor(store), keyed[1].seq);
    let names: Vec<String> = store
        .subscriptions(&project, &worker)
        .unwrap()
        .iter()
        .map(|subscription| subscription.trigger.to_string())
        .collect();
    assert_eq!(names, ["async", "queue-jobs"]);
    // No trigger reads the collection now: its changes are not logged.
    block(store.doc_write(&project, vec![set_doc("three", DocCondition::Always)])).unwrap();
    assert_eq!(
        store.events(&project, "docs/orders", 0, 10).unwrap().len(),
        1
    );

    // A schedule: logged, the cursor past it, due at its time.
    let cron = TriggerName::new("cron").unwrap();
    deploy(store, &project, "ticker", &["cron=* * * * * *"]);
    let ticker = FunctionName::new("ticker").unwrap();
    let tick = block(store.schedule(
        &project,
        &ticker,
        &cron,
        message("cron/ticker/cron", "{}", None),
        5_000,
    ))
    .unwrap();
    let due = store
        .failures_due(&project, &ticker, &cron, 5_000, 10)
        .unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 0));
    assert!(
        store
            .subscriptions(&project, &ticker)
            .unwrap()
            .iter()
            .any(|s| s.cursor >= tick.seq)
    );
    assert_eq!(
        store
            .failures_due(&project, &ticker, &cron, 4_999, 10)
            .unwrap(),
        vec![]
    );

    // Pruning: old events every trigger has passed go; others stay.
    block(store.set_cursor(&project, &worker, &queue, keyed[0].seq)).unwrap();
    block(store.prune_events(&project, i64::MAX)).unwrap();
    let left = store.events(&project, "topic/jobs", 0, 10).unwrap();
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
    let (first, queued) =
        block(store.enqueue_async(&project, &worker, request("a", Some("key-1"), "a"))).unwrap();
    assert!(queued);
    let (again, queued) =
        block(store.enqueue_async(&project, &worker, request("a", Some("key-1"), "a"))).unwrap();
    assert!(!queued);
    assert_eq!(again.id, first.id);
    assert_eq!(first.status, AsyncStatus::Queued);
    assert!(matches!(
        block(store.enqueue_async(&project, &worker, request("b", Some("key-1"), "b"))),
        Err(store::StoreError::IdempotencyKeyReused)
    ));
    // The queue is bounded in requests and in bytes; a finished request
    // makes room.
    let (second, _) =
        block(store.enqueue_async(&project, &worker, request("b", None, "b"))).unwrap();
    assert!(matches!(
        block(store.enqueue_async(&project, &worker, request(&"x".repeat(999), None, "x"))),
        Err(store::StoreError::AsyncQueueFull {
            requests: 2,
            bytes: 2,
            ..
        })
    ));
    block(store.enqueue_async(&project, &worker, request("c", None, "c"))).unwrap();
    assert!(matches!(
        block(store.enqueue_async(&project, &worker, request("d", None, "d"))),
        Err(store::StoreError::AsyncQueueFull { requests: 3, .. })
    ));
    // Another function's queue is its own.
    let other_function = FunctionName::new("other-worker").unwrap();
    block(store.enqueue_async(&project, &other_function, request("d", None, "d"))).unwrap();
    block(store.record_async(
        &project,
        &first.id,
        AsyncAttempt {
            attempts: 1,
            succeeded: true,
            failed: false,
            response: Some((200, vec![("a".to_owned(), "b".to_owned())], b"ok".to_vec())),
            error: None,
        },
    ))
    .unwrap();
    let found = store
        .async_invocation(&project, &first.id)
        .unwrap()
        .unwrap();
    assert_eq!(found.status, AsyncStatus::Succeeded);
    assert_eq!(found.response.unwrap().2, b"ok");
    block(store.record_async(
        &project,
        &second.id,
        AsyncAttempt {
            attempts: 2,
            succeeded: false,
            failed: true,
            response: None,
            error: Some("trap".to_owned()),
        },
    ))
    .unwrap();
    for data in ["d", "e"] {
        block(store.enqueue_async(&project, &worker, request(data, None, data))).unwrap();
    }
    assert!(matches!(
        block(store.enqueue_async(&project, &worker, request("f", None, "f"))),
        Err(store::StoreError::AsyncQueueFull { requests: 3, .. })
    ));
    assert_eq!(store.async_invocation(&other, &first.id).unwrap(), None);

    // Removing the function removes its subscriptions.
    store.remove(&project, &worker).unwrap();
    assert_eq!(store.subscriptions(&project, &worker).unwrap(), vec![]);
}

#[test]
fn sqlite_store_keeps_the_event_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    store
        .create_project(&ProjectId::new("other").unwrap())
        .unwrap();
    contract(&store);
}

#[test]
fn functions_from_before_triggers_get_their_subscriptions_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    let project = ProjectId::default_project();
    let worker = FunctionName::new("worker").unwrap();
    {
        let store = SqliteStore::open(&path).unwrap();
        deploy(&store, &project, "worker", &["queue=jobs"]);
    }
    // As a data directory from before events: no subscriptions.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM subscriptions", [])
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let names: Vec<String> = store
        .subscriptions(&project, &worker)
        .unwrap()
        .iter()
        .map(|subscription| subscription.trigger.to_string())
        .collect();
    assert_eq!(names, ["async", "queue-jobs"]);
}
