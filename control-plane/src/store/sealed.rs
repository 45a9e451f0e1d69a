//! Secrets encrypted at rest: a [`Store`] in front of another that seals every certificate's
//! private key (`gateway_proto::secret`: AES-256-GCM, the resource's kind and name bound to
//! it) before it is written, and opens it when read (lists and watches), so that a copy of
//! etcd, of the embedded file or of their backups holds no usable key. The rest of the control
//! plane (validation, the reflector, the stream to the data planes, which need the key) sees
//! keys in the clear and never knows.

use std::{path::Path, sync::Arc};

use futures_util::StreamExt;
use gateway_proto::{
    secret::{KeyTextError, SecretError, SecretKeys},
    v1::DataPlaneStatus,
};

use super::{
    BoxFuture, Event, InstanceLease, InstanceListing, InstanceWatch, Listing, Op, Registration,
    Store, StoreError, WatchStream,
};

/// A `--secret-key-file` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Keys { path: String, source: KeyTextError },
}

/// Reads a `--secret-key-file`.
pub fn load_keys(path: &Path) -> Result<SecretKeys, KeyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    SecretKeys::parse(&text).map_err(|source| KeyFileError::Keys {
        path: shown,
        source,
    })
}

fn store_error(error: SecretError) -> StoreError {
    StoreError::Internal(format!("{error} (see --secret-key-file)").into())
}

/// A store whose certificates' private keys are sealed at rest.
#[derive(Debug)]
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Arc<SecretKeys>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, keys: SecretKeys) -> Self {
        Self {
            inner,
            keys: Arc::new(keys),
        }
    }
}

impl Store for SealedStore {
    fn list(&self) -> BoxFuture<'_, Result<Listing, StoreError>> {
        Box::pin(async move {
            let mut listing = self.inner.list().await?;
            for resource in &mut listing.resources {
                self.keys.open(resource).map_err(store_error)?;
            }
            Ok(listing)
        })
    }

    fn commit(
        &self,
        expected_version: i64,
        mut ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            for op in &mut ops {
                if let Op::Put(resource) = op {
                    self.keys.seal(resource).map_err(store_error)?;
                }
            }
            self.inner.commit(expected_version, ops).await
        })
    }

    fn watch(&self, from_revision: i64) -> BoxFuture<'_, Result<WatchStream, StoreError>> {
        Box::pin(async move {
            let stream = self.inner.watch(from_revision).await?;
            let keys = self.keys.clone();
            let opened = stream.map(move |batch| {
                let mut batch = batch?;
                for event in &mut batch.events {
                    if let Event::Put(resource) = event {
                        keys.open(resource).map_err(store_error)?;
                    }
                }
                Ok(batch)
            });
            Ok(Box::pin(opened) as WatchStream)
        })
    }

    fn put_dataplane(&self, status: DataPlaneStatus) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.put_dataplane(status)
    }

    fn remove_dataplane(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.remove_dataplane(id)
    }

    fn list_dataplanes(&self) -> BoxFuture<'_, Result<Vec<DataPlaneStatus>, StoreError>> {
        self.inner.list_dataplanes()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }

    // Instances hold no secret: passed through.
    fn register_instance(
        &self,
        registration: Registration,
    ) -> BoxFuture<'_, Result<Box<dyn InstanceLease>, StoreError>> {
        self.inner.register_instance(registration)
    }

    fn list_instances(&self) -> BoxFuture<'_, Result<InstanceListing, StoreError>> {
        self.inner.list_instances()
    }

    fn watch_instances(
        &self,
        from_revision: i64,
    ) -> BoxFuture<'_, Result<InstanceWatch, StoreError>> {
        self.inner.watch_instances(from_revision)
    }
}

#[cfg(test)]
mod tests;
