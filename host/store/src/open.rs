//! [`SecretStore`]: what it holds, and opening it.
//!
//! A store is a view over one bucket of a storage backend plus the caches
//! that make reads cheap. Nothing in it relies on being the only store on
//! that backend: its caches follow the bucket's watch (`cache_sync.rs`) and
//! key rotation coordinates through the backend (`keys/`), so several
//! stores, in one process or on several hosts, may share a backend.
//!
//! Sealed stores answer metadata (listings, environments, spaces, deletes)
//! but refuse every operation that needs a key with [`StoreError::Sealed`].

use std::path::Path;
use std::sync::{Arc, RwLock};

use keyhole_kv::{Backend, Bucket, Revision};
use keyhole_kv_embedded::EmbeddedKv;

use crate::cache_sync::CacheSync;
use crate::error::StoreError;
use crate::keyring::{self, KeySource};
use crate::keys::{self, KeyManager};
use crate::layout;
use crate::migrate;
use crate::scopes::KnownScopes;
use crate::sealed_cache::SealedCache;

pub(crate) struct Inner {
    pub backend: Arc<dyn Backend>,
    /// The store's one bucket (`layout.rs`).
    pub bucket: Arc<dyn Bucket>,
    pub keys: KeyManager,
    pub sealed: Option<String>,
    /// Secret records as stored, in front of the backend on the read path.
    pub sealed_cache: SealedCache,
    /// Environments and spaces found so far (`scopes.rs`).
    pub known: RwLock<KnownScopes>,
    /// Applies the bucket's changes to the caches above.
    pub sync: CacheSync,
}

/// The encrypted secret store. Cheap to clone; all clones share one view.
#[derive(Clone)]
pub struct SecretStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("sealed", &self.inner.sealed)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Opens (creating if needed) the store on the embedded backend in
    /// `data_dir`. A missing or wrong master key opens the store sealed
    /// rather than failing; a malformed key file, or one inside the data
    /// directory, is an error to fix now.
    pub fn open(data_dir: &Path, key: KeySource) -> Result<Self, StoreError> {
        if let KeySource::File(path) = &key
            && keyring::key_file_inside(path, data_dir)
        {
            return Err(StoreError::KeyFile {
                path: path.to_path_buf(),
                reason: "must live outside the data directory".into(),
            });
        }
        // Read the key first: a malformed key file fails before the lock.
        let material = keyring::load(&key)?;
        let backend = EmbeddedKv::open(data_dir)?.into_backend();
        Self::open_with(backend, key, material)
    }

    /// Opens the store on `backend`, migrating data written by release 0.1
    /// on first open.
    pub fn open_on(backend: Arc<dyn Backend>, key: KeySource) -> Result<Self, StoreError> {
        let material = keyring::load(&key)?;
        Self::open_with(backend, key, material)
    }

    fn open_with(
        backend: Arc<dyn Backend>,
        key: KeySource,
        material: keyring::KeyMaterial,
    ) -> Result<Self, StoreError> {
        let bucket = backend.bucket(layout::BUCKET)?;
        migrate::from_release_0_1(&*backend, &*bucket)?;
        // Watch from here on: everything before is read fresh.
        let sync = CacheSync::new(&*bucket)?;
        let (ring, sealed) = keys::unseal(&*bucket, &key, material)?;
        let store = SecretStore {
            inner: Arc::new(Inner {
                keys: KeyManager::new(bucket.clone(), key, ring),
                sealed,
                sealed_cache: SealedCache::default(),
                known: RwLock::default(),
                sync,
                bucket,
                backend,
            }),
        };
        // A sealed store writes nothing; an unsealed one destroys what a
        // crash in the middle of a deletion may have left (`deletion/`).
        if !store.is_sealed() {
            store.destroy_orphan_keys()?;
        }
        Ok(store)
    }

    /// Creates a key file with a new random 256-bit KEK (mode 0600).
    pub fn init_key_file(path: &Path) -> Result<(), StoreError> {
        keyring::init_key_file(path)
    }

    /// A new random KEK as hex text, for `KeySource::Inline` users.
    pub fn generate_key_text() -> String {
        keyring::generate_key_text()
    }

    /// The backend under the store, for other layers' own buckets.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub fn is_sealed(&self) -> bool {
        self.inner.sealed.is_some()
    }

    pub fn sealed_reason(&self) -> Option<String> {
        self.inner.sealed.clone()
    }

    pub(crate) fn check_unsealed(&self) -> Result<(), StoreError> {
        match &self.inner.sealed {
            Some(reason) => Err(StoreError::Sealed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The newest change to the store's data this store has seen: its own
    /// writes, and other stores' once observed.
    pub fn revision(&self) -> Revision {
        self.inner.bucket.revision()
    }

    /// The newest revision any store over this backend has written (a
    /// shared backend asks its server): a revision above it is not one a
    /// write returned, and waiting for it could only time out.
    pub fn written_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.bucket.written()?)
    }

    /// Waits (at most `timeout`) until this store's caches have applied
    /// every change up to `revision`, e.g. one another host reported.
    /// Returns whether they have.
    pub fn wait_for(
        &self,
        revision: Revision,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.sync.wait_for(&self.inner, revision, timeout)
    }

    /// The audit log's root key, created on first use (see
    /// `keyhole-audit`): the audit log derives the key that authenticates
    /// its chain from it. Needs the master key.
    pub fn audit_root_key(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, StoreError> {
        self.check_unsealed()?;
        self.inner.keys.audit_root()
    }

    /// Makes every write so far durable (every acknowledged write already
    /// is).
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(self.inner.bucket.flush()?)
    }
}
