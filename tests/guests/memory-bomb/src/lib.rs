//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = Vec::new();
            if block.try_reserve_exact(1 << 20).is_err() {
                return Err(format!("allocation failed after {} MiB", hoard.len()));
            }
            block.resize(1 << 20, 0xAB);
            hoard.push(std::hint::black_box(block));
        }
    }
}
