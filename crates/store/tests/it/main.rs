//! The `MetaStore` and `KvStore` contracts, run against every backend (SQLite for now).
use domain::{
    AccessRule, ApiKey, FunctionConfig, FunctionName, HttpWorld, InvocationId, InvocationRecord,
    KeyKind, LogLine, LogStream, Outcome, ProjectId, ResourceKind, StoreName, UsageFilter,
};
use store::{
    Condition, KvBatchOp, KvDone, KvStore, MetaStore, NewVersion, SqliteStore, StoreError,
};

mod docs;
mod events;
mod objects;

fn name(text: &str) -> FunctionName {
    FunctionName::new(text).unwrap()
}

fn new_version(artifact: &str) -> NewVersion {
    NewVersion {
        artifact: artifact.to_owned(),
        size_bytes: 10,
        world: HttpWorld::P2,
        config: FunctionConfig::default(),
    }
}

fn record(
    project: &ProjectId,
    function: &str,
    id: &str,
    start: i64,
    billed_ms: u64,
    memory_mib: u64,
    outcome: Outcome,
) -> InvocationRecord {
    InvocationRecord {
        id: InvocationId(id.to_owned()),
        project: project.clone(),
        function: name(function),
        version: 1,
        trigger: "http".to_owned(),
        start,
        duration_us: billed_ms * 1000,
        billed_ms,
        memory_mib,
        peak_memory_bytes: 1,
        outcome,
        cold: true,
        bytes_in: 0,
        bytes_out: 0,
    }
}

fn contract(store: &dyn MetaStore) {
    let project = ProjectId::default_project();
    let other = ProjectId::new("other").unwrap();

    // Versions: each deploy is a new version and becomes current.
    let v1 = store
        .create_version(&project, &name("app"), new_version("aaa"))
        .unwrap();
    let v2 = store
        .create_version(&project, &name("app"), new_version("bbb"))
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(
        store
            .current(&project, &name("app"))
            .unwrap()
            .unwrap()
            .artifact,
        "bbb"
    );
    assert_eq!(
        store
            .set_current(&project, &name("app"), 1)
            .unwrap()
            .artifact,
        "aaa"
    );
    assert_eq!(
        store
            .current(&project, &name("app"))
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert!(matches!(
        store.set_current(&project, &name("app"), 7),
        Err(StoreError::NoSuchVersion { .. })
    ));
    assert_eq!(store.versions(&project, &name("app")).unwrap().len(), 2);

    // Projects do not see each other.
    assert!(store.current(&other, &name("app")).unwrap().is_none());
    assert!(store.list(&other).unwrap().is_empty());
    store
        .create_version(&other, &name("app"), new_version("ccc"))
        .unwrap();
    assert_eq!(store.list(&project).unwrap().len(), 1);
    assert_eq!(
        store.projects().unwrap(),
        vec![project.clone(), other.clone()]
    );

    // Removal keeps numbering going.
    assert!(store.remove(&project, &name("app")).unwrap());
    assert!(!store.remove(&project, &name("app")).unwrap());
    assert!(store.current(&project, &name("app")).unwrap().is_none());
    assert!(matches!(
        store.versions(&project, &name("app")),
        Err(StoreError::NoSuchFunction(_))
    ));
    assert_eq!(
        store
            .create_version(&project, &name("app"), new_version("ddd"))
            .unwrap()
            .version,
        3
    );

    // Records and exact usage.
    let records = vec![
        record(&project, "app", "r1", 1000, 3, 128, Outcome::Success),
        record(&project, "app", "r2", 2000, 1, 128, Outcome::Trap),
        record(&project, "other-fn", "r3", 3000, 7, 64, Outcome::Timeout),
        record(&other, "app", "r4", 3000, 100, 1024, Outcome::Success),
    ];
    store.insert_records(&records).unwrap();
    store.insert_records(&records[..1]).unwrap(); // a repeated record is not counted twice
    let usage = store.usage(&project, &UsageFilter::default()).unwrap();
    assert_eq!((usage.requests, usage.errors, usage.billed_ms), (3, 2, 11));
    assert_eq!(usage.mib_ms, 3 * 128 + 128 + 7 * 64);
    let filtered = store
        .usage(
            &project,
            &UsageFilter {
                since: Some(1500),
                until: Some(3000),
                ..UsageFilter::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.requests, 1);
    let by_function = UsageFilter {
        function: Some(name("app")),
        ..UsageFilter::default()
    };
    assert_eq!(store.usage(&project, &by_function).unwrap().requests, 2);
    let listed = store
        .records(&project, &UsageFilter::default(), 10)
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.0.as_str()).collect::<Vec<_>>(),
        ["r3", "r2", "r1"]
    );
    assert_eq!(listed[2], records[0]);

    // Logs page by position and stay within their project.
    let line = |text: &str| LogLine {
        project: project.clone(),
        function: name("app"),
        invocation: InvocationId("r1".to_owned()),
        time: 5,
        stream: LogStream::Stderr,
        line: text.to_owned(),
    };
    store
        .insert_logs(&[line("one"), line("two"), line("three")])
        .unwrap();
    let first = store.logs(&project, &name("app"), 0, 2).unwrap();
    assert_eq!(
        first
            .iter()
            .map(|l| l.line.line.as_str())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    let rest = store
        .logs(&project, &name("app"), first[1].seq, 10)
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].line, line("three"));
    assert!(store.logs(&other, &name("app"), 0, 10).unwrap().is_empty());
}

