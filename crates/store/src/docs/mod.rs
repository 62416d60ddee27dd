//! The document contract: collections of JSON objects per project,
//! versioned documents, atomic batches, declared indexes and queries.
//!
//! The query language is the model in this module; `parse.rs` reads it
//! from the JSON shape that REST clients and guests send (the same JSON
//! both ways, so both get the same semantics). `plan.rs` picks how a query
//! runs, `filter.rs` evaluates filters on a document, `sortkey.rs` is the
//! byte encoding that index entries and cursors share.
mod filter;
mod parse;
mod plan;
pub mod shared;
mod sortkey;

pub use filter::matches;
pub use parse::{parse_index_fields, parse_query};
pub use plan::{Bounds, Branch, KEY_MAX, MAX_UNION_BRANCHES, Order, Plan, plan};
pub use sortkey::{encode, encode_part, encode_str_open, encoded, prefix_end};

use crate::StoreError;
use domain::{CollectionName, FunctionName, ProjectId};
use serde_json::{Map, Value};

/// Largest document, as compact JSON.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Deepest nesting of arrays and objects in a document (the top object is 1).
pub const MAX_DOCUMENT_DEPTH: usize = 32;
/// Longest document id, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Most documents one query page returns.
pub const MAX_QUERY_LIMIT: u32 = 1000;
/// Most document data (as stored) in one page of query results: a page
/// ends early, with a cursor, rather than hold more.
pub const MAX_PAGE_BYTES: usize = 8 << 20;
/// Most document data (as stored) in a live query's snapshot; a query that
/// matches more is refused.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// Page size when a query names none.
pub const DEFAULT_QUERY_LIMIT: u32 = 100;
/// Most terms (comparisons, `and`, `or`) in one filter, and values in an
/// `in` list.
pub const MAX_FILTER_TERMS: usize = 100;
/// Most writes in one atomic batch.
pub const MAX_BATCH_WRITES: usize = 500;
/// Most indexes per collection, and fields per index.
pub const MAX_INDEXES: usize = 32;
pub const MAX_INDEX_FIELDS: usize = 8;
/// A collection with more documents than this refuses a query that no
/// index serves (it would read every document), saying which index to
/// declare.
pub const SCAN_LIMIT: u64 = 1000;

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    /// Changes on every write; never reused within the collection, so a
    /// stale version cannot match again after a delete and a re-create.
    pub version: u64,
    pub data: Map<String, Value>,
}

/// A dotted path to a field: `address.city`. Segments are object keys;
/// a field whose name holds a dot cannot be named in a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(path: &str) -> Result<Self, StoreError> {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(StoreError::InvalidQuery(format!(
                "field path {path:?} is not a dotted path such as \"address.city\""
            )));
        }
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_DOCUMENT_DEPTH {
            return Err(StoreError::InvalidQuery(format!(
                "field path {path:?} is deeper than {MAX_DOCUMENT_DEPTH} levels"
            )));
        }
        Ok(Self(segments))
    }

    /// The field's value in `data`, if every segment is there.
    pub fn get<'a>(&self, data: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let mut value = data.get(first)?;
        for segment in rest {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

/// A filter over documents. Every comparison matches only documents that
/// have the field (`exists` is the way to ask for missing ones); range
/// comparisons and `prefix` match only values of the operand's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Compare {
        field: FieldPath,
        op: CompareOp,
        value: Value,
    },
    /// `in` (or `not-in` when `negated`): equal to one of the values.
    In {
        field: FieldPath,
        values: Vec<Value>,
        negated: bool,
    },
    /// The field is an array with an element equal to the value.
    ArrayContains {
        field: FieldPath,
        value: Value,
    },
    /// The field is there (`true`) or not (`false`).
    Exists {
        field: FieldPath,
        exists: bool,
    },
    /// The field is a string starting with `prefix`.
    Prefix {
        field: FieldPath,
        prefix: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub field: FieldPath,
    pub descending: bool,
}

/// A field of a declared index, in its order.
pub type IndexField = OrderBy;

/// A declared secondary index of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: String,
    pub fields: Vec<IndexField>,
}

/// A query over one collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub filter: Option<Filter>,
    /// Sort order; a missing field sorts first. Ties are broken by id.
    /// Empty: the order of the index that serves the query, or by id.
    pub order_by: Vec<OrderBy>,
    pub limit: u32,
    /// Where the previous page ended (its `next_cursor`).
    pub cursor: Option<String>,
}

