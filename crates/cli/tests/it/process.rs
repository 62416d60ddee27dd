//! Native (process) functions: a real Python program (`tests/native/probe`,
//! Debian's python3 from the read-only host view) deployed with the CLI,
//! served through the sandbox helper of the real binary.

use crate::*;
use reqwest::Method;
use serde_json::Value;

fn probe_dir() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/native/probe")
        .display()
        .to_string()
}

/// Deploys the probe program as a process function with `flags`.
fn deploy_probe(server: &WokServer, name: &str, flags: &[&str]) {
    let dir = probe_dir();
    let mut args = vec!["--runtime", "process", "--command", "python3 app.py"];
    args.extend_from_slice(flags);
    deploy(server, name, &dir, &args);
}

/// The children of a process (`/proc/PID/task/*/children`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The server's instances: the children of its sandbox helper.
fn running_instances(server: &WokServer) -> usize {
    let helper = children(server.pid())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.starts_with(b"wok-sandbox"))
        })
        .expect("the server runs a sandbox helper");
    children(helper).len()
}

/// The first line of a function's logs that `matches`, waited for (logs
/// are written off the request path).
async fn log_line(server: &WokServer, function: &str, matches: impl Fn(&str) -> bool) -> Value {
    let path = format!("/v1/functions/{function}/logs?after=0");
    wait_for("the line in the logs", Duration::from_secs(30), || async {
        let logs = send(control(server, Method::GET, &path)).await.json();
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| matches(line["line"].as_str().unwrap_or("")))
            .cloned()
    })
    .await
}

