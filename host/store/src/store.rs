//! [`SecretStore`]: opening the database, environments and spaces, and the
//! secret operations (set, delete, list, get, resolve).
//!
//! Durability: every acknowledged write (`create_*`, `set_secret`,
//! `delete_secret`, rotations) calls `db.flush()` before returning, so a
//! write the caller saw succeed survives a crash or power loss.
//!
//! Concurrency: secret versions are bumped with sled compare-and-swap, so
//! concurrent writers never lose an acknowledged write; the keyring lock is
//! held (shared) for the whole of a write so that rotations can wait out
//! writers that picked an older key (see `rotation.rs`).
//!
//! Sealed stores answer metadata (listings, environments, spaces, deletes)
//! but refuse every operation that needs a key with [`StoreError::Sealed`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::error::{Preview, StoreError};
use crate::keyring::{self, KeySource, Keyring};
use crate::keys::{self, DekCache};
use crate::model::{
    EffectiveMeta, EnvironmentInfo, Provenance, Resolved, Scope, SecretMeta, SecretValue,
    SpaceInfo, now_ms,
};
use crate::records::{self, EnvRecord, SecretRecord, SpaceRecord};
use crate::sealed_cache::{Cached, SealedCache, SealedEntry};
use crate::validate::{validate_id, validate_name, validate_value};
use crate::{crypto, records::scope_key};

/// A secret record read from sled.
enum Loaded {
    Missing,
    /// Its DEK was retired after the record was read.
    StaleDek,
    Entry(Arc<SealedEntry>),
}

/// Environments found to exist, and each space found with its environment.
#[derive(Default)]
pub(crate) struct KnownScopes {
    environments: HashSet<String>,
    spaces: HashMap<String, String>,
}

/// How many times a read re-reads a record that a rotation moved under it.
const STALE_RETRIES: usize = 8;

pub(crate) struct Trees {
    pub meta: sled::Tree,
    pub envs: sled::Tree,
    pub spaces: sled::Tree,
    pub deks: sled::Tree,
    pub dek_current: sled::Tree,
    pub secrets: sled::Tree,
}

pub(crate) struct Inner {
    pub db: sled::Db,
    pub trees: Trees,
    pub source: KeySource,
    pub sealed: Option<String>,
    /// The usable KEK versions. Writers hold it shared for a whole write;
    /// rotations take it exclusively to switch keys.
    pub keys: RwLock<Keyring>,
    pub dek_cache: DekCache,
    /// Secret records as stored, in front of sled on the read path.
    pub sealed_cache: SealedCache,
    /// Environments and spaces found so far. Neither is ever deleted and a
    /// space never moves, so a positive answer never goes stale and the
    /// per-event and per-read scope checks skip sled. Anything that ever
    /// deletes or moves one must clear this.
    pub known: RwLock<KnownScopes>,
    /// Serializes rotations with each other.
    pub rotation: Mutex<()>,
    /// keyhole's own lock on the data dir, declared last so it is released
    /// only after the database above has been dropped.
    _dir_lock: DirLock,
}

