//! The JSON query language, shared by REST clients and guests:
//!
//! ```json
//! {"where": {"and": [["city", "==", "Oslo"], {"field": "age", "op": ">=", "value": 18}]},
//!  "order_by": ["-age", "name"], "limit": 20, "cursor": "..."}
//! ```
//!
//! A term is `[field, op, value]` or `{"field", "op", "value"}`; `and` and
//! `or` take lists of filters. Ops: `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`,
//! `not-in`, `array-contains`, `exists` (value `true`/`false`), `prefix`.
//! An `order_by` entry is a field path, with `-` in front for descending.
use super::{
    CompareOp, DEFAULT_QUERY_LIMIT, FieldPath, Filter, IndexField, MAX_FILTER_TERMS,
    MAX_INDEX_FIELDS, MAX_QUERY_LIMIT, OrderBy, Query,
};
use crate::StoreError;
use serde_json::{Map, Value};

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::InvalidQuery(message.into())
}

/// Reads a query; unknown keys are refused so that a typo fails loudly.
pub fn parse_query(value: &Value) -> Result<Query, StoreError> {
    let Value::Object(object) = value else {
        return Err(invalid("a query is a JSON object"));
    };
    let mut query = Query {
        limit: DEFAULT_QUERY_LIMIT,
        ..Query::default()
    };
    for (key, value) in object {
        match key.as_str() {
            "where" => {
                let mut budget = MAX_FILTER_TERMS;
                query.filter = Some(parse_filter(value, &mut budget)?);
            }
            "order_by" => {
                let Value::Array(items) = value else {
                    return Err(invalid(
                        "\"order_by\" is a list of field paths, such as [\"-age\", \"name\"]",
                    ));
                };
                if items.len() > MAX_INDEX_FIELDS {
                    return Err(invalid(format!(
                        "\"order_by\" names {} fields; at most {MAX_INDEX_FIELDS} are allowed",
                        items.len()
                    )));
                }
                query.order_by = items.iter().map(parse_order).collect::<Result<_, _>>()?;
            }
            "limit" => {
                query.limit = value
                    .as_u64()
                    .filter(|limit| (1..=u64::from(MAX_QUERY_LIMIT)).contains(limit))
                    .ok_or_else(|| {
                        invalid(format!(
                            "\"limit\" must be an integer from 1 to {MAX_QUERY_LIMIT}"
                        ))
                    })? as u32;
            }
            "cursor" => match value {
                Value::Null => {}
                Value::String(cursor) => query.cursor = Some(cursor.clone()),
                _ => return Err(invalid("\"cursor\" is the string a previous page returned")),
            },
            other => {
                return Err(invalid(format!(
                    "unknown query key {other:?}; expected where, order_by, limit or cursor"
                )));
            }
        }
    }
    Ok(query)
}

fn parse_order(item: &Value) -> Result<OrderBy, StoreError> {
    let Value::String(text) = item else {
        return Err(invalid(format!(
            "{item} is not a field path; write \"age\", or \"-age\" for descending"
        )));
    };
    let (descending, path) = match text.strip_prefix('-') {
        Some(path) => (true, path),
        None => (false, text.as_str()),
    };
    Ok(OrderBy {
        field: FieldPath::parse(path)?,
        descending,
    })
}

/// Reads an index's fields: a list of field paths, `-` in front for
/// descending.
pub fn parse_index_fields(value: &Value) -> Result<Vec<IndexField>, StoreError> {
    let items = value
        .as_array()
        .filter(|items| (1..=MAX_INDEX_FIELDS).contains(&items.len()))
        .ok_or_else(|| {
            invalid(format!(
                "index fields are a list of 1 to {MAX_INDEX_FIELDS} field paths, such as [\"city\", \"-age\"]"
            ))
        })?;
    let fields: Vec<IndexField> = items.iter().map(parse_order).collect::<Result<_, _>>()?;
    for (at, field) in fields.iter().enumerate() {
        if fields[..at]
            .iter()
            .any(|before| before.field == field.field)
        {
            return Err(invalid(format!(
                "index field {:?} is named twice",
                field.field.to_string()
            )));
        }
    }
    Ok(fields)
}

