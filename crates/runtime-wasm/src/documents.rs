//! `wok:documents@0.1.0` for guests (`wit/documents`), over the function's
//! project's collections (`invoke::GuestDocuments`), the same data and rules
//! as the REST API.
use crate::host::HostState;
use invoke::{GuestDocError, GuestDocOp, GuestDocWrite, GuestDocuments};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/documents",
        world: "wok:documents/imports",
        imports: { default: async | trappable },
    });
}

use generated::wok::documents::documents::{
    self as wit, Document, Error, Host, Op, Page, Write, Written,
};

fn guest_error(error: GuestDocError) -> Error {
    match error {
        GuestDocError::NotFound(message) => Error::NotFound(message),
        GuestDocError::Exists(message) => Error::Exists(message),
        GuestDocError::PreconditionFailed(message) => Error::PreconditionFailed(message),
        GuestDocError::Invalid(message) => Error::Invalid(message),
        GuestDocError::Unindexed(message) => Error::Unindexed(message),
        GuestDocError::Other(message) => Error::Other(message),
    }
}

fn written(done: invoke::GuestDocWritten) -> Written {
    Written {
        id: done.id,
        version: done.version,
    }
}

fn document(found: invoke::GuestDocument) -> Document {
    Document {
        id: found.id,
        version: found.version,
        data: found.data,
    }
}

/// One write, as a batch of one.
async fn write_one(
    documents: Arc<dyn GuestDocuments>,
    write: GuestDocWrite,
) -> wasmtime::Result<Result<Written, Error>> {
    let done = documents.write(vec![write]).await.map_err(guest_error);
    Ok(done.and_then(|mut done| {
        done.pop()
            .map(written)
            .ok_or_else(|| Error::Other("the write answered nothing".to_owned()))
    }))
}

impl Host for HostState {
    async fn get(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<Option<Document>, Error>> {
        let found = self
            .documents
            .clone()
            .get(&collection, &id)
            .await
            .map_err(guest_error);
        Ok(found.map(|found| found.map(document)))
    }

    async fn create(
        &mut self,
        collection: String,
        id: Option<String>,
        data: String,
    ) -> wasmtime::Result<Result<Written, Error>> {
        write_one(
            self.documents.clone(),
            GuestDocWrite {
                op: GuestDocOp::Create,
                collection,
                id,
                data: Some(data),
                if_version: None,
            },
        )
        .await
    }

    async fn set(
        &mut self,
        collection: String,
        id: String,
        data: String,
        if_version: Option<u64>,
    ) -> wasmtime::Result<Result<Written, Error>> {
        write_one(
            self.documents.clone(),
            GuestDocWrite {
                op: GuestDocOp::Set,
                collection,
                id: Some(id),
                data: Some(data),
                if_version,
            },
        )
        .await
    }

    async fn patch(
        &mut self,
        collection: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> wasmtime::Result<Result<Written, Error>> {
        write_one(
            self.documents.clone(),
            GuestDocWrite {
                op: GuestDocOp::Patch,
                collection,
                id: Some(id),
                data: Some(patch),
                if_version,
            },
        )
        .await
    }

    async fn delete(
        &mut self,
        collection: String,
        id: String,
        if_version: Option<u64>,
    ) -> wasmtime::Result<Result<Written, Error>> {
        write_one(
            self.documents.clone(),
            GuestDocWrite {
                op: GuestDocOp::Delete,
                collection,
                id: Some(id),
                data: None,
                if_version,
            },
        )
        .await
    }

    async fn batch(&mut self, writes: Vec<Write>) -> wasmtime::Result<Result<Vec<Written>, Error>> {
        let writes = writes
            .into_iter()
            .map(|write| GuestDocWrite {
                op: match write.op {
                    Op::Create => GuestDocOp::Create,
                    Op::Set => GuestDocOp::Set,
                    Op::Patch => GuestDocOp::Patch,
                    Op::Delete => GuestDocOp::Delete,
                },
                collection: write.collection,
                id: write.id,
                data: write.data,
                if_version: write.if_version,
            })
            .collect();
        let done = self
            .documents
            .clone()
            .write(writes)
            .await
            .map_err(guest_error);
        Ok(done.map(|done| done.into_iter().map(written).collect()))
    }

    async fn query(
        &mut self,
        collection: String,
        query: String,
    ) -> wasmtime::Result<Result<Page, Error>> {
        let page = self
            .documents
            .clone()
            .query(&collection, &query)
            .await
            .map_err(guest_error);
        Ok(page.map(|page| Page {
            documents: page.documents.into_iter().map(document).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn count(
        &mut self,
        collection: String,
        query: String,
    ) -> wasmtime::Result<Result<u64, Error>> {
        Ok(self
            .documents
            .clone()
            .count(&collection, &query)
            .await
            .map_err(guest_error))
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
