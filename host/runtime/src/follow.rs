//! Cluster mode: applying deploys and undeploys made on other hosts.
//!
//! A thread watches the shared `deployments` bucket; for each change, the
//! name's current record is read and the index made to match it, so
//! changes applied out of order or twice still end in the bucket's state.
//!
//! A change that fails to apply (the backend unreachable, a module that
//! cannot be fetched or compiled yet, a record this host cannot read) is
//! tried again for that name alone, with a growing pause (0.5 s doubling
//! to 30 s), while every other name's changes go on being applied: one
//! name this host can never apply must not hold back an undeploy of
//! another. Until it applies, this host does not run the listener's older
//! version (the cluster no longer has it: it may hold grants since taken
//! away), and it is *behind*: after each step the follower publishes what
//! it has not applied and how far through the bucket it has gone
//! (`unapplied.rs`), which the event queue reads to hand back the events
//! that may go to a listener not applied here rather than acknowledge them
//! without it. A watch that fails is opened again, and every name synced
//! after.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use keyhole_kv::Change;

use crate::deploy::Deployment;
use crate::deploy_record;
use crate::deployments::{Deployments, ReadyDeployment};
use crate::error::RuntimeError;
use crate::runtime::{Inner, Runtime};
use crate::unapplied::Unready;

/// How long the follower waits for a change before checking whether the
/// runtime is still there, and the first pause before a retry.
const POLL: Duration = Duration::from_millis(500);
/// The longest pause between retries of one name.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// When to try something that failed again.
#[derive(Clone, Copy, Debug)]
struct Retry {
    tries: u32,
    at: Instant,
}

impl Retry {
    fn now() -> Self {
        Retry {
            tries: 0,
            at: Instant::now(),
        }
    }

