//! `keyhole serve`: the daemon.
//!
//! Opens the store and runtime (holding the data directory's lock for as
//! long as it runs), binds the listen address, writes `DATA/serve.json`
//! (pid and bound address, so `--listen 127.0.0.1:0` is usable and locked-out
//! CLI verbs can point at the API), and serves until SIGTERM or Ctrl-C.
//! Shutdown is graceful: in-flight requests finish (for at most
//! [`DRAIN_TIMEOUT`]), then run records are flushed and `serve.json` removed.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Notify;

use crate::api::{self, ApiMetrics, AppState};
use crate::cli::ServeArgs;
use crate::config::{Globals, ServeInfo};
use crate::errors::{CliError, Exit};
use crate::token::TokenCheck;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(g: &Globals, args: ServeArgs) -> Result<()> {
    let runtime = g.open_runtime()?;
    let Some(token) = TokenCheck::load(runtime.store().db())? else {
        return Err(CliError::new(
            Exit::Failure,
            format!("data directory {} has no admin API token", g.data.display()),
        )
        .hint("run `keyhole init` for a new installation, or `keyhole token reset`")
        .into());
    };
    if let Some(reason) = runtime.store().sealed_reason() {
        tracing::warn!(%reason, "store is sealed: secret reads and writes will fail with 503");
    }
    let state = Arc::new(AppState {
        runtime: runtime.clone(),
        token,
        max_module_bytes: usize::try_from(args.max_module_bytes).unwrap_or(usize::MAX),
        metrics: ApiMetrics::default(),
    });
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyhole-serve")
        .build()
        .context("starting the async runtime")?;
    let result = tokio_rt.block_on(serve(g, args, state));
    ServeInfo::remove(&g.data);
    // Run records are written without a flush on the hot path: flush now.
    runtime.flush().context("flushing the data directory")?;
    tracing::info!("stopped");
    result
}

async fn serve(g: &Globals, args: ServeArgs, state: Arc<AppState>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let address = format!("http://{addr}");
    ServeInfo {
        pid: std::process::id(),
        address: address.clone(),
    }
    .write(&g.data)?;
    tracing::info!(%address, data = %g.data.display(), "listening");
    println!(
        "keyhole serve: listening on {address} (data directory {})",
        g.data.display()
    );

    let stop = Arc::new(Notify::new());
    let signalled = stop.clone();
    let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        signalled.notify_one();
    });
    let drain_deadline = async {
        stop.notified().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        res = server.into_future() => res.context("serving the API")?,
        () = drain_deadline => tracing::warn!("in-flight requests did not finish in time; stopping anyway"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
