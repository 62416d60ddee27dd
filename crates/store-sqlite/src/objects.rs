//! Object metadata on SQLite. Writes run on the group-commit writer thread
//! (`apply_object_op`), reads on reader connections.
use crate::{Result, SqliteStore};
use domain::{BucketName, FunctionName, ProjectId, UnixMillis};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::Value;
use store::StoreError;
use store::events::NewEvent;
use store::objects::columns::{
    described_from_json, described_to_json, pairs_from_json, pairs_to_json, segments_from_json,
    segments_to_json,
};
use store::objects::{
    Bucket, ObjectCondition, ObjectDone, ObjectListing, ObjectMeta, ObjectOp, ObjectStore, Part,
    Upload,
};

fn corrupt(what: impl std::fmt::Display) -> crate::Error {
    crate::Error(StoreError::Corrupt(what.to_string()))
}

const OBJECT_COLUMNS: &str =
    "key, size, etag, content_type, metadata, checksums, last_modified, segments";

fn object_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ObjectMeta>> {
    let metadata: String = row.get(4)?;
    let checksums: String = row.get(5)?;
    let segments: String = row.get(7)?;
    let key: String = row.get(0)?;
    let size: i64 = row.get(1)?;
    let etag: String = row.get(2)?;
    let content_type: Option<String> = row.get(3)?;
    let last_modified: i64 = row.get(6)?;
    Ok((|| {
        let (metadata, headers) = described_from_json(&metadata)?;
        Ok(ObjectMeta {
            key,
            size: size as u64,
            etag,
            content_type,
            metadata,
            headers,
            checksums: pairs_from_json(&checksums)?,
            last_modified,
            segments: segments_from_json(&segments)?,
        })
    })())
}

const UPLOAD_COLUMNS: &str =
    "upload_id, key, initiated, content_type, metadata, checksum_algorithm";

fn upload_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Upload>> {
    let metadata: String = row.get(4)?;
    let upload = Upload {
        upload_id: row.get(0)?,
        key: row.get(1)?,
        initiated: row.get(2)?,
        content_type: row.get(3)?,
        metadata: Vec::new(),
        headers: Vec::new(),
        checksum_algorithm: row.get(5)?,
    };
    Ok(described_from_json(&metadata)
        .map(|(metadata, headers)| Upload {
            metadata,
            headers,
            ..upload
        })
        .map_err(crate::Error))
}

fn bucket_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Bucket>> {
    let name: String = row.get(0)?;
    let max: Option<i64> = row.get(2)?;
    let types: String = row.get(3)?;
    let created_at: i64 = row.get(1)?;
    Ok((|| {
        Ok(Bucket {
            name: BucketName::new(name).map_err(corrupt)?,
            created_at,
            max_object_bytes: max.map(|max| max as u64),
            content_types: serde_json::from_str(&types).map_err(corrupt)?,
        })
    })())
}

pub(crate) fn bucket(
    connection: &Connection,
    project: &ProjectId,
    name: &BucketName,
) -> Result<Option<Bucket>> {
    connection
        .prepare_cached(
            "SELECT name, created_at, max_object_bytes, content_types FROM buckets
             WHERE project = ? AND name = ?",
        )?
        .query_row(params![project.as_str(), name.as_str()], bucket_from_row)
        .optional()?
        .transpose()
}

pub(crate) fn buckets(connection: &Connection, project: &ProjectId) -> Result<Vec<Bucket>> {
    let mut statement = connection.prepare_cached(
        "SELECT name, created_at, max_object_bytes, content_types FROM buckets
         WHERE project = ? ORDER BY name",
    )?;
    let rows = statement.query_map(params![project.as_str()], bucket_from_row)?;
    rows.map(|row| row?).collect()
}

pub(crate) fn object(
    connection: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    key: &str,
) -> Result<Option<ObjectMeta>> {
    connection
        .prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE project = ? AND bucket = ? AND key = ?"
        ))?
        .query_row(
            params![project.as_str(), bucket.as_str(), key],
            object_from_row,
        )
        .optional()?
        .transpose()
}

