//! Builds every test guest (tests/guests) and guest example
//! (guest-examples/*) from source, the way wasmtime's test-programs does
//! (the nested cargo builds and componentizing are `keyhole-guest-build`'s), and
//! generates `guests.rs`: one path constant per guest plus `foreach_guest!`,
//! which the tests use so that a guest without a test fails to compile.

use std::path::{Path, PathBuf};
use std::process::Command;

use keyhole_guest_build as guest_build;

/// Guests built for wasm32-wasip2 (each a cdylib component).
const WASIP2_GUESTS: &[&str] = &[
    "secret-reader",
    "leaky",
    "spin-loop",
    "memory-bomb",
    "deep-recursion",
    "wasi-prober",
    "socket-prober",
    "huge-name",
    "panicker",
    "http-caller",
    "wrong-world",
];
/// Guests built for wasm32-unknown-unknown and wrapped into a component
/// here, as `wasm-tools component new` would: no WASI imports at all.
/// (package, guest name): `spin-loop` is built both ways, since pure and
/// WASI components take different call paths in `emit_blocking`.
const PURE_GUESTS: &[(&str, &str)] = &[
    ("pure-reader", "pure-reader"),
    ("arena-reader", "arena-reader"),
    ("spin-loop", "pure-spin-loop"),
];
/// Example workspaces under guest-examples/ and the crates they build.
const EXAMPLES: &[(&str, &str)] = &[
    ("rust-listener", "rust-listener"),
    ("slack-notifier", "slack-notifier"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target = guest_build::target_dir(&root);
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("guests").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // Each example's sources, not guest-examples/ as a whole: cargo would
    // rescan js-listener's node_modules (~6,000 files) on every build. Its
    // `.package-lock.json` changes when `npm ci` reinstalls.
    let examples = root.join("guest-examples");
    for path in EXAMPLES.iter().map(|(dir, _)| examples.join(dir)).chain([
        examples.join("python-listener/app.py"),
        examples.join("js-listener/listener.js"),
        examples.join("js-listener/node_modules/.package-lock.json"),
    ]) {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut consts = String::new();
    let mut names = Vec::new();

    let guests = manifest.join("guests/Cargo.toml");
    let built = guest_build::cargo_build(&guests, &target, "wasm32-wasip2", WASIP2_GUESTS);
    for (g, path) in WASIP2_GUESTS.iter().zip(&built) {
        push(&mut consts, &mut names, g, path);
    }

    let packages: Vec<&str> = PURE_GUESTS.iter().map(|(p, _)| *p).collect();
    let built = guest_build::cargo_build(&guests, &target, "wasm32-unknown-unknown", &packages);
    for ((_, g), core) in PURE_GUESTS.iter().zip(&built) {
        let out = target.join(format!("{}.component.wasm", g.replace('-', "_")));
        guest_build::componentize(core, &out);
        push(&mut consts, &mut names, g, &out);
    }

    for (dir, krate) in EXAMPLES {
        let ws = root.join("guest-examples").join(dir).join("Cargo.toml");
        for path in guest_build::cargo_build(&ws, &target, "wasm32-wasip2", &[krate]) {
            push(&mut consts, &mut names, &format!("example-{krate}"), &path);
        }
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
