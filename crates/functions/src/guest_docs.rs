//! `invoke::GuestDocuments` over the document service, bound to one
//! project: the rules are `data::Documents`', the same as REST's; a
//! guest's writes name its function as their origin.
use data::{BatchWrite, DataError, Documents};
use domain::{FunctionName, ProjectId};
use invoke::{
    GuestDocError, GuestDocOp, GuestDocPage, GuestDocWrite, GuestDocWritten, GuestDocument,
    GuestDocuments, ServiceFuture,
};
use serde_json::Value;
use std::sync::Arc;
use store::StoreError;

pub struct ProjectDocuments {
    pub project: ProjectId,
    /// The function writing: its writes' change events name it.
    pub function: FunctionName,
    pub docs: Arc<Documents>,
}

fn json(text: &str, what: &str) -> Result<Value, GuestDocError> {
    serde_json::from_str(text)
        .map_err(|error| GuestDocError::Invalid(format!("the {what} is not JSON: {error}")))
}

fn store_error(error: StoreError) -> GuestDocError {
    match error {
        StoreError::BatchFailed { write, error } => {
            let inner = store_error(*error);
            let message =
                format!("write {write} of the batch failed, so nothing was written: {inner}");
            match inner {
                GuestDocError::NotFound(_) => GuestDocError::NotFound(message),
                GuestDocError::Exists(_) => GuestDocError::Exists(message),
                GuestDocError::PreconditionFailed(_) => GuestDocError::PreconditionFailed(message),
                GuestDocError::Invalid(_) => GuestDocError::Invalid(message),
                GuestDocError::Unindexed(_) => GuestDocError::Unindexed(message),
                GuestDocError::Other(_) => GuestDocError::Other(message),
            }
        }
        StoreError::NoSuchDocument(id) => {
            GuestDocError::NotFound(format!("no document {id:?} in this collection"))
        }
        StoreError::DocumentExists(_) => GuestDocError::Exists(error.to_string()),
        StoreError::ConditionFailed => GuestDocError::PreconditionFailed(
            "the document is not at the version the write requires".to_owned(),
        ),
        StoreError::InvalidDocument(message) | StoreError::InvalidQuery(message) => {
            GuestDocError::Invalid(message)
        }
        StoreError::UnindexedQuery(message) => GuestDocError::Unindexed(message),
        error => {
            tracing::error!("document store failed for a guest: {error}");
            GuestDocError::Other("the document store failed".to_owned())
        }
    }
}

fn guest_error(error: DataError) -> GuestDocError {
    match error {
        DataError::Store(error) => store_error(error),
        error => GuestDocError::Invalid(error.to_string()),
    }
}

fn guest_document(document: store::docs::Document) -> GuestDocument {
    GuestDocument {
        id: document.id,
        version: document.version,
        data: Value::Object(document.data).to_string(),
    }
}

fn batch_write(write: GuestDocWrite) -> Result<BatchWrite, String> {
    let op = match write.op {
        GuestDocOp::Create => "create",
        GuestDocOp::Set => "set",
        GuestDocOp::Patch => "patch",
        GuestDocOp::Delete => "delete",
    };
    Ok(BatchWrite {
        op: op.to_owned(),
        collection: write.collection,
        id: write.id,
        data: write
            .data
            .as_deref()
            .map(|text| {
                serde_json::from_str(text).map_err(|error| format!("data is not JSON: {error}"))
            })
            .transpose()?,
        if_version: write.if_version,
    })
}

impl GuestDocuments for ProjectDocuments {
    fn get<'a>(
        &'a self,
        collection: &'a str,
        id: &'a str,
    ) -> ServiceFuture<'a, Option<GuestDocument>, GuestDocError> {
        Box::pin(async move {
            let collection = Documents::collection_name(collection).map_err(guest_error)?;
            let found = self
                .docs
                .get(&self.project, &collection, id)
                .await
                .map_err(guest_error)?;
            Ok(found.map(guest_document))
        })
    }

    fn write<'a>(
        &'a self,
        writes: Vec<GuestDocWrite>,
    ) -> ServiceFuture<'a, Vec<GuestDocWritten>, GuestDocError> {
        Box::pin(async move {
            let writes = writes
                .into_iter()
                .enumerate()
                .map(|(at, write)| {
                    batch_write(write)
                        .map_err(|message| GuestDocError::Invalid(format!("write {at}: {message}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut writes = Documents::batch_writes(writes).map_err(guest_error)?;
            let origin = Some(&self.function);
            // A single write's error needs no batch wrapper.
            let done = if writes.len() == 1 {
                let write = writes.pop().expect("one write");
                vec![
                    self.docs
                        .write(&self.project, origin, write)
                        .await
                        .map_err(guest_error)?,
                ]
            } else {
                self.docs
                    .batch(&self.project, origin, writes)
                    .await
                    .map_err(guest_error)?
            };
            Ok(done
                .into_iter()
                .map(|written| GuestDocWritten {
                    id: written.id,
                    version: written.version,
                })
                .collect())
        })
    }

    fn query<'a>(
        &'a self,
        collection: &'a str,
        query: &'a str,
    ) -> ServiceFuture<'a, GuestDocPage, GuestDocError> {
        Box::pin(async move {
            let collection = Documents::collection_name(collection).map_err(guest_error)?;
            let page = self
                .docs
                .query(&self.project, &collection, &json(query, "query")?)
                .await
                .map_err(guest_error)?;
            Ok(GuestDocPage {
                documents: page.documents.into_iter().map(guest_document).collect(),
                next_cursor: page.next_cursor,
            })
        })
    }

    fn count<'a>(
        &'a self,
        collection: &'a str,
        query: &'a str,
    ) -> ServiceFuture<'a, u64, GuestDocError> {
        Box::pin(async move {
            let collection = Documents::collection_name(collection).map_err(guest_error)?;
            self.docs
                .count(&self.project, &collection, &json(query, "query")?)
                .await
                .map_err(guest_error)
        })
    }
}
