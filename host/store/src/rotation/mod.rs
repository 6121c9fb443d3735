//! Online key rotation: replacing the KEK (`kek.rs`) or one scope's DEK
//! (`dek.rs`) while reads and writes keep working, on this store and on
//! any other store sharing the backend.
//!
//! Both rotations follow one plan, coordinated through the backend alone:
//! add the new key, move the current-key pointer to it with compare-and-set
//! (from then on writers use it), move every record under an older key over
//! with compare-and-set (so a concurrent write is never overwritten by a
//! re-encryption of its older value), repeat until a pass finds nothing
//! left, and only then retire the old key, and only if nothing refers to
//! it. Writers that picked the old key before the switch re-seal their own
//! record after it (their fence, `keys/mod.rs`). A crash at any point
//! leaves every record readable: an old key is deleted only after nothing
//! refers to it.

mod dek;
mod kek;

use keyhole_kv::Bucket;

use crate::error::StoreError;

/// How often a rotation tries again after losing a race to another one.
const SWITCH_ATTEMPTS: usize = 16;
/// Most passes over a scope's records before a rotation reports that
/// writers kept putting records under the old key.
const SWEEP_PASSES: usize = 16;

/// Deletes `key` whatever revision it is at (retrying when a concurrent
/// rewrap changes it), and erases what the backend keeps of it as history:
/// a retired key must not be recoverable from the backend's files. Absent
/// is fine. Returns whether this call deleted it.
pub(crate) fn delete_current(bucket: &dyn Bucket, key: &[u8]) -> Result<bool, StoreError> {
    loop {
        let Some(entry) = bucket.get(key)? else {
            return Ok(false);
        };
        if bucket.delete(key, entry.revision)?.written().is_some() {
            bucket.erase_history(key)?;
            return Ok(true);
        }
    }
}
