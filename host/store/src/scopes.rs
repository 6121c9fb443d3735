//! Environments and spaces: creating, finding and listing them, and the one
//! check of scope membership ("this space belongs to this environment")
//! that the store, the runtime and the API all use ([`SecretStore::check_scope`]).
//!
//! A scope record is live or marked as being deleted
//! ([`records::ScopeState`], `deletion/`). Everything here treats a marked
//! scope as gone: it is not found, listed, written to or dispatched to, so
//! a deletion that stops half-way never leaves a half-usable scope.
//!
//! Found live scopes are remembered ([`KnownScopes`]) so the per-event and
//! per-read checks skip the backend. The watch forgets a scope on any
//! change to its record, a mark as much as a delete (`cache_sync.rs`), and
//! a checker remembers a scope only if nothing was forgotten while it
//! looked, so a mark landing in the middle of a check is never papered
//! over by a stale "known".

use foldhash::{HashMap, HashSet};

use keyhole_kv::{Bucket, Cas, Revision};

use crate::error::{Preview, StoreError};
use crate::layout;
use crate::locks::{read_lock, write_lock};
use crate::model::{EnvironmentInfo, Scope, SpaceInfo, now_ms};
use crate::open::SecretStore;
use crate::records::{self, DeleteMark, EnvRecord, ScopeState, SpaceRecord};
use crate::validate::validate_id;

/// How many times a create that found its id taken, then gone, tries again.
const CREATE_ATTEMPTS: usize = 4;

/// Environments found to exist, and each space found with its environment.
#[derive(Default)]
pub(crate) struct KnownScopes {
    environments: HashSet<String>,
    spaces: HashMap<String, String>,
    /// Grows with every forget: a checker adds what it read only if no
    /// forget came between its read and its add.
    generation: u64,
}

impl KnownScopes {
    pub(crate) fn forget_environment(&mut self, id: &[u8]) {
        self.generation += 1;
        if let Ok(id) = std::str::from_utf8(id) {
            self.environments.remove(id);
        }
    }

    pub(crate) fn forget_space(&mut self, id: &[u8]) {
        self.generation += 1;
        if let Ok(id) = std::str::from_utf8(id) {
            self.spaces.remove(id);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.generation += 1;
        self.environments.clear();
        self.spaces.clear();
    }
}

/// An environment or space record, decoded.
pub(crate) struct ScopeRecord {
    /// A space's environment; `None` for an environment.
    pub environment: Option<String>,
    pub created_at_ms: u64,
    pub mark: Option<DeleteMark>,
    pub revision: Revision,
}

impl ScopeRecord {
    pub(crate) fn is_live(&self) -> bool {
        self.mark.is_none()
    }

