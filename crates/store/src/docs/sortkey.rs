//! An order-preserving byte encoding of JSON values: comparing two
//! encodings byte by byte gives the documents' sort order, so index
//! entries are plain byte keys that any backend can range-scan.
//!
//! Order across types: missing < null < false < true < numbers < strings <
//! arrays < objects. Numbers compare as f64, strings by UTF-8 bytes, arrays
//! element by element (a shorter prefix first), objects entry by entry in
//! key order. Every encoding is prefix-free (none is a prefix of another),
//! which is what makes concatenated keys and inverted (descending) parts
//! compare correctly.
use serde_json::Value;

pub const TAG_MISSING: u8 = 0x01;
pub const TAG_NULL: u8 = 0x02;
pub const TAG_FALSE: u8 = 0x03;
pub const TAG_TRUE: u8 = 0x04;
pub const TAG_NUMBER: u8 = 0x05;
pub const TAG_STRING: u8 = 0x06;
pub const TAG_ARRAY: u8 = 0x07;
pub const TAG_OBJECT: u8 = 0x08;
/// Ends an array or object: below every tag.
const END: u8 = 0x00;

/// The type class a range comparison stays within: `age > 5` matches
/// numbers only, `name >= "m"` strings only. Booleans are one class.
pub fn type_class(value: &Value) -> u8 {
    match value {
        Value::Null => TAG_NULL,
        Value::Bool(_) => TAG_FALSE,
        Value::Number(_) => TAG_NUMBER,
        Value::String(_) => TAG_STRING,
        Value::Array(_) => TAG_ARRAY,
        Value::Object(_) => TAG_OBJECT,
    }
}

/// Appends the encoding of `value` (`None`: the field is missing).
pub fn encode(value: Option<&Value>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.push(TAG_MISSING);
        return;
    };
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Number(number) => {
            out.push(TAG_NUMBER);
            out.extend_from_slice(&number_bits(number.as_f64().unwrap_or(0.0)));
        }
        Value::String(string) => {
            out.push(TAG_STRING);
            encode_str(string, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode(Some(item), out);
            }
            out.push(END);
        }
        Value::Object(entries) => {
            out.push(TAG_OBJECT);
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            for key in keys {
                encode_str(key, out);
                encode(entries.get(key), out);
            }
            out.push(END);
        }
    }
}

/// The string's bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01: a
/// shorter string sorts before a longer one that starts with it.
fn encode_str(string: &str, out: &mut Vec<u8>) {
    encode_str_open(string, out);
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The string's bytes, escaped, without the terminator: every encoding of
/// a string that starts with `string` starts with these bytes.
pub fn encode_str_open(string: &str, out: &mut Vec<u8>) {
    for &byte in string.as_bytes() {
        out.push(byte);
        if byte == 0x00 {
            out.push(0xFF);
        }
    }
}

/// f64 bits rearranged so that unsigned byte order is numeric order.
fn number_bits(number: f64) -> [u8; 8] {
    // -0.0 and 0.0 are equal numbers and must encode the same.
    let number = if number == 0.0 { 0.0 } else { number };
    let bits = number.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Appends `value`'s encoding, inverted when the part sorts descending.
pub fn encode_part(value: Option<&Value>, descending: bool, out: &mut Vec<u8>) {
    let start = out.len();
    encode(value, out);
    if descending {
        for byte in &mut out[start..] {
            *byte = !*byte;
        }
    }
}

/// The encoding of one value, on its own.
pub fn encoded(value: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

/// The smallest byte string above every string that starts with `prefix`;
/// `None` when there is none (all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodings_sort_like_values() {
        let ascending = [
            None,
            Some(json!(null)),
            Some(json!(false)),
            Some(json!(true)),
            Some(json!(-1e300)),
            Some(json!(-2.5)),
            Some(json!(-1)),
            Some(json!(0)),
            Some(json!(0.5)),
            Some(json!(1)),
            Some(json!(2)),
            Some(json!(1e300)),
            Some(json!("")),
            Some(json!("a")),
            Some(json!("a\u{0}")),
            Some(json!("a\u{0}b")),
            Some(json!("ab")),
            Some(json!("b")),
            Some(json!([])),
            Some(json!([1])),
            Some(json!([1, 2])),
            Some(json!([2])),
            Some(json!({})),
            Some(json!({"a": 1})),
            Some(json!({"a": 1, "b": 0})),
            Some(json!({"b": 0})),
        ];
        for pair in ascending.windows(2) {
            let (low, high) = (encoded(pair[0].as_ref()), encoded(pair[1].as_ref()));
            assert!(low < high, "{:?} should sort before {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn equal_numbers_encode_the_same() {
        assert_eq!(encoded(Some(&json!(1))), encoded(Some(&json!(1.0))));
        assert_eq!(encoded(Some(&json!(0))), encoded(Some(&json!(-0.0))));
    }

    #[test]
    fn inverted_parts_sort_descending_even_when_followed_by_more_parts() {
        let key = |first: &str, second: i64| {
            let mut out = Vec::new();
            encode_part(Some(&json!(first)), true, &mut out);
            encode_part(Some(&json!(second)), false, &mut out);
            out
        };
        assert!(key("b", 9) < key("a", 1));
        assert!(key("ab", 9) < key("a", 1));
        assert!(key("a", 1) < key("a", 2));
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