async fn info(server: &WokServer, name: &str) -> Value {
    let answer = get(server, &format!("/fn/{name}/info")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

#[tokio::test]
async fn a_python_program_serves_requests_from_its_sandbox_and_is_metered() {
    let server = server();
    deploy_probe(
        &server,
        "py",
        &["--env", "GREETING=hi", "--memory", "96MiB"],
    );

    let first = get(&server, "/fn/py/info?x=1").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first_id = first.header("x-wok-invocation-id");
    let first = first.json();
    // The rest of the path and the query, unchanged; the unprivileged user;
    // the bundle's directory; the deploy's env; its own hostname.
    assert_eq!(first["path"], "/info?x=1");
    assert_eq!(first["uid"], 1000);
    assert_eq!(first["gid"], 1000);
    assert_eq!(first["cwd"], "/app");
    assert_eq!(first["greeting"], "hi");
    assert_eq!(first["hostname"], "wok");
    // Its own pid namespace: the program is the child of the instance's init.
    assert_eq!(first["pid"], 2);

    // A body goes in and comes back, and the same instance serves again.
    let body = vec![b'z'; 100_000];
    let echoed = send(
        http()
            .post(format!("{}/fn/py/echo", server.url))
            .body(body.clone()),
    )
    .await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.body, body);
    let echo_id = echoed.header("x-wok-invocation-id");
    assert_eq!(info(&server, "py").await["instance"], first["instance"]);

    // Its output is in the function's logs, under the invocation that made it.
    let logged = get(&server, "/fn/py/log?line=hello-from-python").await;
    assert_eq!(logged.status, 200);
    let log_id = logged.header("x-wok-invocation-id");
    let line = log_line(&server, "py", |text| text == "hello-from-python").await;
    assert_eq!(line["invocation"], log_id.as_str());
    assert_eq!(line["stream"], "stdout");
    // Each line names the instance too; what it wrote before its first
    // request is under the instance alone.
    let instance = line["instance"].as_str().unwrap().to_owned();
    assert!(instance.starts_with("instance-"), "{line}");
    let started = log_line(&server, "py", |text| text == "listening on 8080").await;
    assert_eq!(started["instance"], instance.as_str());
    assert_eq!(started["invocation"], instance.as_str());
    assert_eq!(started["stream"], "stderr");
    let shown = server.cli_ok(&["logs", "py"]);
    assert!(
        shown.contains(&format!("{log_id} {instance} stdout: hello-from-python")),
        "{shown}"
    );

    // Every call has its record: cold once, then warm; bytes counted;
    // billed on the configured memory.
    let records = wait_for_records(&server, 4).await;
    assert_eq!(records.len(), 4);
    let record = |id: &str| records.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(record(&first_id)["cold"], true);
    assert_eq!(record(&first_id)["outcome"], "success");
    assert_eq!(record(&first_id)["memory_mib"], 96);
    assert!(record(&first_id)["peak_memory_bytes"].as_u64().unwrap() > 1 << 20);
    // The CPU the instance used during each call, from its cgroup.
    for id in [&first_id, &echo_id] {
        let cpu = record(id)["cpu_us"].as_u64().unwrap();
        let duration = record(id)["duration_us"].as_u64().unwrap();
        assert!(
            cpu > 0 && cpu <= 2 * duration,
            "cpu {cpu} µs in {duration} µs"
        );
    }
    assert_eq!(record(&echo_id)["cold"], false);
    // The cold call says how long its instance took to start, within it.
    let init = record(&first_id)["init_us"].as_u64().unwrap();
    assert!(
        init > 0 && init < record(&first_id)["duration_us"].as_u64().unwrap(),
        "{init}"
    );
    assert_eq!(record(&echo_id)["init_us"], Value::Null);
    assert_eq!(record(&echo_id)["bytes_in"], 100_000);
    assert_eq!(record(&echo_id)["bytes_out"], 100_000);

    let listed = server.cli_ok(&["ls"]);
    assert!(listed.contains("process http"), "{listed}");
}

#[tokio::test]
async fn the_sandbox_shows_nothing_of_the_host_and_lets_nothing_out() {
    let server = server();
    deploy_probe(&server, "probe", &[]);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let data_dir = server.data_dir().display().to_string();
    let answer = send(
        http()
            .get(format!("{}/fn/probe/probe", server.url))
            .query(&[("data_dir", data_dir.as_str()), ("port", port.as_str())]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let probes = answer.json();
    let failed = |name: &str, error: &str| {
        assert_eq!(probes[name]["ok"], false, "{name}: {}", probes[name]);
        assert_eq!(probes[name]["error"], error, "{name}: {}", probes[name]);
    };
    // Only the system directories, the bundle and its own /tmp, /dev, /proc.
    let root: Vec<&str> = probes["root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry.as_str().unwrap())
        .collect();
    for hidden in ["root", "home", "var", "opt", "srv", "work"] {
        assert!(!root.contains(&hidden), "/{hidden} is visible: {root:?}");
    }
    for shown in ["app", "usr", "tmp", "dev", "proc", "etc"] {
        assert!(root.contains(&shown), "/{shown} is missing: {root:?}");
    }
    let etc = probes["etc"].to_string();
    assert!(!etc.contains("shadow") && !etc.contains("ssh"), "{etc}");
    // wok's data directory and the host's home directories are not there.
    failed("host_data_dir", "ENOENT");
    failed("host_root_home", "ENOENT");
    // The root and the bundle are read-only; /tmp is its own.
    failed("write_app", "EROFS");
    failed("write_usr", "EROFS");
    assert_eq!(probes["write_tmp"]["ok"], true, "{}", probes["write_tmp"]);
    assert!(!server.data_dir().join("planted").exists());
    // No capability to mount.
    failed("mount", "EPERM");
    // Its own network: loopback only, where wok's port is not.
    assert_eq!(probes["interfaces"], serde_json::json!(["lo"]));
    failed("wok_port", "ECONNREFUSED");
    // Its own pid namespace: its init and itself.
    assert_eq!(probes["processes"], serde_json::json!([1, 2]));

    // Nothing outside its namespace is reachable at all.
    failed("outside", "ENETUNREACH");
    // It cannot attach to a process, make a namespace or write to its root.
    failed("ptrace", "EPERM");
    failed("unshare", "EPERM");
    failed("write_root", "EROFS");

    // Another function's instance has its own /tmp: the planted file is
    // not there.
    deploy_probe(&server, "other", &[]);
    let other = info(&server, "other").await;
    assert_eq!(other["tmp"], serde_json::json!([]));
    assert_eq!(
        info(&server, "probe").await["tmp"],
        serde_json::json!(["planted"])
    );
}

#[tokio::test]
async fn a_fork_bomb_or_a_full_tmp_stays_inside_while_a_neighbour_keeps_serving() {
    let server = server();
    // The probe and a fork bomb in C, compiled here, in one bundle.
    let bundle = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(&probe_dir()).join("app.py"),
        bundle.path().join("app.py"),
    )
    .unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/native/forkbomb.c");
    let compiled = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(bundle.path().join("forkbomb"))
        .arg(&source)
        .output()
        .expect("running cc");
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let bundle_path = bundle.path().display().to_string();
    deploy(
        &server,
        "bomb",
        &bundle_path,
        &[
            "--runtime",
            "process",
            "--command",
            "python3 app.py",
            "--memory",
            "128MiB",
        ],
    );
    deploy_probe(&server, "healthy", &[]);
    assert_eq!(info(&server, "healthy").await["uid"], 1000);

    let bomb = get(&server, "/fn/bomb/run?program=forkbomb");
    let neighbour = async {
        let mut served = 0;
        for _ in 0..10 {
            let answer = get(&server, "/fn/healthy/info").await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            served += 1;
        }
        served
    };
    let (bomb, served) = tokio::join!(bomb, neighbour);
    assert_eq!(served, 10);
    assert_eq!(bomb.status, 200, "{}", bomb.text());
    let bomb = bomb.json();
    // The pids cgroup refuses the fork (the init and the server itself
    // count too), well before the host would.
    assert_eq!(bomb["refused"], "EAGAIN", "{bomb}");
    assert!(bomb["forked"].as_u64().unwrap() < 512, "{bomb}");

    // /tmp holds half the memory limit; past it, the disk is full for this
    // instance alone.
    let filled = get(&server, "/fn/bomb/fill").await;
    assert_eq!(filled.status, 200, "{}", filled.text());
    let filled = filled.json();
    assert_eq!(filled["refused"], "ENOSPC", "{filled}");
    assert!(filled["written"].as_u64().unwrap() <= 64 << 20, "{filled}");
    assert_eq!(info(&server, "healthy").await["uid"], 1000);
}

#[tokio::test]
async fn a_program_that_crashes_eats_memory_or_hangs_fails_only_its_request() {
    let server = server();
    deploy_probe(
        &server,
        "fragile",
        &["--memory", "64MiB", "--timeout", "2s"],
    );
    let before = info(&server, "fragile").await["instance"].clone();

    let crashed = get(&server, "/fn/fragile/crash").await;
    assert_eq!(crashed.status, 502, "{}", crashed.text());
    assert_eq!(crashed.error_code(), "function_crashed");
    // Replaced on the next request.
    let after_crash = info(&server, "fragile").await["instance"].clone();
    assert_ne!(after_crash, before);

    let eaten = get(&server, "/fn/fragile/eat").await;
    assert_eq!(eaten.status, 502, "{}", eaten.text());
    assert_eq!(eaten.error_code(), "function_out_of_memory");
    let after_oom = info(&server, "fragile").await["instance"].clone();
    assert_ne!(after_oom, after_crash);

    let slow = get(&server, "/fn/fragile/sleep?ms=30000").await;
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert_eq!(slow.error_code(), "function_timeout");
    let after_timeout = info(&server, "fragile").await["instance"].clone();
    assert_ne!(after_timeout, after_oom, "a timed-out instance is killed");

    let records = wait_for_records(&server, 7).await;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|record| record["outcome"].as_str().unwrap())
        .collect();
    for outcome in [
        "function_crashed",
        "function_out_of_memory",
        "function_timeout",
    ] {
        assert!(outcomes.contains(&outcome), "{outcomes:?}");
    }
}

#[tokio::test]
async fn instances_scale_out_with_waiting_requests_and_in_to_zero_when_idle() {
    let server = server();
    deploy_probe(
        &server,
        "elastic",
        &["--max-instances", "2", "--idle-timeout", "1s"],
    );
    // Four requests at once, one at a time per instance, at most two
    // instances: all are served, by exactly two instances.
    let calls = (0..4).map(|_| get(&server, "/fn/elastic/sleep?ms=400"));
    let answers = futures::future::join_all(calls).await;
    let mut instances: Vec<String> = answers
        .iter()
        .map(|answer| {
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.json()["instance"].as_str().unwrap().to_owned()
        })
        .collect();
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 2, "{instances:?}");

    assert_eq!(running_instances(&server), 2);
    // Idle past the timeout, both stop; the next request starts another.
    wait_for(
        "idle instances to stop",
        Duration::from_secs(15),
        || async { (running_instances(&server) == 0).then_some(()) },
    )
    .await;
    let again = info(&server, "elastic").await["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!instances.contains(&again), "an idle instance was kept");
    let records = wait_for_records(&server, 5).await;
    let last = records
        .iter()
        .max_by_key(|record| record["start"].as_u64().unwrap())
        .unwrap();
    assert_eq!(last["cold"], true);
}

#[tokio::test]
async fn a_bad_bundle_or_setting_is_refused_and_the_live_version_keeps_serving() {
    let server = server();
    deploy_probe(&server, "app", &[]);
    let live = info(&server, "app").await["instance"].clone();

    let garbage = server.data_dir().join("garbage.tar");
    std::fs::write(&garbage, b"not an archive at all").unwrap();
    let output = server.cli(&[
        "deploy",
        "app",
        garbage.to_str().unwrap(),
        "--runtime",
        "process",
        "--command",
        "python3 app.py",
    ]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("not a .tar, .tar.gz or .zip"),
        "{}",
        output.stderr()
    );

    let output = server.cli(&["deploy", "app", &probe_dir(), "--runtime", "process"]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("needs a command"),
        "{}",
        output.stderr()
    );

    let output = server.cli(&[
        "deploy",
        "app",
        guests::HELLO,
        "--command",
        "python3 app.py",
    ]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("settings of process functions"),
        "{}",
        output.stderr()
    );

    let output = server.cli(&[
        "deploy",
        "app",
        &probe_dir(),
        "--runtime",
        "process",
        "--command",
        "python3 app.py",
        "--concurrency",
        "0",
    ]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("concurrency"),
        "{}",
        output.stderr()
    );

    // Still version 1, still the same instance.
    assert_eq!(info(&server, "app").await["instance"], live);
    let versions = server.cli_ok(&["versions", "app"]);
    assert_eq!(
        versions
            .lines()
            .filter(|line| line.contains("process"))
            .count(),
        1,
        "{versions}"
    );
}

#[tokio::test]
async fn a_bundle_that_unpacks_past_the_limit_is_refused_with_413() {
    // Uploads up to 64 KiB, so bundles unpack to 256 KiB at most.
    let server = WokServer::start_with(WOK, &["--max-upload", "64KiB"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), "print('hi')").unwrap();
    std::fs::write(dir.path().join("zeros"), vec![0u8; 2 << 20]).unwrap();
    let packed = dir.path().join("bomb.tar.gz");
    let made = std::process::Command::new("tar")
        .args(["czf", packed.to_str().unwrap(), "-C"])
        .arg(dir.path())
        .args(["app.py", "zeros"])
        .status()
        .unwrap();
    assert!(made.success());
    let bytes = std::fs::read(&packed).unwrap();
    assert!(bytes.len() < 64 << 10, "{} bytes packed", bytes.len());
    let answer = send(
        control(
            &server,
            Method::POST,
            "/v1/functions/bomb/versions?runtime=process&command=python3%20app.py",
        )
        .body(bytes),
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.error_code(), "payload_too_large");
    assert!(
        answer.text().contains("unpacks to more than"),
        "{}",
        answer.text()
    );
    let output = server.cli(&[
        "deploy",
        "bomb",
        packed.to_str().unwrap(),
        "--runtime",
        "process",
        "--command",
        "python3 app.py",
    ]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("unpacks to more than"),
        "{}",
        output.stderr()
    );
    let listed = send(control(&server, Method::GET, "/v1/functions/bomb")).await;
    assert_eq!(listed.status, 404);
}

#[tokio::test]
async fn versions_and_rollback_switch_between_programs() {
    let server = server();
    deploy_probe(&server, "app", &["--env", "GREETING=one"]);
    assert_eq!(info(&server, "app").await["greeting"], "one");
    deploy_probe(&server, "app", &["--env", "GREETING=two"]);
    assert_eq!(info(&server, "app").await["greeting"], "two");
    server.cli_ok(&["rollback", "app", "1"]);
    assert_eq!(info(&server, "app").await["greeting"], "one");

    // Another function, with other code, then removed: its unpacked root
    // stays until no version uses it, and goes at the next start.
    let upper = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/native/upper");
    deploy(
        &server,
        "gone",
        upper.to_str().unwrap(),
        &[
            "--runtime",
            "process",
            "--protocol",
            "exec",
            "--command",
            "sh handler.sh",
        ],
    );
    let roots = server.data_dir().join("process/roots");
    let names = |roots: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(roots)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&roots).len(), 2);
    server.cli_ok(&["rm", "gone"]);

    // A restart serves the current version without unpacking again.
    let kept = names(&roots);
    let server = server.restart();
    assert_eq!(info(&server, "app").await["greeting"], "one");
    let after = names(&roots);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(kept.contains(&after[0]));
    // The one left is the app's, unpacked once.
    assert_eq!(info(&server, "app").await["cwd"], "/app");
}

