//! After the call: what the run's record says, and nothing a guest read.
//!
//! The result is classified into an [`Outcome`] (a limit hit is "memory",
//! an epoch interrupt is "deadline", other traps by name). Every text the
//! run left (output, returned text, outbound HTTP paths and errors) is
//! scrubbed of the values it revealed, the returned text is capped, and the
//! record is counted in metrics and appended to the run log.
//!
//! No cap here cuts a value before it is scrubbed: output arrives already
//! capped and is scrubbed as bytes, with the cut in mind; the returned text
//! is capped only after scrubbing; HTTP paths and errors are not capped.

use wasmtime::Trap;

use super::setup::Run;
use crate::deploy::Limits;
use crate::deployments::ReadyDeployment;
use crate::error::RuntimeError;
use crate::event::Event;
use crate::http::HttpCall;
use crate::runs::{Outcome, RunRecord};
use crate::runtime::Inner;
use crate::scrub::Scrubber;

/// Most bytes of a run's returned text (its `ok` value, error or trap
/// message) kept in the run record; the rest is replaced by a note of how
/// much was dropped. Run records are a log, not a data channel, and a guest
/// could otherwise return its whole memory.
pub const OUTCOME_TEXT_LIMIT: usize = 64 << 10;

/// Classifies, scrubs and caps what `run` left, and records it (an error
/// if the run log could not keep it).
pub(super) fn record(
    inner: &Inner,
    target: &ReadyDeployment,
    event: &Event,
    run: Run<'_>,
    result: wasmtime::Result<Result<String, String>>,
) -> Result<RunRecord, RuntimeError> {
    let duration = run.start.elapsed();
    let spec = &target.record.spec;
    let mut state = run.store.into_data();
    let mut outcome = classify(result, state.limits.hit, &spec.limits);
    let ((stdout, out_dropped), (stderr, err_dropped)) = state.take_output();
    let mut http: Vec<HttpCall> = run
        .http_calls
        .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    let mut revealed = std::mem::take(&mut state.secrets.revealed);
    // The values the host injected are scrubbed too, though the guest
    // never had them: a server may have echoed one into an error text, or
    // the run may have met one elsewhere. Not "read": they stay out of
    // `secrets_read` (each HTTP call names its own).
    let read = revealed.len();
    revealed.extend(state.take_injected());
    // Free when nothing was revealed: no allocation, every text skipped.
    let scrubber = Scrubber::new(&revealed);
    // Scrubbed as bytes, before they become text: the capture cap may
    // have cut a character of a value (see `scrub.rs`).
    let stdout = scrubber.scrub_output(stdout, out_dropped > 0);
    let stderr = scrubber.scrub_output(stderr, err_dropped > 0);
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
    for (name, _) in revealed.drain(..).take(read) {
        if !secrets_read.contains(&name) {
            secrets_read.push(name);
        }
    }
    inner.metrics.run(outcome.label(), duration);
    let mut record = RunRecord {
        id: 0, // assigned by the run log
        // The run's own copies (`setup.rs`), moved rather than copied again.
        event_id: std::mem::take(&mut state.secrets.event_id).into_string(),
        topic: std::mem::take(&mut state.secrets.topic).into_string(),
        environment: event.environment.clone(),
        space: event.space.clone(),
        listener: spec.name.clone(),
        module_hash: target.record.module_hash.clone(),
        outcome,
        started_at_ms: run.started_at_ms,
        duration_us: duration.as_micros() as u64,
        stdout,
        stderr,
        output_dropped: out_dropped + err_dropped,
        secrets_read,
        http,
        notes: std::mem::take(&mut state.secrets.notes),
        delivery: event.delivery,
    };
    inner.runs.append(&mut record)?;
    Ok(record)
}

/// How the call ended. `limit_hit`: the run's limiter refused to grow
/// memory or a table, which is why the call failed if it did.
fn classify(
    result: wasmtime::Result<Result<String, String>>,
    limit_hit: bool,
    limits: &Limits,
) -> Outcome {
    match result {
        Ok(Ok(value)) => Outcome::Ok { value },
        Ok(Err(message)) => Outcome::GuestError { message },
        Err(_) if limit_hit => Outcome::Memory {
            limit_bytes: limits.memory_bytes,
        },
        Err(err) => match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Outcome::Deadline {
                timeout_ms: limits.timeout_ms,
            },
            Some(trap) => Outcome::Trap {
                trap: trap_name(*trap),
                message: format!("{err:#}"),
            },
            None => Outcome::Failed {
                message: format!("{err:#}"),
            },
        },
    }
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
