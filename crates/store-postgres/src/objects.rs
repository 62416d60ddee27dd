//! Object metadata on PostgreSQL: `buckets`, `objects` (one row per live
//! key, keys in byte order, `COLLATE "C"`; user metadata, response headers,
//! checksums and segments as JSON text, the same shapes as SQLite's),
//! `uploads` and `upload_parts`, and `blob_trash`, the blobs no row names
//! any more, filled in the transaction of the write that dropped them.
//!
//! Every write is one READ COMMITTED transaction, answered once committed,
//! that decides under row locks, so that nodes writing at once agree:
//! - a write of an object takes its bucket's row `FOR SHARE` and a delete
//!   of the bucket takes it `FOR UPDATE`, so a bucket is never deleted
//!   while a put that found it is still running (nor is a put let in
//!   after the emptiness check);
//! - a conditional write (`If-Match`, `If-None-Match`) decides on the live
//!   row locked `FOR UPDATE`; an absent key is claimed by an `INSERT … ON
//!   CONFLICT DO NOTHING`, and one that loses to another node's insert
//!   reads the winner's row again (or fails, for `If-None-Match`);
//! - a part takes its upload's row `FOR SHARE` (parts of one upload are
//!   written side by side), a completion or abort takes it `FOR UPDATE`,
//!   so no part lands after its upload's parts were dropped.
//!
//! Creations and deletions of objects are logged as events in the write's
//! own transaction (`outbox.rs`) when something reads the bucket's stream.
//!
//! A listing with a delimiter reads keys in order, a bounded chunk per
//! statement, and continues past a whole common prefix in one step (from
//! the prefix followed by U+10FFFF), as SQLite's does.
use crate::outbox::{self, Outbox};
use crate::{Db, PgStore, Result, number, stored};
use deadpool_postgres::GenericClient;
use domain::{BucketName, FunctionName, ProjectId, UnixMillis};
use serde_json::Value;
use store::StoreError;
use store::events::NewEvent;
use store::objects::columns::{
    described_from_json, described_to_json, pairs_from_json, pairs_to_json, segments_from_json,
    segments_to_json,
};
use store::objects::{
    Bucket, ObjectCondition, ObjectDone, ObjectListing, ObjectMeta, ObjectOp, ObjectStore, Part,
    Segment, Upload,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

fn blobs_of(segments: &[Segment]) -> Vec<&str> {
    segments
        .iter()
        .map(|segment| segment.blob.as_str())
        .collect()
}

const OBJECT_COLUMNS: &str =
    "key, size, etag, content_type, metadata, checksums, last_modified, segments";

fn object_from_row(row: &Row) -> Result<ObjectMeta> {
    let (metadata, headers) = described_from_json(row.get(4))?;
    Ok(ObjectMeta {
        key: row.get(0),
        size: number(row.get(1))?,
        etag: row.get(2),
        content_type: row.get(3),
        metadata,
        headers,
        checksums: pairs_from_json(row.get(5))?,
        last_modified: row.get(6),
        segments: segments_from_json(row.get(7))?,
    })
}

const UPLOAD_COLUMNS: &str =
    "upload_id, key, initiated, content_type, metadata, checksum_algorithm";

fn upload_from_row(row: &Row) -> Result<Upload> {
    let (metadata, headers) = described_from_json(row.get(4))?;
    Ok(Upload {
        upload_id: row.get(0),
        key: row.get(1),
        initiated: row.get(2),
        content_type: row.get(3),
        metadata,
        headers,
        checksum_algorithm: row.get(5),
    })
}

const BUCKET_COLUMNS: &str = "name, created_at, max_object_bytes, content_types";

fn bucket_from_row(row: &Row) -> Result<Bucket> {
    Ok(Bucket {
        name: stored(BucketName::new(row.get::<_, String>(0)))?,
        created_at: row.get(1),
        max_object_bytes: row.get::<_, Option<i64>>(2).map(number).transpose()?,
        content_types: stored(serde_json::from_str(row.get(3)))?,
    })
}

const PART_COLUMNS: &str = "number, size, etag, checksums, blob, last_modified";

fn part_from_row(row: &Row) -> Result<Part> {
    Ok(Part {
        number: number(row.get(0))?,
        size: number(row.get(1))?,
        etag: row.get(2),
        checksums: pairs_from_json(row.get(3))?,
        blob: row.get(4),
        last_modified: row.get(5),
    })
}

async fn bucket(
    client: &impl GenericClient,
    project: &ProjectId,
    name: &BucketName,
) -> Result<Option<Bucket>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE project = $1 AND name = $2"
        ))
        .await?;
    client
        .query_opt(&statement, &[&project.as_str(), &name.as_str()])
        .await?
        .as_ref()
        .map(bucket_from_row)
        .transpose()
}

