//! Several nodes: `wok up --database --blobs` on one PostgreSQL database
//! (the cluster `scripts/start-postgres.sh` starts, a database per test)
//! and one S3 server (`scripts/start-s3.sh`'s s3s-fs, a prefix per test):
//! the secrets they share, the data every node serves, how soon every node
//! follows another's change of keys and deploys, and the S3 suite against
//! a node whose bytes are in S3.
use crate::{WOK, WokServer, control, deploy, get, http, send};
use std::time::{Duration, Instant};

/// The test S3 server's key pair and bucket (scripts/start-s3.sh).
const S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "wok-test-access"),
    ("AWS_SECRET_ACCESS_KEY", "wok-test-secret"),
];
const S3_BUCKET: &str = "wok-test";

/// A database and a prefix of the S3 bucket for one test's nodes.
pub struct Cluster {
    pub database: String,
    pub prefix: String,
    pub blobs: String,
}

impl Cluster {
    pub fn new() -> Self {
        let endpoint = crate::run_script("start-s3.sh");
        let prefix = format!("it-{}", uuid::Uuid::now_v7().simple());
        Self {
            database: database(),
            blobs: format!(
                "s3://{S3_BUCKET}/{prefix}?endpoint={}&region=us-east-1",
                endpoint.display()
            ),
            prefix,
        }
    }

    /// A node of the cluster.
    pub fn node(&self) -> WokServer {
        WokServer::start_with_env(
            WOK,
            &["--database", &self.database, "--blobs", &self.blobs],
            &S3_ENV,
        )
    }

    /// Where s3s-fs keeps the object bytes of this cluster, as files.
    pub fn object_files(&self) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/s3s-fs-data")
            .join(S3_BUCKET)
            .join(&self.prefix)
            .join("objects")
    }
}

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

/// Polls `check` until it holds; how long that took (panics after 30 s).
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} never held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn nodes_on_one_database_share_the_admin_credential_and_the_data() {
    let cluster = Cluster::new();
    let first = cluster.node();
    let second = cluster.node();
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
        control(
            &first,
            reqwest::Method::PUT,
            "/v1/projects/shop/kv/carts/alice",
        )
        .body("3 apples"),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let read = send(control(
        &second,
        reqwest::Method::GET,
        "/v1/projects/shop/kv/carts/alice",
    ))
    .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.text(), "3 apples");
    assert!(second.cli_ok(&["project", "ls"]).contains("shop"));
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_every_node_within_a_second() {
    let cluster = Cluster::new();
    let first = cluster.node();
    let second = cluster.node();
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

#[tokio::test]
async fn a_deploy_on_one_node_is_served_by_every_node_within_two_seconds() {
    let cluster = Cluster::new();
    let first = cluster.node();
    let second = cluster.node();
    deploy(&first, "hello", guests::HELLO, &[]);
    let deployed = Instant::now();
    assert_eq!(get(&first, "/fn/hello").await.status, 200);
    until("the second node serves the new function", async || {
        get(&second, "/fn/hello").await.status == 200
    })
    .await;
    let served = deployed.elapsed();
    assert!(served < Duration::from_secs(2), "took {served:?}");
    // A node started later loads it from the shared store (its code from
    // S3, compiled on first sight).
    let third = cluster.node();
    assert_eq!(get(&third, "/fn/hello").await.status, 200);

    third.cli_ok(&["rm", "hello"]);
    until(
        "the first node stops serving the removed function",
        async || get(&first, "/fn/hello").await.status == 404,
    )
    .await;
}

#[tokio::test]
async fn boto3_and_aws_cli_work_against_a_node_whose_bytes_are_in_s3() {
    let cluster = Cluster::new();
    let node = cluster.node();
    crate::s3::boto3_and_aws_cli_suite(
        &node,
        &[(
            "WOK_S3_BLOBS_DIR".to_owned(),
            cluster.object_files().display().to_string(),
        )],
    )
    .await;
}

/// `wok up` with flags it cannot use: a one-line reason, a non-zero exit.
fn up_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(WOK)
        .arg("up")
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stderr.trim().lines().last().unwrap_or_default().to_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    last
}

#[test]
fn up_refuses_storage_flags_it_cannot_use() {
    let database = database();
    let message = up_fails(
        &[
            "--blobs",
            "s3://bucket?endpoint=http://127.0.0.1:1&region=x",
        ],
        &S3_ENV,
    );
    assert!(message.contains("--blobs needs --database"), "{message}");
    let message = up_fails(
        &[
            "--database",
            &database,
            "--blobs",
            "s3://bucket?endpoint=http://127.0.0.1:1&region=x",
        ],
        &[],
    );
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    let message = up_fails(&["--database", "postgres://nobody@127.0.0.1:1/none"], &[]);
    assert!(message.contains("connecting to the database"), "{message}");
    let message = up_fails(&["--database", "not a url"], &[]);
    assert!(message.contains("database"), "{message}");
}

/// The node that holds a trigger's lease now: its process id.
fn lease_holder(database: &str, lease: &str) -> Option<u32> {
    let output = std::process::Command::new("psql")
        .args([
            database,
            "-qtAc",
            &format!(
                "SELECT holder FROM leases WHERE name = '{lease}'
                   AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
            ),
        ])
        .output()
        .unwrap();
    let holder = String::from_utf8_lossy(&output.stdout);
    holder.trim().split('-').next()?.parse().ok()
}