pub(crate) fn objects(
    connection: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<ObjectListing> {
    let limit = limit as usize;
    let delimiter = delimiter.filter(|delimiter| !delimiter.is_empty());
    let mut listing = ObjectListing::default();
    // Read from max(after, prefix): after `after` (exclusive), or from the
    // prefix itself (inclusive).
    let (mut start, mut exclusive) = match after {
        Some(after) if after >= prefix => (after.to_owned(), true),
        _ => (prefix.to_owned(), false),
    };
    let mut last_position = String::new();
    loop {
        let sql = if exclusive {
            "SELECT key, size, etag, content_type, metadata, checksums, last_modified, segments
             FROM objects WHERE project = ?1 AND bucket = ?2 AND key > ?3 ORDER BY key LIMIT ?4"
        } else {
            "SELECT key, size, etag, content_type, metadata, checksums, last_modified, segments
             FROM objects WHERE project = ?1 AND bucket = ?2 AND key >= ?3 ORDER BY key LIMIT ?4"
        };
        let chunk = limit + 1;
        let mut statement = connection.prepare_cached(sql)?;
        let mut rows = statement.query(params![
            project.as_str(),
            bucket.as_str(),
            start,
            chunk as i64
        ])?;
        let mut read = 0;
        let mut jump = None;
        while let Some(row) = rows.next()? {
            read += 1;
            let object = object_from_row(row)??;
            if !object.key.starts_with(prefix) {
                return Ok(listing);
            }
            if listing.objects.len() + listing.common_prefixes.len() == limit {
                listing.next_after = Some(last_position);
                return Ok(listing);
            }
            let rolled = delimiter.and_then(|delimiter| {
                object.key[prefix.len()..]
                    .find(delimiter)
                    .map(|at| object.key[..prefix.len() + at + delimiter.len()].to_owned())
            });
            match rolled {
                Some(common) => {
                    // Every key under it rolls up into it: continue past
                    // them in one step instead of reading each.
                    last_position = common_end(&common);
                    listing.common_prefixes.push(common);
                    jump = Some(last_position.clone());
                    break;
                }
                None => {
                    last_position = object.key.clone();
                    listing.objects.push(object);
                }
            }
        }
        match jump {
            Some(next) => {
                start = next;
                exclusive = true;
            }
            None if read < chunk => return Ok(listing),
            None => {
                start = last_position.clone();
                exclusive = true;
            }
        }
    }
}

/// The greatest key under a common prefix, as a position to continue
/// after: the prefix followed by the highest character.
fn common_end(common: &str) -> String {
    format!("{common}\u{10FFFF}")
}

pub(crate) fn upload(
    connection: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
) -> Result<Option<Upload>> {
    connection
        .prepare_cached(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE project = ? AND bucket = ? AND upload_id = ?"
        ))?
        .query_row(params![project.as_str(), bucket.as_str(), upload_id], upload_from_row)
        .optional()?
        .transpose()
}

pub(crate) fn uploads(
    connection: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    prefix: &str,
    after: Option<(&str, &str)>,
    limit: u32,
) -> Result<Vec<Upload>> {
    let (after_key, after_id) = after.unwrap_or(("", ""));
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads
         WHERE project = ?1 AND bucket = ?2 AND (key > ?3 OR (key = ?3 AND upload_id > ?4))
           AND substr(key, 1, length(?5)) = ?5
         ORDER BY key, upload_id LIMIT ?6"
    ))?;
    let rows = statement.query_map(
        params![
            project.as_str(),
            bucket.as_str(),
            after_key,
            after_id,
            prefix,
            limit
        ],
        upload_from_row,
    )?;
    rows.map(|row| row?).collect()
}

fn part_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Part>> {
    let checksums: String = row.get(3)?;
    let part = Part {
        number: row.get(0)?,
        size: row.get::<_, i64>(1)? as u64,
        etag: row.get(2)?,
        checksums: Vec::new(),
        blob: row.get(4)?,
        last_modified: row.get(5)?,
    };
    Ok(pairs_from_json(&checksums)
        .map(|checksums| Part { checksums, ..part })
        .map_err(crate::Error))
}

