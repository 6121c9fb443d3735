//! Cluster mode: what this host has not applied of other hosts' deploys
//! and undeploys, as the event queue asks about it.
//!
//! The follower (`follow.rs`) applies changes and retries what fails; after
//! each step it publishes here what the queue's workers read:
//!
//! - whether this host is behind at all (one atomic load per event);
//! - which listeners it has not applied, each with its record when the
//!   record could be read (environment, space, topic filters), so that an
//!   event none of them would receive is acknowledged as usual. One
//!   listener a host can never apply (a newer host's record during a
//!   rolling upgrade, a module it cannot compile) then holds back only the
//!   events that listener would receive, not every event the host takes.
//!   What is unknown (the watch down, changes missed, a record this host
//!   cannot read, a change being applied now) holds back every event;
//! - how far through the bucket's changes it has gone: the revision of the
//!   last change applied, or listed here as not applied. An event carries
//!   the accepting host's view of the deployments (its bucket revision),
//!   and a worker waits until this host has gone as far before it chooses
//!   the event's listeners: a deploy answered on one host is not missed by
//!   an event sent right after it and run on another;
//! - how many changes it has applied: a run during which one was applied
//!   may have chosen its listeners without it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::deploy::Deployment;
use crate::dispatch::receives;
use crate::error::RuntimeError;
use crate::event::Event;
use crate::runtime::Runtime;
use crate::topics::{Topic, TopicFilter};

/// How many times [`Runtime::with_unapplied`] reads, and its pause between.
const STEP_TRIES: u32 = 10;
const STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The follower's progress, shared with the runtime's users.
#[derive(Default)]
pub(crate) struct Followed {
    /// Some change is not applied here (any of [`Unapplied`]).
    behind: AtomicBool,
    /// Changes from other hosts applied to the index.
    pub(crate) changes: AtomicU64,
    /// The revision of the last change applied or listed in `unapplied`.
    through: AtomicU64,
    /// Bumped at each step of the follower (`applying`, `publish`): a
    /// reader of both the index and `unapplied` that saw it unchanged saw
    /// them as of one step.
    steps: AtomicU64,
    unapplied: Mutex<Unapplied>,
}

/// A listener this host has not applied, as its record describes it.
pub(crate) struct Unready {
    pub(crate) record: Deployment,
    topics: TopicFilter,
}

impl Unready {
    /// `None` when its topic filters do not compile here (treated as
    /// unknown: it may receive anything).
    pub(crate) fn new(record: Deployment) -> Option<Self> {
        let topics = TopicFilter::new(&record.spec.topics).ok()?;
        Some(Unready { record, topics })
    }

    fn receives(&self, event: &Event) -> bool {
        let spec = &self.record.spec;
        spec.environment == event.environment
            && receives(
                spec.space.as_deref(),
                &self.topics,
                event,
                &Topic::new(&event.topic),
            )
    }
}

/// What is not applied here.
#[derive(Default)]
struct Unapplied {
    /// Any listener may be: the watch is down, changes were missed, a
    /// record could not be read, or a change is being applied now.
    unknown: bool,
    /// A change is being applied now (the index may change any moment).
    applying: bool,
    listeners: Vec<Arc<Unready>>,
}

impl Followed {
    /// A change is being applied: every event may miss it until
    /// [`Followed::publish`].
    pub(crate) fn applying(&self) {
        let mut unapplied = self.lock();
        unapplied.unknown = true;
        unapplied.applying = true;
        // Under the lock, as in `publish`.
        self.steps.fetch_add(1, Ordering::AcqRel);
        self.behind.store(true, Ordering::Release);
    }