#[tokio::test]
async fn killing_a_node_loses_no_acknowledged_write_and_its_triggers_move_to_a_survivor() {
    use test_support::guest_events::{publish, received};
    let cluster = Cluster::new();
    let mut nodes = vec![cluster.node(), cluster.node(), cluster.node()];
    deploy(
        &nodes[0],
        "worker",
        guests::EVENTS,
        &["--trigger", "queue=jobs"],
    );
    for node in &nodes {
        until("every node serves the worker", async || {
            get(node, "/fn/worker").await.status != 404
        })
        .await;
    }
    let lease = "trigger/default/worker/queue-jobs";
    let holder = {
        let start = Instant::now();
        loop {
            if let Some(pid) = lease_holder(&cluster.database, lease) {
                break pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nobody took the lease"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let victim = nodes
        .iter()
        .position(|node| node.pid() == holder)
        .expect("the holder is one of the nodes");

    // Writes through every node, the holder killed half way.
    let mut acknowledged_sets = Vec::new();
    let mut acknowledged_publishes = Vec::new();
    let mut killed_at = None;
    for n in 0..60 {
        if n == 30 {
            std::process::Command::new("kill")
                .args(["-KILL", &holder.to_string()])
                .status()
                .unwrap();
            killed_at = Some(Instant::now());
        }
        let node = &nodes[n % 3];
        let set = http()
            .put(format!("{}/v1/kv/acked/key-{n}", node.url))
            .bearer_auth(node.admin_token())
            .body(format!("value-{n}"))
            .send()
            .await;
        if set.is_ok_and(|answer| answer.status() == 200) {
            acknowledged_sets.push(n);
        }
        if killed_at.is_some() && n % 3 == victim {
            continue;
        }
        acknowledged_publishes.push(publish(node, "jobs", "", &format!("job-{n}")).await);
    }
    assert!(acknowledged_sets.len() >= 40, "{acknowledged_sets:?}");
    let survivor = &nodes[(victim + 1) % 3];
    for n in acknowledged_sets {
        let read = send(control(
            survivor,
            reqwest::Method::GET,
            &format!("/v1/kv/acked/key-{n}"),
        ))
        .await;
        assert_eq!(
            read.text(),
            format!("value-{n}"),
            "an acknowledged set was lost"
        );
    }
    // Every acknowledged publish is delivered, the ones after the kill by
    // a survivor, within the lease and 5 s.
    for id in &acknowledged_publishes {
        until("an acknowledged message delivered", async || {
            received(survivor, id).await.is_some()
        })
        .await;
    }
    let taken_over = killed_at.unwrap().elapsed();
    assert!(
        taken_over < Duration::from_secs(15),
        "the survivors took {taken_over:?}"
    );
    let new_holder = lease_holder(&cluster.database, lease).expect("a survivor holds the lease");
    assert_ne!(new_holder, holder);
    nodes.remove(victim);
}

#[tokio::test]
async fn a_database_restart_answers_503_for_what_it_cut_and_the_node_carries_on() {
    // A PostgreSQL of this test's own: it is restarted under load.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/postgres-restart");
    let script = root.join("scripts/start-postgres.sh");
    let start = || {
        let output = std::process::Command::new("bash")
            .arg(&script)
            .env("WOK_PG_DIR", &dir)
            .env("WOK_PG_PORT", "25434")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let admin = start();
    // Stopped at the end, passed or failed: a server left on the port
    // would be taken by the next run for its own.
    struct Stop<'a>(&'a std::path::Path, &'a std::path::Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(self.1)
                .arg("stop")
                .env("WOK_PG_DIR", self.0)
                .env("WOK_PG_PORT", "25434")
                .output();
        }
    }
    let _stop = Stop(&dir, &script);
    let name = format!("wok_it_{}", uuid::Uuid::now_v7().simple());
    let created = std::process::Command::new("psql")
        .args([&admin, "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .unwrap();
    assert!(created.success());
    let database = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let node = WokServer::start_with(WOK, &["--database", &database]);
    let put = async |n: u32| {
        http()
            .put(format!("{}/v1/kv/load/key-{n}", node.url))
            .bearer_auth(node.admin_token())
            .body(format!("value-{n}"))
            .send()
            .await
            .map(|answer| answer.status().as_u16())
            .unwrap_or(0)
    };
    let mut acknowledged = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    for n in 0..300 {
        if n == 100 {
            // The restarted server holds no file of this process (a lock
            // a caller took around `cargo test`, say).
            let restarted = std::process::Command::new("bash")
                .arg("-c")
                .arg(
                    r#"for fd in /proc/self/fd/*; do fd="${fd##*/}"; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
                       exec runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$1/data" -l "$1/server.log" -m immediate -w restart"#,
                )
                .arg("restart")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(restarted.success());
        }
        let status = put(n).await;
        statuses.insert(status);
        if status == 200 {
            acknowledged.push(n);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing but success and 503 (an unknown outcome), never a 500.
    assert!(
        statuses.iter().all(|status| [200, 503].contains(status)),
        "{statuses:?}"
    );
    // The node carried on without a restart of its own.
    until("writes succeed again", async || put(1000).await == 200).await;
    for n in acknowledged {
        let read = send(control(
            &node,
            reqwest::Method::GET,
            &format!("/v1/kv/load/key-{n}"),
        ))
        .await;
        assert_eq!(
            read.text(),
            format!("value-{n}"),
            "an acknowledged write was lost"
        );
    }
}
