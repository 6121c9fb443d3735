//! `keyhole serve`: the daemon.
//!
//! First applies the listen rule and loads the TLS certificate (`tls.rs`:
//! an address that is not loopback needs `--tls-cert`/`--tls-key` or
//! `--insecure-listen`), then opens the store and runtime (holding the data
//! directory's lock for as long as it runs), binds the listen address,
//! writes `DATA/serve.json` (pid and base URL, `https://` under TLS, so
//! `--listen 127.0.0.1:0` is usable and locked-out CLI verbs can point at
//! the API), and serves until SIGTERM or Ctrl-C.
//! Shutdown is graceful: in-flight requests finish (for at most
//! [`DRAIN_TIMEOUT`]), then run records are flushed and `serve.json` removed.
//!
//! Slow and idle clients cannot hold connections. The accept loop is hyper's
//! rather than `axum::serve`, which gives hyper no timer and so no timeouts:
//! here every connection gets a header-read timeout (`--header-timeout`).
//! hyper (>= 1.4) starts it whenever it waits for a request head, on a new
//! connection and between keep-alive requests alike, and does not restart it
//! as bytes trickle in, so a slowloris client and an idle keep-alive
//! connection are both closed when it expires. Bodies have their own
//! deadline (`--request-timeout`, see `api/deadline.rs`). A client that
//! stops reading its responses is closed once a write has made no progress
//! for `--write-timeout` (hyper has no write timeout, so the socket is
//! wrapped in `tokio-io-timeout`'s); otherwise it would hold its connection
//! slot for ever, as hyper reads no further request head meanwhile.
//!
//! Under TLS the same protections hold: the write timeout wraps the socket
//! beneath TLS, the handshake runs in the connection's own task (the accept
//! loop never waits on a client) and must finish within `--header-timeout`,
//! and the connection slot is held from accept, through the handshake, to
//! close. A client that never completes a handshake is cut off like one
//! that never sends a request head.
//!
//! At most `--max-connections` connections are open at once: the loop takes
//! a permit before it accepts, and a connection's permit is returned when it
//! closes. Beyond the cap new clients wait in the listen backlog rather than
//! costing a file descriptor and a task each. The cap must fit the process's
//! open-files limit, or a flood would still starve the daemon's own files
//! (the run log opens segments as it goes): serve raises the soft limit to
//! the hard one, and lowers the cap, with a warning, if it still does not fit.
//!
//! Runs share one host memory budget (`--max-memory`, by default half the
//! machine's memory): each reserves its deployment's memory limit before
//! it starts and waits, at most its timeout, for room (the runtime's
//! `budget.rs`). The budget also covers what the instance pool keeps
//! resident, so many large runs cannot push the daemon past it.
//!
//! Run records are kept as `--max-runs` and `--runs-max-age` say: the API
//! never shows a run beyond either, and the run log deletes them from disk
//! a segment at a time.
//!
//! Only HTTP/1.1 is served, as before (axum's `http2` feature is off): hyper
//! has no header or idle timeout for HTTP/2, so serving it would reopen the
//! hole.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, ApiMetrics, AppState};
use crate::auth::{TokenView, Tokens};
use crate::cli::ServeArgs;
use crate::config::{Globals, ServeInfo};
use crate::errors::{CliError, Exit};

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(g: &Globals, args: ServeArgs) -> Result<()> {
    // Before anything is opened or bound.
    let tls = crate::tls::configure(args.listen, &args.tls)?;
    let max_memory = args
        .max_memory
        .unwrap_or_else(keyhole_runtime::default_max_memory);
    let config = keyhole_runtime::RuntimeConfig {
        max_run_records: usize::try_from(args.max_runs).unwrap_or(usize::MAX),
        max_run_age: args.runs_max_age,
        max_audit_entries: usize::try_from(args.audit_keep).unwrap_or(usize::MAX),
        ..keyhole_runtime::RuntimeConfig::default()
    }
    .with_max_memory(max_memory);
    let runtime = g.open_runtime_with(config)?;
    let memory = runtime.memory_stats();
    tracing::info!(
        budget = %bytesize::ByteSize(memory.budget_bytes),
        pool_allowance = %bytesize::ByteSize(memory.pool_allowance_bytes),
        "memory budget for runs and the instance pool"
    );
    let tokens = TokenView::load(Tokens::open(&**runtime.store().backend())?)?;
    if tokens.is_empty() {
        return Err(CliError::new(
            Exit::Failure,
            format!("data directory {} has no API token", g.data.display()),
        )
        .hint("run `keyhole init` for a new installation, or `keyhole token reset`")
        .into());
    }
    if let Some(reason) = runtime.store().sealed_reason() {
        tracing::warn!(%reason, "store is sealed: secret reads and writes will fail with 503");
    }
    let queue = match &g.cluster {
        None => None,
        Some(cluster) => {
            let config = keyhole_kv_nats::queue::QueueConfig {
                ack_wait: args.cluster_ack_wait,
                max_deliver: args.cluster_max_deliver,
                ..Default::default()
            };
            let nats = keyhole_kv_nats::NatsKv::connect(cluster.clone())
                .with_context(|| format!("connecting to the cluster at {}", cluster.url))?;
            Some(Arc::new(
                nats.work_queue("events", config)
                    .context("opening the cluster's event queue")?,
            ))
        }
    };
    let state = Arc::new(AppState {
        queue,
        runtime: runtime.clone(),
        tokens,
        max_module_bytes: usize::try_from(args.max_module_bytes).unwrap_or(usize::MAX),
        request_timeout: args.request_timeout,
        metrics: ApiMetrics::default(),
    });
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyhole-serve")
        .build()
        .context("starting the async runtime")?;
    let result = tokio_rt.block_on(serve(g, args, tls, state.clone()));
    ServeInfo::remove(&g.data);
    if let Err(e) = state.tokens.write_back() {
        tracing::warn!("writing back token last-used times: {e}");
    }
    // Run records are written without a flush on the hot path: flush now.
    // The daemon's own error, if it had one, comes first.
    let flushed = runtime.flush().context("flushing the data directory");
    match (&result, flushed) {
        (Err(_), Err(e)) => tracing::error!("{e:#}"),
        (Ok(()), Err(e)) => return Err(e),
        (_, Ok(())) => tracing::info!("stopped"),
    }
    result
}

