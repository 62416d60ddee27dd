//! Picks how a query runs: a range of a declared index, the primary key
//! (by id), or a read of the whole collection sorted in memory, which is
//! refused on collections larger than [`SCAN_LIMIT`].
//!
//! An index `(f1, f2, ..., fn)` serves a query when its leading fields
//! carry equality filters, the next field (if ascending) may carry range
//! filters (`<`, `<=`, `>`, `>=`, `prefix`), and the query's `order_by`,
//! after dropping fields fixed by equality (without one: the first range
//! term's field, ascending; else none), is the rest of the index's fields,
//! in the same directions. The index is read forward, and its
//! entries end with the document id: results tie-break by id ascending,
//! as a read sorted in memory does, so adding an index never changes a
//! page (Firestore asks for exact indexes for the same reason). Every other
//! term is checked on each document read.
use super::sortkey::{
    TAG_FALSE, TAG_STRING, TAG_TRUE, encode_part, encode_str_open, prefix_end, type_class,
};
use super::{CompareOp, Explain, FieldPath, Filter, Index, OrderBy, Query, SCAN_LIMIT};
use crate::StoreError;
use serde_json::Value;

/// A key range of an index: `lower <= key < upper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub lower: Vec<u8>,
    pub upper: Vec<u8>,
}

/// Above every key: a key starts with a type tag, inverted or not, and no
/// tag is 0x00 or 0xFF.
pub const KEY_MAX: &[u8] = &[0xFF];

#[derive(Debug, Clone)]
pub enum Plan {
    /// The primary key, by id ascending.
    ById { residual: Option<Filter> },
    Index {
        index: Index,
        /// Its position among the collection's indexes, as stored.
        bounds: Bounds,
        residual: Option<Filter>,
        index_terms: Vec<String>,
    },
    /// Every document, filtered, then sorted by `order_by` in memory.
    Scan {
        residual: Option<Filter>,
        order_by: Vec<OrderBy>,
    },
}

impl Plan {
    pub fn residual(&self) -> Option<&Filter> {
        match self {
            Plan::ById { residual }
            | Plan::Index { residual, .. }
            | Plan::Scan { residual, .. } => residual.as_ref(),
        }
    }

    /// A byte that tells the plan kinds apart in cursors.
    pub fn kind(&self) -> u8 {
        match self {
            Plan::ById { .. } => 1,
            Plan::Index { .. } => 2,
            Plan::Scan { .. } => 4,
        }
    }

    pub fn explain(&self, collection_documents: u64) -> Explain {
        let (strategy, index, index_terms, sorts_in_memory) = match self {
            Plan::ById { .. } => ("by-id", None, Vec::new(), false),
            Plan::Index {
                index, index_terms, ..
            } => (
                "index",
                Some(index.name.clone()),
                index_terms.clone(),
                false,
            ),
            Plan::Scan { order_by, .. } => ("scan", None, Vec::new(), !order_by.is_empty()),
        };
        Explain {
            strategy,
            index,
            index_terms,
            residual_terms: self.residual().map(terms_of).unwrap_or_default(),
            sorts_in_memory,
            collection_documents,
        }
    }
}

