//! The S3-compatible endpoint: `s3s` speaks the protocol (SigV4 in headers
//! and presigned URLs, aws-chunked bodies, XML), this file maps its
//! operations onto `objects::Objects` and `auth::Auth`.
//!
//! It answers at the root of wok's address, path-style
//! (`http://HOST:PORT/BUCKET/KEY`): a request signed for S3 (an
//! `AWS4-HMAC-SHA256` authorization, or a presigned query) goes here, every
//! other request to wok's own routes (see [`App`]). An access key is a
//! project key's token without its secret (or `wok_admin`); its secret is
//! the key's own, sealed at rest (`Auth::s3_secret`). The key's project is
//! the one addressed.
//!
//! s3s leaves to us what it leaves to every backend: conditional requests,
//! checksum verification (headers and aws-chunked trailers), and URL
//! encoding of listings (`encoding-type=url`). This file also does what
//! s3s does not check: an aws-chunked body must end with its final chunk
//! (`aws_chunked.rs`; s3s would take a body cut at a chunk boundary as
//! whole), and a presigned URL may be valid a week at most, as S3 allows.
//! Every answer carries a request id (`x-amz-request-id`, and
//! `<RequestId>` in error bodies).
//!
//! [`App`] is the whole HTTP service: while the disk is full
//! (`blob::Reserve`), writes are refused at once with 507; requests
//! signed for S3 go to s3s, the rest to wok's router; a write that fails
//! for a full disk marks it full; and a response given before the
//! request's body was read closes the connection
//! (`http_util::close_unless_read`).
use crate::http_util::{close_unless_read, has_body, watch_body};
use auth::{Auth, Caller};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use domain::{Access, BucketName, ProjectId, ResourceKind};
use objects::{ObjectError, Objects, PutOptions};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{self, ETag, ETagCondition, StreamingBlob, Timestamp};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};
use store::objects::{ObjectCondition, ObjectMeta};

/// Most keys one listing returns (S3's cap).
const MAX_KEYS: i32 = 1000;

/// Finds the secret of an access key for s3s's signature check.
pub struct S3Credentials {
    pub auth: Arc<Auth>,
}

#[async_trait::async_trait]
impl S3Auth for S3Credentials {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        // Keys are in memory: no store read, known or not.
        match self.auth.s3_secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "the access key is unknown or revoked"
            )),
        }
    }
}

pub struct WokS3 {
    pub objects: Arc<Objects>,
    pub auth: Arc<Auth>,
}

fn s3_error(error: ObjectError) -> S3Error {
    let code = match &error {
        ObjectError::NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
        ObjectError::NoSuchKey(_) => S3ErrorCode::NoSuchKey,
        ObjectError::NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
        ObjectError::BucketExists(_) => S3ErrorCode::BucketAlreadyOwnedByYou,
        ObjectError::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        ObjectError::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        ObjectError::TooLarge { .. } => S3ErrorCode::EntityTooLarge,
        ObjectError::ContentTypeRefused { .. } => S3ErrorCode::InvalidArgument,
        ObjectError::BadDigest(_) => S3ErrorCode::BadDigest,
        // What s3s found wrong in the body it decoded (its errors are not
        // public types; their messages name the kind).
        ObjectError::IncompleteBody(message) if message.contains("SignatureMismatch") => {
            return S3Error::with_message(
                S3ErrorCode::SignatureDoesNotMatch,
                "a chunk's signature does not match",
            );
        }
        ObjectError::IncompleteBody(message) if message.contains("Sha256Mismatch") => {
            return custom_error(
                "XAmzContentSHA256Mismatch",
                http::StatusCode::BAD_REQUEST,
                "the body's SHA-256 is not the x-amz-content-sha256 the request was signed with",
            );
        }
        ObjectError::IncompleteBody(_) => S3ErrorCode::IncompleteBody,
        ObjectError::InvalidPart(_) => S3ErrorCode::InvalidPart,
        ObjectError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        ObjectError::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        ObjectError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        ObjectError::DiskFull(_) => {
            return custom_error(
                "InsufficientStorage",
                http::StatusCode::INSUFFICIENT_STORAGE,
                "the server's disk is full: writes are refused until space is freed (deletes go on)",
            );
        }
        ObjectError::Unavailable(detail) => {
            tracing::warn!("object storage is unavailable: {detail}");
            return S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "the database could not be reached; a write may or may not have been made: read before trying again",
            );
        }
        ObjectError::Internal(detail) => {
            tracing::error!("object storage failed: {detail}");
            return S3Error::with_message(
                S3ErrorCode::InternalError,
                "wok failed to handle the request; the server log has details",
            );
        }
    };
    S3Error::with_message(code, error.to_string())
}

/// An S3 error code s3s has no name for.
fn custom_error(code: &'static str, status: http::StatusCode, message: &'static str) -> S3Error {
    let mut error = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    error.set_status_code(status);
    error
}

fn bucket_name(name: &str) -> S3Result<BucketName> {
    BucketName::new(name).map_err(|error| s3_error!(InvalidBucketName, "{error}"))
}

fn timestamp(millis: i64) -> Timestamp {
    // HTTP dates have whole seconds; so must what we compare them with.
    Timestamp::from(UNIX_EPOCH + Duration::from_secs(millis.max(0) as u64 / 1000))
}

fn seconds(time: &Timestamp) -> i64 {
    time::OffsetDateTime::from(time.clone()).unix_timestamp()
}