pub(crate) fn parts(
    connection: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
    after: u32,
    limit: u32,
) -> Result<Vec<Part>> {
    let mut statement = connection.prepare_cached(
        "SELECT number, size, etag, checksums, blob, last_modified FROM upload_parts
         WHERE project = ? AND bucket = ? AND upload_id = ? AND number > ?
         ORDER BY number LIMIT ?",
    )?;
    let rows = statement.query_map(
        params![project.as_str(), bucket.as_str(), upload_id, after, limit],
        part_from_row,
    )?;
    rows.map(|row| row?).collect()
}

fn check(condition: &ObjectCondition, live: Option<&ObjectMeta>) -> Result<()> {
    let holds = match condition {
        ObjectCondition::Always => true,
        ObjectCondition::Absent => live.is_none(),
        ObjectCondition::ETag(etag) => live.is_some_and(|live| live.etag == *etag),
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::ConditionFailed.into())
    }
}

fn require_bucket(transaction: &Connection, project: &ProjectId, name: &BucketName) -> Result<()> {
    match bucket(transaction, project, name)? {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchBucket(name.to_string()).into()),
    }
}

fn trash(transaction: &Connection, blobs: &[String]) -> Result<()> {
    let mut insert =
        transaction.prepare_cached("INSERT OR IGNORE INTO blob_trash (blob) VALUES (?)")?;
    for blob in blobs {
        insert.execute(params![blob])?;
    }
    Ok(())
}

/// Writes `object` over the live one; returns whether one existed and its
/// blobs, now in the trash.
fn replace_object(
    transaction: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    object: &ObjectMeta,
    condition: &ObjectCondition,
) -> Result<ObjectDone> {
    require_bucket(transaction, project, bucket)?;
    let live = self::object(transaction, project, bucket, &object.key)?;
    check(condition, live.as_ref())?;
    let mut done = ObjectDone {
        existed: live.is_some(),
        trash: Vec::new(),
    };
    if let Some(live) = live {
        let keep: Vec<&str> = object
            .segments
            .iter()
            .map(|segment| segment.blob.as_str())
            .collect();
        done.trash = live
            .segments
            .into_iter()
            .map(|segment| segment.blob)
            .filter(|blob| !keep.contains(&blob.as_str()))
            .collect();
        trash(transaction, &done.trash)?;
    }
    transaction
        .prepare_cached(
            "INSERT OR REPLACE INTO objects
               (project, bucket, key, size, etag, content_type, metadata, checksums, last_modified, segments)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            project.as_str(),
            bucket.as_str(),
            object.key,
            object.size as i64,
            object.etag,
            object.content_type,
            described_to_json(&object.metadata, &object.headers),
            pairs_to_json(&object.checksums),
            object.last_modified,
            segments_to_json(&object.segments),
        ])?;
    Ok(done)
}

