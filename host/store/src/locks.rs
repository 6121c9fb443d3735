//! Poison-tolerant lock guards. A panic while holding one of the store's
//! locks leaves a cache, never a half-written record (records live in the
//! backend), so the data behind a poisoned lock is still usable.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
