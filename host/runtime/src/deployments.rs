//! The live deployments, indexed the way dispatch reads them.
//!
//! Every event needs the deployments of its own environment, in name order.
//! Scanning every deployment and sorting the matches made an event's cost
//! grow with the deployments of *all* environments (`keyhole-bench`,
//! "keyhole, arena-reader, 1,000 deployed elsewhere"). Here each environment's deployments are kept in
//! name order, so an event looks at its own environment's only and sorts
//! nothing. Deploys and undeploys, which are rare, pay for the ordering.

use std::collections::HashMap;
use std::sync::Arc;

use crate::registry::Loaded;

#[derive(Default)]
pub(crate) struct Deployments {
    by_name: HashMap<String, Arc<Loaded>>,
    /// Each environment's deployments, sorted by name; no empty lists.
    by_environment: HashMap<Arc<str>, Vec<Arc<Loaded>>>,
}

impl Deployments {
    /// Adds `loaded`, replacing the deployment of the same name (which may
    /// have been in another environment).
    pub(crate) fn insert(&mut self, loaded: Arc<Loaded>) {
        let name = loaded.record.spec.name.clone();
        self.remove(&name);
        let list = self
            .by_environment
            .entry(loaded.environment.clone())
            .or_default();
        let at = list
            .binary_search_by(|d| d.record.spec.name.as_str().cmp(&name))
            .unwrap_or_else(|at| at);
        list.insert(at, loaded.clone());
        self.by_name.insert(name, loaded);
    }

    /// Removes the deployment called `name`, if there is one.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<Loaded>> {
        let old = self.by_name.remove(name)?;
        if let Some(list) = self.by_environment.get_mut(&old.environment) {
            list.retain(|d| d.record.spec.name != name);
            if list.is_empty() {
                self.by_environment.remove(&old.environment);
            }
        }
        Some(old)
    }

    /// The deployments of `environment`, by name.
    pub(crate) fn in_environment(&self, environment: &str) -> &[Arc<Loaded>] {
        self.by_environment
            .get(environment)
            .map_or(&[], Vec::as_slice)
    }

    /// Every deployment, in no particular order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        self.by_name.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}
