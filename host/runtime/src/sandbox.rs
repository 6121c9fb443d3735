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
use crate::output::CapturedOutput;
use crate::secrets::{SecretsCtx, SecretsView};

/// Bytes of stdout (and, separately, stderr) kept per run.
pub const OUTPUT_LIMIT: usize = 16 << 10;

/// Memory and table limits for one run, remembering whether a limit was hit
/// so the run can be recorded as "memory" rather than a generic trap.
pub(crate) struct RunLimits {
    pub(crate) memory_bytes: u64,
    pub(crate) table_elements: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for RunLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.hit = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.memory_bytes
            );
        }
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
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    pub(crate) limits: RunLimits,
    pub(crate) secrets: SecretsCtx,
    pub(crate) http: Option<(WasiHttpCtx, OutboundHooks)>,
}

impl RunState {
    pub(crate) fn new(secrets: SecretsCtx, limits: RunLimits) -> Self {
        let stdout = CapturedOutput::new(OUTPUT_LIMIT);
        let stderr = CapturedOutput::new(OUTPUT_LIMIT);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
            limits,
            secrets,
            http: None,
        }
    }

    pub(crate) fn with_http(
        &mut self,
        allowed: Arc<[crate::http::AllowedOrigin]>,
        max_requests: u32,
        max_response_bytes: u64,
        deadline: Instant,
    ) -> Arc<Mutex<Vec<HttpCall>>> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let hooks = OutboundHooks {
            allowed,
            calls: calls.clone(),
            max_requests,
            max_response_bytes,
            deadline,
            started: 0,
        };
        self.http = Some((WasiHttpCtx::new(), hooks));
        calls
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Only deployments with an HTTP grant are linked against wasi:http,
        // and those always get an HTTP context in `dispatch.rs`.
        let (ctx, hooks) = self
            .http
            .as_mut()
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