fn etag(object: &ObjectMeta) -> ETag {
    ETag::Strong(object.etag.clone())
}

fn metadata_map(pairs: &[(String, String)]) -> Option<dto::Metadata> {
    if pairs.is_empty() {
        return None;
    }
    Some(pairs.iter().cloned().collect())
}

fn metadata_pairs(map: Option<dto::Metadata>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = map
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    pairs.sort();
    pairs
}

fn condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> ObjectCondition {
    match (if_match, if_none_match) {
        (Some(ETagCondition::ETag(etag)), _) => ObjectCondition::ETag(etag.value().to_owned()),
        (_, Some(ETagCondition::Any)) => ObjectCondition::Absent,
        _ => ObjectCondition::Always,
    }
}

/// The checksums the client sent before the body, by algorithm.
fn claimed(
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
) -> Vec<(String, String)> {
    [
        ("CRC32", crc32),
        ("CRC32C", crc32c),
        ("CRC64NVME", crc64nvme),
        ("SHA1", sha1),
        ("SHA256", sha256),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
    .collect()
}

/// The algorithms whose values come in trailers (`x-amz-trailer`) or that
/// the client named (`x-amz-sdk-checksum-algorithm`).
fn announced(headers: &http::HeaderMap, algorithm: Option<&dto::ChecksumAlgorithm>) -> Vec<String> {
    let mut names: Vec<String> = headers
        .get_all("x-amz-trailer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| name.trim().strip_prefix("x-amz-checksum-"))
        .map(str::to_ascii_uppercase)
        .collect();
    names.extend(algorithm.map(|algorithm| algorithm.as_str().to_ascii_uppercase()));
    names
}

/// The checksums that arrived in trailers, read once the body has ended.
fn trailer_reader(
    trailers: Option<s3s::TrailingHeaders>,
) -> impl FnOnce() -> Vec<(String, String)> {
    move || {
        let Some(headers) = trailers.and_then(|trailers| trailers.take()) else {
            return Vec::new();
        };
        headers
            .iter()
            .filter_map(|(name, value)| {
                let algorithm = name.as_str().strip_prefix("x-amz-checksum-")?;
                Some((
                    algorithm.to_ascii_uppercase(),
                    value.to_str().ok()?.to_owned(),
                ))
            })
            .collect()
    }
}

/// The length the client announced: `Content-Length`, or for aws-chunked
/// bodies `x-amz-decoded-content-length`.
fn announced_length(headers: &http::HeaderMap, content_length: Option<i64>) -> Option<u64> {
    headers
        .get("x-amz-decoded-content-length")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .or(content_length.and_then(|length| u64::try_from(length).ok()))
}

/// Sets `checksum_*` fields from stored `(algorithm, value)` pairs.
macro_rules! set_checksums {
    ($output:expr, $checksums:expr) => {
        for (algorithm, value) in $checksums {
            let value = Some(value.clone());
            match algorithm.as_str() {
                "CRC32" => $output.checksum_crc32 = value,
                "CRC32C" => $output.checksum_crc32c = value,
                "CRC64NVME" => $output.checksum_crc64nvme = value,
                "SHA1" => $output.checksum_sha1 = value,
                "SHA256" => $output.checksum_sha256 = value,
                _ => {}
            }
        }
    };
}

/// The response headers kept with an object, from a request's fields
/// (names as in `objects::KEPT_HEADERS`).
macro_rules! kept_headers {
    ($input:expr) => {{
        let input = &$input;
        let expires = input.expires.as_ref().and_then(http_date);
        [
            ("cache-control", input.cache_control.clone()),
            ("content-disposition", input.content_disposition.clone()),
            ("content-encoding", input.content_encoding.clone()),
            ("content-language", input.content_language.clone()),
            ("expires", expires),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect::<Vec<(String, String)>>()
    }};
}

/// Sets the response headers kept with an object on an output.
macro_rules! set_kept_headers {
    ($output:expr, $headers:expr) => {
        for (name, value) in $headers {
            let value = Some(value.clone());
            match name.as_str() {
                "cache-control" => $output.cache_control = value,
                "content-disposition" => $output.content_disposition = value,
                "content-encoding" => $output.content_encoding = value,
                "content-language" => $output.content_language = value,
                "expires" => {
                    $output.expires = value.and_then(|value| {
                        Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, &value).ok()
                    })
                }
                _ => {}
            }
        }
    };
}

/// A time as an HTTP date (`Expires`).
fn http_date(time: &Timestamp) -> Option<String> {
    let mut text = Vec::new();
    time.format(s3s::dto::TimestampFormat::HttpDate, &mut text)
        .ok()?;
    String::from_utf8(text).ok()
}

/// Percent-encodes a key for `encoding-type=url` listings, keeping `/`.
fn url_encode(text: &str) -> String {
    text.split('/')
        .map(|part| urlencoding::encode(part).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// How a listing writes keys and prefixes: percent-encoded when the client
/// asked for `encoding-type=url` (boto3 and aws-cli do, and decode them).
fn listing_text(encoding: Option<&dto::EncodingType>) -> impl Fn(&str) -> String {
    let encode = encoding.is_some_and(|encoding| encoding.as_str() == dto::EncodingType::URL);
    move |value: &str| {
        if encode {
            url_encode(value)
        } else {
            value.to_owned()
        }
    }
}

fn listed_objects(
    listing: &store::objects::ObjectListing,
    text: &impl Fn(&str) -> String,
) -> Vec<dto::Object> {
    listing
        .objects
        .iter()
        .map(|object| dto::Object {
            key: Some(text(&object.key)),
            size: Some(object.size as i64),
            e_tag: Some(etag(object)),
            last_modified: Some(timestamp(object.last_modified)),
            storage_class: Some(dto::ObjectStorageClass::from_static(
                dto::ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn listed_prefixes(
    listing: &store::objects::ObjectListing,
    text: &impl Fn(&str) -> String,
) -> Vec<dto::CommonPrefix> {
    listing
        .common_prefixes
        .iter()
        .map(|common| dto::CommonPrefix {
            prefix: Some(text(common)),
        })
        .collect()
}

/// How many parts an object was uploaded in (1 for a single put).
fn parts_count(object: &ObjectMeta) -> i32 {
    object.segments.len().max(1) as i32
}

/// The bytes of part `number` of an object (`GET ?partNumber=N`).
fn part_range(object: &ObjectMeta, number: i32) -> S3Result<std::ops::Range<u64>> {
    let count = parts_count(object);
    if !(1..=count).contains(&number) {
        return Err(custom_error(
            "InvalidPartNumber",
            http::StatusCode::RANGE_NOT_SATISFIABLE,
            "the requested part number is not satisfiable",
        ));
    }
    let start: u64 = object
        .segments
        .iter()
        .take(number as usize - 1)
        .map(|segment| segment.size)
        .sum();
    let size = object
        .segments
        .get(number as usize - 1)
        .map_or(object.size, |segment| segment.size);
    Ok(start..start + size)
}

/// Whether a copy's source is the object it writes.
fn source_is(source: &dto::CopySource, bucket: &BucketName, key: &str) -> bool {
    match source {
        dto::CopySource::Bucket {
            bucket: source_bucket,
            key: source_key,
            version_id: None,
        } => source_bucket.as_ref() == bucket.as_str() && source_key.as_ref() == key,
        _ => false,
    }
}

/// A continuation token: the position, hex-encoded so any key survives
/// the round trip through a query string.
fn token_of(after: &str) -> String {
    hex::encode(after.as_bytes())
}

fn position_of(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "the continuation token is not one wok gave out"
            )
        })
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
/// `If-Modified-Since` against the object, as S3 does.
fn check_conditions(
    object: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_unmodified_since: Option<&Timestamp>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let current = etag(object);
    let modified = object.last_modified / 1000;
    match if_match {
        Some(ETagCondition::ETag(wanted)) if !wanted.strong_cmp(&current) => {
            return Err(s3_error!(PreconditionFailed));
        }
        Some(_) => {}
        None => {
            if let Some(since) = if_unmodified_since
                && modified > seconds(since)
            {
                return Err(s3_error!(PreconditionFailed));
            }
        }
    }
    let not_modified = match if_none_match {
        Some(ETagCondition::Any) => true,
        Some(ETagCondition::ETag(wanted)) => wanted.weak_cmp(&current),
        None => if_modified_since.is_some_and(|since| modified <= seconds(since)),
    };
    if not_modified {
        let mut error = s3_error!(NotModified);
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(&format!("\"{}\"", object.etag)) {
            headers.insert(http::header::ETAG, value);
        }
        error.set_headers(headers);
        return Err(error);
    }
    Ok(())
}

/// The `x-amz-copy-source-if-*` headers of a copy.
struct SourceConditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_unmodified_since: Option<&'a Timestamp>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
}

impl WokS3 {
    /// Who signed the request, and the project that is theirs.
    async fn who<T>(&self, request: &S3Request<T>) -> S3Result<(Caller, ProjectId)> {
        let access_key = request
            .credentials
            .as_ref()
            .map(|credentials| credentials.access_key.as_str())
            .ok_or_else(|| s3_error!(AccessDenied, "a signature is required"))?;
        let caller = self
            .auth
            .s3_caller(access_key)
            .map_err(|_| s3_error!(InvalidAccessKeyId))?;
        let project = caller.own_project();
        Ok((caller, project))
    }

    /// `who`, then whether they may `access` the bucket.
    async fn allowed<T>(
        &self,
        request: &S3Request<T>,
        bucket: &str,
        access: Access,
    ) -> S3Result<(ProjectId, BucketName)> {
        let (caller, project) = self.who(request).await?;
        let bucket = bucket_name(bucket)?;
        if !self.auth.allows(
            &caller,
            &project,
            ResourceKind::Bucket,
            bucket.as_str(),
            access,
        ) {
            let verb = match access {
                Access::Read => "read",
                Access::Write => "write",
            };
            return Err(s3_error!(
                AccessDenied,
                "this key may not {verb} bucket {bucket:?}"
            ));
        }
        Ok((project, bucket))
    }

    /// The object a copy reads, if the caller may read it and the
    /// `x-amz-copy-source-if-*` conditions hold (each failure is a 412).
    async fn copy_source<T>(
        &self,
        request: &S3Request<T>,
        source: &dto::CopySource,
        conditions: SourceConditions<'_>,
    ) -> S3Result<(ProjectId, ObjectMeta)> {
        let (bucket, key) = match source {
            dto::CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented, "copying from an access point")),
        };
        let (project, bucket) = self.allowed(request, &bucket, Access::Read).await?;
        let object = self
            .objects
            .head(&project, &bucket, &key)
            .await
            .map_err(s3_error)?;
        check_conditions(
            &object,
            conditions.if_match,
            conditions.if_unmodified_since,
            conditions.if_none_match,
            conditions.if_modified_since,
        )
        .map_err(|error| match error.code() {
            S3ErrorCode::NotModified => s3_error!(PreconditionFailed),
            _ => error,
        })?;
        Ok((project, object))
    }

    /// For bucket management: service keys and the admin only.
    async fn managing<T>(&self, request: &S3Request<T>) -> S3Result<ProjectId> {
        let (caller, project) = self.who(request).await?;
        if !caller.serves(&project) {
            return Err(s3_error!(
                AccessDenied,
                "managing buckets needs a service key or the admin credential"
            ));
        }
        Ok(project)
    }
}

#[async_trait::async_trait]
impl S3 for WokS3 {
    async fn list_buckets(
        &self,
        request: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let project = self.managing(&request).await?;
        let buckets = self.objects.buckets(&project).await.map_err(s3_error)?;
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|bucket| dto::Bucket {
                        name: Some(bucket.name.to_string()),
                        creation_date: Some(timestamp(bucket.created_at)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            owner: Some(dto::Owner {
                display_name: Some(project.to_string()),
                id: Some(project.to_string()),
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        request: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let project = self.managing(&request).await?;
        let bucket = bucket_name(&request.input.bucket)?;
        self.objects
            .create_bucket(&project, &bucket, objects::BucketLimits::default())
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(
        &self,
        request: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let project = self.managing(&request).await?;
        let bucket = bucket_name(&request.input.bucket)?;
        crate::objects::remove_bucket(&self.objects, &self.auth, &project, &bucket)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        request: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Read)
            .await?;
        self.objects
            .bucket(&project, &bucket)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        request: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Read)
            .await?;
        self.objects
            .bucket(&project, &bucket)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn put_object(
        &self,
        mut request: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let input = &mut request.input;
        let body = input.body.take().ok_or_else(|| s3_error!(IncompleteBody))?;
        let options = PutOptions {
            content_type: input.content_type.take(),
            metadata: metadata_pairs(input.metadata.take()),
            headers: kept_headers!(input),
            content_md5: input.content_md5.take(),
            checksums: claimed(
                input.checksum_crc32.take(),
                input.checksum_crc32c.take(),
                input.checksum_crc64nvme.take(),
                input.checksum_sha1.take(),
                input.checksum_sha256.take(),
            ),
            compute: announced(&request.headers, input.checksum_algorithm.as_ref()),
            length: announced_length(&request.headers, input.content_length),
            condition: condition(input.if_match.as_ref(), input.if_none_match.as_ref()),
        };
        let key = input.key.clone();
        let object = self
            .objects
            .put(
                &project,
                &bucket,
                &key,
                body,
                options,
                trailer_reader(request.trailing_headers.take()),
            )
            .await
            .map_err(s3_error)?;
        let mut output = dto::PutObjectOutput {
            e_tag: Some(etag(&object)),
            size: Some(object.size as i64),
            ..Default::default()
        };
        set_checksums!(output, &object.checksums);
        Ok(S3Response::new(output))
    }

    async fn get_object(
        &self,
        request: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Read)
            .await?;
        let input = &request.input;
        let object = self
            .objects
            .head(&project, &bucket, &input.key)
            .await
            .map_err(s3_error)?;
        check_conditions(
            &object,
            input.if_match.as_ref(),
            input.if_unmodified_since.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
        )?;
        let range = match (input.part_number, &input.range) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "a request names a part number or a range, not both"
                ));
            }
            (Some(number), None) => Some(part_range(&object, number)?),
            (None, Some(range)) => Some(range.check(object.size)?),
            (None, None) => None,
        };
        let (start, end) = range
            .as_ref()
            .map_or((0, object.size), |range| (range.start, range.end));
        let body = self.objects.read(&object, start..end);
        // A part of a multipart object is part of it, like a range; the
        // one part of another object is the object.
        let partial = match input.part_number {
            Some(_) => parts_count(&object) > 1,
            None => range.is_some(),
        };
        let mut output = dto::GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some((end - start) as i64),
            content_range: range
                .as_ref()
                .filter(|range| partial && range.start < range.end)
                .map(|range| format!("bytes {}-{}/{}", range.start, range.end - 1, object.size)),
            parts_count: input.part_number.map(|_| parts_count(&object)),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(etag(&object)),
            last_modified: Some(timestamp(object.last_modified)),
            content_type: object.content_type.clone(),
            metadata: metadata_map(&object.metadata),
            ..Default::default()
        };
        // A checksum describes the whole object: only for whole reads.
        let wants_checksums = input
            .checksum_mode
            .as_ref()
            .is_some_and(|mode| mode.as_str() == dto::ChecksumMode::ENABLED);
        if wants_checksums && range.is_none() {
            set_checksums!(output, &object.checksums);
        }
        set_kept_headers!(output, &object.headers);
        let mut response = S3Response::new(output);
        if partial && input.part_number.is_some() {
            response.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(response)
    }

    async fn head_object(
        &self,
        request: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Read)
            .await?;
        let input = &request.input;
        let object = self
            .objects
            .head(&project, &bucket, &input.key)
            .await
            .map_err(s3_error)?;
        check_conditions(
            &object,
            input.if_match.as_ref(),
            input.if_unmodified_since.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
        )?;
        let part = input
            .part_number
            .map(|number| part_range(&object, number))
            .transpose()?;
        let mut output = dto::HeadObjectOutput {
            content_length: Some(
                part.as_ref()
                    .map_or(object.size, |range| range.end - range.start) as i64,
            ),
            parts_count: input.part_number.map(|_| parts_count(&object)),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(etag(&object)),
            last_modified: Some(timestamp(object.last_modified)),
            content_type: object.content_type.clone(),
            metadata: metadata_map(&object.metadata),
            ..Default::default()
        };
        if input
            .checksum_mode
            .as_ref()
            .is_some_and(|mode| mode.as_str() == dto::ChecksumMode::ENABLED)
        {
            set_checksums!(output, &object.checksums);
        }
        set_kept_headers!(output, &object.headers);
        Ok(S3Response::new(output))
    }

    async fn delete_object(
        &self,
        request: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let condition = condition(request.input.if_match.as_ref(), None);
        self.objects
            .delete(&project, &bucket, &request.input.key, condition)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        request: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        // A missing bucket fails the request, not each key.
        self.objects
            .bucket(&project, &bucket)
            .await
            .map_err(s3_error)?;
        if request.input.delete.objects.len() > MAX_KEYS as usize {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request names at most {MAX_KEYS} keys"
            ));
        }
        let quiet = request.input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for identifier in &request.input.delete.objects {
            match self
                .objects
                .delete(&project, &bucket, &identifier.key, ObjectCondition::Always)
                .await
            {
                Ok(_) => {
                    if !quiet {
                        deleted.push(dto::DeletedObject {
                            key: Some(identifier.key.clone()),
                            ..Default::default()
                        });
                    }
                }
                Err(error) => {
                    let error = s3_error(error);
                    errors.push(dto::Error {
                        code: Some(error.code().as_str().to_owned()),
                        key: Some(identifier.key.clone()),
                        message: error.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: if errors.is_empty() {
                None
            } else {
                Some(errors)
            },
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        request: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let input = &request.input;
        let conditions = SourceConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
        };
        let (project, source) = self
            .copy_source(&request, &input.copy_source, conditions)
            .await?;
        let (_, bucket) = self.allowed(&request, &input.bucket, Access::Write).await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|directive| directive.as_str() == dto::MetadataDirective::REPLACE);
        if !replace && source_is(&input.copy_source, &bucket, &input.key) {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let description = if replace {
            objects::Description {
                content_type: input.content_type.clone(),
                metadata: metadata_pairs(input.metadata.clone()),
                headers: kept_headers!(input),
            }
        } else {
            objects::Description {
                content_type: source.content_type.clone(),
                metadata: source.metadata.clone(),
                headers: source.headers.clone(),
            }
        };
        let object = self
            .objects
            .copy(
                &project,
                &source,
                &bucket,
                &input.key,
                description,
                ObjectCondition::Always,
            )
            .await
            .map_err(s3_error)?;
        let mut result = dto::CopyObjectResult {
            e_tag: Some(etag(&object)),
            last_modified: Some(timestamp(object.last_modified)),
            ..Default::default()
        };
        set_checksums!(result, &object.checksums);
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(result),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        request: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Read)
            .await?;
        let input = &request.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS);
        let token = input
            .continuation_token
            .as_deref()
            .map(position_of)
            .transpose()?;
        // Resume after the later of the token and start-after.
        let after = match (token, input.start_after.clone()) {
            (Some(token), Some(start)) => Some(token.max(start)),
            (token, start) => token.or(start),
        };
        let listing = if max_keys == 0 {
            Default::default()
        } else {
            self.objects
                .list(
                    &project,
                    &bucket,
                    &prefix,
                    input
                        .delimiter
                        .as_deref()
                        .filter(|delimiter| !delimiter.is_empty()),
                    after.as_deref(),
                    max_keys as u32,
                )
                .await
                .map_err(s3_error)?
        };
        let text = listing_text(input.encoding_type.as_ref());
        let count = listing.objects.len() + listing.common_prefixes.len();
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(bucket.to_string()),
            prefix: Some(text(&prefix)),
            delimiter: input
                .delimiter
                .as_deref()
                .filter(|delimiter| !delimiter.is_empty())
                .map(&text),
            max_keys: Some(max_keys),
            key_count: Some(count as i32),
            is_truncated: Some(listing.next_after.is_some()),
            continuation_token: input.continuation_token.clone(),
            next_continuation_token: listing.next_after.as_deref().map(token_of),
            start_after: input.start_after.as_deref().map(&text),
            encoding_type: input.encoding_type.clone(),
            contents: Some(listed_objects(&listing, &text)),
            common_prefixes: Some(listed_prefixes(&listing, &text)),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        request: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Read)
            .await?;
        let input = &request.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS);
        let delimiter = input
            .delimiter
            .as_deref()
            .filter(|delimiter| !delimiter.is_empty());
        let marker = input.marker.as_deref().unwrap_or_default();
        // A marker that is a common prefix (the NextMarker of a listing with
        // this delimiter: the prefix, then a delimiter ending what follows)
        // resumes after everything under it.
        let common_prefix = delimiter.is_some_and(|delimiter| {
            marker
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(delimiter))
                .is_some_and(|inner| !inner.contains(delimiter))
        });
        let after = if common_prefix {
            Some(format!("{marker}{}", char::MAX))
        } else {
            (!marker.is_empty()).then(|| marker.to_owned())
        };
        let listing = if max_keys == 0 {
            Default::default()
        } else {
            self.objects
                .list(
                    &project,
                    &bucket,
                    &prefix,
                    delimiter,
                    after.as_deref(),
                    max_keys as u32,
                )
                .await
                .map_err(s3_error)?
        };
        let text = listing_text(input.encoding_type.as_ref());
        let truncated = listing.next_after.is_some();
        // S3 gives NextMarker with a delimiter only: the last key or common
        // prefix listed (without one, clients resume after the last key).
        let last_listed = listing
            .objects
            .last()
            .map(|object| object.key.as_str())
            .max(listing.common_prefixes.last().map(String::as_str));
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(bucket.to_string()),
            prefix: Some(text(&prefix)),
            delimiter: delimiter.map(&text),
            marker: Some(text(marker)),
            max_keys: Some(max_keys),
            is_truncated: Some(truncated),
            next_marker: last_listed
                .filter(|_| truncated && delimiter.is_some())
                .map(&text),
            encoding_type: input.encoding_type.clone(),
            contents: Some(listed_objects(&listing, &text)),
            common_prefixes: Some(listed_prefixes(&listing, &text)),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        request: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let input = &request.input;
        let upload = self
            .objects
            .create_upload(
                &project,
                &bucket,
                &input.key,
                objects::Description {
                    content_type: input.content_type.clone(),
                    metadata: metadata_pairs(input.metadata.clone()),
                    headers: kept_headers!(input),
                },
                input
                    .checksum_algorithm
                    .as_ref()
                    .map(|algorithm| algorithm.as_str().to_owned()),
            )
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(bucket.to_string()),
            key: Some(upload.key),
            upload_id: Some(upload.upload_id),
            checksum_algorithm: input.checksum_algorithm.clone(),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        mut request: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let input = &mut request.input;
        let number = u32::try_from(input.part_number)
            .map_err(|_| s3_error!(InvalidArgument, "part numbers are 1 to 10000"))?;
        let body = input.body.take().ok_or_else(|| s3_error!(IncompleteBody))?;
        let options = PutOptions {
            content_md5: input.content_md5.take(),
            checksums: claimed(
                input.checksum_crc32.take(),
                input.checksum_crc32c.take(),
                input.checksum_crc64nvme.take(),
                input.checksum_sha1.take(),
                input.checksum_sha256.take(),
            ),
            compute: announced(&request.headers, input.checksum_algorithm.as_ref()),
            length: announced_length(&request.headers, input.content_length),
            ..PutOptions::default()
        };
        let upload_id = input.upload_id.clone();
        let part = self
            .objects
            .upload_part(
                &project,
                &bucket,
                &upload_id,
                number,
                body,
                options,
                trailer_reader(request.trailing_headers.take()),
            )
            .await
            .map_err(s3_error)?;
        let mut output = dto::UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag.clone())),
            ..Default::default()
        };
        set_checksums!(output, &part.checksums);
        Ok(S3Response::new(output))
    }

    /// A part from (a range of) an existing object: what managed copies of
    /// large objects send (boto3's `copy`, `aws s3 cp` from S3 to S3).
    async fn upload_part_copy(
        &self,
        request: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let input = &request.input;
        let conditions = SourceConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
        };
        let (project, source) = self
            .copy_source(&request, &input.copy_source, conditions)
            .await?;
        let (_, bucket) = self.allowed(&request, &input.bucket, Access::Write).await?;
        let number = u32::try_from(input.part_number)
            .map_err(|_| s3_error!(InvalidArgument, "part numbers are 1 to 10000"))?;
        let range = match &input.copy_source_range {
            Some(text) => {
                let range = dto::Range::parse(text).map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "x-amz-copy-source-range must be bytes=first-last"
                    )
                })?;
                range.check(source.size)?
            }
            None => 0..source.size,
        };
        let options = PutOptions {
            length: Some(range.end - range.start),
            ..PutOptions::default()
        };
        let part = self
            .objects
            .upload_part(
                &project,
                &bucket,
                &input.upload_id,
                number,
                self.objects.read(&source, range),
                options,
                Vec::new,
            )
            .await
            .map_err(s3_error)?;
        let mut result = dto::CopyPartResult {
            e_tag: Some(ETag::Strong(part.etag.clone())),
            last_modified: Some(timestamp(part.last_modified)),
            ..Default::default()
        };
        set_checksums!(result, &part.checksums);
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(result),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        request: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let input = &request.input;
        let listed: Vec<objects::ListedPart> = input
            .multipart_upload
            .as_ref()
            .and_then(|upload| upload.parts.as_ref())
            .map(|parts| {
                parts
                    .iter()
                    .map(|part| objects::ListedPart {
                        number: part
                            .part_number
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(0),
                        etag: part
                            .e_tag
                            .as_ref()
                            .map(|etag| etag.value().to_owned())
                            .unwrap_or_default(),
                        checksums: claimed(
                            part.checksum_crc32.clone(),
                            part.checksum_crc32c.clone(),
                            part.checksum_crc64nvme.clone(),
                            part.checksum_sha1.clone(),
                            part.checksum_sha256.clone(),
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let whole = claimed(
            input.checksum_crc32.clone(),
            input.checksum_crc32c.clone(),
            input.checksum_crc64nvme.clone(),
            input.checksum_sha1.clone(),
            input.checksum_sha256.clone(),
        );
        let object = self
            .objects
            .complete(
                &project,
                &bucket,
                &input.key,
                &input.upload_id,
                &listed,
                &whole,
                condition(input.if_match.as_ref(), input.if_none_match.as_ref()),
            )
            .await
            .map_err(s3_error)?;
        let mut output = dto::CompleteMultipartUploadOutput {
            bucket: Some(bucket.to_string()),
            key: Some(object.key.clone()),
            e_tag: Some(etag(&object)),
            location: Some(format!("/{bucket}/{}", object.key)),
            ..Default::default()
        };
        set_checksums!(output, &object.checksums);
        Ok(S3Response::new(output))
    }

    async fn abort_multipart_upload(
        &self,
        request: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        self.objects
            .abort(&project, &bucket, &request.input.upload_id)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        request: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let input = &request.input;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(1, 1000);
        let after = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let upload = self
            .objects
            .upload(&project, &bucket, &input.upload_id)
            .await
            .map_err(s3_error)?;
        let mut parts = self
            .objects
            .parts(
                &project,
                &bucket,
                &input.upload_id,
                after,
                max_parts as u32 + 1,
            )
            .await
            .map_err(s3_error)?;
        let truncated = parts.len() > max_parts as usize;
        parts.truncate(max_parts as usize);
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(bucket.to_string()),
            key: Some(upload.key),
            upload_id: Some(input.upload_id.clone()),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            is_truncated: Some(truncated),
            next_part_number_marker: parts.last().map(|part| part.number as i32),
            parts: Some(
                parts
                    .iter()
                    .map(|part| {
                        let mut out = dto::Part {
                            part_number: Some(part.number as i32),
                            e_tag: Some(ETag::Strong(part.etag.clone())),
                            size: Some(part.size as i64),
                            last_modified: Some(timestamp(part.last_modified)),
                            ..Default::default()
                        };
                        set_checksums!(out, &part.checksums);
                        out
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        request: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let (project, bucket) = self
            .allowed(&request, &request.input.bucket, Access::Write)
            .await?;
        let input = &request.input;
        let max_uploads = input.max_uploads.unwrap_or(1000).clamp(1, 1000);
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input
            .key_marker
            .clone()
            .map(|key| (key, input.upload_id_marker.clone().unwrap_or_default()));
        let mut uploads = self
            .objects
            .uploads(&project, &bucket, &prefix, after, max_uploads as u32 + 1)
            .await
            .map_err(s3_error)?;
        let truncated = uploads.len() > max_uploads as usize;
        uploads.truncate(max_uploads as usize);
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(bucket.to_string()),
            prefix: Some(prefix),
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: Some(max_uploads),
            is_truncated: Some(truncated),
            next_key_marker: uploads
                .last()
                .filter(|_| truncated)
                .map(|upload| upload.key.clone()),
            next_upload_id_marker: uploads
                .last()
                .filter(|_| truncated)
                .map(|upload| upload.upload_id.clone()),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|upload| dto::MultipartUpload {
                        key: Some(upload.key),
                        upload_id: Some(upload.upload_id),
                        initiated: Some(timestamp(upload.initiated)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// Builds the S3 service over the objects and the credentials.
pub fn service(objects: Arc<Objects>, auth: Arc<Auth>) -> s3s::service::S3Service {
    let mut builder = s3s::service::S3ServiceBuilder::new(WokS3 {
        objects,
        auth: auth.clone(),
    });
    builder.set_auth(S3Credentials { auth });
    builder.build()
}

/// Whether a request is signed for S3: SigV4 (or V2) in the header, or a
/// presigned query.
fn is_s3_request(request: &Request) -> bool {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    authorization.starts_with("AWS4-HMAC-SHA256 ")
        || authorization.starts_with("AWS ")
        || request
            .uri()
            .query()
            .is_some_and(|query| query.contains("X-Amz-Signature=") || query.contains("Signature="))
}

/// Whether a request writes (refused while the disk is full): every
/// function call, and every request but reads and deletes (S3's
/// DeleteObjects is a POST with `?delete`; a document query, count or
/// explain is a POST that reads).
fn writes(request: &Request, s3: bool) -> bool {
    let path = request.uri().path();
    if path.starts_with("/fn/") || (path.starts_with("/p/") && path.contains("/fn/")) {
        return true;
    }
    match *request.method() {
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS => {
            false
        }
        http::Method::POST
            if !s3
                && path.contains("/v1/docs/")
                && ["/_query", "/_count", "/_explain"]
                    .iter()
                    .any(|read| path.ends_with(read)) =>
        {
            false
        }
        http::Method::POST if s3 => !request.uri().query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair == "delete" || pair.starts_with("delete="))
        }),
        _ => true,
    }
}

/// The refusal of a write while the disk is full.
fn disk_full_answer(s3: bool) -> Response {
    let message =
        "the server's disk is full: writes are refused until space is freed (deletes go on)";
    if s3 {
        let error = custom_error(
            "InsufficientStorage",
            http::StatusCode::INSUFFICIENT_STORAGE,
            message,
        );
        return match error.to_http_response() {
            Ok(response) => response.map(axum::body::Body::new),
            Err(_) => http::StatusCode::INSUFFICIENT_STORAGE.into_response(),
        };
    }
    crate::ApiError::InsufficientStorage(message.to_owned()).into_response()
}

/// The longest a presigned S3 URL may be valid: a week, as S3 allows.
const MAX_PRESIGNED_EXPIRY_SECONDS: u64 = 604_800;

/// The refusal of a presigned request whose `X-Amz-Expires` is not 1 to
/// 604800 seconds (s3s takes any number).
fn refuse_presigned_expiry(request: &Request) -> Option<Response> {
    // Decoded as s3s decodes it (`X-Amz-%45xpires` is the same name).
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(request.uri().query()?).unwrap_or_default();
    let mut expiries = pairs
        .iter()
        .filter(|(name, _)| name == "X-Amz-Expires")
        .peekable();
    expiries.peek()?;
    if expiries.all(|(_, expires)| {
        expires
            .parse::<u64>()
            .is_ok_and(|seconds| (1..=MAX_PRESIGNED_EXPIRY_SECONDS).contains(&seconds))
    }) {
        return None;
    }
    let error = S3Error::with_message(
        S3ErrorCode::AuthorizationQueryParametersError,
        "X-Amz-Expires must be a number of seconds from 1 to 604800 (a week)",
    );
    Some(match error.to_http_response() {
        Ok(response) => response.map(axum::body::Body::new),
        Err(_) => http::StatusCode::BAD_REQUEST.into_response(),
    })
}

/// Whether a request's body is aws-chunked (SigV4 streaming).
fn is_aws_chunked(request: &Request) -> bool {
    request
        .headers()
        .get("x-amz-content-sha256")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("STREAMING-"))
}

/// Passes an aws-chunked body through, and fails it if it ends before its
/// final (zero-sized) chunk: s3s takes such a body as whole, which lets a
/// body cut at a chunk boundary through unsigned at its end.
struct ChunkFraming {
    inner: axum::body::Body,
    framing: crate::aws_chunked::Framing,
}

impl ChunkFraming {
    fn new(inner: axum::body::Body) -> Self {
        Self {
            inner,
            framing: crate::aws_chunked::Framing::default(),
        }
    }
}

impl http_body::Body for ChunkFraming {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    self.framing.advance(&data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if !self.framing.is_complete() => {
                self.framing.finish();
                Poll::Ready(Some(Err(axum::Error::new(
                    "the aws-chunked body ended before its final chunk",
                ))))
            }
            other => other,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Names an S3 answer, as S3 does: `x-amz-request-id` on every response,
/// and `<RequestId>` in error bodies (which SDKs log and users quote).
async fn with_request_id(response: Response) -> Response {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        "x-amz-request-id",
        http::HeaderValue::from_str(&id).expect("hex is a valid header"),
    );
    let is_error_xml = parts.status.as_u16() >= 400
        && parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.contains("xml"));
    if !is_error_xml {
        return Response::from_parts(parts, body);
    }
    // Error bodies are a few hundred bytes.
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 10).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = match text.rfind("</Error>") {
        Some(end) if !text.contains("<RequestId>") => {
            format!(
                "{}<RequestId>{id}</RequestId>{}",
                &text[..end],
                &text[end..]
            )
        }
        _ => text.into_owned(),
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(text))
}

type Inner = tower::util::MapRequest<axum::Router, fn(Request) -> Request>;

/// The whole HTTP service: S3-signed requests to the S3 endpoint, the rest
/// to wok's routes.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Inner,
    pub(crate) s3: s3s::service::S3Service,
    /// Room kept for a full disk; while the disk is full, writes are refused.
    pub(crate) disk: Arc<blob::Reserve>,
}

type S3Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl tower::Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<<Inner as tower::Service<Request>>::Future, S3Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (s3, body) = (is_s3_request(&request), has_body(&request));
        // A full disk takes deletes and reads only (a function call writes
        // its record, so it waits too).
        if self.disk.is_full() && writes(&request, s3) {
            let refused = disk_full_answer(s3);
            return futures::future::Either::Right(Box::pin(async move {
                Ok(if s3 {
                    with_request_id(refused).await
                } else {
                    refused
                })
            }));
        }
        let disk = self.disk.clone();
        // A write that failed for a full disk: room for deletes, and no
        // more writes until the disk has room again. The API marks its own
        // answer (a function may answer 507 itself); S3 answers are all
        // the endpoint's own.
        let noting = move |response: Response| {
            if response
                .extensions()
                .get::<crate::error::DiskFilled>()
                .is_some()
                || (s3 && response.status() == http::StatusCode::INSUFFICIENT_STORAGE)
            {
                disk.filled();
            }
            response
        };
        if !s3 && !body {
            let answer = self.inner.call(request);
            return futures::future::Either::Right(Box::pin(
                async move { Ok(noting(answer.await?)) },
            ));
        }
        // A body that is not read by the time of the response closes the
        // connection (see `close_unless_read`).
        let (request, ended) = if body {
            let (request, ended) = watch_body(request);
            (request, Some(ended))
        } else {
            (request, None)
        };
        let finish = move |response: Response| {
            let response = noting(response);
            match &ended {
                Some(ended) => close_unless_read(response, ended),
                None => response,
            }
        };
        if !s3 {
            let answer = self.inner.call(request);
            return futures::future::Either::Right(Box::pin(
                async move { Ok(finish(answer.await?)) },
            ));
        }
        if let Some(refused) = refuse_presigned_expiry(&request) {
            return futures::future::Either::Right(Box::pin(async move {
                Ok(finish(with_request_id(refused).await))
            }));
        }
        let request = if is_aws_chunked(&request) {
            request.map(|body| axum::body::Body::new(ChunkFraming::new(body)))
        } else {
            request
        };
        let s3 = self.s3.clone();
        futures::future::Either::Right(Box::pin(async move {
            let request = request.map(s3s::Body::http_body_unsync);
            let response = match s3.call(request).await {
                Ok(response) => response.map(axum::body::Body::new),
                Err(error) => {
                    tracing::error!("the S3 endpoint failed: {error:?}");
                    http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            };
            Ok(finish(with_request_id(response).await))
        }))
    }
}
