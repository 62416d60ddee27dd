//! The SQLite backend: the contract suite every backend passes, then what
//! is SQLite's own: reopening, the key-value journal's replay after a
//! crash (crash copies, torn and damaged records), checkpoints, and the
//! numbered migrations from an empty database and from one made by a
//! release before them.
use domain::{FunctionName, ProjectId, StoreName, UsageFilter};
use store::events::EventStore;
use store::{Condition, FunctionStore, KvStore, RecordStore};
use store_sqlite::SqliteStore;

mod migrations;

/// A fresh store in a temporary directory, which lives as long as it.
async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    (dir, store)
}

store::contract_tests!(fresh());

fn name(text: &str) -> FunctionName {
    FunctionName::new(text).unwrap()
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    store::testsuite::functions::contract(&SqliteStore::open(&path).unwrap()).await;
    let reopened = SqliteStore::open(&path).unwrap();
    let project = ProjectId::default_project();
    assert_eq!(
        reopened
            .current(&project, &name("app"))
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        reopened
            .usage(&project, &UsageFilter::default())
            .await
            .unwrap()
            .requests,
        3
    );
}

#[tokio::test]
async fn expired_key_value_entries_are_deleted_from_disk_by_later_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    let store = SqliteStore::open(&path).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = async |key: &str, expires_at, now| {
        store
            .kv_set(
                &project,
                &cache,
                key,
                b"v".to_vec(),
                expires_at,
                Condition::Always,
                now,
            )
            .await
            .unwrap();
    };
    let on_disk = || -> i64 {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM kv WHERE key = 'session'", [], |row| {
                row.get(0)
            })
            .unwrap()
    };
    set("session", Some(1_010), 1_000).await;
    set("other", None, 1_005).await;
    store.kv_checkpoint().await.unwrap();
    assert_eq!(on_disk(), 1, "not expired yet");
    set("other", None, 1_010).await;
    assert_eq!(on_disk(), 1, "still in the journal's checkpoint");
    store.kv_checkpoint().await.unwrap();
    assert_eq!(on_disk(), 0);
    assert!(
        store
            .kv_get(&project, &cache, "session", 1_010)
            .await
            .unwrap()
            .is_none()
    );
}

/// Copies the database and its key-value journal as a crash would leave
/// them: the journal first, so that a checkpoint in between finds its
/// entries in the database's WAL instead.
fn crash_copy(from: &std::path::Path, to: &std::path::Path) {
    for suffix in ["-kv-journal", "-wal", ""] {
        let name = |dir: &std::path::Path| {
            let mut name = dir.join("wok.db").into_os_string();
            name.push(suffix);
            std::path::PathBuf::from(name)
        };
        if name(from).exists() {
            std::fs::copy(name(from), name(to)).unwrap();
        }
    }
}

