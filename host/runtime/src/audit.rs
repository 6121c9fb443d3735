//! The runtime's part of the audit log: opening it with the store's key,
//! and the entry each `get-secret` call leaves (written in `secrets.rs`).
//!
//! The log lives in `DATA/audit/`, its head in the bucket `audit`. Its key
//! comes from the store, so a sealed store has no audit log, and then
//! nothing that must be audited (secret reads, admin writes) is served.
//!
//! In cluster mode each host's chain is its own (files and head in the
//! host's data directory) and is also copied, batch by batch, into the
//! shared bucket `audit-log` under the host's name (`DATA/host-name`), where
//! any host verifies and reads every host's chain (`keyhole-audit`'s
//! `mirror.rs`).

use std::path::Path;
use std::sync::Arc;

use keyhole_audit::{AuditError, AuditLog, Mirror};
use keyhole_store::SecretStore;

use crate::error::RuntimeError;

/// The bucket holding the audit chain's head.
pub const HEADS_BUCKET: &str = "audit";

/// Opens the audit log of `data_dir`, keeping about `keep` entries; `None`
/// while `store` is sealed.
pub fn open(
    store: &SecretStore,
    data_dir: &Path,
    keep: usize,
) -> Result<Option<Arc<AuditLog>>, RuntimeError> {
    open_on(store, &**store.backend(), data_dir, keep, None)
}

/// The shared bucket holding every host's chain in cluster mode.
pub const CLUSTER_BUCKET: &str = "audit-log";

/// [`open`] for a cluster host: the chain's head in `host` (the host's own
/// backend: its chain is its own, in its own files, so its head must not be
/// another host's), every batch copied into the store's shared backend.
pub fn open_clustered(
    store: &SecretStore,
    host: &dyn keyhole_kv::Backend,
    data_dir: &Path,
    keep: usize,
) -> Result<Option<Arc<AuditLog>>, RuntimeError> {
    let shared = store.backend().bucket(CLUSTER_BUCKET)?;
    let mirror = Mirror::new(shared, &host_name(data_dir)?)?;
    open_on(store, host, data_dir, keep, Some(mirror))
}

fn open_on(
    store: &SecretStore,
    heads: &dyn keyhole_kv::Backend,
    data_dir: &Path,
    keep: usize,
    mirror: Option<Mirror>,
) -> Result<Option<Arc<AuditLog>>, RuntimeError> {
    if store.is_sealed() {
        return Ok(None);
    }
    let root = store.audit_root_key()?;
    let heads = heads.bucket(HEADS_BUCKET)?;
    let dir = data_dir.join("audit");
    let log = AuditLog::open_mirrored(&dir, &root, heads, keep, mirror)
        .map_err(|e| audit_error(&dir, e))?;
    Ok(Some(Arc::new(log)))
}

/// This host's name in the cluster, from `DATA/host-name`; made on first
/// use from the machine's host name and four random hex digits (two hosts
/// on one machine differ). An operator may write the file before the
/// first start; it must not change afterwards.
pub fn host_name(data_dir: &Path) -> Result<String, RuntimeError> {
    let path = data_dir.join("host-name");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let name = text.trim();
            if keyhole_audit::valid_host(name) {
                return Ok(name.to_owned());
            }
            return Err(RuntimeError::Corrupt(format!(
                "{} holds {:?}, not a host name (1-64 of A-Z a-z 0-9 _ . -)",
                path.display(),
                name.chars().take(80).collect::<String>()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RuntimeError::io(&path, e)),
    }
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut name: String = machine
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    if name.is_empty() {
        name.push_str("host");
    }
    let name = format!("{name}-{:04x}", rand::random::<u16>());
    std::fs::write(&path, format!("{name}\n")).map_err(|e| RuntimeError::io(&path, e))?;
    Ok(name)
}

/// An audit log failure as a runtime error.
pub fn audit_error(dir: &Path, e: AuditError) -> RuntimeError {
    match e {
        AuditError::Io(io) => RuntimeError::io(dir, io),
        AuditError::Storage(kv) => kv.into(),
        AuditError::Corrupt { .. } => RuntimeError::Corrupt(e.to_string()),
    }
}
