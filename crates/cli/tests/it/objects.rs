use crate::*;

use serde_json::{Value, json};

fn objects(server: &WokServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    control(server, method, &format!("/v1/objects{path}"))
}

/// Object files on disk, in progress or not.
fn blob_files(server: &WokServer) -> usize {
    std::fs::read_dir(server.data_dir().join("objects"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .map(|dir| std::fs::read_dir(dir.path()).unwrap().count())
        .sum()
}

async fn issue(server: &WokServer, project: &str, kind: &str) -> Value {
    send(
        control(
            server,
            reqwest::Method::POST,
            &format!("/v1/projects/{project}/keys"),
        )
        .json(&json!({ "kind": kind })),
    )
    .await
    .json()
}

#[tokio::test]
async fn objects_over_rest_and_the_cli() {
    let server = server();
    assert_eq!(
        server.cli_ok(&[
            "objects",
            "mb",
            "media",
            "--max-object-size",
            "1MiB",
            "--content-type",
            "image/",
            "--content-type",
            "text/plain"
        ]),
        "created bucket media\n"
    );
    assert_eq!(server.cli_ok(&["objects", "ls"]), "media\n");
    let again = server.cli(&["objects", "mb", "media"]);
    assert!(
        again.stderr().contains("bucket_exists"),
        "{}",
        again.stderr()
    );
    let bad = server.cli(&["objects", "mb", "No_Such"]);
    assert!(bad.stderr().contains("invalid_name"), "{}", bad.stderr());

    // Upload a file through the CLI, download it back.
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("cat.png");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&picture, &bytes).unwrap();
    let uploaded = server.cli_ok(&[
        "objects",
        "put",
        "media",
        "pets/cat one.png",
        picture.to_str().unwrap(),
        "--content-type",
        "image/png",
    ]);
    assert!(
        uploaded.starts_with("uploaded pets/cat one.png (200000 bytes"),
        "{uploaded}"
    );
    let back = dir.path().join("back.png");
    server.cli_ok(&[
        "objects",
        "get",
        "media",
        "pets/cat one.png",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    // REST: headers, ranges, conditional GET, metadata.
    let put = send(
        objects(&server, reqwest::Method::PUT, "/media/notes/a.txt")
            .header("content-type", "text/plain")
            .header("x-amz-meta-author", "ada")
            .header("cache-control", "max-age=60")
            .header("content-disposition", "inline")
            .header("content-language", "nb")
            .body("hello objects"),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let etag = put.header("etag");
    assert_eq!(etag, format!("\"{}\"", "cb997500897bdb1eac98c2de8cee9818"));
    let got = send(objects(&server, reqwest::Method::GET, "/media/notes/a.txt")).await;
    assert_eq!((got.status, got.text().as_str()), (200, "hello objects"));
    assert_eq!(got.header("content-type"), "text/plain");
    assert_eq!(got.header("x-amz-meta-author"), "ada");
    // The response headers it was stored with come back with it.
    assert_eq!(got.header("cache-control"), "max-age=60");
    assert_eq!(got.header("content-disposition"), "inline");
    assert_eq!(got.header("content-language"), "nb");
    assert_eq!(got.header("etag"), etag);
    assert!(!got.header("last-modified").is_empty());
    let part = send(
        objects(&server, reqwest::Method::GET, "/media/notes/a.txt").header("range", "bytes=6-12"),
    )
    .await;
    assert_eq!((part.status, part.text().as_str()), (206, "objects"));
    assert_eq!(part.header("content-range"), "bytes 6-12/13");
    let tail = send(
        objects(&server, reqwest::Method::GET, "/media/notes/a.txt").header("range", "bytes=-3"),
    )
    .await;
    assert_eq!(tail.text(), "cts");
    let outside = send(
        objects(&server, reqwest::Method::GET, "/media/notes/a.txt").header("range", "bytes=50-60"),
    )
    .await;
    assert_eq!(
        (outside.status, outside.error_code().as_str()),
        (416, "range_not_satisfiable")
    );
    let cached = send(
        objects(&server, reqwest::Method::GET, "/media/notes/a.txt").header("if-none-match", &etag),
    )
    .await;
    assert_eq!(cached.status, 304);
    let head = send(objects(
        &server,
        reqwest::Method::HEAD,
        "/media/notes/a.txt",
    ))
    .await;
    assert_eq!(
        (head.status, head.header("content-length").as_str()),
        (200, "13")
    );
    let exists = send(
        objects(&server, reqwest::Method::PUT, "/media/notes/a.txt")
            .header("if-none-match", "*")
            .header("content-type", "text/plain")
            .body("x"),
    )
    .await;
    assert_eq!(exists.status, 412);

    // The bucket's limits, and bad input: nothing is stored.
    for (request, status, code) in [
        (
            objects(&server, reqwest::Method::PUT, "/media/big.png")
                .header("content-type", "image/png")
                .body(vec![0u8; 1_100_000]),
            413,
            "payload_too_large",
        ),
        (
            objects(&server, reqwest::Method::PUT, "/media/page.html")
                .header("content-type", "text/html")
                .body("<p>"),
            415,
            "content_type_refused",
        ),
        (
            objects(&server, reqwest::Method::PUT, "/media/sum.txt")
                .header("content-type", "text/plain")
                .header("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
                .body("abc"),
            400,
            "bad_digest",
        ),
        (
            objects(&server, reqwest::Method::GET, "/media/none.txt"),
            404,
            "object_not_found",
        ),
        (
            objects(&server, reqwest::Method::GET, "/nothing/none.txt"),
            404,
            "bucket_not_found",
        ),
        (
            objects(&server, reqwest::Method::GET, "/Bad_Bucket/x"),
            400,
            "invalid_name",
        ),
    ] {
        let answer = send(request).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (status, code),
            "{}",
            answer.text()
        );
    }
    for missing in ["/media/big.png", "/media/page.html", "/media/sum.txt"] {
        assert_eq!(
            send(objects(&server, reqwest::Method::GET, missing))
                .await
                .status,
            404
        );
    }

    // Listing: prefix, delimiter, cursor pages.
    for n in 0..5 {
        send(
            objects(
                &server,
                reqwest::Method::PUT,
                &format!("/media/notes/n{n}.txt"),
            )
            .header("content-type", "text/plain")
            .body("n"),
        )
        .await;
    }
    let top = send(objects(&server, reqwest::Method::GET, "/media?delimiter=/"))
        .await
        .json();
    assert_eq!(top["common_prefixes"], json!(["notes/", "pets/"]));
    let mut keys = Vec::new();
    let mut path = "/media?prefix=notes/&limit=2".to_owned();
    loop {
        let page = send(objects(&server, reqwest::Method::GET, &path))
            .await
            .json();
        for object in page["objects"].as_array().unwrap() {
            keys.push(object["key"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/media?prefix=notes/&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        keys,
        [
            "notes/a.txt",
            "notes/n0.txt",
            "notes/n1.txt",
            "notes/n2.txt",
            "notes/n3.txt",
            "notes/n4.txt"
        ]
    );
    let listed = server.cli_ok(&["objects", "ls", "media", "--prefix", "pets/"]);
    assert_eq!(listed, "      200000  pets/cat one.png\n");

    // A bucket with objects cannot go; emptied, it can.
    let busy = server.cli(&["objects", "rb", "media"]);
    assert!(
        busy.stderr().contains("bucket_not_empty"),
        "{}",
        busy.stderr()
    );
    for key in [
        "notes/a.txt",
        "notes/n0.txt",
        "notes/n1.txt",
        "notes/n2.txt",
        "notes/n3.txt",
        "notes/n4.txt",
    ] {
        assert_eq!(
            send(objects(
                &server,
                reqwest::Method::DELETE,
                &format!("/media/{key}")
            ))
            .await
            .status,
            204
        );
    }
    server.cli_ok(&["objects", "rm", "media", "pets/cat one.png"]);
    assert_eq!(
        server.cli_ok(&["objects", "rb", "media"]),
        "removed bucket media\n"
    );
    // Deleted objects' files are gone from disk.
    let leftover = blob_files(&server);
    assert_eq!(leftover, 0);
}

#[tokio::test]
async fn presigned_urls_and_bucket_access_rules() {
    let server = server();
    server.cli_ok(&["objects", "mb", "share"]);
    send(
        objects(&server, reqwest::Method::PUT, "/share/report.txt")
            .header("content-type", "text/plain")
            .body("quarterly"),
    )
    .await;

    // A presigned GET works with no credential, until tampered with.
    let url = server
        .cli_ok(&["objects", "presign", "share", "report.txt"])
        .trim()
        .to_owned();
    let fetched = send(http().get(&url)).await;
    assert_eq!(
        (fetched.status, fetched.text().as_str()),
        (200, "quarterly")
    );
    let tampered = send(http().get(url.replace("report.txt", "other.txt"))).await;
    assert_eq!(tampered.status, 403);
    let as_put = send(http().put(&url).body("overwrite")).await;
    assert_eq!(as_put.status, 403);
    // A presigned PUT uploads.
    let put_url = server
        .cli_ok(&[
            "objects",
            "presign",
            "share",
            "upload.bin",
            "--put",
            "--expires-in",
            "10m",
        ])
        .trim()
        .to_owned();
    let uploaded = send(http().put(&put_url).body("from a browser")).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    assert_eq!(
        send(objects(&server, reqwest::Method::GET, "/share/upload.bin"))
            .await
            .text(),
        "from a browser"
    );
    // (Expiry, which goes by the server's clock, is tested on the fast
    // door: crates/server/tests/it/objects.rs.)
    let bad = server.cli(&[
        "objects",
        "presign",
        "share",
        "report.txt",
        "--expires-in",
        "30d",
    ]);
    assert!(!bad.success());

    // A key's URLs die with the key.
    let service = issue(&server, "default", "service").await;
    let token = service["token"].as_str().unwrap().to_owned();
    let key_id = service["key"]["id"].as_str().unwrap().to_owned();
    let signed = send(
        http()
            .post(format!("{}/v1/objects/share/report.txt", server.url))
            .bearer_auth(&token)
            .json(&json!({})),
    )
    .await;
    let key_url = signed.json()["url"].as_str().unwrap().to_owned();
    assert_eq!(send(http().get(&key_url)).await.status, 200);
    server.cli_ok(&["keys", "revoke", &key_id]);
    assert_eq!(send(http().get(&key_url)).await.status, 403);

    // Public keys: as the bucket's rule says.
    let public = issue(&server, "default", "public").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_public = |method: reqwest::Method, path: &str| {
        http()
            .request(method, format!("{}/v1/objects{path}", server.url))
            .bearer_auth(&public)
    };
    for (rule, reads, writes) in [
        ("private", false, false),
        ("public-read", true, false),
        ("public-read-write", true, true),
    ] {
        assert_eq!(
            server.cli_ok(&["objects", "access", "share", rule]),
            format!("share\t{rule}\n")
        );
        let get = send(as_public(reqwest::Method::GET, "/share/report.txt")).await;
        let list = send(as_public(reqwest::Method::GET, "/share")).await;
        let put = send(as_public(reqwest::Method::PUT, "/share/public.txt").body("p")).await;
        let presign =
            send(as_public(reqwest::Method::POST, "/share/report.txt").json(&json!({}))).await;
        assert_eq!(get.status == 200, reads, "{rule} get: {}", get.text());
        assert_eq!(list.status == 200, reads, "{rule} list");
        assert_eq!(presign.status == 200, reads, "{rule} presign");
        assert_eq!(put.status == 200, writes, "{rule} put: {}", put.text());
        if !reads {
            assert!(!get.text().contains("quarterly"));
        }
    }
    for (method, path) in [
        (reqwest::Method::GET, "/v1/buckets"),
        (reqwest::Method::PUT, "/v1/buckets/mine"),
        (reqwest::Method::DELETE, "/v1/buckets/share"),
        (reqwest::Method::PUT, "/v1/buckets/share/_access"),
    ] {
        let answer = send(
            http()
                .request(method.clone(), format!("{}{path}", server.url))
                .bearer_auth(&public)
                .json(&json!({"access": "private"})),
        )
        .await;
        assert_eq!(answer.status, 403, "{method} {path}");
    }
    // A bucket deleted and created again starts private.
    for key in ["report.txt", "upload.bin", "public.txt"] {
        server.cli_ok(&["objects", "rm", "share", key]);
    }
    server.cli_ok(&["objects", "rb", "share"]);
    server.cli_ok(&["objects", "mb", "share"]);
    assert_eq!(
        server.cli_ok(&["objects", "access", "share"]),
        "share\tprivate\n"
    );
    send(
        objects(&server, reqwest::Method::PUT, "/share/report.txt")
            .header("content-type", "text/plain")
            .body("quarterly"),
    )
    .await;
    let reborn = send(as_public(reqwest::Method::GET, "/share/report.txt")).await;
    assert_eq!(reborn.status, 403);

    // Another project's keys reach none of it.
    server.cli_ok(&["project", "create", "elsewhere"]);
    let foreign = issue(&server, "elsewhere", "service").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = send(
        http()
            .get(format!("{}/v1/buckets", server.url))
            .bearer_auth(&foreign),
    )
    .await;
    assert_eq!(mine.json(), json!({"buckets": []}));
    let theirs = send(
        http()
            .get(format!("{}/v1/objects/share/report.txt", server.url))
            .bearer_auth(&foreign),
    )
    .await;
    assert_eq!(theirs.error_code(), "bucket_not_found");
    let scoped = send(
        http()
            .get(format!(
                "{}/v1/projects/default/objects/share/report.txt",
                server.url
            ))
            .bearer_auth(&foreign),
    )
    .await;
    assert_eq!(scoped.status, 403);
    assert!(!scoped.text().contains("quarterly"));
}

#[tokio::test]
async fn large_objects_stream_in_bounded_memory() {
    let server = server();
    server.cli_ok(&["objects", "mb", "big"]);
    const SIZE: u64 = 256 << 20;
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let stream =
        futures::stream::iter((0..SIZE >> 20).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let before = rss(server.pid());
    let put = send(
        objects(&server, reqwest::Method::PUT, "/big/blob.bin")
            .header("content-length", SIZE)
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let response = objects(&server, reqwest::Method::GET, "/big/blob.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut total = 0u64;
    let mut body = response.bytes_stream();
    use futures::StreamExt;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.iter().all(|&byte| byte == 7));
        total += chunk.len() as u64;
    }
    assert_eq!(total, SIZE);
    let grown = rss(server.pid()).saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the server's peak memory grew by {grown} bytes for a {SIZE}-byte object"
    );
}

#[tokio::test]
async fn a_start_after_a_crash_deletes_blob_files_no_object_names() {
    let mut server = server();
    server.cli_ok(&["objects", "mb", "keep"]);
    send(objects(&server, reqwest::Method::PUT, "/keep/a.txt").body("kept")).await;
    // What a crash between a blob's rename and its commit leaves: a file
    // that nothing names.
    let orphan = server
        .data_dir()
        .join("objects/ab/0000000000000000000000000000ffab");
    std::fs::write(&orphan, b"left by a crash").unwrap();
    // After a clean stop nothing is looked for (the scan is skipped)...
    server = server.restart();
    assert!(orphan.exists(), "a clean stop was not recorded");
    // ...after a crash the start sweeps.
    server = server.crash_and_restart();
    assert!(!orphan.exists(), "the unnamed blob is still there");
    let kept = send(objects(&server, reqwest::Method::GET, "/keep/a.txt")).await;
    assert_eq!((kept.status, kept.text().as_str()), (200, "kept"));
    let files = blob_files(&server);
    assert_eq!(files, 1);
}

/// boto3 on the bucket `scratch`: `begin KEY` starts a multipart upload
/// with one 5 MiB part and prints its id; `list` prints the keys of the
/// uploads in progress; `part KEY ID` uploads a part and prints `ok` or
/// the S3 error code.
const UPLOADS: &str = r#"
import os, sys, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=os.environ["WOK_S3_ENDPOINT"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
if sys.argv[1] == "begin":
    key = sys.argv[2]
    upload = s3.create_multipart_upload(Bucket="scratch", Key=key)["UploadId"]
    s3.upload_part(Bucket="scratch", Key=key, UploadId=upload, PartNumber=1, Body=b"x" * (5 << 20))
    print(upload)
elif sys.argv[1] == "list":
    print(" ".join(u["Key"] for u in s3.list_multipart_uploads(Bucket="scratch").get("Uploads", [])))
else:
    try:
        s3.upload_part(Bucket="scratch", Key=sys.argv[2], UploadId=sys.argv[3], PartNumber=2, Body=b"y")
        print("ok")
    except ClientError as error:
        print(error.response["Error"]["Code"])
"#;

#[tokio::test]
async fn abandoned_multipart_uploads_expire_with_their_parts() {
    let server = WokServer::start_with(WOK, &["--upload-expiry", "5s"]);
    assert_eq!(
        send(control(
            &server,
            reqwest::Method::PUT,
            "/v1/buckets/scratch"
        ))
        .await
        .status,
        201
    );
    let script = crate::Boto3::new(&server, UPLOADS).await;
    let boto3 = |args: &[&str]| {
        let output = script.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    // An upload is listed, and its part is on disk, until it is older than
    // the expiry.
    let upload_id = boto3(&["begin", "abandoned"]);
    assert_eq!(boto3(&["part", "abandoned", &upload_id]), "ok");
    assert_eq!(blob_files(&server), 2, "two parts on disk");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !boto3(&["list"]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "upload {upload_id} still listed after 30s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Aborted: its parts are gone, and it takes no more.
    assert_eq!(blob_files(&server), 0);
    assert_eq!(boto3(&["part", "abandoned", &upload_id]), "NoSuchUpload");
}
