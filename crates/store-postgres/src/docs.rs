//! Documents on PostgreSQL. A collection is a row of `doc_collections`
//! with a number (`cid`) that documents (`docs`, the body as JSON text)
//! and index entries are keyed by; an index entry is `(cid, index number,
//! sort key, document id)`, the key the byte encoding of `store::docs`
//! (`bytea` compares bytewise), so a query is a range scan of one primary
//! key. A collection's row is never deleted (dropping a collection empties
//! it), so a `cid` once read stays good.
//!
//! Versions come from the global `doc_versions` sequence (no counter row
//! for writers to queue on); index numbers too, so that a number is never
//! given to two indexes, even after a drop. The number of documents is
//! counted when asked, never kept in a row: the planner only needs to
//! know whether there are more than `SCAN_LIMIT`, a count that stops
//! there. Listing collections, `explain`, a count of the whole collection
//! and the message of a refused query count them all (a read of the
//! primary key).
//!
//! A batch is one READ COMMITTED transaction. Each write locks its
//! document (`SELECT … FOR UPDATE`); a document that is not there is
//! inserted `ON CONFLICT DO NOTHING`, and read again if another writer
//! made it meanwhile. Change events go to an `Outbox` (as
//! `Outbox::log_change` does, the stream's `watched` asked once per batch
//! rather than once per write) and are numbered last before the commit.
//!
//! Indexes change under an advisory lock per collection: writers and the
//! filler of an index hold it shared (for their transaction), declaring
//! or dropping an index or dropping the collection hold it exclusive. So
//! once an index is declared, every write that commits afterwards read
//! the declaration and keeps the index's entries current. The filler then
//! reads the documents in chunks by id, each chunk in a transaction that
//! locks its documents `FOR SHARE`: a writer of one of them waits for the
//! chunk (and then moves the entry the chunk made), and a document the
//! chunk cannot see yet is one a writer is making, who adds its entry.
//! An empty chunk marks the index ready, and queries start using it.
//!
//! The filler holds a session-level advisory lock on its index for as
//! long as it runs: an index not ready whose lock is free has lost its
//! filler (its node stopped), and is dropped at the next start of any
//! node, or when an index of its name is declared again. A node that
//! starts does not drop an index another node is still filling.
//!
//! Reads (a page, a count, a snapshot) run in one REPEATABLE READ
//! transaction, so everything they read is from one moment. For
//! `doc_snapshot` the moment matters: the documents and the largest
//! position of the collection's stream are read in the same snapshot.
//! Positions of a stream are drawn under the stream's advisory lock,
//! which a writer holds until its commit is visible (`outbox.rs`): a
//! transaction of the stream that commits after the snapshot drew its
//! positions after every one that committed before it, so above all the
//! positions the snapshot sees; and one that committed before the
//! snapshot is seen whole, documents and events. So the changes logged
//! after the position are exactly those the snapshot does not show. (The
//! largest position of the whole log would not do: another stream's
//! event can be numbered above one of this stream that commits later.)
use crate::outbox::{self, Outbox};
use crate::{Db, Error, PgStore, Result, number, stored};
use deadpool_postgres::GenericClient;
use domain::{CollectionName, FunctionName, ProjectId};
use serde_json::{Map, Value};
use std::collections::HashMap;
use store::StoreError;
use store::docs::shared::{PageBuilder, Position, change_event, check_condition, decode_cursor};
use store::docs::{
    Bounds, Branch, CollectionInfo, DocCondition, DocStore, DocWrite, DocWritten, Document,
    Explain, Filter, Index, IndexField, MAX_INDEXES, MAX_QUERY_LIMIT, MAX_SNAPSHOT_BYTES, Order,
    Plan, Query, QueryPage, SCAN_LIMIT, encode_part, index_key, matches, parse_index_fields, plan,
    validate_document, validate_id,
};
use tokio_postgres::types::ToSql;

use tokio_postgres::IsolationLevel;

/// Documents indexed per chunk when an index is filled: a writer waits
/// for one chunk at most, not for the whole collection.
const FILL_CHUNK: i64 = 500;

/// Times a chunk of a fill is tried when it fails in a way that may pass
/// (a deadlock with a batch that locks the same documents).
const FILL_ATTEMPTS: u32 = 5;

/// A collection as stored: its number and indexes (with numbers).
struct Collection {
    cid: i64,
    /// Every index, filled or being filled: writes keep all of them.
    indexes: Vec<(i64, Index)>,
    /// Numbers of the indexes still being filled: queries do not use them.
    building: Vec<i64>,
}

impl Collection {
    /// The number of an index (one being filled too: plans are made of
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

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error(StoreError::Corrupt(what.to_string()))
}

/// What the advisory lock on a collection's indexes is named by (never a
/// stream's lock name, `project\nstream`: no project has a space).
fn collection_lock(cid: i64) -> String {
    format!("doc collection\n{cid}")
}

/// What the session lock of an index's filler is named by.
fn index_lock(ino: i64) -> String {
    format!("doc index\n{ino}")
}

/// Holds the collection's lock for the transaction: shared (a writer of
/// documents or entries) or exclusive (a change of its indexes).
async fn lock_collection(client: &impl GenericClient, cid: i64, exclusive: bool) -> Result<()> {
    let statement = client
        .prepare_cached(if exclusive {
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
        } else {
            "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"
        })
        .await?;
    client.execute(&statement, &[&collection_lock(cid)]).await?;
    Ok(())
}

