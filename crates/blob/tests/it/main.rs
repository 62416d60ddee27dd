//! The file backend passes the blob contract, in both layouts, and keeps
//! the layout of data directories made before the contract.
use blob::{BlobStore, FileBlobs, Layout, write_all};

mod flat {
    async fn fresh() -> (tempfile::TempDir, blob::FileBlobs) {
        let dir = tempfile::tempdir().unwrap();
        let store = blob::FileBlobs::open(
            &dir.path().join("blobs"),
            blob::Layout::Flat,
            &dir.path().join("tmp"),
        )
        .unwrap();
        (dir, store)
    }
    blob::contract_tests!(fresh());
}

mod fanned_out {
    async fn fresh() -> (tempfile::TempDir, blob::FileBlobs) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            blob::FileBlobs::open(dir.path(), blob::Layout::FannedOut, &dir.path().join("tmp"))
                .unwrap();
        (dir, store)
    }
    blob::contract_tests!(fresh());
}

#[tokio::test]
async fn object_blobs_stay_where_earlier_releases_put_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileBlobs::open(dir.path(), Layout::FannedOut, &dir.path().join("tmp")).unwrap();
    let id = "0123456789abcdef0123456789abcdef";
    write_all(&store, id, b"bytes").await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("ef").join(id)).unwrap(),
        b"bytes"
    );
    // An interrupted put leaves its file in tmp/, cleared at the next open.
    let mut interrupted = store.put("next").await.unwrap();
    interrupted.write(b"half").await.unwrap();
    std::mem::forget(interrupted);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        1
    );
    FileBlobs::open(dir.path(), Layout::FannedOut, &dir.path().join("tmp")).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(store.list("").await.unwrap().len(), 1);
}
