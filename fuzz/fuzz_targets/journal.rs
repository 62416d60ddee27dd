//! The key-value journal's reader: any bytes are read without a panic,
//! and reading stops where it says (within the bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_records, stopped_at) = store_sqlite::fuzzing::journal_scan(data);
    assert!(stopped_at.is_none_or(|at| at < data.len()));
});
