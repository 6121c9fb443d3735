//! Where things live: the data directory, the master key, the API token
//! file, and the `serve.json` note a running daemon leaves behind.
//!
//! The master key is looked up in this order: `KEYHOLE_MASTER_KEY` (key text,
//! for containers and CI), then `--key-file` / `KEYHOLE_KEY_FILE`, then
//! `$XDG_CONFIG_HOME/keyhole/master.key`, then `~/.config/keyhole/master.key`.
//! The default is outside the data directory on purpose: a copy of the data
//! directory must be useless without the key.
//!
//! The token file (`token`, beside the key file, mode 0600; or
//! `--token-file`) holds the `admin` token `keyhole init` made, for the CLI
//! to use when it talks to a daemon; `KEYHOLE_TOKEN` wins over it.
//!
//! `serve.json` holds the daemon's pid and base URL (`https://` under
//! TLS). It lets tests and scripts use `--listen 127.0.0.1:0`, and lets the
//! CLI find the daemon that holds the data directory and send its verbs
//! there (`crate::client`).

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
    /// `--server`: send every verb to this daemon.
    pub server: Option<String>,
    /// `--insecure-http`: `server` may be plain http:// off loopback.
    pub insecure_http: bool,
    /// Where the API token for a daemon is kept (`None`: nowhere known).
    pub token_file: Option<PathBuf>,
    /// `--ca-cert`: CAs to trust for an https:// daemon.
    pub ca_cert: Option<PathBuf>,
    /// `--cluster`: the NATS server whose buckets hold the shared state.
    pub cluster: Option<keyhole_kv_nats::NatsConfig>,
}

/// The token file's name, beside the master key file.
pub const TOKEN_FILE: &str = "token";

impl Globals {
    pub fn resolve(cli: &crate::cli::Cli) -> Result<Self> {
        let key = match std::env::var(MASTER_KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => KeySource::Inline(text),
            _ => KeySource::File(match &cli.key_file {
                Some(p) => p.clone(),
                None => default_key_file()?,
            }),
        };
        // Beside the key file. With key text there is no file to be beside
        // (and the default place may be another installation's): only an
        // explicit --token-file, else KEYHOLE_TOKEN.
        let token_file = cli.token_file.clone().or_else(|| match &key {
            KeySource::File(p) => Some(p.with_file_name(TOKEN_FILE)),
            _ => None,
        });
        Ok(Globals {
            data: cli.data.clone(),
            key,
            server: cli.server.clone().filter(|s| !s.trim().is_empty()),
            insecure_http: cli.insecure_http,
            token_file,
            ca_cert: cli.ca_cert.clone(),
            cluster: cli
                .cluster
                .clone()
                .filter(|u| !u.trim().is_empty())
                .map(|url| keyhole_kv_nats::NatsConfig {
                    url,
                    namespace: cli.cluster_namespace.clone(),
                    replicas: cli.cluster_replicas,
                }),
        })
    }

    /// Opens the store (sealed if the key is missing, wrong, or a file
    /// others can read), after making sure the data directory is private.
    pub fn open_store(&self) -> Result<SecretStore> {
        self.open_store_with(self.key.clone())
    }

    /// [`Globals::open_store`] with `key`: on the embedded backend in the
    /// data directory, or with `--cluster` on NATS.
    pub fn open_store_with(&self, key: KeySource) -> Result<SecretStore> {
        crate::datadir::secure(&self.data)?;
        let Some(cluster) = &self.cluster else {
            return Ok(SecretStore::open(&self.data, key)?);
        };
        if let KeySource::File(path) = &key
            && keyhole_store::key_file_inside(path, &self.data)
        {
            return Err(keyhole_store::StoreError::KeyFile {
                path: path.clone(),
                reason: "must live outside the data directory".into(),
            }
            .into());
        }
        let nats = keyhole_kv_nats::NatsKv::connect(cluster.clone())
            .with_context(|| format!("connecting to the cluster at {}", cluster.url))?;
        Ok(SecretStore::open_on(std::sync::Arc::new(nats), key)?)
    }

    /// Opens the store and the runtime on it.
    pub fn open_runtime(&self) -> Result<Runtime> {
        self.open_runtime_with(RuntimeConfig::default())
    }

    /// Opens the store and the runtime on it, with `config`.
    pub fn open_runtime_with(&self, config: RuntimeConfig) -> Result<Runtime> {
        if self.cluster.is_none() {
            let store = self.open_store()?;
            return Ok(Runtime::open(store, &self.data, config)?);
        }
        // The host's own backend first: it holds the data directory's lock,
        // so a second process on it finds the daemon rather than NATS.
        crate::datadir::secure(&self.data)?;
        let host = keyhole_kv_embedded::EmbeddedKv::open(&self.data)?.into_backend();
        let store = self.open_store()?;
        Ok(Runtime::open_clustered(store, host, &self.data, config)?)
    }

    /// Where this CLI's admin actions on `store` are audited (as
    /// `local:USER`).
    pub fn trail(&self, store: &SecretStore) -> Result<Trail> {
        let keep = RuntimeConfig::default().max_audit_entries;
        let log = match &self.cluster {
            None => keyhole_runtime::audit::open(store, &self.data, keep)?,
            // Each host's audit chain is its own, head included, and is
            // copied to the cluster.
            Some(_) => {
                let host = keyhole_kv_embedded::EmbeddedKv::open(&self.data)?.into_backend();
                keyhole_runtime::audit::open_clustered(store, &*host, &self.data, keep)?
            }
        };
        Ok(Trail::new(log, store.sealed_reason(), local_actor(), None))
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
    /// Under TLS, the certificate the daemon serves: the CLI that finds
    /// this daemon through `serve.json` trusts it (unless `--ca-cert` says
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
}

impl ServeInfo {
    pub fn read(data: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data.join(SERVE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written atomically, mode 0600 like everything in the data
    /// directory.
    pub fn write(&self, data: &Path) -> Result<()> {
        let path = data.join(SERVE_FILE);
        replace_private(&path, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn remove(data: &Path) {
        let _ = std::fs::remove_file(data.join(SERVE_FILE));
    }
}

/// Writes `token` to the token file `path` (see the module docs).
pub fn write_token_file(path: &Path, token: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    replace_private(path, format!("{token}\n").as_bytes())
        .with_context(|| format!("writing the token file {}", path.display()))
}

/// Replaces `path` with `bytes`, mode 0600, through a temporary file beside
/// it (created new, synced, renamed), so no reader ever sees half of it.
fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let write = || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
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
            tls_cert: None,
        };
        info.write(dir.path()).unwrap();
        assert_eq!(ServeInfo::read(dir.path()).unwrap().pid, 42);
        ServeInfo::remove(dir.path());
        assert!(ServeInfo::read(dir.path()).is_none());
    }
}
