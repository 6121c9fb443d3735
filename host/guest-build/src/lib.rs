//! Builds keyhole's WebAssembly guests from source; for build scripts only.
//!
//! Two build scripts compile guests: `tests/build.rs` (every test guest and
//! guest example) and `host/bench/build.rs` (the benchmark's `pure-reader`).
//! Both run a nested `cargo build` for a wasm target, and that nested build
//! must not inherit what the outer cargo set up for the host: its rustflags,
//! or, under `cargo clippy`, the clippy-driver wrapper, which once linted the
//! guests with the host's `-D warnings`. This crate is the one place that
//! gets the nested build (and the wrapping of a core module into a
//! component) right, so the two scripts cannot drift apart again.
//!
//! Everything here panics on failure, as a build script should.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variables the outer build sets for the host that are removed
/// from every nested guest build.
pub const SCRUBBED_ENV: &[&str] = &[
    // Flags meant for the host build must not leak into the guests'.
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    // Under `cargo clippy` the host build runs rustc through
    // clippy-driver; guests are not linted with the host's settings.
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

/// The guests' own target directory: `$CARGO_TARGET_DIR/guests`, or
/// `<root>/target/guests` when `CARGO_TARGET_DIR` is not set. `root` is the
/// keyhole workspace root.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests")
}

/// Where a release build of `package` for `triple` leaves its `.wasm` under
/// `target_dir` (cargo turns `-` in the crate name into `_`).
pub fn wasm_path(target_dir: &Path, triple: &str, package: &str) -> PathBuf {
    target_dir
        .join(triple)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Runs `cargo build --release --target <triple>` for `packages` of the
/// workspace at `manifest` (a `Cargo.toml`), into `target_dir`, with
/// [`SCRUBBED_ENV`] removed from its environment. Uses `$CARGO` (the cargo
/// running this build script) when set.
///
/// Returns each package's `.wasm` ([`wasm_path`]), in the order given.
pub fn cargo_build(
    manifest: &Path,
    target_dir: &Path,
    triple: &str,
    packages: &[&str],
) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--quiet")
        .arg("--target")
        .arg(triple)
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    let status = cmd.status().expect("run cargo for guests");
    assert!(
        status.success(),
        "building guests {packages:?} from {} failed",
        manifest.display()
    );
    packages
        .iter()
        .map(|p| wasm_path(target_dir, triple, p))
        .collect()
}

/// Wraps the core module at `core` into a component written to `out`, as
/// `wasm-tools component new` would: the component's imports and exports
/// come from the WIT embedded in the module (custom section), validated.
pub fn componentize(core: &Path, out: &Path) {
    let module = std::fs::read(core).unwrap_or_else(|e| panic!("read {}: {e}", core.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("componentize {}: {e:#}", core.display()));
    std::fs::write(out, component).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}
