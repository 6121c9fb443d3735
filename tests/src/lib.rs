//! Shared harness for keyhole's integration tests: a real store on the
//! embedded backend in a temporary directory (master key file outside it), a real runtime, and the
//! guests `build.rs` compiled from source.

pub use keyhole_stub_server::{Received, StubServer};

use std::path::{Path, PathBuf};

use keyhole_runtime::{DeploySpec, Deployment, Event, RunRecord, Runtime, RuntimeConfig};
use keyhole_store::{KeySource, Scope, SecretStore, SecretValue};

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// A store and runtime on a fresh temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub runtime: Runtime,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(RuntimeConfig::default())
    }

    /// A harness whose runtime opens with `config` (a restart opens the
    /// default config).
    pub fn with_config(config: RuntimeConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        SecretStore::init_key_file(&dir.path().join("master.key")).expect("init key");
        let runtime = open_with(dir.path(), config);
        Harness { dir, runtime }
    }

    /// Drops the runtime and store and opens them again, as a restart would.
    pub fn restart(self) -> Self {
        self.restart_with(RuntimeConfig::default())
    }

    /// [`Harness::restart`], opening the runtime with `config`.
    pub fn restart_with(self, config: RuntimeConfig) -> Self {
        let Harness { dir, runtime } = self;
        runtime.flush().expect("flush");
        drop(runtime);
        let runtime = open_with(dir.path(), config);
        Harness { dir, runtime }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn store(&self) -> &SecretStore {
        self.runtime.store()
    }

    /// Environment `prod` with `SLACK_TOKEN` set and a well-behaved listener,
    /// `neighbour` (the pure-reader guest), deployed beside whatever a test
    /// adds: hostile guests must not disturb it.
    pub fn with_neighbour() -> Self {
        let h = Harness::new();
        h.scopes("prod", &[]);
        h.set(
            Scope::Environment("prod".into()),
            "SLACK_TOKEN",
            NEIGHBOUR_TOKEN,
        );
        h.deploy(PURE_READER, DeploySpec::new("neighbour", "prod"));
        h
    }

    /// Creates environment `env` and the given spaces in it.
    pub fn scopes(&self, env: &str, spaces: &[&str]) {
        self.store()
            .create_environment(env)
            .expect("create environment");
        for s in spaces {
            self.store().create_space(s, env).expect("create space");
        }
    }

    pub fn set(&self, scope: Scope, name: &str, value: &str) {
        self.store()
            .set_secret(&scope, name, &SecretValue::new(value.to_string()))
            .expect("set secret");
    }

    pub fn deploy(&self, guest: &str, spec: DeploySpec) -> Deployment {
        self.runtime.deploy(spec, &wasm(guest)).expect("deploy")
    }

    /// Emits on the calling thread and returns the run records.
    pub fn emit(
        &self,
        topic: &str,
        env: &str,
        space: Option<&str>,
        payload: &str,
    ) -> Vec<RunRecord> {
        let event = Event::new(topic, env, space).with_payload(payload);
        self.runtime.emit_blocking(&event).expect("emit")
    }

    /// Emits and returns the one run of `listener`.
    pub fn run_of(
        &self,
        listener: &str,
        topic: &str,
        env: &str,
        space: Option<&str>,
        payload: &str,
    ) -> RunRecord {
        self.emit(topic, env, space, payload)
            .into_iter()
            .find(|r| r.listener == listener)
            .unwrap_or_else(|| panic!("no run of {listener}"))
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

fn open_with(dir: &Path, config: RuntimeConfig) -> Runtime {
    let store = SecretStore::open(&dir.join("data"), KeySource::File(dir.join("master.key")))
        .expect("open store");
    Runtime::open(store, &dir.join("data"), config).expect("open runtime")
}

const NEIGHBOUR_TOKEN: &str = "neighbour-token";

/// Asserts the `neighbour` of [`Harness::with_neighbour`] ran and succeeded.
pub fn assert_neighbour_ok(runs: &[RunRecord]) {
    let n = runs
        .iter()
        .find(|r| r.listener == "neighbour")
        .expect("neighbour ran");
    assert_eq!(
        n.outcome,
        keyhole_runtime::Outcome::Ok {
            value: fnv(NEIGHBOUR_TOKEN)
        }
    );
}

/// A deployment spec for environment `prod` with the given limits.
pub fn limited(name: &str, timeout_ms: u64, memory_mib: u64) -> DeploySpec {
    let mut spec = DeploySpec::new(name, "prod");
    spec.limits = keyhole_runtime::Limits {
        timeout_ms,
        memory_bytes: memory_mib << 20,
        ..Default::default()
    };
    spec
}

/// The bytes of a built guest.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read guest {path}: {e}"))
}

/// FNV-1a 64, as the `secret-reader` guest fingerprints values.
pub fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Every file under `dir`, concatenated.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Resident set size of this process in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
