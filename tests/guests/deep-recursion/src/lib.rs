//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

/// Recursion whose frames live on the wasm stack (no address-taken locals,
/// so nothing on the shadow stack in linear memory), and whose combining
/// step is not an accumulator LLVM could turn into a loop.
#[allow(unconditional_recursion)]
#[inline(never)]
fn descend(n: u64) -> u64 {
    descend(n.wrapping_add(1)).rotate_left((n % 61) as u32) ^ n
}

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        Ok(descend(event.payload.len() as u64).to_string())
    }
}
