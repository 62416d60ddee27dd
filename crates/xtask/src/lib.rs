//! The architecture, checked: the allowed dependency edges and third-party
//! crates read from the tables in ARCHITECTURE.md and held against `cargo
//! metadata`, the `//!` header of every crate, who may start processes,
//! and a host test for every test guest.
//!
//! Dev-only layer: nothing in the platform depends on this crate, and
//! running its tests builds neither `wok` nor a guest.
//!
//! Each check returns the problems it found, one sentence each; the tests
//! in `tests/it` fail on any.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// One row of the crate table: a crate, its layer and what it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateRow {
    pub name: String,
    pub layer: String,
    pub may_depend_on: BTreeSet<String>,
    pub processes: Processes,
}

/// Where a crate may start processes (`std::process::Command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processes {
    No,
    /// Only in its tests, benches and build script.
    InTests,
    Yes,
}

/// The tables of ARCHITECTURE.md that the checks read.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Layers, bottom up.
    pub layers: Vec<String>,
    pub crates: BTreeMap<String, CrateRow>,
    /// Third-party crate (a trailing `*` matches any suffix) -> the only
    /// crates that may depend on it.
    pub third_party: Vec<(String, BTreeSet<String>)>,
}

/// The rows of the first markdown table after `heading`, cells trimmed,
/// the header and separator rows left out.
fn table_after(text: &str, heading: &str) -> Result<Vec<Vec<String>>, String> {
    let start = text
        .lines()
        .position(|line| line.trim() == heading)
        .ok_or_else(|| format!("ARCHITECTURE.md has no heading {heading:?}"))?;
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(start + 1)
        .skip_while(|line| !line.trim_start().starts_with('|'))
        .take_while(|line| line.trim_start().starts_with('|'))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    if rows.len() < 2 {
        return Err(format!("the table after {heading:?} is missing"));
    }
    Ok(rows.into_iter().skip(2).collect())
}

/// A comma-separated cell as names; `—` or `-` for none.
fn names(cell: &str) -> BTreeSet<String> {
    cell.split(',')
        .map(|name| name.trim().trim_matches('`').to_owned())
        .filter(|name| !name.is_empty() && name != "—" && name != "-")
        .collect()
}

/// Reads the layer, crate and third-party tables of ARCHITECTURE.md.
pub fn read_tables(architecture: &str) -> Result<Tables, String> {
    let mut layers = Vec::new();
    let mut crates = BTreeMap::new();
    for row in table_after(architecture, "## Crates and the edges allowed between them")? {
        let [name, layer, may_depend_on, processes] = row.as_slice() else {
            return Err(format!(
                "a crate row has {} cells, not 4: {row:?}",
                row.len()
            ));
        };
        let processes = match processes.as_str() {
            "no" => Processes::No,
            "in tests" => Processes::InTests,
            "yes" => Processes::Yes,
            other => {
                return Err(format!(
                    "crate {name}: processes {other:?} is not no, in tests or yes"
                ));
            }
        };
        if !layers.contains(layer) {
            layers.push(layer.clone());
        }
        crates.insert(
            name.clone(),
            CrateRow {
                name: name.clone(),
                layer: layer.clone(),
                may_depend_on: names(may_depend_on),
                processes,
            },
        );
    }
    let mut third_party = Vec::new();
    for row in table_after(architecture, "## Third-party crates only some may use")? {
        let [dependency, only] = row.as_slice() else {
            return Err(format!(
                "a third-party row has {} cells, not 2: {row:?}",
                row.len()
            ));
        };
        for dependency in names(dependency) {
            third_party.push((dependency, names(only)));
        }
    }
    Ok(Tables {
        layers,
        crates,
        third_party,
    })
}

