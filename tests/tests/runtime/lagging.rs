//! A test double for cluster tests: a shared backend as a lagging replica
//! serves it (NATS with replicas may answer a read from a replica that has
//! not yet seen a change another host's watch already delivered).

use std::sync::{Arc, Mutex};

use keyhole_kv::{Backend, Bucket, Cas, Entry, KvError, LegacyRecords, Revision, Watch};

/// Something done once, right after the `deployments` bucket is next
/// scanned (as a host loads its deployments at open).
pub type AfterScan = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// A shared backend as a lagging replica serves it: while `pinned` holds an
/// entry, every read of the `deployments` bucket returns it, whatever the
/// key and whatever is newer (so: for tests of one listener).
pub struct Lagging {
    pub inner: Arc<dyn Backend>,
    pub pinned: Arc<Mutex<Option<Entry>>>,
    pub after_scan: AfterScan,
}

impl Lagging {
    /// `inner` as a replica that has caught up (nothing pinned).
    pub fn over(inner: Arc<dyn Backend>) -> Lagging {
        Lagging {
            inner,
            pinned: Default::default(),
            after_scan: Default::default(),
        }
    }
}

struct LaggingBucket {
    inner: Arc<dyn Bucket>,
    pinned: Arc<Mutex<Option<Entry>>>,
    after_scan: AfterScan,
}

impl Backend for Lagging {
    fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>, KvError> {
        let inner = self.inner.bucket(name)?;
        if name != "deployments" {
            return Ok(inner);
        }
        let (pinned, after_scan) = (self.pinned.clone(), self.after_scan.clone());
        Ok(Arc::new(LaggingBucket {
            inner,
            pinned,
            after_scan,
        }))
    }
    fn legacy(&self, name: &str) -> Result<Option<LegacyRecords>, KvError> {
        self.inner.legacy(name)
    }
    fn drop_legacy(&self, name: &str) -> Result<(), KvError> {
        self.inner.drop_legacy(name)
    }
}

impl Bucket for LaggingBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, KvError> {
        match self.pinned.lock().unwrap().clone() {
            Some(old) => Ok(Some(old)),
            None => self.inner.get(key),
        }
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, KvError> {
        self.inner.put(key, value)
    }
    fn create(&self, key: &[u8], value: &[u8]) -> Result<Cas, KvError> {
        self.inner.create(key, value)
    }
    fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Cas, KvError> {
        self.inner.update(key, value, expected)
    }
    fn delete(&self, key: &[u8], expected: Revision) -> Result<Cas, KvError> {
        self.inner.delete(key, expected)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, KvError> {
        let scanned = self.inner.scan(prefix);
        if let Some(after) = self.after_scan.lock().unwrap().take() {
            after();
        }
        scanned
    }
    fn revision(&self) -> Revision {
        self.inner.revision()
    }
    fn watch(&self, from: Revision) -> Result<Box<dyn Watch>, KvError> {
        self.inner.watch(from)
    }
    fn flush(&self) -> Result<(), KvError> {
        self.inner.flush()
    }
    fn erase_history(&self, key: &[u8]) -> Result<(), KvError> {
        self.inner.erase_history(key)
    }
}