/// Removes an upload and its parts; the parts' blobs not in `keep` go to
/// the trash.
fn drop_upload(
    transaction: &Connection,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
    keep: &[&str],
) -> Result<Vec<String>> {
    let blobs: Vec<String> = transaction
        .prepare_cached(
            "DELETE FROM upload_parts WHERE project = ? AND bucket = ? AND upload_id = ?
             RETURNING blob",
        )?
        .query_map(
            params![project.as_str(), bucket.as_str(), upload_id],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    transaction
        .prepare_cached("DELETE FROM uploads WHERE project = ? AND bucket = ? AND upload_id = ?")?
        .execute(params![project.as_str(), bucket.as_str(), upload_id])?;
    let garbage: Vec<String> = blobs
        .into_iter()
        .filter(|blob| !keep.contains(&blob.as_str()))
        .collect();
    trash(transaction, &garbage)?;
    Ok(garbage)
}

pub(crate) fn apply_object_op(
    transaction: &mut Transaction<'_>,
    op: &ObjectOp,
    origin: Option<&FunctionName>,
) -> Result<ObjectDone> {
    let savepoint = transaction.savepoint()?;
    let done = apply(&savepoint, op)?;
    log_object_change(&savepoint, op, &done, origin)?;
    savepoint.commit()?;
    Ok(done)
}

/// Logs an object's creation (a put, a completed upload) or deletion, in
/// the write's transaction (the outbox), if a trigger reads the bucket.
fn log_object_change(
    transaction: &Connection,
    op: &ObjectOp,
    done: &ObjectDone,
    origin: Option<&FunctionName>,
) -> Result<()> {
    let (project, bucket, change, data) = match op {
        ObjectOp::Put {
            project,
            bucket,
            object,
            ..
        }
        | ObjectOp::Complete {
            project,
            bucket,
            object,
            ..
        } => (
            project,
            bucket,
            domain::Change::Created,
            serde_json::json!({
                "bucket": bucket.as_str(),
                "key": object.key,
                "size": object.size,
                "etag": object.etag,
                "content_type": object.content_type,
            }),
        ),
        ObjectOp::Delete {
            project,
            bucket,
            key,
            ..
        } if done.existed => (
            project,
            bucket,
            domain::Change::Deleted,
            serde_json::json!({ "bucket": bucket.as_str(), "key": key }),
        ),
        _ => return Ok(()),
    };
    let key = data["key"].as_str().unwrap_or_default().to_owned();
    crate::events::log_change(
        transaction,
        project,
        NewEvent {
            stream: domain::objects_stream(bucket),
            kind: format!("wok.object.{}", change.as_str()),
            subject: Some(key),
            key: None,
            content_type: Some("application/json".to_owned()),
            data: data.to_string().into_bytes(),
            origin: origin.cloned(),
        },
    )
}

fn apply(transaction: &Connection, op: &ObjectOp) -> Result<ObjectDone> {
    match op {
        ObjectOp::CreateBucket { project, bucket } => {
            let inserted = transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO buckets
                       (project, name, created_at, max_object_bytes, content_types)
                     VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    project.as_str(),
                    bucket.name.as_str(),
                    bucket.created_at,
                    bucket.max_object_bytes.map(|max| max as i64),
                    Value::from(bucket.content_types.clone()).to_string(),
                ])?;
            if inserted == 0 {
                return Err(StoreError::BucketExists(bucket.name.to_string()).into());
            }
            Ok(ObjectDone::default())
        }
        ObjectOp::DeleteBucket { project, bucket } => {
            let busy: bool = transaction
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM objects WHERE project = ?1 AND bucket = ?2)
                         OR EXISTS (SELECT 1 FROM uploads WHERE project = ?1 AND bucket = ?2)",
                )?
                .query_row(params![project.as_str(), bucket.as_str()], |row| row.get(0))?;
            if busy {
                return Err(StoreError::BucketNotEmpty(bucket.to_string()).into());
            }
            let deleted = transaction
                .prepare_cached("DELETE FROM buckets WHERE project = ? AND name = ?")?
                .execute(params![project.as_str(), bucket.as_str()])?;
            if deleted == 0 {
                return Err(StoreError::NoSuchBucket(bucket.to_string()).into());
            }
            // A bucket created again later starts private, as a new one.
            transaction
                .prepare_cached(
                    "DELETE FROM access_rules WHERE project = ? AND kind = 'bucket' AND name = ?",
                )?
                .execute(params![project.as_str(), bucket.as_str()])?;
            Ok(ObjectDone {
                existed: true,
                trash: Vec::new(),
            })
        }
        ObjectOp::Put {
            project,
            bucket,
            object,
            condition,
        } => replace_object(transaction, project, bucket, object, condition),
        ObjectOp::Delete {
            project,
            bucket,
            key,
            condition,
        } => {
            require_bucket(transaction, project, bucket)?;
            let live = self::object(transaction, project, bucket, key)?;
            check(condition, live.as_ref())?;
            let Some(live) = live else {
                return Ok(ObjectDone::default());
            };
            transaction
                .prepare_cached("DELETE FROM objects WHERE project = ? AND bucket = ? AND key = ?")?
                .execute(params![project.as_str(), bucket.as_str(), key])?;
            let garbage: Vec<String> = live
                .segments
                .into_iter()
                .map(|segment| segment.blob)
                .collect();
            trash(transaction, &garbage)?;
            Ok(ObjectDone {
                existed: true,
                trash: garbage,
            })
        }
        ObjectOp::CreateUpload {
            project,
            bucket,
            upload,
        } => {
            require_bucket(transaction, project, bucket)?;
            transaction
                .prepare_cached(
                    "INSERT INTO uploads
                       (project, bucket, upload_id, key, initiated, content_type, metadata, checksum_algorithm)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    project.as_str(),
                    bucket.as_str(),
                    upload.upload_id,
                    upload.key,
                    upload.initiated,
                    upload.content_type,
                    described_to_json(&upload.metadata, &upload.headers),
                    upload.checksum_algorithm,
                ])?;
            Ok(ObjectDone::default())
        }
        ObjectOp::PutPart {
            project,
            bucket,
            upload_id,
            part,
        } => {
            if self::upload(transaction, project, bucket, upload_id)?.is_none() {
                return Err(StoreError::NoSuchUpload(upload_id.clone()).into());
            }
            let replaced: Option<String> = transaction
                .prepare_cached(
                    "SELECT blob FROM upload_parts
                     WHERE project = ? AND bucket = ? AND upload_id = ? AND number = ?",
                )?
                .query_row(
                    params![project.as_str(), bucket.as_str(), upload_id, part.number],
                    |row| row.get(0),
                )
                .optional()?;
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO upload_parts
                       (project, bucket, upload_id, number, size, etag, checksums, blob, last_modified)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    project.as_str(),
                    bucket.as_str(),
                    upload_id,
                    part.number,
                    part.size as i64,
                    part.etag,
                    pairs_to_json(&part.checksums),
                    part.blob,
                    part.last_modified,
                ])?;
            let garbage: Vec<String> = replaced
                .into_iter()
                .filter(|blob| *blob != part.blob)
                .collect();
            trash(transaction, &garbage)?;
            Ok(ObjectDone {
                existed: !garbage.is_empty(),
                trash: garbage,
            })
        }
        ObjectOp::Complete {
            project,
            bucket,
            upload_id,
            object,
            condition,
        } => {
            if self::upload(transaction, project, bucket, upload_id)?.is_none() {
                return Err(StoreError::NoSuchUpload(upload_id.clone()).into());
            }
            let mut done = replace_object(transaction, project, bucket, object, condition)?;
            let keep: Vec<&str> = object
                .segments
                .iter()
                .map(|segment| segment.blob.as_str())
                .collect();
            done.trash
                .extend(drop_upload(transaction, project, bucket, upload_id, &keep)?);
            Ok(done)
        }
        ObjectOp::Abort {
            project,
            bucket,
            upload_id,
        } => {
            if self::upload(transaction, project, bucket, upload_id)?.is_none() {
                return Err(StoreError::NoSuchUpload(upload_id.clone()).into());
            }
            Ok(ObjectDone {
                existed: true,
                trash: drop_upload(transaction, project, bucket, upload_id, &[])?,
            })
        }
    }
}