fn key(project: &ProjectId, id: &str, kind: KeyKind) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        project: project.clone(),
        kind,
        name: format!("{id} key"),
        secret_sha256: [id.len() as u8; 32],
        created_at: 1,
        revoked_at: None,
        s3_secret: Some(vec![id.len() as u8; 44]),
    }
}

/// Projects and their keys.
fn projects_contract(store: &dyn MetaStore) {
    let default = ProjectId::default_project();
    let shop = ProjectId::new("shop").unwrap();
    let ids = |store: &dyn MetaStore| -> Vec<String> {
        store
            .list_projects()
            .unwrap()
            .into_iter()
            .map(|project| project.id.to_string())
            .collect()
    };
    assert_eq!(ids(store), ["default"]);
    assert!(store.project(&shop).unwrap().is_none());

    // Access rules: per project, kind and name; set again, replaced.
    assert_eq!(
        store
            .access_rule(&default, ResourceKind::Collection, "posts")
            .unwrap(),
        None
    );
    store
        .set_access_rule(
            &default,
            ResourceKind::Collection,
            "posts",
            AccessRule::PublicRead,
        )
        .unwrap();
    store
        .set_access_rule(
            &default,
            ResourceKind::Collection,
            "posts",
            AccessRule::PublicReadWrite,
        )
        .unwrap();
    assert_eq!(
        store
            .access_rule(&default, ResourceKind::Collection, "posts")
            .unwrap(),
        Some(AccessRule::PublicReadWrite)
    );
    assert_eq!(
        store
            .access_rule(&default, ResourceKind::Bucket, "posts")
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .access_rule(&shop, ResourceKind::Collection, "posts")
            .unwrap(),
        None
    );
    assert!(matches!(
        store.create_key(&key(&shop, "a1", KeyKind::Service)),
        Err(StoreError::NoSuchProject(_))
    ));
    store.create_project(&shop).unwrap();
    assert!(matches!(
        store.create_project(&shop),
        Err(StoreError::ProjectExists(_))
    ));
    assert_eq!(ids(store), ["default", "shop"]);

    store
        .create_key(&key(&shop, "a1", KeyKind::Service))
        .unwrap();
    store
        .create_key(&key(&shop, "b22", KeyKind::Public))
        .unwrap();
    store
        .create_key(&key(&default, "a1", KeyKind::Public))
        .unwrap();
    assert_eq!(
        store.key(&shop, "a1").unwrap(),
        Some(key(&shop, "a1", KeyKind::Service))
    );
    assert_eq!(store.keys(&shop).unwrap().len(), 2);
    // Keys are per project: the same id elsewhere is another key.
    assert_eq!(
        store.key(&default, "a1").unwrap().unwrap().kind,
        KeyKind::Public
    );
    assert!(store.key(&default, "b22").unwrap().is_none());
    // A live key's sealed S3 secret is replaced alone.
    assert!(store.set_key_s3_secret(&shop, "b22", b"sealed").unwrap());
    let b22 = store.key(&shop, "b22").unwrap().unwrap();
    assert_eq!(b22.s3_secret.as_deref(), Some(&b"sealed"[..]));
    assert_eq!(
        b22.secret_sha256,
        key(&shop, "b22", KeyKind::Public).secret_sha256
    );
    assert!(!store.set_key_s3_secret(&shop, "nope", b"sealed").unwrap());

    assert!(store.revoke_key(&shop, "a1").unwrap());
    assert!(!store.set_key_s3_secret(&shop, "a1", b"sealed").unwrap());
    assert!(!store.revoke_key(&shop, "a1").unwrap());
    assert!(
        store
            .key(&shop, "a1")
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        store
            .key(&default, "a1")
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // A project with live functions stays; an empty one goes, keys revoked,
    // and its name is never given out again.
    store
        .create_version(&shop, &name("api"), new_version("x"))
        .unwrap();
    assert!(matches!(
        store.remove_project(&shop),
        Err(StoreError::ProjectNotEmpty(_))
    ));
    store.remove(&shop, &name("api")).unwrap();
    assert!(store.remove_project(&shop).unwrap());
    assert!(!store.remove_project(&shop).unwrap());
    assert_eq!(ids(store), ["default"]);
    assert!(
        store
            .key(&shop, "b22")
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store.create_project(&shop),
        Err(StoreError::ProjectExists(_))
    ));
}

