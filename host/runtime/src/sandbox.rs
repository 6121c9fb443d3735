//! The state of one run's `Store`: a deny-all WASI context, the secrets
//! capability, optional outbound HTTP, and resource limits.
//!
//! WASI here grants nothing: no environment variables, no arguments, no
//! preopened directories, no sockets (and `wasi:sockets` imports are refused at
//! deploy time anyway), stdin empty, stdout/stderr captured with a byte cap.
//! Clocks and random numbers work; they reveal nothing about secrets.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::http::{HttpCall, OutboundHooks};
use crate::inject::Injector;
use crate::output::CapturedOutput;
use crate::secrets::{SecretsCtx, SecretsView};

/// Bytes of stdout (and, separately, stderr) kept per run.
pub const OUTPUT_LIMIT: usize = 16 << 10;

/// Memory and table limits for one run, remembering whether a limit was hit
/// so the run can be recorded as "memory" rather than a generic trap.
///
/// The memory limit is for all of the run's linear memories together (a
/// component may have several): it is what the run reserved from the
/// host's memory budget (`budget.rs`).
pub(crate) struct RunLimits {
    pub(crate) memory_bytes: u64,
    pub(crate) table_elements: usize,
    pub(crate) hit: bool,
    /// Bytes of all the run's memories so far (wasmtime asks before it
    /// creates a memory too, with `current` 0).
    pub(crate) memory_used: u64,
}

impl RunLimits {
    pub(crate) fn new(memory_bytes: u64, table_elements: usize) -> Self {
        RunLimits {
            memory_bytes,
            table_elements,
            hit: false,
            memory_used: 0,
        }
    }
}

/// When a run must stop, and whether it yields to tokio at each epoch
/// tick before then (a run on a fiber). Kept in the run's state so that
/// the epoch callback captures nothing (a capturing one is an allocation
/// per run).
pub(crate) struct Deadline {
    pub(crate) at: std::time::Instant,
    pub(crate) yields: bool,
}

impl ResourceLimiter for RunLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.memory_used.saturating_sub(current as u64)).saturating_add(desired as u64);
        if total > self.memory_bytes {
            self.hit = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {total})",
                self.memory_bytes
            );
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = true;
            wasmtime::bail!("table limit of {} elements exceeded", self.table_elements);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        8
    }
}

pub(crate) struct RunState {
    /// Built on the guest's first WASI call: most listeners never make one
    /// (pure components cannot), and building a context costs microseconds.
    /// Boxed, as is `http`: both are large and most runs have neither, and
    /// the state is moved into its `Store` on every run.
    wasi: Option<Box<WasiCtx>>,
    pub(crate) table: ResourceTable,
    output: Option<(CapturedOutput, CapturedOutput)>,
    pub(crate) limits: RunLimits,
    pub(crate) deadline: Deadline,
    pub(crate) secrets: SecretsCtx,
    pub(crate) http: Option<Box<(WasiHttpCtx, OutboundHooks)>>,
}

impl RunState {
    pub(crate) fn new(secrets: SecretsCtx, limits: RunLimits, deadline: Deadline) -> Self {
        RunState {
            wasi: None,
            table: ResourceTable::new(),
            output: None,
            limits,
            deadline,
            secrets,
            http: None,
        }
    }

    /// The values the host injected into this run's requests, for
    /// scrubbing its record (none without injections: no allocation).
    pub(crate) fn take_injected(&mut self) -> Vec<(String, crate::secrets::Revealed)> {
        self.http
            .as_mut()
            .and_then(|http| http.1.inject.as_mut())
            .map(Injector::take)
            .unwrap_or_default()
    }

    /// Captured stdout and stderr, as raw bytes to scrub before they
    /// become text, each with the count of bytes dropped.
    pub(crate) fn take_output(&self) -> ((Vec<u8>, u64), (Vec<u8>, u64)) {
        match &self.output {
            Some((out, err)) => (out.take(), err.take()),
            None => ((Vec::new(), 0), (Vec::new(), 0)),
        }
    }

    fn ensure_wasi(&mut self) {
        if self.wasi.is_none() {
            let stdout = CapturedOutput::new(OUTPUT_LIMIT);
            let stderr = CapturedOutput::new(OUTPUT_LIMIT);
            self.wasi = Some(Box::new(
                WasiCtx::builder()
                    .stdout(stdout.clone())
                    .stderr(stderr.clone())
                    .allow_tcp(false)
                    .allow_udp(false)
                    .allow_ip_name_lookup(false)
                    .build(),
            ));
            self.output = Some((stdout, stderr));
        }
    }

    pub(crate) fn with_http(
        &mut self,
        allowed: Arc<[crate::http::AllowedOrigin]>,
        max_requests: u32,
        max_response_bytes: u64,
        deadline: Instant,
        inject: Option<Injector>,
    ) -> Arc<Mutex<Vec<HttpCall>>> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let hooks = OutboundHooks {
            allowed,
            calls: calls.clone(),
            max_requests,
            max_response_bytes,
            deadline,
            started: 0,
            inject,
        };
        self.http = Some(Box::new((WasiHttpCtx::new(), hooks)));
        calls
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Build the context (once) before lending it beside the table.
        self.ensure_wasi();
        let ctx = self.wasi.as_mut().expect("built above");
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Only deployments with an HTTP grant are linked against wasi:http,
        // and those always get an HTTP context in `run/setup.rs`.
        let (ctx, hooks) = self
            .http
            .as_deref_mut()
            .expect("wasi:http linked without an HTTP grant");
        WasiHttpCtxView {
            ctx,
            table: &mut self.table,
            hooks,
        }
    }
}

impl SecretsView for RunState {
    fn secrets(&mut self) -> &mut SecretsCtx {
        &mut self.secrets
    }
}
