//! Benchmarks (dev only), driven by the scripts under `bench/`:
//!
//! - `hyper-hello`, the raw-hyper baseline that `bench/run.sh` compares
//!   wok against;
//! - `benches/latency.rs`, the in-process request latency of the wasm
//!   runtime, and `benches/raw_wasmtime.rs`, wasmtime alone doing what one
//!   request takes (the floor under wok's function path). The latter
//!   names wasmtime, as a dev-dependency, because it measures wasmtime
//!   itself: the one place besides `runtime-wasm` that does;
//! - `events-bench` (`bench/events.sh`: queues, cron punctuality, live
//!   queries) and `abuse-bench` (`bench/abuse.sh`: each exhaustion case
//!   beside a healthy client, on a fresh server).
