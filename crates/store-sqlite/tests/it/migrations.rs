//! The numbered migrations: from an empty database, and from a database
//! made by the last release before them (`tests/fixtures`, a dump of the
//! `wok.db` that `wok` 2026-12-06 left after a deploy with triggers, a
//! project with a key and a rule, key-value entries, documents with an
//! index, a bucket with an object, a published message and an
//! asynchronous invocation).
use domain::{AccessRule, ByteSize, FunctionName, KeyKind, ProjectId, ResourceKind, StoreName};
use store::docs::{DocStore, parse_query};
use store::events::EventStore;
use store::objects::ObjectStore;
use store::{FunctionStore, KvStore, ProjectStore, RecordStore};
use store_sqlite::{SCHEMA_VERSION, SqliteStore};

const RELEASE_BEFORE_MIGRATIONS: &str = include_str!("../fixtures/release-2026-12-06.sql");

/// Every table's columns, by name: what a schema is, for comparing two.
fn schema(path: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables
        .into_iter()
        .map(|table| {
            let mut columns: Vec<String> = connection
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            columns.sort();
            (table, columns)
        })
        .collect()
}

fn user_version(path: &std::path::Path) -> u32 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

/// A copy of the old release's database in a new directory.
fn old_database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(RELEASE_BEFORE_MIGRATIONS)
        .unwrap();
    assert_eq!(user_version(&path), 0, "the old release numbered nothing");
    (dir, path)
}

#[tokio::test]
async fn an_empty_database_gets_every_migration_and_the_same_schema_as_an_old_one() {
    let fresh = tempfile::tempdir().unwrap();
    let fresh_path = fresh.path().join("wok.db");
    SqliteStore::open(&fresh_path).unwrap();
    assert_eq!(user_version(&fresh_path), SCHEMA_VERSION);

    let (_old, old_path) = old_database();
    SqliteStore::open(&old_path).unwrap();
    assert_eq!(user_version(&old_path), SCHEMA_VERSION);
    assert_eq!(schema(&old_path), schema(&fresh_path));

    // Opening again applies nothing twice.
    SqliteStore::open(&fresh_path).unwrap();
    assert_eq!(user_version(&fresh_path), SCHEMA_VERSION);
}

#[tokio::test]
async fn a_database_of_the_release_before_numbered_migrations_keeps_everything() {
    let (_dir, path) = old_database();
    let store = SqliteStore::open(&path).unwrap();
    let default = ProjectId::default_project();
    let shop = ProjectId::new("shop").unwrap();
    let hello = FunctionName::new("hello").unwrap();

    // Functions, versions, their settings and subscriptions.
    let versions = store.versions(&default, &hello).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].config.limits.memory, ByteSize::mib(64));
    assert_eq!(
        versions[0].config.env,
        [("GREETING".to_owned(), "hi".to_owned())]
    );
    let current = store.current(&default, &hello).await.unwrap().unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(current.config.limits.memory, ByteSize::mib(96));
    let triggers: Vec<String> = current
        .config
        .triggers
        .iter()
        .map(|trigger| trigger.name.to_string())
        .collect();
    assert_eq!(triggers, ["queue-jobs", "cron"]);
    let mut subscriptions: Vec<String> = store
        .subscriptions(&default, &hello)
        .await
        .unwrap()
        .into_iter()
        .map(|subscription| subscription.trigger.to_string())
        .collect();
    subscriptions.sort();
    assert_eq!(subscriptions, ["async", "cron", "queue-jobs"]);

    // Projects, keys, rules.
    let projects: Vec<String> = store
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|project| project.id.to_string())
        .collect();
    assert_eq!(projects, ["default", "shop"]);
    let keys = store.keys(&shop).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kind, KeyKind::Public);
    assert!(keys[0].s3_secret.is_some());
    assert_eq!(
        store
            .access_rule(&shop, ResourceKind::Collection, "posts")
            .await
            .unwrap(),
        Some(AccessRule::PublicRead)
    );

    // Key-value entries, documents and their index.
    let cache = StoreName::new("cache").unwrap();
    let now = domain::now_millis();
    let greeting = store
        .kv_get(&default, &cache, "greeting", now)
        .await
        .unwrap();
    assert_eq!(greeting.unwrap().value, b"hello");
    let visits = store.kv_increment(&default, &cache, "visits", 1, now).await;
    assert_eq!(visits.unwrap(), 43);
    let users = domain::CollectionName::new("users").unwrap();
    let ada = store
        .doc_get(&default, &users, "ada")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.data["city"], "London");
    let query = parse_query(&serde_json::json!({"where": ["city", "==", "Oslo"]})).unwrap();
    let collections = store.doc_collections(&default).await.unwrap();
    let indexes: Vec<&str> = collections
        .iter()
        .filter(|collection| collection.name == users)
        .flat_map(|collection| collection.indexes.iter().map(|index| index.name.as_str()))
        .collect();
    assert_eq!(indexes, ["by-city"]);
    let page = store.doc_query(&default, &users, &query).await.unwrap();
    assert_eq!(page.documents.len(), 1);
    assert_eq!(page.documents[0].id, "bob");

    // Buckets and objects, events, asynchronous invocations, records.
    let photos = domain::BucketName::new("photos").unwrap();
    let object = store.object(&default, &photos, "cats/a.txt").await.unwrap();
    assert_eq!(object.unwrap().size, 12);
    let jobs = store.events(&default, "topic/jobs", 0, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].data, br#"{"n":1}"#);
    let usage = store
        .usage(&default, &domain::UsageFilter::default())
        .await
        .unwrap();
    assert_eq!(usage.requests, 3);

    // And it takes new writes where numbering left off.
    let next = store
        .create_version(
            &default,
            &hello,
            store::NewVersion {
                artifact: current.artifact.clone(),
                size_bytes: current.size_bytes,
                runtime: current.runtime,
                config: current.config.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(next.version, 3);
}

#[tokio::test]
async fn a_database_of_a_newer_release_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wok.db");
    SqliteStore::open(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let error = SqliteStore::open(&path).err().expect("refused").to_string();
    assert!(error.contains("newer release of wok"), "{error}");
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
}