/// The workspace's crates and their normal (not dev, not build)
/// dependencies, from `cargo metadata`.
pub fn dependencies(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    #[allow(clippy::disallowed_methods)] // xtask may start processes (ARCHITECTURE.md)
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .map_err(|error| format!("running cargo metadata: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("cargo metadata printed no JSON: {error}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata listed no packages")?;
    Ok(packages
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dependency| dependency["kind"].is_null())
                .filter_map(|dependency| dependency["name"].as_str().map(str::to_owned))
                .collect();
            (
                package["name"].as_str().unwrap_or_default().to_owned(),
                dependencies,
            )
        })
        .collect())
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Every workspace crate is in the table; every internal edge is allowed by
/// it and points down the layers (or within one); every restricted
/// third-party crate is used only where the table says.
pub fn check_edges(
    tables: &Tables,
    dependencies: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let rank = |layer: &str| tables.layers.iter().position(|known| known == layer);
    for name in dependencies.keys() {
        if !tables.crates.contains_key(name) {
            problems.push(format!("crate {name} is not in the crate table"));
        }
    }
    for row in tables.crates.values() {
        if !dependencies.contains_key(&row.name) {
            problems.push(format!(
                "the crate table names {}, which does not exist",
                row.name
            ));
        }
        for allowed in &row.may_depend_on {
            match tables.crates.get(allowed) {
                None => problems.push(format!(
                    "the crate table lets {} depend on {allowed}, which it does not list",
                    row.name
                )),
                Some(target) if rank(&target.layer) > rank(&row.layer) => problems.push(format!(
                    "the crate table lets {} ({}) depend on {allowed} ({}), a layer above it",
                    row.name, row.layer, target.layer
                )),
                Some(_) => {}
            }
        }
    }
    for (name, uses) in dependencies {
        let Some(row) = tables.crates.get(name) else {
            continue;
        };
        for dependency in uses {
            if tables.crates.contains_key(dependency) && !row.may_depend_on.contains(dependency) {
                problems.push(format!(
                    "{name} depends on {dependency}, an edge the crate table does not allow"
                ));
            }
            for (pattern, only) in &tables.third_party {
                if matches(pattern, dependency) && !only.contains(name) {
                    problems.push(format!(
                        "{name} depends on {dependency}; only {} may",
                        only.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    problems
}

/// Every crate's root file starts with a `//!` comment.
pub fn check_headers(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for dir in crate_dirs(root) {
        let lib = dir.join("src/lib.rs");
        let file = if lib.exists() {
            lib
        } else {
            dir.join("src/main.rs")
        };
        match std::fs::read_to_string(&file) {
            Ok(text) if text.starts_with("//!") => {}
            Ok(_) => problems.push(format!(
                "{} does not start with a //! comment saying what the crate owns",
                file.display()
            )),
            Err(error) => problems.push(format!("reading {}: {error}", file.display())),
        }
    }
    problems
}

fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

/// The Rust files of a directory tree, leaving out nested projects of
/// their own (test guests) and build output.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let nested_project = path.join("Cargo.toml").exists();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if !nested_project && name != "target" {
                rust_files(&path, files);
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// Processes are started (clippy's `disallowed-methods` refuses
/// `Command::new` everywhere, see `clippy.toml`) only by the crates whose
/// row allows it: an `allow(clippy::disallowed_methods)` elsewhere is a
/// problem.
pub fn check_processes(root: &Path, tables: &Tables) -> Vec<String> {
    let mut problems = Vec::new();
    for dir in crate_dirs(root) {
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_owned();
        let processes = tables
            .crates
            .get(&name)
            .map_or(Processes::No, |row| row.processes);
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if !text.contains("allow(clippy::disallowed_methods)") {
                continue;
            }
            let relative = file.strip_prefix(&dir).unwrap_or(&file);
            let in_tests = relative.starts_with("tests")
                || relative.starts_with("benches")
                || relative == Path::new("build.rs");
            let allowed = match processes {
                Processes::Yes => true,
                Processes::InTests => in_tests,
                Processes::No => false,
            };
            if !allowed {
                problems.push(format!(
                    "{} starts processes, which the crate table does not allow {name}",
                    file.display()
                ));
            }
        }
    }
    problems
}

/// Every test guest (`crates/guests/programs/NAME`) is used by a host test
/// (`guests::NAME` in some test source of the workspace).
pub fn check_guests(root: &Path) -> Vec<String> {
    let mut sources = String::new();
    for dir in crate_dirs(root) {
        let mut files = Vec::new();
        rust_files(&dir.join("tests"), &mut files);
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            sources.push_str(&std::fs::read_to_string(file).unwrap_or_default());
        }
    }
    let mut problems = Vec::new();
    let programs = root.join("crates/guests/programs");
    let mut names: Vec<String> = std::fs::read_dir(&programs)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("Cargo.toml").exists())
        .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
        .collect();
    names.sort();
    for name in names {
        let constant = format!("guests::{}", name.replace('-', "_").to_uppercase());
        if !sources.contains(&constant) {
            problems.push(format!(
                "test guest {name} has no host test ({constant} is used nowhere)"
            ));
        }
    }
    problems
}