#[tokio::test]
async fn triggers_and_asynchronous_invocations_reach_a_program() {
    let server = server();
    deploy_probe(&server, "worker", &["--trigger", "queue=jobs"]);

    // An asynchronous invocation: queued, delivered, its answer kept.
    let accepted = send(
        http()
            .post(format!("{}/fn/worker/echo", server.url))
            .header("prefer", "respond-async")
            .body("later"),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    let done = crate::events::async_status(&server, &id, "succeeded").await;
    assert_eq!(done["response"]["status"], 200);
    assert_eq!(done["response"]["body"], "later");

    // A message on the topic arrives as a CloudEvents request.
    server.cli_ok(&["publish", "jobs", "job-42"]);
    let line = log_line(&server, "worker", |text| text.starts_with("event ")).await;
    assert!(line["line"].as_str().unwrap().ends_with("job-42"), "{line}");
    let records = wait_for_records(&server, 2).await;
    let triggers: Vec<&str> = records
        .iter()
        .map(|record| record["trigger"].as_str().unwrap())
        .collect();
    assert!(triggers.contains(&"queue"), "{triggers:?}");
    assert!(
        records.iter().all(|record| record["outcome"] == "success"),
        "{records:?}"
    );
}

/// CPU time a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn an_idle_instance_is_frozen_and_thawed_by_the_next_request() {
    let server = server();
    deploy_probe(&server, "spinner", &["--cpu", "1", "--idle-timeout", "4s"]);
    let spun = get(&server, "/fn/spinner/spin").await;
    assert_eq!(spun.status, 200, "{}", spun.text());
    // The program: the child of the instance's init, the helper's child.
    let helper = children(server.pid())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.starts_with(b"wok-sandbox"))
        })
        .unwrap();
    let init = children(helper)[0];
    let program = children(init)[0];

    let frozen = "wok_process_instances{state=\"frozen\"}";
    wait_for(
        "the idle instance to freeze",
        Duration::from_secs(10),
        || async { (metric(&server, frozen).await == 1.0).then_some(()) },
    )
    .await;
    // Frozen, its busy thread gets no CPU at all.
    let before = cpu_ticks(program);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = cpu_ticks(program) - before;
    assert!(used <= 2, "a frozen instance used {used} ticks");

    // The next request thaws it: answered by the same instance, whose
    // thread runs again.
    let answer = get(&server, "/fn/spinner/info").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["pid"], 2);
    assert_eq!(metric(&server, frozen).await, 0.0);
    let before = cpu_ticks(program);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cpu_ticks(program) - before >= 5,
        "the thawed instance did not run"
    );

    // Frozen again, then idle past its timeout: stopped (a frozen process
    // dies only once thawed).
    wait_for(
        "the idle instance to freeze again",
        Duration::from_secs(10),
        || async { (metric(&server, frozen).await == 1.0).then_some(()) },
    )
    .await;
    wait_for(
        "the frozen instance to stop",
        Duration::from_secs(15),
        || async { (running_instances(&server) == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn an_exec_function_runs_a_process_per_request_from_stdin_to_stdout() {
    let server = server();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/native/upper");
    deploy(
        &server,
        "upper",
        dir.to_str().unwrap(),
        &[
            "--runtime",
            "process",
            "--protocol",
            "exec",
            "--command",
            "sh handler.sh",
        ],
    );
    let answer = send(
        http()
            .post(format!("{}/fn/upper/some/path?x=1", server.url))
            .header("content-type", "text/plain")
            .body("hello, wok"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.text(),
        "POST /some/path?x=1 ct=text/plain\nHELLO, WOK"
    );

    // A non-zero exit before any output fails the request, with its status;
    // what it wrote to stderr is in the logs.
    let failed = get(&server, "/fn/upper/fail").await;
    assert_eq!(failed.status, 502, "{}", failed.text());
    assert_eq!(failed.error_code(), "function_crashed");
    assert!(failed.text().contains("status 3"), "{}", failed.text());
    let failed_id = failed.header("x-wok-invocation-id");
    let line = log_line(&server, "upper", |text| text == "failing on purpose").await;
    assert_eq!(line["invocation"], failed_id.as_str());

    let records = wait_for_records(&server, 2).await;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"success") && outcomes.contains(&"function_crashed"),
        "{outcomes:?}"
    );
    assert!(records.iter().all(|record| record["cold"] == true));
    assert!(
        records
            .iter()
            .all(|record| record["cpu_us"].as_u64().unwrap() > 0)
    );
    // Every process is gone once its request is.
    wait_for("exec processes to end", Duration::from_secs(10), || async {
        (running_instances(&server) == 0).then_some(())
    })
    .await;
}

/// The directory `scripts/install-awslambdaric.sh` installs AWS's Python
/// runtime interface client into (once per test run).
fn awslambdaric() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| run_script("install-awslambdaric.sh").join("packages"))
        .clone()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn an_unmodified_awslambdaric_handler_serves_http_and_events() {
    let server = server();
    let bundle = tempfile::tempdir().unwrap();
    copy_dir(&awslambdaric(), &bundle.path().join("packages"));
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/native/lambda/app.py"),
        bundle.path().join("app.py"),
    )
    .unwrap();
    deploy(
        &server,
        "lam",
        bundle.path().to_str().unwrap(),
        &[
            "--runtime",
            "process",
            "--protocol",
            "lambda",
            "--command",
            "python3 -m awslambdaric app.handler",
            "--env",
            "PYTHONPATH=/app/packages:/app",
            "--trigger",
            "queue=orders",
        ],
    );

    // An HTTP request, as the format 2.0 payload; the answer mapped back.
    let answer = send(
        http()
            .post(format!(
                "{}/fn/lam/items/7?colour=red&colour=blue",
                server.url
            ))
            .header("content-type", "text/plain")
            .body("a body"),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.header("x-from"), "lambda");
    assert_eq!(answer.header("set-cookie"), "flavour=oat");
    let id = answer.header("x-wok-invocation-id");
    let seen = answer.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/items/7");
    assert_eq!(seen["query"], "colour=red&colour=blue");
    assert_eq!(seen["parameters"]["colour"], "red,blue");
    assert_eq!(seen["body"], "a body");
    assert_eq!(seen["base64"], false);
    assert_eq!(seen["function"], "lam");
    assert_eq!(seen["request_id"], id.as_str());
    assert_eq!(seen["time_left"], true);

    // A binary body travels base64-encoded.
    let binary = send(
        http()
            .post(format!("{}/fn/lam/bin", server.url))
            .header("content-type", "application/octet-stream")
            .body(vec![0u8, 159, 146, 150]),
    )
    .await;
    assert_eq!(binary.json()["base64"], true);
    assert_eq!(binary.json()["body"], "AJ+Slg==");

    // Any other JSON answer is a 200 JSON body.
    let plain = get(&server, "/fn/lam/plain").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.json(), serde_json::json!({"just": "json"}));

    // An exception the handler raises fails the call, named.
    let failed = get(&server, "/fn/lam/fail").await;
    assert_eq!(failed.status, 502, "{}", failed.text());
    assert_eq!(failed.error_code(), "function_trap");
    assert!(
        failed.text().contains("ValueError: failing on purpose"),
        "{}",
        failed.text()
    );
    // The instance survives its handler's exception.
    assert_eq!(get(&server, "/fn/lam/plain").await.status, 200);

    // A trigger's event arrives as its CloudEvent.
    server.cli_ok(&[
        "publish",
        "orders",
        "{\"order\":42}",
        "--content-type",
        "application/json",
    ]);
    let line = log_line(&server, "lam", |text| text.starts_with("cloudevent ")).await;
    assert!(
        line["line"].as_str().unwrap().ends_with("{\"order\": 42}"),
        "{line}"
    );
    let records = wait_for_records(&server, 6).await;
    assert!(
        records
            .iter()
            .any(|r| r["trigger"] == "queue" && r["outcome"] == "success")
    );
    let first = records.iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!(first["cold"], true);

    // A handler that cannot be loaded reports an init error: the start fails
    // with what the runtime said.
    deploy(
        &server,
        "broken",
        bundle.path().to_str().unwrap(),
        &[
            "--runtime",
            "process",
            "--protocol",
            "lambda",
            "--command",
            "python3 -m awslambdaric nosuchmodule.handler",
            "--env",
            "PYTHONPATH=/app/packages:/app",
        ],
    );
    let broken = get(&server, "/fn/broken/").await;
    assert_eq!(broken.status, 502, "{}", broken.text());
    assert_eq!(broken.error_code(), "function_crashed");
    assert!(
        broken.text().contains("ImportModuleError"),
        "{}",
        broken.text()
    );
}

