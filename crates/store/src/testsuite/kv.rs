//! The key-value contract.
use crate::{Condition, KvStore, StoreError};
use domain::{ProjectId, StoreName};

/// Key-value stores.
pub async fn contract(store: &dyn KvStore) {
    let project = ProjectId::default_project();
    let other = ProjectId::new("other").unwrap();
    let cache = StoreName::new("cache").unwrap();
    let now = 1_000;
    assert!(
        store
            .kv_get(&project, &cache, "a", now)
            .await
            .unwrap()
            .is_none()
    );
    let v1 = store
        .kv_set(
            &project,
            &cache,
            "a",
            b"one".to_vec(),
            None,
            Condition::Always,
            now,
        )
        .await
        .unwrap();
    let entry = store
        .kv_get(&project, &cache, "a", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((entry.value.as_slice(), entry.version), (&b"one"[..], v1));
    // Same store and key in another project: another entry.
    assert!(
        store
            .kv_get(&other, &cache, "a", now)
            .await
            .unwrap()
            .is_none()
    );

    // Conditions: compare-and-swap on the version, create-only.
    assert!(matches!(
        store
            .kv_set(
                &project,
                &cache,
                "a",
                b"x".to_vec(),
                None,
                Condition::Version(v1 + 100),
                now
            )
            .await,
        Err(StoreError::ConditionFailed)
    ));
    assert!(matches!(
        store
            .kv_set(
                &project,
                &cache,
                "a",
                b"x".to_vec(),
                None,
                Condition::Absent,
                now
            )
            .await,
        Err(StoreError::ConditionFailed)
    ));
    let v2 = store
        .kv_set(
            &project,
            &cache,
            "a",
            b"two".to_vec(),
            None,
            Condition::Version(v1),
            now,
        )
        .await
        .unwrap();
    assert!(v2 > v1);
    // A deleted then rewritten key never gets an old version back.
    assert!(
        store
            .kv_delete(&project, &cache, "a", Condition::Version(v2), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .kv_delete(&project, &cache, "a", Condition::Always, now)
            .await
            .unwrap()
    );
    let v3 = store
        .kv_set(
            &project,
            &cache,
            "a",
            b"three".to_vec(),
            None,
            Condition::Absent,
            now,
        )
        .await
        .unwrap();
    assert!(v3 > v2);

    // Expiry: gone at its time, for reads, lists and conditions.
    store
        .kv_set(
            &project,
            &cache,
            "session",
            b"s".to_vec(),
            Some(now + 10),
            Condition::Always,
            now,
        )
        .await
        .unwrap();
    assert!(
        store
            .kv_get(&project, &cache, "session", now + 9)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .kv_get(&project, &cache, "session", now + 10)
            .await
            .unwrap()
            .is_none()
    );
    store
        .kv_set(
            &project,
            &cache,
            "session",
            b"s2".to_vec(),
            None,
            Condition::Absent,
            now + 10,
        )
        .await
        .unwrap();

    // Listing: prefix, cursor, byte order.
    for key in ["user/1", "user/2", "user/3", "users", "user/10", "v"] {
        store
            .kv_set(
                &project,
                &cache,
                key,
                b"".to_vec(),
                None,
                Condition::Always,
                now,
            )
            .await
            .unwrap();
    }
    let page = store
        .kv_list(&project, &cache, "user/", None, 2, now)
        .await
        .unwrap();
    assert_eq!(page, ["user/1", "user/10"]);
    let page = store
        .kv_list(&project, &cache, "user/", Some("user/10"), 10, now)
        .await
        .unwrap();
    assert_eq!(page, ["user/2", "user/3"]);
    assert_eq!(
        store
            .kv_list(&project, &cache, "", Some("users"), 10, now)
            .await
            .unwrap(),
        ["v"]
    );
    assert!(
        store
            .kv_list(&other, &cache, "", None, 10, now)
            .await
            .unwrap()
            .is_empty()
    );

    // Increment: absent is 0, keeps expiry, refuses non-numbers and overflow.
    assert_eq!(
        store
            .kv_increment(&project, &cache, "hits", 5, now)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .kv_increment(&project, &cache, "hits", -7, now)
            .await
            .unwrap(),
        -2
    );
    assert_eq!(
        store
            .kv_get(&project, &cache, "hits", now)
            .await
            .unwrap()
            .unwrap()
            .value,
        b"-2"
    );
    assert!(matches!(
        store.kv_increment(&project, &cache, "a", 1, now).await,
        Err(StoreError::NotANumber)
    ));
    store
        .kv_set(
            &project,
            &cache,
            "big",
            i64::MAX.to_string().into_bytes(),
            None,
            Condition::Always,
            now,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.kv_increment(&project, &cache, "big", 1, now).await,
        Err(StoreError::Overflow)
    ));
    store
        .kv_set(
            &project,
            &cache,
            "ttl",
            b"1".to_vec(),
            Some(now + 50),
            Condition::Always,
            now,
        )
        .await
        .unwrap();
    store
        .kv_increment(&project, &cache, "ttl", 1, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .kv_get(&project, &cache, "ttl", now)
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        Some(now + 50)
    );

    assert_eq!(
        store.kv_stores(&project).await.unwrap(),
        [StoreName::new("cache").unwrap()]
    );
    assert!(store.kv_stores(&other).await.unwrap().is_empty());

    // Dropping a store deletes every entry; versions go on.
    let before = store
        .kv_set(
            &project,
            &cache,
            "last",
            b"1".to_vec(),
            None,
            Condition::Always,
            now,
        )
        .await
        .unwrap();
    assert!(!store.kv_drop_store(&other, &cache).await.unwrap());
    assert!(store.kv_drop_store(&project, &cache).await.unwrap());
    assert!(
        store
            .kv_get(&project, &cache, "last", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .kv_list(&project, &cache, "", None, 100, now)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.kv_stores(&project).await.unwrap().is_empty());
    assert!(!store.kv_drop_store(&project, &cache).await.unwrap());
    let after = store
        .kv_set(
            &project,
            &cache,
            "last",
            b"2".to_vec(),
            None,
            Condition::Always,
            now,
        )
        .await
        .unwrap();
    assert!(after > before, "version {after} after {before}");
    assert_eq!(
        store.kv_stores(&project).await.unwrap(),
        [StoreName::new("cache").unwrap()]
    );
}

/// Writes from many tasks share commits (group commit); each must be
/// applied exactly once and answered with its own result.
pub async fn concurrent_writes_each_apply_once(store: std::sync::Arc<dyn KvStore>) {
    let project = ProjectId::default_project();
    let counters = StoreName::new("counters").unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (store, project, counters) = (store.clone(), project.clone(), counters.clone());
            tokio::spawn(async move {
                let mut sums = Vec::new();
                for i in 0..100 {
                    sums.push(
                        store
                            .kv_increment(&project, &counters, "total", 1, 0)
                            .await
                            .unwrap(),
                    );
                    store
                        .kv_set(
                            &project,
                            &counters,
                            &format!("key-{task}-{i}"),
                            b"x".to_vec().to_vec(),
                            None,
                            Condition::Absent,
                            0,
                        )
                        .await
                        .unwrap();
                }
                sums
            })
        })
        .collect();
    let mut sums: Vec<i64> = Vec::new();
    for task in tasks {
        sums.extend(task.await.unwrap());
    }
    sums.sort();
    // Every increment saw a distinct total: none lost, none doubled.
    assert_eq!(sums, (1..=800).collect::<Vec<i64>>());
    let keys = store
        .kv_list(&project, &counters, "key-", None, 10_000, 0)
        .await
        .unwrap();
    assert_eq!(keys.len(), 800);
}
