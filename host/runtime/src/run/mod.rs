//! One run: a deployment handling one event, cut into its phases.
//!
//! - `admit.rs`: the run's reservation of the host memory budget, waited
//!   for at most its timeout (or a `memory_budget` record instead);
//! - `setup.rs`: a fresh `Store` holding the run's state (secrets,
//!   limits, outbound HTTP), its memory limiter and wall-clock deadline;
//! - `call.rs`: instantiating the pre-linked component and calling
//!   `handle`;
//! - `outcome.rs`: classifying what happened, scrubbing what the guest
//!   read, capping, and appending the run record.
//!
//! Each phase reads alone, and [`Runtime::run`] below is all that ties them
//! together. This is the event path: setting up and recording cost the
//! same per run whatever the guest does, nothing here is paid per
//! `get-secret` call, and the run log is called once per run.

mod admit;
pub(crate) mod call;
mod outcome;
mod setup;

pub use outcome::OUTCOME_TEXT_LIMIT;
pub(crate) use setup::Caller;

use crate::deployments::ReadyDeployment;
use crate::error::RuntimeError;
use crate::event::Event;
use crate::runs::RunRecord;
use crate::runtime::Runtime;
use call::EventArg;

impl Runtime {
    /// One run: memory reserved, fresh instance, call `handle`, classify,
    /// scrub, record.
    pub(crate) async fn run(
        &self,
        target: &ReadyDeployment,
        event: &Event,
        caller: Caller,
    ) -> Result<RunRecord, RuntimeError> {
        let reservation = match admit::admit(&self.inner, target, event).await {
            Ok(reservation) => reservation,
            Err(mut refused) => {
                self.inner.runs.append(&mut refused)?;
                return Ok(refused);
            }
        };
        let mut run = setup::set_up(&self.inner, target, event, caller, reservation);
        let arg = EventArg::new(event, &target.record.spec.settings);
        let result = target
            .listener
            .instantiate_and_handle(&mut run.store, arg, run.may_block)
            .await;
        outcome::record(&self.inner, target, event, run, result)
    }
}
