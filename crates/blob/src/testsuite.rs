//! The blob contract suite: what every [`BlobStore`] does. A backend's
//! tests run it with `blob::contract_tests!(async_constructor);`, the
//! constructor giving `(guard, store)` afresh for each test.
use crate::{BlobError, BlobStore, read_all, write_all};
use futures::StreamExt;

async fn read_range(
    store: &dyn BlobStore,
    name: &str,
    offset: u64,
    length: Option<u64>,
) -> Vec<u8> {
    let mut stream = store.get(name, offset, length).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

/// A put is invisible until its commit, and one dropped before leaves
/// nothing, not even a change to the blob it would have replaced.
pub async fn puts_are_visible_only_once_committed(store: &dyn BlobStore) {
    let mut upload = store.put("first").await.unwrap();
    upload.write(b"hello ").await.unwrap();
    upload.write(b"world").await.unwrap();
    assert_eq!(store.head("first").await.unwrap(), None);
    assert!(matches!(
        store.get("first", 0, None).await.err(),
        Some(BlobError::Missing(name)) if name == "first"
    ));
    assert_eq!(upload.commit().await.unwrap(), 11);
    assert_eq!(store.head("first").await.unwrap().unwrap().size, 11);
    assert_eq!(read_all(store, "first").await.unwrap(), b"hello world");

    let mut abandoned = store.put("first").await.unwrap();
    abandoned.write(b"something else").await.unwrap();
    drop(abandoned);
    let mut never = store.put("never").await.unwrap();
    never.write(b"half").await.unwrap();
    drop(never);
    assert_eq!(read_all(store, "first").await.unwrap(), b"hello world");
    assert_eq!(store.head("never").await.unwrap(), None);
    let names: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.name)
        .collect();
    assert_eq!(names, ["first"]);

    // A commit replaces what was there.
    write_all(store, "first", b"again").await.unwrap();
    assert_eq!(read_all(store, "first").await.unwrap(), b"again");
}

/// Ranged reads, across the chunks a large blob is read in.
pub async fn reads_take_ranges(store: &dyn BlobStore) {
    let bytes: Vec<u8> = (0..3_000_000u32).map(|n| (n % 251) as u8).collect();
    let mut upload = store.put("large").await.unwrap();
    for chunk in bytes.chunks(65_536) {
        upload.write(chunk).await.unwrap();
    }
    assert_eq!(upload.commit().await.unwrap(), bytes.len() as u64);
    assert_eq!(read_all(store, "large").await.unwrap(), bytes);
    assert_eq!(
        read_range(store, "large", 1_000_000, Some(1_500_000)).await,
        bytes[1_000_000..2_500_000]
    );
    assert_eq!(
        read_range(store, "large", 2_999_990, None).await,
        bytes[2_999_990..]
    );
    assert_eq!(
        read_range(store, "large", 2_999_990, Some(100)).await,
        bytes[2_999_990..]
    );
    assert!(read_range(store, "large", 3_000_000, None).await.is_empty());
    assert!(read_range(store, "large", 5, Some(0)).await.is_empty());
}

/// Deletes are idempotent; listings filter by prefix and give sizes.
pub async fn deletes_and_listings(store: &dyn BlobStore) {
    for (name, bytes) in [("a-1", &b"x"[..]), ("a-2", b"yy"), ("b-1", b"zzz")] {
        write_all(store, name, bytes).await.unwrap();
    }
    let mut listed: Vec<(String, u64)> = store
        .list("a-")
        .await
        .unwrap()
        .into_iter()
        .map(|info| (info.name, info.size))
        .collect();
    listed.sort();
    assert_eq!(listed, [("a-1".to_owned(), 1), ("a-2".to_owned(), 2)]);
    assert_eq!(store.list("").await.unwrap().len(), 3);
    store.delete("a-1").await.unwrap();
    store.delete("a-1").await.unwrap();
    assert_eq!(store.head("a-1").await.unwrap(), None);
    assert!(matches!(
        store.get("a-1", 0, None).await.err(),
        Some(BlobError::Missing(_))
    ));
    assert_eq!(store.list("a-").await.unwrap().len(), 1);
}

/// A name is one path segment: nothing reaches outside the store.
pub async fn names_are_checked(store: &dyn BlobStore) {
    for name in [
        "",
        "../escape",
        "a/b",
        ".hidden",
        "sp ace",
        &"x".repeat(256),
    ] {
        assert!(
            matches!(store.put(name).await.err(), Some(BlobError::InvalidName(_))),
            "put {name:?}"
        );
        assert!(
            matches!(
                store.get(name, 0, None).await.err(),
                Some(BlobError::InvalidName(_))
            ),
            "get {name:?}"
        );
        assert!(
            matches!(
                store.delete(name).await.err(),
                Some(BlobError::InvalidName(_))
            ),
            "delete {name:?}"
        );
    }
}

/// One test per contract, for a backend: `$new` is an async expression
/// giving `(guard, store)` afresh for each test; the guard lives as long
/// as the test.
#[macro_export]
macro_rules! contract_tests {
    ($new:expr) => {
        #[tokio::test]
        async fn puts_are_visible_only_once_committed() {
            let (_guard, store) = $new.await;
            $crate::testsuite::puts_are_visible_only_once_committed(&store).await;
        }

        #[tokio::test]
        async fn reads_take_ranges() {
            let (_guard, store) = $new.await;
            $crate::testsuite::reads_take_ranges(&store).await;
        }

        #[tokio::test]
        async fn deletes_and_listings() {
            let (_guard, store) = $new.await;
            $crate::testsuite::deletes_and_listings(&store).await;
        }

        #[tokio::test]
        async fn names_are_checked() {
            let (_guard, store) = $new.await;
            $crate::testsuite::names_are_checked(&store).await;
        }
    };
}
