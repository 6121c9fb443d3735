//! keyhole's listener runtime: deploy WebAssembly components, dispatch events
//! to them in a sandbox, and serve their `get-secret` calls from the store.
//!
//! - [`deploy`]: what a deployment is and the checks a module must pass.
//! - [`artifacts`]: precompiled components, so restarts never recompile.
//! - [`sandbox`] and [`secrets`]: what a guest can reach (almost nothing).
//! - [`dispatch`]: matching events to deployments (indexed by environment
//!   in `deployments.rs`) and running them.
//! - [`runs`] and [`scrub`]: the record of every run, with secrets removed.
//! - [`http`]: the opt-in outbound HTTP capability.
#![deny(unsafe_code)]

mod artifacts;
pub mod deploy;
mod deploying;
mod deployments;
pub mod dispatch;
mod engine;
mod error;
mod event;
pub mod http;
pub mod metrics;
mod output;
mod run;
pub mod runs;
mod runtime;
mod sandbox;
mod scrub;
pub mod secrets;
mod topics;

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

pub use deploy::{DeploySpec, Deployment, Grants, Limits};
pub use dispatch::Event;
pub use engine::{EPOCH_TICK, EngineConfig, MAX_MEMORY_BYTES, engine_config};
pub use error::RuntimeError;
pub use runs::{Outcome, RunLog, RunQuery, RunRecord};
pub use runtime::{Runtime, RuntimeConfig, RuntimeStats};

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