async fn buckets(client: &impl GenericClient, project: &ProjectId) -> Result<Vec<Bucket>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE project = $1 ORDER BY name COLLATE \"C\""
        ))
        .await?;
    client
        .query(&statement, &[&project.as_str()])
        .await?
        .iter()
        .map(bucket_from_row)
        .collect()
}

async fn object(
    client: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    key: &str,
) -> Result<Option<ObjectMeta>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE project = $1 AND bucket = $2 AND key = $3"
        ))
        .await?;
    client
        .query_opt(&statement, &[&project.as_str(), &bucket.as_str(), &key])
        .await?
        .as_ref()
        .map(object_from_row)
        .transpose()
}

/// Rows one statement of a listing with a delimiter reads at most: rows
/// under a common prefix are read only to be skipped, so a statement
/// reads few, and the next starts past the prefix.
const ROLLED_CHUNK: usize = 100;

async fn objects(
    client: &impl GenericClient,
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
    let chunk = match delimiter {
        Some(_) => (limit + 1).min(ROLLED_CHUNK),
        None => limit + 1,
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects
             WHERE project = $1 AND bucket = $2 AND (key > $3 OR (key = $3 AND NOT $4))
             ORDER BY key LIMIT $5"
        ))
        .await?;
    let mut last_position = String::new();
    // The common prefix just rolled up, while no key followed it: keys
    // under one prefix are contiguous, so those read after it are skipped.
    // A page that starts where one cut after a common prefix starts with
    // it (keys above the prefix's end, `…/\u{10FFFF}x`, roll up into it
    // too, and must not show it twice).
    let mut rolling: Option<String> = after
        .and_then(|after| after.strip_suffix('\u{10FFFF}'))
        .filter(|common| rolled_up(common, prefix, delimiter) == Some(common))
        .map(str::to_owned);
    loop {
        let rows = client
            .query(
                &statement,
                &[
                    &project.as_str(),
                    &bucket.as_str(),
                    &start,
                    &exclusive,
                    &(chunk as i64),
                ],
            )
            .await?;
        for row in &rows {
            let key: &str = row.get(0);
            if !key.starts_with(prefix) {
                return Ok(listing);
            }
            if rolling
                .as_deref()
                .is_some_and(|common| key.starts_with(common))
            {
                continue;
            }
            if listing.objects.len() + listing.common_prefixes.len() == limit {
                listing.next_after = Some(last_position);
                return Ok(listing);
            }
            match rolled_up(key, prefix, delimiter) {
                Some(common) => {
                    last_position = common_end(common);
                    rolling = Some(common.to_owned());
                    listing.common_prefixes.push(common.to_owned());
                }
                None => {
                    rolling = None;
                    last_position = key.to_owned();
                    listing.objects.push(object_from_row(row)?);
                }
            }
        }
        let Some(last_read) = rows.last() else {
            return Ok(listing);
        };
        if rows.len() < chunk {
            return Ok(listing);
        }
        // Past the last key read, or past every key of the last common
        // prefix in one step.
        start = std::cmp::max(last_position.as_str(), last_read.get(0)).to_owned();
        exclusive = true;
    }
}