    /// The record's bytes with `mark` (none: live).
    pub(crate) fn encode(&self, mark: Option<DeleteMark>) -> Vec<u8> {
        let created_at_ms = self.created_at_ms;
        match &self.environment {
            None => encode_state(EnvRecord { created_at_ms }, mark),
            Some(environment) => encode_state(
                SpaceRecord {
                    environment,
                    created_at_ms,
                },
                mark,
            ),
        }
    }
}

fn encode_state<T: serde::Serialize>(record: T, mark: Option<DeleteMark>) -> Vec<u8> {
    records::encode_scope(&match mark {
        None => ScopeState::Live(record),
        Some(mark) => ScopeState::Deleting { record, mark },
    })
}

fn scope_key(scope: &Scope) -> Vec<u8> {
    match scope {
        Scope::Environment(id) => layout::env(id),
        Scope::Space(id) => layout::space(id),
    }
}

/// Decodes the record stored for `scope` (whose id must be valid).
fn decode_record(
    scope: &Scope,
    bytes: &[u8],
    revision: Revision,
) -> Result<ScopeRecord, StoreError> {
    Ok(match scope {
        Scope::Environment(_) => {
            let state: ScopeState<EnvRecord> = records::decode_scope(bytes, "environment record")?;
            ScopeRecord {
                environment: None,
                created_at_ms: state.record().created_at_ms,
                mark: state.mark(),
                revision,
            }
        }
        Scope::Space(_) => {
            let state: ScopeState<SpaceRecord<'_>> = records::decode_scope(bytes, "space record")?;
            ScopeRecord {
                environment: Some(state.record().environment.to_owned()),
                created_at_ms: state.record().created_at_ms,
                mark: state.mark(),
                revision,
            }
        }
    })
}

/// The record of `scope`, live or marked; `None` if there is none.
pub(crate) fn read_scope(
    bucket: &dyn Bucket,
    scope: &Scope,
) -> Result<Option<ScopeRecord>, StoreError> {
    validate_id(scope.id())?;
    match bucket.get(&scope_key(scope))? {
        Some(e) => decode_record(scope, &e.value, e.revision).map(Some),
        None => Ok(None),
    }
}

/// Whether `scope` exists and is not being deleted.
pub(crate) fn is_live(bucket: &dyn Bucket, scope: &Scope) -> Result<bool, StoreError> {
    Ok(read_scope(bucket, scope)?.is_some_and(|r| r.is_live()))
}

/// Every scope record under `prefix` (`env/` or `space/`), as scopes.
pub(crate) fn scan_scopes(
    bucket: &dyn Bucket,
    prefix: &[u8],
) -> Result<Vec<(Scope, ScopeRecord)>, StoreError> {
    let mut out = Vec::new();
    for (k, e) in bucket.scan(prefix)? {
        let id = utf8(&k[prefix.len()..], "scope id")?;
        let scope = if prefix == layout::ENV_PREFIX {
            Scope::Environment(id)
        } else {
            Scope::Space(id)
        };
        let rec = decode_record(&scope, &e.value, e.revision)?;
        out.push((scope, rec));
    }
    Ok(out)
}

impl SecretStore {
    pub fn create_environment(&self, id: &str) -> Result<EnvironmentInfo, StoreError> {
        validate_id(id)?;
        let scope = Scope::Environment(id.to_owned());
        let created_at_ms = now_ms();
        let rec = encode_state(EnvRecord { created_at_ms }, None);
        self.create_scope(&scope, &rec, |_| {
            StoreError::AlreadyExists(format!("environment {}", Preview(id)))
        })?;
        self.flush()?;
        Ok(EnvironmentInfo {
            id: id.to_owned(),
            created_at_ms,
        })
    }

    /// Space ids are unique across environments: a taken id is
    /// [`StoreError::SpaceExists`], naming the environment that owns it.
    pub fn create_space(&self, id: &str, environment: &str) -> Result<SpaceInfo, StoreError> {
        validate_id(id)?;
        validate_id(environment)?;
        let env = Scope::Environment(environment.to_owned());
        if !is_live(&*self.inner.bucket, &env)? {
            return Err(StoreError::unknown(&env));
        }
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::BeforeSpaceCreate);
        let scope = Scope::Space(id.to_owned());
        let created_at_ms = now_ms();
        let rec = encode_state(
            SpaceRecord {
                environment,
                created_at_ms,
            },
            None,
        );
        let revision = self.create_scope(&scope, &rec, |owner| StoreError::SpaceExists {
            space: id.to_owned(),
            environment: owner.environment.clone().unwrap_or_default(),
        })?;
        // The fence: a deletion of the environment that began after the
        // check above lists its spaces only after marking it, and may have
        // missed this one; take it back.
        crate::deletion::live_fence(&*self.inner.bucket, &env, &layout::space(id), revision)?;
        self.flush()?;
        Ok(SpaceInfo {
            id: id.to_owned(),
            environment: environment.to_owned(),
            created_at_ms,
        })
    }

    /// Creates the record of `scope`; `taken` says why an existing live one
    /// is in the way. Returns the revision written.
    fn create_scope(
        &self,
        scope: &Scope,
        rec: &[u8],
        taken: impl Fn(&ScopeRecord) -> StoreError,
    ) -> Result<Revision, StoreError> {
        let bucket = &*self.inner.bucket;
        for _ in 0..CREATE_ATTEMPTS {
            if let Cas::Written(revision) = bucket.create(&scope_key(scope), rec)? {
                return Ok(revision);
            }
            match read_scope(bucket, scope)? {
                Some(r) if r.is_live() => return Err(taken(&r)),
                Some(_) => return Err(StoreError::BeingDeleted(scope.clone())),
                None => continue, // deleted in between: try again
            }
        }
        Err(StoreError::Contended(format!(
            "the id {}",
            Preview(scope.id())
        )))
    }

    pub fn environment(&self, id: &str) -> Result<Option<EnvironmentInfo>, StoreError> {
        let scope = Scope::Environment(id.to_owned());
        Ok(read_scope(&*self.inner.bucket, &scope)?
            .filter(ScopeRecord::is_live)
            .map(|r| EnvironmentInfo {
                id: id.to_owned(),
                created_at_ms: r.created_at_ms,
            }))
    }

