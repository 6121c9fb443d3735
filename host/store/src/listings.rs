//! Listing secrets: one scope's, one secret's, or the merged view a
//! listener sees. Names, provenance, versions, times and topic bindings
//! only: a listing has no field that could hold a value.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::layout;
use crate::model::{EffectiveMeta, Provenance, Scope, SecretMeta};
use crate::open::SecretStore;
use crate::records::{self, Current};
use crate::scopes::utf8;
use crate::validate::validate_name;

impl SecretStore {
    /// Metadata of the secrets of exactly this scope, by name.
    pub fn list_secrets(&self, scope: &Scope) -> Result<Vec<SecretMeta>, StoreError> {
        self.require_scope(scope)?;
        let prefix = layout::secrets_of(scope);
        let mut out = Vec::new();
        for (k, e) in self.inner.bucket.scan(&prefix)? {
            let Current::Live(rec) = records::decode_current(&e.value)? else {
                continue; // deleted
            };
            out.push(SecretMeta {
                scope: scope.clone(),
                name: utf8(&k[prefix.len()..], "secret name")?,
                version: rec.version,
                created_at_ms: rec.created_at_ms,
                updated_at_ms: rec.updated_at_ms,
                topics: rec.topics,
            });
        }
        Ok(out)
    }

    /// Metadata of one secret of exactly this scope (no inheritance):
    /// [`StoreError::NotFound`] if it has none of that name.
    pub fn secret_meta(&self, scope: &Scope, name: &str) -> Result<SecretMeta, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let not_found = || StoreError::NotFound {
            scope: scope.clone(),
            name: name.to_owned(),
        };
        let entry = self
            .inner
            .bucket
            .get(&layout::secret(scope, name))?
            .ok_or_else(not_found)?;
        let Current::Live(rec) = records::decode_current(&entry.value)? else {
            return Err(not_found());
        };
        Ok(SecretMeta {
            scope: scope.clone(),
            name: name.to_owned(),
            version: rec.version,
            created_at_ms: rec.created_at_ms,
            updated_at_ms: rec.updated_at_ms,
            topics: rec.topics,
        })
    }

    /// The merged view a listener in `environment` (and `space`) sees.
    pub fn list_effective(
        &self,
        environment: &str,
        space: Option<&str>,
    ) -> Result<Vec<EffectiveMeta>, StoreError> {
        self.check_scope(environment, space)?;
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
}