/// The common prefix `key` rolls up into: up to the first delimiter after
/// the listing's prefix, that delimiter included.
fn rolled_up<'key>(key: &'key str, prefix: &str, delimiter: Option<&str>) -> Option<&'key str> {
    let delimiter = delimiter?;
    let rest = key.strip_prefix(prefix)?;
    rest.find(delimiter)
        .map(|at| &key[..prefix.len() + at + delimiter.len()])
}

/// The greatest key under a common prefix, as a position to continue
/// after: the prefix followed by the highest character.
fn common_end(common: &str) -> String {
    format!("{common}\u{10FFFF}")
}

async fn upload(
    client: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
) -> Result<Option<Upload>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads
             WHERE project = $1 AND bucket = $2 AND upload_id = $3"
        ))
        .await?;
    client
        .query_opt(
            &statement,
            &[&project.as_str(), &bucket.as_str(), &upload_id],
        )
        .await?
        .as_ref()
        .map(upload_from_row)
        .transpose()
}

async fn uploads(
    client: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    prefix: &str,
    after: Option<(&str, &str)>,
    limit: u32,
) -> Result<Vec<Upload>> {
    let (after_key, after_id) = after.unwrap_or(("", ""));
    let statement = client
        .prepare_cached(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads
             WHERE project = $1 AND bucket = $2 AND (key, upload_id) > ($3, $4)
               AND key >= $5 AND starts_with(key, $5)
             ORDER BY key, upload_id LIMIT $6"
        ))
        .await?;
    client
        .query(
            &statement,
            &[
                &project.as_str(),
                &bucket.as_str(),
                &after_key,
                &after_id,
                &prefix,
                &i64::from(limit),
            ],
        )
        .await?
        .iter()
        .map(upload_from_row)
        .collect()
}

async fn parts(
    client: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
    after: u32,
    limit: u32,
) -> Result<Vec<Part>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {PART_COLUMNS} FROM upload_parts
             WHERE project = $1 AND bucket = $2 AND upload_id = $3 AND number > $4
             ORDER BY number LIMIT $5"
        ))
        .await?;
    client
        .query(
            &statement,
            &[
                &project.as_str(),
                &bucket.as_str(),
                &upload_id,
                &i64::from(after),
                &i64::from(limit),
            ],
        )
        .await?
        .iter()
        .map(part_from_row)
        .collect()
}

fn check(condition: &ObjectCondition, live_etag: Option<&str>) -> Result<()> {
    let holds = match condition {
        ObjectCondition::Always => true,
        ObjectCondition::Absent => live_etag.is_none(),
        ObjectCondition::ETag(etag) => live_etag == Some(etag.as_str()),
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::ConditionFailed.into())
    }
}

/// Takes the bucket's row `FOR SHARE` for the rest of the transaction (a
/// delete of the bucket waits for it), or fails if there is none.
async fn share_bucket(
    transaction: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
) -> Result<()> {
    let statement = transaction
        .prepare_cached("SELECT 1 FROM buckets WHERE project = $1 AND name = $2 FOR SHARE")
        .await?;
    match transaction
        .query_opt(&statement, &[&project.as_str(), &bucket.as_str()])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchBucket(bucket.to_string()).into()),
    }
}

/// Whether the upload is there, its row locked for the rest of the
/// transaction: `FOR SHARE` to add a part, `FOR UPDATE` to end it.
async fn lock_upload(
    transaction: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
    to_end: bool,
) -> Result<()> {
    let statement = transaction
        .prepare_cached(if to_end {
            "SELECT 1 FROM uploads WHERE project = $1 AND bucket = $2 AND upload_id = $3
             FOR UPDATE"
        } else {
            "SELECT 1 FROM uploads WHERE project = $1 AND bucket = $2 AND upload_id = $3
             FOR SHARE"
        })
        .await?;
    match transaction
        .query_opt(
            &statement,
            &[&project.as_str(), &bucket.as_str(), &upload_id],
        )
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchUpload(upload_id.to_owned()).into()),
    }
}

