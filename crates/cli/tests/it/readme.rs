//! The README's first steps, run as written: the shell block under "A
//! first function", line by line, on a fresh data directory (only the
//! port is the test's, and `cargo install` is skipped: the test suite
//! built that binary already).
use crate::*;

/// The commands of the first shell block after `heading`, comments off.
fn commands_under(readme: &str, heading: &str) -> Vec<String> {
    let section = &readme[readme.find(heading).expect("the heading is in the README")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a shell block");
    block
        .lines()
        .map(|line| line.split(" #").next().unwrap().trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn the_first_steps_of_the_readme_work_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = commands_under(&readme, "## A first function");
    assert!(
        commands[0].starts_with("cargo install") && commands[0].contains("crates/cli"),
        "the first step installs wok: {commands:?}"
    );
    let data = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(WOK).parent().unwrap().to_owned();
    let mut script = String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n");
    for command in &commands[1..] {
        if command == "wok up &" {
            script.push_str("wok up >\"$WOK_DATA.log\" 2>&1 &\n");
            // Ready when it answers.
            script.push_str(
                "for _ in $(seq 1 600); do [ -f \"$WOK_DATA/endpoint\" ] && curl -sf \"$(cat \"$WOK_DATA/endpoint\")/healthz\" >/dev/null && break; sleep 0.1; done\n",
            );
            continue;
        }
        let command = command.replace(
            "http://127.0.0.1:8080",
            "$(tr -d '\\n' < \"$WOK_DATA/endpoint\")",
        );
        script.push_str(&format!(
            "echo \"+ {}\"\n{command}\n",
            command.replace('"', "'")
        ));
    }
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("WOK_DATA", data.path().join("wok"))
        .env("WOK_LISTEN", "127.0.0.1:0")
        .env_remove("WOK_SERVER")
        .env_remove("WOK_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("hello from wok (/world)"), "{stdout}");
    assert!(stdout.contains("deployed hello version 1"), "{stdout}");
    let usage_at = stdout.find("+ wok usage").unwrap();
    assert!(stdout[usage_at..].contains("GB-seconds"), "{stdout}");
}
