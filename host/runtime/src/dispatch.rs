//! Dispatch: an event goes to every matching deployment, each run in a fresh,
//! limited instance, and each run is recorded.
//!
//! A deployment matches an event when the environments are equal, the
//! deployment is either unbound or bound to the event's space, and one of its
//! topic globs matches.
//!
//! A run is an async call on a fiber, executed by the task that emitted the
//! event: one matching listener runs inline, several run as parallel tokio
//! tasks, at most `max_concurrent_runs` at a time. The wall-clock deadline
//! is checked at each epoch tick, where a guest still within it yields to
//! tokio so it never holds a worker thread for long.
//!
//! `emit_blocking` callers own their thread, so there a listener that
//! imports nothing but keyhole's interfaces is called synchronously, without
//! a fiber (about 1 µs less per event in `keyhole-bench`); WASI listeners
//! still run async, as their host calls need the runtime (`listener.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::deployments::ReadyDeployment;
use crate::error::RuntimeError;
use crate::http::HttpCall;
use crate::listener::EventArg;
use crate::runs::{Outcome, RunRecord};
use crate::runtime::Runtime;
use crate::sandbox::{RunLimits, RunState};
use crate::scrub::Scrubber;
use crate::secrets::SecretsCtx;
use crate::topics::Topic;

/// Largest accepted event payload.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Most bytes of a run's returned text (its `ok` value, error or trap
/// message) kept in the run record; the rest is replaced by a note of how
/// much was dropped. Run records are a log, not a data channel, and a guest
/// could otherwise return its whole memory.
pub const OUTCOME_TEXT_LIMIT: usize = 64 << 10;

/// An event, as emitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub topic: String,
    pub environment: String,
    pub space: Option<String>,
    /// JSON text.
    pub payload: String,
}

impl Event {
    /// A new event with a fresh random id and an empty JSON object payload.
    pub fn new(topic: &str, environment: &str, space: Option<&str>) -> Self {
        Event {
            id: format!("ev_{:032x}", rand::random::<u128>()),
            topic: topic.into(),
            environment: environment.into(),
            space: space.map(Into::into),
            payload: "{}".into(),
        }
    }

    pub fn with_payload(mut self, payload: impl Into<String>) -> Self {
        self.payload = payload.into();
        self
    }
}