/// The live object's ETag and blobs, its row locked for the rest of the
/// transaction.
async fn lock_object(
    transaction: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    key: &str,
) -> Result<Option<(String, Vec<String>)>> {
    let statement = transaction
        .prepare_cached(
            "SELECT etag, segments FROM objects
             WHERE project = $1 AND bucket = $2 AND key = $3 FOR UPDATE",
        )
        .await?;
    let Some(row) = transaction
        .query_opt(&statement, &[&project.as_str(), &bucket.as_str(), &key])
        .await?
    else {
        return Ok(None);
    };
    let blobs = segments_from_json(row.get(1))?
        .into_iter()
        .map(|segment| segment.blob)
        .collect();
    Ok(Some((row.get(0), blobs)))
}

async fn trash(transaction: &impl GenericClient, blobs: &[String]) -> Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO blob_trash (blob) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        )
        .await?;
    transaction.execute(&statement, &[&blobs]).await?;
    Ok(())
}

/// Writes `object` over the live one, if `condition` holds of it; returns
/// whether one existed and its blobs `object` does not name, now in the
/// trash.
async fn replace_object(
    transaction: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    object: &ObjectMeta,
    condition: &ObjectCondition,
) -> Result<ObjectDone> {
    share_bucket(transaction, project, bucket).await?;
    let metadata = described_to_json(&object.metadata, &object.headers);
    let checksums = pairs_to_json(&object.checksums);
    let segments = segments_to_json(&object.segments);
    let size = object.size as i64;
    let update = transaction
        .prepare_cached(
            "UPDATE objects SET size = $4, etag = $5, content_type = $6, metadata = $7,
                 checksums = $8, last_modified = $9, segments = $10
             WHERE project = $1 AND bucket = $2 AND key = $3",
        )
        .await?;
    let insert = transaction
        .prepare_cached(&format!(
            "INSERT INTO objects (project, bucket, {OBJECT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (project, bucket, key) DO NOTHING"
        ))
        .await?;
    let values: [&(dyn ToSql + Sync); 10] = [
        &project.as_str(),
        &bucket.as_str(),
        &object.key,
        &size,
        &object.etag,
        &object.content_type,
        &metadata,
        &checksums,
        &object.last_modified,
        &segments,
    ];
    loop {
        let live = lock_object(transaction, project, bucket, &object.key).await?;
        check(condition, live.as_ref().map(|(etag, _)| etag.as_str()))?;
        match live {
            Some((_, blobs)) => {
                transaction.execute(&update, &values).await?;
                let keep = blobs_of(&object.segments);
                let garbage: Vec<String> = blobs
                    .into_iter()
                    .filter(|blob| !keep.contains(&blob.as_str()))
                    .collect();
                trash(transaction, &garbage).await?;
                return Ok(ObjectDone {
                    existed: true,
                    trash: garbage,
                });
            }
            None => {
                if transaction.execute(&insert, &values).await? == 1 {
                    return Ok(ObjectDone::default());
                }
                // Another node's write of the key committed meanwhile
                // (the insert waited for it): `If-None-Match` fails, any
                // other write reads and locks the new row.
                if *condition == ObjectCondition::Absent {
                    return Err(StoreError::ConditionFailed.into());
                }
            }
        }
    }
}

