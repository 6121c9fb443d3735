//! Test-only interleaving points. Code under test calls [`hit`] at a named
//! point; a test arms that point with [`arm`] to run code (on the same
//! thread) exactly there, once. This pins down races that a stress test
//! only finds by luck. Compiled only for the crate's own unit tests.

use std::cell::RefCell;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Point {
    /// `rotate_dek`, just before it reads the current DEK pointer to pick
    /// and install the next DEK version.
    BeforeDekSwitch,
    /// `rotate_dek`, after it created its new DEK and before it moves the
    /// current DEK pointer to it.
    BeforeDekPointerMove,
    /// `KeyManager::dek`, after a cache miss unwrapped a DEK and before the
    /// cipher goes into the cache.
    DekUnwrapped,
    /// `SecretStore::fetch`, just after reading a secret record (or its
    /// absence) from the backend, before anything is cached.
    SecretRecordRead,
    /// `set_secret`, after it read the DEK pointer and the old record and
    /// before it writes the new record.
    BeforeSecretWrite,
    /// `KeyManager::create_dek`, after it found the scope live and read the
    /// KEK pointer, and before it writes the scope's first (or next) DEK.
    BeforeDekCreate,
    /// `create_space`, after it found the environment live and before it
    /// writes the space record.
    BeforeSpaceCreate,
    /// A deletion's sweep, before each pass scans the scope's records.
    BeforeSweepPass,
    /// `check_scope`, after it found the environment live and before it
    /// remembers it.
    EnvironmentFound,
}

type Hook = (Point, Box<dyn FnOnce()>);

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Runs `f` the next time this thread reaches `point`.
pub(crate) fn arm(point: Point, f: impl FnOnce() + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some((point, Box::new(f))));
}

/// Whether an armed hook has not run yet.
pub(crate) fn pending() -> bool {
    HOOK.with(|h| h.borrow().is_some())
}

pub(crate) fn hit(point: Point) {
    let f = HOOK.with(|h| {
        let mut h = h.borrow_mut();
        match &*h {
            Some((p, _)) if *p == point => h.take().map(|(_, f)| f),
            _ => None,
        }
    });
    if let Some(f) = f {
        f();
    }
}
