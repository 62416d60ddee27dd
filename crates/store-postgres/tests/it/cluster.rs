//! What is PostgreSQL's own: several nodes on one database.
use super::Database;

#[tokio::test]
async fn nodes_starting_together_migrate_the_schema_once() {
    let database = Database::new().await;
    let (first, second, third) = tokio::join!(database.store(), database.store(), database.store());
    drop((first, second, third));
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT version FROM wok_schema", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get::<_, i64>(0),
        i64::from(store_postgres::SCHEMA_VERSION)
    );
}

use domain::{FunctionName, ProjectId, TriggerName};
use std::time::Duration;
use store::StoreError;
use store::events::{EventStore, Fence, NewEvent, with_fence};

fn message(stream: &str) -> NewEvent {
    NewEvent {
        stream: stream.to_owned(),
        kind: "wok.queue.message".to_owned(),
        subject: None,
        key: None,
        content_type: None,
        data: b"x".to_vec(),
        origin: None,
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires_then_changes_hands_under_a_new_epoch() {
    let database = Database::new().await;
    let (first, second) = tokio::join!(database.store(), database.store());
    let ttl = Duration::from_millis(400);
    let taken = first
        .lease("trigger/x", "first", ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        second.lease("trigger/x", "second", ttl).await.unwrap(),
        None
    );
    // Renewing keeps the epoch.
    assert_eq!(
        first.lease("trigger/x", "first", ttl).await.unwrap(),
        Some(taken)
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let taken_over = second
        .lease("trigger/x", "second", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(taken_over > taken);
    assert_eq!(first.lease("trigger/x", "first", ttl).await.unwrap(), None);
    // Given up: free at once.
    second.release("trigger/x", "second").await.unwrap();
    assert!(
        first
            .lease("trigger/x", "first", ttl)
            .await
            .unwrap()
            .unwrap()
            > taken_over
    );
}

#[tokio::test]
async fn a_holder_that_lost_its_lease_moves_no_cursor_and_logs_no_tick() {
    let database = Database::new().await;
    let (first, second) = tokio::join!(database.store(), database.store());
    store::testsuite::events::deploy(
        &first,
        &ProjectId::default_project(),
        "worker",
        &["queue=jobs", "cron=* * * * *"],
    )
    .await;
    let project = ProjectId::default_project();
    let worker = FunctionName::new("worker").unwrap();
    let queue = TriggerName::new("queue-jobs").unwrap();
    let published = first
        .publish(&project, vec![message("topic:jobs")])
        .await
        .unwrap();
    let ttl = Duration::from_millis(400);
    let lease = "trigger/default/worker/queue-jobs";
    let epoch = first.lease(lease, "first", ttl).await.unwrap().unwrap();
    let fence = Fence {
        lease: lease.to_owned(),
        holder: "first".to_owned(),
        epoch,
    };
    let cursor = async |store: &store_postgres::PgStore| {
        store
            .subscriptions(&project, &worker)
            .await
            .unwrap()
            .into_iter()
            .find(|subscription| subscription.trigger == queue)
            .unwrap()
            .cursor
    };
    let before = cursor(&first).await;

    // The first node pauses past its lease; the second takes it.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    second.lease(lease, "second", ttl).await.unwrap().unwrap();
    let moved = with_fence(
        fence.clone(),
        first.advance(&project, &worker, &queue, published[0].seq, Vec::new()),
    )
    .await;
    assert!(matches!(moved, Err(StoreError::LeaseLost(_))), "{moved:?}");
    assert_eq!(cursor(&second).await, before);

    let cron = TriggerName::new("cron").unwrap();
    let at = 1_700_000_000_000;
    let stale = with_fence(
        Fence {
            lease: "trigger/default/worker/cron".to_owned(),
            holder: "first".to_owned(),
            epoch: 1,
        },
        first.schedule(&project, &worker, &cron, message("cron"), at),
    )
    .await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");
    // Unfenced (or fenced by the holder), one tick per time.
    second
        .schedule(&project, &worker, &cron, message("cron"), at)
        .await
        .unwrap();
    let again = first
        .schedule(&project, &worker, &cron, message("cron"), at)
        .await;
    assert!(
        matches!(again, Err(StoreError::ConditionFailed)),
        "{again:?}"
    );
}

#[tokio::test]
async fn another_node_hears_of_a_commit_on_its_streams() {
    let database = Database::new().await;
    let (first, second) = tokio::join!(database.store(), database.store());
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    second.on_events(Box::new(move |streams| {
        let _ = heard.send(streams.to_vec());
    }));
    // The listener connects in the background: publish until it hears.
    let project = ProjectId::default_project();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        first
            .publish(&project, vec![message("topic:jobs")])
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(500), hearing.recv()).await {
            Ok(Some(streams)) if !streams.is_empty() => {
                assert_eq!(streams, vec![(project.clone(), "topic:jobs".to_owned())]);
                break;
            }
            _ => assert!(std::time::Instant::now() < deadline, "never heard"),
        }
    }
    // The first node's own commits wake its readers in process, and are
    // not told back to it.
    let (own, mut own_hearing) = tokio::sync::mpsc::unbounded_channel();
    first.on_events(Box::new(move |streams| {
        let _ = own.send(streams.to_vec());
    }));
    first
        .publish(&project, vec![message("topic:other")])
        .await
        .unwrap();
    assert_eq!(
        own_hearing.recv().await.unwrap(),
        vec![(project.clone(), "topic:other".to_owned())]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        own_hearing.try_recv().is_err(),
        "a node heard its own commit twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_writes_of_two_nodes_commit_in_batches_and_lose_no_increment() {
    use domain::StoreName;
    use store::{Condition, KvStore};
    let database = Database::new().await;
    let (first, second) = tokio::join!(database.store(), database.store());
    let (project, kv) = (
        ProjectId::default_project(),
        StoreName::new("counts").unwrap(),
    );
    // Both nodes increment the same ten keys at once, in opposite key
    // orders (rows taken in different orders by two transactions would
    // deadlock), and set keys of their own.
    let writes = |node: store_postgres::PgStore, name: &'static str, reverse: bool| {
        let (project, kv) = (project.clone(), kv.clone());
        async move {
            let calls = (0..400).map(|i| {
                let (node, project, kv) = (node.clone(), project.clone(), kv.clone());
                async move {
                    let n = if reverse { 9 - i % 10 } else { i % 10 };
                    node.kv_increment(&project, &kv, &format!("key-{n}"), 1, 0)
                        .await
                        .unwrap();
                    node.kv_set(
                        &project,
                        &kv,
                        &format!("{name}-{i}"),
                        b"x".to_vec(),
                        None,
                        Condition::Absent,
                        0,
                    )
                    .await
                    .unwrap();
                }
            });
            futures::future::join_all(calls).await;
        }
    };
    tokio::join!(
        writes(first.clone(), "first", false),
        writes(second.clone(), "second", true)
    );
    for n in 0..10 {
        let entry = first
            .kv_get(&project, &kv, &format!("key-{n}"), 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.value, b"80", "key-{n}");
    }
    // 800 writes on each node, in far fewer transactions.
    for node in [&first, &second] {
        let transactions = node.kv_transactions();
        assert!(
            (1..400).contains(&transactions),
            "{transactions} transactions for 800 writes"
        );
    }
}

#[tokio::test]
async fn a_key_value_write_the_database_refuses_fails_alone_not_its_batch() {
    use domain::StoreName;
    use store::{Condition, KvStore, StoreError};
    let database = Database::new().await;
    let store = database.store().await;
    let (project, kv) = (ProjectId::default_project(), StoreName::new("s").unwrap());
    let set = |key: String| {
        let (store, project, kv) = (store.clone(), project.clone(), kv.clone());
        async move {
            store
                .kv_set(
                    &project,
                    &kv,
                    &key,
                    b"v".to_vec(),
                    None,
                    Condition::Always,
                    0,
                )
                .await
        }
    };
    // PostgreSQL's text holds no NUL: that one write fails, in the same
    // batch as the others.
    let keys = (0..50)
        .map(|i| {
            if i == 25 {
                "bad\0key".to_owned()
            } else {
                format!("good-{i}")
            }
        })
        .collect::<Vec<_>>();
    let answers = futures::future::join_all(keys.iter().cloned().map(set)).await;
    for (key, answer) in keys.iter().zip(answers) {
        if key.contains('\0') {
            assert!(
                matches!(answer, Err(StoreError::Backend { .. })),
                "{answer:?}"
            );
        } else {
            answer.unwrap();
            assert!(store.kv_get(&project, &kv, key, 0).await.unwrap().is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_refreshing_one_token_at_once_rotate_it_once() {
    use store::AccountStore;
    use store::accounts::{Refreshed, Session};
    let database = Database::new().await;
    let (first, second) = tokio::join!(database.store(), database.store());
    let project = ProjectId::default_project();
    let session = Session {
        project: project.clone(),
        id: "s1".to_owned(),
        user_id: "u1".to_owned(),
        created_at: 100,
        refreshed_at: 100,
        aal: 1,
        ended_at: None,
    };
    first.create_session(&session, &[1; 32]).await.unwrap();
    // Connections open on both nodes first, so that the refreshes below
    // do run at once.
    let warm = (0..8).map(|i| {
        let node = if i % 2 == 0 { &first } else { &second };
        node.session(&project, "s1")
    });
    futures::future::join_all(warm).await;
    // The same token, eight times at once, half on each node; each call
    // would turn it into a token of its own.
    let refresh_all = async |now: i64, next: u8| {
        let calls = (0..8u8).map(|i| {
            let node = if i % 2 == 0 { &first } else { &second };
            let project = project.clone();
            async move {
                node.refresh(&project, &[1; 32], &[next + i; 32], now, 0)
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(calls).await
    };
    let version = first.control_version().await.unwrap();

    // In one millisecond: one call rotates it, every other finds it used
    // within the grace (a client that lost the answer).
    let answers = refresh_all(200, 10).await;
    let rotated = answers
        .iter()
        .filter(|answer| matches!(answer, Refreshed::Rotated(_)))
        .count();
    assert_eq!(rotated, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Refreshed::Rotated(_) | Refreshed::Again(_))),
        "{answers:?}"
    );
    assert_eq!(
        second.control_version().await.unwrap(),
        version,
        "a rotation told the other nodes"
    );

    // After the grace: one call finds it replayed and ends the session,
    // the others find it dead.
    let answers = refresh_all(201, 30).await;
    let replayed = answers
        .iter()
        .filter(|answer| {
            **answer
                == Refreshed::Replayed {
                    session_id: "s1".to_owned(),
                }
        })
        .count();
    assert_eq!(replayed, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Refreshed::Replayed { .. } | Refreshed::Refused)),
        "{answers:?}"
    );
    assert_eq!(
        second
            .session(&project, "s1")
            .await
            .unwrap()
            .unwrap()
            .ended_at,
        Some(201)
    );
    assert!(
        second.control_version().await.unwrap() > version,
        "the other nodes were not told of the ended session"
    );
    // Every token the first round handed out is dead too.
    for i in 0..8u8 {
        assert_eq!(
            first
                .refresh(&project, &[10 + i; 32], &[99; 32], 202, 0)
                .await
                .unwrap(),
            Refreshed::Refused
        );
    }
}