pub(crate) fn trash_list(connection: &Connection) -> Result<Vec<String>> {
    let mut statement = connection.prepare("SELECT blob FROM blob_trash")?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn trash_emptied(connection: &Connection, blobs: &[String]) -> Result<()> {
    let mut delete = connection.prepare_cached("DELETE FROM blob_trash WHERE blob = ?")?;
    for blob in blobs {
        delete.execute(params![blob])?;
    }
    Ok(())
}

pub(crate) fn named_blobs(connection: &Connection) -> Result<std::collections::HashSet<String>> {
    let mut named = std::collections::HashSet::new();
    let mut statement = connection.prepare("SELECT segments FROM objects")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let segments: String = row.get(0)?;
        named.extend(
            segments_from_json(&segments)?
                .into_iter()
                .map(|segment| segment.blob),
        );
    }
    let mut statement = connection.prepare("SELECT blob FROM upload_parts")?;
    let blobs = statement.query_map([], |row| row.get::<_, String>(0))?;
    for blob in blobs {
        named.insert(blob?);
    }
    Ok(named)
}

pub(crate) fn stale_uploads(
    connection: &Connection,
    before: UnixMillis,
    limit: u32,
) -> Result<Vec<(ProjectId, BucketName, String)>> {
    let mut statement = connection.prepare_cached(
        "SELECT project, bucket, upload_id FROM uploads
         WHERE initiated < ? ORDER BY initiated LIMIT ?",
    )?;
    let rows = statement.query_map(params![before, limit], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (project, bucket, upload_id) = row?;
        let corrupt = |error: domain::NameError| StoreError::Corrupt(error.to_string());
        Ok((
            ProjectId::new(project).map_err(corrupt)?,
            BucketName::new(bucket).map_err(corrupt)?,
            upload_id,
        ))
    })
    .collect()
}