/// Key-value stores.
fn kv_contract(store: &dyn KvStore) {
    let project = ProjectId::default_project();
    let other = ProjectId::new("other").unwrap();
    let cache = StoreName::new("cache").unwrap();
    let now = 1_000;
    assert!(store.kv_get(&project, &cache, "a", now).unwrap().is_none());
    let v1 = store
        .kv_set(&project, &cache, "a", b"one", None, Condition::Always, now)
        .unwrap();
    let entry = store.kv_get(&project, &cache, "a", now).unwrap().unwrap();
    assert_eq!((entry.value.as_slice(), entry.version), (&b"one"[..], v1));
    // Same store and key in another project: another entry.
    assert!(store.kv_get(&other, &cache, "a", now).unwrap().is_none());

    // Conditions: compare-and-swap on the version, create-only.
    assert!(matches!(
        store.kv_set(
            &project,
            &cache,
            "a",
            b"x",
            None,
            Condition::Version(v1 + 100),
            now
        ),
        Err(StoreError::ConditionFailed)
    ));
    assert!(matches!(
        store.kv_set(&project, &cache, "a", b"x", None, Condition::Absent, now),
        Err(StoreError::ConditionFailed)
    ));
    let v2 = store
        .kv_set(
            &project,
            &cache,
            "a",
            b"two",
            None,
            Condition::Version(v1),
            now,
        )
        .unwrap();
    assert!(v2 > v1);
    // A deleted then rewritten key never gets an old version back.
    assert!(
        store
            .kv_delete(&project, &cache, "a", Condition::Version(v2), now)
            .unwrap()
    );
    assert!(
        !store
            .kv_delete(&project, &cache, "a", Condition::Always, now)
            .unwrap()
    );
    let v3 = store
        .kv_set(
            &project,
            &cache,
            "a",
            b"three",
            None,
            Condition::Absent,
            now,
        )
        .unwrap();
    assert!(v3 > v2);

    // Expiry: gone at its time, for reads, lists and conditions.
    store
        .kv_set(
            &project,
            &cache,
            "session",
            b"s",
            Some(now + 10),
            Condition::Always,
            now,
        )
        .unwrap();
    assert!(
        store
            .kv_get(&project, &cache, "session", now + 9)
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .kv_get(&project, &cache, "session", now + 10)
            .unwrap()
            .is_none()
    );
    store
        .kv_set(
            &project,
            &cache,
            "session",
            b"s2",
            None,
            Condition::Absent,
            now + 10,
        )
        .unwrap();

    // Listing: prefix, cursor, byte order.
    for key in ["user/1", "user/2", "user/3", "users", "user/10", "v"] {
        store
            .kv_set(&project, &cache, key, b"", None, Condition::Always, now)
            .unwrap();
    }
    let page = store
        .kv_list(&project, &cache, "user/", None, 2, now)
        .unwrap();
    assert_eq!(page, ["user/1", "user/10"]);
    let page = store
        .kv_list(&project, &cache, "user/", Some("user/10"), 10, now)
        .unwrap();
    assert_eq!(page, ["user/2", "user/3"]);
    assert_eq!(
        store
            .kv_list(&project, &cache, "", Some("users"), 10, now)
            .unwrap(),
        ["v"]
    );
    assert!(
        store
            .kv_list(&other, &cache, "", None, 10, now)
            .unwrap()
            .is_empty()
    );

    // Increment: absent is 0, keeps expiry, refuses non-numbers and overflow.
    assert_eq!(
        store
            .kv_increment(&project, &cache, "hits", 5, now)
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .kv_increment(&project, &cache, "hits", -7, now)
            .unwrap(),
        -2
    );
    assert_eq!(
        store
            .kv_get(&project, &cache, "hits", now)
            .unwrap()
            .unwrap()
            .value,
        b"-2"
    );
    assert!(matches!(
        store.kv_increment(&project, &cache, "a", 1, now),
        Err(StoreError::NotANumber)
    ));
    store
        .kv_set(
            &project,
            &cache,
            "big",
            i64::MAX.to_string().as_bytes(),
            None,
            Condition::Always,
            now,
        )
        .unwrap();
    assert!(matches!(
        store.kv_increment(&project, &cache, "big", 1, now),
        Err(StoreError::Overflow)
    ));
    store
        .kv_set(
            &project,
            &cache,
            "ttl",
            b"1",
            Some(now + 50),
            Condition::Always,
            now,
        )
        .unwrap();
    store.kv_increment(&project, &cache, "ttl", 1, now).unwrap();
    assert_eq!(
        store
            .kv_get(&project, &cache, "ttl", now)
            .unwrap()
            .unwrap()
            .expires_at,
        Some(now + 50)
    );

    assert_eq!(
        store.kv_stores(&project).unwrap(),
        [StoreName::new("cache").unwrap()]
    );
    assert!(store.kv_stores(&other).unwrap().is_empty());

    // Dropping a store deletes every entry; versions go on.
    let before = store
        .kv_set(&project, &cache, "last", b"1", None, Condition::Always, now)
        .unwrap();
    assert!(!store.kv_drop_store(&other, &cache).unwrap());
    assert!(store.kv_drop_store(&project, &cache).unwrap());
    assert!(
        store
            .kv_get(&project, &cache, "last", now)
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .kv_list(&project, &cache, "", None, 100, now)
            .unwrap()
            .is_empty()
    );
    assert!(store.kv_stores(&project).unwrap().is_empty());
    assert!(!store.kv_drop_store(&project, &cache).unwrap());
    let after = store
        .kv_set(&project, &cache, "last", b"2", None, Condition::Always, now)
        .unwrap();
    assert!(after > before, "version {after} after {before}");
    assert_eq!(
        store.kv_stores(&project).unwrap(),
        [StoreName::new("cache").unwrap()]
    );
}