impl Runtime {
    /// Checks an event against the store and the payload rules.
    pub fn validate_event(&self, event: &Event) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidEvent(m));
        if event.topic.is_empty() || event.topic.len() > 256 {
            return bad("topic must be 1-256 characters".into());
        }
        if event.id.is_empty() || event.id.len() > 128 {
            return bad("id must be 1-128 characters".into());
        }
        if event.payload.len() > MAX_PAYLOAD_BYTES {
            return bad(format!("payload is larger than {MAX_PAYLOAD_BYTES} bytes"));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&event.payload) {
            return bad(format!("payload is not valid JSON: {e}"));
        }
        self.store()
            .require_event_scope(&event.environment, event.space.as_deref())?;
        Ok(())
    }

    /// What both `emit`s do first: validate and count the event, and find
    /// the deployments it goes to.
    fn accept(&self, event: &Event) -> Result<Vec<Arc<ReadyDeployment>>, RuntimeError> {
        self.validate_event(event)?;
        self.inner.metrics.event();
        Ok(self.matching(event))
    }

    fn matching(&self, event: &Event) -> Vec<Arc<ReadyDeployment>> {
        let map = self
            .inner
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let topic = Topic::new(&event.topic);
        // Already in name order.
        map.in_environment(&event.environment)
            .iter()
            .filter(|d| {
                d.space
                    .as_deref()
                    .is_none_or(|s| Some(s) == event.space.as_deref())
                    && d.topics.matches(&topic)
            })
            .cloned()
            .collect()
    }

    /// Dispatches `event` to every matching deployment concurrently and
    /// returns their run records (ordered by listener name).
    ///
    /// A single matching listener runs inside this future, so dropping it
    /// cancels that run and nothing is recorded; spawn the call (as the API
    /// does) when dispatch must outlive its caller.
    pub async fn emit(&self, event: Event) -> Result<Vec<RunRecord>, RuntimeError> {
        let mut targets = self.accept(&event)?;
        if targets.len() <= 1 {
            let Some(target) = targets.pop() else {
                return Ok(Vec::new());
            };
            // The common case runs right here: no task, no thread hop.
            let _permit = self.permit().await;
            return Ok(vec![self.run(&target, &event, Caller::Async).await?]);
        }
        let event = Arc::new(event);
        let mut tasks = Vec::with_capacity(targets.len());
        for target in targets {
            let permit = self.permit().await;
            let rt = self.clone();
            let ev = event.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                rt.run(&target, &ev, Caller::Async).await
            }));
        }
        let mut records = Vec::with_capacity(tasks.len());
        for t in tasks {
            records.push(
                t.await
                    .map_err(|e| RuntimeError::Engine(format!("run task failed: {e}")))??,
            );
        }
        Ok(records)
    }

    async fn permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed")
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

    /// One run: fresh instance, call `handle`, classify, scrub, record.
    async fn run(
        &self,
        target: &ReadyDeployment,
        event: &Event,
        caller: Caller,
    ) -> Result<RunRecord, RuntimeError> {
        let started_at_ms = crate::now_ms();
        let start = Instant::now();
        let spec = &target.record.spec;
        let timeout = Duration::from_millis(spec.limits.timeout_ms);
        let secrets = SecretsCtx {
            store: self.inner.store.clone(),
            environment: target.environment.clone(),
            space: event.space.as_deref().map(Into::into),
            grants: target.grants.clone(),
            revealed: Vec::new(),
            metrics: self.inner.metrics.clone(),
        };
        let limits = RunLimits {
            memory_bytes: spec.limits.memory_bytes,
            table_elements: 100_000,
            hit: false,
        };
        let mut state = RunState::new(secrets, limits);
        let http_calls = (!target.origins.is_empty()).then(|| {
            state.with_http(
                target.origins.clone(),
                spec.limits.max_http_requests,
                spec.limits.max_http_response_bytes,
                start + timeout,
            )
        });
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        // A synchronous call (no fiber) where the caller's thread may block
        // and the component needs no async host calls; otherwise async, and
        // only a run on a fiber can yield to tokio at an epoch tick.
        let may_block = matches!(caller, Caller::MayBlock);
        let deadline = start + timeout;
        let yields = !target.listener.runs_sync(may_block);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else if yields {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            } else {
                UpdateDeadline::Continue(1)
            })
        });

        let arg = EventArg {
            id: &event.id,
            topic: &event.topic,
            environment: &event.environment,
            space: event.space.as_deref(),
            payload: &event.payload,
            settings: &spec.settings,
        };
        let result = target
            .listener
            .instantiate_and_handle(&mut store, arg, may_block)
            .await;
        let duration = start.elapsed();
        let mut state = store.into_data();
        let mut outcome = match result {
            Ok(Ok(value)) => Outcome::Ok { value },
            Ok(Err(message)) => Outcome::GuestError { message },
            Err(_) if state.limits.hit => Outcome::Memory {
                limit_bytes: spec.limits.memory_bytes,
            },
            Err(err) => match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Outcome::Deadline {
                    timeout_ms: spec.limits.timeout_ms,
                },
                Some(trap) => Outcome::Trap {
                    trap: trap_name(*trap),
                    message: format!("{err:#}"),
                },
                None => Outcome::Failed {
                    message: format!("{err:#}"),
                },
            },
        };
        let ((mut stdout, out_dropped), (mut stderr, err_dropped)) = state.take_output();
        let mut http: Vec<HttpCall> = http_calls
            .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        let mut revealed = std::mem::take(&mut state.secrets.revealed);
        // Free when nothing was revealed: no allocation, every text skipped.
        let scrubber = Scrubber::new(&revealed);
        scrubber.scrub(&mut stdout, out_dropped > 0);
        scrubber.scrub(&mut stderr, err_dropped > 0);
        if let Some(text) = outcome.text_mut() {
            scrubber.scrub(text, false);
            // After scrubbing, so no cut can leave part of a value behind.
            cap_text(text);
        }
        // A listener may send a secret to an allowed origin, in the path or
        // query too; the record keeps the request without it.
        for call in &mut http {
            scrubber.scrub(&mut call.path, false);
            if let Some(error) = &mut call.error {
                scrubber.scrub(error, false);
            }
        }
        // Each name once, in the order first read; the values are zeroized
        // as they drop.
        let mut secrets_read: Vec<String> = Vec::new();
        for (name, _) in revealed.drain(..) {
            if !secrets_read.contains(&name) {
                secrets_read.push(name);
            }
        }
        self.inner
            .metrics
            .run(outcome.label(), duration.as_secs_f64());
        let mut record = RunRecord {
            id: 0, // assigned by the run log
            event_id: event.id.clone(),
            topic: event.topic.clone(),
            listener: spec.name.clone(),
            module_hash: target.record.module_hash.clone(),
            outcome,
            started_at_ms,
            duration_us: duration.as_micros() as u64,
            stdout,
            stderr,
            output_dropped: out_dropped + err_dropped,
            secrets_read,
            http,
        };
        self.inner.runs.append(&mut record);
        Ok(record)
    }
}

/// Who is waiting for a run, which decides how it may execute.
#[derive(Clone, Copy)]
enum Caller {
    /// An async task: the run must yield, so it runs on a fiber.
    Async,
    /// A thread that may block (`emit_blocking`).
    MayBlock,
}

/// Cuts `text` to [`OUTCOME_TEXT_LIMIT`] bytes (on a character boundary)
/// plus a note of what was dropped.
fn cap_text(text: &mut String) {
    if text.len() <= OUTCOME_TEXT_LIMIT {
        return;
    }
    let cut = text.floor_char_boundary(OUTCOME_TEXT_LIMIT);
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("…[{dropped} more bytes not recorded]"));
}

fn trap_name(trap: Trap) -> String {
    match trap {
        Trap::StackOverflow => "stack_overflow".into(),
        Trap::UnreachableCodeReached => "unreachable".into(),
        Trap::MemoryOutOfBounds => "memory_out_of_bounds".into(),
        Trap::IntegerDivisionByZero => "integer_division_by_zero".into(),
        Trap::CannotEnterComponent => "cannot_enter_component".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
