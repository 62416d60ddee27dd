//! What every document backend decides the same way, whatever it stores
//! in: whether a write's condition holds, the change event a write logs,
//! and the cursor a page ends with.
use super::{DocCondition, Document, Plan, Query};
use crate::StoreError;
use crate::events::NewEvent;
use domain::FunctionName;
use serde_json::{Map, Value};

/// Whether a write's condition holds for the live document:
/// [`StoreError::DocumentExists`] for a create that finds one,
/// [`StoreError::ConditionFailed`] for any other that does not hold.
pub fn check_condition(condition: DocCondition, live: Option<&Document>) -> Result<(), StoreError> {
    let holds = match condition {
        DocCondition::Always => true,
        DocCondition::Version(version) => live.is_some_and(|live| live.version == version),
        DocCondition::Exists => live.is_some(),
        DocCondition::Absent => {
            if let Some(live) = live {
                return Err(StoreError::DocumentExists(live.id.clone()));
            }
            true
        }
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::ConditionFailed)
    }
}

/// The event of a document change: `wok.document.created`, `.updated` or
/// `.deleted`, its subject the id, its data the document before and after.
pub fn change_event(
    stream: String,
    origin: Option<&FunctionName>,
    id: &str,
    version: u64,
    before: Option<&Map<String, Value>>,
    after: Option<&Map<String, Value>>,
) -> NewEvent {
    let change = match (before, after) {
        (None, _) => domain::Change::Created,
        (Some(_), Some(_)) => domain::Change::Updated,
        (Some(_), None) => domain::Change::Deleted,
    };
    let data = serde_json::json!({
        "id": id,
        "version": version,
        "before": before,
        "after": after,
    });
    NewEvent {
        stream,
        kind: format!("wok.document.{}", change.as_str()),
        subject: Some(id.to_owned()),
        key: None,
        content_type: Some("application/json".to_owned()),
        data: data.to_string().into_bytes(),
        origin: origin.cloned(),
    }
}

/// A read position: the sort key and id of the last document returned.
pub type Position = (Vec<u8>, String);

/// A 64-bit FNV-1a hash of what a cursor depends on, so that a cursor of
/// another query is refused instead of giving a wrong page.
fn fingerprint(query: &Query, plan: &Plan) -> [u8; 8] {
    let text = format!("{:?}|{:?}|{}", query.filter, query.order_by, plan.kind());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.to_be_bytes()
}

/// The cursor of a page that ended at `position`.
pub fn encode_cursor(query: &Query, plan: &Plan, (key, id): &Position) -> String {
    let mut bytes = Vec::with_capacity(13 + key.len() + id.len());
    bytes.push(plan.kind());
    bytes.extend_from_slice(&fingerprint(query, plan));
    bytes.extend_from_slice(&(key.len() as u32).to_be_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(id.as_bytes());
    hex::encode(bytes)
}

/// Where the query's cursor says to go on from, if it has one; a cursor of
/// another query (or plan) is [`StoreError::InvalidQuery`].
pub fn decode_cursor(query: &Query, plan: &Plan) -> Result<Option<Position>, StoreError> {
    let Some(cursor) = &query.cursor else {
        return Ok(None);
    };
    let invalid = || {
        StoreError::InvalidQuery(
            "the cursor is not one this query returned; start again without it".to_owned(),
        )
    };
    let bytes = hex::decode(cursor).map_err(|_| invalid())?;
    if bytes.len() < 13 || bytes[0] != plan.kind() || bytes[1..9] != fingerprint(query, plan) {
        return Err(invalid());
    }
    let length = u32::from_be_bytes(bytes[9..13].try_into().map_err(|_| invalid())?) as usize;
    let key = bytes.get(13..13 + length).ok_or_else(invalid)?.to_vec();
    let id = String::from_utf8(bytes[13 + length..].to_vec()).map_err(|_| invalid())?;
    Ok(Some((key, id)))
}

/// A query page being filled as a backend walks documents in plan order:
/// up to the query's limit and a byte budget (a first document always
/// fits), then a cursor if more may follow.
pub struct PageBuilder {
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    documents: Vec<super::Document>,
    last: Option<Position>,
    more: bool,
}

impl PageBuilder {
    pub fn new(limit: u32, max_bytes: usize) -> Self {
        Self {
            limit: limit as usize,
            max_bytes,
            bytes: 0,
            documents: Vec::new(),
            last: None,
            more: false,
        }
    }

    /// How many documents to read at most: one past the limit, to know
    /// whether more follow.
    pub fn read_limit(&self) -> usize {
        self.limit + 1
    }

    /// Takes the next matching document; `false` once the page is full.
    pub fn take(&mut self, position: Position, document: super::Document, bytes: usize) -> bool {
        if self.documents.len() == self.limit
            || (!self.documents.is_empty() && self.bytes + bytes > self.max_bytes)
        {
            self.more = true;
            return false;
        }
        self.bytes += bytes;
        self.documents.push(document);
        self.last = Some(position);
        true
    }

    /// The page, with a cursor where it was cut.
    pub fn finish(self, query: &Query, plan: &Plan) -> super::QueryPage {
        let next_cursor = match (self.more, self.last) {
            (true, Some(last)) => Some(encode_cursor(query, plan, &last)),
            _ => None,
        };
        super::QueryPage {
            documents: self.documents,
            next_cursor,
        }
    }
}
