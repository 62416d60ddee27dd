//! Builds every program under `programs/` for `wasm32-wasip2` and exports the
//! path of each component as a constant (`HELLO`, `ECHO`, `HELLO_P3`, ...).
//!
//! The guests are a separate workspace with their own lockfile, built into
//! `<target>/guests` so that debug and release builds of the host share them.

// Runs cargo to build the guests (ARCHITECTURE.md lets guests' build script).
#![allow(clippy::disallowed_methods)]
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let programs = manifest_dir.join("programs");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR has the usual shape")
        .join("guests");

    let members = members(&programs);
    println!(
        "cargo:rerun-if-changed={}",
        programs.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        programs.join("Cargo.lock").display()
    );
    for member in &members {
        println!("cargo:rerun-if-changed={}", programs.join(member).display());
    }
    // A new program directory, and the WIT files guests generate bindings from.
    println!("cargo:rerun-if-changed={}", programs.display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../../wit").display()
    );

    ensure_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip2")
        .arg("--manifest-path")
        .arg(programs.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&programs);
    // The host's flags and target settings must not leak into the guest build.
    for variable in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .expect("cargo can be started for the guest build");
    assert!(
        status.success(),
        "building the test guests for wasm32-wasip2 failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );

    let artifacts = target_dir.join("wasm32-wasip2").join("release");
    let mut generated = String::new();
    let mut all = String::from("pub const ALL: &[(&str, &str)] = &[\n");
    for member in &members {
        let file_stem = member.replace('-', "_");
        let mut path = artifacts.join(format!("{member}.wasm"));
        if !path.exists() {
            path = artifacts.join(format!("{file_stem}.wasm"));
        }
        assert!(
            path.exists(),
            "guest {member} was built but {} is missing",
            path.display()
        );
        let constant = file_stem.to_uppercase();
        writeln!(generated, "/// The `{member}` test guest component.").unwrap();
        writeln!(
            generated,
            "pub const {constant}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
        writeln!(all, "    ({member:?}, {constant}),").unwrap();
    }
    all.push_str("];\n");
    generated.push_str(&all);
    std::fs::write(out_dir.join("guests.rs"), generated).unwrap();
}

/// rust-toolchain.toml names the target, but rustup adds targets only when
/// it installs the toolchain: on a machine that already had the toolchain,
/// add the target here.
fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(installed) = installed else { return };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == "wasm32-wasip2")
    {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    assert!(
        status.is_ok_and(|status| status.success()),
        "`rustup target add wasm32-wasip2` failed"
    );
}

fn members(programs: &Path) -> Vec<String> {
    let mut members: Vec<String> = std::fs::read_dir(programs)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    members.sort();
    members
}
