//! Acknowledged means durable: the server is killed (SIGKILL) in the middle
//! of concurrent key-value, document, object and multipart writes, then
//! restarted; every acknowledged write must be there, and nothing may be
//! half-written (no torn object, no visible incomplete multipart upload,
//! no partial batch).
use crate::*;
use serde_json::json;
use std::time::Duration;

/// The bytes of object `name`: 64 KiB to 256 KiB derived from the name, so
/// a torn or mixed-up object cannot pass for a whole one.
fn object_bytes(name: &str) -> Vec<u8> {
    let seed = name.bytes().fold(7u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(byte as u32)
    });
    let length = 64 * 1024 + (seed as usize % (192 * 1024));
    (0..length)
        .map(|i| (seed.wrapping_add(i as u32 * 13) % 251) as u8)
        .collect()
}

/// Completes multipart uploads with boto3 (two parts: 5 MiB and 1 KiB)
/// until the server dies; prints each key whose completion was answered.
const MULTIPART_WRITER: &str = r#"
import os, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["WOK_S3_ENDPOINT"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                connect_timeout=2, read_timeout=10))
part_one = b"1" * (5 << 20)
part_two = b"2" * 1024
n = 0
try:
    while True:
        key = f"mp-{n}"
        upload = s3.create_multipart_upload(Bucket="durable", Key=key)["UploadId"]
        one = s3.upload_part(Bucket="durable", Key=key, UploadId=upload, PartNumber=1, Body=part_one)["ETag"]
        two = s3.upload_part(Bucket="durable", Key=key, UploadId=upload, PartNumber=2, Body=part_two)["ETag"]
        s3.complete_multipart_upload(Bucket="durable", Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": one}, {"PartNumber": 2, "ETag": two}]})
        print(key, flush=True)
        n += 1
except Exception:
    pass
"#;

#[tokio::test]
async fn sigkill_loses_no_acknowledged_write_and_tears_nothing() {
    let mut server = server();
    let url = server.url.clone();
    let token = server.admin_token();
    assert_eq!(
        send(control(
            &server,
            reqwest::Method::PUT,
            "/v1/buckets/durable"
        ))
        .await
        .status,
        201
    );

    // Multipart uploads through the S3 endpoint, in a Python process.
    let script = crate::Boto3::new(&server, MULTIPART_WRITER).await;
    let multipart = script
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Writers of each kind go on until the server dies under them; each
    // returns what was acknowledged and what was in flight.
    let client = reqwest::Client::new();
    let writer = |kind: &'static str, writer: usize| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0.. {
                let name = format!("{kind}-{writer}-{n}");
                let request = match kind {
                    "kv" => client.put(format!("{url}/v1/kv/durable/{name}")).body(name.clone()),
                    "doc" => client.post(format!("{url}/v1/docs/_batch")).json(&json!({"writes": [
                        {"op": "set", "collection": "orders", "id": name, "data": {"n": n}},
                        {"op": "set", "collection": "lines", "id": name, "data": {"order": name}},
                    ]})),
                    _ => client
                        .put(format!("{url}/v1/objects/durable/{name}"))
                        .body(object_bytes(&name)),
                };
                match request.bearer_auth(&token).send().await {
                    Ok(response) if response.status().is_success() => acknowledged.push(name),
                    _ => return (acknowledged, name),
                }
            }
            unreachable!()
        })
    };
    let writers: Vec<_> = ["kv", "doc", "object"]
        .into_iter()
        .flat_map(|kind| (0..4).map(move |n| (kind, n)))
        .map(|(kind, n)| (kind, writer(kind, n)))
        .collect();
    // Kill once a multipart upload has completed (and a while of the
    // others' writes has passed), so that every kind has writes in flight.
    let mut multipart = multipart;
    let stdout = multipart.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(120), lines.recv())
        .await
        .expect("no multipart upload completed within 120 s")
        .expect("the multipart writer ended before completing an upload");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server = server.crash_and_restart();
    multipart.wait().unwrap();
    reader.join().unwrap();
    let mut completed = vec![first];
    while let Ok(line) = lines.try_recv() {
        completed.push(line);
    }

    let mut counts = std::collections::HashMap::new();
    for (kind, handle) in writers {
        let (acknowledged, in_flight) = handle.await.unwrap();
        *counts.entry(kind).or_insert(0) += acknowledged.len();
        for name in acknowledged.iter().chain([&in_flight]) {
            let was_acknowledged = name != &in_flight;
            match kind {
                "kv" => {
                    let answer = send(control(
                        &server,
                        reqwest::Method::GET,
                        &format!("/v1/kv/durable/{name}"),
                    ))
                    .await;
                    if was_acknowledged {
                        assert_eq!(
                            (answer.status, answer.text()),
                            (200, name.clone()),
                            "{name} was lost"
                        );
                    }
                }
                "doc" => {
                    let order = send(control(
                        &server,
                        reqwest::Method::GET,
                        &format!("/v1/docs/orders/{name}"),
                    ))
                    .await;
                    let line = send(control(
                        &server,
                        reqwest::Method::GET,
                        &format!("/v1/docs/lines/{name}"),
                    ))
                    .await;
                    assert_eq!(order.status, line.status, "batch {name} is torn");
                    if was_acknowledged {
                        assert_eq!(order.status, 200, "batch {name} was lost");
                    }
                }
                _ => {
                    let answer = send(control(
                        &server,
                        reqwest::Method::GET,
                        &format!("/v1/objects/durable/{name}"),
                    ))
                    .await;
                    if was_acknowledged || answer.status == 200 {
                        assert_eq!(answer.status, 200, "object {name} was lost");
                        assert!(answer.body == object_bytes(name), "object {name} is torn");
                    } else {
                        assert_eq!(answer.status, 404);
                    }
                }
            }
        }
    }
    for (kind, count) in &counts {
        assert!(*count > 10, "only {count} {kind} writes before the kill");
    }

    // Multipart: every completed upload is a whole object; no other
    // multipart object is visible unless whole.
    let listing = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/objects/durable?prefix=mp-",
    ))
    .await
    .json();
    let visible: Vec<(String, u64)> = listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| {
            (
                object["key"].as_str().unwrap().to_owned(),
                object["size"].as_u64().unwrap(),
            )
        })
        .collect();
    for key in &completed {
        assert!(
            visible.iter().any(|(found, _)| found == key),
            "multipart object {key} was lost"
        );
    }
    for (key, size) in &visible {
        assert_eq!(
            *size,
            (5 << 20) + 1024,
            "multipart object {key} is not whole"
        );
    }
    // No temporary file of an interrupted upload outlives the restart.
    let tmp = server.data_dir().join("objects/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}