/// The encrypted secret store. Cheap to clone; all clones share one db.
#[derive(Clone)]
pub struct SecretStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("sealed", &self.inner.sealed)
            .finish_non_exhaustive()
    }
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl SecretStore {
    /// Opens (creating if needed) the store in `data_dir/db`. A missing or
    /// wrong master key opens the store sealed rather than failing; a
    /// malformed key file is an error to fix now.
    pub fn open(data_dir: &Path, key: KeySource) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        if let KeySource::File(path) = &key {
            refuse_key_inside(data_dir, path)?;
        }
        let loaded = keyring::load(&key)?;
        let dir_lock = DirLock::acquire(data_dir)?;
        let db = open_sled(data_dir)?;
        let trees = Trees {
            meta: db.open_tree(records::TREE_META)?,
            envs: db.open_tree(records::TREE_ENVIRONMENTS)?,
            spaces: db.open_tree(records::TREE_SPACES)?,
            deks: db.open_tree(records::TREE_DEKS)?,
            dek_current: db.open_tree(records::TREE_DEK_CURRENT)?,
            secrets: db.open_tree(records::TREE_SECRETS)?,
        };
        let (ring, sealed) = keys::unseal(&db, &trees.meta, &trees.deks, &key, loaded)?;
        Ok(SecretStore {
            inner: Arc::new(Inner {
                db,
                trees,
                source: key,
                sealed,
                keys: RwLock::new(ring),
                dek_cache: DekCache::default(),
                sealed_cache: SealedCache::default(),
                known: RwLock::default(),
                rotation: Mutex::new(()),
                _dir_lock: dir_lock,
            }),
        })
    }

    /// Creates a key file with a new random 256-bit KEK (mode 0600).
    pub fn init_key_file(path: &Path) -> Result<(), StoreError> {
        keyring::init_key_file(path)
    }

    /// A new random KEK as hex text, for `KeySource::Inline` users.
    pub fn generate_key_text() -> String {
        keyring::generate_key_text()
    }

    /// The underlying database, for other crates' own trees. Edits to the
    /// store's own trees made through it bypass the store's caches (DEKs,
    /// sealed records, known scopes) and are seen only after a reopen.
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub fn is_sealed(&self) -> bool {
        self.inner.sealed.is_some()
    }

    pub fn sealed_reason(&self) -> Option<String> {
        self.inner.sealed.clone()
    }

    pub(crate) fn check_unsealed(&self) -> Result<(), StoreError> {
        match &self.inner.sealed {
            Some(reason) => Err(StoreError::Sealed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn create_environment(&self, id: &str) -> Result<EnvironmentInfo, StoreError> {
        validate_id(id)?;
        let created_at_ms = now_ms();
        let rec = records::encode(&EnvRecord { created_at_ms });
        let t = &self.inner.trees.envs;
        if t.compare_and_swap(id, None::<&[u8]>, Some(rec))?.is_err() {
            return Err(StoreError::AlreadyExists(format!(
                "environment {}",
                Preview(id)
            )));
        }
        self.inner.db.flush()?;
        Ok(EnvironmentInfo {
            id: id.to_owned(),
            created_at_ms,
        })
    }

    pub fn create_space(&self, id: &str, environment: &str) -> Result<SpaceInfo, StoreError> {
        validate_id(id)?;
        validate_id(environment)?;
        if self.environment(environment)?.is_none() {
            return Err(StoreError::UnknownEnvironment(environment.to_owned()));
        }
        let created_at_ms = now_ms();
        let rec = records::encode(&SpaceRecord {
            environment,
            created_at_ms,
        });
        let t = &self.inner.trees.spaces;
        if t.compare_and_swap(id, None::<&[u8]>, Some(rec))?.is_err() {
            return Err(StoreError::AlreadyExists(format!("space {}", Preview(id))));
        }
        self.inner.db.flush()?;
        Ok(SpaceInfo {
            id: id.to_owned(),
            environment: environment.to_owned(),
            created_at_ms,
        })
    }

    pub fn environment(&self, id: &str) -> Result<Option<EnvironmentInfo>, StoreError> {
        validate_id(id)?;
        let Some(bytes) = self.inner.trees.envs.get(id)? else {
            return Ok(None);
        };
        let rec: EnvRecord = records::decode(&bytes, "environment record")?;
        Ok(Some(EnvironmentInfo {
            id: id.to_owned(),
            created_at_ms: rec.created_at_ms,
        }))
    }

    pub fn space(&self, id: &str) -> Result<Option<SpaceInfo>, StoreError> {
        validate_id(id)?;
        let Some(bytes) = self.inner.trees.spaces.get(id)? else {
            return Ok(None);
        };
        space_info(id.as_bytes(), &bytes).map(Some)
    }

    pub fn list_environments(&self) -> Result<Vec<EnvironmentInfo>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.trees.envs.iter() {
            let (k, v) = item?;
            let rec: EnvRecord = records::decode(&v, "environment record")?;
            out.push(EnvironmentInfo {
                id: utf8(&k, "environment id")?,
                created_at_ms: rec.created_at_ms,
            });
        }
        Ok(out)
    }

    pub fn list_spaces(&self, environment: Option<&str>) -> Result<Vec<SpaceInfo>, StoreError> {
        if let Some(env) = environment {
            self.require_scope(&Scope::Environment(env.to_owned()))?;
        }
        let mut out = Vec::new();
        for item in self.inner.trees.spaces.iter() {
            let (k, v) = item?;
            let info = space_info(&k, &v)?;
            if environment.is_none_or(|e| e == info.environment) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Errors unless the scope's environment or space exists.
    pub(crate) fn require_scope(&self, scope: &Scope) -> Result<(), StoreError> {
        match scope {
            Scope::Environment(id) => {
                validate_id(id)?;
                if !self.inner.trees.envs.contains_key(id)? {
                    return Err(StoreError::UnknownEnvironment(id.clone()));
                }
            }
            Scope::Space(id) => {
                validate_id(id)?;
                if !self.inner.trees.spaces.contains_key(id)? {
                    return Err(StoreError::UnknownSpace(id.clone()));
                }
            }
        }
        Ok(())
    }

    /// Creates or replaces a secret; its version grows by one.
    pub fn set_secret(
        &self,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
    ) -> Result<SecretMeta, StoreError> {
        validate_name(name)?;
        validate_value(value.expose())?;
        self.require_scope(scope)?;
        self.check_unsealed()?;
        let inner = &self.inner;
        let sk = scope_key(scope);
        let key = records::secret_key(&sk, name);
        let meta = {
            let ring = read_lock(&inner.keys);
            let (dek_version, cipher) = inner.current_dek(&ring, &sk)?;
            loop {
                let old = inner.trees.secrets.get(&key)?;
                let now = now_ms();
                let (version, created_at_ms) = match &old {
                    Some(bytes) => {
                        let r: SecretRecord<'_> = records::decode(bytes, "secret record")?;
                        (r.version + 1, r.created_at_ms)
                    }
                    None => (1, now),
                };
                let nonce = crypto::random_nonce();
                let ad = records::value_ad(&sk, name, version, dek_version);
                let sealed = cipher.seal(&nonce, &ad, value.expose().as_bytes());
                let rec = SecretRecord {
                    version,
                    created_at_ms,
                    updated_at_ms: now,
                    dek_version,
                    nonce,
                    sealed: &sealed,
                };
                let swapped =
                    inner
                        .trees
                        .secrets
                        .compare_and_swap(&key, old, Some(records::encode(&rec)))?;
                if swapped.is_ok() {
                    inner.sealed_cache.invalidate();
                    break SecretMeta {
                        scope: scope.clone(),
                        name: name.to_owned(),
                        version,
                        created_at_ms,
                        updated_at_ms: now,
                    };
                }
            }
        };
        inner.db.flush()?;
        Ok(meta)
    }

    /// Deletes a secret; `false` if it did not exist. Works while sealed.
    pub fn delete_secret(&self, scope: &Scope, name: &str) -> Result<bool, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let key = records::secret_key(&scope_key(scope), name);
        let existed = self.inner.trees.secrets.remove(key)?.is_some();
        self.inner.sealed_cache.invalidate();
        self.inner.db.flush()?;
        Ok(existed)
    }

    /// Metadata of the secrets of exactly this scope, by name.
    pub fn list_secrets(&self, scope: &Scope) -> Result<Vec<SecretMeta>, StoreError> {
        self.require_scope(scope)?;
        let prefix = records::scope_prefix(&scope_key(scope));
        let mut out = Vec::new();
        for item in self.inner.trees.secrets.scan_prefix(&prefix) {
            let (k, v) = item?;
            let rec: SecretRecord<'_> = records::decode(&v, "secret record")?;
            out.push(SecretMeta {
                scope: scope.clone(),
                name: utf8(&k[prefix.len()..], "secret name")?,
                version: rec.version,
                created_at_ms: rec.created_at_ms,
                updated_at_ms: rec.updated_at_ms,
            });
        }
        Ok(out)
    }

    /// The merged view a listener in `environment` (and `space`) sees.
    pub fn list_effective(
        &self,
        environment: &str,
        space: Option<&str>,
    ) -> Result<Vec<EffectiveMeta>, StoreError> {
        self.require_scope(&Scope::Environment(environment.to_owned()))?;
        if let Some(space) = space {
            self.require_space_in(space, environment)?;
        }
        let mut merged = BTreeMap::new();
        for meta in self.list_secrets(&Scope::Environment(environment.to_owned()))? {
            let provenance = Provenance::Environment;
            merged.insert(meta.name.clone(), EffectiveMeta { meta, provenance });
        }
        if let Some(space) = space {
            for meta in self.list_secrets(&Scope::Space(space.to_owned()))? {
                let provenance = Provenance::SpaceOverride;
                merged.insert(meta.name.clone(), EffectiveMeta { meta, provenance });
            }
        }
        Ok(merged.into_values().collect())
    }

    /// Errors unless `environment` exists and `space`, if given, belongs
    /// to it: the check every event makes before it is dispatched. Answers
    /// from memory once a scope has been found.
    pub fn require_event_scope(
        &self,
        environment: &str,
        space: Option<&str>,
    ) -> Result<(), StoreError> {
        if !read_lock(&self.inner.known)
            .environments
            .contains(environment)
        {
            self.require_scope(&Scope::Environment(environment.to_owned()))?;
            write_lock(&self.inner.known)
                .environments
                .insert(environment.to_owned());
        }
        match space {
            Some(space) => self.require_space_in(space, environment),
            None => Ok(()),
        }
    }

    fn require_space_in(&self, space: &str, environment: &str) -> Result<(), StoreError> {
        let known = read_lock(&self.inner.known)
            .spaces
            .get(space)
            .is_some_and(|e| e == environment);
        if known {
            return Ok(());
        }
        validate_id(space)?;
        let Some(bytes) = self.inner.trees.spaces.get(space)? else {
            return Err(StoreError::UnknownSpace(space.to_owned()));
        };
        let rec: SpaceRecord<'_> = records::decode(&bytes, "space record")?;
        if rec.environment != environment {
            return Err(StoreError::SpaceNotInEnvironment {
                space: space.to_owned(),
                environment: environment.to_owned(),
            });
        }
        write_lock(&self.inner.known)
            .spaces
            .insert(space.to_owned(), environment.to_owned());
        Ok(())
    }

    /// The value of `name` in exactly `scope` (no inheritance).
    pub fn get_secret(&self, scope: &Scope, name: &str) -> Result<SecretValue, StoreError> {
        validate_name(name)?;
        self.check_unsealed()?;
        match self.read_value(&scope_key(scope), scope, name)? {
            Some((value, _)) => Ok(value),
            None => {
                self.require_scope(scope)?;
                Err(StoreError::NotFound {
                    scope: scope.clone(),
                    name: name.to_owned(),
                })
            }
        }
    }

    /// What a listener in `environment` (and `space`) gets for `name`: the
    /// space's own secret if it has one, else the environment's.
    pub fn resolve(
        &self,
        environment: &str,
        space: Option<&str>,
        name: &str,
    ) -> Result<Resolved, StoreError> {
        validate_name(name)?;
        self.check_unsealed()?;
        if let Some(space) = space {
            self.require_space_in(space, environment)?;
            let scope = Scope::Space(space.to_owned());
            if let Some((value, version)) = self.read_value(&scope_key(&scope), &scope, name)? {
                return Ok(Resolved {
                    value,
                    scope,
                    provenance: Provenance::SpaceOverride,
                    version,
                });
            }
        }
        let scope = Scope::Environment(environment.to_owned());
        match self.read_value(&scope_key(&scope), &scope, name)? {
            Some((value, version)) => Ok(Resolved {
                value,
                scope,
                provenance: Provenance::Environment,
                version,
            }),
            None => {
                self.require_scope(&scope)?;
                Err(StoreError::NotFound {
                    scope,
                    name: name.to_owned(),
                })
            }
        }
    }

    /// Reads and decrypts one value; `None` if the record does not exist.
    /// The record comes from the sealed cache, or from sled (and is cached
    /// once it has authenticated; a missing record is cached as missing).
    fn read_value(
        &self,
        sk: &[u8],
        scope: &Scope,
        name: &str,
    ) -> Result<Option<(SecretValue, u64)>, StoreError> {
        let key = records::secret_key(sk, name);
        let cache = &self.inner.sealed_cache;
        for _ in 0..STALE_RETRIES {
            let (entry, generation) = match cache.get(&key) {
                Some(Cached::Sealed(entry)) => (entry, None),
                Some(Cached::Missing) => return Ok(None),
                None => {
                    let generation = cache.generation();
                    match self.load_sealed(&key, sk, name)? {
                        Loaded::Missing => {
                            cache.insert(generation, key, Cached::Missing);
                            return Ok(None);
                        }
                        // A rotation retired the DEK after we read the
                        // record: it has been re-encrypted, so read again.
                        Loaded::StaleDek => continue,
                        Loaded::Entry(entry) => (entry, Some(generation)),
                    }
                }
            };
            let mut plain = entry
                .cipher
                .open(&entry.nonce, &entry.ad, &entry.sealed)
                .map_err(|_| {
                    StoreError::integrity(format!(
                        "secret {} in {scope} does not authenticate",
                        Preview(name)
                    ))
                })?;
            let value = match String::from_utf8(std::mem::take(&mut *plain)) {
                Ok(s) => SecretValue::new(s),
                Err(e) => {
                    drop(zeroize::Zeroizing::new(e.into_bytes()));
                    return Err(StoreError::corrupt(format!(
                        "secret {} in {scope} is not UTF-8",
                        Preview(name)
                    )));
                }
            };
            let version = entry.version;
            if let Some(generation) = generation {
                cache.insert(generation, key, Cached::Sealed(entry));
            }
            return Ok(Some((value, version)));
        }
        Err(StoreError::corrupt(format!(
            "secret {} in {scope} refers to a DEK that does not exist",
            Preview(name)
        )))
    }

    /// The record under `key` from sled, decoded, with its DEK.
    fn load_sealed(&self, key: &[u8], sk: &[u8], name: &str) -> Result<Loaded, StoreError> {
        let read = self.inner.trees.secrets.get(key)?;
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::SecretRecordRead);
        let Some(bytes) = read else {
            return Ok(Loaded::Missing);
        };
        let rec: SecretRecord<'_> = records::decode(&bytes, "secret record")?;
        let Some(cipher) = self.inner.dek(None, sk, rec.dek_version)? else {
            return Ok(Loaded::StaleDek);
        };
        Ok(Loaded::Entry(Arc::new(SealedEntry {
            version: rec.version,
            nonce: rec.nonce,
            sealed: rec.sealed.into(),
            ad: records::value_ad(sk, name, rec.version, rec.dek_version).into(),
            cipher,
        })))
    }
}

fn space_info(id: &[u8], bytes: &[u8]) -> Result<SpaceInfo, StoreError> {
    let rec: SpaceRecord<'_> = records::decode(bytes, "space record")?;
    Ok(SpaceInfo {
        id: utf8(id, "space id")?,
        environment: rec.environment.to_owned(),
        created_at_ms: rec.created_at_ms,
    })
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::corrupt(format!("{what} is not UTF-8")))
}