/// Removes an upload (locked `FOR UPDATE` by the caller) and its parts;
/// the parts' blobs not in `keep` go to the trash.
async fn drop_upload(
    transaction: &impl GenericClient,
    project: &ProjectId,
    bucket: &BucketName,
    upload_id: &str,
    keep: &[&str],
) -> Result<Vec<String>> {
    let key = [
        &project.as_str() as &(dyn ToSql + Sync),
        &bucket.as_str(),
        &upload_id,
    ];
    let statement = transaction
        .prepare_cached(
            "DELETE FROM upload_parts WHERE project = $1 AND bucket = $2 AND upload_id = $3
             RETURNING blob",
        )
        .await?;
    let garbage: Vec<String> = transaction
        .query(&statement, &key)
        .await?
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|blob| !keep.contains(&blob.as_str()))
        .collect();
    let statement = transaction
        .prepare_cached("DELETE FROM uploads WHERE project = $1 AND bucket = $2 AND upload_id = $3")
        .await?;
    transaction.execute(&statement, &key).await?;
    trash(transaction, &garbage).await?;
    Ok(garbage)
}

async fn apply(transaction: &impl GenericClient, op: &ObjectOp) -> Result<ObjectDone> {
    match op {
        ObjectOp::CreateBucket { project, bucket } => {
            let inserted = transaction
                .execute(
                    "INSERT INTO buckets (project, name, created_at, max_object_bytes, content_types)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[
                        &project.as_str(),
                        &bucket.name.as_str(),
                        &bucket.created_at,
                        &bucket.max_object_bytes.map(|max| max as i64),
                        &Value::from(bucket.content_types.clone()).to_string(),
                    ],
                )
                .await?;
            if inserted == 0 {
                return Err(StoreError::BucketExists(bucket.name.to_string()).into());
            }
            Ok(ObjectDone::default())
        }
        ObjectOp::DeleteBucket { project, bucket } => {
            // Locked against puts and new uploads (they take the row
            // `FOR SHARE`): the emptiness read below stays true until the
            // commit.
            let found = transaction
                .query_opt(
                    "SELECT 1 FROM buckets WHERE project = $1 AND name = $2 FOR UPDATE",
                    &[&project.as_str(), &bucket.as_str()],
                )
                .await?;
            if found.is_none() {
                return Err(StoreError::NoSuchBucket(bucket.to_string()).into());
            }
            let busy: bool = transaction
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM objects WHERE project = $1 AND bucket = $2)
                         OR EXISTS (SELECT 1 FROM uploads WHERE project = $1 AND bucket = $2)",
                    &[&project.as_str(), &bucket.as_str()],
                )
                .await?
                .get(0);
            if busy {
                return Err(StoreError::BucketNotEmpty(bucket.to_string()).into());
            }
            transaction
                .execute(
                    "DELETE FROM buckets WHERE project = $1 AND name = $2",
                    &[&project.as_str(), &bucket.as_str()],
                )
                .await?;
            // A bucket created again later starts private, as a new one.
            transaction
                .execute(
                    "DELETE FROM access_rules WHERE project = $1 AND kind = 'bucket' AND name = $2",
                    &[&project.as_str(), &bucket.as_str()],
                )
                .await?;
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
        } => replace_object(transaction, project, bucket, object, condition).await,
        ObjectOp::Delete {
            project,
            bucket,
            key,
            condition,
        } => {
            share_bucket(transaction, project, bucket).await?;
            let live = lock_object(transaction, project, bucket, key).await?;
            check(condition, live.as_ref().map(|(etag, _)| etag.as_str()))?;
            let Some((_, garbage)) = live else {
                return Ok(ObjectDone::default());
            };
            let statement = transaction
                .prepare_cached(
                    "DELETE FROM objects WHERE project = $1 AND bucket = $2 AND key = $3",
                )
                .await?;
            transaction
                .execute(&statement, &[&project.as_str(), &bucket.as_str(), key])
                .await?;
            trash(transaction, &garbage).await?;
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
            share_bucket(transaction, project, bucket).await?;
            transaction
                .execute(
                    &format!(
                        "INSERT INTO uploads (project, bucket, {UPLOAD_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ),
                    &[
                        &project.as_str(),
                        &bucket.as_str(),
                        &upload.upload_id,
                        &upload.key,
                        &upload.initiated,
                        &upload.content_type,
                        &described_to_json(&upload.metadata, &upload.headers),
                        &upload.checksum_algorithm,
                    ],
                )
                .await?;
            Ok(ObjectDone::default())
        }
        ObjectOp::PutPart {
            project,
            bucket,
            upload_id,
            part,
        } => {
            lock_upload(transaction, project, bucket, upload_id, false).await?;
            let number = i64::from(part.number);
            let size = part.size as i64;
            let checksums = pairs_to_json(&part.checksums);
            let values: [&(dyn ToSql + Sync); 9] = [
                &project.as_str(),
                &bucket.as_str(),
                upload_id,
                &number,
                &size,
                &part.etag,
                &checksums,
                &part.blob,
                &part.last_modified,
            ];
            let replaced = transaction
                .prepare_cached(
                    "SELECT blob FROM upload_parts
                     WHERE project = $1 AND bucket = $2 AND upload_id = $3 AND number = $4
                     FOR UPDATE",
                )
                .await?;
            let update = transaction
                .prepare_cached(
                    "UPDATE upload_parts SET size = $5, etag = $6, checksums = $7, blob = $8,
                         last_modified = $9
                     WHERE project = $1 AND bucket = $2 AND upload_id = $3 AND number = $4",
                )
                .await?;
            let insert = transaction
                .prepare_cached(&format!(
                    "INSERT INTO upload_parts (project, bucket, upload_id, {PART_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (project, bucket, upload_id, number) DO NOTHING"
                ))
                .await?;
            // Parts of one upload are written side by side (the upload is
            // only shared): the part's own row decides between two writes
            // of the same number, as for objects.
            let replaced = loop {
                if let Some(row) = transaction.query_opt(&replaced, &values[..4]).await? {
                    transaction.execute(&update, &values).await?;
                    break Some(row.get::<_, String>(0));
                }
                if transaction.execute(&insert, &values).await? == 1 {
                    break None;
                }
            };
            let garbage: Vec<String> = replaced
                .into_iter()
                .filter(|blob| *blob != part.blob)
                .collect();
            trash(transaction, &garbage).await?;
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
            lock_upload(transaction, project, bucket, upload_id, true).await?;
            let mut done = replace_object(transaction, project, bucket, object, condition).await?;
            let keep = blobs_of(&object.segments);
            done.trash
                .extend(drop_upload(transaction, project, bucket, upload_id, &keep).await?);
            Ok(done)
        }
        ObjectOp::Abort {
            project,
            bucket,
            upload_id,
        } => {
            lock_upload(transaction, project, bucket, upload_id, true).await?;
            Ok(ObjectDone {
                existed: true,
                trash: drop_upload(transaction, project, bucket, upload_id, &[]).await?,
            })
        }
    }
}

