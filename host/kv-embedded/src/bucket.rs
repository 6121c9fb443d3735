//! One bucket: a sled tree whose values carry their revision.

use std::sync::{Arc, Mutex, MutexGuard};

use keyhole_kv::{Bucket, Cas, Change, Entry, KvError, Revision, Watch};

use crate::db_error;
use crate::feed::Feed;

const REVISION_LEN: usize = 8;

pub(crate) struct SledBucket {
    name: String,
    tree: sled::Tree,
    db: sled::Db,
    /// Added to sled's ids (see `compact.rs`).
    revision_base: Revision,
    /// Held by every write: conditional writes read and write inside it,
    /// and changes are published in revision order.
    writes: Mutex<()>,
    feed: Arc<Feed>,
}

impl SledBucket {
    /// A bucket whose revision starts at `opened_at`, the backend's.
    pub(crate) fn new(
        name: &str,
        tree: sled::Tree,
        db: sled::Db,
        revision_base: Revision,
        opened_at: Revision,
    ) -> Self {
        SledBucket {
            name: name.to_owned(),
            tree,
            db,
            revision_base,
            writes: Mutex::new(()),
            feed: Arc::new(Feed::starting_at(opened_at)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decode(&self, stored: &[u8]) -> Result<Entry, KvError> {
        if stored.len() < REVISION_LEN {
            return Err(KvError::Corrupt {
                bucket: self.name.clone(),
                what: format!("a value of {} bytes has no revision", stored.len()),
            });
        }
        let (rev, value) = stored.split_at(REVISION_LEN);
        Ok(Entry {
            value: value.to_vec(),
            revision: u64::from_be_bytes(rev.try_into().expect("8 bytes")),
        })
    }

    fn current(&self, key: &[u8]) -> Result<Option<Revision>, KvError> {
        match self.tree.get(key).map_err(db_error)? {
            Some(v) => Ok(Some(self.decode(&v)?.revision)),
            None => Ok(None),
        }
    }

    /// The next revision. Called under the write lock.
    fn next_revision(&self) -> Result<Revision, KvError> {
        // sled ids start at 0; revision 0 means "before any change".
        Ok(self.revision_base + self.db.generate_id().map_err(db_error)? + 1)
    }

    /// Writes under the held write lock and publishes the change.
    fn write(&self, key: &[u8], value: &[u8]) -> Result<Revision, KvError> {
        let revision = self.next_revision()?;
        let mut stored = Vec::with_capacity(REVISION_LEN + value.len());
        stored.extend_from_slice(&revision.to_be_bytes());
        stored.extend_from_slice(value);
        self.tree.insert(key, stored).map_err(db_error)?;
        self.feed.publish(Change::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            revision,
        });
        Ok(revision)
    }
}

impl Bucket for SledBucket {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, KvError> {
        match self.tree.get(key).map_err(db_error)? {
            Some(v) => self.decode(&v).map(Some),
            None => Ok(None),
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, KvError> {
        let _w = self.lock();
        self.write(key, value)
    }

    fn create(&self, key: &[u8], value: &[u8]) -> Result<Cas, KvError> {
        let _w = self.lock();
        if self.tree.contains_key(key).map_err(db_error)? {
            return Ok(Cas::Conflict);
        }
        self.write(key, value).map(Cas::Written)
    }

    fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Cas, KvError> {
        let _w = self.lock();
        if self.current(key)? != Some(expected) {
            return Ok(Cas::Conflict);
        }
        self.write(key, value).map(Cas::Written)
    }

    fn delete(&self, key: &[u8], expected: Revision) -> Result<Cas, KvError> {
        let _w = self.lock();
        if self.current(key)? != Some(expected) {
            return Ok(Cas::Conflict);
        }
        let revision = self.next_revision()?;
        self.tree.remove(key).map_err(db_error)?;
        self.feed.publish(Change::Delete {
            key: key.to_vec(),
            revision,
        });
        Ok(Cas::Written(revision))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, KvError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(db_error)?;
            out.push((k.to_vec(), self.decode(&v)?));
        }
        Ok(out)
    }

    fn revision(&self) -> Revision {
        self.feed.latest()
    }

    fn watch(&self, from: Revision) -> Result<Box<dyn Watch>, KvError> {
        Ok(Box::new(self.feed.subscribe(from)))
    }

    fn flush(&self) -> Result<(), KvError> {
        self.db.flush().map_err(db_error)?;
        Ok(())
    }

    /// A tree holds one value per key, so there is no history to erase.
    /// The bytes sled freed stay in its files until `keyhole compact`
    /// rewrites them ([`crate::EmbeddedKv::compact`]).
    fn erase_history(&self, _key: &[u8]) -> Result<(), KvError> {
        Ok(())
    }
}
