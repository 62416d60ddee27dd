//! Document collections: names, single writes and atomic batches (1 to
//! [`MAX_BATCH_WRITES`] writes, from the loose parts REST and guests send),
//! queries in the JSON query language, counts, plans, live-query
//! snapshots, and declared indexes.
use crate::DataError;
use domain::{CollectionName, FunctionName, ProjectId};
use serde_json::Value;
use std::sync::Arc;
use store::StoreError;
use store::docs::{
    CollectionInfo, DocStore, DocWrite, DocWritten, Document, Explain, Index, QueryPage, WriteKind,
    parse_index_fields, parse_query,
};

pub use store::docs::MAX_BATCH_WRITES;

/// One write of a batch as a caller sends it: `op` is `create`, `set`,
/// `patch` or `delete`; `data` the document or the patch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchWrite {
    pub op: String,
    pub collection: String,
    pub id: Option<String>,
    pub data: Option<Value>,
    pub if_version: Option<u64>,
}

pub struct Documents {
    docs: Arc<dyn DocStore>,
}

impl Documents {
    pub fn new(docs: Arc<dyn DocStore>) -> Self {
        Self { docs }
    }

    pub fn collection_name(name: &str) -> Result<CollectionName, DataError> {
        CollectionName::new(name).map_err(|error| DataError::InvalidName(error.to_string()))
    }

    /// Checks an index name: 1 to 63 lowercase letters, digits or `-`.
    pub fn index_name(name: &str) -> Result<(), DataError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if valid {
            Ok(())
        } else {
            Err(DataError::InvalidName(format!(
                "index name {name:?} must be 1 to 63 lowercase letters, digits or '-'"
            )))
        }
    }

    pub async fn get(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        id: &str,
    ) -> Result<Option<Document>, DataError> {
        Ok(self.docs.doc_get(project, collection, id).await?)
    }

    /// One write, answered without a batch around its error. `origin`:
    /// the function writing, if one is (its change events name it).
    pub async fn write(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        write: DocWrite,
    ) -> Result<DocWritten, DataError> {
        match self.docs.doc_write(project, origin, vec![write]).await {
            Ok(mut done) => done
                .pop()
                .ok_or_else(|| StoreError::backend("a write answered nothing", false).into()),
            Err(StoreError::BatchFailed { error, .. }) => Err((*error).into()),
            Err(error) => Err(error.into()),
        }
    }

    /// The writes of a batch, checked: 1 to [`MAX_BATCH_WRITES`], each
    /// whole. An error names the write it is about.
    pub fn batch_writes(writes: Vec<BatchWrite>) -> Result<Vec<DocWrite>, DataError> {
        if writes.is_empty() || writes.len() > MAX_BATCH_WRITES {
            return Err(DataError::InvalidBatch(format!(
                "a batch has 1 to {MAX_BATCH_WRITES} writes"
            )));
        }
        writes
            .into_iter()
            .enumerate()
            .map(|(at, write)| {
                WriteKind::parse(&write.op)
                    .and_then(|kind| {
                        DocWrite::from_parts(
                            kind,
                            &write.collection,
                            write.id,
                            write.data,
                            write.if_version,
                        )
                    })
                    .map_err(|message| DataError::InvalidBatch(format!("write {at}: {message}")))
            })
            .collect()
    }

    /// Writes that commit together or not at all; a failure is
    /// [`StoreError::BatchFailed`], naming the write.
    pub async fn batch(
        &self,
        project: &ProjectId,
        origin: Option<&FunctionName>,
        writes: Vec<DocWrite>,
    ) -> Result<Vec<DocWritten>, DataError> {
        Ok(self.docs.doc_write(project, origin, writes).await?)
    }

    /// A page of what `query` (the JSON query language) matches.
    pub async fn query(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Value,
    ) -> Result<QueryPage, DataError> {
        let query = parse_query(query)?;
        Ok(self.docs.doc_query(project, collection, &query).await?)
    }

    /// How many documents the query's filter matches.
    pub async fn count(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Value,
    ) -> Result<u64, DataError> {
        let query = parse_query(query)?;
        Ok(self.docs.doc_count(project, collection, &query).await?)
    }

    /// How the query would run.
    pub async fn explain(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &Value,
    ) -> Result<Explain, DataError> {
        let query = parse_query(query)?;
        Ok(self.docs.doc_explain(project, collection, &query).await?)
    }

    /// Every document a live query matches and the log position they were
    /// read at (see `DocStore::doc_snapshot`).
    pub async fn snapshot(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        query: &store::docs::Query,
    ) -> Result<(Vec<Document>, i64), DataError> {
        Ok(self.docs.doc_snapshot(project, collection, query).await?)
    }

    /// Declares an index on `fields` (`["city", "-age"]`) and fills it.
    pub async fn create_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        name: &str,
        fields: &Value,
    ) -> Result<Index, DataError> {
        Self::index_name(name)?;
        let fields = parse_index_fields(fields)
            .map_err(|error| DataError::InvalidIndex(error.to_string()))?;
        let index = Index {
            name: name.to_owned(),
            fields,
        };
        self.docs
            .doc_create_index(project, collection, index.clone())
            .await?;
        Ok(index)
    }

    /// Whether the index existed.
    pub async fn drop_index(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
        name: &str,
    ) -> Result<bool, DataError> {
        Ok(self.docs.doc_drop_index(project, collection, name).await?)
    }

    /// Deletes every document and index of a collection; whether there
    /// was anything.
    pub async fn drop_collection(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
    ) -> Result<bool, DataError> {
        Ok(self.docs.doc_drop_collection(project, collection).await?)
    }

    pub async fn collections(&self, project: &ProjectId) -> Result<Vec<CollectionInfo>, DataError> {
        Ok(self.docs.doc_collections(project).await?)
    }

    /// The indexes of one collection (none if it holds nothing).
    pub async fn indexes(
        &self,
        project: &ProjectId,
        collection: &CollectionName,
    ) -> Result<Vec<Index>, DataError> {
        Ok(self
            .collections(project)
            .await?
            .into_iter()
            .find(|info| info.name == *collection)
            .map(|info| info.indexes)
            .unwrap_or_default())
    }
}