/// Logs an object's creation (a put, a completed upload) or deletion, in
/// the write's transaction (the outbox), if something reads the bucket.
async fn log_object_change(
    transaction: &impl GenericClient,
    outbox: &mut Outbox,
    op: &ObjectOp,
    done: &ObjectDone,
    origin: Option<&FunctionName>,
) -> Result<()> {
    let (project, bucket, change, key, data) = match op {
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
            &object.key,
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
            key,
            serde_json::json!({ "bucket": bucket.as_str(), "key": key }),
        ),
        _ => return Ok(()),
    };
    outbox
        .log_change(
            transaction,
            project,
            NewEvent {
                stream: domain::objects_stream(bucket),
                kind: format!("wok.object.{}", change.as_str()),
                subject: Some(key.clone()),
                key: None,
                content_type: Some("application/json".to_owned()),
                data: data.to_string().into_bytes(),
                origin: origin.cloned(),
            },
        )
        .await
}

async fn named_blobs(client: &impl GenericClient) -> Result<std::collections::HashSet<String>> {
    // One statement, so one snapshot: a completion moving a blob from a
    // part to an object between two reads cannot hide it from both.
    let rows = client
        .query(
            "SELECT segments, NULL FROM objects
             UNION ALL SELECT NULL, blob FROM upload_parts",
            &[],
        )
        .await?;
    let mut named = std::collections::HashSet::new();
    for row in &rows {
        match row.get::<_, Option<&str>>(0) {
            Some(segments) => named.extend(
                segments_from_json(segments)?
                    .into_iter()
                    .map(|segment| segment.blob),
            ),
            None => {
                named.insert(row.get::<_, String>(1));
            }
        }
    }
    Ok(named)
}

