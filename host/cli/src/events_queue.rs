//! Cluster mode's event queue: `POST /v1/events` on any host queues the
//! event durably (`api/listeners.rs`), and every host's workers here take
//! events from the queue and run them.
//!
//! Semantics: execution at least once, recording exactly once.
//! - A worker acks an event after its runs are recorded. A host that dies
//!   mid-run never acks: after the queue's ack wait the event goes to
//!   another host, with its delivery count, and runs there only for the
//!   listeners that have no run record yet (`Runtime::emit` asks the
//!   shared run log), so each (event, listener) is recorded once.
//! - A long run sends progress acks, so it is not taken for a dead host's.
//! - The last delivery the queue allows is not run: the event goes to the
//!   dead-letter stream and each listener without a record gets a `failed`
//!   run saying so (`Runtime::give_up`), both retried, as the queue will
//!   not deliver it again.
//! - A run whose record cannot be written is the event's error: handed
//!   back, not acked (`runs/shared.rs`).
//! - An event naming a `minRevision` waits for this host's store to reach
//!   it, and every event for this host to have followed the deployments as
//!   far as the host that accepted it had; one that cannot is handed back
//!   to the queue for another try.
//! - An event that may go to a listener whose deploy or undeploy from
//!   another host is not applied here is handed back after its runs, not
//!   acknowledged, so a host that applied it runs that listener
//!   (`Runtime::may_miss_listeners`).

use std::sync::Arc;
use std::time::Duration;

use keyhole_kv_nats::queue::{Delivery, WorkQueue};
use keyhole_runtime::{Event, Runtime, RuntimeError};
use serde::{Deserialize, Serialize};

/// An event as it travels through the queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub id: String,
    pub topic: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// JSON text.
    pub payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_revision: Option<u64>,
    /// The accepting host's view of the deployments
    /// (`Runtime::deployments_seen`): the host that runs the event first
    /// applies as much, so a deploy answered before the event was sent is
    /// not missed. Absent from events an earlier release queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments_revision: Option<u64>,
}

impl Queued {
    fn event(&self) -> Event {
        Event::new(&self.topic, &self.environment, self.space.as_deref())
            .with_id(self.id.clone())
            .with_payload(self.payload.clone())
    }
}

/// How long a fetch waits for an event before looking at shutdown.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// How long an event waits for its `minRevision` and its deployments
/// revision here before it is handed back to the queue.
const REVISION_WAIT: Duration = Duration::from_secs(5);
/// How often a worker looks whether the deployments have been followed
/// as far as an event needs.
const DEPLOYMENTS_POLL: Duration = Duration::from_millis(5);

