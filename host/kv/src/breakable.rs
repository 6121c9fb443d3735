//! A test double that is mostly the real thing: a [`Bucket`] that passes
//! every call to a real bucket, except that while the test says it is
//! broken every write fails (as a backend that lost its disk or its
//! connection would). For the tests of what callers do when the store
//! refuses a write: the audit sink failing closed, a run record not kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Bucket, Cas, Entry, KvError, Revision, Watch};

/// The real bucket, failing writes on demand.
pub struct Breakable {
    pub inner: Arc<dyn Bucket>,
    /// Set to break writes, cleared to mend them.
    pub broken: Arc<AtomicBool>,
}

impl Breakable {
    /// `inner`, working until `broken` is set.
    pub fn new(inner: Arc<dyn Bucket>, broken: Arc<AtomicBool>) -> Self {
        Breakable { inner, broken }
    }

    fn write(&self) -> Result<(), KvError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(KvError::Backend(
                "the backend refused the write (broken by the test)".into(),
            ));
        }
        Ok(())
    }
}

impl Bucket for Breakable {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, KvError> {
        self.inner.get(key)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, KvError> {
        self.write()?;
        self.inner.put(key, value)
    }
    fn create(&self, key: &[u8], value: &[u8]) -> Result<Cas, KvError> {
        self.write()?;
        self.inner.create(key, value)
    }
    fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Cas, KvError> {
        self.write()?;
        self.inner.update(key, value, expected)
    }
    fn delete(&self, key: &[u8], expected: Revision) -> Result<Cas, KvError> {
        self.write()?;
        self.inner.delete(key, expected)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, KvError> {
        self.inner.scan(prefix)
    }
    fn revision(&self) -> Revision {
        self.inner.revision()
    }
    fn watch(&self, from: Revision) -> Result<Box<dyn Watch>, KvError> {
        self.inner.watch(from)
    }
    fn health(&self) -> crate::Health {
        self.inner.health()
    }
    fn flush(&self) -> Result<(), KvError> {
        self.inner.flush()
    }
    fn erase_history(&self, key: &[u8]) -> Result<(), KvError> {
        self.write()?;
        self.inner.erase_history(key)
    }
}

/// A real backend whose buckets named in `names` are [`Breakable`]: for a
/// caller that opens its buckets itself (a store, a runtime).
pub struct BreakableBackend {
    pub inner: Arc<dyn crate::Backend>,
    pub names: Vec<String>,
    pub broken: Arc<AtomicBool>,
}

impl crate::Backend for BreakableBackend {
    fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>, KvError> {
        let bucket = self.inner.bucket(name)?;
        if !self.names.iter().any(|n| n == name) {
            return Ok(bucket);
        }
        Ok(Arc::new(Breakable::new(bucket, self.broken.clone())))
    }

    fn legacy(&self, name: &str) -> Result<Option<crate::LegacyRecords>, KvError> {
        self.inner.legacy(name)
    }

    fn drop_legacy(&self, name: &str) -> Result<(), KvError> {
        self.inner.drop_legacy(name)
    }
}