async fn stale_uploads(
    client: &impl GenericClient,
    before: UnixMillis,
    limit: u32,
) -> Result<Vec<(ProjectId, BucketName, String)>> {
    let rows = client
        .query(
            "SELECT project, bucket, upload_id FROM uploads
             WHERE initiated < $1 ORDER BY initiated LIMIT $2",
            &[&before, &i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                stored(ProjectId::new(row.get::<_, String>(0)))?,
                stored(BucketName::new(row.get::<_, String>(1)))?,
                row.get(2),
            ))
        })
        .collect()
}

#[store::async_trait]
impl ObjectStore for PgStore {
    async fn bucket(
        &self,
        project: &ProjectId,
        name: &BucketName,
    ) -> Result<Option<Bucket>, StoreError> {
        let client = self.client().await?;
        bucket(&client, project, name).await.db()
    }

    async fn buckets(&self, project: &ProjectId) -> Result<Vec<Bucket>, StoreError> {
        let client = self.client().await?;
        buckets(&client, project).await.db()
    }

    async fn object(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        key: &str,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let client = self.client().await?;
        object(&client, project, bucket, key).await.db()
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
        let client = self.client().await?;
        objects(&client, project, bucket, prefix, delimiter, after, limit)
            .await
            .db()
    }

    async fn upload(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
    ) -> Result<Option<Upload>, StoreError> {
        let client = self.client().await?;
        upload(&client, project, bucket, upload_id).await.db()
    }

    async fn uploads(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Upload>, StoreError> {
        let client = self.client().await?;
        uploads(&client, project, bucket, prefix, after, limit)
            .await
            .db()
    }

    async fn parts(
        &self,
        project: &ProjectId,
        bucket: &BucketName,
        upload_id: &str,
        after: u32,
        limit: u32,
    ) -> Result<Vec<Part>, StoreError> {
        let client = self.client().await?;
        parts(&client, project, bucket, upload_id, after, limit)
            .await
            .db()
    }

    async fn object_write(&self, op: ObjectOp) -> Result<ObjectDone, StoreError> {
        // Read while the caller's future is polled, before any await: the
        // function it runs for, if any (`store::events::with_origin`).
        let origin = store::events::current_origin();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let done = apply(&transaction, &op).await.db()?;
        let mut outbox = Outbox::default();
        log_object_change(&transaction, &mut outbox, &op, &done, origin.as_ref())
            .await
            .db()?;
        let events = outbox.write(&transaction).await.db()?;
        transaction.commit().await.db()?;
        self.after_commit(outbox::streams_of(&events));
        Ok(done)
    }

    async fn trash(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT blob FROM blob_trash ORDER BY blob", &[])
            .await
            .db()?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn trash_emptied(&self, blobs: &[String]) -> Result<(), StoreError> {
        if blobs.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        client
            .execute("DELETE FROM blob_trash WHERE blob = ANY ($1)", &[&blobs])
            .await
            .db()?;
        Ok(())
    }

    async fn named_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let client = self.client().await?;
        named_blobs(&client).await.db()
    }

    async fn stale_uploads(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(ProjectId, BucketName, String)>, StoreError> {
        let client = self.client().await?;
        stale_uploads(&client, before, limit).await.db()
    }
}