impl Query {
    /// Whether a document's data passes the query's filter (order and
    /// limit aside): what a live query decides for each change.
    pub fn matches(&self, data: &Map<String, Value>) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter::matches(filter, data))
    }
}

/// One page of a query's results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    pub documents: Vec<Document>,
    /// Present when more documents may follow.
    pub next_cursor: Option<String>,
}

/// How a query runs, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explain {
    /// `index`, `by-id`, `scan` or `union` (ranges of several indexes,
    /// one per branch of an `or`).
    pub strategy: &'static str,
    pub index: Option<String>,
    /// Terms that bound the index range.
    pub index_terms: Vec<String>,
    /// The ranges of a union, in the order of the `or`'s branches.
    pub branches: Vec<ExplainBranch>,
    /// Terms checked on each document read.
    pub residual_terms: Vec<String>,
    /// Whether results are sorted in memory after reading every match.
    pub sorts_in_memory: bool,
    /// Documents in the collection.
    pub collection_documents: u64,
}

/// One range of a union, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainBranch {
    pub index: String,
    /// Terms that bound the range.
    pub index_terms: Vec<String>,
}

/// The key of a document's entry in `index`: its fields' encodings, in
/// the index's order and directions (the document id follows it in the
/// entry).
pub fn index_key(index: &Index, data: &Map<String, Value>) -> Vec<u8> {
    let mut key = Vec::new();
    for field in &index.fields {
        encode_part(field.field.get(data), field.descending, &mut key);
    }
    key
}

/// What a write requires of the live document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocCondition {
    Always,
    /// Only if the document exists with this version (If-Match).
    Version(u64),
    /// Only if it does not exist (create).
    Absent,
    /// Only if it exists.
    Exists,
}

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum DocWrite {
    /// Writes the whole document. No id: a new, server-chosen one (and the
    /// condition is `Absent`).
    Set {
        collection: CollectionName,
        id: Option<String>,
        data: Map<String, Value>,
        condition: DocCondition,
    },
    /// Applies a JSON merge patch (RFC 7396) to an existing document.
    Patch {
        collection: CollectionName,
        id: String,
        patch: Value,
        condition: DocCondition,
    },
    Delete {
        collection: CollectionName,
        id: String,
        condition: DocCondition,
    },
}

impl DocWrite {
    pub fn collection(&self) -> &CollectionName {
        match self {
            DocWrite::Set { collection, .. }
            | DocWrite::Patch { collection, .. }
            | DocWrite::Delete { collection, .. } => collection,
        }
    }
}

/// What one write of a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocWritten {
    pub id: String,
    /// The new version; `None` for a delete.
    pub version: Option<u64>,
    /// Whether the document existed before the write.
    pub existed: bool,
}

/// A collection with its size and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionInfo {
    pub name: CollectionName,
    pub documents: u64,
    pub indexes: Vec<Index>,
}

/// The document store contract. Every call names its project; a batch
/// commits all its writes or none.
#[async_trait::async_trait]
pub trait DocStore: Send + Sync + 'static {
    async fn doc_get(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        id: &str,
    ) -> Result<Option<Document>, StoreError>;

    /// Applies an atomic batch, answered once it is durable: one answer
    /// per write, or the first failure as [`StoreError::BatchFailed`]
    /// (then nothing was written). `origin`: the function writing, if a
    /// function is; the change events name it, so its own triggers can
    /// leave them out.
    async fn doc_write(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        writes: Vec<DocWrite>,
    ) -> Result<Vec<DocWritten>, StoreError>;

    /// A page of the documents the query matches (at most
    /// [`MAX_PAGE_BYTES`] of them: a page ends early, with a cursor).
    async fn doc_query(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<QueryPage, StoreError>;

    /// Every document the query matches (at most [`MAX_QUERY_LIMIT`] and
    /// [`MAX_SNAPSHOT_BYTES`]; more is [`StoreError::InvalidQuery`]) and
    /// the event log's position, read together: the snapshot a live query
    /// starts from. Changes logged after the position are exactly those
    /// the snapshot does not show.
    async fn doc_snapshot(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<(Vec<Document>, i64), StoreError>;

    /// How many documents match (`limit` and `cursor` are ignored).
    async fn doc_count(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<u64, StoreError>;

    async fn doc_explain(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<Explain, StoreError>;

    /// Declares an index and fills it from the documents already there;
    /// queries use it once it is full. Once begun it runs to its end even
    /// if the caller stops waiting (a half-made index would hold its name).
    async fn doc_create_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        index: Index,
    ) -> Result<(), StoreError>;

    /// Returns whether the index existed.
    async fn doc_drop_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        name: &str,
    ) -> Result<bool, StoreError>;

    /// Deletes every document and index of the collection, and its access
    /// rule, in one write; versions go on from where they were, so none is
    /// given out again. Returns whether there was anything to drop.
    async fn doc_drop_collection(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
    ) -> Result<bool, StoreError>;

    /// The project's collections, by name: those holding documents or
    /// indexes.
    async fn doc_collections(&self, project: &ProjectId)
    -> Result<Vec<CollectionInfo>, StoreError>;
}

/// Checks a document id: 1 to 128 bytes of letters, digits, `-`, `_`, `.`
/// and `~`, not starting with `_` or `.` (those are reserved).
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.starts_with(['_', '.'])
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidDocument(format!(
            "document id {id:?} must be 1 to {MAX_ID_BYTES} letters, digits, '-', '_', '.' or '~', not starting with '_' or '.'"
        )))
    }
}

