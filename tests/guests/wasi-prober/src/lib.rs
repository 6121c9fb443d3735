//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let args: Vec<String> = std::env::args().collect();
        let mut files = Vec::new();
        for path in ["/", ".", "/etc/passwd", "/proc/self/environ", "keyhole-data"] {
            if std::fs::read_dir(path).is_ok() || std::fs::read(path).is_ok() {
                files.push(path.to_string());
            }
        }
        let cwd = std::env::current_dir().ok().map(|p| p.display().to_string());
        let wrote = std::fs::write("/tmp/keyhole-probe", b"x").is_ok();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let t0 = std::time::Instant::now();
        let monotonic_ok = t0.elapsed().as_nanos() < u128::MAX;
        Ok(format!(
            "{{\"env\":{env:?},\"args\":{args:?},\"files\":{files:?},\"cwd\":{:?},\"wrote\":{wrote},\"wall_clock_secs\":{now},\"monotonic\":{monotonic_ok}}}",
            cwd.unwrap_or_default()
        ))
    }
}