#[tokio::test]
async fn acknowledged_key_value_writes_survive_a_crash_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = async |key: &str, value: &[u8]| {
        store
            .kv_set(
                &project,
                &cache,
                key,
                value.to_vec(),
                None,
                Condition::Always,
                0,
            )
            .await
            .unwrap()
    };
    // Some in the table already, some only in the journal. The journal
    // is reused after a checkpoint: "gone" is written last, so that its
    // record lies past the newer ones and must not be replayed. (With
    // today's record format, the 57 bytes make the newer records end just
    // where the record of "gone" starts.)
    set("kept", b"1").await;
    set("changed", &[b'3'; 57]).await;
    set("gone", b"2").await;
    store.kv_checkpoint().await.unwrap();
    store
        .kv_delete(&project, &cache, "gone", Condition::Always, 0)
        .await
        .unwrap();
    let changed = set("changed", b"4").await;
    let sum = store
        .kv_increment(&project, &cache, "count", 5, 0)
        .await
        .unwrap();
    assert_eq!(sum, 5);
    let copy = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), copy.path());
    // A torn record where the records end (the first long run of zeros):
    // a batch that was never acknowledged.
    let mut journal = copy.path().join("wok.db").into_os_string();
    journal.push("-kv-journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = bytes
        .windows(32)
        .position(|window| window.iter().all(|byte| *byte == 0))
        .unwrap();
    bytes[end..end + 9].copy_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 1]);
    std::fs::write(&journal, bytes).unwrap();

    let reopened = SqliteStore::open(&copy.path().join("wok.db")).unwrap();
    let get = async |key| reopened.kv_get(&project, &cache, key, 0).await.unwrap();
    assert_eq!(get("kept").await.unwrap().value, b"1");
    assert!(get("gone").await.is_none());
    let entry = get("changed").await.unwrap();
    assert_eq!(
        (entry.value.as_slice(), entry.version),
        (&b"4"[..], changed)
    );
    assert_eq!(get("count").await.unwrap().value, b"5");
    // Versions go on from the replayed ones: never reused.
    let next = reopened
        .kv_set(
            &project,
            &cache,
            "new",
            b"n".to_vec(),
            None,
            Condition::Always,
            0,
        )
        .await
        .unwrap();
    assert!(next > changed, "{next} after {changed}");
    assert_eq!(
        reopened
            .kv_list(&project, &cache, "", None, 100, 0)
            .await
            .unwrap(),
        ["changed", "count", "kept", "new"]
    );

    // A dropped store stays dropped after a crash: what the journal held
    // before the drop is never replayed over it.
    assert!(reopened.kv_drop_store(&project, &cache).await.unwrap());
    let after_drop = tempfile::tempdir().unwrap();
    crash_copy(copy.path(), after_drop.path());
    let reopened = SqliteStore::open(&after_drop.path().join("wok.db")).unwrap();
    assert!(
        reopened
            .kv_list(&project, &cache, "", None, 100, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn key_value_listings_merge_the_journal_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = async |key: &str, expires_at| {
        store
            .kv_set(
                &project,
                &cache,
                key,
                b"v".to_vec(),
                expires_at,
                Condition::Always,
                100,
            )
            .await
            .unwrap();
    };
    for key in ["a", "b", "c", "d", "e"] {
        set(key, None).await;
    }
    store.kv_checkpoint().await.unwrap();
    // Newer than the table: deleted, expiring, new.
    store
        .kv_delete(&project, &cache, "b", Condition::Always, 100)
        .await
        .unwrap();
    set("c", Some(150)).await;
    set("bb", None).await;
    set("f", None).await;
    let list = async |after: Option<&str>, limit, now| {
        store
            .kv_list(&project, &cache, "", after, limit, now)
            .await
            .unwrap()
    };
    assert_eq!(list(None, 100, 100).await, ["a", "bb", "c", "d", "e", "f"]);
    assert_eq!(list(None, 100, 200).await, ["a", "bb", "d", "e", "f"]);
    // Pages of two, each continuing after the last key.
    assert_eq!(list(None, 2, 200).await, ["a", "bb"]);
    assert_eq!(list(Some("bb"), 2, 200).await, ["d", "e"]);
    assert_eq!(list(Some("e"), 2, 200).await, ["f"]);
    // Stores written to only since the checkpoint are listed too.
    let fresh = StoreName::new("fresh").unwrap();
    store
        .kv_set(
            &project,
            &fresh,
            "k",
            b"v".to_vec(),
            None,
            Condition::Always,
            100,
        )
        .await
        .unwrap();
    let stores: Vec<String> = store
        .kv_stores(&project)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(stores, ["cache", "fresh"]);
}

/// Writes `count` keys (`key-000`, ...) to store `cache`, queued together.
async fn write_keys(store: &SqliteStore, count: usize) {
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let keys: Vec<String> = (0..count).map(|n| format!("key-{n:03}")).collect();
    let writes = keys.iter().enumerate().map(|(n, key)| {
        store.kv_set(
            &project,
            &cache,
            key,
            format!("value-{n:03}").into_bytes(),
            None,
            Condition::Always,
            0,
        )
    });
    for written in futures::future::join_all(writes).await {
        written.unwrap();
    }
}

fn journal_of(dir: &std::path::Path) -> std::path::PathBuf {
    let mut journal = dir.join("wok.db").into_os_string();
    journal.push("-kv-journal");
    journal.into()
}

/// The keys of store `cache` that are there after the store reopens.
async fn surviving_keys(dir: &std::path::Path) -> Vec<String> {
    let store = SqliteStore::open(&dir.join("wok.db")).unwrap();
    let cache = StoreName::new("cache").unwrap();
    store
        .kv_list(&ProjectId::default_project(), &cache, "", None, 1000, 0)
        .await
        .unwrap()
}

fn damaged_copies(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("-kv-journal.damaged-")
        })
        .count()
}

