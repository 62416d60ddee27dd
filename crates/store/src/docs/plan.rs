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
//!
//! An `or` (the whole filter, or one of its AND-ed terms) is served by a
//! union of index ranges when each of its branches, with the other AND-ed
//! terms, is served by an index by the rules above, in the query's order,
//! and every branch reads a narrower range than the best single index
//! does. Each branch's range fixes an equality prefix; what follows it in
//! a key is the order-by fields' encoding, the same bytes in every branch
//! (and the same as a read sorted in memory sorts by), so the ranges merge
//! by (that suffix, id), and a document in two ranges comes up twice in a
//! row, once kept. A union has at most [`MAX_UNION_BRANCHES`] branches.
use super::sortkey::{
    TAG_FALSE, TAG_STRING, TAG_TRUE, encode_part, encode_str_open, prefix_end, type_class,
};
use super::{
    CompareOp, Explain, ExplainBranch, FieldPath, Filter, Index, OrderBy, Query, SCAN_LIMIT,
    index_key,
};
use crate::StoreError;
use serde_json::{Map, Value};

/// Most branches of an `or` that a union of index ranges serves: each is
/// a range read again for every chunk of a page, so a longer `or` is
/// checked on each document read instead.
pub const MAX_UNION_BRANCHES: usize = 8;

/// A key range of an index: `lower <= key < upper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub lower: Vec<u8>,
    pub upper: Vec<u8>,
}

/// Above every key: a key starts with a type tag, inverted or not, and no
/// tag is 0x00 or 0xFF.
pub const KEY_MAX: &[u8] = &[0xFF];

/// One range of a [`Plan::Union`]: the documents that one branch of the
/// `or` may match.
#[derive(Debug, Clone)]
pub struct Branch {
    pub index: Index,
    pub bounds: Bounds,
    /// The encoding of the index's leading fields that equality terms fix:
    /// every key of the range starts with it, and the rest of a key is the
    /// document's sort position (its order-by fields, encoded).
    pub prefix: Vec<u8>,
    pub index_terms: Vec<String>,
}

impl Branch {
    /// Where the range goes on after a document at sort position `suffix`
    /// (with the document's id as the tie-break): that document's key.
    pub fn key_at(&self, suffix: &[u8]) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(suffix);
        key
    }

    /// Whether the document's entry in this branch's index is in its range.
    pub fn holds(&self, data: &Map<String, Value>) -> bool {
        let key = index_key(&self.index, data);
        self.bounds.lower <= key && key < self.bounds.upper
    }
}

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
    /// Several ranges (one per branch of an `or`) read as one, each
    /// document once. `Order::Matters`: merged in the query's order, by
    /// the keys' suffix after each branch's prefix, then id; a position is
    /// (that suffix, id). `Order::Ignored` (a count, which takes no
    /// cursor): one range after the other, a document taken from the
    /// first range that holds it ([`Branch::holds`]).
    Union {
        branches: Vec<Branch>,
        residual: Option<Filter>,
        order: Order,
    },
}

impl Plan {
    pub fn residual(&self) -> Option<&Filter> {
        match self {
            Plan::ById { residual }
            | Plan::Index { residual, .. }
            | Plan::Scan { residual, .. }
            | Plan::Union { residual, .. } => residual.as_ref(),
        }
    }

