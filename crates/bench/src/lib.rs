//! Benchmarks (dev only): `hyper-hello`, the raw-hyper baseline that
//! `bench/run.sh` compares wok against, and `benches/latency.rs`, the
//! in-process request latency of the wasm runtime.
