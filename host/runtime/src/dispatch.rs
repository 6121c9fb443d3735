//! Dispatch: an event goes to every matching deployment, each run in a fresh,
//! limited instance (`run/`), and each run is recorded.
//!
//! A deployment matches an event when the environments are equal, the
//! deployment is either unbound or bound to the event's space, and one of its
//! topic globs matches.
//!
//! A run is an async call on a fiber, executed by the task that emitted the
//! event: one matching listener runs inline; several are shared out over
//! one lane per worker thread (the emitting task, and the others on the
//! blocking pool), each lane taking the next run as it goes, at most
//! `max_concurrent_runs` at a time in all. The wall-clock deadline is
//! checked at each epoch tick, where a guest still within it yields to
//! tokio so it never holds a worker thread for long.
//!
//! While the store is sealed no event is accepted (`check_unsealed`).
//!
//! `emit_blocking` callers own their thread, so there a listener that
//! imports nothing but keyhole's interfaces is called synchronously, without
//! a fiber (about 1 µs less per event in `keyhole-bench`); WASI listeners
//! still run async, as their host calls need the runtime (`run/call.rs`).

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use smallvec::SmallVec;

pub use crate::event::{Event, MAX_PAYLOAD_BYTES};
pub use crate::run::OUTCOME_TEXT_LIMIT;

use keyhole_store::StoreError;

use crate::deployments::ReadyDeployment;
use crate::error::RuntimeError;
use crate::lanes::{Pull, blocking_lanes, shares};
use crate::run::Caller;
use crate::runs::RunRecord;
use crate::runtime::Runtime;
use crate::topics::{Topic, TopicFilter};

/// The deployments an event goes to, in name order: inline for the
/// common event that reaches a few.
pub(crate) type Targets = SmallVec<[Arc<ReadyDeployment>; 2]>;

/// Whether a deployment of `event`'s environment, bound to `space` (or
/// unbound) with `topics`, receives it (`topic`: the event's, prepared).
pub(crate) fn receives(
    space: Option<&str>,
    topics: &TopicFilter,
    event: &Event,
    topic: &Topic<'_>,
) -> bool {
    space.is_none_or(|s| Some(s) == event.space.as_deref()) && topics.matches(topic)
}

impl Runtime {
    /// Checks an event against the store and the payload rules.
    pub fn validate_event(&self, event: &Event) -> Result<(), RuntimeError> {
        event.check(self.store())
    }

    /// What both `emit`s do first: validate the event, refuse it while the
    /// store is sealed, count it, and find the deployments it goes to.
    pub(crate) fn accept(&self, event: &Event) -> Result<Targets, RuntimeError> {
        let targets = self.unrun_targets(event)?;
        self.inner.metrics.event();
        Ok(targets)
    }

    /// [`Runtime::accept`] without counting the event: the checks, and the
    /// deployments it goes to that have no run of it yet.
    pub(crate) fn unrun_targets(&self, event: &Event) -> Result<Targets, RuntimeError> {
        self.validate_event(event)?;
        self.check_unsealed()?;
        let mut targets = self.matching(event);
        // A redelivered event runs only what has no record yet.
        if event.delivery > 1 {
            let mut kept = Targets::new();
            for t in targets {
                if !self.inner.runs.recorded(&event.id, &t.name)? {
                    kept.push(t);
                }
            }
            targets = kept;
        }
        Ok(targets)
    }

    /// A sealed store (master key missing, wrong or refused) fails every
    /// event up front with [`StoreError::Sealed`]: no listener could read
    /// a secret or have its reads audited, so none runs, rather than each
    /// running into `unavailable`. The state is fixed when the store opens,
    /// so on the hot path this is one branch.
    fn check_unsealed(&self) -> Result<(), RuntimeError> {
        let store = self.store();
        if !store.is_sealed() {
            return Ok(());
        }
        let reason = store.sealed_reason().unwrap_or_default();
        Err(StoreError::Sealed { reason }.into())
    }

    fn matching(&self, event: &Event) -> Targets {
        let map = self
            .inner
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let topic = Topic::new(&event.topic);
        // Already in name order.
        map.in_environment(&event.environment)
            .iter()
            .filter(|d| receives(d.space.as_deref(), &d.topics, event, &topic))
            .cloned()
            .collect()
    }