#[test]
fn sqlite_store_keeps_the_kv_contract() {
    let dir = tempfile::tempdir().unwrap();
    kv_contract(&SqliteStore::open(&dir.path().join("wok.db")).unwrap());
}

#[test]
fn sqlite_store_keeps_the_projects_contract() {
    let dir = tempfile::tempdir().unwrap();
    projects_contract(&SqliteStore::open(&dir.path().join("wok.db")).unwrap());
}

#[test]
fn sqlite_store_keeps_the_contract_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    contract(&SqliteStore::open(&path).unwrap());
    let reopened = SqliteStore::open(&path).unwrap();
    let project = ProjectId::default_project();
    assert_eq!(
        reopened
            .current(&project, &name("app"))
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        reopened
            .usage(&project, &UsageFilter::default())
            .unwrap()
            .requests,
        3
    );
}

#[test]
fn concurrent_key_value_writes_each_apply_once() {
    // Writes from many threads share commits (group commit); each must be
    // applied exactly once and answered with its own result.
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
    let project = ProjectId::default_project();
    let counters = StoreName::new("counters").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (store, project, counters) = (store.clone(), project.clone(), counters.clone());
            std::thread::spawn(move || {
                let mut sums = Vec::new();
                for i in 0..100 {
                    sums.push(
                        store
                            .kv_increment(&project, &counters, "total", 1, 0)
                            .unwrap(),
                    );
                    store
                        .kv_set(
                            &project,
                            &counters,
                            &format!("key-{thread}-{i}"),
                            b"x",
                            None,
                            Condition::Absent,
                            0,
                        )
                        .unwrap();
                }
                sums
            })
        })
        .collect();
    let mut sums: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    sums.sort();
    // Every increment saw a distinct total: none lost, none doubled.
    assert_eq!(sums, (1..=800).collect::<Vec<i64>>());
    let keys = store
        .kv_list(&project, &counters, "key-", None, 10_000, 0)
        .unwrap();
    assert_eq!(keys.len(), 800);
}

