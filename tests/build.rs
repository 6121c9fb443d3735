//! Builds every test guest (tests/guests) and guest example
//! (guest-examples/*) from source, the way wasmtime's test-programs does
//! (the nested cargo builds and componentizing are `keyhole-guest-build`'s), and
//! generates `guests.rs`: one path constant per guest plus `foreach_guest!`,
//! which the tests use so that a guest without a test fails to compile.
//!
//! No guest is listed here. A test guest is a folder of tests/guests (the
//! workspace's `members = ["*"]`), built for the targets its own Cargo.toml
//! names under `[package.metadata.keyhole]` (see
//! `keyhole_guest_build::discover`); a Rust guest example is a folder of
//! guest-examples/ with a Cargo.toml, built for wasm32-wasip2. Only the
//! Python and JavaScript examples, built by their own toolchains, are named
//! below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyhole_guest_build::{self as guest_build, Guest, Target};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target = guest_build::target_dir(&root);
    // The whole guests folder: a new guest folder changes it too.
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("guests").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let mut consts = String::new();
    let mut names = Vec::new();

    let guests = manifest.join("guests/Cargo.toml");
    for (guest, path) in build(&guests, &target, guest_build::discover(&guests)) {
        push(&mut consts, &mut names, &guest.name, &path);
    }

    // Each example's own files, not guest-examples/ as a whole: cargo would
    // rescan js-listener's node_modules (~6,000 files) on every build. (So
    // a new example folder is noticed when this script next runs for another
    // reason; see the README.)
    let examples = root.join("guest-examples");
    for ws in rust_examples(&examples) {
        for (guest, path) in build(&ws, &target, guest_build::discover(&ws)) {
            let name = format!("example-{}", guest.name);
            push(&mut consts, &mut names, &name, &path);
        }
        // After the build, which writes a missing Cargo.lock; a watched
        // path that does not exist would rerun this script every time.
        let dir = ws.parent().unwrap();
        for watched in ["Cargo.toml", "Cargo.lock", "src"].map(|f| dir.join(f)) {
            if watched.exists() {
                println!("cargo:rerun-if-changed={}", watched.display());
            }
        }
    }
    // js-listener's `.package-lock.json` changes when `npm ci` reinstalls.
    // Before `npm ci` has run there is no node_modules to scan, so the
    // folder itself is watched (node_modules appearing changes it): a
    // watched path that does not exist reruns this script on every build.
    let js = examples.join("js-listener");
    let js_installed = js.join("node_modules/.package-lock.json");
    let js_watched = if js.join("node_modules").exists() {
        js_installed
    } else {
        js.clone()
    };
    for path in [
        examples.join("python-listener/app.py"),
        js.join("listener.js"),
        js_watched,
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    // The Python example needs componentize-py (PyPI); scripts/test.sh
    // installs it. Without it the Python test is compiled out, unless
    // KEYHOLE_REQUIRE_PYTHON is set (CI sets it).
    let out = target.join("python_listener.wasm");
    let mut cmd = Command::new("componentize-py");
    cmd.current_dir(root.join("guest-examples/python-listener"))
        .args([
            "-d",
            "../../wit",
            "-w",
            "listener",
            "componentize",
            "--stub-wasi",
            "app",
            "-o",
        ])
        .arg(&out);
    let optional = Optional {
        guest: "example-python-listener",
        cfg: "python_guest",
        require_env: "KEYHOLE_REQUIRE_PYTHON",
        install_hint: "pip install componentize-py==0.25.1",
    };
    optional.build(cmd, &out, &mut consts, &mut names);

    // The JavaScript example needs componentize-js (npm), which
    // scripts/test.sh installs into guest-examples/js-listener/node_modules
    // with `npm ci`. Without it the JS test is compiled out, unless
    // KEYHOLE_REQUIRE_JS is set (CI sets it). All WASI features are disabled,
    // so the component imports only keyhole:listener/*.
    let dir = root.join("guest-examples/js-listener");
    let out = target.join("js_listener.wasm");
    let mut cmd = Command::new(dir.join("node_modules/.bin/componentize-js"));
    cmd.current_dir(&dir)
        .args([
            "--wit",
            "../../wit",
            "--world-name",
            "listener",
            "--disable",
            "stdio",
            "random",
            "clocks",
            "http",
            "fetch-event",
            "-o",
        ])
        .arg(&out)
        .arg("listener.js");
    let optional = Optional {
        guest: "example-js-listener",
        cfg: "js_guest",
        require_env: "KEYHOLE_REQUIRE_JS",
        install_hint: "cd guest-examples/js-listener && npm ci",
    };
    optional.build(cmd, &out, &mut consts, &mut names);

    consts.push_str("\n/// Calls `$mac!(guest_name)` for every guest above.\n#[macro_export]\nmacro_rules! foreach_guest {\n    ($mac:ident) => {\n");
    for n in &names {
        consts.push_str(&format!("        $mac!({n});\n"));
    }
    consts.push_str("    };\n}\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(out, consts).unwrap();
}

/// Builds `guests` of the workspace at `manifest` (one nested cargo build
/// per target), componentizes the pure ones, and returns each guest with
/// its component.
fn build(manifest: &Path, target: &Path, guests: Vec<Guest>) -> Vec<(Guest, PathBuf)> {
    let mut by_target: BTreeMap<&str, Vec<&Guest>> = BTreeMap::new();
    for g in &guests {
        by_target.entry(g.target.triple()).or_default().push(g);
    }
    let mut built = Vec::new();
    for (triple, group) in by_target {
        let packages: Vec<&str> = group.iter().map(|g| g.package.as_str()).collect();
        let wasms = guest_build::cargo_build(manifest, target, triple, &packages);
        for (g, wasm) in group.into_iter().zip(wasms) {
            let path = match g.target {
                Target::Wasip2 => wasm,
                Target::Pure => {
                    let out = target.join(format!("{}.component.wasm", g.name.replace('-', "_")));
                    guest_build::componentize(&wasm, &out);
                    out
                }
            };
            built.push((g.clone(), path));
        }
    }
    built.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    built
}

/// The manifests of guest-examples/*/Cargo.toml (each its own workspace),
/// sorted.
fn rust_examples(examples: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(examples)
        .unwrap_or_else(|e| panic!("read {}: {e}", examples.display()))
        .map(|e| {
            e.expect("read guest-examples entry")
                .path()
                .join("Cargo.toml")
        })
        .filter(|m| m.is_file())
        .collect();
    found.sort();
    found
}

fn push(consts: &mut String, names: &mut Vec<String>, guest: &str, path: &Path) {
    assert!(
        path.exists(),
        "guest {guest} was not built at {}",
        path.display()
    );
    let ident = guest.replace('-', "_");
    consts.push_str(&format!(
        "/// Built from source by build.rs.\npub const {}: &str = {:?};\n",
        ident.to_uppercase(),
        path.display().to_string()
    ));
    names.push(ident);
}

/// A guest example built with a toolchain the machine may lack. When the
/// build fails its test is compiled out (`cfg`), unless `require_env` is set.
struct Optional {
    guest: &'static str,
    cfg: &'static str,
    require_env: &'static str,
    install_hint: &'static str,
}

impl Optional {
    fn build(&self, mut cmd: Command, out: &Path, consts: &mut String, names: &mut Vec<String>) {
        println!("cargo::rustc-check-cfg=cfg({})", self.cfg);
        println!("cargo:rerun-if-env-changed={}", self.require_env);
        let program = cmd.get_program().to_string_lossy().into_owned();
        match cmd.output() {
            Ok(o) if o.status.success() => {
                println!("cargo::rustc-cfg={}", self.cfg);
                push(consts, names, self.guest, out);
            }
            other => {
                let why = match other {
                    Ok(o) => format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => e.to_string(),
                };
                if std::env::var_os(self.require_env).is_some() {
                    panic!("{program} failed: {why}");
                }
                println!(
                    "cargo::warning={} not built ({}): {why}",
                    self.guest, self.install_hint
                );
            }
        }
    }
}