#[tokio::test]
async fn scaling_in_under_load_fails_no_request() {
    let server = server();
    deploy_probe(
        &server,
        "steady",
        &["--max-instances", "4", "--idle-timeout", "1s"],
    );
    let client = |until: std::time::Instant| {
        let server = &server;
        async move {
            let mut served = 0;
            while std::time::Instant::now() < until {
                let answer = get(server, "/fn/steady/sleep?ms=20").await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                served += 1;
            }
            served
        }
    };
    // Four clients at once: four instances.
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    let burst = futures::future::join_all((0..4).map(|_| client(until))).await;
    assert!(burst.iter().all(|served| *served > 0));
    assert_eq!(running_instances(&server), 4);
    // One client on: the other three idle out and stop (frozen first) while
    // it keeps being served.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let served = client(until).await;
    assert!(served > 0);
    let scaled_in = "wok_scale_events_total{function=\"default/steady\",direction=\"in\"}";
    assert!(metric(&server, scaled_in).await >= 3.0);
    assert_eq!(running_instances(&server), 1);
    let records = wait_for_records(&server, burst.iter().sum::<usize>() + served).await;
    assert!(records.iter().all(|record| record["outcome"] == "success"));
}

#[tokio::test]
async fn a_zip_bundle_deploys_like_a_directory() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("bundle.zip");
    crate::succeed(
        std::process::Command::new("python3")
            .args(["-m", "zipfile", "-c"])
            .arg(&zip)
            .arg("app.py")
            .current_dir(probe_dir()),
    );
    deploy(
        &server,
        "zipped",
        zip.to_str().unwrap(),
        &[
            "--runtime",
            "process",
            "--command",
            "python3 app.py",
            "--env",
            "GREETING=zip",
        ],
    );
    assert_eq!(info(&server, "zipped").await["greeting"], "zip");
}

