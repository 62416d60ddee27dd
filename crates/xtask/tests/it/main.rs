//! The architecture checks over the real workspace, and the checks
//! themselves held against tables that a workspace breaks.
use std::collections::{BTreeMap, BTreeSet};
use xtask::{check_edges, check_guests, check_headers, check_processes, read_tables};

fn architecture() -> String {
    std::fs::read_to_string(xtask::workspace_root().join("ARCHITECTURE.md"))
        .expect("reading ARCHITECTURE.md")
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn dependency_edges_are_the_ones_the_table_allows() {
    let root = xtask::workspace_root();
    let tables = read_tables(&architecture()).unwrap();
    let dependencies = xtask::dependencies(&root).unwrap();
    assert_none(check_edges(&tables, &dependencies));
}

#[test]
fn every_crate_says_what_it_owns() {
    assert_none(check_headers(&xtask::workspace_root()));
}

#[test]
fn only_the_crates_the_table_names_start_processes() {
    let root = xtask::workspace_root();
    let tables = read_tables(&architecture()).unwrap();
    assert_none(check_processes(&root, &tables));
}

#[test]
fn every_test_guest_has_a_host_test() {
    assert_none(check_guests(&xtask::workspace_root()));
}

const TABLES: &str = "
## Crates and the edges allowed between them

| crate | layer | may depend on | starts processes |
|---|---|---|---|
| domain | vocabulary | — | no |
| store | contracts | domain | no |
| gateway | front | domain, store | no |

## Third-party crates only some may use

| crate | only |
|---|---|
| `rusqlite`, `wasmtime*` | store |
";

fn workspace(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    edges
        .iter()
        .map(|(name, uses)| {
            (
                name.to_string(),
                uses.iter().map(|name| name.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn the_edge_check_refuses_what_the_table_does_not_allow() {
    let tables = read_tables(TABLES).unwrap();
    let fine = workspace(&[
        ("domain", &[]),
        ("store", &["domain", "rusqlite"]),
        ("gateway", &["store", "domain"]),
    ]);
    assert_none(check_edges(&tables, &fine));

    let upward = workspace(&[
        ("domain", &["store"]),
        ("store", &["domain"]),
        ("gateway", &[]),
    ]);
    assert_eq!(
        check_edges(&tables, &upward),
        ["domain depends on store, an edge the crate table does not allow"]
    );
    let third_party = workspace(&[
        ("domain", &[]),
        ("store", &[]),
        ("gateway", &["wasmtime-wasi", "rusqlite"]),
    ]);
    assert_eq!(
        check_edges(&tables, &third_party),
        [
            "gateway depends on rusqlite; only store may",
            "gateway depends on wasmtime-wasi; only store may"
        ]
    );
    let unlisted = workspace(&[
        ("domain", &[]),
        ("store", &[]),
        ("gateway", &[]),
        ("stray", &[]),
    ]);
    assert_eq!(
        check_edges(&tables, &unlisted),
        ["crate stray is not in the crate table"]
    );
}

#[test]
fn the_table_itself_may_not_point_up_the_layers() {
    let upward = TABLES.replace(
        "| domain | vocabulary | — |",
        "| domain | vocabulary | gateway |",
    );
    let tables = read_tables(&upward).unwrap();
    let problems = check_edges(
        &tables,
        &workspace(&[("domain", &[]), ("store", &[]), ("gateway", &[])]),
    );
    assert_eq!(
        problems,
        ["the crate table lets domain (vocabulary) depend on gateway (front), a layer above it"]
    );
}
