//! `wok:objects@0.1.0` for guests (`wit/objects`), over the function's
//! project's buckets (`invoke::GuestObjects`): the same objects as REST and
//! S3. The calls are async already (object storage streams through files).
use crate::host::HostState;
use invoke::{GuestObjectError, GuestObjectInfo};
use wasmtime::component::{HasSelf, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/objects",
        world: "wok:objects/imports",
        imports: { default: async | trappable },
    });
}

use generated::wok::objects::objects::{self as wit, Error, Host, ObjectInfo, Page};

fn guest_error(error: GuestObjectError) -> Error {
    match error {
        GuestObjectError::NoSuchBucket(message) => Error::NoSuchBucket(message),
        GuestObjectError::PreconditionFailed(message) => Error::PreconditionFailed(message),
        GuestObjectError::TooLarge(message) => Error::TooLarge(message),
        GuestObjectError::Invalid(message) => Error::Invalid(message),
        GuestObjectError::Other(message) => Error::Other(message),
    }
}

fn info(found: GuestObjectInfo) -> ObjectInfo {
    ObjectInfo {
        key: found.key,
        size: found.size,
        etag: found.etag,
        content_type: found.content_type,
        last_modified: found.last_modified,
    }
}

impl Host for HostState {
    async fn read(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let objects = self.objects.clone();
        Ok(objects.read(&bucket, &key, None).await.map_err(guest_error))
    }

    async fn read_range(
        &mut self,
        bucket: String,
        key: String,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let objects = self.objects.clone();
        Ok(objects
            .read(&bucket, &key, Some((offset, length)))
            .await
            .map_err(guest_error))
    }

    async fn head(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<ObjectInfo>, Error>> {
        let objects = self.objects.clone();
        Ok(objects
            .head(&bucket, &key)
            .await
            .map(|found| found.map(info))
            .map_err(guest_error))
    }

    async fn write(
        &mut self,
        bucket: String,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> wasmtime::Result<Result<ObjectInfo, Error>> {
        let objects = self.objects.clone();
        Ok(objects
            .write(&bucket, &key, data, content_type)
            .await
            .map(info)
            .map_err(guest_error))
    }

    async fn delete(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let objects = self.objects.clone();
        Ok(objects.delete(&bucket, &key).await.map_err(guest_error))
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        prefix: String,
        delimiter: Option<String>,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Page, Error>> {
        let objects = self.objects.clone();
        Ok(objects
            .list(
                &bucket,
                &prefix,
                delimiter.as_deref(),
                cursor.as_deref(),
                limit,
            )
            .await
            .map(|page| Page {
                objects: page.objects.into_iter().map(info).collect(),
                common_prefixes: page.common_prefixes,
                next_cursor: page.next_cursor,
            })
            .map_err(guest_error))
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
