//! The S3 backend: the blob contract suite, then what is S3's own (large
//! blobs as multipart uploads, an abandoned one aborted, credentials
//! refused), against a real S3 server, `s3s-fs`, that
//! `scripts/start-s3.sh` starts once per test run. Each test has a prefix
//! of its own in the bucket `wok-test`, removed when it ends.
use blob::{BlobError, BlobStore, read_all};
use blob_s3::{PART_SIZE, S3Blobs, S3Config};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const BUCKET: &str = "wok-test";
/// What `scripts/start-s3.sh` gives the server.
const ACCESS_KEY_ID: &str = "wok-test-access";
const SECRET_ACCESS_KEY: &str = "wok-test-secret";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server's data directory: a bucket is a directory in it.
fn data_dir() -> PathBuf {
    repository_root().join("target/s3s-fs-data")
}

/// The endpoint of the test server, started once per test run.
fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let script = repository_root().join("scripts/start-s3.sh");
        #[allow(clippy::disallowed_methods)] // tests start their S3 server
        let output = std::process::Command::new("bash")
            .arg(script)
            .env("WOK_S3_BUCKETS", BUCKET)
            .output()
            .expect("running scripts/start-s3.sh");
        assert!(
            output.status.success(),
            "scripts/start-s3.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

fn test_env(secret: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name| match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY_ID.to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some(secret.to_owned()),
        _ => None,
    }
}

fn config(prefix: &str, secret: &'static str) -> S3Config {
    let url = format!(
        "s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1",
        endpoint()
    );
    S3Config::from_url(&url, &test_env(secret)).unwrap()
}

/// A prefix of one test, whose objects go when it is dropped.
struct Prefix(String);

impl Prefix {
    fn new() -> Self {
        // 38 bytes: with its `/`, a multiple of 3, so the base64 of every
        // key under it starts with the base64 of the prefix (see `drop`).
        Prefix(format!("tests-{}", uuid::Uuid::now_v7().simple()))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(data_dir().join(BUCKET).join(&self.0));
        // s3s-fs keeps files of its own beside the buckets, named after
        // each key, and leaves them when the object is deleted.
        let marker = format!(
            ".bucket-{}.object-{}",
            base64url(BUCKET.as_bytes()),
            base64url(format!("{}/", self.0).as_bytes())
        );
        for entry in std::fs::read_dir(data_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&marker) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

async fn fresh() -> (Prefix, S3Blobs) {
    let prefix = Prefix::new();
    let store = S3Blobs::open(config(&prefix.0, SECRET_ACCESS_KEY))
        .await
        .unwrap();
    (prefix, store)
}

blob::contract_tests!(fresh());

/// Bytes that tell their offsets apart.
fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|n| (n % 251) as u8).collect()
}

/// `s3s-fs` keeps a live multipart upload's metadata in a file named
/// after the bucket and key (base64url, unpadded) and the upload id,
/// deleted when the upload completes or is aborted.
fn live_uploads_of(key: &str) -> usize {
    let marker = format!(
        ".bucket-{}.object-{}.upload-",
        base64url(BUCKET.as_bytes()),
        base64url(key.as_bytes())
    );
    std::fs::read_dir(data_dir())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&marker))
        .count()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut encoded = String::new();
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (index, byte)| {
            group | u32::from(*byte) << (16 - 8 * index)
        });
        for index in 0..=chunk.len() {
            encoded.push(ALPHABET[(group >> (18 - 6 * index) & 63) as usize] as char);
        }
    }
    encoded
}

