//! Setting up a run: the `Store` a fresh instance lives in, before any
//! guest code runs.
//!
//! The store's data is the run's [`RunState`]: the secrets capability
//! scoped to the deployment and the event, the memory and table limits
//! (whose limiter remembers a hit, so the run is recorded as "memory"), and
//! for deployments with an HTTP grant the outbound policy (with its
//! injector, for deployments with injected secrets). The wall-clock
//! deadline is checked at each epoch tick, where a guest still within it
//! yields to tokio (when it runs on a fiber) so it never holds a worker
//! thread for long. The run holds its reservation of the host memory
//! budget (`admit.rs`) until its store is gone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use crate::budget::Reservation;
use crate::deployments::ReadyDeployment;
use crate::event::Event;
use crate::http::HttpCall;
use crate::inject::Injector;
use crate::runtime::Inner;
use crate::sandbox::{Deadline, RunLimits, RunState};
use crate::secrets::SecretsCtx;

/// Who is waiting for a run, which decides how it may execute.
#[derive(Clone, Copy)]
pub(crate) enum Caller {
    /// An async task: the run must yield, so it runs on a fiber.
    Async,
    /// A thread that may block (`emit_blocking`).
    MayBlock,
}

/// A run set up and not yet called.
pub(super) struct Run<'a> {
    /// Dropped (its instance and memory returned to the pool) before
    /// `reservation`: fields drop in order.
    pub(super) store: Store<RunState>,
    /// The outbound requests the run makes, as the HTTP hooks record them
    /// (only with an HTTP grant).
    pub(super) http_calls: Option<Arc<Mutex<Vec<HttpCall>>>>,
    pub(super) started_at_ms: u64,
    pub(super) start: Instant,
    /// Whether the call may block its thread (see `call.rs`).
    pub(super) may_block: bool,
    /// The run's share of the host memory budget, given back after the
    /// store: when `outcome.rs` has taken the store apart, or with the
    /// whole run if it is cancelled.
    pub(super) _reservation: Reservation<'a>,
}

/// A fresh store for `target` handling `event`, limits and deadline set.
pub(super) fn set_up<'a>(
    inner: &Inner,
    target: &ReadyDeployment,
    event: &Event,
    caller: Caller,
    reservation: Reservation<'a>,
) -> Run<'a> {
    let start = Instant::now();
    let started_at_ms = crate::clock::wall_ms(start);
    let spec = &target.record.spec;
    let timeout = Duration::from_millis(spec.limits.timeout_ms);
    let secrets = SecretsCtx {
        host: inner.secrets.clone(),
        reader: target.reader.clone(),
        space: event.space.as_deref().map(Into::into),
        topic: event.topic.as_str().into(),
        event_id: event.id.as_str().into(),
        revealed: smallvec::SmallVec::new(),
        // Grants given to another module: every run says they were not
        // applied (`access.rs`).
        notes: target
            .reader
            .access
            .unbound
            .as_ref()
            .map(|u| vec![u.note.clone()])
            .unwrap_or_default(),
    };
    let limits = RunLimits::new(
        spec.limits.memory_bytes,
        crate::needs::TABLE_ELEMENTS as usize,
    );
    // Only deployments with injections get an injector (and their origins
    // are on the allow-list, so these have an HTTP grant).
    let injector = target
        .inject
        .as_ref()
        .map(|rules| Injector::new(rules.clone(), &secrets));
    // A synchronous call (no fiber) where the caller's thread may block
    // and the component needs no async host calls; otherwise async, and
    // only a run on a fiber can yield to tokio at an epoch tick.
    let may_block = matches!(caller, Caller::MayBlock);
    let deadline = Deadline {
        at: start + timeout,
        yields: !target.listener.runs_sync(may_block),
    };
    let mut state = RunState::new(secrets, limits, deadline);
    let http_calls = target.http.then(|| {
        state.with_http(
            target.origins.clone(),
            spec.limits.max_http_requests,
            spec.limits.max_http_response_bytes,
            start + timeout,
            injector,
        )
    });
    let mut store = Store::new(&inner.engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|cx| {
        let deadline = &cx.data().deadline;
        Ok(if Instant::now() >= deadline.at {
            UpdateDeadline::Interrupt
        } else if deadline.yields {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        } else {
            UpdateDeadline::Continue(1)
        })
    });
    Run {
        store,
        http_calls,
        started_at_ms,
        start,
        may_block,
        _reservation: reservation,
    }
}
