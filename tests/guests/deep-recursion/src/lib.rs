//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64, pad: [u64; 16]) -> u64 {
    let mut local = std::hint::black_box(pad);
    local[0] = depth;
    descend(depth + 1, local) + local[(depth % 16) as usize]
}

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        Ok(descend(0, [1; 16]).to_string())
    }
}