    /// A byte that tells the plan kinds apart in cursors.
    pub fn kind(&self) -> u8 {
        match self {
            Plan::ById { .. } => 1,
            Plan::Index { .. } => 2,
            Plan::Scan { .. } => 4,
            Plan::Union { .. } => 8,
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
            Plan::Union { .. } => ("union", None, Vec::new(), false),
        };
        let branches = match self {
            Plan::Union { branches, .. } => branches
                .iter()
                .map(|branch| ExplainBranch {
                    index: branch.index.name.clone(),
                    index_terms: branch.index_terms.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Explain {
            strategy,
            index,
            index_terms,
            branches,
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
    /// The encoding of the fields fixed by equality terms.
    prefix: Vec<u8>,
}

impl Candidate {
    /// How narrow a read it is: more fixed fields, then a range.
    fn narrowness(&self) -> (usize, bool) {
        (self.equalities, self.ranged)
    }
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
        prefix,
    })
}

fn best_candidate(
    indexes: &[Index],
    terms: &[Filter],
    order_by: &[OrderBy],
    order: Order,
) -> Option<Candidate> {
    indexes
        .iter()
        .filter_map(|index| candidate(index, terms, order_by, order))
        .max_by_key(Candidate::narrowness)
}

/// A union of index ranges for the first `or` among `terms` that has one:
/// each branch's terms with the other terms served by an index, in
/// `order_by`, more narrowly than `single` (the best single index, which
/// reads one range with no merge and serves as well otherwise).
fn union(
    terms: &[Filter],
    indexes: &[Index],
    order_by: &[OrderBy],
    order: Order,
    single: Option<(usize, bool)>,
) -> Option<Plan> {
    'ors: for (at, term) in terms.iter().enumerate() {
        let Filter::Or(alternatives) = term else {
            continue;
        };
        if alternatives.is_empty() || alternatives.len() > MAX_UNION_BRANCHES {
            continue;
        }
        // The other terms first, so that their positions are the same in
        // every branch's list.
        let others: Vec<Filter> = terms
            .iter()
            .enumerate()
            .filter(|(position, _)| *position != at)
            .map(|(_, term)| term.clone())
            .collect();
        let mut chosen = Vec::with_capacity(alternatives.len());
        for alternative in alternatives {
            let mut branch_terms = others.clone();
            conjuncts(Some(alternative), &mut branch_terms);
            match best_candidate(indexes, &branch_terms, order_by, order) {
                Some(best) if single.is_none_or(|single| best.narrowness() > single) => {
                    chosen.push((best, branch_terms));
                }
                _ => continue 'ors,
            }
        }
        // A term outside the `or` that bounds every range holds for every
        // document read; the `or` itself, when every branch's terms all
        // bound its range.
        let bounds_every_range =
            |position: usize| chosen.iter().all(|(best, _)| best.used.contains(&position));
        let or_covered = chosen.iter().all(|(best, branch_terms)| {
            (others.len()..branch_terms.len()).all(|position| best.used.contains(&position))
        });
        let residual = terms
            .iter()
            .enumerate()
            .filter(|&(position, _)| match position.cmp(&at) {
                std::cmp::Ordering::Less => !bounds_every_range(position),
                std::cmp::Ordering::Equal => !or_covered,
                std::cmp::Ordering::Greater => !bounds_every_range(position - 1),
            })
            .map(|(_, term)| term.clone())
            .collect();
        let branches = chosen
            .into_iter()
            .map(|(best, branch_terms)| Branch {
                index_terms: best
                    .used
                    .iter()
                    .map(|&position| describe(&branch_terms[position]))
                    .collect(),
                index: best.index,
                bounds: best.bounds,
                prefix: best.prefix,
            })
            .collect();
        return Some(Plan::Union {
            branches,
            residual: residual_of(residual),
            order,
        });
    }
    None
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

    let best = best_candidate(indexes, &terms, &order_by, order);
    if let Some(union) = union(
        &terms,
        indexes,
        &order_by,
        order,
        best.as_ref().map(Candidate::narrowness),
    ) {
        return Ok(union);
    }
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
        "in, not-in, !=, array-contains and exists are checked on each document read, and so is an or unless indexes serve each of its branches: add an equality or range filter that an index serves".to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::{encode_part, parse_index_fields, parse_query};
    use serde_json::json;

    fn index(name: &str, fields: Value) -> Index {
        Index {
            name: name.to_owned(),
            fields: parse_index_fields(&fields).unwrap(),
        }
    }

    /// The plan of `query` over a collection too large to read whole.
    fn check(query: Value, indexes: &[Index], order: Order) -> Result<Plan, StoreError> {
        plan(
            &parse_query(&query).unwrap(),
            indexes,
            SCAN_LIMIT + 1,
            "posts",
            order,
        )
    }

    fn by_visibility_and_owner() -> Vec<Index> {
        vec![
            index("by-visibility", json!(["visibility", "created"])),
            index("by-owner", json!(["owner", "created"])),
        ]
    }

    fn public_or_mine() -> Value {
        json!({"or": [["visibility", "==", "public"], ["owner", "==", "u1"]]})
    }

    /// Branch by branch: the index and the terms bounding its range.
    fn branches(plan: &Plan) -> Vec<(String, Vec<String>)> {
        match plan {
            Plan::Union { branches, .. } => branches
                .iter()
                .map(|branch| (branch.index.name.clone(), branch.index_terms.clone()))
                .collect(),
            other => panic!("expected a union, got {other:?}"),
        }
    }

    #[test]
    fn an_or_whose_every_branch_has_an_index_is_a_union_of_their_ranges() {
        let chosen = check(
            json!({"where": public_or_mine(), "order_by": ["created"]}),
            &by_visibility_and_owner(),
            Order::Matters,
        )
        .unwrap();
        assert_eq!(
            branches(&chosen),
            [
                (
                    "by-visibility".to_owned(),
                    vec!["visibility == \"public\"".to_owned()]
                ),
                ("by-owner".to_owned(), vec!["owner == \"u1\"".to_owned()]),
            ]
        );
        // Each range holds just its branch's documents, so nothing is
        // left to check on a document read.
        assert!(chosen.residual().is_none());
        let Plan::Union { branches, .. } = &chosen else {
            unreachable!()
        };
        let mut public = Vec::new();
        encode_part(Some(&json!("public")), false, &mut public);
        assert_eq!(branches[0].prefix, public);
        assert_eq!(branches[0].bounds.lower, public);
        let explained = chosen.explain(5000);
        assert_eq!(explained.strategy, "union");
        assert_eq!(explained.branches[1].index, "by-owner");
    }

    #[test]
    fn a_branch_with_no_index_leaves_the_query_as_it_was() {
        let query = json!({
            "where": {"or": [["visibility", "==", "public"], ["tags", "array-contains", "x"]]},
            "order_by": ["created"],
        });
        assert!(matches!(
            check(query, &by_visibility_and_owner(), Order::Matters),
            Err(StoreError::UnindexedQuery(_))
        ));
        // Nor an `or` of more branches than a union takes.
        let owners = |count: usize| {
            let owners: Vec<Value> = (0..count)
                .map(|n| json!(["owner", "==", format!("u{n}")]))
                .collect();
            json!({"where": {"or": owners}, "order_by": ["created"]})
        };
        let most = check(
            owners(MAX_UNION_BRANCHES),
            &by_visibility_and_owner(),
            Order::Matters,
        );
        assert_eq!(branches(&most.unwrap()).len(), MAX_UNION_BRANCHES);
        assert!(
            check(
                owners(MAX_UNION_BRANCHES + 1),
                &by_visibility_and_owner(),
                Order::Matters
            )
            .is_err()
        );
    }

    #[test]
    fn every_branch_must_give_the_query_order() {
        // The indexes order by `created` ascending: not a descending page,
        // nor one by id.
        for order_by in [json!(["-created"]), json!([])] {
            let query = json!({"where": public_or_mine(), "order_by": order_by});
            assert!(check(query, &by_visibility_and_owner(), Order::Matters).is_err());
        }
        let descending = [
            index("by-visibility", json!(["visibility", "-created"])),
            index("by-owner", json!(["owner", "-created"])),
        ];
        let query = json!({"where": public_or_mine(), "order_by": ["-created"]});
        assert_eq!(
            branches(&check(query, &descending, Order::Matters).unwrap()).len(),
            2
        );
        // A count takes any index narrowing each branch.
        let count = check(
            json!({"where": public_or_mine()}),
            &by_visibility_and_owner(),
            Order::Ignored,
        )
        .unwrap();
        assert!(matches!(
            count,
            Plan::Union {
                order: Order::Ignored,
                ..
            }
        ));
    }

    #[test]
    fn other_terms_bound_the_ranges_they_can_and_are_checked_otherwise() {
        let query = json!({
            "where": {"and": [["status", "==", "open"], public_or_mine(), ["tags", "array-contains", "x"]]},
            "order_by": ["created"],
        });
        let mut indexes = by_visibility_and_owner();
        indexes.push(index(
            "by-status-visibility",
            json!(["status", "visibility", "created"]),
        ));
        let chosen = check(query.clone(), &indexes, Order::Matters).unwrap();
        assert_eq!(
            branches(&chosen),
            [
                (
                    "by-status-visibility".to_owned(),
                    vec![
                        "status == \"open\"".to_owned(),
                        "visibility == \"public\"".to_owned()
                    ]
                ),
                ("by-owner".to_owned(), vec!["owner == \"u1\"".to_owned()]),
            ]
        );
        // `status` bounds one range only, so it is checked; the `or` is
        // whole in the ranges; `tags` bounds none.
        assert_eq!(
            chosen.explain(0).residual_terms,
            ["status == \"open\"", "tags array-contains \"x\""]
        );

        // A single index as narrow as a branch's range: it is read alone.
        indexes.push(index("by-status", json!(["status", "created"])));
        let single = check(query.clone(), &indexes, Order::Matters).unwrap();
        assert!(matches!(&single, Plan::Index { index, .. } if index.name == "by-status"));
        // Until every branch has a narrower one.
        indexes.push(index(
            "by-status-owner",
            json!(["status", "owner", "created"]),
        ));
        let chosen = check(query, &indexes, Order::Matters).unwrap();
        assert_eq!(
            chosen.explain(0).residual_terms,
            ["tags array-contains \"x\""]
        );

        // A branch with a term no index covers: the `or` is checked too.
        let query = json!({
            "where": {"or": [
                {"and": [["visibility", "==", "public"], ["draft", "==", false]]},
                ["owner", "==", "u1"],
            ]},
            "order_by": ["created"],
        });
        let chosen = check(query, &by_visibility_and_owner(), Order::Matters).unwrap();
        assert_eq!(chosen.explain(0).residual_terms.len(), 1);
        assert!(chosen.explain(0).residual_terms[0].starts_with("or("));
    }

    #[test]
    fn a_branch_holds_the_documents_of_its_range() {
        let chosen = check(
            json!({"where": public_or_mine(), "order_by": ["created"]}),
            &by_visibility_and_owner(),
            Order::Matters,
        )
        .unwrap();
        let Plan::Union { branches, .. } = chosen else {
            unreachable!()
        };
        let data = |value: Value| value.as_object().unwrap().clone();
        let document = data(json!({"visibility": "public", "owner": "u2", "created": 5}));
        assert!(branches[0].holds(&document));
        assert!(!branches[1].holds(&document));
        // A position's key in a branch: its prefix, then the suffix.
        let key = index_key(&branches[0].index, &document);
        assert_eq!(branches[0].key_at(&key[branches[0].prefix.len()..]), key);
    }
}
