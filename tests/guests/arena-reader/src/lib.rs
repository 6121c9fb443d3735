//! See README.md. Built for wasm32-unknown-unknown: no WASI, no std I/O.
//!
//! Every event gets a fresh instance, so a listener's heap lives for one call.
//! This guest allocates from a fixed, zero-initialized static arena (part of
//! its initial memory) and never frees: its linear memory never grows, which spares the host the two
//! `mprotect` calls (grow, then shrink back on reuse) that the default
//! allocator's first `memory.grow` costs per event.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

const ARENA_BYTES: usize = 64 << 10;

/// A bump allocator over a static arena. Out of arena is a null return,
/// which Rust turns into an allocation-failure trap.
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    used: AtomicUsize,
}

// wasm32 without threads: one caller at a time.
unsafe impl Sync for Arena {}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.bytes.get() as usize;
        let used = self.used.load(Ordering::Relaxed);
        let start = (base + used).next_multiple_of(layout.align());
        match start.checked_add(layout.size()) {
            Some(end) if end <= base + ARENA_BYTES => {
                self.used.store(end - base, Ordering::Relaxed);
                start as *mut u8
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_BYTES]),
    used: AtomicUsize::new(0),
};

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        let pages = core::arch::wasm32::memory_size(0);
        let v = keyhole::listener::secrets::get_secret("SLACK_TOKEN", None)
            .map_err(|e| format!("{e:?}"))?;
        let mut h: u64 = 0xcbf29ce484222325;
        for b in v.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        let out = format!("{h:016x}");
        let now = core::arch::wasm32::memory_size(0);
        if now != pages {
            return Err(format!("memory grew from {pages} to {now} pages"));
        }
        Ok(out)
    }
}
