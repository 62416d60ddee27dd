//! Documents on SQLite. A collection is a row of `doc_collections` with a
//! number (`cid`) that documents and index entries are keyed by; an index
//! entry is `(cid, index number, sort key, document id)`, so a query is a
//! range scan of one primary key. Writes run on the group-commit writer
//! thread; reads on a reader connection.
use crate::{Result, SqliteStore};
use domain::{CollectionName, FunctionName, ProjectId};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};
use store::StoreError;
use store::docs::shared::{PageBuilder, Position, change_event, check_condition, decode_cursor};
use store::docs::{
    Bounds, Branch, CollectionInfo, DocCondition, DocStore, DocWrite, DocWritten, Document,
    Explain, Filter, Index, IndexField, MAX_INDEXES, Order, Plan, Query, QueryPage, encode_part,
    index_key, matches, parse_index_fields, plan, validate_document, validate_id,
};

/// A collection as stored: its number, size and indexes (with numbers).
struct Collection {
    cid: i64,
    documents: u64,
    /// Every index, built or being built: writes keep all of them.
    indexes: Vec<(i64, Index)>,
    /// Numbers of the indexes still being filled: queries do not use them.
    building: Vec<i64>,
}

impl Collection {
    /// The number of an index (one being built too: plans are made of
    /// ready ones).
    fn ino(&self, index: &Index) -> Option<i64> {
        self.indexes
            .iter()
            .find(|(_, found)| found.name == index.name)
            .map(|(ino, _)| *ino)
    }

    /// The indexes queries may use.
    fn ready(&self) -> impl Iterator<Item = &(i64, Index)> {
        self.indexes
            .iter()
            .filter(|(ino, _)| !self.building.contains(ino))
    }
}

fn corrupt(what: impl std::fmt::Display) -> crate::Error {
    crate::Error(StoreError::Corrupt(what.to_string()))
}

fn fields_to_json(fields: &[IndexField]) -> String {
    let names: Vec<String> = fields
        .iter()
        .map(|field| format!("{}{}", if field.descending { "-" } else { "" }, field.field))
        .collect();
    Value::from(names).to_string()
}

