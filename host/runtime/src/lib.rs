//! keyhole's listener runtime: deploy WebAssembly components, dispatch events
//! to them in a sandbox, and serve their `get-secret` calls from the store.
//!
//! - [`deploy`]: what a deployment is and the checks a module must pass.
//! - [`artifacts`]: precompiled components, so restarts never recompile.
//! - [`sandbox`] and [`secrets`]: what a guest can reach (almost nothing).
//! - [`dispatch`]: matching events to deployments and running them.
//! - [`runs`] and [`scrub`]: the record of every run, with secrets removed.
//! - [`http`]: the opt-in outbound HTTP capability.
#![deny(unsafe_code)]

mod artifacts;
pub mod deploy;
pub mod dispatch;
mod engine;
mod error;
pub mod http;
pub mod metrics;
mod output;
mod registry;
pub mod runs;
mod sandbox;
mod scrub;
pub mod secrets;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "listener",
        // `handle` runs on a fiber (`call_async`) on the caller's tokio task.
        exports: { default: async },
    });
}

/// The same world with a synchronous `handle`, for `emit_blocking` callers
/// whose thread may block: listeners with no WASI imports run there without
/// a fiber. Types are shared with [`bindings`].
mod bindings_sync {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "listener",
        with: {
            "keyhole:listener/types": crate::bindings::keyhole::listener::types,
            "keyhole:listener/secrets": crate::bindings::keyhole::listener::secrets,
        },
    });
}

pub use deploy::{DeploySpec, Deployment, Grants, Limits};
pub use dispatch::Event;
pub use engine::{EPOCH_TICK, EngineConfig, MAX_MEMORY_BYTES, engine_config};
pub use error::RuntimeError;
pub use registry::{Runtime, RuntimeConfig, RuntimeStats};
pub use runs::{Outcome, RunRecord};

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
