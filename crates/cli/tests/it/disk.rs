//! A full disk: writes answer 507, deletes still work, and the server takes
//! writes again once space is freed, without a restart. On a real small
//! filesystem (a tmpfs the test mounts: the tests run as root).
use crate::*;
use std::path::Path;

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            output.status.success(),
            "mounting a {size} tmpfs (the tests run as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem at `dir` with a file of zeros until it has no
/// room left (as another program, or the server's own data, would).
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    // The last blocks, smaller than a chunk.
    while file.write_all(&[0u8; 512]).is_ok() {}
    path
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_still_deletes() {
    let disk = Tmpfs::mount("48m");
    let server = WokServer::start_in(WOK, disk.path(), &["--disk-reserve", "4MiB"]);
    deploy(&server, "hello", guests::HELLO, &[]);
    assert_eq!(get(&server, "/fn/hello").await.status, 200);
    let put_kv = |key: &str| {
        control(
            &server,
            reqwest::Method::PUT,
            &format!("/v1/kv/cache/{key}"),
        )
        .body("value")
    };
    assert_eq!(send(put_kv("early")).await.status, 200);
    let put_doc = send(
        control(&server, reqwest::Method::PUT, "/v1/docs/notes/n0")
            .json(&serde_json::json!({"a": 0})),
    )
    .await;
    assert_eq!(put_doc.status, 201, "{}", put_doc.text());
    assert_eq!(
        send(control(&server, reqwest::Method::PUT, "/v1/buckets/fill"))
            .await
            .status,
        201
    );
    let chunk = vec![b'f'; 1 << 20];
    for n in 0..8 {
        let answer = send(
            control(
                &server,
                reqwest::Method::PUT,
                &format!("/v1/objects/fill/o{n}"),
            )
            .body(chunk.clone()),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    // The disk fills up to its last block.
    let filler = fill(disk.path());
    // A write fails: 507, and the reserve is released for deletes. (An
    // object needs new blocks; the key-value journal has room it keeps.)
    let refused =
        send(control(&server, reqwest::Method::PUT, "/v1/objects/fill/late").body(chunk.clone()))
            .await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (507, "insufficient_storage"),
        "{}",
        refused.text()
    );
    // Every write now gets 507 at once; reads go on.
    for answer in [
        send(put_kv("later")).await,
        send(
            control(&server, reqwest::Method::PUT, "/v1/docs/notes/n1")
                .json(&serde_json::json!({"a": 1})),
        )
        .await,
        get(&server, "/fn/hello").await,
        send(control(&server, reqwest::Method::PUT, "/v1/objects/fill/more").body("x")).await,
    ] {
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (507, "insufficient_storage"),
            "{}",
            answer.text()
        );
    }
    let read = send(control(&server, reqwest::Method::GET, "/v1/kv/cache/early")).await;
    assert_eq!((read.status, read.text().as_str()), (200, "value"));
    // A document query is a POST that reads: it goes on too.
    let query = send(
        control(&server, reqwest::Method::POST, "/v1/docs/notes/_query")
            .json(&serde_json::json!({})),
    )
    .await;
    assert_eq!(query.status, 200, "{}", query.text());
    assert_eq!(query.json()["documents"].as_array().map(Vec::len), Some(1));
    assert_eq!(get(&server, "/healthz").await.status, 200);

    // Deletes work on the full disk (the reserve's room), and free space.
    let deleted = send(control(
        &server,
        reqwest::Method::DELETE,
        "/v1/kv/cache/early",
    ))
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    for n in 0..8 {
        let answer = send(control(
            &server,
            reqwest::Method::DELETE,
            &format!("/v1/objects/fill/o{n}"),
        ))
        .await;
        assert_eq!(answer.status, 204, "deleting o{n}: {}", answer.text());
    }

    // Space is freed (the other program's file goes): writes are taken
    // again, with no restart.
    std::fs::remove_file(filler).unwrap();
    let started = std::time::Instant::now();
    loop {
        let answer = send(put_kv("again")).await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 507, "{}", answer.text());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writes not taken again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&server, "/fn/hello").await.status, 200);
    drop(server);
}

/// Only the server's own "disk full" stops writes: a function that answers
/// 507 itself (or relays an upstream's) does not.
#[tokio::test]
async fn a_function_answering_507_does_not_stop_writes() {
    let server = WokServer::start(WOK);
    deploy(&server, "echo", guests::ECHO, &[]);
    let answer = get(&server, "/fn/echo/status/507").await;
    assert_eq!((answer.status, answer.text().as_str()), (507, "as asked"));
    let write = send(control(&server, reqwest::Method::PUT, "/v1/kv/cache/k").body("v")).await;
    assert_eq!(write.status, 200, "{}", write.text());
    assert!(
        server.data_dir().join("disk-reserve").exists(),
        "the reserve is kept"
    );
}