fn collection(
    connection: &Connection,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<Option<Collection>> {
    let found = connection
        .prepare_cached(
            "SELECT cid, documents FROM doc_collections WHERE project = ? AND name = ?",
        )?
        .query_row(params![project.as_str(), name.as_str()], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    let Some((cid, documents)) = found else {
        return Ok(None);
    };
    let all = indexes(connection, cid)?;
    Ok(Some(Collection {
        cid,
        documents: documents as u64,
        building: all
            .iter()
            .filter(|(_, _, ready)| !ready)
            .map(|(ino, _, _)| *ino)
            .collect(),
        indexes: all
            .into_iter()
            .map(|(ino, index, _)| (ino, index))
            .collect(),
    }))
}

/// A collection's indexes: number, definition, and whether it is filled.
fn indexes(connection: &Connection, cid: i64) -> Result<Vec<(i64, Index, bool)>> {
    let mut statement = connection.prepare_cached(
        "SELECT ino, name, fields, ready FROM doc_indexes WHERE cid = ? ORDER BY name",
    )?;
    let rows = statement.query_map(params![cid], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, bool>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (ino, name, fields, ready) = row?;
        let fields: Value = serde_json::from_str(&fields).map_err(corrupt)?;
        let fields = parse_index_fields(&fields).map_err(corrupt)?;
        out.push((ino, Index { name, fields }, ready));
    }
    Ok(out)
}

fn ensure_collection(
    transaction: &Connection,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<Collection> {
    transaction
        .prepare_cached("INSERT OR IGNORE INTO doc_collections (project, name) VALUES (?, ?)")?
        .execute(params![project.as_str(), name.as_str()])?;
    collection(transaction, project, name)?
        .ok_or_else(|| corrupt(format!("collection {name} vanished while being written")))
}

fn parse_body(body: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(body).map_err(corrupt)? {
        Value::Object(data) => Ok(data),
        _ => Err(corrupt("a stored document is not an object")),
    }
}

fn load_document(connection: &Connection, cid: i64, id: &str) -> Result<Option<Document>> {
    let row = connection
        .prepare_cached("SELECT version, body FROM docs WHERE cid = ? AND id = ?")?
        .query_row(params![cid, id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .optional()?;
    row.map(|(version, body)| {
        Ok(Document {
            id: id.to_owned(),
            version: version as u64,
            data: parse_body(&body)?,
        })
    })
    .transpose()
}

pub(crate) fn get_document(
    connection: &Connection,
    project: &ProjectId,
    name: &CollectionName,
    id: &str,
) -> Result<Option<Document>> {
    match collection(connection, project, name)? {
        Some(found) => load_document(connection, found.cid, id),
        None => Ok(None),
    }
}

/// Applies an atomic batch in a savepoint: all of it, or (on the first
/// failure) none of it.
pub(crate) fn apply_doc_batch(
    transaction: &mut Transaction<'_>,
    project: &ProjectId,
    origin: Option<&FunctionName>,
    writes: &[DocWrite],
) -> Result<Vec<DocWritten>> {
    let savepoint = transaction.savepoint()?;
    let mut results = Vec::with_capacity(writes.len());
    for (at, write) in writes.iter().enumerate() {
        match apply_doc_write(&savepoint, project, origin, write) {
            Ok(done) => results.push(done),
            // The savepoint rolls back when dropped.
            Err(error) if error.0.is_backend() => return Err(error),
            Err(error) => {
                return Err(StoreError::BatchFailed {
                    write: at,
                    error: Box::new(error.0),
                }
                .into());
            }
        }
    }
    savepoint.commit()?;
    Ok(results)
}

fn apply_doc_write(
    transaction: &Connection,
    project: &ProjectId,
    origin: Option<&FunctionName>,
    write: &DocWrite,
) -> Result<DocWritten> {
    let collection = ensure_collection(transaction, project, write.collection())?;
    let cid = collection.cid;
    let (id, condition) = match write {
        DocWrite::Set { id: None, .. } => (
            uuid::Uuid::now_v7().simple().to_string(),
            DocCondition::Absent,
        ),
        DocWrite::Set {
            id: Some(id),
            condition,
            ..
        }
        | DocWrite::Patch { id, condition, .. }
        | DocWrite::Delete { id, condition, .. } => (id.clone(), *condition),
    };
    validate_id(&id)?;
    let live = load_document(transaction, cid, &id)?;
    check_condition(condition, live.as_ref())?;
    let new_data = match write {
        DocWrite::Set { data, .. } => Some(data.clone()),
        DocWrite::Patch { patch, .. } => {
            let Some(live) = &live else {
                return Err(StoreError::NoSuchDocument(id).into());
            };
            let mut merged = Value::Object(live.data.clone());
            json_patch::merge(&mut merged, patch);
            match merged {
                Value::Object(data) => Some(data),
                _ => {
                    return Err(StoreError::InvalidDocument(
                        "a merge patch must be a JSON object".to_owned(),
                    )
                    .into());
                }
            }
        }
        DocWrite::Delete { .. } => None,
    };
    if let Some(data) = &new_data {
        validate_document(data)?;
    }

    // Index entries follow the document: remove the old keys, add the new.
    for (ino, index) in &collection.indexes {
        let old_key = live.as_ref().map(|live| index_key(index, &live.data));
        let new_key = new_data.as_ref().map(|data| index_key(index, data));
        if old_key == new_key {
            continue;
        }
        if let Some(old_key) = old_key {
            transaction
                .prepare_cached(
                    "DELETE FROM doc_index_entries WHERE cid = ? AND ino = ? AND key = ? AND id = ?",
                )?
                .execute(params![cid, ino, old_key, id])?;
        }
        if let Some(new_key) = new_key {
            transaction
                .prepare_cached(
                    "INSERT INTO doc_index_entries (cid, ino, key, id) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![cid, ino, new_key, id])?;
        }
    }

    let existed = live.is_some();
    let stream = domain::documents_stream(write.collection());
    let log = crate::events::watched(transaction, project, &stream)?;
    let Some(data) = new_data else {
        if let Some(live) = &live
            && log
        {
            let change = change_event(stream, origin, &id, live.version, Some(&live.data), None);
            crate::events::log_change(transaction, project, change)?;
        }
        if existed {
            transaction
                .prepare_cached("DELETE FROM docs WHERE cid = ? AND id = ?")?
                .execute(params![cid, id])?;
            transaction
                .prepare_cached(
                    "UPDATE doc_collections SET documents = documents - 1 WHERE cid = ?",
                )?
                .execute(params![cid])?;
        }
        return Ok(DocWritten {
            id,
            version: None,
            existed,
        });
    };
    let version: i64 = transaction
        .prepare_cached(
            "UPDATE doc_collections SET last_version = last_version + 1,
                 documents = documents + ? WHERE cid = ? RETURNING last_version",
        )?
        .query_row(params![i64::from(!existed), cid], |row| row.get(0))?;
    if log {
        let before = live.as_ref().map(|live| &live.data);
        let change = change_event(stream, origin, &id, version as u64, before, Some(&data));
        crate::events::log_change(transaction, project, change)?;
    }
    let body = Value::Object(data).to_string();
    transaction
        .prepare_cached("INSERT OR REPLACE INTO docs (cid, id, version, body) VALUES (?, ?, ?, ?)")?
        .execute(params![cid, id, version, body])?;
    Ok(DocWritten {
        id,
        version: Some(version as u64),
        existed,
    })
}

/// Declares an index, not yet filled (queries do not use it); returns the
/// collection's and the index's numbers for [`apply_fill_index`].
pub(crate) fn apply_create_index(
    transaction: &mut Transaction<'_>,
    project: &ProjectId,
    name: &CollectionName,
    index: &Index,
) -> Result<(i64, i64)> {
    let savepoint = transaction.savepoint()?;
    let collection = ensure_collection(&savepoint, project, name)?;
    if collection
        .indexes
        .iter()
        .any(|(_, existing)| existing.name == index.name)
    {
        return Err(StoreError::IndexExists(index.name.clone()).into());
    }
    if collection.indexes.len() >= MAX_INDEXES {
        return Err(StoreError::InvalidQuery(format!(
            "collection {name} has {MAX_INDEXES} indexes already, the most allowed"
        ))
        .into());
    }
    let ino = collection
        .indexes
        .iter()
        .map(|(ino, _)| ino + 1)
        .max()
        .unwrap_or(1);
    savepoint.execute(
        "INSERT INTO doc_indexes (cid, name, ino, fields, ready) VALUES (?, ?, ?, ?, 0)",
        params![
            collection.cid,
            index.name,
            ino,
            fields_to_json(&index.fields)
        ],
    )?;
    savepoint.commit()?;
    Ok((collection.cid, ino))
}

/// Fills an index being built with the entries of up to `limit` documents
/// after `after` (by id). Writes meanwhile keep the index current for the
/// documents they touch; `INSERT OR IGNORE` makes the two meet. Returns
/// where to continue, or `None` when done (or the index was dropped).
pub(crate) fn apply_fill_index(
    transaction: &Connection,
    cid: i64,
    ino: i64,
    after: &str,
    limit: u32,
) -> Result<Option<String>> {
    let Some((_, index, _)) = indexes(transaction, cid)?
        .into_iter()
        .find(|(number, _, ready)| *number == ino && !ready)
    else {
        return Ok(None);
    };
    let mut read = transaction
        .prepare_cached("SELECT id, body FROM docs WHERE cid = ? AND id > ? ORDER BY id LIMIT ?")?;
    let mut insert = transaction.prepare_cached(
        "INSERT OR IGNORE INTO doc_index_entries (cid, ino, key, id) VALUES (?, ?, ?, ?)",
    )?;
    let mut rows = read.query(params![cid, after, limit])?;
    let mut last = None;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let body: String = row.get(1)?;
        let key = index_key(&index, &parse_body(&body)?);
        insert.execute(params![cid, ino, key, id])?;
        last = Some(id);
    }
    Ok(last)
}

/// Marks a filled index ready for queries.
pub(crate) fn apply_finish_index(transaction: &Connection, cid: i64, ino: i64) -> Result<bool> {
    Ok(transaction.execute(
        "UPDATE doc_indexes SET ready = 1 WHERE cid = ? AND ino = ?",
        params![cid, ino],
    )? > 0)
}

/// Drops indexes whose filling a stop interrupted (their requests were
/// never answered), with their entries.
pub(crate) fn drop_unfinished_indexes(connection: &Connection) -> Result<()> {
    connection.execute_batch(
        "DELETE FROM doc_index_entries WHERE (cid, ino) IN
           (SELECT cid, ino FROM doc_indexes WHERE ready = 0);
         DELETE FROM doc_indexes WHERE ready = 0;",
    )?;
    Ok(())
}

pub(crate) fn apply_drop_index(
    transaction: &mut Transaction<'_>,
    project: &ProjectId,
    name: &CollectionName,
    index: &str,
) -> Result<bool> {
    let Some(collection) = collection(transaction, project, name)? else {
        return Ok(false);
    };
    let Some((ino, _)) = collection
        .indexes
        .iter()
        .find(|(_, existing)| existing.name == index)
    else {
        return Ok(false);
    };
    transaction.execute(
        "DELETE FROM doc_index_entries WHERE cid = ? AND ino = ?",
        params![collection.cid, ino],
    )?;
    transaction.execute(
        "DELETE FROM doc_indexes WHERE cid = ? AND ino = ?",
        params![collection.cid, ino],
    )?;
    Ok(true)
}

/// Deletes every document and index of a collection, and its access rule.
/// The collection's row stays, with its version counter, so that versions
/// are never given out again (an old ETag cannot match a new document);
/// a collection with no documents and no indexes is not listed. Returns
/// whether there was anything to drop.
pub(crate) fn apply_drop_collection(
    transaction: &mut Transaction<'_>,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<bool> {
    let Some(collection) = collection(transaction, project, name)? else {
        return Ok(false);
    };
    let indexed: bool = transaction.query_row(
        "SELECT EXISTS (SELECT 1 FROM doc_indexes WHERE cid = ?)",
        params![collection.cid],
        |row| row.get(0),
    )?;
    if collection.documents == 0 && !indexed {
        return Ok(false);
    }
    for statement in [
        "DELETE FROM doc_index_entries WHERE cid = ?",
        "DELETE FROM doc_indexes WHERE cid = ?",
        "DELETE FROM docs WHERE cid = ?",
        "UPDATE doc_collections SET documents = 0 WHERE cid = ?",
    ] {
        transaction.execute(statement, params![collection.cid])?;
    }
    // Created again later, it starts private, as a new one.
    transaction.execute(
        "DELETE FROM access_rules WHERE project = ? AND kind = 'collection' AND name = ?",
        params![project.as_str(), name.as_str()],
    )?;
    Ok(true)
}

pub(crate) fn collections(
    connection: &Connection,
    project: &ProjectId,
) -> Result<Vec<CollectionInfo>> {
    // Those with documents or indexes (dropped or emptied ones are not).
    let mut statement = connection.prepare(
        "SELECT cid, name, documents FROM doc_collections c WHERE project = ?
           AND (documents > 0 OR EXISTS (SELECT 1 FROM doc_indexes i WHERE i.cid = c.cid))
         ORDER BY name",
    )?;
    let rows = statement.query_map(params![project.as_str()], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (cid, name, documents) = row?;
        out.push(CollectionInfo {
            name: CollectionName::new(name).map_err(corrupt)?,
            documents: documents as u64,
            indexes: indexes(connection, cid)?
                .into_iter()
                .filter(|(_, _, ready)| *ready)
                .map(|(_, index, _)| index)
                .collect(),
        });
    }
    Ok(out)
}

/// Rows read at a time when counting.
const MAX_CHUNK_COUNT: usize = 256;

/// Reads documents in plan order after `after`, a chunk at a time, and
/// hands each match to `visit` until it says stop.
fn walk(
    connection: &Connection,
    collection: &Collection,
    plan: &Plan,
    wanted: usize,
    mut after: Option<Position>,
    mut visit: impl FnMut(Position, Document, usize) -> bool,
) -> Result<()> {
    // The first chunk reads what the caller wants (a page and one more);
    // later ones, when filters dropped documents, read more at a time.
    const MAX_CHUNK: usize = 256;
    let mut chunk = wanted.clamp(1, MAX_CHUNK);
    let cid = collection.cid;
    match plan {
        Plan::Scan { residual, order_by } => {
            // Small collections only (the planner sees to it).
            let mut statement =
                connection.prepare_cached("SELECT id, version, body FROM docs WHERE cid = ?")?;
            let mut rows = statement.query(params![cid])?;
            let mut found: Vec<(Position, Document, usize)> = Vec::new();
            while let Some(row) = rows.next()? {
                let (document, bytes) = document_from(row.get(0)?, row.get(1)?, row.get(2)?)?;
                if residual
                    .as_ref()
                    .is_some_and(|filter| !matches(filter, &document.data))
                {
                    continue;
                }
                let mut key = Vec::new();
                for order in order_by {
                    encode_part(order.field.get(&document.data), order.descending, &mut key);
                }
                found.push(((key, document.id.clone()), document, bytes));
            }
            found.sort_by(|(left, ..), (right, ..)| left.cmp(right));
            for (position, document, bytes) in found {
                if after.as_ref().is_some_and(|after| position <= *after) {
                    continue;
                }
                if !visit(position, document, bytes) {
                    break;
                }
            }
            Ok(())
        }
        Plan::ById { residual } => loop {
            let mut statement = connection.prepare_cached(
                "SELECT id, version, body FROM docs WHERE cid = ? AND id > ? ORDER BY id LIMIT ?",
            )?;
            let start = after.as_ref().map(|(_, id)| id.clone()).unwrap_or_default();
            let mut rows = statement.query(params![cid, start, chunk as i64])?;
            let mut read = 0;
            while let Some(row) = rows.next()? {
                read += 1;
                let (document, bytes) = document_from(row.get(0)?, row.get(1)?, row.get(2)?)?;
                let position = (Vec::new(), document.id.clone());
                after = Some(position.clone());
                if residual
                    .as_ref()
                    .is_some_and(|filter| !matches(filter, &document.data))
                {
                    continue;
                }
                if !visit(position, document, bytes) {
                    return Ok(());
                }
            }
            if read < chunk {
                return Ok(());
            }
            chunk = MAX_CHUNK;
        },
        Plan::Index {
            index,
            bounds,
            residual,
            ..
        } => {
            let Some(ino) = collection.ino(index) else {
                return Ok(());
            };
            let range = Range {
                cid,
                ino,
                bounds,
                residual: residual.as_ref(),
            };
            walk_range(connection, &range, chunk, after, |_| false, &mut visit).map(|_| ())
        }
        Plan::Union {
            branches,
            residual,
            order: Order::Ignored,
        } => {
            // A count (no cursor): range after range, each document from
            // the first range that holds it.
            for (at, branch) in branches.iter().enumerate() {
                let Some(ino) = collection.ino(&branch.index) else {
                    return Ok(());
                };
                let range = Range {
                    cid,
                    ino,
                    bounds: &branch.bounds,
                    residual: residual.as_ref(),
                };
                let earlier = &branches[..at];
                let seen = |document: &Document| earlier.iter().any(|b| b.holds(&document.data));
                if !walk_range(connection, &range, chunk, None, seen, &mut visit)? {
                    return Ok(());
                }
            }
            Ok(())
        }
        Plan::Union {
            branches,
            residual,
            order: Order::Matters,
        } => {
            let Some(inos) = branches
                .iter()
                .map(|branch| collection.ino(&branch.index))
                .collect::<Option<Vec<i64>>>()
            else {
                return Ok(());
            };
            let sql = union_sql(branches.len());
            loop {
                let mut statement = connection.prepare_cached(&sql)?;
                let values = union_params(cid, branches, &inos, after.as_ref(), chunk);
                let mut rows = statement.query(rusqlite::params_from_iter(values))?;
                let mut read = 0;
                while let Some(row) = rows.next()? {
                    read += 1;
                    let suffix: Vec<u8> = row.get(0)?;
                    let (document, bytes) = document_from(row.get(1)?, row.get(2)?, row.get(3)?)?;
                    let position = (suffix, document.id.clone());
                    after = Some(position.clone());
                    if residual
                        .as_ref()
                        .is_some_and(|filter| !matches(filter, &document.data))
                    {
                        continue;
                    }
                    if !visit(position, document, bytes) {
                        return Ok(());
                    }
                }
                // Fewer than asked: every range ran out (a range that had
                // a chunk's worth would have filled it).
                if read < chunk {
                    return Ok(());
                }
                chunk = MAX_CHUNK;
            }
        }
    }
}

/// One range of one index, and the terms checked on its documents.
struct Range<'a> {
    cid: i64,
    ino: i64,
    bounds: &'a Bounds,
    residual: Option<&'a Filter>,
}

/// Reads a range in key order after `after`, a chunk at a time (the first
/// `chunk` long), and hands each document that is not `seen` and passes
/// the residual terms to `visit`; `false` when `visit` said stop.
fn walk_range(
    connection: &Connection,
    range: &Range<'_>,
    mut chunk: usize,
    mut after: Option<Position>,
    seen: impl Fn(&Document) -> bool,
    visit: &mut impl FnMut(Position, Document, usize) -> bool,
) -> Result<bool> {
    const MAX_CHUNK: usize = 256;
    loop {
        let Bounds { lower, upper } = range.bounds.clone();
        let sql = "SELECT e.key, e.id, d.version, d.body FROM doc_index_entries e
               JOIN docs d ON d.cid = e.cid AND d.id = e.id
             WHERE e.cid = ?1 AND e.ino = ?2 AND e.key >= ?3 AND e.key < ?4
               AND (?5 IS NULL OR e.key > ?5 OR (e.key = ?5 AND e.id > ?6))
             ORDER BY e.key, e.id LIMIT ?7";
        // Start the range at the cursor, so a deep page seeks instead of
        // reading everything before it.
        let lower = match &after {
            Some((key, _)) if *key > lower => key.clone(),
            _ => lower,
        };
        let mut statement = connection.prepare_cached(sql)?;
        let (after_key, after_id) = match &after {
            Some((key, id)) => (Some(key.clone()), id.clone()),
            None => (None, String::new()),
        };
        let mut rows = statement.query(params![
            range.cid,
            range.ino,
            lower,
            upper,
            after_key,
            after_id,
            chunk as i64
        ])?;
        let mut read = 0;
        while let Some(row) = rows.next()? {
            read += 1;
            let key: Vec<u8> = row.get(0)?;
            let (document, bytes) = document_from(row.get(1)?, row.get(2)?, row.get(3)?)?;
            let position = (key, document.id.clone());
            after = Some(position.clone());
            if seen(&document)
                || range
                    .residual
                    .is_some_and(|filter| !matches(filter, &document.data))
            {
                continue;
            }
            if !visit(position, document, bytes) {
                return Ok(false);
            }
        }
        if read < chunk {
            return Ok(true);
        }
        chunk = MAX_CHUNK;
    }
}

/// The statement reading a chunk of a union of `branches` ranges in the
/// query's order, each document once: each range's next chunk from the
/// cursor on (a seek of the primary key), with its keys cut to the sort
/// suffix; `UNION` keeps one row of a document that two ranges hold (the
/// same suffix and id), and the first chunk of what is left is the
/// union's next chunk. Parameters: `?1` the collection, `?2` the chunk,
/// then six per range (see [`union_params`]).
fn union_sql(branches: usize) -> String {
    let ranges: Vec<String> = (0..branches)
        .map(|at| {
            let n = 3 + 6 * at;
            // The range's start is given as the position to resume after
            // (never below the range): with the range's own lower bound
            // beside an `OR`, SQLite seeks from the position, and a
            // position below the range would read every key before it.
            format!(
                "SELECT * FROM (SELECT substr(key, ?{start}) AS suffix, id FROM doc_index_entries
                   WHERE cid = ?1 AND ino = ?{ino} AND key >= ?{lower} AND key < ?{upper}
                     AND (key > ?{after} OR (key = ?{after} AND id > ?{after_id}))
                   ORDER BY key, id LIMIT ?2)",
                ino = n,
                start = n + 1,
                lower = n + 2,
                upper = n + 3,
                after = n + 4,
                after_id = n + 5,
            )
        })
        .collect();
    format!(
        "SELECT u.suffix, u.id, d.version, d.body FROM ({}) AS u
           JOIN docs d ON d.cid = ?1 AND d.id = u.id
         ORDER BY u.suffix, u.id LIMIT ?2",
        ranges.join(" UNION ")
    )
}

/// The parameters of [`union_sql`]. Per range: its index, where its
/// suffix starts (1-based), its lower bound, its upper bound, and where to
/// resume: the cursor's key in it (the prefix, then the cursor's suffix)
/// and id, or, when the cursor is below the range (or there is none), the
/// range's lower bound and an empty id (below every id).
fn union_params(
    cid: i64,
    branches: &[Branch],
    inos: &[i64],
    after: Option<&Position>,
    chunk: usize,
) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    let mut values = vec![Sql::Integer(cid), Sql::Integer(chunk as i64)];
    for (branch, ino) in branches.iter().zip(inos) {
        let (after_key, after_id) = match after {
            Some((suffix, id)) => {
                let key = branch.key_at(suffix);
                if key >= branch.bounds.lower {
                    (key, id.clone())
                } else {
                    (branch.bounds.lower.clone(), String::new())
                }
            }
            None => (branch.bounds.lower.clone(), String::new()),
        };
        values.extend([
            Sql::Integer(*ino),
            Sql::Integer(branch.prefix.len() as i64 + 1),
            Sql::Blob(branch.bounds.lower.clone()),
            Sql::Blob(branch.bounds.upper.clone()),
            Sql::Blob(after_key),
            Sql::Text(after_id),
        ]);
    }
    values
}

/// A stored document, and the size of its stored body.
fn document_from(id: String, version: i64, body: String) -> Result<(Document, usize)> {
    let document = Document {
        id,
        version: version as u64,
        data: parse_body(&body)?,
    };
    Ok((document, body.len()))
}

fn planned(
    connection: &Connection,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
    order: Order,
) -> Result<Option<(Collection, Plan)>> {
    let Some(found) = collection(connection, project, name)? else {
        return Ok(None);
    };
    let indexes: Vec<Index> = found.ready().map(|(_, index)| index.clone()).collect();
    let chosen = plan(query, &indexes, found.documents, name.as_str(), order)?;
    Ok(Some((found, chosen)))
}

/// A page of the query's results: at most its `limit` documents, and at
/// most `max_bytes` of them (as stored; a page holds one document at least).
pub(crate) fn query(
    connection: &Connection,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
    max_bytes: usize,
) -> Result<QueryPage> {
    let Some((found, chosen)) = planned(connection, project, name, query, Order::Matters)? else {
        // Checked anyway, so that a bad cursor fails the same way always.
        if query.cursor.is_some() {
            decode_cursor(query, &Plan::ById { residual: None })?;
        }
        return Ok(QueryPage {
            documents: Vec::new(),
            next_cursor: None,
        });
    };
    let after = decode_cursor(query, &chosen)?;
    let mut page = PageBuilder::new(query.limit, max_bytes);
    walk(
        connection,
        &found,
        &chosen,
        page.read_limit(),
        after,
        |position, document, bytes| page.take(position, document, bytes),
    )?;
    Ok(page.finish(query, &chosen))
}

pub(crate) fn count(
    connection: &Connection,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
) -> Result<u64> {
    let Some((found, chosen)) = planned(connection, project, name, query, Order::Ignored)? else {
        return Ok(0);
    };
    match &chosen {
        Plan::ById { residual: None } => return Ok(found.documents),
        Plan::Index {
            index,
            bounds,
            residual: None,
            ..
        } => {
            if let Some((ino, _)) = found.indexes.iter().find(|(_, i)| i.name == index.name) {
                let total: i64 = connection
                    .prepare_cached(
                        "SELECT count(*) FROM doc_index_entries
                         WHERE cid = ? AND ino = ? AND key >= ? AND key < ?",
                    )?
                    .query_row(params![found.cid, ino, bounds.lower, bounds.upper], |row| {
                        row.get(0)
                    })?;
                return Ok(total as u64);
            }
        }
        Plan::Union {
            branches,
            residual: None,
            ..
        } => {
            // Every entry in a range matches: the ids of all, once each.
            if let Some(inos) = branches
                .iter()
                .map(|branch| found.ino(&branch.index))
                .collect::<Option<Vec<i64>>>()
            {
                let ranges: Vec<String> = (0..branches.len())
                    .map(|at| {
                        let n = 2 + 3 * at;
                        format!(
                            "SELECT id FROM doc_index_entries
                             WHERE cid = ?1 AND ino = ?{} AND key >= ?{} AND key < ?{}",
                            n,
                            n + 1,
                            n + 2
                        )
                    })
                    .collect();
                let sql = format!("SELECT count(*) FROM ({})", ranges.join(" UNION "));
                let mut values = vec![rusqlite::types::Value::Integer(found.cid)];
                for (branch, ino) in branches.iter().zip(inos) {
                    values.extend([
                        rusqlite::types::Value::Integer(ino),
                        rusqlite::types::Value::Blob(branch.bounds.lower.clone()),
                        rusqlite::types::Value::Blob(branch.bounds.upper.clone()),
                    ]);
                }
                let total: i64 = connection
                    .prepare_cached(&sql)?
                    .query_row(rusqlite::params_from_iter(values), |row| row.get(0))?;
                return Ok(total as u64);
            }
        }
        _ => {}
    }
    let mut total = 0;
    walk(
        connection,
        &found,
        &chosen,
        MAX_CHUNK_COUNT,
        None,
        |_, _, _| {
            total += 1;
            true
        },
    )?;
    Ok(total)
}

pub(crate) fn explain(
    connection: &Connection,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
) -> Result<Explain> {
    match planned(connection, project, name, query, Order::Matters)? {
        Some((found, chosen)) => Ok(chosen.explain(found.documents)),
        None => Ok(plan(query, &[], 0, name.as_str(), Order::Matters)?.explain(0)),
    }
}

/// Documents indexed per chunk when an index is built: other writes wait
/// for one chunk at most, not for the whole collection.
const FILL_CHUNK: u32 = 500;

#[store::async_trait]
impl DocStore for SqliteStore {
    async fn doc_get(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        let (project, collection, id) = (project.clone(), collection.clone(), id.to_owned());
        self.read(move |connection| get_document(connection, &project, &collection, &id))
            .await
    }

    async fn doc_write(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        writes: Vec<DocWrite>,
    ) -> Result<Vec<DocWritten>, StoreError> {
        let (project, origin) = (project.clone(), origin.cloned());
        self.writer()
            .transaction(move |transaction| {
                apply_doc_batch(transaction, &project, origin.as_ref(), &writes)
            })
            .await
    }

    async fn doc_query(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<QueryPage, StoreError> {
        let (project, collection, query) = (project.clone(), collection.clone(), query.clone());
        self.read(move |connection| {
            self::query(
                connection,
                &project,
                &collection,
                &query,
                store::docs::MAX_PAGE_BYTES,
            )
        })
        .await
    }

    async fn doc_snapshot(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<(Vec<Document>, i64), StoreError> {
        let mut query = query.clone();
        query.limit = store::docs::MAX_QUERY_LIMIT;
        query.cursor = None;
        let (project, collection) = (project.clone(), collection.clone());
        self.read(move |connection| {
            // One read transaction: the position and the documents agree.
            connection.execute_batch("BEGIN")?;
            let read = (|| {
                let position: i64 = connection.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM events",
                    [],
                    |row| row.get(0),
                )?;
                let page = self::query(
                    connection,
                    &project,
                    &collection,
                    &query,
                    store::docs::MAX_SNAPSHOT_BYTES,
                )?;
                if page.next_cursor.is_some() {
                    return Err(StoreError::InvalidQuery(format!(
                        "a live query may match at most {} documents and {} MiB of them; narrow its filter",
                        store::docs::MAX_QUERY_LIMIT,
                        store::docs::MAX_SNAPSHOT_BYTES >> 20
                    ))
                    .into());
                }
                Ok((page.documents, position))
            })();
            connection.execute_batch("COMMIT")?;
            read
        })
        .await
    }

    async fn doc_count(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<u64, StoreError> {
        let (project, collection, query) = (project.clone(), collection.clone(), query.clone());
        self.read(move |connection| count(connection, &project, &collection, &query))
            .await
    }

    async fn doc_explain(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<Explain, StoreError> {
        let (project, collection, query) = (project.clone(), collection.clone(), query.clone());
        self.read(move |connection| explain(connection, &project, &collection, &query))
            .await
    }

    async fn doc_create_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        index: Index,
    ) -> Result<(), StoreError> {
        let (project, collection) = (project.clone(), collection.clone());
        let store = self.clone();
        // Made in several transactions (a chunk a batch, so other writes go
        // on meanwhile), in a task of its own: a caller that goes away
        // must not leave an unfinished index holding its name until the
        // next start.
        let steps = async move {
            let (cid, ino) = store
                .writer()
                .transaction(move |transaction| {
                    apply_create_index(transaction, &project, &collection, &index)
                })
                .await?;
            let mut after = String::new();
            loop {
                let from = after.clone();
                let next = store
                    .writer()
                    .transaction(move |transaction| {
                        apply_fill_index(transaction, cid, ino, &from, FILL_CHUNK)
                    })
                    .await?;
                match next {
                    Some(next) => after = next,
                    None => break,
                }
            }
            store
                .writer()
                .transaction(move |transaction| apply_finish_index(transaction, cid, ino))
                .await
                .map(|_| ())
        };
        match tokio::spawn(steps).await {
            Ok(made) => made,
            Err(error) => Err(StoreError::backend(
                format!("the index task failed: {error}"),
                false,
            )),
        }
    }

    async fn doc_drop_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        name: &str,
    ) -> Result<bool, StoreError> {
        let (project, collection, name) = (project.clone(), collection.clone(), name.to_owned());
        self.writer()
            .transaction(move |transaction| {
                apply_drop_index(transaction, &project, &collection, &name)
            })
            .await
    }

    async fn doc_drop_collection(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
    ) -> Result<bool, StoreError> {
        let (project, collection) = (project.clone(), collection.clone());
        self.writer()
            .transaction(move |transaction| {
                apply_drop_collection(transaction, &project, &collection)
            })
            .await
    }

    async fn doc_collections(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<CollectionInfo>, StoreError> {
        let project = project.clone();
        self.read(move |connection| collections(connection, &project))
            .await
    }
}
