use crate::*;
use serde_json::json;

fn objects(server: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    control(server, method, &format!("/v1/objects{path}"))
}

#[tokio::test]
async fn guests_use_wok_objects_on_the_same_buckets() {
    let server = app();
    create_project(&server, "alpha").await;
    for (path, limits) in [
        ("/v1/buckets/files", json!({"max_object_bytes": 100 << 10})),
        ("/v1/projects/alpha/buckets/files", json!({})),
    ] {
        let made = send(control(&server, reqwest::Method::PUT, path).json(&limits)).await;
        assert_eq!(made.status, 201, "{}", made.text());
    }
    deploy(&server, "objects", guests::OBJECTS, &[]).await;
    deploy(&server, "objects", guests::OBJECTS, &["--project", "alpha"]).await;
    let guest = |method: reqwest::Method, path: &str| {
        http().request(method, format!("{}/fn/objects{path}", server.url))
    };

    // Guest writes, REST reads; REST writes, the guest reads.
    let written = send(
        guest(reqwest::Method::PUT, "/files/docs/a.txt")
            .header("content-type", "text/plain")
            .body("from a guest"),
    )
    .await;
    assert_eq!(written.status, 200, "{}", written.text());
    let rest = send(objects(&server, reqwest::Method::GET, "/files/docs/a.txt")).await;
    assert_eq!(rest.text(), "from a guest");
    assert_eq!(rest.header("etag"), format!("\"{}\"", written.text()));
    send(
        objects(&server, reqwest::Method::PUT, "/files/docs/b.txt")
            .header("content-type", "text/plain")
            .body("from REST"),
    )
    .await;
    assert_eq!(
        send(guest(reqwest::Method::GET, "/files/docs/b.txt"))
            .await
            .text(),
        "from REST"
    );
    assert_eq!(
        send(guest(reqwest::Method::GET, "/files/docs/b.txt?range=5,4"))
            .await
            .text(),
        "REST"
    );
    assert_eq!(
        send(guest(reqwest::Method::GET, "/files/docs/b.txt?head"))
            .await
            .text()
            .split(' ')
            .next(),
        Some("9")
    );
    assert_eq!(
        send(guest(reqwest::Method::GET, "/files/none"))
            .await
            .status,
        404
    );
    for n in 0..3 {
        send(guest(reqwest::Method::PUT, &format!("/files/docs/n{n}")).body("n")).await;
    }
    let listed = send(guest(reqwest::Method::GET, "/files?list=docs/"))
        .await
        .text();
    assert_eq!(
        listed,
        "docs/a.txt\ndocs/b.txt\ndocs/n0\ndocs/n1\ndocs/n2\n"
    );
    assert_eq!(
        send(guest(reqwest::Method::DELETE, "/files/docs/n0"))
            .await
            .text(),
        "true"
    );
    assert_eq!(
        send(guest(reqwest::Method::DELETE, "/files/docs/n0"))
            .await
            .text(),
        "false"
    );

    // The bucket's limits and names apply to guests too.
    let big = send(guest(reqwest::Method::PUT, "/files/big").body(vec![1u8; 200 << 10])).await;
    assert_eq!(big.status, 413, "{}", big.text());
    let missing = send(guest(reqwest::Method::GET, "/nobucket/x")).await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().starts_with("no-such-bucket"),
        "{}",
        missing.text()
    );
    let bad = send(guest(reqwest::Method::GET, "/Bad_Bucket/x")).await;
    assert_eq!(bad.status, 400);

    // The same guest in project alpha sees alpha's bucket only.
    let alpha = |method: reqwest::Method, path: &str| {
        http().request(method, format!("{}/p/alpha/fn/objects{path}", server.url))
    };
    assert_eq!(
        send(alpha(reqwest::Method::GET, "/files/docs/a.txt"))
            .await
            .status,
        404
    );
    send(alpha(reqwest::Method::PUT, "/files/only-alpha").body("a")).await;
    assert_eq!(
        send(objects(&server, reqwest::Method::GET, "/files/only-alpha"))
            .await
            .status,
        404
    );
    let listed = send(control(
        &server,
        reqwest::Method::GET,
        "/v1/projects/alpha/objects/files",
    ))
    .await
    .json();
    let keys: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| object["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["only-alpha"]);
}

#[tokio::test]
async fn a_presigned_url_expires_when_the_clock_says_so() {
    let server = app();
    let made =
        send(control(&server, reqwest::Method::PUT, "/v1/buckets/share").json(&json!({}))).await;
    assert_eq!(made.status, 201, "{}", made.text());
    send(objects(&server, reqwest::Method::PUT, "/share/report.txt").body("quarterly")).await;
    let signed = send(
        objects(&server, reqwest::Method::POST, "/share/report.txt")
            .json(&json!({"expires_in": "1m"})),
    )
    .await;
    assert_eq!(signed.status, 200, "{}", signed.text());
    let url = signed.json()["url"].as_str().unwrap().to_owned();

    server.clock.advance(Duration::from_secs(60));
    let fetched = send(http().get(&url)).await;
    assert_eq!(
        (fetched.status, fetched.text().as_str()),
        (200, "quarterly")
    );
    server.clock.advance(Duration::from_secs(1));
    let expired = send(http().get(&url)).await;
    assert_eq!(
        (expired.status, expired.error_code()),
        (403, "forbidden".to_owned())
    );
    assert!(expired.text().contains("expired"), "{}", expired.text());
}
