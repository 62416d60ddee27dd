//! `invoke::GuestDocuments` over the document store, bound to one project:
//! the same parsing, limits and errors as the REST API.
use domain::{CollectionName, FunctionName, ProjectId};
use invoke::{
    GuestDocError, GuestDocOp, GuestDocPage, GuestDocWrite, GuestDocWritten, GuestDocument,
    GuestDocuments, ServiceFuture,
};
use serde_json::Value;
use std::sync::Arc;
use store::StoreError;
use store::docs::{DocStore, DocWrite, MAX_BATCH_WRITES, WriteKind, parse_query};

pub struct ProjectDocuments {
    pub project: ProjectId,
    /// The function writing: its writes' change events name it.
    pub function: FunctionName,
    pub docs: Arc<dyn DocStore>,
}

fn collection_name(name: &str) -> Result<CollectionName, GuestDocError> {
    CollectionName::new(name).map_err(|error| GuestDocError::Invalid(error.to_string()))
}

fn json(text: &str, what: &str) -> Result<Value, GuestDocError> {
    serde_json::from_str(text)
        .map_err(|error| GuestDocError::Invalid(format!("the {what} is not JSON: {error}")))
}

fn guest_error(error: StoreError) -> GuestDocError {
    match error {
        StoreError::BatchFailed { write, error } => {
            let inner = guest_error(*error);
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

fn write_from_guest(write: GuestDocWrite) -> Result<DocWrite, String> {
    let kind = match write.op {
        GuestDocOp::Create => WriteKind::Create,
        GuestDocOp::Set => WriteKind::Set,
        GuestDocOp::Patch => WriteKind::Patch,
        GuestDocOp::Delete => WriteKind::Delete,
    };
    let data = write
        .data
        .as_deref()
        .map(|text| {
            serde_json::from_str(text).map_err(|error| format!("data is not JSON: {error}"))
        })
        .transpose()?;
    DocWrite::from_parts(kind, &write.collection, write.id, data, write.if_version)
}

fn guest_document(document: store::docs::Document) -> GuestDocument {
    GuestDocument {
        id: document.id,
        version: document.version,
        data: Value::Object(document.data).to_string(),
    }
}

impl GuestDocuments for ProjectDocuments {
    fn get<'a>(
        &'a self,
        collection: &'a str,
        id: &'a str,
    ) -> ServiceFuture<'a, Option<GuestDocument>, GuestDocError> {
        Box::pin(async move {
            let collection = collection_name(collection)?;
            let found = self
                .docs
                .doc_get(&self.project, &collection, id)
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
            if writes.is_empty() || writes.len() > MAX_BATCH_WRITES {
                return Err(GuestDocError::Invalid(format!(
                    "a batch has 1 to {MAX_BATCH_WRITES} writes"
                )));
            }
            let writes = writes
                .into_iter()
                .enumerate()
                .map(|(at, write)| {
                    write_from_guest(write)
                        .map_err(|message| GuestDocError::Invalid(format!("write {at}: {message}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let single = writes.len() == 1;
            let done = self
                .docs
                .doc_write(&self.project, Some(&self.function), writes)
                .await
                .map_err(|error| match error {
                    // A single write's error needs no batch wrapper.
                    StoreError::BatchFailed { error, .. } if single => guest_error(*error),
                    error => guest_error(error),
                })?;
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
            let collection = collection_name(collection)?;
            let query = parse_query(&json(query, "query")?).map_err(guest_error)?;
            let page = self
                .docs
                .doc_query(&self.project, &collection, &query)
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
            let collection = collection_name(collection)?;
            let query = parse_query(&json(query, "query")?).map_err(guest_error)?;
            self.docs
                .doc_count(&self.project, &collection, &query)
                .await
                .map_err(guest_error)
        })
    }
}
