//! Several nodes: `wok up --database` on one PostgreSQL database (the
//! cluster `scripts/start-postgres.sh` starts, a database per test): the
//! secrets they share, the data every node serves, and how soon every
//! node follows another's change of keys.
use crate::{WOK, WokServer, control, http, send};
use std::time::{Duration, Instant};

/// A fresh database on the test cluster; its URL.
pub fn database() -> String {
    let admin = crate::run_script("start-postgres.sh");
    let admin = admin.to_str().unwrap().to_owned();
    let name = format!("wok_it_{}", uuid::Uuid::now_v7().simple());
    let output = std::process::Command::new("psql")
        .args([&admin, "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("running psql");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// A node on `database`, with extra flags.
pub fn node(database: &str, extra: &[&str]) -> WokServer {
    let mut args = vec!["--database", database];
    args.extend_from_slice(extra);
    WokServer::start_with(WOK, &args)
}

/// Polls `check` until it holds; how long that took (panics after 10 s).
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(10), "{what} never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn nodes_on_one_database_share_the_admin_credential_and_the_data() {
    let database = database();
    let first = node(&database, &[]);
    let second = node(&database, &[]);
    // The second node took the first one's secrets.
    assert_eq!(first.admin_token(), second.admin_token());
    for file in ["server-key", "metrics-token"] {
        assert_eq!(
            std::fs::read(first.data_dir().join(file)).unwrap(),
            std::fs::read(second.data_dir().join(file)).unwrap(),
            "{file}"
        );
    }
    first.cli_ok(&["project", "create", "shop"]);
    let put = send(
        control(&first, reqwest::Method::PUT, "/v1/projects/shop/kv/carts/alice").body("3 apples"),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let read = send(control(&second, reqwest::Method::GET, "/v1/projects/shop/kv/carts/alice")).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.text(), "3 apples");
    assert!(second.cli_ok(&["project", "ls"]).contains("shop"));
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_every_node_within_a_second() {
    let database = database();
    let first = node(&database, &[]);
    let second = node(&database, &[]);
    first.cli_ok(&["project", "create", "shop"]);
    let token = first
        .cli_ok(&["--project", "shop", "keys", "create", "--kind", "service"])
        .trim()
        .to_owned();
    let id = token.split('_').nth(3).unwrap().to_owned();
    let read = async |server: &WokServer| {
        let response = http()
            .get(format!("{}/v1/projects/shop/kv/carts/alice", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    // Issued on the first node, taken by the second.
    let taken = until("the new key works on the second node", async || {
        read(&second).await == 404
    })
    .await;
    assert!(taken < Duration::from_secs(1), "took {taken:?}");

    first.cli_ok(&["--project", "shop", "keys", "revoke", &id]);
    let revoked = Instant::now();
    assert_eq!(read(&first).await, 401);
    until("the second node refuses the revoked key", async || {
        read(&second).await == 401
    })
    .await;
    let refused = revoked.elapsed();
    assert!(refused < Duration::from_secs(1), "took {refused:?}");
}
