//! Rotating the master key (KEK): claim a new version and add it to the
//! key file, switch `kek-current` to it, rewrap every DEK under it, then
//! drop the older versions from the key file and their check records.

use std::collections::BTreeSet;
use std::path::Path;

use keyhole_kv::Cas;

use super::{SWEEP_PASSES, SWITCH_ATTEMPTS};
use crate::crypto::{self, Cipher};
use crate::error::StoreError;
use crate::keyring::{self, KeyFileLock, KeyMaterial, KeySource, Keyring};
use crate::keys::{Wrapped, unwrap_dek, wrap_dek, write_check};
use crate::layout;
use crate::model::{RotationReport, RotationTarget};
use crate::open::SecretStore;
use crate::records::{self, DekRecord};

impl SecretStore {
    /// Replaces the master key: switches to a new version, rewraps every
    /// DEK under it, then drops the old versions from the key file. The new
    /// version is the one [`SecretStore::prepare_kek`] added, if one is
    /// waiting (hosts with their own key files: each already holds it), or
    /// else a new one appended to the key file now.
    pub fn rotate_kek(&self) -> Result<RotationReport, StoreError> {
        self.check_unsealed()?;
        let path = self.kek_file()?;
        // Serializes rewrites of the key file with every other rotation
        // that shares it, in this process or another.
        let _file = KeyFileLock::acquire(&path)?;
        let (previous, _, _) = self.inner.keys.current_kek()?;
        let new_version = match self.prepared_kek(previous)? {
            Some(version) => self.hold_prepared(&path, version)?,
            None => self.claim_kek(&path)?,
        };
        self.point_kek_at(new_version)?;
        self.flush()?;
        let rewritten = self.rewrap_deks(new_version)?;
        self.flush()?;
        let retired = self.retire_keks(&path, new_version)?;
        self.flush()?;
        Ok(RotationReport {
            target: RotationTarget::Kek,
            previous_version: Some(previous),
            new_version,
            records_rewritten: rewritten,
            retired_versions: retired,
            key_file: Some(path),
            prepared_only: false,
        })
    }

    /// The first half of a master key rotation across hosts that each have
    /// their own key file: claims the next KEK version and appends it to
    /// this key file, without switching to it. Copy the file (which holds
    /// the old and the new version) to every host, then
    /// [`SecretStore::rotate_kek`] on any of them switches. A version
    /// prepared already (and held here) is returned as it is.
    pub fn prepare_kek(&self) -> Result<RotationReport, StoreError> {
        self.check_unsealed()?;
        let path = self.kek_file()?;
        let _file = KeyFileLock::acquire(&path)?;
        let (current, _, _) = self.inner.keys.current_kek()?;
        let held = match self.prepared_kek(current)? {
            Some(v) => self.inner.keys.holds(v)?.then_some(v),
            None => None,
        };
        let version = match held {
            Some(v) => v,
            None => self.claim_kek(&path)?,
        };
        self.flush()?;
        Ok(RotationReport {
            target: RotationTarget::Kek,
            previous_version: Some(current),
            new_version: version,
            records_rewritten: 0,
            retired_versions: Vec::new(),
            key_file: Some(path),
            prepared_only: true,
        })
    }

    /// The key file a KEK rotation rewrites.
    fn kek_file(&self) -> Result<std::path::PathBuf, StoreError> {
        match self.inner.keys.source() {
            KeySource::File(p) => Ok(p.clone()),
            KeySource::Inline(_) => Err(StoreError::Unsupported(
                "KEK rotation needs a key file; inline key text cannot be rewritten",
            )),
            KeySource::None => Err(StoreError::Unsupported("no master key configured")),
        }
    }