#[test]
fn expired_key_value_entries_are_deleted_from_disk_by_later_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    let store = SqliteStore::open(&path).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = |key: &str, expires_at, now| {
        store
            .kv_set(
                &project,
                &cache,
                key,
                b"v",
                expires_at,
                Condition::Always,
                now,
            )
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
    set("session", Some(1_010), 1_000);
    set("other", None, 1_005);
    store.kv_checkpoint().unwrap();
    assert_eq!(on_disk(), 1, "not expired yet");
    set("other", None, 1_010);
    assert_eq!(on_disk(), 1, "still in the journal's checkpoint");
    store.kv_checkpoint().unwrap();
    assert_eq!(on_disk(), 0);
    assert!(
        store
            .kv_get(&project, &cache, "session", 1_010)
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

#[test]
fn acknowledged_key_value_writes_survive_a_crash_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = |key: &str, value: &[u8]| {
        store
            .kv_set(&project, &cache, key, value, None, Condition::Always, 0)
            .unwrap()
    };
    // Some in the table already, some only in the journal. The journal
    // is reused after a checkpoint: "gone" is written last, so that its
    // record lies past the newer ones and must not be replayed. (With
    // today's record format, the 57 bytes make the newer records end just
    // where the record of "gone" starts.)
    set("kept", b"1");
    set("changed", &[b'3'; 57]);
    set("gone", b"2");
    store.kv_checkpoint().unwrap();
    store
        .kv_delete(&project, &cache, "gone", Condition::Always, 0)
        .unwrap();
    let changed = set("changed", b"4");
    let sum = store.kv_increment(&project, &cache, "count", 5, 0).unwrap();
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
    let get = |key| reopened.kv_get(&project, &cache, key, 0).unwrap();
    assert_eq!(get("kept").unwrap().value, b"1");
    assert!(get("gone").is_none());
    let entry = get("changed").unwrap();
    assert_eq!(
        (entry.value.as_slice(), entry.version),
        (&b"4"[..], changed)
    );
    assert_eq!(get("count").unwrap().value, b"5");
    // Versions go on from the replayed ones: never reused.
    let next = reopened
        .kv_set(&project, &cache, "new", b"n", None, Condition::Always, 0)
        .unwrap();
    assert!(next > changed, "{next} after {changed}");
    assert_eq!(
        reopened
            .kv_list(&project, &cache, "", None, 100, 0)
            .unwrap(),
        ["changed", "count", "kept", "new"]
    );

    // A dropped store stays dropped after a crash: what the journal held
    // before the drop is never replayed over it.
    assert!(reopened.kv_drop_store(&project, &cache).unwrap());
    let after_drop = tempfile::tempdir().unwrap();
    crash_copy(copy.path(), after_drop.path());
    let reopened = SqliteStore::open(&after_drop.path().join("wok.db")).unwrap();
    assert!(
        reopened
            .kv_list(&project, &cache, "", None, 100, 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn key_value_listings_merge_the_journal_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = |key: &str, expires_at| {
        store
            .kv_set(
                &project,
                &cache,
                key,
                b"v",
                expires_at,
                Condition::Always,
                100,
            )
            .unwrap();
    };
    for key in ["a", "b", "c", "d", "e"] {
        set(key, None);
    }
    store.kv_checkpoint().unwrap();
    // Newer than the table: deleted, expiring, new.
    store
        .kv_delete(&project, &cache, "b", Condition::Always, 100)
        .unwrap();
    set("c", Some(150));
    set("bb", None);
    set("f", None);
    let list = |after: Option<&str>, limit, now| {
        store
            .kv_list(&project, &cache, "", after, limit, now)
            .unwrap()
    };
    assert_eq!(list(None, 100, 100), ["a", "bb", "c", "d", "e", "f"]);
    assert_eq!(list(None, 100, 200), ["a", "bb", "d", "e", "f"]);
    // Pages of two, each continuing after the last key.
    assert_eq!(list(None, 2, 200), ["a", "bb"]);
    assert_eq!(list(Some("bb"), 2, 200), ["d", "e"]);
    assert_eq!(list(Some("e"), 2, 200), ["f"]);
    // Stores written to only since the checkpoint are listed too.
    let fresh = StoreName::new("fresh").unwrap();
    store
        .kv_set(&project, &fresh, "k", b"v", None, Condition::Always, 100)
        .unwrap();
    let stores: Vec<String> = store
        .kv_stores(&project)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(stores, ["cache", "fresh"]);
}

#[tokio::test]
async fn queued_key_value_writes_answer_as_the_blocking_calls_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let set = |key: &str, condition| KvBatchOp::Set {
        project: project.clone(),
        store: cache.clone(),
        key: key.to_owned(),
        value: b"7".to_vec(),
        expires_at: None,
        condition,
        now: 0,
    };
    let KvDone::Version(version) = store.kv_write(set("a", Condition::Absent)).await.unwrap()
    else {
        panic!("a set answers with a version");
    };
    assert_eq!(
        store
            .kv_get(&project, &cache, "a", 0)
            .unwrap()
            .unwrap()
            .version,
        version
    );
    assert!(matches!(
        store.kv_write(set("a", Condition::Absent)).await,
        Err(StoreError::ConditionFailed)
    ));
    let increment = KvBatchOp::Increment {
        project: project.clone(),
        store: cache.clone(),
        key: "a".to_owned(),
        by: 3,
        now: 0,
    };
    assert_eq!(store.kv_write(increment).await.unwrap(), KvDone::Sum(10));
    let delete = KvBatchOp::Delete {
        project: project.clone(),
        store: cache.clone(),
        key: "a".to_owned(),
        condition: Condition::Always,
        now: 0,
    };
    assert_eq!(store.kv_write(delete).await.unwrap(), KvDone::Deleted(true));
    assert!(store.kv_get(&project, &cache, "a", 0).unwrap().is_none());
}

#[test]
fn sqlite_store_keeps_the_document_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    docs::crud_contract(&store);
    docs::query_contract(&store);
    docs::large_collection_contract(&store);
    docs::index_filled_during_writes_contract(&store);
    docs::plans_agree_contract(&store);
}

#[tokio::test]
async fn sqlite_store_keeps_the_object_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wok.db")).unwrap();
    objects::objects_contract(&store).await;
}

