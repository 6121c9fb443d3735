//! Builds the benchmark's guests from source, the same way tests/build.rs
//! does (both through `keyhole-guest-build`): the pure builds of
//! `pure-reader` and `arena-reader` (tests/guests; their Cargo.toml says
//! `targets = ["pure"]`), wasm32-unknown-unknown wrapped into components
//! with `wit_component::ComponentEncoder`. A pure component imports only
//! `keyhole:listener/secrets` (and the `types` interface), so the floor
//! embedding links exactly one function and nothing else: whatever keyhole
//! spends beyond the floor is keyhole's own doing, not WASI's.
//!
//! - `pure-reader` is an ordinary Rust listener (std's allocator, which
//!   grows linear memory on its first allocation).
//! - `arena-reader` does the same from a fixed arena, so its memory never
//!   grows: the trivial listener for the throughput target.
//!
//! Emits `$OUT_DIR/guest.rs` with the components' paths as `PURE_READER`
//! and `ARENA_READER`.

use std::path::PathBuf;

use keyhole_guest_build::{self as guest_build, Target};

const GUESTS: &[&str] = &["pure-reader", "arena-reader"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let guests = root.join("tests/guests");
    let target = guest_build::target_dir(&root);
    for g in GUESTS {
        println!("cargo:rerun-if-changed={}", guests.join(g).display());
    }
    for f in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", guests.join(f).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let workspace = guests.join("Cargo.toml");
    let found: Vec<_> = guest_build::discover(&workspace)
        .into_iter()
        .filter(|g| g.target == Target::Pure && GUESTS.contains(&g.name.as_str()))
        .collect();
    assert_eq!(
        found.len(),
        GUESTS.len(),
        "the benchmark needs pure builds of {GUESTS:?} in tests/guests"
    );
    let packages: Vec<&str> = found.iter().map(|g| g.package.as_str()).collect();
    let triple = Target::Pure.triple();
    let built = guest_build::cargo_build(&workspace, &target, triple, &packages);
    let mut code = String::new();
    for (g, core) in found.iter().zip(&built) {
        let ident = g.name.replace('-', "_");
        // Own file name, so a concurrent tests/build.rs never rewrites it mid-read.
        let out = target.join(format!("{ident}.bench.component.wasm"));
        guest_build::componentize(core, &out);
        code.push_str(&format!(
            "/// `{}` as a component, built from source by build.rs.\n\
             pub const {}: &str = {:?};\n",
            g.name,
            ident.to_uppercase(),
            out.display().to_string()
        ));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guest.rs");
    std::fs::write(dest, code).unwrap();
}
