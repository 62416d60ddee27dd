//! Components built by other toolchains run unmodified: componentize-py and
//! componentize-js guests, built by `scripts/build-foreign-guests.sh`.
use crate::*;
use std::path::PathBuf;

fn foreign_guest(name: &str) -> String {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    BUILD.call_once(|| {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/build-foreign-guests.sh"))
            .status()
            .expect("running scripts/build-foreign-guests.sh");
        assert!(status.success(), "scripts/build-foreign-guests.sh failed");
    });
    let path = root
        .join("target/foreign-guests")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path.to_string_lossy().into_owned()
}

async fn check_hello_and_echo(
    server: &test_support::WokServer,
    language: &str,
    hello_text: &str,
    flags: &[&str],
) {
    let hello = format!("hello-{language}");
    let echo = format!("echo-{language}");
    deploy(server, &hello, &foreign_guest(&hello), flags);
    deploy(server, &echo, &foreign_guest(&echo), flags);
    for _ in 0..2 {
        let answer = get(server, &format!("/fn/{hello}")).await;
        assert_eq!((answer.status, answer.text().as_str()), (200, hello_text));
        let answer = send(
            http()
                .put(format!("{}/fn/{echo}/a/b?x=1", server.url))
                .header("x-custom", "value")
                .body(format!("payload for {language}")),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("x-echo-method"), "PUT");
        assert_eq!(answer.header("x-echo-path-with-query"), "/a/b?x=1");
        assert!(
            answer
                .header("x-echo-headers")
                .contains(r#"["x-custom","value"]"#),
            "{}",
            answer.header("x-echo-headers")
        );
        assert_eq!(answer.text(), format!("payload for {language}"));
    }
}

#[tokio::test]
async fn componentize_py_guests_run_with_fresh_instances_and_with_reuse() {
    let server = server();
    check_hello_and_echo(
        &server,
        "py",
        "hello from python\n",
        &["--memory", "256MiB"],
    )
    .await;
    deploy(
        &server,
        "reused-py",
        &foreign_guest("echo-py"),
        &["--memory", "256MiB", "--reuse"],
    );
    for round in 0..3 {
        let answer = send(
            http()
                .post(format!("{}/fn/reused-py", server.url))
                .body(format!("round {round}")),
        )
        .await;
        assert_eq!(answer.text(), format!("round {round}"));
    }
}

#[tokio::test]
async fn componentize_js_guests_run() {
    let server = server();
    check_hello_and_echo(&server, "js", "hello from javascript\n", &[]).await;
}
