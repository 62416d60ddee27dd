//! The layering in ARCHITECTURE.md, checked: forbidden dependency edges,
//! crate-level docs, and a host test for every test guest.
use std::collections::HashMap;
use std::path::PathBuf;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Internal crate name -> its normal (non-dev) dependencies, all of them.
fn dependencies() -> HashMap<String, Vec<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dependency| dependency["kind"].is_null())
                .map(|dependency| dependency["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), dependencies)
        })
        .collect()
}

#[test]
fn layers_depend_only_downwards() {
    let dependencies = dependencies();
    let internal: Vec<&String> = dependencies.keys().collect();
    let uses =
        |krate: &str, dependency: &str| dependencies[krate].iter().any(|name| name == dependency);
    let internal_uses = |krate: &str| -> Vec<String> {
        dependencies[krate]
            .iter()
            .filter(|name| internal.contains(name))
            .cloned()
            .collect()
    };

    // Only runtime-wasm names wasmtime.
    for (krate, deps) in &dependencies {
        if krate != "runtime-wasm" {
            assert!(
                !deps.iter().any(|d| d.starts_with("wasmtime")),
                "{krate} depends on wasmtime"
            );
        }
    }
    // The vocabulary and the wire types stand alone.
    assert_eq!(internal_uses("domain"), Vec::<String>::new());
    assert_eq!(internal_uses("api-types"), Vec::<String>::new());
    // Engines know only the vocabulary.
    for engine in ["store", "blob"] {
        assert_eq!(internal_uses(engine), vec!["domain".to_owned()], "{engine}");
    }
    // The boundary knows no runtime and no front.
    assert_eq!(internal_uses("invoke"), vec!["domain".to_owned()]);
    // The gateway reaches runtimes only through invoke.
    assert!(!uses("gateway", "runtime-wasm"));
    assert!(!uses("functions", "runtime-wasm") && !uses("functions", "gateway"));
    assert!(!uses("metering", "gateway") && !uses("metering", "runtime-wasm"));
    // auth is a service over the store: no HTTP, no runtime.
    assert_eq!(
        internal_uses("auth"),
        vec!["domain".to_owned(), "store".to_owned()]
    );
    // objects is a service over the engines: no HTTP, no S3 wire format.
    assert_eq!(
        internal_uses("objects"),
        vec!["blob".to_owned(), "domain".to_owned(), "store".to_owned()]
    );
    for wire in ["axum", "hyper", "s3s", "http"] {
        assert!(!uses("objects", wire), "objects depends on {wire}");
    }
    // events is a service over the event log: no HTTP, no runtime, no
    // functions (how an event reaches one is the front's `Deliver`).
    assert_eq!(
        internal_uses("events"),
        vec!["domain".to_owned(), "store".to_owned()]
    );
    for wire in ["axum", "hyper", "http"] {
        assert!(!uses("events", wire), "events depends on {wire}");
    }
    // triggers reaches functions through the registry and invoke only.
    assert!(!uses("triggers", "runtime-wasm") && !uses("triggers", "gateway"));
    // Only the gateway speaks S3.
    for (krate, deps) in &dependencies {
        if krate != "gateway" {
            assert!(!deps.iter().any(|d| d == "s3s"), "{krate} depends on s3s");
        }
    }
    // Dev-only crates are never normal dependencies.
    for (krate, deps) in &dependencies {
        for dev_only in ["test-support", "guests"] {
            assert!(
                !deps.iter().any(|d| d == dev_only),
                "{krate} depends on {dev_only}"
            );
        }
    }
}

#[test]
fn every_crate_says_what_it_owns() {
    for entry in std::fs::read_dir(workspace_root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let lib = dir.join("src/lib.rs");
        let root = if lib.exists() {
            lib
        } else {
            dir.join("src/main.rs")
        };
        let text = std::fs::read_to_string(&root).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not start with a //! comment",
            root.display()
        );
    }
}

#[test]
fn every_test_guest_has_a_host_test() {
    let tests_dir = workspace_root().join("crates/cli/tests/it");
    let mut sources = String::new();
    for entry in std::fs::read_dir(&tests_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "architecture.rs" {
            sources.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    for (name, _) in guests::ALL {
        let constant = format!("guests::{}", name.replace('-', "_").to_uppercase());
        assert!(
            sources.contains(&constant),
            "test guest {name} has no host test ({constant} is unused)"
        );
    }
}
