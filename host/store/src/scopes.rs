//! Environments and spaces: creating, finding and listing them, and the one
//! check of scope membership ("this space belongs to this environment")
//! that the store, the runtime and the API all use ([`SecretStore::check_scope`]).
//!
//! Scopes are never deleted or moved today, so once found they are
//! remembered ([`KnownScopes`]) and the per-event and per-read checks skip
//! the backend. Should that change, the watch already forgets deleted ones
//! (`cache_sync.rs`).

use std::collections::{HashMap, HashSet};

use keyhole_kv::Cas;

use crate::error::{Preview, StoreError};
use crate::layout;
use crate::locks::{read_lock, write_lock};
use crate::model::{EnvironmentInfo, Scope, SpaceInfo, now_ms};
use crate::open::SecretStore;
use crate::records::{self, EnvRecord, SpaceRecord};
use crate::validate::validate_id;

/// Environments found to exist, and each space found with its environment.
#[derive(Default)]
pub(crate) struct KnownScopes {
    environments: HashSet<String>,
    spaces: HashMap<String, String>,
}

impl KnownScopes {
    pub(crate) fn forget_environment(&mut self, id: &[u8]) {
        if let Ok(id) = std::str::from_utf8(id) {
            self.environments.remove(id);
        }
    }

    pub(crate) fn forget_space(&mut self, id: &[u8]) {
        if let Ok(id) = std::str::from_utf8(id) {
            self.spaces.remove(id);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.environments.clear();
        self.spaces.clear();
    }
}

impl SecretStore {
    pub fn create_environment(&self, id: &str) -> Result<EnvironmentInfo, StoreError> {
        validate_id(id)?;
        let created_at_ms = now_ms();
        let rec = records::encode(&EnvRecord { created_at_ms });
        if self.inner.bucket.create(&layout::env(id), &rec)? == Cas::Conflict {
            return Err(StoreError::AlreadyExists(format!(
                "environment {}",
                Preview(id)
            )));
        }
        self.flush()?;
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
        if self.inner.bucket.create(&layout::space(id), &rec)? == Cas::Conflict {
            return Err(StoreError::AlreadyExists(format!("space {}", Preview(id))));
        }
        self.flush()?;
        Ok(SpaceInfo {
            id: id.to_owned(),
            environment: environment.to_owned(),
            created_at_ms,
        })
    }

    pub fn environment(&self, id: &str) -> Result<Option<EnvironmentInfo>, StoreError> {
        validate_id(id)?;
        let Some(entry) = self.inner.bucket.get(&layout::env(id))? else {
            return Ok(None);
        };
        let rec: EnvRecord = records::decode(&entry.value, "environment record")?;
        Ok(Some(EnvironmentInfo {
            id: id.to_owned(),
            created_at_ms: rec.created_at_ms,
        }))
    }

    pub fn space(&self, id: &str) -> Result<Option<SpaceInfo>, StoreError> {
        validate_id(id)?;
        let Some(entry) = self.inner.bucket.get(&layout::space(id))? else {
            return Ok(None);
        };
        space_info(id.as_bytes(), &entry.value).map(Some)
    }

    pub fn list_environments(&self) -> Result<Vec<EnvironmentInfo>, StoreError> {
        let mut out = Vec::new();
        for (k, e) in self.inner.bucket.scan(layout::ENV_PREFIX)? {
            let rec: EnvRecord = records::decode(&e.value, "environment record")?;
            out.push(EnvironmentInfo {
                id: utf8(&k[layout::ENV_PREFIX.len()..], "environment id")?,
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
        for (k, e) in self.inner.bucket.scan(layout::SPACE_PREFIX)? {
            let info = space_info(&k[layout::SPACE_PREFIX.len()..], &e.value)?;
            if environment.is_none_or(|e| e == info.environment) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Errors unless the environment or space `scope` names exists.
    pub fn require_scope(&self, scope: &Scope) -> Result<(), StoreError> {
        let (key, missing) = match scope {
            Scope::Environment(id) => {
                validate_id(id)?;
                (layout::env(id), StoreError::UnknownEnvironment(id.clone()))
            }
            Scope::Space(id) => {
                validate_id(id)?;
                (layout::space(id), StoreError::UnknownSpace(id.clone()))
            }
        };
        match self.inner.bucket.get(&key)? {
            Some(_) => Ok(()),
            None => Err(missing),
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
        validate_id(space)?;
        let Some(entry) = self.inner.bucket.get(&layout::space(space))? else {
            return Err(StoreError::UnknownSpace(space.to_owned()));
        };
        let rec: SpaceRecord<'_> = records::decode(&entry.value, "space record")?;
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
}

fn space_info(id: &[u8], bytes: &[u8]) -> Result<SpaceInfo, StoreError> {
    let rec: SpaceRecord<'_> = records::decode(bytes, "space record")?;
    Ok(SpaceInfo {
        id: utf8(id, "space id")?,
        environment: rec.environment.to_owned(),
        created_at_ms: rec.created_at_ms,
    })
}

pub(crate) fn utf8(bytes: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::corrupt(format!("{what} is not UTF-8")))
}