    /// What is not applied now: `unknown` as [`Unapplied`] says, and each
    /// listener that failed to apply (`None`: its record is unreadable).
    pub(crate) fn publish<'a>(
        &self,
        unknown: bool,
        failed: impl Iterator<Item = &'a Option<Arc<Unready>>>,
    ) {
        let mut now = Unapplied {
            unknown,
            applying: false,
            listeners: Vec::new(),
        };
        for listener in failed {
            match listener {
                Some(l) => now.listeners.push(l.clone()),
                None => now.unknown = true,
            }
        }
        let behind = now.unknown || !now.listeners.is_empty();
        let mut unapplied = self.lock();
        *unapplied = now;
        // Under the lock: a reader that saw the new set sees the new step.
        self.steps.fetch_add(1, Ordering::AcqRel);
        self.behind.store(behind, Ordering::Release);
    }

    /// Every change up to `revision` is applied or listed (call after
    /// [`Followed::publish`]).
    pub(crate) fn through(&self, revision: u64) {
        self.through.fetch_max(revision, Ordering::AcqRel);
    }

    /// What is not applied now, of the listeners `event` would go to.
    fn receiving(&self, event: &Event) -> Unapplied {
        if !self.behind.load(Ordering::Acquire) {
            return Unapplied::default();
        }
        let unapplied = self.lock();
        let listeners = unapplied
            .listeners
            .iter()
            .filter(|l| l.receives(event))
            .cloned()
            .collect();
        Unapplied {
            listeners,
            unknown: unapplied.unknown,
            applying: unapplied.applying,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unapplied> {
        self.unapplied.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Runtime {
    /// Cluster mode: whether deployment changes made on other hosts are
    /// not all applied here yet (`follow.rs`). Always `false` on a single
    /// host.
    pub fn deployments_behind(&self) -> bool {
        self.inner.followed.behind.load(Ordering::Acquire)
    }

    /// Cluster mode: whether `event` may go to a listener whose latest
    /// deploy or undeploy (made on another host) is not applied here and
    /// that has no run of it recorded (by a host that applied it), so that
    /// a run of the event here may have missed that listener. Always
    /// `false` on a single host.
    pub fn may_miss_listeners(&self, event: &Event) -> bool {
        let Unapplied {
            listeners, unknown, ..
        } = self.inner.followed.receiving(event);
        unknown
            || listeners.iter().any(|l| {
                // Unknown when the run log cannot say: not recorded.
                !(self.inner.runs)
                    .recorded(&event.id, &l.record.spec.name)
                    .unwrap_or(false)
            })
    }

    /// Cluster mode: how many times a change made on another host has
    /// been applied here. An event whose run saw this number change may
    /// have missed a listener (chosen before the change applied), even
    /// if [`Runtime::deployments_behind`] is `false` again by its end.
    pub fn followed_changes(&self) -> u64 {
        self.inner.followed.changes.load(Ordering::Acquire)
    }

    /// The newest revision of the deployments this host has seen (its own
    /// deploys, and others' once watched): the accepting host stamps an
    /// event with it, for [`Runtime::deployments_applied`] on the host that
    /// runs it.
    pub fn deployments_seen(&self) -> u64 {
        self.inner.deployment_records.revision()
    }

    /// Cluster mode: how far this host has followed the deployments: every
    /// change up to this revision is applied here or known not to be
    /// ([`Runtime::may_miss_listeners`]). 0 on a single host.
    pub fn deployments_applied(&self) -> u64 {
        self.inner.followed.through.load(Ordering::Acquire)
    }

    /// What `read` reads of the index, with the unapplied listeners
    /// `event` would go to and whether there may be others this host knows
    /// nothing of, all as of one step of the follower (for `give_up`):
    /// else a listener applied, or failing, between the two reads could be
    /// in neither. Read again (a few times, briefly) while the follower
    /// moves or is applying a change.
    pub(crate) fn with_unapplied<T>(
        &self,
        event: &Event,
        read: impl Fn() -> Result<T, RuntimeError>,
    ) -> Result<(T, Vec<Arc<Unready>>, bool), RuntimeError> {
        let followed = &self.inner.followed;
        let mut unknown_twice = false;
        for tries in 1.. {
            let before = followed.steps.load(Ordering::Acquire);
            let applied = read()?;
            let now = followed.receiving(event);
            let still = before == followed.steps.load(Ordering::Acquire);
            // Unknown at two steady reads, no change being applied: it
            // will not clear by waiting (an unreadable record, say).
            let steady_unknown = still && now.unknown && !now.applying;
            let settled = still && (!now.unknown || (steady_unknown && unknown_twice));
            if settled || tries >= STEP_TRIES {
                return Ok((applied, now.listeners, now.unknown));
            }
            unknown_twice = steady_unknown;
            std::thread::sleep(STEP_PAUSE);
        }
        unreachable!("the loop returns by its last try")
    }
}
