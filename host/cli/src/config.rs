//! Where things live: the data directory, the master key, and the
//! `serve.json` note a running daemon leaves behind.
//!
//! The master key is looked up in this order: `KEYHOLE_MASTER_KEY` (key text,
//! for containers and CI), then `--key-file` / `KEYHOLE_KEY_FILE`, then
//! `$XDG_CONFIG_HOME/keyhole/master.key`, then `~/.config/keyhole/master.key`.
//! The default is outside the data directory on purpose: a copy of the data
//! directory must be useless without the key.
//!
//! `serve.json` holds the daemon's pid and base URL (`https://` under
//! TLS). It lets tests and scripts use `--listen 127.0.0.1:0`, and lets a
//! CLI verb that finds the data directory locked say which process holds
//! it and where its API is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keyhole_runtime::{Runtime, RuntimeConfig};
use keyhole_store::{KeySource, SecretStore};
use serde::{Deserialize, Serialize};

use crate::errors::{CliError, Exit};
use crate::trail::{Trail, local_actor};

/// The environment variable holding key text; wins over any key file.
pub const MASTER_KEY_ENV: &str = "KEYHOLE_MASTER_KEY";
pub const SERVE_FILE: &str = "serve.json";

/// Global options, resolved.
#[derive(Clone, Debug)]
pub struct Globals {
    pub data: PathBuf,
    pub key: KeySource,
}

impl Globals {
    pub fn resolve(data: PathBuf, key_file: Option<PathBuf>) -> Result<Self> {
        let key = match std::env::var(MASTER_KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => KeySource::Inline(text),
            _ => KeySource::File(match key_file {
                Some(p) => p,
                None => default_key_file()?,
            }),
        };
        Ok(Globals { data, key })
    }

    /// Opens the store (sealed if the key is missing, wrong, or a file
    /// others can read), after making sure the data directory is private.
    pub fn open_store(&self) -> Result<SecretStore> {
        crate::datadir::secure(&self.data)?;
        Ok(SecretStore::open(&self.data, self.key.clone())?)
    }

    /// Opens the store and the runtime on it.
    pub fn open_runtime(&self) -> Result<Runtime> {
        self.open_runtime_with(RuntimeConfig::default())
    }

    /// Opens the store and the runtime on it, with `config`.
    pub fn open_runtime_with(&self, config: RuntimeConfig) -> Result<Runtime> {
        let store = self.open_store()?;
        Ok(Runtime::open(store, &self.data, config)?)
    }

    /// Where this CLI's admin actions on `store` are audited (as
    /// `local:USER`).
    pub fn trail(&self, store: &SecretStore) -> Result<Trail> {
        let keep = RuntimeConfig::default().max_audit_entries;
        let log = keyhole_runtime::audit::open(store, &self.data, keep)?;
        Ok(Trail::new(log, store.sealed_reason(), local_actor(), None))
    }

    /// The same, for verbs that opened the runtime (which has the log).
    pub fn runtime_trail(runtime: &Runtime) -> Trail {
        Trail::new(
            runtime.audit().cloned(),
            runtime.store().sealed_reason(),
            local_actor(),
            Some(runtime.metrics_handle()),
        )
    }

    /// A store that must be unsealed for this verb.
    pub fn open_unsealed_store(&self) -> Result<SecretStore> {
        let store = self.open_store()?;
        if let Some(reason) = store.sealed_reason() {
            return Err(keyhole_store::StoreError::Sealed { reason }.into());
        }
        Ok(store)
    }
}

fn default_key_file() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".config"),
            _ => {
                return Err(CliError::new(
                    Exit::Usage,
                    "cannot locate the master key: neither XDG_CONFIG_HOME nor HOME is set",
                )
                .hint("pass --key-file PATH or set KEYHOLE_KEY_FILE")
                .into());
            }
        },
    };
    Ok(base.join("keyhole").join("master.key"))
}

/// What a running `keyhole serve` tells the world.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServeInfo {
    pub pid: u32,
    /// Base URL, e.g. `http://127.0.0.1:7700`, or `https://…` when the
    /// daemon serves TLS (`--tls-cert`).
    pub address: String,
}

impl ServeInfo {
    pub fn read(data: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data.join(SERVE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written atomically (temp file + rename) so readers never see half,
    /// mode 0600 like everything in the data directory.
    pub fn write(&self, data: &Path) -> Result<()> {
        let tmp = data.join(format!(".{SERVE_FILE}.{}", std::process::id()));
        let path = data.join(SERVE_FILE);
        write_private(&tmp, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn remove(data: &Path) {
        let _ = std::fs::remove_file(data.join(SERVE_FILE));
    }
}

/// Writes `bytes` to `path`, creating it mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_info_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ServeInfo::read(dir.path()).is_none());
        let info = ServeInfo {
            pid: 42,
            address: "http://127.0.0.1:1".into(),
        };
        info.write(dir.path()).unwrap();
        assert_eq!(ServeInfo::read(dir.path()).unwrap().pid, 42);
        ServeInfo::remove(dir.path());
        assert!(ServeInfo::read(dir.path()).is_none());
    }
}
