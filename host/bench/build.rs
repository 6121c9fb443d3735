//! Builds the benchmark's guest from source, the same way tests/build.rs does
//! (both through `keyhole-guest-build`): `pure-reader` (tests/guests) for
//! wasm32-unknown-unknown, wrapped into a component with
//! `wit_component::ComponentEncoder`. A pure component imports only
//! `keyhole:listener/secrets` (and the `types` interface), so the floor
//! embedding links exactly one function and nothing else: whatever keyhole
//! spends beyond the floor is keyhole's own doing, not WASI's.
//!
//! Emits `$OUT_DIR/guest.rs` with the component's path as `PURE_READER`.

use std::path::PathBuf;

use keyhole_guest_build as guest_build;

const GUEST: &str = "pure-reader";
const TRIPLE: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let guests = root.join("tests/guests");
    let target = guest_build::target_dir(&root);
    println!("cargo:rerun-if-changed={}", guests.join(GUEST).display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let built = guest_build::cargo_build(&guests.join("Cargo.toml"), &target, TRIPLE, &[GUEST]);
    // Own file name, so a concurrent tests/build.rs never rewrites it mid-read.
    let out = target.join(format!("{}.bench.component.wasm", GUEST.replace('-', "_")));
    guest_build::componentize(&built[0], &out);

    let code = format!(
        "/// `pure-reader` as a component, built from source by build.rs.\n\
         pub const PURE_READER: &str = {:?};\n",
        out.display().to_string()
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guest.rs");
    std::fs::write(dest, code).unwrap();
}