fn fields_to_json(fields: &[IndexField]) -> String {
    let names: Vec<String> = fields
        .iter()
        .map(|field| format!("{}{}", if field.descending { "-" } else { "" }, field.field))
        .collect();
    Value::from(names).to_string()
}

fn index_from(name: String, fields: &str) -> Result<Index> {
    let fields: Value = serde_json::from_str(fields).map_err(corrupt)?;
    let fields = parse_index_fields(&fields).map_err(corrupt)?;
    Ok(Index { name, fields })
}

/// The collection and its indexes, if it was ever written.
async fn collection(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<Option<Collection>> {
    let statement = client
        .prepare_cached(
            "SELECT c.cid, i.ino, i.name, i.fields, i.ready
             FROM doc_collections c LEFT JOIN doc_indexes i ON i.cid = c.cid
             WHERE c.project = $1 AND c.name = $2
             ORDER BY i.name COLLATE \"C\"",
        )
        .await?;
    let rows = client
        .query(&statement, &[&project.as_str(), &name.as_str()])
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut found = Collection {
        cid: first.get(0),
        indexes: Vec::new(),
        building: Vec::new(),
    };
    for row in &rows {
        let Some(ino) = row.get::<_, Option<i64>>(1) else {
            continue;
        };
        found
            .indexes
            .push((ino, index_from(row.get(2), row.get(3))?));
        if !row.get::<_, bool>(4) {
            found.building.push(ino);
        }
    }
    Ok(Some(found))
}

/// A collection's indexes: number, definition, and whether it is filled.
async fn indexes(client: &impl GenericClient, cid: i64) -> Result<Vec<(i64, Index, bool)>> {
    let statement = client
        .prepare_cached(
            "SELECT ino, name, fields, ready FROM doc_indexes WHERE cid = $1
             ORDER BY name COLLATE \"C\"",
        )
        .await?;
    let mut out = Vec::new();
    for row in client.query(&statement, &[&cid]).await? {
        out.push((row.get(0), index_from(row.get(1), row.get(2))?, row.get(3)));
    }
    Ok(out)
}

/// The collection's number, its row made if it has none (race-free: a
/// row another transaction is making is waited for, then read).
async fn ensure_collection(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<i64> {
    let select = client
        .prepare_cached("SELECT cid FROM doc_collections WHERE project = $1 AND name = $2")
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&project.as_str(), &name.as_str()];
    if let Some(row) = client.query_opt(&select, &params).await? {
        return Ok(row.get(0));
    }
    let insert = client
        .prepare_cached(
            "INSERT INTO doc_collections (project, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await?;
    client.execute(&insert, &params).await?;
    match client.query_opt(&select, &params).await? {
        Some(row) => Ok(row.get(0)),
        None => Err(corrupt(format!(
            "collection {name} vanished while being written"
        ))),
    }
}

/// The collection, made if need be, with its lock held shared: its
/// indexes stay these until the transaction ends.
async fn collection_for_writing(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<Collection> {
    let cid = ensure_collection(client, project, name).await?;
    lock_collection(client, cid, false).await?;
    // Read after the lock (a statement of its own, so its snapshot is).
    let all = indexes(client, cid).await?;
    Ok(Collection {
        cid,
        building: all
            .iter()
            .filter(|(_, _, ready)| !ready)
            .map(|(ino, _, _)| *ino)
            .collect(),
        indexes: all
            .into_iter()
            .map(|(ino, index, _)| (ino, index))
            .collect(),
    })
}

fn parse_body(body: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(body).map_err(corrupt)? {
        Value::Object(data) => Ok(data),
        _ => Err(corrupt("a stored document is not an object")),
    }
}

/// A stored document, and the size of its stored body.
fn document_from(id: String, version: i64, body: &str) -> Result<(Document, usize)> {
    let document = Document {
        id,
        version: number(version)?,
        data: parse_body(body)?,
    };
    Ok((document, body.len()))
}

/// The live document, its row locked for the transaction.
async fn lock_document(
    client: &impl GenericClient,
    cid: i64,
    id: &str,
) -> Result<Option<Document>> {
    let statement = client
        .prepare_cached("SELECT version, body FROM docs WHERE cid = $1 AND id = $2 FOR UPDATE")
        .await?;
    match client.query_opt(&statement, &[&cid, &id]).await? {
        Some(row) => Ok(Some(
            document_from(id.to_owned(), row.get(0), row.get(1))?.0,
        )),
        None => Ok(None),
    }
}

async fn get_document(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    id: &str,
) -> Result<Option<Document>> {
    let statement = client
        .prepare_cached(
            "SELECT d.version, d.body FROM doc_collections c
               JOIN docs d ON d.cid = c.cid AND d.id = $3
             WHERE c.project = $1 AND c.name = $2",
        )
        .await?;
    match client
        .query_opt(&statement, &[&project.as_str(), &name.as_str(), &id])
        .await?
    {
        Some(row) => Ok(Some(
            document_from(id.to_owned(), row.get(0), row.get(1))?.0,
        )),
        None => Ok(None),
    }
}

/// What a batch has learnt so far: its collections (their locks held)
/// and whether anything reads their streams, and the events it logs.
#[derive(Default)]
struct Batch {
    collections: HashMap<CollectionName, Collection>,
    watched: HashMap<String, bool>,
    outbox: Outbox,
}

/// Applies an atomic batch in `transaction`: one answer per write, or the
/// first failure as [`StoreError::BatchFailed`] (the caller then rolls
/// back). Returns the events to write with it.
async fn apply_batch(
    transaction: &impl GenericClient,
    project: &ProjectId,
    origin: Option<&FunctionName>,
    writes: &[DocWrite],
) -> Result<(Vec<DocWritten>, Outbox)> {
    let mut batch = Batch::default();
    // Whether its streams are watched, asked first and in one order (the
    // answers hold shared locks, which a new reader of a stream takes
    // exclusively, several in the same order: see `outbox::watched`).
    let mut streams: Vec<String> = writes
        .iter()
        .map(|write| domain::documents_stream(write.collection()))
        .collect();
    streams.sort();
    streams.dedup();
    for stream in streams {
        let watched = outbox::watched(transaction, project, &stream).await?;
        batch.watched.insert(stream, watched);
    }
    let mut results = Vec::with_capacity(writes.len());
    for (at, write) in writes.iter().enumerate() {
        match apply_write(transaction, project, origin, write, &mut batch).await {
            Ok(done) => results.push(done),
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
    Ok((results, batch.outbox))
}

async fn apply_write(
    transaction: &impl GenericClient,
    project: &ProjectId,
    origin: Option<&FunctionName>,
    write: &DocWrite,
    batch: &mut Batch,
) -> Result<DocWritten> {
    let name = write.collection();
    if !batch.collections.contains_key(name) {
        let found = collection_for_writing(transaction, project, name).await?;
        batch.collections.insert(name.clone(), found);
    }
    let collection = &batch.collections[name];
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
    // Until the document is locked, or inserted by this write (another
    // writer may make it between the read and the insert: read again).
    let (live, new_data, version) = loop {
        let live = lock_document(transaction, cid, &id).await?;
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
        let Some(data) = &new_data else {
            if live.is_some() {
                let statement = transaction
                    .prepare_cached("DELETE FROM docs WHERE cid = $1 AND id = $2")
                    .await?;
                transaction.execute(&statement, &[&cid, &id]).await?;
            }
            break (live, None, None);
        };
        validate_document(data)?;
        let body = serde_json::to_string(data).map_err(corrupt)?;
        let written = if live.is_some() {
            let statement = transaction
                .prepare_cached(
                    "UPDATE docs SET version = nextval('doc_versions'), body = $3
                     WHERE cid = $1 AND id = $2 RETURNING version",
                )
                .await?;
            transaction
                .query_opt(&statement, &[&cid, &id, &body])
                .await?
        } else {
            let statement = transaction
                .prepare_cached(
                    "INSERT INTO docs (cid, id, version, body)
                     VALUES ($1, $2, nextval('doc_versions'), $3)
                     ON CONFLICT (cid, id) DO NOTHING RETURNING version",
                )
                .await?;
            transaction
                .query_opt(&statement, &[&cid, &id, &body])
                .await?
        };
        match written {
            Some(row) => break (live, new_data, Some(number::<u64>(row.get(0))?)),
            // Made by another writer since the read (an update cannot
            // miss: the row is locked).
            None => continue,
        }
    };

    // Index entries follow the document: the old keys out, the new in.
    for (ino, index) in &collection.indexes {
        let old_key = live.as_ref().map(|live| index_key(index, &live.data));
        let new_key = new_data.as_ref().map(|data| index_key(index, data));
        if old_key == new_key {
            continue;
        }
        if let Some(old_key) = old_key {
            let statement = transaction
                .prepare_cached(
                    "DELETE FROM doc_index_entries
                     WHERE cid = $1 AND ino = $2 AND key = $3 AND id = $4",
                )
                .await?;
            transaction
                .execute(&statement, &[&cid, ino, &old_key, &id])
                .await?;
        }
        if let Some(new_key) = new_key {
            // The filler of an index being built may have made it already.
            let statement = transaction
                .prepare_cached(
                    "INSERT INTO doc_index_entries (cid, ino, key, id) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            transaction
                .execute(&statement, &[&cid, ino, &new_key, &id])
                .await?;
        }
    }

    let stream = domain::documents_stream(name);
    let watched = match batch.watched.get(&stream) {
        Some(watched) => *watched,
        None => {
            let watched = outbox::watched(transaction, project, &stream).await?;
            batch.watched.insert(stream.clone(), watched);
            watched
        }
    };
    if watched && (live.is_some() || new_data.is_some()) {
        let event_version = match (version, &live) {
            (Some(version), _) => version,
            (None, Some(live)) => live.version,
            (None, None) => 0,
        };
        let before = live.as_ref().map(|live| &live.data);
        let change = change_event(
            stream,
            origin,
            &id,
            event_version,
            before,
            new_data.as_ref(),
        );
        batch.outbox.push(project, change);
    }
    Ok(DocWritten {
        id,
        version,
        existed: live.is_some(),
    })
}

/// Declares an index, not yet filled (queries do not use it) under the
/// number `ino`, whose lock the caller holds. An index of the same name
/// that lost its filler is dropped first.
async fn declare_index(
    transaction: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    index: &Index,
    ino: i64,
) -> Result<i64> {
    let cid = ensure_collection(transaction, project, name).await?;
    lock_collection(transaction, cid, true).await?;
    let mut existing = indexes(transaction, cid).await?;
    if let Some(at) = existing
        .iter()
        .position(|(_, found, _)| found.name == index.name)
    {
        let (old, _, ready) = existing[at];
        if ready || !drop_orphan(transaction, cid, old).await? {
            return Err(StoreError::IndexExists(index.name.clone()).into());
        }
        existing.remove(at);
    }
    if existing.len() >= MAX_INDEXES {
        return Err(StoreError::InvalidQuery(format!(
            "collection {name} has {MAX_INDEXES} indexes already, the most allowed"
        ))
        .into());
    }
    transaction
        .execute(
            "INSERT INTO doc_indexes (cid, name, ino, fields, ready) VALUES ($1, $2, $3, $4, FALSE)",
            &[&cid, &index.name, &ino, &fields_to_json(&index.fields)],
        )
        .await?;
    Ok(cid)
}

/// Drops an index not ready whose filler is gone (its lock is free), in a
/// transaction that holds the collection's lock exclusive. Returns
/// whether it was dropped (`false`: a filler is still at work on it).
async fn drop_orphan(transaction: &impl GenericClient, cid: i64, ino: i64) -> Result<bool> {
    let free: bool = transaction
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
            &[&index_lock(ino)],
        )
        .await?
        .get(0);
    if !free {
        return Ok(false);
    }
    transaction
        .execute(
            "DELETE FROM doc_index_entries WHERE cid = $1 AND ino = $2",
            &[&cid, &ino],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM doc_indexes WHERE cid = $1 AND ino = $2 AND NOT ready",
            &[&cid, &ino],
        )
        .await?;
    Ok(true)
}

/// Where a fill goes on from.
enum Filled {
    /// The last id of the chunk.
    After(String),
    /// Ready for queries, or dropped meanwhile.
    Done,
}

/// Fills an index being built with the entries of up to [`FILL_CHUNK`]
/// documents after `after` (by id), those documents locked against
/// writers for the chunk; an empty chunk marks the index ready.
async fn fill_chunk(
    transaction: &impl GenericClient,
    cid: i64,
    ino: i64,
    after: &str,
) -> Result<Filled> {
    lock_collection(transaction, cid, false).await?;
    let Some(row) = transaction
        .query_opt(
            "SELECT name, fields FROM doc_indexes WHERE cid = $1 AND ino = $2 AND NOT ready",
            &[&cid, &ino],
        )
        .await?
    else {
        return Ok(Filled::Done);
    };
    let index = index_from(row.get(0), row.get(1))?;
    let rows = transaction
        .query(
            "SELECT id, body FROM docs WHERE cid = $1 AND id > $2 ORDER BY id LIMIT $3 FOR SHARE",
            &[&cid, &after, &FILL_CHUNK],
        )
        .await?;
    let Some(last) = rows.last().map(|row| row.get::<_, String>(0)) else {
        transaction
            .execute(
                "UPDATE doc_indexes SET ready = TRUE WHERE cid = $1 AND ino = $2",
                &[&cid, &ino],
            )
            .await?;
        return Ok(Filled::Done);
    };
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
    let mut ids: Vec<String> = Vec::with_capacity(rows.len());
    for row in &rows {
        keys.push(index_key(&index, &parse_body(row.get(1))?));
        ids.push(row.get(0));
    }
    // Writers keep the index current for what they touch; they may have
    // made some of these entries already.
    transaction
        .execute(
            "INSERT INTO doc_index_entries (cid, ino, key, id)
             SELECT $1, $2, key, id FROM unnest($3::bytea[], $4::text[]) AS entry (key, id)
             ON CONFLICT DO NOTHING",
            &[&cid, &ino, &keys, &ids],
        )
        .await?;
    Ok(Filled::After(last))
}

/// Fills the declared index `ino` chunk by chunk, each chunk in a
/// transaction of its own, until it is ready (or dropped meanwhile).
async fn fill_index(client: &mut deadpool_postgres::Object, cid: i64, ino: i64) -> Result<()> {
    let mut after = String::new();
    loop {
        let mut attempt = 1;
        let filled = loop {
            let transaction = client.transaction().await?;
            let result = match fill_chunk(&transaction, cid, ino, &after).await {
                Ok(filled) => transaction
                    .commit()
                    .await
                    .map(|()| filled)
                    .map_err(Error::from),
                Err(error) => {
                    drop(transaction);
                    Err(error)
                }
            };
            match result {
                Ok(filled) => break filled,
                // A deadlock with a batch is broken by failing one side:
                // the chunk is tried again (it is idempotent). A lost
                // connection lost the index's lock too: give up.
                Err(error)
                    if error.0.is_retryable() && !client.is_closed() && attempt < FILL_ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
                }
                Err(error) => return Err(error),
            }
        };
        match filled {
            Filled::After(last) => after = last,
            Filled::Done => return Ok(()),
        }
    }
}

/// Creates an index from start to end (see [`DocStore::doc_create_index`])
/// on one connection, which holds the index's session lock meanwhile.
async fn create_index(
    store: PgStore,
    project: ProjectId,
    name: CollectionName,
    index: Index,
) -> Result<()> {
    let mut client = store.client().await?;
    let ino: i64 = client
        .query_one("SELECT nextval('doc_versions')", &[])
        .await?
        .get(0);
    // Taken before the index is declared, so that it is never seen
    // without its lock while the fill goes on.
    client
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&index_lock(ino)],
        )
        .await?;
    let transaction = client.transaction().await?;
    let declared = match declare_index(&transaction, &project, &name, &index, ino).await {
        Ok(cid) => transaction
            .commit()
            .await
            .map(|()| cid)
            .map_err(Error::from),
        Err(error) => {
            drop(transaction);
            Err(error)
        }
    };
    let made = match declared {
        Ok(cid) => {
            let filled = fill_index(&mut client, cid, ino).await;
            if filled.is_err() && !client.is_closed() {
                // Best effort: what is left is dropped at the next start,
                // or when the name is declared again.
                let _ = drop_index_number(&mut client, cid, ino).await;
            }
            filled
        }
        // Refused (its name taken, too many indexes), or failed: nothing
        // was declared.
        Err(error) => Err(error),
    };
    let unlocked = !client.is_closed()
        && client
            .execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                &[&index_lock(ino)],
            )
            .await
            .is_ok_and(|unlocked| unlocked == 1);
    if !unlocked {
        // The connection leaves the pool: closing it frees the session
        // lock, whatever state it is in.
        drop(deadpool_postgres::Object::take(client));
    }
    made
}

/// Drops the unready index `ino` (a failed fill's).
async fn drop_index_number(
    client: &mut deadpool_postgres::Object,
    cid: i64,
    ino: i64,
) -> Result<()> {
    let transaction = client.transaction().await?;
    lock_collection(&transaction, cid, true).await?;
    for statement in [
        "DELETE FROM doc_index_entries WHERE cid = $1 AND ino = $2",
        "DELETE FROM doc_indexes WHERE cid = $1 AND ino = $2 AND NOT ready",
    ] {
        transaction.execute(statement, &[&cid, &ino]).await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Drops the indexes whose filler is gone (its node stopped before the
/// index was full; its request was never answered), with their entries.
/// An index another node is filling now is left alone.
pub(crate) async fn drop_unfinished_indexes(client: &deadpool_postgres::Object) -> Result<()> {
    let unfinished = client
        .query("SELECT cid, ino FROM doc_indexes WHERE NOT ready", &[])
        .await?;
    for row in unfinished {
        let (cid, ino): (i64, i64) = (row.get(0), row.get(1));
        client.batch_execute("BEGIN").await?;
        let dropped = async {
            // The index's lock first, then the collection's: a filler
            // takes them in that order too.
            let free: bool = client
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&index_lock(ino)],
                )
                .await?
                .get(0);
            if free {
                lock_collection(client, cid, true).await?;
                drop_orphan(client, cid, ino).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        match dropped {
            Ok(()) => client.batch_execute("COMMIT").await?,
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Drops an index, whether filled or being filled (its filler stops at
/// its next chunk).
async fn drop_index(
    transaction: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    index: &str,
) -> Result<bool> {
    let Some(found) = collection(transaction, project, name).await? else {
        return Ok(false);
    };
    lock_collection(transaction, found.cid, true).await?;
    // Read again under the lock.
    let Some(ino) = indexes(transaction, found.cid)
        .await?
        .into_iter()
        .find(|(_, existing, _)| existing.name == index)
        .map(|(ino, _, _)| ino)
    else {
        return Ok(false);
    };
    for statement in [
        "DELETE FROM doc_index_entries WHERE cid = $1 AND ino = $2",
        "DELETE FROM doc_indexes WHERE cid = $1 AND ino = $2",
    ] {
        transaction.execute(statement, &[&found.cid, &ino]).await?;
    }
    Ok(true)
}

/// Deletes every document and index of a collection, and its access rule.
/// The collection's row stays (versions come from a sequence, so none is
/// given out again); a collection with no documents and no indexes is not
/// listed. Returns whether there was anything to drop.
async fn drop_collection(
    transaction: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
) -> Result<bool> {
    let Some(found) = collection(transaction, project, name).await? else {
        return Ok(false);
    };
    lock_collection(transaction, found.cid, true).await?;
    let mut dropped = 0;
    for statement in [
        "DELETE FROM doc_index_entries WHERE cid = $1",
        "DELETE FROM doc_indexes WHERE cid = $1",
        "DELETE FROM docs WHERE cid = $1",
    ] {
        dropped += transaction.execute(statement, &[&found.cid]).await?;
    }
    if dropped == 0 {
        return Ok(false);
    }
    // Created again later, it starts private, as a new one.
    transaction
        .execute(
            "DELETE FROM access_rules WHERE project = $1 AND kind = 'collection' AND name = $2",
            &[&project.as_str(), &name.as_str()],
        )
        .await?;
    Ok(true)
}

async fn collections(
    client: &impl GenericClient,
    project: &ProjectId,
) -> Result<Vec<CollectionInfo>> {
    // Those with documents or indexes (dropped or emptied ones are not).
    let rows = client
        .query(
            "SELECT c.cid, c.name, (SELECT count(*) FROM docs d WHERE d.cid = c.cid)
             FROM doc_collections c WHERE c.project = $1
             ORDER BY c.name COLLATE \"C\"",
            &[&project.as_str()],
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let (cid, name, documents): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
        let all = indexes(client, cid).await?;
        if documents == 0 && all.is_empty() {
            continue;
        }
        out.push(CollectionInfo {
            name: stored(CollectionName::new(name))?,
            documents: number(documents)?,
            indexes: all
                .into_iter()
                .filter(|(_, _, ready)| *ready)
                .map(|(_, index, _)| index)
                .collect(),
        });
    }
    Ok(out)
}

/// The collection's documents, counted up to `limit`.
async fn count_documents(client: &impl GenericClient, cid: i64, limit: Option<i64>) -> Result<u64> {
    let row = match limit {
        Some(limit) => {
            let statement = client
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT 1 FROM docs WHERE cid = $1 LIMIT $2) AS bounded",
                )
                .await?;
            client.query_one(&statement, &[&cid, &limit]).await?
        }
        None => {
            let statement = client
                .prepare_cached("SELECT count(*) FROM docs WHERE cid = $1")
                .await?;
            client.query_one(&statement, &[&cid]).await?
        }
    };
    number(row.get(0))
}

/// Rows read at a time when counting.
const MAX_CHUNK_COUNT: usize = 256;

/// Reads documents in plan order after `after`, a chunk at a time, and
/// hands each match to `visit` until it says stop.
async fn walk(
    client: &impl GenericClient,
    collection: &Collection,
    plan: &Plan,
    wanted: usize,
    mut after: Option<Position>,
    mut visit: impl FnMut(Position, Document, usize) -> bool + Send,
) -> Result<()> {
    // The first chunk reads what the caller wants (a page and one more);
    // later ones, when filters dropped documents, read more at a time.
    const MAX_CHUNK: usize = 256;
    let mut chunk = wanted.clamp(1, MAX_CHUNK);
    let cid = collection.cid;
    match plan {
        Plan::Scan { residual, order_by } => {
            // Small collections only (the planner sees to it).
            let statement = client
                .prepare_cached("SELECT id, version, body FROM docs WHERE cid = $1")
                .await?;
            let mut found: Vec<(Position, Document, usize)> = Vec::new();
            for row in client.query(&statement, &[&cid]).await? {
                let (document, bytes) = document_from(row.get(0), row.get(1), row.get(2))?;
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
            let statement = client
                .prepare_cached(
                    "SELECT id, version, body FROM docs WHERE cid = $1 AND id > $2
                     ORDER BY id LIMIT $3",
                )
                .await?;
            let start = after.as_ref().map(|(_, id)| id.clone()).unwrap_or_default();
            let rows = client
                .query(&statement, &[&cid, &start, &(chunk as i64)])
                .await?;
            for row in &rows {
                let (document, bytes) = document_from(row.get(0), row.get(1), row.get(2))?;
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
            if rows.len() < chunk {
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
            walk_range(client, &range, chunk, after, |_| false, &mut visit)
                .await
                .map(|_| ())
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
                if !walk_range(client, &range, chunk, None, seen, &mut visit).await? {
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
            let statement = client.prepare_cached(&union_sql(branches.len())).await?;
            loop {
                let params = UnionParams::new(cid, branches, &inos, after.as_ref(), chunk);
                let rows = client.query(&statement, &params.refs()).await?;
                for row in &rows {
                    let suffix: Vec<u8> = row.get(0);
                    let (document, bytes) = document_from(row.get(1), row.get(2), row.get(3))?;
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
                if rows.len() < chunk {
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
async fn walk_range(
    client: &impl GenericClient,
    range: &Range<'_>,
    mut chunk: usize,
    mut after: Option<Position>,
    seen: impl Fn(&Document) -> bool + Send,
    visit: &mut (impl FnMut(Position, Document, usize) -> bool + Send),
) -> Result<bool> {
    const MAX_CHUNK: usize = 256;
    let Bounds { lower, upper } = range.bounds;
    let (cid, ino) = (range.cid, range.ino);
    loop {
        // From the cursor on, so that a deep page seeks instead of
        // reading everything before it.
        let rows = match &after {
            None => {
                let statement = client
                    .prepare_cached(
                        "SELECT e.key, e.id, d.version, d.body FROM doc_index_entries e
                           JOIN docs d ON d.cid = e.cid AND d.id = e.id
                         WHERE e.cid = $1 AND e.ino = $2 AND e.key >= $3 AND e.key < $4
                         ORDER BY e.key, e.id LIMIT $5",
                    )
                    .await?;
                client
                    .query(&statement, &[&cid, &ino, lower, upper, &(chunk as i64)])
                    .await?
            }
            Some((after_key, after_id)) => {
                let statement = client
                    .prepare_cached(
                        "SELECT e.key, e.id, d.version, d.body FROM doc_index_entries e
                           JOIN docs d ON d.cid = e.cid AND d.id = e.id
                         WHERE e.cid = $1 AND e.ino = $2 AND e.key >= $3 AND e.key < $4
                           AND (e.key, e.id) > ($5, $6)
                         ORDER BY e.key, e.id LIMIT $7",
                    )
                    .await?;
                client
                    .query(
                        &statement,
                        &[
                            &cid,
                            &ino,
                            lower,
                            upper,
                            after_key,
                            after_id,
                            &(chunk as i64),
                        ],
                    )
                    .await?
            }
        };
        for row in &rows {
            let key: Vec<u8> = row.get(0);
            let (document, bytes) = document_from(row.get(1), row.get(2), row.get(3))?;
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
        if rows.len() < chunk {
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
/// union's next chunk. Parameters: `$1` the collection, `$2` the chunk,
/// `$3` the cursor's id, then five per range (see [`UnionParams`]).
fn union_sql(branches: usize) -> String {
    let ranges: Vec<String> = (0..branches)
        .map(|at| {
            let n = 4 + 5 * at;
            format!(
                "(SELECT substr(key, ${start}) AS suffix, id FROM doc_index_entries
                   WHERE cid = $1 AND ino = ${ino} AND key >= ${lower} AND key < ${upper}
                     AND (key, id) > (${after}, $3)
                   ORDER BY key, id LIMIT $2)",
                ino = n,
                start = n + 1,
                lower = n + 2,
                upper = n + 3,
                after = n + 4,
            )
        })
        .collect();
    format!(
        "SELECT u.suffix, u.id, d.version, d.body FROM ({}) AS u
           JOIN docs d ON d.cid = $1 AND d.id = u.id
         ORDER BY u.suffix, u.id LIMIT $2",
        ranges.join(" UNION ")
    )
}

/// The parameters of [`union_sql`].
struct UnionParams {
    cid: i64,
    chunk: i64,
    after_id: String,
    ranges: Vec<RangeParams>,
}

/// The parameters of one range of [`union_sql`].
struct RangeParams {
    ino: i64,
    /// Where the sort suffix of a key starts (1-based).
    start: i32,
    /// The range's lower bound, raised to the cursor (a seek).
    lower: Vec<u8>,
    upper: Vec<u8>,
    /// The cursor's key in this range: the prefix, then the cursor's
    /// suffix (no cursor: empty, below every key).
    after_key: Vec<u8>,
}

impl UnionParams {
    fn new(
        cid: i64,
        branches: &[Branch],
        inos: &[i64],
        after: Option<&Position>,
        chunk: usize,
    ) -> Self {
        let ranges = branches
            .iter()
            .zip(inos)
            .map(|(branch, ino)| {
                let after_key = after
                    .map(|(suffix, _)| branch.key_at(suffix))
                    .unwrap_or_default();
                RangeParams {
                    ino: *ino,
                    start: i32::try_from(branch.prefix.len() + 1).unwrap_or(i32::MAX),
                    lower: branch.bounds.lower.clone().max(after_key.clone()),
                    upper: branch.bounds.upper.clone(),
                    after_key,
                }
            })
            .collect();
        Self {
            cid,
            chunk: chunk as i64,
            after_id: after.map(|(_, id)| id.clone()).unwrap_or_default(),
            ranges,
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut refs: Vec<&(dyn ToSql + Sync)> = vec![&self.cid, &self.chunk, &self.after_id];
        for range in &self.ranges {
            refs.extend([
                &range.ino as &(dyn ToSql + Sync),
                &range.start,
                &range.lower,
                &range.upper,
                &range.after_key,
            ]);
        }
        refs
    }
}

/// The collection (if any) and how the query runs over it. The planner
/// asks whether the collection is larger than [`SCAN_LIMIT`] only for a
/// plan that reads every document; then the documents are counted up to
/// one more (a refusal counts them all, for its message). A query an
/// index serves, or that reads by id with no filter, counts nothing.
async fn planned(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
    order: Order,
) -> Result<Option<(Collection, Plan)>> {
    let Some(found) = collection(client, project, name).await? else {
        return Ok(None);
    };
    let indexes: Vec<Index> = found.ready().map(|(_, index)| index.clone()).collect();
    if let served @ (Plan::Index { .. } | Plan::Union { .. } | Plan::ById { residual: None }) =
        plan(query, &indexes, 0, name.as_str(), order)?
    {
        return Ok(Some((found, served)));
    }
    let documents = count_documents(client, found.cid, Some(SCAN_LIMIT as i64 + 1)).await?;
    let chosen = match plan(query, &indexes, documents, name.as_str(), order) {
        Err(StoreError::UnindexedQuery(_)) => {
            let documents = count_documents(client, found.cid, None).await?;
            plan(query, &indexes, documents, name.as_str(), order)?
        }
        other => other?,
    };
    Ok(Some((found, chosen)))
}

/// A page of the query's results: at most its `limit` documents, and at
/// most `max_bytes` of them (as stored; a page holds one document at least).
async fn query_page(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
    max_bytes: usize,
) -> Result<QueryPage> {
    let Some((found, chosen)) = planned(client, project, name, query, Order::Matters).await? else {
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
        client,
        &found,
        &chosen,
        page.read_limit(),
        after,
        |position, document, bytes| page.take(position, document, bytes),
    )
    .await?;
    Ok(page.finish(query, &chosen))
}

async fn count(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
) -> Result<u64> {
    let Some((found, chosen)) = planned(client, project, name, query, Order::Ignored).await? else {
        return Ok(0);
    };
    match &chosen {
        Plan::ById { residual: None } => return count_documents(client, found.cid, None).await,
        Plan::Index {
            index,
            bounds,
            residual: None,
            ..
        } => {
            if let Some((ino, _)) = found.indexes.iter().find(|(_, i)| i.name == index.name) {
                let statement = client
                    .prepare_cached(
                        "SELECT count(*) FROM doc_index_entries
                         WHERE cid = $1 AND ino = $2 AND key >= $3 AND key < $4",
                    )
                    .await?;
                let total: i64 = client
                    .query_one(&statement, &[&found.cid, ino, &bounds.lower, &bounds.upper])
                    .await?
                    .get(0);
                return number(total);
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
                             WHERE cid = $1 AND ino = ${} AND key >= ${} AND key < ${}",
                            n,
                            n + 1,
                            n + 2
                        )
                    })
                    .collect();
                let sql = format!(
                    "SELECT count(*) FROM ({}) AS matched",
                    ranges.join(" UNION ")
                );
                let statement = client.prepare_cached(&sql).await?;
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&found.cid];
                for (branch, ino) in branches.iter().zip(&inos) {
                    params.extend([
                        ino as &(dyn ToSql + Sync),
                        &branch.bounds.lower,
                        &branch.bounds.upper,
                    ]);
                }
                let total: i64 = client.query_one(&statement, &params).await?.get(0);
                return number(total);
            }
        }
        _ => {}
    }
    let mut total = 0;
    walk(client, &found, &chosen, MAX_CHUNK_COUNT, None, |_, _, _| {
        total += 1;
        true
    })
    .await?;
    Ok(total)
}

async fn explain(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &CollectionName,
    query: &Query,
) -> Result<Explain> {
    match planned(client, project, name, query, Order::Matters).await? {
        Some((found, chosen)) => {
            let documents = count_documents(client, found.cid, None).await?;
            Ok(chosen.explain(documents))
        }
        None => Ok(plan(query, &[], 0, name.as_str(), Order::Matters)?.explain(0)),
    }
}

/// A read-only transaction whose statements all see one snapshot.
async fn read_transaction(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

#[store::async_trait]
impl DocStore for PgStore {
    async fn doc_get(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        let client = self.client().await?;
        get_document(&client, project, collection, id).await.db()
    }

    async fn doc_write(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        writes: Vec<DocWrite>,
    ) -> Result<Vec<DocWritten>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let (written, outbox) = apply_batch(&transaction, project, origin, &writes)
            .await
            .db()?;
        let events = outbox.write(&transaction).await.db()?;
        transaction.commit().await.db()?;
        self.after_commit(outbox::streams_of(&events));
        Ok(written)
    }

    async fn doc_query(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<QueryPage, StoreError> {
        let mut client = self.client().await?;
        let transaction = read_transaction(&mut client).await.db()?;
        let page = query_page(
            &transaction,
            project,
            collection,
            query,
            store::docs::MAX_PAGE_BYTES,
        )
        .await
        .db()?;
        transaction.commit().await.db()?;
        Ok(page)
    }

    async fn doc_snapshot(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<(Vec<Document>, i64), StoreError> {
        let mut query = query.clone();
        query.limit = MAX_QUERY_LIMIT;
        query.cursor = None;
        let mut client = self.client().await?;
        // One snapshot for the position and the documents (see the top of
        // this file for why the stream's largest position is the one).
        let transaction = read_transaction(&mut client).await.db()?;
        let statement = transaction
            .prepare_cached(
                "SELECT COALESCE(max(seq), 0) FROM events WHERE project = $1 AND stream = $2",
            )
            .await
            .db()?;
        let position: i64 = transaction
            .query_one(
                &statement,
                &[&project.as_str(), &domain::documents_stream(collection)],
            )
            .await
            .db()?
            .get(0);
        let page = query_page(
            &transaction,
            project,
            collection,
            &query,
            MAX_SNAPSHOT_BYTES,
        )
        .await
        .db()?;
        transaction.commit().await.db()?;
        if page.next_cursor.is_some() {
            return Err(StoreError::InvalidQuery(format!(
                "a live query may match at most {MAX_QUERY_LIMIT} documents and {} MiB of them; narrow its filter",
                MAX_SNAPSHOT_BYTES >> 20
            )));
        }
        Ok((page.documents, position))
    }

    async fn doc_count(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = read_transaction(&mut client).await.db()?;
        let total = count(&transaction, project, collection, query).await.db()?;
        transaction.commit().await.db()?;
        Ok(total)
    }

    async fn doc_explain(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Query,
    ) -> Result<Explain, StoreError> {
        let mut client = self.client().await?;
        let transaction = read_transaction(&mut client).await.db()?;
        let explained = explain(&transaction, project, collection, query)
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(explained)
    }

    async fn doc_create_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        index: Index,
    ) -> Result<(), StoreError> {
        // In a task of its own: a caller that goes away must not leave an
        // unfinished index holding its name.
        let steps = create_index(self.clone(), project.clone(), collection.clone(), index);
        match tokio::spawn(steps).await {
            Ok(made) => made.db(),
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
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let dropped = drop_index(&transaction, project, collection, name)
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(dropped)
    }

    async fn doc_drop_collection(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let dropped = drop_collection(&transaction, project, collection)
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(dropped)
    }

    async fn doc_collections(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<CollectionInfo>, StoreError> {
        let mut client = self.client().await?;
        let transaction = read_transaction(&mut client).await.db()?;
        let listed = collections(&transaction, project).await.db()?;
        transaction.commit().await.db()?;
        Ok(listed)
    }
}
