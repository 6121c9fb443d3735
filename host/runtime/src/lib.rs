//! keyhole's listener runtime: deploy WebAssembly components, dispatch events
//! to them in a sandbox, and serve their `get-secret` calls from the store.
//!
//! Module map, from the operations down to what they stand on. Imports go
//! one way, down this list (inside `runs/`, the log implements the trait
//! beside the model); the one file out of place is `run/call.rs`, filed
//! with its phase but imported by the deployments below it.
//!
//! - Operations, as `impl Runtime` blocks: [`dispatch`] (matching events to
//!   deployments, the two `emit`s; `lanes.rs` spreads a fan-out's or a
//!   batch's runs over the CPUs), `deploying.rs` (deploy, undeploy,
//!   loading what is stored at open) and `lifecycle.rs` (deleting an
//!   environment or space with its listeners, and finishing interrupted
//!   deletions at open).
//! - One run, by phase, in `run/`: `setup.rs` (the `Store`, limits and
//!   deadline), `call.rs` (instantiate the pre-linked component, call
//!   `handle`), `outcome.rs` (classify, scrub, cap, record).
//! - `runtime.rs`: the [`Runtime`] handle, its settings and shared state,
//!   opening and flushing.
//! - `deployments.rs`: each deployment ready to run (holding its linked
//!   `run::call::Listener`), indexed by environment.
//! - What a guest can reach, and what it leaves: `sandbox.rs` (a run's
//!   deny-all WASI state and limits), `output.rs` (captured stdout and
//!   stderr), `scrub.rs` (revealed values removed from all a run leaves),
//!   [`secrets`] (`get-secret`), [`inject`] (secrets the host puts into
//!   outbound requests, never handing them over) and `http_scrub.rs`
//!   (responses scrubbed of them).
//! - [`runs`]: the run-record model and the [`RunLog`] trait records go
//!   through; the default log is JSON lines in segment files (`runs/jsonl/`).
//! - Models and checks: [`deploy`] (what a deployment is, the checks a
//!   module passes, which of its fields are grants), `deploy_record.rs`
//!   (how deployments are stored, and earlier releases' records),
//!   `access.rs` (what a deployment may read, decided at deploy: declared
//!   secrets, injected ones withheld, grants bound to the module, the
//!   reasons for a denial), `needs.rs` (what a component needs of the
//!   engine to start, refused at deploy when no listener may have it),
//!   `event.rs` ([`Event`] and its rules), `topics.rs`, [`metrics`].
//! - Cluster mode: `cluster.rs` (modules in a shared bucket, giving up on
//!   an event), `follow.rs` (applying other hosts' deploys and undeploys)
//!   and `unapplied.rs` (what is not applied here, and how far this host
//!   has followed, as the event queue asks).
//! - Foundations: [`http`] (the outbound HTTP allow-list, its policy, and
//!   the calls a record lists), `budget.rs` (the host-wide memory budget
//!   every run reserves from), `engine.rs` (the one wasmtime engine, its
//!   pool and epoch ticker), `machine.rs` (the default budget, from the
//!   machine's memory), `artifacts.rs` (precompiled components, so restarts
//!   never recompile), `error.rs`.
#![deny(unsafe_code)]

mod access;
mod artifacts;
pub mod audit;
mod budget;
mod clock;
mod cluster;
pub mod deploy;
mod deploy_record;
mod deploying;
mod deployments;
pub mod dispatch;
mod durations;
mod engine;
mod error;
mod event;
mod follow;
pub mod http;
mod http_scrub;
pub mod inject;
mod lanes;
mod lifecycle;
mod machine;
pub mod metrics;
mod needs;
mod output;
mod run;
pub mod runs;
mod runtime;
mod sandbox;
mod scrub;
pub mod secrets;
mod striped;
mod topics;
mod unapplied;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "listener",
        // Host-side types and import traits; `run/call.rs` calls `handle`
        // itself (borrowing the event) and uses `ListenerPre` only to check
        // a component is a listener.
        exports: { default: async },
    });
}

pub use budget::MemoryStats;
pub use deploy::{DeploySpec, Deployment, Grants, Limits};
pub use deploying::Deployed;
pub use dispatch::Event;
pub use engine::{
    ASYNC_STACK_BYTES, EPOCH_TICK, EngineConfig, LINEAR_MEMORY_KEEP_RESIDENT, MAX_MEMORY_BYTES,
    TABLE_KEEP_RESIDENT, engine_config,
};
pub use error::RuntimeError;
pub use inject::{Injection, InvalidInjection};
pub use lifecycle::{ScopeDeletion, ScopeHoldings};
pub use machine::{default_max_memory, machine_memory};
pub use runs::{Outcome, RunFields, RunLog, RunPage, RunQuery, RunRecord};
pub use runtime::{Runtime, RuntimeConfig, RuntimeStats};

/// sha256 of module bytes, hex: how deployments name their module.
pub fn module_sha256(module: &[u8]) -> String {
    artifacts::sha256_hex(module)
}
pub use sandbox::OUTPUT_LIMIT;

pub(crate) use clock::now_ms;
