//! Builds the benchmark's guests from source, the same way tests/build.rs
//! does (both through `keyhole-guest-build`): `pure-reader` and
//! `arena-reader` (tests/guests) for wasm32-unknown-unknown, wrapped into
//! components with `wit_component::ComponentEncoder`. A pure component
//! imports only `keyhole:listener/secrets` (and the `types` interface), so
//! the floor embedding links exactly one function and nothing else: whatever
//! keyhole spends beyond the floor is keyhole's own doing, not WASI's.
//!
//! - `pure-reader` is an ordinary Rust listener (std's allocator, which
//!   grows linear memory on its first allocation).
//! - `arena-reader` does the same from a fixed arena, so its memory never
//!   grows: the trivial listener for the throughput target.
//!
//! Emits `$OUT_DIR/guest.rs` with the components' paths as `PURE_READER`
//! and `ARENA_READER`.

use std::path::PathBuf;

use keyhole_guest_build as guest_build;

const GUESTS: &[&str] = &["pure-reader", "arena-reader"];
const TRIPLE: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let guests = root.join("tests/guests");
    let target = guest_build::target_dir(&root);
    for g in GUESTS {
        println!("cargo:rerun-if-changed={}", guests.join(g).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let built = guest_build::cargo_build(&guests.join("Cargo.toml"), &target, TRIPLE, GUESTS);
    let mut code = String::new();
    for (g, core) in GUESTS.iter().zip(&built) {
        let ident = g.replace('-', "_");
        // Own file name, so a concurrent tests/build.rs never rewrites it mid-read.
        let out = target.join(format!("{ident}.bench.component.wasm"));
        guest_build::componentize(core, &out);
        code.push_str(&format!(
            "/// `{g}` as a component, built from source by build.rs.\n\
             pub const {}: &str = {:?};\n",
            ident.to_uppercase(),
            out.display().to_string()
        ));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guest.rs");
    std::fs::write(dest, code).unwrap();
}