async fn serve(
    g: &Globals,
    args: ServeArgs,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let cert = tls.is_some().then(|| args.tls.tls_cert.clone()).flatten();
    announce(g, listener.local_addr()?, cert)?;

    api::spawn_last_used_writer(&state);
    let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
    let workers = match &state.queue {
        Some(q) => crate::events_queue::start(
            q.clone(),
            state.runtime.clone(),
            usize::from(args.cluster_workers),
            workers_stop,
        ),
        None => Vec::new(),
    };
    let console = crate::console::Limits {
        idle: args.console_idle_timeout,
        lifetime: args.console_session_lifetime,
    };
    let router =
        api::router(state.clone()).merge(crate::console::router(state, tls.is_some(), console));
    let http = http1_builder(args.header_timeout);
    let graceful = GracefulShutdown::new();
    let cap = fit_connection_cap(args.max_connections);
    let slots = Arc::new(Semaphore::new(cap as usize));
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = slots.clone().acquire_owned() => slot.expect("semaphore never closed"),
        };
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Answers are small and whole: without this, Nagle
                    // holds each one until the client's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    let mut stream = TimeoutStream::new(stream);
                    stream.set_write_timeout(Some(args.write_timeout));
                    let stream = Box::pin(stream);
                    let conn = Connection {
                        http: http.clone(),
                        service: TowerToHyperService::new(router.clone()),
                        watcher: graceful.watcher(),
                        peer,
                        slot,
                    };
                    match &tls {
                        None => tokio::spawn(conn.serve(stream)),
                        Some(tls) => tokio::spawn(conn.serve_tls(
                            tls.clone(),
                            stream,
                            args.header_timeout,
                        )),
                    };
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
    // Stop accepting (new connections are refused), then drain; queue
    // workers finish the event they run and take no more.
    drop(listener);
    let _ = stop_workers.send(true);
    drain(graceful).await;
    for w in workers {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, w).await;
    }
    Ok(())
}

/// Descriptors kept free for the daemon's own files: the listen socket,
/// the database, run-log segments, artifacts, logs.
const RESERVED_FDS: u64 = 128;

