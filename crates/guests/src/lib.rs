//! Test guests: real Rust programs under `programs/`, compiled for
//! `wasm32-wasip2` by `build.rs`. Each constant is the path of one component.
//!
//! Dev-only layer: nothing in the platform depends on this crate.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Reads a guest component's bytes.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("reading guest {path}: {error}"))
}
