//! See README.md. Built for wasm32-unknown-unknown: no WASI, no std I/O.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

/// 600 MiB of zeroes in `.bss`: no bytes in the module, but the linker sizes
/// the initial linear memory to hold it.
static mut HOARD: [u8; 600 << 20] = [0; 600 << 20];

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let hoard = std::hint::black_box(&raw const HOARD);
        // SAFETY: a read of one byte of a static nothing writes.
        let byte = unsafe { (*hoard)[event.payload.len() % (600 << 20)] };
        Ok(format!("byte {byte}"))
    }
}
