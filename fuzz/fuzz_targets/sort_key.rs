//! Sort keys: the byte encoding index entries and cursors share. For any
//! two JSON values: equal values (numbers as numbers) have equal keys, and
//! no key is a prefix of another's (a cursor relies on it); a descending
//! key orders the other way round; numbers and strings order as the
//! README says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::cmp::Ordering;

fn split(data: &[u8]) -> Option<(Value, Value)> {
    let at = data.iter().position(|byte| *byte == 0)?;
    Some((
        serde_json::from_slice(&data[..at]).ok()?,
        serde_json::from_slice(&data[at + 1..]).ok()?,
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some((left, right)) = split(data) else {
        return;
    };
    let key = |value: &Value, descending| store::fuzzing::sort_key(Some(value), descending);
    let (a, b) = (key(&left, false), key(&right, false));
    if a != b {
        assert!(!a.starts_with(&b) && !b.starts_with(&a), "{left} / {right}: a key is a prefix of the other");
        // Descending keys order the other way.
        let (da, db) = (key(&left, true), key(&right, true));
        assert_eq!(a.cmp(&b), db.cmp(&da), "{left} / {right}: descending order");
    }
    match (&left, &right) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if let Some(order) = x.partial_cmp(&y) {
                if order == Ordering::Equal {
                    assert_eq!(a, b, "{x} and {y} are equal numbers");
                } else {
                    assert_eq!(a.cmp(&b), order, "{x} / {y}");
                }
            }
        }
        (Value::String(x), Value::String(y)) => {
            assert_eq!(a.cmp(&b), x.as_bytes().cmp(y.as_bytes()), "{x:?} / {y:?}");
        }
        _ => {}
    }
    // Missing sorts first of all.
    let missing = store::fuzzing::sort_key(None, false);
    assert!(missing < a, "missing before {left}");
});
