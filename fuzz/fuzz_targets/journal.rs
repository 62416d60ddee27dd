//! The key-value journal's reader: any bytes are read without a panic,
//! and reading stops or skips as it says (never beyond the bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_records, damaged) = store::fuzzing::journal_scan(data);
    assert!(damaged.iter().all(|at| *at < data.len()));
    assert!(damaged.windows(2).all(|pair| pair[0] < pair[1]));
});