/// Starts `workers` tasks taking events from `queue` until `stop` is set;
/// returns their handles (each finishes its current event first).
pub fn start(
    queue: Arc<WorkQueue>,
    runtime: Runtime,
    workers: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers.max(1))
        .map(|_| {
            let (queue, runtime, mut stop) = (queue.clone(), runtime.clone(), stop.clone());
            tokio::spawn(async move {
                while !*stop.borrow() {
                    let batch = tokio::select! {
                        _ = stop.changed() => break,
                        b = queue.fetch(1, FETCH_WAIT) => b,
                    };
                    match batch {
                        Ok(deliveries) => {
                            for d in deliveries {
                                handle(&queue, &runtime, d).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("taking events from the queue: {e}");
                            tokio::time::sleep(FETCH_WAIT).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn handle(queue: &WorkQueue, runtime: &Runtime, d: Delivery) {
    let queued: Queued = match serde_json::from_slice(&d.body) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(
                sequence = d.sequence,
                "an unreadable event in the queue ({e}): dead-lettered"
            );
            // Its own message id: the dead-letter stream keeps one message
            // per id within its duplicate window.
            let id = format!("unreadable-{}", d.sequence);
            dead_letter(queue, &d, &id).await;
            return;
        }
    };
    let delivery = u32::try_from(d.delivered).unwrap_or(u32::MAX);
    let event = queued.event().with_delivery(delivery);
    // Within the ack wait (no progress acks are sent yet): longer, and the
    // event would be delivered to another host meanwhile.
    let deadline = tokio::time::Instant::now() + REVISION_WAIT.min(queue.ack_wait() / 2);
    // First of all, giving up included: a listener deployed before the
    // event was accepted is then applied here or known not to be.
    let followed = match queued.deployments_revision {
        Some(revision) => followed_as_far(runtime, revision, deadline).await,
        None => true,
    };
    if d.delivered >= queue.max_deliver() {
        if !followed {
            tracing::warn!(event = %event.id, "giving up on an event before this host has followed the deployments it was sent after: a listener deployed just before it may get no failed run");
        }
        give_up(queue, runtime, &d, &event).await;
        return;
    }
    if !followed {
        tracing::warn!(event = %event.id, "deployments not followed this far here yet: handed back");
        let _ = d.retry_after(pause(queue, d.delivered)).await;
        return;
    }
    if let Some(revision) = queued.min_revision {
        let store = runtime.store().clone();
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let seen = tokio::task::spawn_blocking(move || store.wait_for(revision, wait))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !seen {
            tracing::warn!(event = %event.id, revision, "store revision not seen here yet: handed back");
            let _ = d.retry_after(pause(queue, d.delivered)).await;
            return;
        }
    }
    // Progress acks while the runs take long.
    let keepalive = {
        let every = queue.ack_wait() / 3;
        let d = &d;
        async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = d.progress().await {
                    tracing::debug!("{e}");
                }
            }
        }
    };
    // On the blocking pool: in cluster mode a run's record is a write to
    // NATS that waits for the run's audit entries (`runs/shared.rs`), and
    // the workers' waits must overlap (so the audit log writes their
    // entries in one batch), not queue up behind the runtime's few
    // worker threads.
    // Before the run chooses its listeners: a change from another host
    // applied while it runs may be a listener it did not choose.
    let followed = runtime.followed_changes();
    // Whether it may have missed a listener is asked there too: it may
    // read the shared run log.
    let run = {
        let (runtime, event) = (runtime.clone(), event.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let runs = handle.block_on(runtime.emit(event.clone()));
            let missed = runs.is_ok() && runtime.may_miss_listeners(&event);
            (runs, missed)
        })
    };
    let (runs, missed) = tokio::select! {
        r = run => r.unwrap_or_else(|e| (Err(RuntimeError::Engine(format!("run task failed: {e}"))), false)),
        () = keepalive => unreachable!("the keepalive loop never ends"),
    };
    match runs {
        // A deployment made on another host that this event may go to is
        // not applied here, or one was applied during the run: a listener
        // of this event may be one of them. Handed back rather than
        // acknowledged; the next delivery (here or elsewhere) runs only
        // the listeners without a record of it.
        Ok(_) if missed || runtime.followed_changes() != followed => {
            tracing::warn!(event = %event.id, "deployments from other hosts not applied here yet: handed back");
            let _ = d.retry_after(pause(queue, d.delivered)).await;
        }
        Ok(_) => {
            if let Err(e) = d.ack().await {
                // Delivered again later; its recorded runs are not rerun.
                tracing::warn!(event = %event.id, "acknowledging: {e}");
            }
        }
        Err(e) if permanent(&e) => {
            tracing::warn!(event = %event.id, "event refused ({e}): dead-lettered");
            dead_letter(queue, &d, &event.id).await;
        }
        Err(e) => {
            tracing::warn!(event = %event.id, "running a queued event: {e}; handed back");
            let _ = d.retry_after(pause(queue, d.delivered)).await;
        }
    }
}

/// Waits (until `deadline`) for this host to have followed the deployments
/// up to `revision`; returns whether it has.
async fn followed_as_far(runtime: &Runtime, revision: u64, deadline: tokio::time::Instant) -> bool {
    while runtime.deployments_applied() < revision {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(DEPLOYMENTS_POLL).await;
    }
    true
}

/// How long an event handed back waits before its next delivery: 1 s,
/// doubling with each delivery (to the queue's ack wait), so a few
/// seconds' outage does not use up every delivery, each one running the
/// listeners again.
fn pause(queue: &WorkQueue, delivered: u64) -> Duration {
    let doublings = delivered.saturating_sub(1).min(6) as u32;
    Duration::from_secs(1u64 << doublings).min(queue.ack_wait())
}

/// Errors no other host or later try would get past.
fn permanent(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::InvalidEvent(_)
            | RuntimeError::Store(keyhole_store::StoreError::UnknownEnvironment(_))
            | RuntimeError::Store(keyhole_store::StoreError::UnknownSpace(_))
    )
}

/// The last delivery: no more tries. Dead-lettered, and a `failed` run
/// recorded for each listener that has none.
async fn give_up(queue: &WorkQueue, runtime: &Runtime, d: &Delivery, event: &Event) {
    let why = format!(
        "not run: the event was delivered {} times without completing (its hosts stopped or failed); it is in the dead-letter stream",
        d.delivered
    );
    // The queue will not deliver it again: retried here (both steps are
    // idempotent: records are created once, the dead letter has the
    // event's id).
    for attempt in 1..=LAST_TRIES {
        let (rt, ev, why) = (runtime.clone(), event.clone(), why.clone());
        match tokio::task::spawn_blocking(move || rt.give_up(&ev, &why)).await {
            Ok(Ok(_)) => break,
            // Its scope is gone, say: no try would record anything.
            Ok(Err(e)) if permanent(&e) => {
                tracing::warn!(event = %event.id, "no failed runs to record: {e}");
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(event = %event.id, attempt, "recording the failed runs: {e}")
            }
            Err(e) => tracing::warn!(event = %event.id, attempt, "recording the failed runs: {e}"),
        }
        if attempt == LAST_TRIES {
            tracing::error!(event = %event.id, "the event's failed runs could not be recorded: it has no run records");
        } else {
            tokio::time::sleep(LAST_TRY_PAUSE).await;
        }
    }
    dead_letter(queue, d, &event.id).await;
}

/// Tries on a last delivery, and the pause between them.
const LAST_TRIES: u32 = 5;
const LAST_TRY_PAUSE: Duration = Duration::from_secs(1);

/// Dead-letters `d` under `id`, retried: a message left unacked after its
/// last delivery would stay in the queue, delivered to no one.
async fn dead_letter(queue: &WorkQueue, d: &Delivery, id: &str) {
    for attempt in 1..=LAST_TRIES {
        match queue.dead_letter(d, id).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(event = %id, attempt, "dead-lettering: {e}"),
        }
        if attempt < LAST_TRIES {
            tokio::time::sleep(LAST_TRY_PAUSE).await;
        }
    }
    tracing::error!(
        event = %id,
        sequence = d.sequence,
        "could not dead-letter the event: it stays in the queue, undelivered"
    );
}