#[tokio::test]
async fn replay_stops_at_a_damaged_journal_record_and_is_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    write_keys(&store, 100).await;
    let copy = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), copy.path());
    // One flipped byte in the middle: in the value of key-050's record.
    let journal = journal_of(copy.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(9)
        .position(|window| window == b"value-050")
        .expect("key-050's record is in the journal");
    bytes[at] ^= 0x20;
    std::fs::write(&journal, &bytes).unwrap();

    // What came before the damage is replayed; nothing after it is (bytes
    // past damage cannot be told from a record a value holds).
    let keys = surviving_keys(copy.path()).await;
    let expected: Vec<String> = (0..50).map(|n| format!("key-{n:03}")).collect();
    assert_eq!(keys, expected);
    // The damage was kept for inspection (and logged as an error).
    assert_eq!(damaged_copies(copy.path()), 1);
}

/// A value may hold the bytes of a whole journal record (another store's,
/// with a huge version): reading past damage would take it for a write.
#[tokio::test]
async fn a_record_forged_inside_a_value_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    let project = ProjectId::default_project();
    let (cache, victim) = (
        StoreName::new("cache").unwrap(),
        StoreName::new("victim").unwrap(),
    );
    store
        .kv_set(
            &project,
            &victim,
            "k",
            b"theirs".to_vec(),
            None,
            Condition::Always,
            0,
        )
        .await
        .unwrap();
    store.kv_checkpoint().await.unwrap();
    store
        .kv_set(
            &project,
            &cache,
            "first",
            b"1".to_vec(),
            None,
            Condition::Always,
            0,
        )
        .await
        .unwrap();
    let journal = journal_of(dir.path());
    let generation =
        u64::from_le_bytes(std::fs::read(&journal).unwrap()[8..16].try_into().unwrap());
    let forged = store_sqlite::fuzzing::journal_record(
        generation,
        project.as_str(),
        "victim",
        "k",
        b"forged",
        1 << 62,
    );
    store
        .kv_set(
            &project,
            &cache,
            "evil",
            forged.clone(),
            None,
            Condition::Always,
            0,
        )
        .await
        .unwrap();
    let copy = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), copy.path());
    // The record holding the forged one is damaged (in its key).
    let journal = journal_of(copy.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(4)
        .position(|window| window == b"evil")
        .unwrap();
    bytes[at] ^= 1;
    std::fs::write(&journal, &bytes).unwrap();

    let reopened = SqliteStore::open(&copy.path().join("wok.db")).unwrap();
    let entry = reopened
        .kv_get(&project, &victim, "k", 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.value, b"theirs");
    assert_eq!(surviving_keys(copy.path()).await, ["first"]);
}

#[tokio::test]
async fn a_torn_last_batch_is_dropped_and_what_came_before_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    write_keys(&store, 10).await;
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    store
        .kv_set(
            &project,
            &cache,
            "last",
            vec![b'z'; 300],
            None,
            Condition::Always,
            0,
        )
        .await
        .unwrap();
    let copy = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), copy.path());
    // The last record, cut in its middle as a crash during its write would
    // leave it (the rest of the block still zeros).
    let journal = journal_of(copy.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let start = bytes
        .windows(4)
        .position(|window| window == b"last")
        .unwrap();
    for byte in &mut bytes[start + 100..start + 304] {
        *byte = 0;
    }
    std::fs::write(&journal, &bytes).unwrap();

    let keys = surviving_keys(copy.path()).await;
    let expected: Vec<String> = (0..10).map(|n| format!("key-{n:03}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(damaged_copies(copy.path()), 0, "a torn end is not damage");
}

#[tokio::test]
async fn functions_from_before_triggers_get_their_subscriptions_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    // A database of the release before numbered migrations, as one from
    // before events was: no subscriptions.
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(include_str!("../fixtures/release-2026-12-06.sql"))
        .unwrap();
    old.execute("DELETE FROM subscriptions", []).unwrap();
    drop(old);
    let store = SqliteStore::open(&path).unwrap();
    let mut names: Vec<String> = store
        .subscriptions(&ProjectId::default_project(), &name("hello"))
        .await
        .unwrap()
        .iter()
        .map(|subscription| subscription.trigger.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["async", "cron", "queue-jobs"]);
}
