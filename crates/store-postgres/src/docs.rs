//! Documents on PostgreSQL (being written).
use crate::PgStore;
use domain::{CollectionName, FunctionName, ProjectId};
use store::StoreError;
use store::docs::*;

fn unwritten() -> StoreError {
    StoreError::backend("documents are not written yet", false)
}

pub(crate) async fn drop_unfinished_indexes(_client: &tokio_postgres::Client) -> crate::Result<()> {
    Ok(())
}

#[store::async_trait]
impl DocStore for PgStore {
    async fn doc_get(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _id: &str,
    ) -> Result<Option<Document>, StoreError> {
        Err(unwritten())
    }

    async fn doc_write(
        &self,
        _project: &ProjectId,
        _origin: Option<&FunctionName>,
        _writes: Vec<DocWrite>,
    ) -> Result<Vec<DocWritten>, StoreError> {
        Err(unwritten())
    }

    async fn doc_query(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _query: &Query,
    ) -> Result<QueryPage, StoreError> {
        Err(unwritten())
    }

    async fn doc_snapshot(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _query: &Query,
    ) -> Result<(Vec<Document>, i64), StoreError> {
        Err(unwritten())
    }

    async fn doc_count(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _query: &Query,
    ) -> Result<u64, StoreError> {
        Err(unwritten())
    }

    async fn doc_explain(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _query: &Query,
    ) -> Result<Explain, StoreError> {
        Err(unwritten())
    }

    async fn doc_create_index(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _index: Index,
    ) -> Result<(), StoreError> {
        Err(unwritten())
    }

    async fn doc_drop_index(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
        _name: &str,
    ) -> Result<bool, StoreError> {
        Err(unwritten())
    }

    async fn doc_drop_collection(
        &self,
        _project: &ProjectId,
        _collection: &CollectionName,
    ) -> Result<bool, StoreError> {
        Err(unwritten())
    }

    async fn doc_collections(&self, _project: &ProjectId)
    -> Result<Vec<CollectionInfo>, StoreError> {
        Err(unwritten())
    }
}
