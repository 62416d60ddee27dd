//! The document query language: any JSON is parsed without a panic, and a
//! query that parses is planned over some indexes and matched against
//! some documents without one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use store::docs::{Index, parse_index_fields, parse_query};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(query) = parse_query(&value) else {
        return;
    };
    let indexes: Vec<Index> = [
        json!(["city"]),
        json!(["city", "age"]),
        json!(["city", "-age"]),
        json!(["age", "name"]),
        json!(["tags"]),
    ]
    .into_iter()
    .enumerate()
    .map(|(at, fields)| Index {
        name: format!("i{at}"),
        fields: parse_index_fields(&fields).unwrap(),
    })
    .collect();
    for documents in [0, 10, 5000] {
        let _ = store::fuzzing::plan(&query, &indexes, documents);
    }
    for document in [
        json!({}),
        json!({"city": "Oslo", "age": 40, "name": "ada", "tags": ["a", "b"]}),
        json!({"city": null, "age": "forty", "nested": {"a": [1, {"b": 2}]}}),
        json!({"age": 1e308, "name": "", "tags": []}),
    ] {
        let _ = query.matches(document.as_object().unwrap());
    }
});