    /// The next try after one more failure.
    fn failed(previous: Option<Retry>) -> Self {
        let tries = previous.map_or(0, |r| r.tries) + 1;
        let pause = POLL
            .saturating_mul(1 << tries.saturating_sub(1).min(6))
            .min(MAX_PAUSE);
        Retry {
            tries,
            at: Instant::now() + pause,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// A change that could not be applied: why, and the listener's record
/// when it could be read.
struct NotApplied {
    error: RuntimeError,
    record: Option<Box<Deployment>>,
}

impl From<RuntimeError> for NotApplied {
    fn from(error: RuntimeError) -> Self {
        NotApplied {
            error,
            record: None,
        }
    }
}

/// A watched change of one name.
#[derive(Clone, Copy)]
struct Watched {
    revision: u64,
    /// A put (else a delete).
    put: bool,
}

impl Watched {
    fn of(change: &Change) -> Self {
        Watched {
            revision: change.revision(),
            put: matches!(change, Change::Put { .. }),
        }
    }
}

/// A name whose last change failed to apply.
struct Failing {
    retry: Retry,
    /// The change that failed, retried against the same revision.
    watched: Option<Watched>,
    /// What the queue may know of it (`unapplied.rs`).
    unready: Option<Arc<Unready>>,
}

/// What this host has not applied yet.
#[derive(Default)]
struct Behind {
    names: BTreeMap<String, Failing>,
    /// Every name, after missed changes (a watch opened again).
    all: Option<Retry>,
    /// The revision syncing every name brings this host to.
    all_through: u64,
}

impl Behind {
    /// Every name is to be synced: changes up to `revision` were missed.
    fn resync(&mut self, revision: u64) {
        self.all = Some(Retry::now());
        self.all_through = self.all_through.max(revision);
    }

    /// Records how applying `name` (after `watched`) went.
    fn applied(&mut self, name: &str, watched: Option<Watched>, result: Result<(), NotApplied>) {
        match result {
            Ok(()) => {
                self.names.remove(name);
            }
            Err(NotApplied { error, record }) => {
                let retry = Retry::failed(self.names.get(name).map(|f| f.retry));
                tracing::warn!(
                    listener = name,
                    "applying a deployment change from another host: {error}; trying again in {:?}",
                    retry.at.saturating_duration_since(Instant::now())
                );
                let unready = record.and_then(|r| Unready::new(*r)).map(Arc::new);
                let failing = Failing {
                    retry,
                    watched,
                    unready,
                };
                self.names.insert(name.to_owned(), failing);
            }
        }
    }
}

/// What syncing one name does to the index.
enum Apply {
    Same,
    Remove,
    Insert(Box<ReadyDeployment>),
}

/// Starts the thread that applies other hosts' deploys and undeploys.
///
/// `history`: the newest change written before the index was loaded. The
/// changes up to it, replayed, are synced to the bucket's state with no
/// floor (a put of a name deleted since is not a lagging read).
pub(crate) fn follow_deployments(runtime: &Runtime, history: u64) -> Result<(), RuntimeError> {
    let first = runtime.inner.deployment_records.watch(0)?;
    let weak: Weak<Inner> = Arc::downgrade(&runtime.inner);
    std::thread::Builder::new()
        .name("keyhole-deploy-follow".into())
        .spawn(move || {
            let mut watch = Some(first);
            let mut behind = Behind::default();
            loop {
                let change = match watch.as_mut().map(|w| w.next_timeout(POLL)) {
                    Some(Ok(change)) => change,
                    Some(Err(e)) => {
                        tracing::warn!("watching deployments: {e}; watching again");
                        watch = None;
                        std::thread::sleep(POLL);
                        None
                    }
                    None => None,
                };
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let runtime = Runtime { inner };
                let followed = &runtime.inner.followed;
                if watch.is_none() {
                    let records = &runtime.inner.deployment_records;
                    let from = records.revision();
                    match records.watch(from) {
                        Ok(w) => {
                            watch = Some(w);
                            behind.resync(from);
                        }
                        Err(e) => {
                            // Not at once again: a backend that fails fast
                            // would have this thread spin.
                            tracing::warn!("watching deployments again: {e}");
                            std::thread::sleep(POLL);
                        }
                    }
                }
                if let Some(change) = &change {
                    // Behind while it compiles, too.
                    followed.applying();
                    match change.key() {
                        Some(name) => {
                            let name = String::from_utf8_lossy(name);
                            let watched =
                                Some(Watched::of(change)).filter(|w| w.revision > history);
                            behind.applied(&name, watched, runtime.sync_guarded(&name, watched));
                        }
                        // Changes were missed (the watch fell behind):
                        // any name may have changed.
                        None => {
                            tracing::warn!("missed deployment changes; syncing every listener");
                            behind.resync(change.revision());
                        }
                    }
                }
                runtime.catch_up(&mut behind);
                followed.publish(
                    watch.is_none() || behind.all.is_some(),
                    behind.names.values().map(|f| &f.unready),
                );
                // Only once what failed is published: a worker that sees
                // this revision reached then sees what is not applied.
                if let Some(change) = change.as_ref().filter(|c| c.key().is_some()) {
                    followed.through(change.revision());
                }
                if behind.all.is_none() {
                    followed.through(behind.all_through);
                }
            }
        })
        .map_err(|e| RuntimeError::io(std::path::Path::new("keyhole-deploy-follow"), e))?;
    Ok(())
}

impl Failing {
    /// The floor its retry is held to: a replica lags by moments, so after
    /// [`FLOOR_TRIES`] failures (about 15 s) the floor is dropped and the
    /// state read is taken as it is. Else a put whose delete this host
    /// missed (a watch opened again) would read as lagging for ever, and
    /// hold back every event.
    fn floor(&self) -> Option<Watched> {
        self.watched.filter(|_| self.retry.tries < FLOOR_TRIES)
    }
}

/// Failures of one name after which its floor is dropped (see
/// [`Failing::floor`]).
const FLOOR_TRIES: u32 = 5;

impl Runtime {
    /// Retries what is due: every name after missed changes, then each
    /// name that failed.
    fn catch_up(&self, behind: &mut Behind) {
        if let Some(retry) = behind.all.filter(Retry::due) {
            match self.deployment_names() {
                Ok(names) => {
                    behind.all = None;
                    // The index changes below: a reader must not take
                    // this step for the last one published.
                    self.inner.followed.applying();
                    // Every failing name too (deleted since its change, it
                    // is in neither the bucket nor the index), with its
                    // floor: the listing may come from a lagging replica.
                    let mut all: Vec<(String, Option<Watched>)> = behind
                        .names
                        .iter()
                        .map(|(n, f)| (n.clone(), f.floor()))
                        .collect();
                    all.extend(
                        names
                            .into_iter()
                            .filter(|n| !behind.names.contains_key(n))
                            .map(|n| (n, None)),
                    );
                    for (name, watched) in all {
                        behind.applied(&name, watched, self.sync_guarded(&name, watched));
                    }
                }
                Err(e) => {
                    let next = Retry::failed(Some(retry));
                    tracing::warn!("listing deployments to catch up: {e}; trying again");
                    behind.all = Some(next);
                }
            }
        }
        let due: Vec<(String, Option<Watched>)> = behind
            .names
            .iter()
            .filter(|(_, f)| f.retry.due())
            .map(|(n, f)| (n.clone(), f.floor()))
            .collect();
        for (name, watched) in due {
            behind.applied(&name, watched, self.sync_guarded(&name, watched));
        }
    }

    /// [`Runtime::sync_deployment`], a panic in it (a host bug, in
    /// compiling say) taken as a failure to retry: the thread that
    /// follows every other name's changes must not end with it.
    fn sync_guarded(&self, name: &str, watched: Option<Watched>) -> Result<(), NotApplied> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.sync_deployment(name, watched)
        }))
        .unwrap_or_else(|_| {
            // As any failure: the older version stops running.
            let mut index = self
                .inner
                .deployments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            self.stop_older_version(&mut index, name);
            Err(
                RuntimeError::Engine(format!("applying listener {name} panicked (a host bug)"))
                    .into(),
            )
        })
    }

    /// Every name in the bucket or the index.
    fn deployment_names(&self) -> Result<Vec<String>, RuntimeError> {
        let mut names: Vec<String> = self
            .inner
            .deployment_records
            .scan(b"")?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect();
        names.extend(
            self.inner
                .deployments
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .all()
                .map(|d| d.name.to_string()),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Makes the index's deployment `name` match its record in the bucket.
    /// A record that cannot be applied takes the older version out of the
    /// index (the cluster no longer has it).
    /// `watched`: the change that brought `name` here, when it is one:
    /// a read that returns an older state than it (a lagging replica) is a
    /// failure to retry, not the state to apply.
    fn sync_deployment(&self, name: &str, watched: Option<Watched>) -> Result<(), NotApplied> {
        let _writing = self.writing();
        let stored =
            (self.inner.deployment_records.get(name.as_bytes())).map_err(RuntimeError::from)?;
        let current = self
            .inner
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|d| d.record.clone());
        // Older than the change watched (a lagging replica): a failure
        // like any other, so the older version stops running too.
        let lagging = watched.filter(|w| match &stored {
            Some(entry) => entry.revision < w.revision,
            None => w.put,
        });
        let applied = match (stored, current) {
            _ if let Some(w) = lagging => Err(NotApplied::from(RuntimeError::from(
                keyhole_kv::KvError::Backend(format!(
                    "reading listener {name} gave an older state than the change at revision {} (a lagging replica?)",
                    w.revision
                )),
            ))),
            (None, None) => return Ok(()),
            (None, Some(_)) => Ok(Apply::Remove),
            (Some(e), current) => match deploy_record::decode(&e.value) {
                Err(error) => Err(NotApplied {
                    error,
                    record: deploy_record::decode_routing(&e.value).map(Box::new),
                }),
                Ok(record) if current.as_ref() == Some(&record) => Ok(Apply::Same),
                Ok(record) => self
                    .inner
                    .artifacts
                    .load(&record.module_hash)
                    .and_then(|component| self.prepare(record.clone(), &component))
                    .map(|ready| Apply::Insert(Box::new(ready)))
                    .map_err(|error| NotApplied {
                        error,
                        record: Some(Box::new(record)),
                    }),
            },
        };
        let mut index = self
            .inner
            .deployments
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let changed = || self.inner.followed.changes.fetch_add(1, Ordering::AcqRel);
        match applied {
            Ok(Apply::Same) => {}
            Ok(Apply::Insert(ready)) => {
                index.insert(Arc::from(ready));
                changed();
                tracing::info!(listener = name, "deployed on another host");
            }
            Ok(Apply::Remove) => {
                index.remove(name);
                changed();
                tracing::info!(listener = name, "undeployed on another host");
            }
            Err(e) => {
                self.stop_older_version(&mut index, name);
                return Err(e);
            }
        }
        Ok(())
    }

    /// A change to `name` failed to apply: its older version, if `index`
    /// has it, stops running (the cluster no longer has it).
    fn stop_older_version(&self, index: &mut Deployments, name: &str) {
        if index.remove(name).is_some() {
            self.inner.followed.changes.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                listener = name,
                "not running this listener's older version until its new one applies"
            );
        }
    }
}
