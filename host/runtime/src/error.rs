//! Errors at the runtime crate's boundary.
//!
//! Deploy-time problems are the user's to fix, so each variant names the cause
//! in one line (the offending import, the missing export, the bad limit).
//! Guest-visible failures never appear here: those are WIT `secret-error`
//! values (see `secrets.rs`) or run outcomes (see `runs/record.rs`).

use keyhole_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    #[error("not a keyhole listener (world keyhole:listener/listener@0.2.0 or @0.1.0): {0}")]
    WrongWorld(String),
    #[error("import `{import}` is not allowed{hint}")]
    ForbiddenImport { import: String, hint: &'static str },
    #[error("invalid deployment: {0}")]
    InvalidSpec(String),
    /// An emitted event broke the event rules (topic, id, payload).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("no listener named `{0}`")]
    UnknownListener(String),
    /// What an operation depended on changed under it (a deploy that keeps
    /// the previous grants, when the previous deployment was replaced
    /// meanwhile); nothing was written.
    #[error("{0}; try again")]
    Changed(String),
    /// An unforced deletion of a scope that holds something.
    #[error("{} still holds {holdings}", ScopeWords(.scope))]
    NotEmpty {
        scope: keyhole_store::Scope,
        holdings: crate::lifecycle::ScopeHoldings,
    },
    /// The module needs more than a listener may have to start at all (its
    /// initial memory, its tables, its core instances): it could never run.
    #[error("{0}")]
    ExceedsLimits(String),
    #[error("module too large: {size} bytes (limit {limit})")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt runtime record: {0}")]
    Corrupt(String),
    /// The audit log did not write what a run's record depends on (the
    /// run's reads) in time; the record was not written.
    #[error("audit log unavailable: {0}")]
    AuditUnavailable(String),
    #[error("engine error: {0}")]
    Engine(String),
}

impl RuntimeError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn engine(err: impl std::fmt::Display) -> Self {
        RuntimeError::Engine(format!("{err:#}"))
    }
}

/// `environment prod` or `space team-a` (ids are checked, plain text).
struct ScopeWords<'a>(&'a keyhole_store::Scope);

impl std::fmt::Display for ScopeWords<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            keyhole_store::Scope::Environment(id) => write!(f, "environment {id}"),
            keyhole_store::Scope::Space(id) => write!(f, "space {id}"),
        }
    }
}

impl From<keyhole_kv::KvError> for RuntimeError {
    fn from(err: keyhole_kv::KvError) -> Self {
        RuntimeError::Store(StoreError::from(err))
    }
}
