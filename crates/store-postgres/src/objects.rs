//! Object metadata on PostgreSQL (being written).
use crate::PgStore;
use domain::{BucketName, ProjectId, UnixMillis};
use store::StoreError;
use store::objects::*;

fn unwritten() -> StoreError {
    StoreError::backend("objects are not written yet", false)
}

#[store::async_trait]
impl ObjectStore for PgStore {
    async fn bucket(
        &self,
        _project: &ProjectId,
        _name: &BucketName,
    ) -> Result<Option<Bucket>, StoreError> {
        Err(unwritten())
    }

    async fn buckets(&self, _project: &ProjectId) -> Result<Vec<Bucket>, StoreError> {
        Err(unwritten())
    }

    async fn object(
        &self,
        _project: &ProjectId,
        _bucket: &BucketName,
        _key: &str,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        Err(unwritten())
    }

    async fn objects(
        &self,
        _project: &ProjectId,
        _bucket: &BucketName,
        _prefix: &str,
        _delimiter: Option<&str>,
        _after: Option<&str>,
        _limit: u32,
    ) -> Result<ObjectListing, StoreError> {
        Err(unwritten())
    }

    async fn upload(
        &self,
        _project: &ProjectId,
        _bucket: &BucketName,
        _upload_id: &str,
    ) -> Result<Option<Upload>, StoreError> {
        Err(unwritten())
    }

    async fn uploads(
        &self,
        _project: &ProjectId,
        _bucket: &BucketName,
        _prefix: &str,
        _after: Option<(&str, &str)>,
        _limit: u32,
    ) -> Result<Vec<Upload>, StoreError> {
        Err(unwritten())
    }

    async fn parts(
        &self,
        _project: &ProjectId,
        _bucket: &BucketName,
        _upload_id: &str,
        _after: u32,
        _limit: u32,
    ) -> Result<Vec<Part>, StoreError> {
        Err(unwritten())
    }

    async fn object_write(&self, _op: ObjectOp) -> Result<ObjectDone, StoreError> {
        Err(unwritten())
    }

    async fn trash(&self) -> Result<Vec<String>, StoreError> {
        Err(unwritten())
    }

    async fn trash_emptied(&self, _blobs: &[String]) -> Result<(), StoreError> {
        Err(unwritten())
    }

    async fn named_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        Err(unwritten())
    }

    async fn stale_uploads(
        &self,
        _before: UnixMillis,
        _limit: u32,
    ) -> Result<Vec<(ProjectId, BucketName, String)>, StoreError> {
        Err(unwritten())
    }
}
