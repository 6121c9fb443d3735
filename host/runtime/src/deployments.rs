//! The live deployments: each one ready to run ([`ReadyDeployment`]), and
//! the index of them the way dispatch reads them ([`Deployments`]).
//!
//! Every event needs the deployments of its own environment, in name order.
//! Scanning every deployment and sorting the matches made an event's cost
//! grow with the deployments of *all* environments (`keyhole-bench`,
//! "keyhole, arena-reader, 1,000 deployed elsewhere"). Here each environment's deployments are kept in
//! name order, so an event looks at its own environment's only and sorts
//! nothing. Deploys and undeploys, which are rare, pay for the ordering.

use foldhash::HashMap;
use std::sync::Arc;

use crate::deploy::Deployment;
use crate::http::AllowedOrigin;
use crate::inject::Rules;
use crate::run::call::Listener;
use crate::secrets::Reader;
use crate::topics::TopicFilter;

/// A deployment ready to run: its stored record, its pre-linked listener,
/// and what each run reads from the spec, prepared once at deploy (compiled
/// topic filters, parsed origins, its read rules and scope ids, checked
/// injection rules).
pub(crate) struct ReadyDeployment {
    pub(crate) record: Deployment,
    pub(crate) listener: Listener,
    pub(crate) topics: TopicFilter,
    /// Linked with `wasi:http` (the spec names origins).
    pub(crate) http: bool,
    /// The origins runs may reach: none unless the grants are bound to
    /// the running module.
    pub(crate) origins: Arc<[AllowedOrigin]>,
    /// The checked `--inject` rules, if the grants are bound to the running
    /// module; `None` without any (the common case, which costs a run
    /// nothing).
    pub(crate) inject: Option<Arc<Rules>>,
    pub(crate) space: Option<Arc<str>>,
    pub(crate) name: Arc<str>,
    /// The deployment as its runs' secret reads see it: its environment
    /// and what `get-secret` may read (`access.rs`).
    pub(crate) reader: Arc<Reader>,
}

#[derive(Default)]
pub(crate) struct Deployments {
    by_name: HashMap<String, Arc<ReadyDeployment>>,
    /// Each environment's deployments, sorted by name; no empty lists.
    by_environment: HashMap<Arc<str>, Vec<Arc<ReadyDeployment>>>,
}

impl Deployments {
    /// Adds `ready`, replacing the deployment of the same name (which may
    /// have been in another environment).
    pub(crate) fn insert(&mut self, ready: Arc<ReadyDeployment>) {
        let name = ready.record.spec.name.clone();
        self.remove(&name);
        let list = self
            .by_environment
            .entry(ready.reader.environment.clone())
            .or_default();
        let at = list
            .binary_search_by(|d| d.record.spec.name.as_str().cmp(&name))
            .unwrap_or_else(|at| at);
        list.insert(at, ready.clone());
        self.by_name.insert(name, ready);
    }

    /// Removes the deployment called `name`, if there is one.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<ReadyDeployment>> {
        let old = self.by_name.remove(name)?;
        if let Some(list) = self.by_environment.get_mut(&old.reader.environment) {
            list.retain(|d| d.record.spec.name != name);
            if list.is_empty() {
                self.by_environment.remove(&old.reader.environment);
            }
        }
        Some(old)
    }

    /// The deployment called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<ReadyDeployment>> {
        self.by_name.get(name)
    }

    /// The deployments of `environment`, by name.
    pub(crate) fn in_environment(&self, environment: &str) -> &[Arc<ReadyDeployment>] {
        self.by_environment
            .get(environment)
            .map_or(&[], Vec::as_slice)
    }

    /// Every deployment, in no particular order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ReadyDeployment>> {
        self.by_name.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}
