//! Builds the benchmark's guest from source, the same way tests/build.rs does:
//! `pure-reader` (tests/guests) for wasm32-unknown-unknown, wrapped into a
//! component with `wit_component::ComponentEncoder`. A pure component imports
//! only `keyhole:listener/secrets` (and the `types` interface), so the floor
//! embedding links exactly one function and nothing else: whatever keyhole
//! spends beyond the floor is keyhole's own doing, not WASI's.
//!
//! Emits `$OUT_DIR/guest.rs` with the component's path as `PURE_READER`.

use std::path::PathBuf;
use std::process::Command;

const GUEST: &str = "pure-reader";
const TRIPLE: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let guests = root.join("tests/guests");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    println!("cargo:rerun-if-changed={}", guests.join(GUEST).display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target", TRIPLE])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .args(["-p", GUEST])
        .env("CARGO_TARGET_DIR", &target)
        // Flags meant for the host build must not leak into the guest's.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // Under `cargo clippy` the host build runs rustc through
        // clippy-driver; guests are not linted with the host's settings.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .status()
        .expect("run cargo for the guest");
    assert!(status.success(), "building {GUEST} failed");

    let stem = GUEST.replace('-', "_");
    let core = target
        .join(TRIPLE)
        .join("release")
        .join(format!("{stem}.wasm"));
    let module = std::fs::read(&core).unwrap_or_else(|e| panic!("read {}: {e}", core.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("componentize {GUEST}: {e:#}"));
    // Own file name, so a concurrent tests/build.rs never rewrites it mid-read.
    let out = target.join(format!("{stem}.bench.component.wasm"));
    std::fs::write(&out, component).unwrap();

    let code = format!(
        "/// `pure-reader` as a component, built from source by build.rs.\n\
         pub const PURE_READER: &str = {:?};\n",
        out.display().to_string()
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guest.rs");
    std::fs::write(dest, code).unwrap();
}