/// Checks a document's size and nesting depth.
pub fn validate_document(data: &Map<String, Value>) -> Result<(), StoreError> {
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(entries) => 1 + entries.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let deepest = 1 + data.values().map(depth).max().unwrap_or(0);
    if deepest > MAX_DOCUMENT_DEPTH {
        return Err(StoreError::InvalidDocument(format!(
            "the document nests {deepest} levels deep; at most {MAX_DOCUMENT_DEPTH} are allowed"
        )));
    }
    let size = serde_json::to_vec(data)
        .map_err(|error| StoreError::InvalidDocument(error.to_string()))?
        .len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(StoreError::InvalidDocument(format!(
            "the document is {size} bytes as JSON; at most {MAX_DOCUMENT_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// The kinds of write a batch entry names (REST `op`, the guest `op` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Fails if the id exists; no id: a new one.
    Create,
    /// Creates or replaces.
    Set,
    /// A JSON merge patch of an existing document.
    Patch,
    Delete,
}

impl WriteKind {
    pub fn parse(op: &str) -> Result<Self, String> {
        match op {
            "create" => Ok(WriteKind::Create),
            "set" => Ok(WriteKind::Set),
            "patch" => Ok(WriteKind::Patch),
            "delete" => Ok(WriteKind::Delete),
            other => Err(format!(
                "unknown op {other:?}; expected create, set, patch or delete"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            WriteKind::Create => "create",
            WriteKind::Set => "set",
            WriteKind::Patch => "patch",
            WriteKind::Delete => "delete",
        }
    }
}

impl DocWrite {
    /// A write from the loose parts that REST batches and guests send;
    /// the error says which part is missing or wrong.
    pub fn from_parts(
        kind: WriteKind,
        collection: &str,
        id: Option<String>,
        data: Option<Value>,
        if_version: Option<u64>,
    ) -> Result<DocWrite, String> {
        let collection = CollectionName::new(collection).map_err(|error| error.to_string())?;
        let condition = match if_version {
            Some(version) => DocCondition::Version(version),
            None => DocCondition::Always,
        };
        let op = kind.name();
        let needs_id = |id: Option<String>| id.ok_or_else(|| format!("{op:?} needs an id"));
        let needs_object = |data: Option<Value>| match data {
            Some(Value::Object(data)) => Ok(data),
            _ => Err(format!("{op:?} needs data, a JSON object")),
        };
        match kind {
            WriteKind::Create => {
                if if_version.is_some() {
                    return Err("\"create\" takes no if_version".to_owned());
                }
                Ok(DocWrite::Set {
                    collection,
                    id,
                    data: needs_object(data)?,
                    condition: DocCondition::Absent,
                })
            }
            WriteKind::Set => Ok(DocWrite::Set {
                collection,
                id: Some(needs_id(id)?),
                data: needs_object(data)?,
                condition,
            }),
            WriteKind::Patch => Ok(DocWrite::Patch {
                collection,
                id: needs_id(id)?,
                patch: Value::Object(needs_object(data)?),
                condition,
            }),
            WriteKind::Delete => Ok(DocWrite::Delete {
                collection,
                id: needs_id(id)?,
                condition,
            }),
        }
    }
}
