//! `invoke::GuestObjects` over the objects service, bound to one project:
//! the same buckets, limits and errors as REST and S3.
use domain::{BucketName, FunctionName, ProjectId};
use invoke::{GuestObjectError, GuestObjectInfo, GuestObjectPage, GuestObjects, ServiceFuture};
use objects::{ObjectError, Objects, PutOptions};
use std::sync::Arc;
use store::events::with_origin;
use store::objects::{ObjectCondition, ObjectMeta};

/// Largest object `read` hands a guest whole; larger ones are read in
/// ranges, so one call never makes the host hold more than this.
pub const MAX_GUEST_READ: u64 = 16 << 20;

pub struct ProjectObjects {
    pub project: ProjectId,
    /// The function writing: its writes' change events name it.
    pub function: FunctionName,
    pub objects: Arc<Objects>,
}

fn bucket_name(name: &str) -> Result<BucketName, GuestObjectError> {
    BucketName::new(name).map_err(|error| GuestObjectError::Invalid(error.to_string()))
}

fn guest_error(error: ObjectError) -> GuestObjectError {
    let message = error.to_string();
    match error {
        ObjectError::NoSuchBucket(_) => GuestObjectError::NoSuchBucket(message),
        ObjectError::PreconditionFailed => GuestObjectError::PreconditionFailed(message),
        ObjectError::TooLarge { .. } => GuestObjectError::TooLarge(message),
        ObjectError::ContentTypeRefused { .. }
        | ObjectError::InvalidArgument(_)
        | ObjectError::BadDigest(_)
        | ObjectError::IncompleteBody(_) => GuestObjectError::Invalid(message),
        error => {
            tracing::error!("object storage failed for a guest: {error}");
            GuestObjectError::Other("object storage failed".to_owned())
        }
    }
}

fn info(object: &ObjectMeta) -> GuestObjectInfo {
    GuestObjectInfo {
        key: object.key.clone(),
        size: object.size,
        etag: object.etag.clone(),
        content_type: object.content_type.clone(),
        last_modified: object.last_modified,
    }
}

impl ProjectObjects {
    /// The object's metadata; `None` if it does not exist.
    async fn find(
        &self,
        bucket: &BucketName,
        key: &str,
    ) -> Result<Option<ObjectMeta>, GuestObjectError> {
        match self.objects.head(&self.project, bucket, key).await {
            Ok(object) => Ok(Some(object)),
            Err(ObjectError::NoSuchKey(_)) => Ok(None),
            Err(error) => Err(guest_error(error)),
        }
    }
}

impl GuestObjects for ProjectObjects {
    fn read<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
    ) -> ServiceFuture<'a, Option<Vec<u8>>, GuestObjectError> {
        Box::pin(async move {
            use futures::TryStreamExt;
            let bucket = bucket_name(bucket)?;
            let Some(object) = self.find(&bucket, key).await? else {
                return Ok(None);
            };
            let (start, end) = match range {
                Some((offset, length)) => {
                    let start = offset.min(object.size);
                    (start, start.saturating_add(length).min(object.size))
                }
                None => (0, object.size),
            };
            if end - start > MAX_GUEST_READ {
                return Err(GuestObjectError::TooLarge(format!(
                    "{} bytes asked at once; read at most {MAX_GUEST_READ} bytes a call with read-range",
                    end - start
                )));
            }
            let mut bytes = Vec::with_capacity((end - start) as usize);
            let mut stream = self.objects.read(&object, start..end);
            while let Some(chunk) = stream.try_next().await.map_err(|error| {
                GuestObjectError::Other(format!("reading the object failed: {error}"))
            })? {
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(bytes))
        })
    }

    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, Option<GuestObjectInfo>, GuestObjectError> {
        Box::pin(async move {
            let bucket = bucket_name(bucket)?;
            Ok(self.find(&bucket, key).await?.as_ref().map(info))
        })
    }

    fn write<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> ServiceFuture<'a, GuestObjectInfo, GuestObjectError> {
        Box::pin(async move {
            let bucket = bucket_name(bucket)?;
            let length = data.len() as u64;
            let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
            let options = PutOptions {
                content_type,
                length: Some(length),
                condition: ObjectCondition::Always,
                ..PutOptions::default()
            };
            let put = self
                .objects
                .put(&self.project, &bucket, key, body, options, Vec::new);
            let object = with_origin(self.function.clone(), put)
                .await
                .map_err(guest_error)?;
            Ok(info(&object))
        })
    }

    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> ServiceFuture<'a, bool, GuestObjectError> {
        Box::pin(async move {
            let bucket = bucket_name(bucket)?;
            let delete = self
                .objects
                .delete(&self.project, &bucket, key, ObjectCondition::Always);
            with_origin(self.function.clone(), delete)
                .await
                .map_err(guest_error)
        })
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> ServiceFuture<'a, GuestObjectPage, GuestObjectError> {
        Box::pin(async move {
            let bucket = bucket_name(bucket)?;
            let listing = self
                .objects
                .list(
                    &self.project,
                    &bucket,
                    prefix,
                    delimiter,
                    cursor,
                    limit.clamp(1, 1000),
                )
                .await
                .map_err(guest_error)?;
            Ok(GuestObjectPage {
                objects: listing.objects.iter().map(info).collect(),
                common_prefixes: listing.common_prefixes,
                next_cursor: listing.next_after,
            })
        })
    }
}