/// Raises the open-files soft limit to the hard limit (as most servers do)
/// and returns the connection cap that fits under it.
fn fit_connection_cap(requested: u32) -> u32 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if soft.is_some() && soft != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum,
            Err(e) => tracing::debug!("raising the open-files limit: {e}"),
        }
    }
    let cap = cap_for_limit(requested, soft);
    if cap < requested {
        tracing::warn!(
            requested,
            cap,
            open_files_limit = soft,
            "--max-connections does not fit the open-files limit; using {cap} (raise `ulimit -n`)"
        );
    }
    cap
}

/// `requested`, lowered so that connections plus [`RESERVED_FDS`] stay
/// within an open-files limit of `soft` (`None`: unlimited).
fn cap_for_limit(requested: u32, soft: Option<u64>) -> u32 {
    match soft {
        None => requested,
        Some(soft) => {
            let room = soft.saturating_sub(RESERVED_FDS).max(1);
            requested.min(u32::try_from(room).unwrap_or(u32::MAX))
        }
    }
}

/// Writes `serve.json` and says where the API is.
/// `cert`: the certificate served under TLS, which the CLI on this machine
/// then trusts for this daemon.
fn announce(g: &Globals, addr: SocketAddr, cert: Option<std::path::PathBuf>) -> Result<()> {
    let scheme = if cert.is_some() { "https" } else { "http" };
    let address = format!("{scheme}://{}", reachable(addr));
    ServeInfo {
        pid: std::process::id(),
        address: address.clone(),
        tls_cert: cert.map(|c| std::path::absolute(&c).unwrap_or(c)),
    }
    .write(&g.data)?;
    tracing::info!(%address, data = %g.data.display(), "listening");
    println!(
        "keyhole serve: listening on {address} (data directory {})",
        g.data.display()
    );
    Ok(())
}

/// Where a client on this machine reaches a daemon bound to `addr`: an
/// unspecified address (`0.0.0.0`, `::`) is not one to connect to, its
/// family's loopback is.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// HTTP/1.1 connections with a header-read (and keep-alive idle) timeout.
fn http1_builder(header_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
}

/// An accepted socket, with its write timeout.
type Socket = Pin<Box<TimeoutStream<TcpStream>>>;

/// One accepted connection: what serving it takes, and the connection slot
/// it holds until it closes. Its errors are the client's business (a
/// failed handshake, a header timeout, a reset, a malformed request):
/// logged at debug only, so a misbehaving client cannot flood the log.
struct Connection {
    http: http1::Builder,
    service: TowerToHyperService<axum::Router>,
    watcher: Watcher,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Serves HTTP/1.1 on `io` to the connection's end.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            http,
            service,
            watcher,
            peer,
            slot,
        } = self;
        let conn = http.serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, "connection closed: {e}");
        }
        drop(slot);
    }

    /// Completes the TLS handshake within `timeout`, then serves.
    async fn serve_tls(self, tls: TlsAcceptor, socket: Socket, timeout: Duration) {
        match tokio::time::timeout(timeout, tls.accept(socket)).await {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(
                peer = %self.peer,
                "TLS handshake not finished within --header-timeout"
            ),
        }
    }
}

/// A failed `accept`. Errors about the one connection are dropped; others
/// (out of file descriptors, say) would fail again at once, so back off.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionRefused | K::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Lets in-flight requests finish, for at most [`DRAIN_TIMEOUT`]; idle
/// connections close at once.
async fn drain(graceful: GracefulShutdown) {
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time; stopping anyway");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_json_names_an_address_to_connect_to() {
        for (bound, named) in [
            ("0.0.0.0:7700", "127.0.0.1:7700"),
            ("[::]:7700", "[::1]:7700"),
            ("127.0.0.1:7700", "127.0.0.1:7700"),
            ("10.1.2.3:7700", "10.1.2.3:7700"),
        ] {
            assert_eq!(reachable(bound.parse().unwrap()).to_string(), named);
        }
    }

    #[test]
    fn the_connection_cap_fits_the_open_files_limit() {
        assert_eq!(cap_for_limit(1024, None), 1024);
        assert_eq!(cap_for_limit(1024, Some(1 << 20)), 1024);
        assert_eq!(cap_for_limit(1024, Some(1024)), 1024 - 128);
        assert_eq!(cap_for_limit(1024, Some(100)), 1);
        assert_eq!(cap_for_limit(5, Some(200)), 5);
    }
}