fn parse_filter(value: &Value, budget: &mut usize) -> Result<Filter, StoreError> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| invalid(format!("the filter has more than {MAX_FILTER_TERMS} terms")))?;
    match value {
        Value::Array(parts) => match parts.as_slice() {
            [Value::String(field), Value::String(op), operand] => term(field, op, operand, budget),
            _ => Err(invalid(format!(
                "{value} is not a term; write [\"field\", \"op\", value]"
            ))),
        },
        Value::Object(object) => {
            if let Some(children) = single(object, "and")? {
                return Ok(Filter::And(list(children, "and", budget)?));
            }
            if let Some(children) = single(object, "or")? {
                return Ok(Filter::Or(list(children, "or", budget)?));
            }
            let known = ["field", "op", "value"];
            if let Some(other) = object.keys().find(|key| !known.contains(&key.as_str())) {
                return Err(invalid(format!(
                    "unknown filter key {other:?}; a filter is {{\"and\": [...]}}, {{\"or\": [...]}} or {{\"field\", \"op\", \"value\"}}"
                )));
            }
            let field = object.get("field").and_then(Value::as_str);
            let op = object.get("op").and_then(Value::as_str);
            match (field, op, object.get("value")) {
                (Some(field), Some(op), Some(operand)) => term(field, op, operand, budget),
                _ => Err(invalid(format!(
                    "{value} needs \"field\" and \"op\" as strings, and \"value\""
                ))),
            }
        }
        _ => Err(invalid(format!(
            "{value} is not a filter; write [\"field\", \"op\", value], {{\"and\": [...]}} or {{\"or\": [...]}}"
        ))),
    }
}

/// `object` as `{"name": children}`, if that is its shape.
fn single<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Value>, StoreError> {
    match object.get(name) {
        None => Ok(None),
        Some(_) if object.len() > 1 => Err(invalid(format!(
            "{{\"{name}\": [...]}} takes no other keys"
        ))),
        Some(children) => Ok(Some(children)),
    }
}

fn list(children: &Value, name: &str, budget: &mut usize) -> Result<Vec<Filter>, StoreError> {
    match children {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| parse_filter(item, budget))
            .collect(),
        _ => Err(invalid(format!(
            "\"{name}\" takes a non-empty list of filters"
        ))),
    }
}

fn term(field: &str, op: &str, operand: &Value, budget: &mut usize) -> Result<Filter, StoreError> {
    let field = FieldPath::parse(field)?;
    let compare = |op| {
        Ok(Filter::Compare {
            field: field.clone(),
            op,
            value: operand.clone(),
        })
    };
    match op {
        "==" => compare(CompareOp::Eq),
        "!=" => compare(CompareOp::Ne),
        "<" | "<=" | ">" | ">=" => {
            if matches!(operand, Value::Array(_) | Value::Object(_)) {
                return Err(invalid(format!(
                    "{field} {op} needs a number, string, boolean or null, not {operand}"
                )));
            }
            compare(match op {
                "<" => CompareOp::Lt,
                "<=" => CompareOp::Le,
                ">" => CompareOp::Gt,
                _ => CompareOp::Ge,
            })
        }
        "in" | "not-in" => {
            let Value::Array(values) = operand else {
                return Err(invalid(format!(
                    "{field} {op} needs a list of values, not {operand}"
                )));
            };
            *budget = budget.checked_sub(values.len()).ok_or_else(|| {
                invalid(format!("the filter has more than {MAX_FILTER_TERMS} terms"))
            })?;
            Ok(Filter::In {
                field,
                values: values.clone(),
                negated: op == "not-in",
            })
        }
        "array-contains" => Ok(Filter::ArrayContains {
            field,
            value: operand.clone(),
        }),
        "exists" => match operand {
            Value::Bool(exists) => Ok(Filter::Exists {
                field,
                exists: *exists,
            }),
            _ => Err(invalid(format!(
                "{field} exists needs true or false, not {operand}"
            ))),
        },
        "prefix" => match operand {
            Value::String(prefix) => Ok(Filter::Prefix {
                field,
                prefix: prefix.clone(),
            }),
            _ => Err(invalid(format!(
                "{field} prefix needs a string, not {operand}"
            ))),
        },
        other => Err(invalid(format!(
            "unknown operator {other:?}; expected one of ==, !=, <, <=, >, >=, in, not-in, array-contains, exists, prefix"
        ))),
    }
}
