//! The API in this process: the daemon's router, built on the data
//! directory, answering requests without a socket.
//!
//! Used when no daemon holds the data directory. The caller is the local
//! user (`auth::Principal::local`, admin): whoever can open the data
//! directory and its key has every right already, so no token is asked
//! for, and the audit log names the OS user. Everything else is the
//! daemon's: the same handlers, checks, audit entries and errors.
//!
//! A request that changes something is followed by a flush, so the run
//! records and changes of one verb are on disk before the next verb (or a
//! daemon) opens the directory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::Method;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{Call, Reply};
use crate::api::{self, ApiMetrics, AppState};
use crate::auth::{TokenView, Tokens};
use crate::config::Globals;

/// The API on an open data directory.
pub struct Local {
    state: Arc<AppState>,
    router: Router,
    rt: tokio::runtime::Runtime,
}

impl Local {
    /// Opens the data directory (its lock, store and runtime).
    pub fn open(g: &Globals) -> Result<Local> {
        let runtime = g.open_runtime()?;
        let tokens = TokenView::load(Tokens::open(&**runtime.store().backend())?)?;
        let state = Arc::new(AppState {
            runtime,
            tokens,
            // The runtime's own limit: a module is refused by size only there.
            max_module_bytes: keyhole_runtime::deploy::MAX_MODULE_BYTES,
            // No client to wait for: the body is already in memory.
            request_timeout: Duration::from_secs(24 * 60 * 60),
            metrics: ApiMetrics::default(),
            // Verbs in this process run events here, queue or not.
            queue: None,
        });
        let router = api::local_router(state.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Local { state, router, rt })
    }

    /// Why the store is sealed, if it is.
    pub fn sealed_reason(&self) -> Option<String> {
        self.state.runtime.store().sealed_reason()
    }

    pub fn send(&self, call: Call) -> Result<Reply> {
        let changes = call.method != Method::GET;
        let request = call.into_request()?;
        let reply = self.rt.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .context("reading the answer")?
                .to_bytes()
                .to_vec();
            anyhow::Ok(Reply { status, body })
        })?;
        if changes {
            self.state
                .runtime
                .flush()
                .context("flushing the data directory")?;
        }
        Ok(reply)
    }
}
