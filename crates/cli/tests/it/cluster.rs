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
    crate::succeed(std::process::Command::new("psql").args([
        &admin,
        "-qc",
        &format!("CREATE DATABASE {name}"),
    ]));
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
async fn app_users_sessions_and_signing_keys_hold_on_every_node() {
    let cluster = Cluster::new();
    let first = cluster.node();
    let second = cluster.node();
    first.cli_ok(&["project", "create", "shop"]);
    let auth = |server: &WokServer, path: &str| format!("{}/p/shop/auth/v1{path}", server.url);
    // Signed up on the first node: the second verifies its token (the
    // signing key made on the first is followed) and refreshes it.
    let session =
        send(http().post(auth(&first, "/signup")).json(
            &serde_json::json!({"email": "ann@example.com", "password": "a long passphrase"}),
        ))
        .await;
    assert_eq!(session.status, 200, "{}", session.text());
    let session = session.json();
    let token = session["access_token"].as_str().unwrap().to_owned();
    let user = async |server: &WokServer, token: &str| {
        send(http().get(auth(server, "/user")).bearer_auth(token))
            .await
            .status
    };
    let taken = until("the second node verifies the token", async || {
        user(&second, &token).await == 200
    })
    .await;
    assert!(taken < Duration::from_secs(1), "took {taken:?}");
    let refreshed = send(
        http()
            .post(auth(&second, "/token?grant_type=refresh_token"))
            .json(&serde_json::json!({"refresh_token": session["refresh_token"]})),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let second_token = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A global logout on the second node: the first refuses both tokens
    // within a second.
    let logout = send(
        http()
            .post(auth(&second, "/logout"))
            .bearer_auth(&second_token),
    )
    .await;
    assert_eq!(logout.status, 204);
    let ended = Instant::now();
    until("the first node refuses the ended session", async || {
        user(&first, &token).await == 403 && user(&first, &second_token).await == 403
    })
    .await;
    let refused = ended.elapsed();
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
        .env_remove("PGSSLROOTCERT")
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
        crate::succeed(
            std::process::Command::new("bash")
                .arg(&script)
                .env("WOK_PG_DIR", &dir)
                .env("WOK_PG_PORT", "25434"),
        )
        .trim()
        .to_owned()
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

/// An outcome of a write in a recorded history.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Answered 2xx: it must be there.
    Ok,
    /// Answered 4xx: it must not be.
    Failed,
    /// No answer, or a 5xx: either, but whole.
    Unknown,
}

fn outcome(answer: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match answer.map(|answer| answer.status()) {
        Ok(status) if status.is_success() => Outcome::Ok,
        Ok(status) if status.is_client_error() => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

/// Records the outcome of write `n`; whether its node refused the
/// connection (it is gone: its writer stops there).
fn record(
    history: &mut Vec<(usize, Outcome)>,
    n: usize,
    answer: Result<reqwest::Response, reqwest::Error>,
) -> bool {
    let refused = answer.as_ref().is_err_and(reqwest::Error::is_connect);
    history.push((n, outcome(answer)));
    refused
}

/// The bytes of object `n`: large ones go to S3 as multipart uploads.
fn object_bytes(n: usize) -> Vec<u8> {
    let size = if n.is_multiple_of(2) {
        100 << 10
    } else {
        9 << 20
    };
    (0..size).map(|i| ((i * 31 + n * 7) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_mid_write_loses_no_acknowledged_document_batch_or_object_and_tears_none() {
    let cluster = Cluster::new();
    let mut nodes = vec![cluster.node(), cluster.node(), cluster.node()];
    let created = send(control(
        &nodes[0],
        reqwest::Method::PUT,
        "/v1/buckets/files",
    ))
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One writer per node, each alternating a batch of three documents and
    // an object PUT, recording what each write answered.
    let writers = nodes
        .iter()
        .enumerate()
        .map(|(node_index, node)| {
            let (url, token, stop) = (node.url.clone(), node.admin_token(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap();
                let (mut batches, mut objects) = (Vec::new(), Vec::new());
                let mut n = node_index;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let writes = (0..3)
                        .map(|j| {
                            serde_json::json!({
                                "op": "create", "collection": "orders",
                                "id": format!("order-{n}-{j}"), "data": {"n": n, "j": j},
                            })
                        })
                        .collect::<Vec<_>>();
                    let answer = client
                        .post(format!("{url}/v1/docs/_batch"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({ "writes": writes }))
                        .send()
                        .await;
                    if record(&mut batches, n, answer) {
                        break;
                    }
                    let answer = client
                        .put(format!("{url}/v1/objects/files/object-{n}"))
                        .bearer_auth(&token)
                        .body(object_bytes(n))
                        .send()
                        .await;
                    if record(&mut objects, n, answer) {
                        break;
                    }
                    n += 3;
                }
                (batches, objects)
            })
        })
        .collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = 1;
    std::process::Command::new("kill")
        .args(["-KILL", &nodes[victim].pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut history = Vec::new();
    for writer in writers {
        history.push(writer.await.unwrap());
    }
    let survivor = &nodes[0];
    let (mut batches_checked, mut objects_checked, mut unknown) = (0, 0, 0);
    for (batches, objects) in &history {
        for &(n, outcome) in batches {
            let mut found = 0;
            for j in 0..3 {
                let read = send(control(
                    survivor,
                    reqwest::Method::GET,
                    &format!("/v1/docs/orders/order-{n}-{j}"),
                ))
                .await;
                assert!([200, 404].contains(&read.status), "{}", read.text());
                found += usize::from(read.status == 200);
            }
            match outcome {
                Outcome::Ok => assert_eq!(found, 3, "acknowledged batch {n} lost"),
                Outcome::Failed => assert_eq!(found, 0, "failed batch {n} written"),
                Outcome::Unknown => {
                    unknown += 1;
                    assert!(found == 0 || found == 3, "batch {n} torn: {found} of 3");
                }
            }
            batches_checked += 1;
        }
        for &(n, outcome) in objects {
            let read = http()
                .get(format!("{}/v1/objects/files/object-{n}", survivor.url))
                .bearer_auth(survivor.admin_token())
                .send()
                .await
                .unwrap();
            let status = read.status().as_u16();
            let bytes = read.bytes().await.unwrap();
            match (outcome, status) {
                (Outcome::Ok | Outcome::Unknown, 200) => {
                    assert!(
                        bytes == object_bytes(n),
                        "object {n} torn: {} bytes",
                        bytes.len()
                    );
                }
                (Outcome::Failed | Outcome::Unknown, 404) => {}
                other => panic!("object {n}: {other:?}"),
            }
            unknown += usize::from(outcome == Outcome::Unknown);
            objects_checked += 1;
        }
    }
    // The writers got going on every node, and the victim's were cut.
    assert!(batches_checked >= 6 && objects_checked >= 6, "{history:?}");
    assert!(unknown >= 1, "the kill cut nothing: {history:?}");
    nodes.remove(victim);
}

/// Runs `sql` on the test database; its rows, a line each (`|` between
/// columns).
fn psql(database: &str, sql: &str) -> String {
    crate::succeed(std::process::Command::new("psql").args([
        database,
        "-v",
        "ON_ERROR_STOP=1",
        "-qtAc",
        sql,
    ]))
}

/// Waits until `lease` is held; its holder's process id.
async fn holder_of(database: &str, lease: &str) -> u32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = lease_holder(database, lease) {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nobody took {lease}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records, in the database itself, every cursor move and every tick:
/// which node wrote it (each node's connections carry its process id as
/// their application name) and who held the trigger's lease, unexpired,
/// in that same transaction.
const AUDIT: &str = r#"
CREATE TABLE audit (what TEXT, trigger TEXT, writer TEXT, holder TEXT, at TIMESTAMPTZ);
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO audit SELECT TG_TABLE_NAME, NEW.trigger, current_setting('application_name'),
    (SELECT holder FROM leases
      WHERE name = 'trigger/' || NEW.project || '/' || NEW.function || '/' || NEW.trigger
        AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
    clock_timestamp();
  RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION audit();
CREATE TRIGGER audit AFTER INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION audit();
"#;

#[tokio::test]
async fn a_paused_lease_owner_moves_no_cursor_and_ticks_nothing_once_it_lost_its_leases() {
    use test_support::guest_events::{publish, received};
    let cluster = Cluster::new();
    let nodes = vec![cluster.node(), cluster.node(), cluster.node()];
    deploy(
        &nodes[0],
        "worker",
        guests::EVENTS,
        &["--trigger", "queue=jobs", "--trigger", "cron=* * * * * *"],
    );
    let leases = [
        "trigger/default/worker/queue-jobs",
        "trigger/default/worker/cron",
    ];
    let mut paused = Vec::new();
    for lease in leases {
        let pid = holder_of(&cluster.database, lease).await;
        if !paused.contains(&pid) {
            paused.push(pid);
        }
    }
    psql(&cluster.database, AUDIT);
    let signal = |signal: &str, pid: u32| {
        std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
    };
    let awake = nodes
        .iter()
        .filter(|node| !paused.contains(&node.pid()))
        .collect::<Vec<_>>();
    // Paused for twice the lease (10 s) while messages keep coming
    // through the other nodes.
    for &pid in &paused {
        signal("-STOP", pid);
    }
    let paused_at = Instant::now();
    let mut published = Vec::new();
    let mut n = 0;
    while paused_at.elapsed() < Duration::from_secs(20) {
        published.push(publish(awake[n % awake.len()], "jobs", "", &format!("job-{n}")).await);
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for &pid in &paused {
        signal("-CONT", pid);
    }
    // Its workers wake up believing they hold the leases; a few seconds
    // for them to try their writes.
    for _ in 0..12 {
        published.push(publish(awake[n % awake.len()], "jobs", "", &format!("job-{n}")).await);
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for id in &published {
        until("a published message delivered", async || {
            received(awake[0], id).await.is_some()
        })
        .await;
    }

    // Every cursor move and tick was made by the lease's holder of the
    // moment; the survivors made some while the owner was paused.
    let audit = psql(
        &cluster.database,
        "SELECT what, trigger, writer, coalesce(holder, '') FROM audit ORDER BY at",
    );
    let pid_of = |name: &str| {
        name.trim_start_matches("wok ")
            .split('-')
            .next()
            .unwrap_or_default()
            .parse::<u32>()
            .unwrap_or(0)
    };
    let mut by_survivors = std::collections::BTreeSet::new();
    for line in audit.lines() {
        let [what, trigger, writer, holder] = line.split('|').collect::<Vec<_>>()[..] else {
            panic!("{line}");
        };
        assert_eq!(
            pid_of(writer),
            pid_of(holder),
            "{what} of {trigger} written by {writer:?} while {holder:?} held its lease"
        );
        if !paused.contains(&pid_of(writer)) {
            by_survivors.insert((what.to_owned(), trigger.to_owned()));
        }
    }
    for expected in [
        ("subscriptions", "queue-jobs"),
        ("subscriptions", "cron"),
        ("ticks", "cron"),
    ] {
        assert!(
            by_survivors.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "the survivors never wrote {expected:?}: {audit}"
        );
    }
    // One tick per scheduled time.
    let twice = psql(
        &cluster.database,
        "SELECT time FROM events WHERE type = 'wok.cron.tick' GROUP BY stream, time HAVING count(*) > 1",
    );
    assert_eq!(twice.trim(), "", "ticked twice");
    // The paused node came back and serves.
    for node in &nodes {
        assert_eq!(get(node, "/healthz").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_compare_and_swap_through_random_nodes_is_linearizable_per_key() {
    use crate::history::{Kind, Op, check};
    let cluster = Cluster::new();
    let nodes = [cluster.node(), cluster.node(), cluster.node()];
    let urls = nodes
        .iter()
        .map(|node| node.url.clone())
        .collect::<Vec<_>>();
    let token = nodes[0].admin_token();
    const KEYS: usize = 4;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The keys made first, recorded as the first write of each.
    let mut histories = vec![Vec::new(); KEYS];
    for (key, history) in histories.iter_mut().enumerate() {
        let start = Instant::now();
        let answer = client
            .put(format!("{}/v1/kv/cas/key-{key}", urls[key % 3]))
            .bearer_auth(&token)
            .header("If-None-Match", "*")
            .body("initial")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let version = answer.json::<serde_json::Value>().await.unwrap()["version"]
            .as_u64()
            .unwrap();
        history.push((
            key,
            Op {
                start,
                end: Instant::now(),
                kind: Kind::Cas {
                    expected: None,
                    value: "initial".to_owned(),
                    written: Some(version),
                },
            },
        ));
    }
    // Six clients, each reading a random key through a random node and,
    // every other time, writing a value of its own at the version it read.
    let clients = (0..6)
        .map(|client_id| {
            let (client, urls, token) = (client.clone(), urls.clone(), token.clone());
            tokio::spawn(async move {
                let mut ops = Vec::new();
                for n in 0..400 {
                    let key = fastrand::usize(..KEYS);
                    let url = format!("{}/v1/kv/cas/key-{key}", urls[fastrand::usize(..3)]);
                    let start = Instant::now();
                    let answer = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(answer.status(), 200);
                    let version = answer.headers()["etag"]
                        .to_str()
                        .unwrap()
                        .trim_matches('"')
                        .parse::<u64>()
                        .unwrap();
                    let value = answer.text().await.unwrap();
                    ops.push((
                        key,
                        Op {
                            start,
                            end: Instant::now(),
                            kind: Kind::Read(Some((value, version))),
                        },
                    ));
                    if fastrand::bool() {
                        let value = format!("client-{client_id}-{n}");
                        let url = format!("{}/v1/kv/cas/key-{key}", urls[fastrand::usize(..3)]);
                        let start = Instant::now();
                        let answer = client
                            .put(&url)
                            .bearer_auth(&token)
                            .header("If-Match", format!("\"{version}\""))
                            .body(value.clone())
                            .send()
                            .await
                            .unwrap();
                        let written = match answer.status().as_u16() {
                            200 => Some(
                                answer.json::<serde_json::Value>().await.unwrap()["version"]
                                    .as_u64()
                                    .unwrap(),
                            ),
                            412 => None,
                            status => panic!("a compare-and-swap answered {status}"),
                        };
                        ops.push((
                            key,
                            Op {
                                start,
                                end: Instant::now(),
                                kind: Kind::Cas {
                                    expected: Some(version),
                                    value,
                                    written,
                                },
                            },
                        ));
                    }
                }
                ops
            })
        })
        .collect::<Vec<_>>();
    let mut total = 0;
    for ops in futures_join(clients).await {
        for (key, op) in ops {
            histories[key].push((key, op));
            total += 1;
        }
    }
    let (mut writes, mut refused) = (0, 0);
    for history in &histories {
        let ops = history.iter().map(|(_, op)| op.clone()).collect::<Vec<_>>();
        for op in &ops {
            match op.kind {
                Kind::Cas {
                    written: Some(_), ..
                } => writes += 1,
                Kind::Cas { written: None, .. } => refused += 1,
                Kind::Read(_) => {}
            }
        }
        check(&ops).unwrap();
    }
    assert!(total >= 3000, "{total} operations");
    // Contention made some writes succeed and others be refused.
    assert!(
        writes > KEYS * 20 && refused > 20,
        "{writes} written, {refused} refused"
    );
}

/// Each spawned task's output, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

/// Reads realtime messages until `done` holds of what was collected:
/// each subscription's events and changes (what they name), and the last
/// position of each.
async fn collect(
    socket: &mut test_support::realtime::Socket,
    seen: &mut Vec<(String, String)>,
    positions: &mut std::collections::BTreeMap<String, u64>,
    done: impl Fn(&[(String, String)]) -> bool,
) {
    while !done(seen) {
        let message = test_support::realtime::next(socket).await;
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        let named = match message["type"].as_str() {
            Some("event") => message["event"]["data"].as_str().unwrap().to_owned(),
            Some("change") => format!(
                "{} {}",
                message["change"].as_str().unwrap(),
                message["document"]["id"].as_str().unwrap()
            ),
            Some("subscribed" | "snapshot") => continue,
            _ => panic!("{message}"),
        };
        positions.insert(id.clone(), message["position"].as_u64().unwrap());
        seen.push((id, named));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_client_that_reconnects_to_another_node_with_its_positions_misses_nothing_and_gets_nothing_twice()
 {
    use serde_json::json;
    use test_support::realtime::{connect, send_json};
    let cluster = Cluster::new();
    let nodes = [cluster.node(), cluster.node()];
    let token = nodes[0].admin_token();
    let subscriptions = |after: &std::collections::BTreeMap<String, u64>| {
        let mut chat = json!({"type": "subscribe", "id": "chat", "topic": "chat"});
        let mut orders = json!({"type": "subscribe", "id": "orders", "collection": "orders",
            "query": {"where": ["status", "==", "open"]}});
        if let Some(position) = after.get("chat") {
            chat["after"] = json!(position);
        }
        if let Some(position) = after.get("orders") {
            orders["after"] = json!(position);
        }
        [chat, orders]
    };
    let mut socket = connect(&nodes[0], &token).await;
    let mut positions = std::collections::BTreeMap::new();
    for subscription in subscriptions(&positions) {
        send_json(&mut socket, subscription).await;
    }
    // Both subscriptions in place before anything is written.
    let mut subscribed = 0;
    while subscribed < 2 {
        let message = test_support::realtime::next(&mut socket).await;
        subscribed += usize::from(message["type"] == "subscribed");
    }
    // Messages and documents written through both nodes, all along.
    let writer = {
        let urls = nodes
            .iter()
            .map(|node| node.url.clone())
            .collect::<Vec<_>>();
        let token = token.clone();
        tokio::spawn(async move {
            let client = http();
            for n in 0..60 {
                let url = &urls[n % 2];
                let published = client
                    .post(format!("{url}/v1/topics/chat"))
                    .bearer_auth(&token)
                    .header("content-type", "text/plain")
                    .body(format!("message-{n}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(published.status(), 201);
                let written = client
                    .put(format!("{url}/v1/docs/orders/order-{n}"))
                    .bearer_auth(&token)
                    .json(&json!({"status": "open", "n": n}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(written.status(), 201);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Some of it on the first node, then the socket drops mid-stream and
    // the client comes back on the second, from the positions it had.
    let mut seen = Vec::new();
    collect(&mut socket, &mut seen, &mut positions, |seen| {
        seen.len() >= 30
    })
    .await;
    drop(socket);
    let mut socket = connect(&nodes[1], &token).await;
    for subscription in subscriptions(&positions) {
        send_json(&mut socket, subscription).await;
    }
    collect(&mut socket, &mut seen, &mut positions, |seen| {
        seen.len() >= 120
    })
    .await;
    writer.await.unwrap();
    let expected = (0..60)
        .flat_map(|n| {
            [
                ("chat".to_owned(), format!("message-{n}")),
                ("orders".to_owned(), format!("added order-{n}")),
            ]
        })
        .collect::<std::collections::BTreeSet<_>>();
    let got = seen
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(got.len(), seen.len(), "something came twice: {seen:?}");
    assert_eq!(got, expected);
    // Each subscription's in the order it was written.
    for id in ["chat", "orders"] {
        let numbers = seen
            .iter()
            .filter(|(of, _)| of == id)
            .map(|(_, named)| named.rsplit('-').next().unwrap().parse::<u32>().unwrap())
            .collect::<Vec<_>>();
        assert!(numbers.is_sorted(), "{id}: {numbers:?}");
    }
    // Nothing more comes.
    let extra = tokio::time::timeout(Duration::from_millis(500), async {
        use futures::StreamExt;
        socket.next().await
    })
    .await;
    assert!(extra.is_err(), "{extra:?}");
}

#[tokio::test]
async fn chores_run_on_one_node_and_pass_to_another_when_it_stops() {
    let cluster = Cluster::new();
    let mut first = cluster.node();
    let expiring =
        send(control(&first, reqwest::Method::PUT, "/v1/kv/cache/old?ttl=1s").body("soon gone"))
            .await;
    assert_eq!(expiring.status, 200, "{}", expiring.text());
    let created = send(control(&first, reqwest::Method::PUT, "/v1/buckets/files")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let kept =
        send(control(&first, reqwest::Method::PUT, "/v1/objects/files/kept").body("named bytes"))
            .await;
    assert_eq!(kept.status, 200, "{}", kept.text());
    // Blobs no object names: one a crash left long ago, one another
    // node's upload in flight has just written.
    let blobs = cluster.object_files();
    std::fs::write(blobs.join("left-by-a-crash"), "x").unwrap();
    std::fs::write(blobs.join("upload-in-flight"), "x").unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(blobs.join("left-by-a-crash"))
        .status()
        .unwrap();
    assert!(touched.success());
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The first node had the chores; stopping, it hands them over.
    let stopped = first.terminate();
    assert!(stopped.success(), "{stopped:?}");
    let nodes = [cluster.node(), cluster.node()];
    let pids = nodes.iter().map(WokServer::pid).collect::<Vec<_>>();
    for chore in ["upload-expiry", "event-pruning", "kv-expiry", "blob-sweep"] {
        let holder = holder_of(&cluster.database, &format!("maintenance/{chore}")).await;
        assert!(
            pids.contains(&holder),
            "{chore} held by {holder}, not {pids:?}"
        );
    }
    until("the expired entry is deleted", async || {
        psql(
            &cluster.database,
            "SELECT count(*) FROM kv WHERE key = 'old'",
        )
        .trim()
            == "0"
    })
    .await;
    until("the old unnamed blob is swept", async || {
        !blobs.join("left-by-a-crash").exists()
    })
    .await;
    assert!(blobs.join("upload-in-flight").exists());
    let read = send(control(
        &nodes[0],
        reqwest::Method::GET,
        "/v1/objects/files/kept",
    ))
    .await;
    assert_eq!(read.text(), "named bytes");
}

#[tokio::test]
async fn a_node_reaches_its_database_over_verified_tls_when_the_url_requires_it() {
    let database = format!("{}?sslmode=require", database());
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/postgres/tls/ca.pem")
        .display()
        .to_string();
    // A server certificate nothing vouches for: refused, in one line.
    let message = up_fails(&["--database", &database], &[]);
    assert!(message.contains("certificate"), "{message}");
    // With the cluster's CA: up, and every connection it holds encrypted.
    let node =
        WokServer::start_with_env(WOK, &["--database", &database], &[("PGSSLROOTCERT", &ca)]);
    let put = send(control(&node, reqwest::Method::PUT, "/v1/kv/tls/key").body("sealed")).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let connections = psql(
        &database,
        &format!(
            "SELECT count(*), bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE application_name = 'wok {}'",
            node.pid()
        ),
    );
    let (count, encrypted) = connections.trim().split_once('|').unwrap();
    assert!(count.parse::<u32>().unwrap() >= 2, "{connections}");
    assert_eq!(encrypted, "t", "{connections}");
}

#[tokio::test]
async fn an_event_no_node_was_told_of_is_delivered_within_the_safety_poll() {
    use test_support::guest_events::received;
    let cluster = Cluster::new();
    let nodes = [cluster.node(), cluster.node()];
    deploy(
        &nodes[0],
        "worker",
        guests::EVENTS,
        &["--trigger", "queue=jobs"],
    );
    holder_of(&cluster.database, "trigger/default/worker/queue-jobs").await;
    // Committed behind every node's back: no notification, no wake-up
    // (as when a node's notification is lost).
    psql(
        &cluster.database,
        "INSERT INTO events (seq, project, stream, id, type, time, content_type, data)
         VALUES (nextval('event_positions'), 'default', 'topic/jobs', 'untold',
                 'wok.queue.message', (extract(epoch FROM now()) * 1000)::bigint,
                 'text/plain', 'x'::bytea)",
    );
    let delivered = until("the untold event delivered", async || {
        received(&nodes[1], "untold").await.is_some()
    })
    .await;
    assert!(delivered < Duration::from_secs(12), "took {delivered:?}");
}
