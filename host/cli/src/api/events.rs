//! Events over HTTP: `POST /v1/events` (one) and `POST /v1/events/batch`
//! (many, one JSON event per line).
//!
//! A batch is for event sources with volume: one request, one
//! authorization and validation pass, and the runs spread over the
//! runtime's workers, instead of a round trip per event. It is checked
//! whole before anything runs: a line that does not parse, is outside the
//! token's scope or is not a valid event refuses the batch, naming the
//! line, and no event of it runs. Accepted, its events are shared out
//! over the workers (`Runtime::emit_many`) and the answer lists them in the
//! order sent, each as `POST /v1/events` answers it. A host-wide failure
//! met while running (a sealed store) fails the request, and the events
//! that ran before it are in the run log; give events ids to find them.
//!
//! In cluster mode both queue their events durably (202) for any host's
//! workers.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use keyhole_runtime::Event;
use keyhole_store::SecretStore;

use super::Shared;
use super::auth::within;
use super::body::{ApiJson, read_body};
use super::error::ApiError;
use super::scopes::blocking;
use crate::auth::{Permission, Principal};
use crate::requests::{EmitBody, MIN_REVISION_WAIT};
use crate::views::{EmitBatchView, EmitView, RunView};

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Largest batch body: the events' payloads are bounded one by one too
/// (1 MiB each, `MAX_PAYLOAD_BYTES`).
pub const BATCH_BODY_LIMIT: usize = 16 << 20;

/// The event `body` describes, if `who` may emit it and it is valid.
fn accept(s: &Shared, who: &Principal, body: EmitBody) -> Result<Event, ApiError> {
    within(
        who,
        Permission::EventsEmit,
        s.runtime.store(),
        &body.environment_id,
        body.space_id.as_deref(),
    )?;
    let payload = serde_json::to_string(&body.payload)
        .map_err(|e| ApiError::bad_request(format!("payload: {e}")))?;
    let mut event = Event::new(&body.topic, &body.environment_id, body.space_id.as_deref())
        .with_payload(payload);
    if let Some(id) = body.id {
        event = event.with_id(id);
    }
    Ok(event)
}

/// Refuses a `minRevision` no write has reached yet, at once: it is not a
/// revision a write returned (those are written before they are answered,
/// on any host), and waiting for it could only time out.
fn written_yet(store: &SecretStore, revision: u64) -> Result<(), ApiError> {
    if revision <= store.revision() {
        return Ok(());
    }
    let newest = store.written_revision()?;
    if revision > newest {
        return Err(ApiError::bad_request(format!(
            "store revision {revision} is ahead of every write to the store (the newest is \
             {newest}): give the revision a secret write returned; the event was not run"
        )));
    }
    Ok(())
}

/// [`written_yet`] off the async workers (a shared backend asks its
/// server), for an event about to be queued.
async fn check_written(s: &Shared, revision: Option<u64>) -> Result<(), ApiError> {
    let Some(revision) = revision else {
        return Ok(());
    };
    let store = s.runtime.store().clone();
    blocking(move || written_yet(&store, revision)).await
}

/// Waits until this host's store has applied `revision`, if given.
async fn caught_up(s: &Shared, revision: Option<u64>) -> Result<(), ApiError> {
    let Some(revision) = revision else {
        return Ok(());
    };
    let store = s.runtime.store().clone();
    let seen = blocking(move || {
        written_yet(&store, revision)?;
        Ok(store.wait_for(revision, MIN_REVISION_WAIT)?)
    });
    if seen.await? {
        return Ok(());
    }
    Err(ApiError::unavailable(format!(
        "this host has not seen store revision {revision} within {} s; the event was not run",
        MIN_REVISION_WAIT.as_secs()
    )))
}

fn ran(event_id: String, runs: Vec<keyhole_runtime::RunRecord>) -> EmitView {
    EmitView {
        event_id,
        runs: runs.into_iter().map(RunView::from).collect(),
        queued: false,
        duplicate: false,
    }
}

pub async fn emit(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<EmitBody>,
) -> Result<(StatusCode, Json<EmitView>), ApiError> {
    let min_revision = body.min_revision;
    let event = accept(&s, &who, body)?;
    if let Some(queue) = &s.queue {
        // Refused here, in the caller's terms, rather than by a worker.
        s.runtime.validate_event(&event)?;
        check_written(&s, min_revision).await?;
        let deployments = s.runtime.deployments_seen();
        let view = queue_event(queue, event, min_revision, deployments).await?;
        return Ok((StatusCode::ACCEPTED, Json(view)));
    }
    caught_up(&s, min_revision).await?;
    let event_id = event.id.clone();
    // The dispatch runs in its own task: if the client goes away, hyper drops
    // this handler, but an accepted event still runs to the end and is
    // recorded (runs execute inline in the task that awaits them).
    let runtime = s.runtime.clone();
    let runs = tokio::spawn(async move { runtime.emit(event).await })
        .await
        .map_err(|e| ApiError::internal(format!("dispatch task failed: {e}")))??;
    Ok((StatusCode::OK, Json(ran(event_id, runs))))
}