    /// Dispatches `event` to every matching deployment concurrently and
    /// returns their run records (ordered by listener name).
    ///
    /// The runs this future drives itself (a single listener's, and its
    /// lane of a fan-out) stop if it is dropped, the one under way
    /// unrecorded; spawn the call (as the API does) when dispatch must
    /// outlive its caller.
    pub async fn emit(&self, event: Event) -> Result<Vec<RunRecord>, RuntimeError> {
        let mut targets = self.accept(&event)?;
        if targets.len() <= 1 {
            let Some(target) = targets.pop() else {
                return Ok(Vec::new());
            };
            // The common case runs right here: no task, no thread hop.
            return Ok(vec![
                self.run_permitted(&target, &event, Caller::Async).await?,
            ]);
        }
        // One lane per worker thread (`lanes.rs`).
        let lanes = tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .clamp(1, targets.len());
        let event = Arc::new(event);
        let targets: Arc<[Arc<ReadyDeployment>]> = targets.into_iter().collect();
        let (pure, waiting): (Vec<usize>, Vec<usize>) =
            (0..targets.len()).partition(|&i| targets[i].listener.runs_sync(true));
        // Pure listeners have nothing to wait on: the other lanes run them
        // on the blocking pool, synchronously (no wasmtime fiber per run).
        let pure = Pull::new(pure);
        {
            let (rt, event, targets) = (self.clone(), event.clone(), targets.clone());
            blocking_lanes(&pure, lanes - 1, move |handle, i| {
                handle.block_on(rt.run_permitted(&targets[i], &event, Caller::MayBlock))
            });
        }
        // The others run their share concurrently in one task: a run that
        // computes finishes in its first poll, one that waits (HTTP, its
        // epoch yield) lets the lane's next one start.
        let mut tasks = Vec::with_capacity(lanes);
        for share in shares(&waiting, lanes) {
            let (rt, event, targets) = (self.clone(), event.clone(), targets.clone());
            tasks.push(tokio::spawn(async move {
                let (rt, event, targets) = (&rt, &event, &targets);
                let runs: FuturesUnordered<_> = share
                    .into_iter()
                    .map(|i| async move {
                        (i, rt.run_permitted(&targets[i], event, Caller::Async).await)
                    })
                    .collect();
                runs.collect::<Vec<_>>().await
            }));
        }
        // This task's own lane: a thread woken fewer, and no wait for a lane
        // yet to start. Its runs are async (a spinning guest yields at each
        // epoch tick) and inside this future, like a single listener's.
        while let Some(i) = pure.take() {
            let run = self.run_permitted(&targets[i], &event, Caller::Async).await;
            pure.put(i, run);
        }
        let mut results = pure.all().await;
        for task in tasks {
            let runs = task
                .await
                .map_err(|e| RuntimeError::Engine(format!("run task failed: {e}")))?;
            results.extend(runs);
        }
        // Back in the targets' (listener name) order.
        results.sort_unstable_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, run)| run).collect()
    }

    /// Several events at once (the API's batch), shared out over the lanes
    /// as a fan-out's runs are (`lanes.rs`), each lane running an event's
    /// runs one after another (pure listeners without a fiber off this
    /// task), every run within the `max_concurrent_runs` permits. Each
    /// event's result is what [`Runtime::emit`] would give it, in the order
    /// given.
    pub async fn emit_many(&self, events: Vec<Event>) -> Vec<Result<Vec<RunRecord>, RuntimeError>> {
        let lanes = tokio::runtime::Handle::current().metrics().num_workers();
        let pull = Pull::new((0..events.len()).collect());
        let events: Arc<[Event]> = events.into();
        {
            let (rt, events) = (self.clone(), events.clone());
            blocking_lanes(&pull, lanes.saturating_sub(1), move |handle, i| {
                handle.block_on(rt.emit_in_lane(&events[i], true))
            });
        }
        while let Some(i) = pull.take() {
            pull.put(i, self.emit_in_lane(&events[i], false).await);
        }
        pull.all().await.into_iter().map(|(_, r)| r).collect()
    }

    /// One event of [`Runtime::emit_many`], its runs one after another: on
    /// a lane's blocking thread (`blocking`), or in the calling task.
    async fn emit_in_lane(
        &self,
        event: &Event,
        blocking: bool,
    ) -> Result<Vec<RunRecord>, RuntimeError> {
        let targets = self.accept(event)?;
        let mut records = Vec::with_capacity(targets.len());
        for t in &targets {
            let caller = if blocking && t.listener.runs_sync(true) {
                Caller::MayBlock
            } else {
                Caller::Async
            };
            records.push(self.run_permitted(t, event, caller).await?);
        }
        Ok(records)
    }

    /// One run, once one of the `max_concurrent_runs` permits is free.
    async fn run_permitted(
        &self,
        target: &ReadyDeployment,
        event: &Event,
        caller: Caller,
    ) -> Result<RunRecord, RuntimeError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        self.run(target, event, caller).await
    }

    /// Like [`Runtime::emit`], but for callers outside an async runtime:
    /// runs every matching listener one after another on the calling thread.
    /// For the CLI, tools and benchmarks. Do not call it from within a tokio
    /// runtime (use [`Runtime::emit`] there): it panics when a listener has
    /// to run async, and otherwise blocks a worker for the runs.
    pub fn emit_blocking(&self, event: &Event) -> Result<Vec<RunRecord>, RuntimeError> {
        let targets = self.accept(event)?;
        let rt = self.inner.blocking.get()?;
        let runs = async {
            let mut records = Vec::with_capacity(targets.len());
            for t in &targets {
                records.push(self.run(t, event, Caller::MayBlock).await?);
            }
            Ok(records)
        };
        if !targets.iter().all(|t| t.listener.runs_sync(true)) {
            return rt.block_on(runs);
        }
        // Synchronous runs never wait on anything, so one poll finishes them
        // without `block_on`'s set-up (about 0.2 µs per event). The context
        // is entered anyway, and a run that did wait would still finish.
        let mut runs = std::pin::pin!(runs);
        let polled = {
            let _context = rt.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            runs.as_mut().poll(&mut cx)
        };
        match polled {
            std::task::Poll::Ready(records) => records,
            std::task::Poll::Pending => rt.block_on(runs),
        }
    }
}
