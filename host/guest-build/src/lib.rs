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
//! It also holds the convention that makes test guests discoverable
//! ([`discover`]): every package of a guest workspace is a guest, built for
//! the targets its own `Cargo.toml` names under `[package.metadata.keyhole]`.
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

/// How a guest is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A `wasm32-wasip2` cdylib: cargo's output is the component.
    Wasip2,
    /// A `wasm32-unknown-unknown` core module wrapped here into a component
    /// with no WASI imports at all ([`componentize`]).
    Pure,
}

impl Target {
    /// The rustc target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::Wasip2 => "wasm32-wasip2",
            Target::Pure => "wasm32-unknown-unknown",
        }
    }

    fn parse(s: &str, package: &str) -> Target {
        match s {
            "wasip2" => Target::Wasip2,
            "pure" => Target::Pure,
            other => panic!(
                "guest {package}: unknown target {other:?} in [package.metadata.keyhole] \
                 (known: \"wasip2\", \"pure\")"
            ),
        }
    }
}

/// One build of a guest package: the package, how it is built, and the
/// guest name its tests know it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// The cargo package, as `cargo build -p` takes it.
    pub package: String,
    /// The package's directory.
    pub dir: PathBuf,
    pub target: Target,
    /// The package name, or for a pure build of a package also built for
    /// wasip2, its `pure-name`.
    pub name: String,
}

/// Every guest of the cargo workspace at `manifest`: one [`Guest`] per
/// package and target, sorted by name. Workspace membership decides what
/// a guest is (a `members = ["*"]` glob makes that "every folder"); each
/// package says how it is built in its own `Cargo.toml`:
///
/// ```toml
/// [package.metadata.keyhole]
/// targets = ["wasip2", "pure"]   # default: ["wasip2"]
/// pure-name = "pure-spin-loop"   # needed when both are built
/// ```
///
/// Panics on an unknown key or target, on two builds with one name, and on
/// a package without a `README.md` (each guest documents its expectations).
pub fn discover(manifest: &Path) -> Vec<Guest> {
    let mut guests = Vec::new();
    for package in workspace_packages(manifest) {
        let meta = &package.metadata["keyhole"];
        let name = &package.name;
        if let Some(keys) = meta.as_object() {
            for key in keys.keys() {
                assert!(
                    key == "targets" || key == "pure-name",
                    "guest {name}: unknown key {key:?} in [package.metadata.keyhole] \
                     (known: targets, pure-name)"
                );
            }
        } else {
            assert!(
                meta.is_null(),
                "guest {name}: [package.metadata.keyhole] is not a table"
            );
        }
        let targets: Vec<Target> = match &meta["targets"] {
            serde_json::Value::Null => vec![Target::Wasip2],
            serde_json::Value::Array(list) if !list.is_empty() => list
                .iter()
                .map(|t| {
                    let t = t.as_str().unwrap_or_else(|| {
                        panic!("guest {name}: targets must be strings, found {t}")
                    });
                    Target::parse(t, name)
                })
                .collect(),
            other => panic!("guest {name}: targets must be a non-empty list, found {other}"),
        };
        let pure_name = match &meta["pure-name"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => panic!("guest {name}: pure-name must be a string, found {other}"),
        };
        assert!(
            pure_name.is_none() || targets.contains(&Target::Pure),
            "guest {name}: pure-name without a \"pure\" target"
        );
        let dir = package
            .manifest_path
            .parent()
            .expect("a manifest has a directory")
            .to_path_buf();
        assert!(
            dir.join("README.md").is_file(),
            "guest {name}: no README.md in {} (say what the guest does and what its test expects)",
            dir.display()
        );
        for target in targets {
            let guest_name = match (target, &pure_name) {
                (Target::Pure, Some(p)) => p.clone(),
                _ => name.clone(),
            };
            guests.push(Guest {
                package: name.clone(),
                dir: dir.clone(),
                target,
                name: guest_name,
            });
        }
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in guests.windows(2) {
        assert!(
            pair[0].name != pair[1].name,
            "two guests are named {:?} (packages {} and {}): a package built both ways \
             needs a distinct pure-name in [package.metadata.keyhole]",
            pair[0].name,
            pair[0].package,
            pair[1].package
        );
    }
    guests
}

/// A package of a workspace, as `cargo metadata` describes it.
#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    /// Its `Cargo.toml`.
    pub manifest_path: PathBuf,
    /// Its `[package.metadata]` table (`null` when it has none).
    pub metadata: serde_json::Value,
}

/// The member packages of the workspace at `manifest`, from
/// `cargo metadata --no-deps` (which resolves no dependencies and needs no
/// network), sorted by name.
pub fn workspace_packages(manifest: &Path) -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--manifest-path",
    ])
    .arg(manifest);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata for {} failed: {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let members: Vec<&str> = doc["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut packages: Vec<Package> = doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
        .map(|p| Package {
            name: p["name"].as_str().expect("package name").to_string(),
            manifest_path: PathBuf::from(p["manifest_path"].as_str().expect("manifest_path")),
            metadata: p["metadata"].clone(),
        })
        .collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    packages
}