/// A blob larger than a part is a multipart upload, invisible until
/// completed; one dropped after a part was sent leaves nothing, and its
/// upload is aborted.
#[tokio::test]
async fn large_blobs_are_multipart_uploads() {
    let (prefix, store) = fresh().await;
    let bytes = pattern(2 * PART_SIZE + 1_000_000);
    let mut upload = store.put("large").await.unwrap();
    for chunk in bytes.chunks(1_000_003) {
        upload.write(chunk).await.unwrap();
    }
    let key = format!("{}/large", prefix.0);
    assert_eq!(live_uploads_of(&key), 1, "parts went as they filled");
    assert_eq!(store.head("large").await.unwrap(), None);
    assert_eq!(upload.commit().await.unwrap(), bytes.len() as u64);
    assert_eq!(live_uploads_of(&key), 0);
    assert_eq!(
        store.head("large").await.unwrap().unwrap().size,
        bytes.len() as u64
    );
    assert_eq!(read_all(&store, "large").await.unwrap(), bytes);

    let mut abandoned = store.put("abandoned").await.unwrap();
    abandoned.write(&bytes[..PART_SIZE + 10]).await.unwrap();
    let key = format!("{}/abandoned", prefix.0);
    assert_eq!(live_uploads_of(&key), 1);
    drop(abandoned);
    assert_eq!(store.head("abandoned").await.unwrap(), None);
    // The abort runs in the background: bounded wait for it.
    for _ in 0..100 {
        if live_uploads_of(&key) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(live_uploads_of(&key), 0, "the upload was aborted");
    let names: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.name)
        .collect();
    assert_eq!(names, ["large"]);
}

/// A blob of exactly one part, and an empty one, are single PUTs.
#[tokio::test]
async fn blobs_of_a_part_and_of_nothing() {
    let (_prefix, store) = fresh().await;
    let bytes = pattern(PART_SIZE);
    blob::write_all(&store, "exact", &bytes).await.unwrap();
    assert_eq!(read_all(&store, "exact").await.unwrap(), bytes);
    blob::write_all(&store, "empty", b"").await.unwrap();
    assert_eq!(store.head("empty").await.unwrap().unwrap().size, 0);
    assert!(read_all(&store, "empty").await.unwrap().is_empty());
    let mut stream = store.get("empty", 0, Some(10)).await.unwrap();
    assert!(futures::StreamExt::next(&mut stream).await.is_none());
}

/// Stores under different prefixes of one bucket do not see each other's
/// blobs, and a listing does not reach into deeper prefixes.
#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let (outer_prefix, outer) = fresh().await;
    let inner = S3Blobs::open(config(
        &format!("{}/inner", outer_prefix.0),
        SECRET_ACCESS_KEY,
    ))
    .await
    .unwrap();
    blob::write_all(&outer, "inner-blob", b"outer")
        .await
        .unwrap();
    blob::write_all(&inner, "inner-blob", b"inner")
        .await
        .unwrap();
    assert_eq!(read_all(&outer, "inner-blob").await.unwrap(), b"outer");
    assert_eq!(read_all(&inner, "inner-blob").await.unwrap(), b"inner");
    assert_eq!(outer.list("inner").await.unwrap().len(), 1);
    assert_eq!(inner.list("").await.unwrap().len(), 1);
}

/// `open` fails, saying why, when the secret is wrong, the bucket is not
/// there or nothing answers.
#[tokio::test]
async fn open_says_what_is_wrong() {
    let prefix = Prefix::new();
    let error = S3Blobs::open(config(&prefix.0, "not-the-secret"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, BlobError::Io { .. }), "{message}");
    assert!(
        message.contains("the server refused access key wok-test-access"),
        "{message}"
    );

    let mut missing = config(&prefix.0, SECRET_ACCESS_KEY);
    missing.bucket = "no-such-bucket".to_owned();
    let message = S3Blobs::open(missing).await.unwrap_err().to_string();
    assert!(
        message.contains("bucket no-such-bucket does not exist"),
        "{message}"
    );

    // Nothing listens on port 9 (discard) here: a few quick retries, then
    // the error.
    let mut unreachable = config(&prefix.0, SECRET_ACCESS_KEY);
    unreachable.endpoint = Some("http://127.0.0.1:9".to_owned());
    let started = std::time::Instant::now();
    let message = S3Blobs::open(unreachable).await.unwrap_err().to_string();
    assert!(message.contains("the server did not answer"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
