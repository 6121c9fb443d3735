//! Before a run: its reservation of the host memory budget (`budget.rs`),
//! or, when none comes within its timeout, the record of a run that never
//! started.
//!
//! The wait is bounded by the deployment's own timeout, so a caller waits
//! at most twice that for a run: once for room, once for the run. A
//! refused run is recorded like any other (counted in metrics here,
//! appended to the run log by `Runtime::run`) with the outcome
//! `memory_budget`; nothing of the guest ran, so there is nothing to
//! scrub.

use std::time::Duration;

use crate::budget::{Reservation, run_bytes};
use crate::deployments::ReadyDeployment;
use crate::event::Event;
use crate::runs::{Outcome, RunRecord};
use crate::runtime::Inner;

/// The run's reservation, or the record of its refusal (not yet appended).
pub(super) async fn admit<'a>(
    inner: &'a Inner,
    target: &ReadyDeployment,
    event: &Event,
) -> Result<Reservation<'a>, RunRecord> {
    let limits = &target.record.spec.limits;
    let patience = Duration::from_millis(limits.timeout_ms);
    match inner.budget.reserve(run_bytes(limits), patience).await {
        Ok(reservation) => Ok(reservation),
        Err(refused) => {
            // Read only here: a clock read costs tens of ns per run.
            let waited_ms = refused.waited.as_millis() as u64;
            let started_at_ms = crate::now_ms().saturating_sub(waited_ms);
            let outcome = Outcome::MemoryBudget {
                limit_bytes: limits.memory_bytes,
                budget_bytes: inner.budget.total(),
                waited_ms,
            };
            inner.metrics.run(outcome.label(), refused.waited);
            Err(RunRecord::not_run(
                event,
                &target.record,
                outcome,
                started_at_ms,
                refused.waited.as_micros() as u64,
            ))
        }
    }
}
