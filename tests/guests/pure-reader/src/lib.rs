//! See README.md. Built for wasm32-unknown-unknown: no WASI, no std I/O.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        let v = keyhole::listener::secrets::get_secret("SLACK_TOKEN", None).map_err(|e| format!("{e:?}"))?;
        let mut h: u64 = 0xcbf29ce484222325;
        for b in v.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        Ok(format!("{h:016x}"))
    }
}