/// An exclusive `flock` on `data_dir/keyhole.lock`, held for the life of a
/// store. It is what tells "another process has this directory" apart from
/// sled's own lock, which a dropped store in *this* process can still hold
/// for a moment while sled's background I/O threads let go of the file.
struct DirLock(#[allow(dead_code)] std::fs::File);

impl DirLock {
    fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("keyhole.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: data_dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// How long to wait for sled's lock once keyhole's own lock is held: only a
/// store dropped in this process can be holding it, and it lets go quickly.
const SLED_LOCK_GRACE: Duration = Duration::from_secs(5);

/// Opens sled under a held [`DirLock`]. sled's lock can then only be the
/// residue of a store this process just dropped, so it is waited out.
fn open_sled(data_dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + SLED_LOCK_GRACE;
    loop {
        // sled's default page cache is 1 GiB; run records alone would grow
        // the process toward it. 64 MiB keeps hot secrets and recent runs
        // cached while bounding memory.
        let opened = sled::Config::new()
            .path(data_dir.join("db"))
            .cache_capacity(64 << 20)
            .open();
        match opened {
            Err(sled::Error::Io(io)) if is_lock_error(&io) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(sled::Error::Io(io)) if is_lock_error(&io) => {
                return Err(StoreError::Locked {
                    path: data_dir.to_path_buf(),
                });
            }
            other => return Ok(other?),
        }
    }
}

/// sled reports a held lock as an io error.
fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

/// A key file inside the data dir would end up in every backup of it.
fn refuse_key_inside(data_dir: &Path, key_path: &Path) -> Result<(), StoreError> {
    let canon = |p: &Path| -> Option<PathBuf> { p.canonicalize().ok() };
    let key_dir = key_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let (Some(data), Some(key_dir)) = (canon(data_dir), canon(key_dir))
        && key_dir.starts_with(&data)
    {
        return Err(StoreError::KeyFile {
            path: key_path.to_path_buf(),
            reason: "must live outside the data directory".into(),
        });
    }
    Ok(())
}