    pub fn space(&self, id: &str) -> Result<Option<SpaceInfo>, StoreError> {
        let scope = Scope::Space(id.to_owned());
        Ok(read_scope(&*self.inner.bucket, &scope)?
            .filter(ScopeRecord::is_live)
            .map(|r| space_info(id, r)))
    }

    pub fn list_environments(&self) -> Result<Vec<EnvironmentInfo>, StoreError> {
        Ok(scan_scopes(&*self.inner.bucket, layout::ENV_PREFIX)?
            .into_iter()
            .filter(|(_, r)| r.is_live())
            .map(|(scope, r)| EnvironmentInfo {
                id: scope.id().to_owned(),
                created_at_ms: r.created_at_ms,
            })
            .collect())
    }

    pub fn list_spaces(&self, environment: Option<&str>) -> Result<Vec<SpaceInfo>, StoreError> {
        if let Some(env) = environment {
            self.require_scope(&Scope::Environment(env.to_owned()))?;
        }
        Ok(scan_scopes(&*self.inner.bucket, layout::SPACE_PREFIX)?
            .into_iter()
            .filter(|(_, r)| r.is_live())
            .map(|(scope, r)| space_info(scope.id(), r))
            .filter(|info| environment.is_none_or(|e| e == info.environment))
            .collect())
    }

    /// Errors unless the environment or space `scope` names exists (and is
    /// not being deleted).
    pub fn require_scope(&self, scope: &Scope) -> Result<(), StoreError> {
        if is_live(&*self.inner.bucket, scope)? {
            Ok(())
        } else {
            Err(StoreError::unknown(scope))
        }
    }

    /// Errors unless `environment` exists and `space`, if given, belongs to
    /// it: the one membership check, made by every event before dispatch,
    /// every deploy and every scoped API call. Answers from memory once a
    /// scope has been found.
    pub fn check_scope(&self, environment: &str, space: Option<&str>) -> Result<(), StoreError> {
        self.inner.sync.catch_up(&self.inner)?;
        if !read_lock(&self.inner.known)
            .environments
            .contains(environment)
        {
            let seen = read_lock(&self.inner.known).generation;
            self.require_scope(&Scope::Environment(environment.to_owned()))?;
            #[cfg(test)]
            crate::test_hooks::hit(crate::test_hooks::Point::EnvironmentFound);
            self.remember(seen, |k| {
                k.environments.insert(environment.to_owned());
            });
        }
        match space {
            Some(space) => self.require_space_in(space, environment),
            None => Ok(()),
        }
    }

    pub(crate) fn require_space_in(
        &self,
        space: &str,
        environment: &str,
    ) -> Result<(), StoreError> {
        let known = read_lock(&self.inner.known)
            .spaces
            .get(space)
            .is_some_and(|e| e == environment);
        if known {
            return Ok(());
        }
        let seen = read_lock(&self.inner.known).generation;
        let scope = Scope::Space(space.to_owned());
        let Some(rec) = read_scope(&*self.inner.bucket, &scope)?.filter(ScopeRecord::is_live)
        else {
            return Err(StoreError::UnknownSpace(space.to_owned()));
        };
        if rec.environment.as_deref() != Some(environment) {
            return Err(StoreError::SpaceNotInEnvironment {
                space: space.to_owned(),
                environment: environment.to_owned(),
            });
        }
        self.remember(seen, |k| {
            k.spaces.insert(space.to_owned(), environment.to_owned());
        });
        Ok(())
    }

    /// Adds to the known scopes what was read live after generation
    /// `seen`, unless a scope was forgotten since (checked under the lock
    /// the watch forgets under): a mark that landed after the read is then
    /// either already forgotten, and the add refused, or forgotten after
    /// the add, taking it out again.
    fn remember(&self, seen: u64, add: impl FnOnce(&mut KnownScopes)) {
        let mut known = write_lock(&self.inner.known);
        if known.generation == seen {
            add(&mut known);
        }
    }
}

fn space_info(id: &str, rec: ScopeRecord) -> SpaceInfo {
    SpaceInfo {
        id: id.to_owned(),
        environment: rec.environment.unwrap_or_default(),
        created_at_ms: rec.created_at_ms,
    }
}

pub(crate) fn utf8(bytes: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::corrupt(format!("{what} is not UTF-8")))
}