fn describe(term: &Filter) -> String {
    match term {
        Filter::And(terms) => format!(
            "and({})",
            terms.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Filter::Or(terms) => format!(
            "or({})",
            terms.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Filter::Compare { field, op, value } => format!("{field} {} {value}", op.symbol()),
        Filter::In {
            field,
            values,
            negated,
        } => format!(
            "{field} {} {}",
            if *negated { "not-in" } else { "in" },
            Value::Array(values.clone())
        ),
        Filter::ArrayContains { field, value } => format!("{field} array-contains {value}"),
        Filter::Exists { field, exists } => format!("{field} exists {exists}"),
        Filter::Prefix { field, prefix } => format!("{field} prefix {}", Value::from(&**prefix)),
    }
}

fn terms_of(filter: &Filter) -> Vec<String> {
    match filter {
        Filter::And(terms) => terms.iter().map(describe).collect(),
        other => vec![describe(other)],
    }
}

/// The top-level conjunction as a flat list of terms.
fn conjuncts(filter: Option<&Filter>, out: &mut Vec<Filter>) {
    match filter {
        None => {}
        Some(Filter::And(terms)) => {
            for term in terms {
                conjuncts(Some(term), out);
            }
        }
        Some(other) => out.push(other.clone()),
    }
}

fn equality(term: &Filter) -> Option<(&FieldPath, &Value)> {
    match term {
        Filter::Compare {
            field,
            op: CompareOp::Eq,
            value,
        } => Some((field, value)),
        _ => None,
    }
}

fn range_field(term: &Filter) -> Option<&FieldPath> {
    match term {
        Filter::Compare { field, op, .. } if !matches!(op, CompareOp::Eq | CompareOp::Ne) => {
            Some(field)
        }
        Filter::Prefix { field, .. } => Some(field),
        _ => None,
    }
}

fn residual_of(terms: Vec<Filter>) -> Option<Filter> {
    match terms.len() {
        0 => None,
        1 => terms.into_iter().next(),
        _ => Some(Filter::And(terms)),
    }
}

/// How an index would serve the query, if it can.
struct Candidate {
    index: Index,
    /// Terms used as bounds, by position in the conjunct list.
    used: Vec<usize>,
    equalities: usize,
    ranged: bool,
    bounds: Bounds,
}

/// Whether the results' order matters to a plan: a count takes any index
/// that narrows the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Matters,
    Ignored,
}

fn candidate(
    index: &Index,
    terms: &[Filter],
    order_by: &[OrderBy],
    order: Order,
) -> Option<Candidate> {
    let mut used = Vec::new();
    let mut prefix = Vec::new();
    let mut equalities = 0;
    for field in &index.fields {
        let Some(position) = terms
            .iter()
            .position(|term| equality(term).is_some_and(|(path, _)| *path == field.field))
        else {
            break;
        };
        let (_, value) = equality(&terms[position])?;
        encode_part(Some(value), field.descending, &mut prefix);
        used.push(position);
        equalities += 1;
    }
    let rest = &index.fields[equalities..];
    // The order the index gives after the fixed fields, then the id: it
    // must be the order asked, whole (none: by id), or ties would come out
    // otherwise than by id (a reversed read reverses them; further fields
    // order them).
    let served = order == Order::Ignored
        || (order_by.len() == rest.len()
            && order_by
                .iter()
                .zip(rest)
                .all(|(wanted, field)| wanted == field));
    if !served {
        return None;
    }
    let mut bounds = Bounds {
        lower: prefix.clone(),
        upper: prefix_end(&prefix).unwrap_or_else(|| KEY_MAX.to_vec()),
    };
    let mut ranged = false;
    if let Some(next) = rest.first().filter(|field| !field.descending) {
        let mut class = None;
        for (position, term) in terms.iter().enumerate() {
            if range_field(term) != Some(&next.field) {
                continue;
            }
            let (lower, upper) = match term {
                Filter::Compare { op, value, .. } => {
                    let mut at = prefix.clone();
                    encode_part(Some(value), false, &mut at);
                    let after = prefix_end(&at).unwrap_or_else(|| KEY_MAX.to_vec());
                    match op {
                        CompareOp::Gt => (Some(after), None),
                        CompareOp::Ge => (Some(at), None),
                        CompareOp::Lt => (None, Some(at)),
                        CompareOp::Le => (None, Some(after)),
                        CompareOp::Eq | CompareOp::Ne => continue,
                    }
                }
                Filter::Prefix { prefix: start, .. } => {
                    let mut at = prefix.clone();
                    at.push(TAG_STRING);
                    encode_str_open(start, &mut at);
                    let after = prefix_end(&at).unwrap_or_else(|| KEY_MAX.to_vec());
                    (Some(at), Some(after))
                }
                _ => continue,
            };
            let term_class = match term {
                Filter::Compare { value, .. } => type_class(value),
                _ => TAG_STRING,
            };
            // Terms of one type class bound the range; a term of another
            // class matches nothing and stays a residual term.
            if *class.get_or_insert(term_class) != term_class {
                continue;
            }
            if let Some(lower) = lower
                && lower > bounds.lower
            {
                bounds.lower = lower;
            }
            if let Some(upper) = upper
                && upper < bounds.upper
            {
                bounds.upper = upper;
            }
            used.push(position);
            ranged = true;
        }
        if let Some(class) = class {
            // Only values of that class: booleans are false..=true.
            let (first, last) = if class == TAG_FALSE {
                (TAG_FALSE, TAG_TRUE)
            } else {
                (class, class)
            };
            let mut lower = prefix.clone();
            lower.push(first);
            let mut upper = prefix.clone();
            upper.push(last + 1);
            if lower > bounds.lower {
                bounds.lower = lower;
            }
            if upper < bounds.upper {
                bounds.upper = upper;
            }
        }
    }
    if equalities == 0 && !ranged && order_by.is_empty() {
        return None;
    }
    Some(Candidate {
        index: index.clone(),
        used,
        equalities,
        ranged,
        bounds,
    })
}

/// Plans `query` over a collection with these indexes and this many
/// documents; refuses a full read of a large collection.
pub fn plan(
    query: &Query,
    indexes: &[Index],
    documents: u64,
    collection: &str,
    order: Order,
) -> Result<Plan, StoreError> {
    let mut terms = Vec::new();
    conjuncts(query.filter.as_ref(), &mut terms);
    // Fields fixed by an equality need no ordering.
    let fixed = |field: &FieldPath| {
        terms
            .iter()
            .any(|term| equality(term).is_some_and(|(fixed, _)| fixed == field))
    };
    let mut order_by: Vec<OrderBy> = query
        .order_by
        .iter()
        .filter(|order| !fixed(&order.field))
        .cloned()
        .collect();
    // Without an order, a range term orders by its field (the first such
    // term), as the index that serves it does; else the order is by id.
    // Every plan gives that order, so an index never changes a result.
    if order == Order::Ignored {
        order_by.clear();
    } else if order_by.is_empty()
        && let Some(field) = terms
            .iter()
            .filter_map(range_field)
            .find(|field| !fixed(field))
    {
        order_by.push(OrderBy {
            field: field.clone(),
            descending: false,
        });
    }

    let best = indexes
        .iter()
        .filter_map(|index| candidate(index, &terms, &order_by, order))
        .max_by_key(|candidate| (candidate.equalities, candidate.ranged));
    if let Some(best) = best {
        let index_terms = best.used.iter().map(|&at| describe(&terms[at])).collect();
        let residual = terms
            .iter()
            .enumerate()
            .filter(|(at, _)| !best.used.contains(at))
            .map(|(_, term)| term.clone())
            .collect();
        return Ok(Plan::Index {
            index: best.index,
            bounds: best.bounds,
            residual: residual_of(residual),
            index_terms,
        });
    }

    let residual = residual_of(terms.clone());
    let reads_everything = residual.is_some() || !order_by.is_empty();
    if reads_everything && documents > SCAN_LIMIT {
        return Err(StoreError::UnindexedQuery(unindexed_message(
            &terms, &order_by, documents, collection,
        )));
    }
    Ok(if order_by.is_empty() {
        Plan::ById { residual }
    } else {
        Plan::Scan { residual, order_by }
    })
}

fn unindexed_message(
    terms: &[Filter],
    order_by: &[OrderBy],
    documents: u64,
    collection: &str,
) -> String {
    let mut fields: Vec<String> = Vec::new();
    let mut add = |field: String| {
        if !fields.contains(&field) {
            fields.push(field);
        }
    };
    for term in terms {
        if let Some((field, _)) = equality(term) {
            add(field.to_string());
        }
    }
    match order_by.first() {
        Some(_) => {
            for order in order_by {
                add(format!(
                    "{}{}",
                    if order.descending { "-" } else { "" },
                    order.field
                ));
            }
        }
        None => {
            if let Some(field) = terms.iter().find_map(range_field) {
                add(field.to_string());
            }
        }
    }
    let advice = if fields.is_empty() {
        "or, in, not-in, !=, array-contains and exists are checked on each document read: add an equality or range filter that an index serves".to_owned()
    } else {
        format!(
            "declare an index on [{}] (see `wok docs index create`)",
            fields
                .iter()
                .map(|field| format!("{field:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "no index serves this query, and reading all {documents} documents of collection {collection:?} is refused above {SCAN_LIMIT}: {advice}"
    )
}
