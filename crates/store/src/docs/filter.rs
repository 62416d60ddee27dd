//! Evaluates a filter on one document. Comparisons go through the sort-key
//! encoding, so a filter checked here and a range read from an index agree.
use super::sortkey::{encode_str_open, encoded, type_class};
use super::{CompareOp, Filter};
use serde_json::{Map, Value};

pub fn matches(filter: &Filter, data: &Map<String, Value>) -> bool {
    match filter {
        Filter::And(terms) => terms.iter().all(|term| matches(term, data)),
        Filter::Or(terms) => terms.iter().any(|term| matches(term, data)),
        Filter::Compare { field, op, value } => field
            .get(data)
            .is_some_and(|found| compare(found, *op, value)),
        Filter::In {
            field,
            values,
            negated,
        } => field.get(data).is_some_and(|found| {
            let key = encoded(Some(found));
            values.iter().any(|value| encoded(Some(value)) == key) != *negated
        }),
        Filter::ArrayContains { field, value } => {
            let wanted = encoded(Some(value));
            field
                .get(data)
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|item| encoded(Some(item)) == wanted))
        }
        Filter::Exists { field, exists } => field.get(data).is_some() == *exists,
        Filter::Prefix { field, prefix } => {
            field
                .get(data)
                .and_then(Value::as_str)
                .is_some_and(|string| {
                    // Byte prefix of the escaped form equals string prefix.
                    let (mut have, mut want) = (Vec::new(), Vec::new());
                    encode_str_open(string, &mut have);
                    encode_str_open(prefix, &mut want);
                    have.starts_with(&want)
                })
        }
    }
}

fn compare(found: &Value, op: CompareOp, value: &Value) -> bool {
    let ordering = encoded(Some(found)).cmp(&encoded(Some(value)));
    match op {
        CompareOp::Eq => ordering.is_eq(),
        CompareOp::Ne => ordering.is_ne(),
        _ if type_class(found) != type_class(value) => false,
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Le => ordering.is_le(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Ge => ordering.is_ge(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::FieldPath;
    use serde_json::json;

    fn compare_term(field: &str, op: CompareOp, value: Value) -> Filter {
        Filter::Compare {
            field: FieldPath::parse(field).unwrap(),
            op,
            value,
        }
    }

    fn data(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn range_comparisons_stay_within_the_operand_type() {
        let doc = data(json!({"age": "40", "n": 3}));
        assert!(!matches(
            &compare_term("age", CompareOp::Gt, json!(18)),
            &doc
        ));
        assert!(matches(&compare_term("n", CompareOp::Gt, json!(2.5)), &doc));
        assert!(!matches(
            &compare_term("n", CompareOp::Lt, json!("z")),
            &doc
        ));
    }

    #[test]
    fn comparisons_need_the_field_but_exists_false_asks_for_its_absence() {
        let doc = data(json!({"a": {"b": 1}}));
        assert!(!matches(&compare_term("x", CompareOp::Ne, json!(1)), &doc));
        assert!(matches(
            &compare_term("a.b", CompareOp::Eq, json!(1.0)),
            &doc
        ));
        let missing = Filter::Exists {
            field: FieldPath::parse("a.c").unwrap(),
            exists: false,
        };
        assert!(matches(&missing, &doc));
    }
}
