//! Run records and the log that keeps them.
//!
//! Every run appends one record, so the run log is the one high-volume write
//! in keyhole. The runtime sees it only through the [`RunLog`] trait, chosen
//! when the runtime opens ([`crate::Runtime::open_with_run_log`]), so a
//! different store for records can be put in without touching dispatch. The
//! default is the JSONL segment files in `runs/jsonl/`.
//!
//! The trait is called once per run (`append`), never per `get-secret`
//! call: one virtual call per run is all the indirection costs.
//!
//! - `record.rs`: the model ([`RunRecord`], [`Outcome`]).
//! - `query.rs`: what a reader asks for ([`RunQuery`]) and gets
//!   ([`RunPage`]).
//! - `jsonl/`: the default log, JSON lines in segment files under
//!   `DATA/runs/`.

pub(crate) mod jsonl;
mod query;
mod record;
pub(crate) mod shared;

pub use query::{RunFields, RunPage, RunQuery};
pub use record::{Outcome, RunRecord};

use crate::error::RuntimeError;

/// Where run records go, and where they are read back from.
///
/// Implementations must be cheap to `append` to: it is called on the event
/// path, once per run, after the guest has returned.
pub trait RunLog: Send + Sync {
    /// Gives `record` the next run id and stores it (possibly later, in the
    /// background); returns the id. Ids are consecutive and continue across
    /// restarts. An error means the record is not kept: a caller that acks
    /// work only once its runs are recorded (cluster mode's queue) must not
    /// ack it.
    fn append(&self, record: &mut RunRecord) -> Result<u64, RuntimeError>;

    /// Waits until every record appended so far is durably stored.
    fn sync(&self) -> Result<(), RuntimeError>;

    /// Records matching `query`, newest first, at most `query.limit`. Sees
    /// every record appended before the call, so callers read their own
    /// runs; never a record its retention no longer keeps.
    fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError>;

    /// Whether a run of `listener` for event `event_id` is recorded already
    /// (an event delivered again in cluster mode runs only the listeners
    /// that have no record). The default log never sees an event twice.
    fn recorded(&self, event_id: &str, listener: &str) -> Result<bool, RuntimeError> {
        let _ = (event_id, listener);
        Ok(false)
    }

    /// The run with this id, if kept. By default, the first record of a
    /// query below `id + 1`.
    fn get(&self, id: u64) -> Result<Option<RunRecord>, RuntimeError> {
        let query = RunQuery {
            before: id.checked_add(1),
            limit: 1,
            ..RunQuery::default()
        };
        Ok(self.query(&query)?.into_iter().find(|r| r.id == id))
    }
}
