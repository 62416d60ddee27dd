use crate::*;

/// A document batch of `documents` documents of `size` bytes each.
fn big_batch(documents: usize, size: usize) -> serde_json::Value {
    let filler = "x".repeat(size);
    let writes: Vec<_> = (0..documents)
        .map(|n| {
            serde_json::json!({
                "op": "set", "collection": "big", "id": format!("d{n}"),
                "data": {"filler": filler},
            })
        })
        .collect();
    serde_json::json!({ "writes": writes })
}

/// Large JSON bodies share a budget, and one project holds at most its
/// share of it: a project's slow or many bodies never keep another's out.
#[tokio::test]
async fn one_projects_large_bodies_never_keep_another_projects_out() {
    use tokio::io::AsyncWriteExt;
    let server = server();
    server.cli_ok(&["project", "create", "other"]);
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = server.admin_token();
    // A 10 MiB batch of the default project that is slow to come.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/docs/_batch HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"writes\": [",
        10 << 20
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The same project's next large body finds its share taken.
    let started = std::time::Instant::now();
    let refused = send(
        control(&server, reqwest::Method::POST, "/v1/docs/_batch").json(&big_batch(2, 100_000)),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (429, "too_many_requests"),
        "{}",
        refused.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    // Another project's 5 MB batch goes through meanwhile.
    let other = send(
        control(
            &server,
            reqwest::Method::POST,
            "/v1/projects/other/docs/_batch",
        )
        .json(&big_batch(5, 1_000_000)),
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.text());
    drop(slow);
}

/// A large JSON body that holds its part of the budget has to keep
/// coming: 64 KiB a second after 10 s, else 408.
#[tokio::test]
async fn a_large_json_body_that_trickles_is_cut_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server();
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = server.admin_token();
    let body = big_batch(1, 100_000).to_string();
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/docs/_batch HTTP/1.1\r\nHost: wok\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // 4 KB a second: above the connection's 1 KiB, below 64 KiB.
    let trickle = tokio::spawn(async move {
        for chunk in body.as_bytes().chunks(4000) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buffer))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cut after {:?}",
        started.elapsed()
    );
    trickle.abort();
}
