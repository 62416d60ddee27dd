//! Uploaded components and their precompiled forms. A component is a blob
//! named `<sha256>.wasm` in any [`BlobStore`]: the upload, the source of
//! truth. Its precompiled form depends on the engine, is made again from
//! the component when missing, and is mapped into memory by the runtime:
//! a node-local cache of files, `<sha256>-<engine key>.cwasm` in a
//! [`FileBlobs`] directory.
use crate::{BlobError, BlobStore, FileBlobs, content_hash, read_all, write_all};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct ArtifactStore {
    components: Arc<dyn BlobStore>,
    compiled: FileBlobs,
}

fn component_name(hash: &str) -> String {
    format!("{hash}.wasm")
}

fn compiled_name(hash: &str, engine_key: &str) -> String {
    format!("{hash}-{engine_key}.cwasm")
}

impl ArtifactStore {
    pub fn new(components: Arc<dyn BlobStore>, compiled: FileBlobs) -> Self {
        Self {
            components,
            compiled,
        }
    }

    /// Stores an uploaded component under its content hash (once); returns
    /// the hash.
    pub async fn put_component(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let hash = content_hash(bytes);
        let name = component_name(&hash);
        if self.components.head(&name).await?.is_none() {
            write_all(&*self.components, &name, bytes).await?;
        }
        Ok(hash)
    }

    pub async fn read_component(&self, hash: &str) -> Result<Vec<u8>, BlobError> {
        read_all(&*self.components, &component_name(hash))
            .await
            .map_err(|error| match error {
                BlobError::Missing(_) => BlobError::Missing(hash.to_owned()),
                other => other,
            })
    }

    /// The precompiled form of a component for this engine, if it was made
    /// here before: a look at a local file (one `stat`), so that a caller
    /// about to map it can check in the same blocking section.
    pub fn compiled(&self, hash: &str, engine_key: &str) -> Result<Option<PathBuf>, BlobError> {
        let path = self.compiled.local_path(&compiled_name(hash, engine_key))?;
        Ok(path.is_file().then_some(path))
    }

    /// Keeps a precompiled form; returns its file.
    pub async fn put_compiled(
        &self,
        hash: &str,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, BlobError> {
        let name = compiled_name(hash, engine_key);
        write_all(&self.compiled, &name, bytes).await?;
        self.compiled.local_path(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    #[tokio::test]
    async fn components_round_trip_by_content_hash_and_compiled_forms_by_engine() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("tmp");
        let components =
            FileBlobs::open(&dir.path().join("artifacts"), Layout::Flat, &temp.join("a")).unwrap();
        let compiled =
            FileBlobs::open(&dir.path().join("compiled"), Layout::Flat, &temp.join("c")).unwrap();
        let store = ArtifactStore::new(Arc::new(components), compiled);
        let hash = store.put_component(b"component bytes").await.unwrap();
        assert_eq!(hash, content_hash(b"component bytes"));
        assert_eq!(store.put_component(b"component bytes").await.unwrap(), hash);
        assert_eq!(
            store.read_component(&hash).await.unwrap(),
            b"component bytes"
        );
        assert!(
            dir.path().join(format!("artifacts/{hash}.wasm")).exists(),
            "the layout of data directories made before"
        );
        assert!(matches!(
            store.read_component("0000").await,
            Err(BlobError::Missing(_))
        ));

        assert_eq!(store.compiled(&hash, "engine1").unwrap(), None);
        let path = store.put_compiled(&hash, "engine1", b"code").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"code");
        assert_eq!(store.compiled(&hash, "engine1").unwrap(), Some(path));
        assert_eq!(store.compiled(&hash, "engine2").unwrap(), None);
    }
}