    /// The newest KEK version claimed (it has a check record) above
    /// `current`: prepared, or left by a rotation that stopped before it
    /// switched.
    fn prepared_kek(&self, current: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .inner
            .bucket
            .scan(layout::KEK_CHECK_PREFIX)?
            .iter()
            .filter_map(|(k, _)| layout::version_suffix(k))
            .filter(|v| *v > current)
            .max())
    }

    /// `version`, prepared elsewhere, if this host's key file holds it (the
    /// file is re-read); otherwise an error saying what to do.
    fn hold_prepared(&self, path: &Path, version: u64) -> Result<u64, StoreError> {
        if self.inner.keys.holds(version)? {
            return Ok(version);
        }
        Err(StoreError::KeyFile {
            path: path.to_path_buf(),
            reason: format!(
                "master key v{version} was prepared for rotation but this key file does not \
                 hold it: copy the key file from the host that prepared it, or prepare a \
                 newer version here (`keyhole keys rotate --prepare`)"
            ),
        })
    }

    /// Picks the next KEK version, claims it in the backend by creating its
    /// check record (two hosts cannot both claim one version), and writes
    /// it into the key file. The file is read afresh under its lock, so no
    /// version another rotation wrote is lost.
    fn claim_kek(&self, path: &Path) -> Result<u64, StoreError> {
        let bucket = &*self.inner.bucket;
        for _ in 0..SWITCH_ATTEMPTS {
            let mut ring = read_ring(self.inner.keys.source(), path)?;
            let recorded = bucket
                .scan(layout::KEK_CHECK_PREFIX)?
                .iter()
                .filter_map(|(k, _)| layout::version_suffix(k))
                .max();
            let (pointer, _, _) = self.inner.keys.current_kek()?;
            let new_version = ring
                .keys
                .keys()
                .copied()
                .chain(recorded)
                .chain([pointer])
                .max()
                .unwrap_or(0)
                + 1;
            let key = crypto::random_key();
            if write_check(bucket, new_version, &Cipher::new(&key))? == Cas::Conflict {
                continue;
            }
            ring.insert(new_version, key);
            keyring::write_atomic(path, &ring)?;
            self.inner.keys.set_ring(ring);
            return Ok(new_version);
        }
        Err(StoreError::Contended("the master key version".into()))
    }

    /// Moves `kek-current` forward to `version` (never back: a newer
    /// rotation that switched first stays current).
    fn point_kek_at(&self, version: u64) -> Result<(), StoreError> {
        let bucket = &*self.inner.bucket;
        loop {
            let (current, _, rev) = self.inner.keys.current_kek()?;
            if current >= version {
                return Ok(());
            }
            if bucket
                .update(layout::KEK_CURRENT, &version.to_be_bytes(), rev)?
                .written()
                .is_some()
            {
                return Ok(());
            }
        }
    }

    /// Every key stored wrapped under the KEK: the DEKs and the audit root.
    fn wrapped_records(&self) -> Result<Vec<(Vec<u8>, keyhole_kv::Entry)>, StoreError> {
        let bucket = &*self.inner.bucket;
        let mut out = bucket.scan(layout::DEK_PREFIX)?;
        if let Some(root) = bucket.get(layout::AUDIT_ROOT)? {
            out.push((layout::AUDIT_ROOT.to_vec(), root));
        }
        Ok(out)
    }

    /// Rewraps every wrapped key still under a KEK older than
    /// `new_version`, pass after pass until one finds none. Returns how
    /// many were rewrapped.
    fn rewrap_deks(&self, new_version: u64) -> Result<usize, StoreError> {
        let keys = &self.inner.keys;
        let mut rewritten = 0;
        for _ in 0..SWEEP_PASSES {
            let mut behind = 0;
            for (key, entry) in self.wrapped_records()? {
                let rec: DekRecord<'_> = records::decode(&entry.value, "wrapped DEK")?;
                if rec.kek_version >= new_version {
                    continue;
                }
                behind += 1;
                let wrapped = Wrapped::at(&key)
                    .ok_or_else(|| StoreError::corrupt("DEK record with a malformed key"))?;
                let ring = keys.ring_with(rec.kek_version)?;
                let dek = unwrap_dek(&ring, &wrapped.ad_scope, wrapped.version, &rec)?;
                let (current, ring, _) = keys.current_kek()?;
                let kek = &ring.get(current).expect("current_kek holds it").cipher;
                let new = wrap_dek(kek, current, &wrapped.ad_scope, wrapped.version, &dek);
                // A conflict: the DEK was rewrapped or retired meanwhile.
                if let Cas::Written(rev) = self.inner.bucket.update(&key, &new, entry.revision)? {
                    rewritten += 1;
                    keys.kek_fence(&wrapped, &dek, current, rev)?;
                }
            }
            if behind == 0 {
                return Ok(rewritten);
            }
        }
        Err(StoreError::Contended("the data keys".into()))
    }

    /// Drops KEK versions older than `new_version` from the key file, then
    /// their check records, if `new_version` is still current and no DEK is
    /// wrapped under an older one. Returns the versions dropped.
    fn retire_keks(&self, path: &Path, new_version: u64) -> Result<Vec<u64>, StoreError> {
        let keys = &self.inner.keys;
        let bucket = &*self.inner.bucket;
        if keys.current_kek()?.0 != new_version {
            return Ok(Vec::new());
        }
        for (_, entry) in self.wrapped_records()? {
            let rec: DekRecord<'_> = records::decode(&entry.value, "wrapped DEK")?;
            if rec.kek_version < new_version {
                // A writer's fence will rewrap it; a later rotation retires.
                return Ok(Vec::new());
            }
        }
        let mut ring = read_ring(keys.source(), path)?;
        let mut retired: BTreeSet<u64> = ring
            .keys
            .keys()
            .copied()
            .filter(|v| *v < new_version)
            .collect();
        ring.keys.retain(|v, _| *v >= new_version);
        keyring::write_atomic(path, &ring)?;
        keys.set_ring(ring);
        for (key, entry) in bucket.scan(layout::KEK_CHECK_PREFIX)? {
            match layout::version_suffix(&key) {
                Some(v) if v < new_version => {
                    // A conflict: another rotation removed it already.
                    let _ = bucket.delete(&key, entry.revision)?;
                    retired.insert(v);
                }
                _ => {}
            }
        }
        Ok(retired.into_iter().collect())
    }
}

/// The keyring in the key file now.
fn read_ring(source: &KeySource, path: &Path) -> Result<Keyring, StoreError> {
    match keyring::load(source)? {
        KeyMaterial::Ring(ring) => Ok(ring),
        KeyMaterial::Missing(reason) => Err(StoreError::KeyFile {
            path: path.to_path_buf(),
            reason,
        }),
    }
}
