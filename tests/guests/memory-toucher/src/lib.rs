//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

/// Wasm pages are 64 KiB but host pages 4 KiB: write one byte per host page.
const HOST_PAGE: usize = 4096;

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let mib = mib_of(&event.payload).ok_or("payload must be {\"mib\": N}")?;
        let len = mib << 20;
        let mut block: Vec<u8> = Vec::new();
        block
            .try_reserve_exact(len)
            .map_err(|_| format!("could not allocate {mib} MiB"))?;
        // Written through a raw pointer: `resize` or `vec![0; n]` may skip
        // pages that are already zero, and every page must become resident.
        // Each page is read first: memory fresh to this instance must be
        // zero, whatever an earlier run wrote into the same pool slot.
        let ptr = block.as_mut_ptr();
        let (mut sum, mut not_zero) = (0u64, 0u64);
        for offset in (0..len).step_by(HOST_PAGE) {
            // SAFETY: `offset < len <= capacity`.
            unsafe {
                not_zero += u64::from(ptr.add(offset).read_volatile() != 0);
                ptr.add(offset).write_volatile(0x5A);
                sum += u64::from(ptr.add(offset).read_volatile());
            }
        }
        Ok(format!(
            "touched {mib} MiB ({} pages, {not_zero} not zero before)",
            sum / 0x5A
        ))
    }
}

/// The number in `{"mib": N}`, read without a JSON parser.
fn mib_of(payload: &str) -> Option<usize> {
    let rest = &payload[payload.find("\"mib\"")? + 5..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let digits: &str = &rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())];
    digits.parse().ok()
}