/// `ApiError` for line `n` of a batch.
fn on_line(n: usize, mut e: ApiError) -> ApiError {
    e.message = format!("line {n}: {}; no event of the batch ran", e.message);
    e
}

pub async fn emit_batch(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<(StatusCode, Json<EmitBatchView>), ApiError> {
    let bytes = read_body(body, BATCH_BODY_LIMIT).await?;
    let mut events = Vec::new();
    let mut min_revision = None;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if events.len() == MAX_BATCH_EVENTS {
            return Err(ApiError::bad_request(format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events; no event of it ran"
            )));
        }
        let body: EmitBody = serde_json::from_slice(line)
            .map_err(|e| on_line(i + 1, ApiError::bad_request(format!("invalid event: {e}"))))?;
        min_revision = min_revision.max(body.min_revision);
        let event = accept(&s, &who, body).map_err(|e| on_line(i + 1, e))?;
        s.runtime
            .validate_event(&event)
            .map_err(|e| on_line(i + 1, e.into()))?;
        events.push(event);
    }
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "the batch holds no events: send one JSON event per line",
        ));
    }
    if let Some(queue) = &s.queue {
        check_written(&s, min_revision).await?;
        // Queued to the end even if the client goes away (a batch cut
        // short by a dropped request would be queued in part, unsaid).
        let (queue, deployments) = (queue.clone(), s.runtime.deployments_seen());
        let queued = tokio::spawn(async move {
            let mut views: Vec<EmitView> = Vec::with_capacity(events.len());
            for event in events {
                match queue_event(&queue, event, min_revision, deployments).await {
                    Ok(view) => views.push(view),
                    Err(e) => return Err(partly_queued(e, &views)),
                }
            }
            Ok(views)
        });
        let views = queued
            .await
            .map_err(|e| ApiError::internal(format!("queueing task failed: {e}")))??;
        return Ok((StatusCode::ACCEPTED, Json(EmitBatchView { events: views })));
    }
    caught_up(&s, min_revision).await?;
    // As in `emit`, the batch runs to the end if the client goes away; the
    // runtime shares its events out over the workers.
    let runtime = s.runtime.clone();
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let results = tokio::spawn(async move { runtime.emit_many(events).await })
        .await
        .map_err(|e| ApiError::internal(format!("dispatch task failed: {e}")))?;
    let mut views = Vec::with_capacity(results.len());
    for (id, result) in ids.into_iter().zip(results) {
        views.push(ran(id, result?));
    }
    Ok((StatusCode::OK, Json(EmitBatchView { events: views })))
}

/// A batch the queue stopped taking part way: the error says which of its
/// events were queued (they will run), so the client sends only the rest
/// again.
fn partly_queued(mut e: ApiError, queued: &[EmitView]) -> ApiError {
    if let Some(last) = queued.last() {
        e.message = format!(
            "{}; the batch's first {} events were queued and will run (the last of them {}): \
             send its lines from {} on again",
            e.message,
            queued.len(),
            last.event_id,
            queued.len() + 1
        );
    }
    e
}

/// Cluster mode: the event, durably queued for any host's workers, with
/// the deployments revision this host had seen (`deployments`) when it
/// accepted it.
async fn queue_event(
    queue: &keyhole_kv_nats::queue::WorkQueue,
    event: Event,
    min_revision: Option<u64>,
    deployments: u64,
) -> Result<EmitView, ApiError> {
    let queued = crate::events_queue::Queued {
        id: event.id.clone(),
        topic: event.topic,
        environment: event.environment,
        space: event.space,
        payload: event.payload,
        min_revision,
        deployments_revision: Some(deployments),
    };
    let body = serde_json::to_vec(&queued).map_err(ApiError::internal)?;
    let published = queue
        .publish(&queued.id, body)
        .await
        .map_err(|e| ApiError::unavailable(format!("the event was not queued: {e}")))?;
    Ok(EmitView {
        event_id: queued.id,
        runs: Vec::new(),
        queued: true,
        duplicate: published.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ErrorCode;

    #[test]
    fn a_batch_queued_in_part_says_which_events_were_queued() {
        let failed = || ApiError::unavailable("the event was not queued: timed out");
        assert_eq!(
            partly_queued(failed(), &[]).message,
            "the event was not queued: timed out"
        );
        let queued: Vec<EmitView> = ["ev_1", "ev_2"]
            .map(|id| EmitView {
                event_id: id.into(),
                runs: Vec::new(),
                queued: true,
                duplicate: false,
            })
            .into();
        let e = partly_queued(failed(), &queued);
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(
            e.message,
            "the event was not queued: timed out; the batch's first 2 events were queued \
             and will run (the last of them ev_2): send its lines from 3 on again"
        );
    }
}
