//! The data rules over a real store (SQLite), with a clock the test moves.
use data::{BatchWrite, DataError, Documents, KeyValue};
use domain::{Clock, ProjectId, UnixMillis};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use store::{Condition, StoreError};
use store_sqlite::SqliteStore;

#[derive(Default)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> UnixMillis {
        self.0.load(Ordering::Relaxed)
    }
}

fn fresh() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
    (dir, store)
}

#[tokio::test]
async fn key_value_rules_names_limits_expiry_by_the_clock_and_pages() {
    let (_dir, store) = fresh();
    let clock = Arc::new(TestClock::default());
    clock.0.store(1_000, Ordering::Relaxed);
    let kv = KeyValue::new(store, clock.clone());
    let project = ProjectId::default_project();

    assert!(matches!(
        kv.get(&project, "Not A Name", "k").await,
        Err(DataError::InvalidName(_))
    ));
    assert!(matches!(
        kv.get(&project, "cache", "").await,
        Err(DataError::InvalidKey(_))
    ));
    assert!(matches!(
        kv.set(
            &project,
            "cache",
            &"k".repeat(1025),
            vec![],
            None,
            Condition::Always
        )
        .await,
        Err(DataError::InvalidKey(_))
    ));
    assert!(matches!(
        kv.set(
            &project,
            "cache",
            "k",
            vec![0; (1 << 20) + 1],
            None,
            Condition::Always
        )
        .await,
        Err(DataError::TooLarge(_))
    ));

    // Expiry is decided by the injected clock.
    kv.set(
        &project,
        "cache",
        "session",
        b"s".to_vec(),
        Some(Duration::from_secs(30)),
        Condition::Always,
    )
    .await
    .unwrap();
    clock.0.store(30_999, Ordering::Relaxed);
    let entry = kv.get(&project, "cache", "session").await.unwrap().unwrap();
    assert_eq!(entry.expires_at, Some(31_000));
    clock.0.store(31_000, Ordering::Relaxed);
    assert_eq!(kv.get(&project, "cache", "session").await.unwrap(), None);

    // Counters, and what is not one.
    assert_eq!(kv.increment(&project, "cache", "n", 5).await.unwrap(), 5);
    kv.set(
        &project,
        "cache",
        "word",
        b"x".to_vec(),
        None,
        Condition::Always,
    )
    .await
    .unwrap();
    assert!(matches!(
        kv.increment(&project, "cache", "word", 1).await,
        Err(DataError::Store(StoreError::NotANumber))
    ));

    // Pages end with a cursor that continues after their last key.
    for n in 0..5 {
        kv.set(
            &project,
            "paged",
            &format!("k{n}"),
            vec![],
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    }
    let first = kv.list(&project, "paged", "", None, 2).await.unwrap();
    assert_eq!(first.keys, ["k0", "k1"]);
    let rest = kv
        .list(&project, "paged", "", first.cursor.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!((rest.keys.len(), rest.cursor), (3, None));
    assert!(matches!(
        kv.list(&project, "paged", "", None, 0).await,
        Err(DataError::InvalidQuery(_))
    ));
}

#[tokio::test]
async fn document_rules_batches_queries_and_indexes() {
    let (_dir, store) = fresh();
    let docs = Documents::new(store);
    let project = ProjectId::default_project();
    let write = |op: &str, id: &str, data: serde_json::Value| BatchWrite {
        op: op.to_owned(),
        collection: "users".to_owned(),
        id: Some(id.to_owned()),
        data: Some(data),
        if_version: None,
    };

    assert!(matches!(
        Documents::batch_writes(Vec::new()),
        Err(DataError::InvalidBatch(message)) if message.contains("1 to 500")
    ));
    assert!(matches!(
        Documents::batch_writes(vec![write("upsert", "a", json!({}))]),
        Err(DataError::InvalidBatch(message)) if message.starts_with("write 0:")
    ));
    let writes = Documents::batch_writes(vec![
        write("set", "ada", json!({"city": "London", "age": 36})),
        write("set", "bob", json!({"city": "Oslo", "age": 41})),
    ])
    .unwrap();
    assert_eq!(docs.batch(&project, None, writes).await.unwrap().len(), 2);

    // One write is answered without a batch around its error.
    let again = Documents::batch_writes(vec![write("create", "ada", json!({}))]).unwrap();
    let error = docs
        .write(&project, None, again.into_iter().next().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        DataError::Store(StoreError::DocumentExists(id)) if id == "ada"
    ));

    let users = Documents::collection_name("users").unwrap();
    let page = docs
        .query(&project, &users, &json!({"where": ["city", "==", "Oslo"]}))
        .await
        .unwrap();
    assert_eq!(page.documents[0].id, "bob");
    assert_eq!(docs.count(&project, &users, &json!({})).await.unwrap(), 2);
    assert!(matches!(
        docs.query(&project, &users, &json!({"where": "nonsense"}))
            .await,
        Err(DataError::Store(StoreError::InvalidQuery(_)))
    ));

    assert!(matches!(
        docs.create_index(&project, &users, "By City", &json!(["city"]))
            .await,
        Err(DataError::InvalidName(_))
    ));
    assert!(matches!(
        docs.create_index(&project, &users, "by-city", &json!([]))
            .await,
        Err(DataError::InvalidIndex(_))
    ));
    docs.create_index(&project, &users, "by-city", &json!(["city", "-age"]))
        .await
        .unwrap();
    let names: Vec<String> = docs
        .indexes(&project, &users)
        .await
        .unwrap()
        .into_iter()
        .map(|index| index.name)
        .collect();
    assert_eq!(names, ["by-city"]);
}