#[store::async_trait]
impl ObjectStore for SqliteStore {
    async fn bucket(
        &self,
        project: &ProjectId,
        name: &BucketName,
    ) -> Result<Option<Bucket>, StoreError> {
        let (project, name) = (project.clone(), name.clone());
        self.read(move |connection| bucket(connection, &project, &name))
            .await
    }

    async fn buckets(&self, project: &ProjectId) -> Result<Vec<Bucket>, StoreError> {
        let project = project.clone();
        self.read(move |connection| buckets(connection, &project))
            .await
    }

    async fn object(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let (project, bucket, key) = (project.clone(), bucket.clone(), key.to_owned());
        self.read(move |connection| object(connection, &project, &bucket, &key))
            .await
    }

    async fn objects(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ObjectListing, StoreError> {
        let (project, bucket, prefix) = (project.clone(), bucket.clone(), prefix.to_owned());
        let (delimiter, after) = (delimiter.map(str::to_owned), after.map(str::to_owned));
        self.read(move |connection| {
            objects(
                connection,
                &project,
                &bucket,
                &prefix,
                delimiter.as_deref(),
                after.as_deref(),
                limit,
            )
        })
        .await
    }

    async fn upload(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<Option<Upload>, StoreError> {
        let (project, bucket, upload_id) = (project.clone(), bucket.clone(), upload_id.to_owned());
        self.read(move |connection| upload(connection, &project, &bucket, &upload_id))
            .await
    }

    async fn uploads(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Upload>, StoreError> {
        let (project, bucket, prefix) = (project.clone(), bucket.clone(), prefix.to_owned());
        let after = after.map(|(key, id)| (key.to_owned(), id.to_owned()));
        self.read(move |connection| {
            uploads(
                connection,
                &project,
                &bucket,
                &prefix,
                after.as_ref().map(|(key, id)| (key.as_str(), id.as_str())),
                limit,
            )
        })
        .await
    }

    async fn parts(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
        after: u32,
        limit: u32,
    ) -> Result<Vec<Part>, StoreError> {
        let (project, bucket, upload_id) = (project.clone(), bucket.clone(), upload_id.to_owned());
        self.read(move |connection| parts(connection, &project, &bucket, &upload_id, after, limit))
            .await
    }

    async fn object_write(&self, op: ObjectOp) -> Result<ObjectDone, StoreError> {
        // Read while the caller's future is polled: the function it runs
        // for, if any (`store::events::with_origin`).
        let origin = store::events::current_origin();
        self.writer()
            .transaction(move |transaction| apply_object_op(transaction, &op, origin.as_ref()))
            .await
    }

    async fn trash(&self) -> Result<Vec<String>, StoreError> {
        self.read(trash_list).await
    }

    async fn trash_emptied(&self, blobs: &[String]) -> Result<(), StoreError> {
        let blobs = blobs.to_vec();
        self.writer()
            .transaction(move |transaction| trash_emptied(transaction, &blobs))
            .await
    }

    async fn named_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.read(named_blobs).await
    }

    async fn stale_uploads(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(ProjectId, BucketName, String)>, StoreError> {
        self.read(move |connection| stale_uploads(connection, before, limit))
            .await
    }
}