/// Writes `count` keys (`key-000`, ...) to store `cache`, queued together.
async fn write_keys(store: &SqliteStore, count: usize) {
    let project = ProjectId::default_project();
    let cache = StoreName::new("cache").unwrap();
    let writes: Vec<_> = (0..count)
        .map(|n| {
            store.kv_write(KvBatchOp::Set {
                project: project.clone(),
                store: cache.clone(),
                key: format!("key-{n:03}"),
                value: format!("value-{n:03}").into_bytes(),
                expires_at: None,
                condition: Condition::Always,
                now: 0,
            })
        })
        .collect();
    for write in writes {
        write.await.unwrap();
    }
}

fn journal_of(dir: &std::path::Path) -> std::path::PathBuf {
    let mut journal = dir.join("wok.db").into_os_string();
    journal.push("-kv-journal");
    journal.into()
}

/// The keys of store `cache` that are there after the store reopens.
fn surviving_keys(dir: &std::path::Path) -> Vec<String> {
    let store = SqliteStore::open(&dir.join("wok.db")).unwrap();
    let cache = StoreName::new("cache").unwrap();
    store
        .kv_list(&ProjectId::default_project(), &cache, "", None, 1000, 0)
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
    let keys = surviving_keys(copy.path());
    let expected: Vec<String> = (0..50).map(|n| format!("key-{n:03}")).collect();
    assert_eq!(keys, expected);
    // The damage was kept for inspection (and logged as an error).
    assert_eq!(damaged_copies(copy.path()), 1);
}

/// A value may hold the bytes of a whole journal record (another store's,
/// with a huge version): reading past damage would take it for a write.
#[test]
fn a_record_forged_inside_a_value_is_never_replayed() {
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
            b"theirs",
            None,
            Condition::Always,
            0,
        )
        .unwrap();
    store.kv_checkpoint().unwrap();
    store
        .kv_set(&project, &cache, "first", b"1", None, Condition::Always, 0)
        .unwrap();
    let journal = journal_of(dir.path());
    let generation =
        u64::from_le_bytes(std::fs::read(&journal).unwrap()[8..16].try_into().unwrap());
    let forged = store::fuzzing::journal_record(
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
            &forged,
            None,
            Condition::Always,
            0,
        )
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
    let entry = reopened.kv_get(&project, &victim, "k", 0).unwrap().unwrap();
    assert_eq!(entry.value, b"theirs");
    assert_eq!(surviving_keys(copy.path()), ["first"]);
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
            &[b'z'; 300],
            None,
            Condition::Always,
            0,
        )
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

    let keys = surviving_keys(copy.path());
    let expected: Vec<String> = (0..10).map(|n| format!("key-{n:03}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(damaged_copies(copy.path()), 0, "a torn end is not damage");
}