/// An image of the static server (`bench/native/static-server.c`, compiled
/// here) written by `tests/native/make_image.py` in `format`, with `extra`
/// arguments.
fn make_image(dir: &std::path::Path, format: &str, extra: &[&str]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = dir.join("static-server");
    if !server.exists() {
        let compiled = std::process::Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&server)
            .arg(root.join("../../bench/native/static-server.c"))
            .output()
            .expect("running cc");
        assert!(
            compiled.status.success(),
            "{}",
            String::from_utf8_lossy(&compiled.stderr)
        );
    }
    let out = dir.join(format!("{format}{}.tar", extra.join("")));
    let made = std::process::Command::new("python3")
        .arg(root.join("tests/native/make_image.py"))
        .arg(&out)
        .arg(format)
        .arg(&server)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    out.display().to_string()
}

#[tokio::test]
async fn an_oci_image_runs_its_entrypoint_as_its_user_with_layers_applied() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    for format in ["oci", "docker"] {
        let image = make_image(dir.path(), format, &[]);
        let name = format!("image-{format}");
        // No --command: the image's Entrypoint runs, in its WorkingDir, as
        // its User, with its Env; the second layer's whiteout removed
        // old.txt.
        deploy(&server, &name, &image, &["--runtime", "process"]);
        let answer = get(&server, &format!("/fn/{name}/env")).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(
            answer.text(),
            "greeting=image cwd=/srv uid=1234 gid=1234 old=0 new=1\n",
            "{format}"
        );
    }
    // The deploy's env overrides the image's.
    let image = make_image(dir.path(), "oci", &[]);
    deploy(
        &server,
        "image-env",
        &image,
        &["--runtime", "process", "--env", "GREETING=deploy"],
    );
    let answer = get(&server, "/fn/image-env/env").await;
    assert!(
        answer.text().starts_with("greeting=deploy "),
        "{}",
        answer.text()
    );

    // A blob that does not match its digest, or an image for another
    // machine, is refused before anything is stored.
    for (extra, says) in [
        (&["--bad-digest"][..], "does not match its digest"),
        (&["--arch", "arm64"][..], "the image is for arm64"),
    ] {
        let image = make_image(dir.path(), "oci", extra);
        let output = server.cli(&["deploy", "refused", &image, "--runtime", "process"]);
        assert!(!output.success());
        assert!(output.stderr().contains(says), "{}", output.stderr());
    }
    let listed = server.cli_ok(&["ls"]);
    assert!(!listed.contains("refused"), "{listed}");
}

#[tokio::test]
async fn an_unmodified_rust_lambda_runtime_bootstrap_serves_requests() {
    // A Lambda deployment package as `cargo lambda build --output-format
    // zip` makes it: the bootstrap alone in a zip; no command needed.
    let bootstrap = run_script("build-rust-lambda.sh");
    let bundle = tempfile::tempdir().unwrap();
    std::fs::copy(&bootstrap, bundle.path().join("bootstrap")).unwrap();
    let zip = bundle.path().join("bootstrap.zip");
    let made = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&zip)
        .arg("bootstrap")
        .current_dir(bundle.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let server = server();
    // Without a bootstrap, the command is asked for.
    let output = server.cli(&[
        "deploy",
        "rusty",
        &probe_dir(),
        "--runtime",
        "process",
        "--protocol",
        "lambda",
    ]);
    assert!(!output.success());
    assert!(
        output.stderr().contains("executable bootstrap"),
        "{}",
        output.stderr()
    );
    deploy(
        &server,
        "rusty",
        zip.to_str().unwrap(),
        &["--runtime", "process", "--protocol", "lambda"],
    );
    let answer = get(&server, "/fn/rusty/hello").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let id = answer.header("x-wok-invocation-id");
    let seen = answer.json();
    assert_eq!(seen["runtime"], "rust");
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["request_id"], id.as_str());
    assert_eq!(seen["function"], "rusty");
    let failed = get(&server, "/fn/rusty/fail").await;
    assert_eq!(failed.status, 502, "{}", failed.text());
    assert_eq!(failed.error_code(), "function_trap");
    assert!(
        failed.text().contains("failing on purpose"),
        "{}",
        failed.text()
    );
    assert_eq!(get(&server, "/fn/rusty/again").await.status, 200);
    // Its settings are stored whole, with no command to show they are a
    // process function's: after a restart it still speaks lambda.
    let server = server.restart();
    assert_eq!(get(&server, "/fn/rusty/again").await.status, 200);
}

#[tokio::test]
async fn a_wok_toml_process_function_keeps_its_min_instances_warm() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        std::path::Path::new(&probe_dir()),
        &dir.path().join("probe"),
    );
    std::fs::write(
        dir.path().join("wok.toml"),
        r#"
[functions.warm]
path = "probe"
runtime = "process"
command = "python3 app.py"
min_instances = 1
env = { GREETING = "from-toml" }
"#,
    )
    .unwrap();
    let output = server
        .command(&["deploy"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Started without a request, and kept.
    wait_for(
        "the minimum instance to start",
        Duration::from_secs(15),
        || async {
            (metric(&server, "wok_process_instances{state=\"idle\"}").await
                + metric(&server, "wok_process_instances{state=\"frozen\"}").await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    let answer = get(&server, "/fn/warm/info").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["greeting"], "from-toml");
    let records = wait_for_records(&server, 1).await;
    assert_eq!(
        records[0]["cold"], false,
        "the first request found a warm instance"
    );
}

/// A server outside every sandbox, on 127.0.0.2 (not the instance's own
/// loopback address, so the program's proxy settings send it through the
/// proxy): answers every request with its path (`/host`: its Host).
fn outside_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let host = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("host")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                let body = if path == "/host" {
                    format!("outside saw host {host}")
                } else {
                    format!("outside saw {path}")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    address
}

#[tokio::test]
async fn a_program_calls_wok_with_its_injected_credentials_and_reaches_only_allowed_hosts() {
    let server = server();
    let allowed = outside_server();
    let denied = outside_server();
    deploy_probe(&server, "probe", &["--allow-outbound", &allowed]);
    let answer = send(
        http()
            .get(format!("{}/fn/probe/platform", server.url))
            .query(&[
                ("allowed", allowed.as_str()),
                ("denied", denied.as_str()),
                ("other_project", "elsewhere"),
            ]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = answer.json();
    let env = &seen["env"];
    assert_eq!(env["WOK_API"], "http://127.0.0.1:9002");
    assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:9002");
    assert_eq!(env["WOK_PROJECT"], "default");
    assert_eq!(env["WOK_FUNCTION"], "probe");
    assert_eq!(env["HTTP_PROXY"], "http://127.0.0.1:9003");

    // Its project's data, with the token, through WOK_API.
    assert_eq!(seen["kv_put"]["status"], 200, "{}", seen["kv_put"]);
    assert_eq!(seen["kv_get"]["status"], 200, "{}", seen["kv_get"]);
    assert_eq!(seen["kv_get"]["body"], "from inside");
    let stored = send(control(&server, Method::GET, "/v1/kv/notes/greeting")).await;
    assert_eq!(stored.text(), "from inside");
    // Without it, nothing; another project, nothing; no deploys.
    assert_eq!(seen["no_token"]["status"], 401, "{}", seen["no_token"]);
    assert_eq!(
        seen["other_project"]["status"], 403,
        "{}",
        seen["other_project"]
    );
    assert_eq!(seen["deploy"]["status"], 403, "{}", seen["deploy"]);
    let planted = send(control(&server, Method::GET, "/v1/functions/planted")).await;
    assert_eq!(planted.status, 404);
    // A URL it presigns works without a credential.
    assert_eq!(seen["presigned"]["status"], 200, "{}", seen["presigned"]);
    assert_eq!(seen["presigned"]["body"], "shared from inside");
    // Its S3 pair is the one it was given.
    let s3: Value = serde_json::from_str(seen["s3_credentials"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(s3["access_key_id"], env["AWS_ACCESS_KEY_ID"]);
    assert_eq!(s3["secret_access_key"], env["AWS_SECRET_ACCESS_KEY"]);

    // Out only through the proxy, only where the allow list says.
    assert_eq!(
        seen["outside_allowed"]["status"], 200,
        "{}",
        seen["outside_allowed"]
    );
    assert_eq!(seen["outside_allowed"]["body"], "outside saw /hello");
    // The proxy sends the URL's host, whatever Host the program named.
    assert_eq!(seen["outside_host"], format!("outside saw host {allowed}"));
    assert_eq!(
        seen["outside_denied"]["status"], 403,
        "{}",
        seen["outside_denied"]
    );
    assert!(
        seen["outside_denied"]["body"]
            .as_str()
            .unwrap()
            .contains("--allow-outbound"),
        "{}",
        seen["outside_denied"]
    );
    assert!(
        seen["tunnel_allowed"]["connect"]
            .as_str()
            .unwrap()
            .contains(" 200"),
        "{}",
        seen["tunnel_allowed"]
    );
    assert_eq!(seen["tunnel_allowed"]["body"], "outside saw /tunnelled");
    assert!(
        seen["tunnel_denied"]["connect"]
            .as_str()
            .unwrap()
            .contains(" 403"),
        "{}",
        seen["tunnel_denied"]
    );

    // The token is a credential of its own: from outside too, for the
    // project's data only, and not once altered.
    let token = env["WOK_TOKEN"].as_str().unwrap().to_owned();
    assert!(token.starts_with("wok_fn_default_"), "{token}");
    let with = |token: &str, path: &str| {
        http()
            .get(format!("{}{path}", server.url))
            .bearer_auth(token)
    };
    assert_eq!(
        send(with(&token, "/v1/kv/notes/greeting")).await.status,
        200
    );
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        send(with(&altered, "/v1/kv/notes/greeting")).await.status,
        401
    );
    assert_eq!(send(with(&token, "/v1/keys")).await.status, 403);
}

/// One second of a 440 Hz tone: a 16-bit stereo WAV at 44.1 kHz.
fn tone_wav() -> Vec<u8> {
    let (rate, channels, seconds) = (44_100u32, 2u16, 1u32);
    let samples: Vec<i16> = (0..rate * seconds)
        .map(|n| {
            let phase = n as f64 * 440.0 * std::f64::consts::TAU / rate as f64;
            (phase.sin() * 12_000.0) as i16
        })
        .collect();
    let data_bytes = samples.len() as u32 * u32::from(channels) * 2;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    wav.extend_from_slice(&(channels * 2).to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_bytes.to_le_bytes());
    for sample in samples {
        for _ in 0..channels {
            wav.extend_from_slice(&sample.to_le_bytes());
        }
    }
    wav
}

/// The seed's use case: an upload to a bucket triggers a Python function
/// that runs Debian's sox and writes the result to another bucket through
/// wok's S3 endpoint with boto3 and the injected credentials (the README's
/// `examples/transcode`, deployed as the README says).
#[tokio::test]
async fn an_upload_is_transcoded_by_sox_in_a_native_function_writing_back_through_s3() {
    let packages = run_script("install-transcode-deps.sh").join("packages");
    let bundle = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/transcode");
    std::fs::copy(example.join("app.py"), bundle.path().join("app.py")).unwrap();
    copy_dir(&packages, &bundle.path().join("packages"));

    let server = server();
    server.cli_ok(&["objects", "mb", "uploads"]);
    server.cli_ok(&["objects", "mb", "transcoded"]);
    deploy(
        &server,
        "transcode",
        &bundle.path().display().to_string(),
        &[
            "--runtime",
            "process",
            "--command",
            "python3 app.py",
            "--env",
            "PYTHONPATH=/app/packages",
            "--memory",
            "256MiB",
            "--timeout",
            "60s",
            "--trigger",
            "objects=uploads;on=created;suffix=.wav",
        ],
    );
    let wav = bundle.path().join("tone.wav");
    std::fs::write(&wav, tone_wav()).unwrap();
    server.cli_ok(&[
        "objects",
        "put",
        "uploads",
        "songs/tone.wav",
        &wav.display().to_string(),
    ]);

    let flac = wait_for("the transcoded file", Duration::from_secs(90), || async {
        let answer = send(control(
            &server,
            Method::GET,
            "/v1/objects/transcoded/songs/tone.flac",
        ))
        .await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert_eq!(flac.header("content-type"), "audio/flac");
    let fetched = bundle.path().join("tone.flac");
    server.cli_ok(&[
        "objects",
        "get",
        "transcoded",
        "songs/tone.flac",
        &fetched.display().to_string(),
    ]);
    let bytes = &std::fs::read(&fetched).unwrap();
    assert_eq!(bytes, &flac.body);
    // FLAC, and its STREAMINFO says what sox was asked for.
    assert_eq!(
        &bytes[..4],
        b"fLaC",
        "not FLAC: {:?}",
        &bytes[..16.min(bytes.len())]
    );
    let rate =
        (u32::from(bytes[18]) << 12) | (u32::from(bytes[19]) << 4) | (u32::from(bytes[20]) >> 4);
    let channels = ((bytes[20] >> 1) & 7) + 1;
    assert_eq!((rate, channels), (16_000, 1));

    let line = log_line(&server, "transcode", |line| line.starts_with("transcoded ")).await;
    assert_eq!(
        line["line"],
        "transcoded uploads/songs/tone.wav to transcoded/songs/tone.flac"
    );
    let records = wait_for_records(&server, 1).await;
    let record = records
        .iter()
        .find(|record| record["trigger"] == "objects")
        .expect("a record of the delivery");
    assert_eq!(record["outcome"], "success", "{record}");
    // The function's own write to `transcoded` triggers nothing (only
    // `uploads` is watched), and the upload was delivered once.
    assert_eq!(
        records
            .iter()
            .filter(|record| record["trigger"] == "objects")
            .count(),
        1
    );
}

/// Node's own HTTP server, run by Debian's node from the host's `/usr`,
/// calling wok's API with `fetch` and its injected token, and following a
/// topic over wok's realtime WebSocket from inside.
#[tokio::test]
async fn a_node_server_serves_requests_and_reads_its_projects_data() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.js"),
        r#"
const http = require("node:http");
const api = process.env.WOK_API, token = process.env.WOK_TOKEN;
// Subscribes to a topic, publishes to it once subscribed, and answers
// with the event that came back over the socket.
function roundTrip() {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${api.replace("http", "ws")}/v1/realtime?access_token=${token}`);
    socket.onerror = () => reject(new Error("the socket failed"));
    socket.onopen = () => socket.send(JSON.stringify({ type: "subscribe", id: "s1", topic: "news" }));
    socket.onmessage = async (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "subscribed") {
        await fetch(`${api}/v1/topics/news`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "text/plain" },
          body: "fresh from inside",
        });
      } else if (frame.type === "event") {
        socket.close();
        resolve(frame.event.data);
      }
    };
  });
}
http.createServer(async (request, response) => {
  if (request.url === "/realtime") {
    const data = await roundTrip().catch((error) => `failed: ${error}`);
    response.writeHead(200, { "content-type": "application/json" });
    return response.end(JSON.stringify({ data }));
  }
  const stored = await fetch(`${process.env.WOK_API}/v1/kv/settings/motd`, {
    headers: { authorization: `Bearer ${process.env.WOK_TOKEN}` },
  });
  const body = JSON.stringify({
    node: process.version,
    url: request.url,
    motd: stored.status === 200 ? await stored.text() : `status ${stored.status}`,
  });
  response.writeHead(200, { "content-type": "application/json" });
  response.end(body);
}).listen(Number(process.env.PORT), "127.0.0.1");
"#,
    )
    .unwrap();
    deploy(
        &server,
        "noded",
        dir.path().to_str().unwrap(),
        &[
            "--runtime",
            "process",
            "--command",
            "node --experimental-websocket server.js",
            "--memory",
            "256MiB",
        ],
    );
    let put = send(control(&server, Method::PUT, "/v1/kv/settings/motd").body("hello node")).await;
    assert!(put.status < 300, "{}", put.text());
    let answer = get(&server, "/fn/noded/some/path?q=1").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = answer.json();
    assert!(seen["node"].as_str().unwrap().starts_with('v'), "{seen}");
    assert_eq!(seen["url"], "/some/path?q=1");
    assert_eq!(seen["motd"], "hello node");
    let followed = get(&server, "/fn/noded/realtime").await;
    assert_eq!(followed.status, 200, "{}", followed.text());
    assert_eq!(
        followed.json()["data"],
        "fresh from inside",
        "{}",
        followed.text()
    );
}

/// What the static server of an image says of how it runs (`/env`).
async fn env_of(server: &WokServer, function: &str) -> String {
    get(server, &format!("/fn/{function}/env")).await.text()
}

/// A bundle on a named base image: the image (deployed earlier as a
/// function) is the root, the bundle is at /app; the version stays on the
/// base version it was deployed on, and the base cannot be removed while a
/// live function runs on it.
#[tokio::test]
async fn a_bundle_runs_on_a_base_image_deployed_earlier_and_stays_on_its_version() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), "oci", &[]);
    deploy(&server, "base", &image, &["--runtime", "process"]);
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("old.txt"), "from the bundle").unwrap();
    // The image's entrypoint (its /srv/server), in /app, as the image's
    // user, with the image's env: the bundle's old.txt is there, the
    // image's new.txt (in /srv) is not.
    deploy(
        &server,
        "onbase",
        bundle.to_str().unwrap(),
        &["--runtime", "process", "--base", "base"],
    );
    let answer = get(&server, "/fn/onbase/env").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.text(),
        "greeting=image cwd=/app uid=1234 gid=1234 old=1 new=0\n"
    );
    let info = send(control(&server, Method::GET, "/v1/functions/onbase"))
        .await
        .json();
    assert_eq!(info["base"], "base@1", "{info}");

    // A new base version changes nothing for the deployed bundle.
    let other = make_image(dir.path(), "docker", &["--greeting", "v2"]);
    deploy(&server, "base", &other, &["--runtime", "process"]);
    assert!(
        env_of(&server, "onbase")
            .await
            .starts_with("greeting=image ")
    );
    // A deploy naming the base takes its live version; one naming a
    // version takes that one.
    deploy(
        &server,
        "onbase",
        bundle.to_str().unwrap(),
        &["--runtime", "process", "--base", "base"],
    );
    assert!(env_of(&server, "onbase").await.starts_with("greeting=v2 "));
    deploy(
        &server,
        "pinned",
        bundle.to_str().unwrap(),
        &["--runtime", "process", "--base", "base@1"],
    );
    assert!(
        env_of(&server, "pinned")
            .await
            .starts_with("greeting=image ")
    );

    // The base cannot go while live functions run on it.
    let removed = send(control(&server, Method::DELETE, "/v1/functions/base")).await;
    assert_eq!(removed.status, 409, "{}", removed.text());
    assert_eq!(removed.error_code(), "function_in_use");
    assert!(removed.text().contains("onbase") && removed.text().contains("pinned"));

    // A restart keeps every bundle on its base version.
    let server = server.restart();
    assert!(
        env_of(&server, "pinned")
            .await
            .starts_with("greeting=image ")
    );
    assert!(env_of(&server, "onbase").await.starts_with("greeting=v2 "));

    // What cannot be a base is refused, naming why.
    for (base, says) in [
        ("nosuch", "nosuch is not a live function"),
        ("base@9", "base@9 does not exist"),
        ("onbase", "not an image"),
        ("Bad Name", "is not a function name"),
    ] {
        let output = server.cli(&[
            "deploy",
            "refused",
            bundle.to_str().unwrap(),
            "--runtime",
            "process",
            "--base",
            base,
        ]);
        assert!(!output.success(), "{base}");
        assert!(
            output.stderr().contains(says),
            "{base}: {}",
            output.stderr()
        );
    }
}

/// No project takes every instance of the server: past its share, its
/// new instances wait (and time out), while another project's start.
#[tokio::test]
async fn a_project_runs_at_most_its_share_of_the_servers_instances() {
    let server = WokServer::start_with(
        WOK,
        &[
            "--max-process-instances",
            "4",
            "--max-process-instances-per-project",
            "2",
        ],
    );
    deploy_probe(
        &server,
        "slow",
        &["--max-instances", "5", "--timeout", "5s"],
    );
    server.cli_ok(&["project", "create", "other"]);
    let dir = probe_dir();
    server.cli_ok(&[
        "--project",
        "other",
        "deploy",
        "neighbour",
        &dir,
        "--runtime",
        "process",
        "--command",
        "python3 app.py",
    ]);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let url = format!("{}/fn/slow/sleep?ms=3000", server.url);
            tokio::spawn(async move { send(http().get(url)).await })
        })
        .collect();
    // While they run, the other project starts its instance.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let neighbour = get(&server, "/p/other/fn/neighbour/info").await;
    assert_eq!(neighbour.status, 200, "{}", neighbour.text());
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let served = answers.iter().filter(|answer| answer.status == 200).count();
    assert_eq!(served, 2, "two instances, then the project's share is used");
    let refused = answers.iter().find(|answer| answer.status != 200).unwrap();
    assert_eq!(
        refused.error_code(),
        "function_timeout",
        "{}",
        refused.text()
    );
    assert!(
        refused
            .text()
            .contains("the project runs its most process instances"),
        "{}",
        refused.text()
    );
    assert_eq!(running_instances(&server), 3);
}

#[tokio::test]
async fn a_native_function_sees_the_verified_caller_in_its_headers() {
    let server = server();
    deploy_probe(&server, "members", &["--require-auth", "any"]);
    let public = server
        .cli_ok(&["keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    let info = |token: Option<&str>| {
        let mut request = http()
            .get(format!("{}/fn/members/info", server.url))
            .header("x-wok-user-id", "forged")
            .header("x-wok-auth", "admin");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request)
    };
    assert_eq!(info(None).await.status, 401);
    let answer = info(Some(&public)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let caller = answer.json()["caller"].clone();
    assert_eq!(caller["x-wok-auth"], "public-key", "{caller}");
    assert!(caller["x-wok-key-id"].is_string(), "{caller}");
    assert!(caller.get("x-wok-user-id").is_none(), "{caller}");
}

/// A native function acts under its caller's rules by calling wok's API
/// with the caller's own token, and under its project's service access
/// with its own credentials: the choice is the function's, call by call.
#[tokio::test]
async fn a_native_function_acts_under_its_callers_rules_with_the_callers_token() {
    let server = server();
    let key = server
        .cli_ok(&["keys", "create", "--kind", "public"])
        .trim()
        .to_owned();
    let app = crate::rules::App {
        server: &server,
        key,
    };
    let rules = send(
        control(&server, reqwest::Method::PUT, "/v1/docs/notes/_access").json(&serde_json::json!(
            {"rules": {"read": "resource.data.owner == auth.uid",
                       "create": "request.data.owner == auth.uid"}}
        )),
    )
    .await;
    assert_eq!(rules.status, 200, "{}", rules.text());
    deploy_probe(&server, "reader", &[]);
    let (ann, ann_id) = app.user("ann@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let note = send(
        app.request(Some(&ann), reqwest::Method::POST, "/v1/docs/notes")
            .json(&serde_json::json!({"owner": ann_id})),
    )
    .await;
    assert_eq!(note.status, 201, "{}", note.text());
    let path = format!("/v1/docs/notes/{}", note.json()["id"].as_str().unwrap());
    let read = |token: &str, as_function: bool| {
        let mut url = format!(
            "{}/fn/reader/as-caller?path={}",
            server.url,
            urlencoding::encode(&path)
        );
        if as_function {
            url.push_str("&as=function");
        }
        let request = http().get(url).bearer_auth(token);
        async move {
            let answer = send(request).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.json()["status"].as_u64().unwrap()
        }
    };
    assert_eq!(read(&ann, false).await, 200);
    assert_eq!(read(&bob, false).await, 404, "Bob's rules hide Ann's note");
    assert_eq!(read(&bob, true).await, 200, "the function's own access");

    // With its own credentials, the function is the service side: it
    // mints a login ticket that the app trades for a session.
    let minted = send(http().get(format!(
        "{}/fn/reader/mint?email=carol%40example.com",
        server.url
    )))
    .await
    .json();
    assert_eq!(minted["status"], 200, "{minted}");
    let ticket: serde_json::Value = serde_json::from_str(minted["body"].as_str().unwrap()).unwrap();
    let session = send(
        http()
            .post(format!("{}/auth/v1/token?grant_type=ticket", server.url))
            .header("apikey", &app.key)
            .json(&serde_json::json!({"ticket": ticket["ticket"]})),
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(session.json()["user"]["email"], "carol@example.com");
}
