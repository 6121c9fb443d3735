//! The baselines keyhole is measured against, built on bare wasmtime.
//!
//! - [`Floor`]: the cheapest correct way to run a fresh instance per event
//!   that wasmtime 48 offers: one engine with the pooling allocator and
//!   epoch interruption, an `InstancePre` linked once, a host `get-secret`
//!   that returns a constant, and per event only `Store::new` + instantiate +
//!   `handle` + drop. Anything keyhole spends above this is keyhole's.
//! - [`Naive`]: what a first-draft host does: compile the component on every
//!   event (`Component::new`), link, instantiate, call. It shows what the
//!   precompile/pre-link design buys.
//!
//! The engine uses keyhole's own configuration
//! ([`keyhole_runtime::engine_config`] of the runtime's default config: pool
//! shape, slot reset and decommit policy, wasm stack, epochs), so the
//! comparison is of dispatch paths, not of configurations. What the host
//! memory budget costs a run (a reservation) is keyhole's, and counted.

use anyhow::{Result, ensure};
use wasmtime::component::{Component, Linker, WasmStr};
use wasmtime::{Engine, Store};

wasmtime::component::bindgen!({ path: "../../wit", world: "listener" });

use keyhole::listener::secrets::{Scope, SecretError};
use keyhole::listener::types::Event as WitEvent;

/// The value the floor's `get-secret` returns.
pub const CONSTANT_SECRET: &str = "constant";

/// The engine keyhole builds, setting for setting: the pool of the
/// runtime's default config (sized to the default memory budget), and so
/// the same slot reset and decommit policy.
fn pooled_engine() -> Result<Engine> {
    let runtime_default = keyhole_runtime::RuntimeConfig::default();
    let config = keyhole_runtime::engine_config(&runtime_default.engine);
    Ok(Engine::new(&config)?)
}

/// The same pool with wasmtime's own memory settings for 64-bit hosts
/// (guard pages around each memory, bounds checks elided, 4 GiB
/// reservations), which keyhole turns off (`engine.rs`): the bare engine
/// as most hosts run it, for the ordinary guest that grows its memory.
fn guarded_engine() -> Result<Engine> {
    let runtime_default = keyhole_runtime::RuntimeConfig::default();
    let mut config = keyhole_runtime::engine_config(&runtime_default.engine);
    config
        .signals_based_traps(true)
        .memory_guard_size(32 << 20)
        .guard_before_linear_memory(true)
        .memory_reservation(4 << 30)
        .memory_reservation_for_growth(2 << 30);
    Ok(Engine::new(&config)?)
}

/// A linker with exactly what a pure listener (built against the current
/// WIT, `wit/`, 0.2.0) imports: an empty `types` instance and a
/// `get-secret` that answers `ok("constant")` without even reading its
/// arguments.
fn minimal_linker(engine: &Engine) -> Result<Linker<()>> {
    let mut linker = Linker::new(engine);
    linker.instance("keyhole:listener/types@0.2.0")?;
    linker
        .instance("keyhole:listener/secrets@0.2.0")?
        .func_wrap(
            "get-secret",
            |_cx, (_name, _scope): (WasmStr, Option<Scope>)| {
                Ok((Ok::<String, SecretError>(CONSTANT_SECRET.to_owned()),))
            },
        )?;
    Ok(linker)
}

/// The event every case delivers (as the guest sees it).
pub fn wit_event(id: &str) -> WitEvent {
    WitEvent {
        id: id.to_owned(),
        topic: crate::TOPIC.to_owned(),
        environment: crate::ENVIRONMENT.to_owned(),
        space: None,
        payload: "{}".to_owned(),
        settings: Vec::new(),
    }
}

/// Bare-wasmtime floor: pre-linked once, fresh store and instance per event.
pub struct Floor {
    engine: Engine,
    pre: ListenerPre<()>,
}

impl Floor {
    pub fn new(component_bytes: &[u8]) -> Result<Self> {
        Self::on(pooled_engine()?, component_bytes)
    }

    /// The floor on wasmtime's own memory settings ([`guarded_engine`]).
    pub fn guarded(component_bytes: &[u8]) -> Result<Self> {
        Self::on(guarded_engine()?, component_bytes)
    }

    fn on(engine: Engine, component_bytes: &[u8]) -> Result<Self> {
        let component = Component::new(&engine, component_bytes)
            .map_err(|e| anyhow::anyhow!("compile guest: {e:#}"))?;
        let pre = ListenerPre::new(minimal_linker(&engine)?.instantiate_pre(&component)?)?;
        Ok(Floor { engine, pre })
    }

    /// One event: `Store::new`, instantiate, `handle`, drop.
    pub fn event(&self, event: &WitEvent) -> Result<String> {
        let mut store = Store::new(&self.engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        store.epoch_deadline_trap();
        let listener = self.pre.instantiate(&mut store)?;
        let out = listener.call_handle(&mut store, event)?;
        out.map_err(|e| anyhow::anyhow!("guest error: {e}"))
    }
}

/// Naive host: default engine, compile + link + instantiate per event.
pub struct Naive {
    engine: Engine,
    linker: Linker<()>,
    bytes: Vec<u8>,
}

impl Naive {
    pub fn new(component_bytes: &[u8]) -> Result<Self> {
        let engine = Engine::default();
        let linker = minimal_linker(&engine)?;
        Ok(Naive {
            engine,
            linker,
            bytes: component_bytes.to_vec(),
        })
    }

    pub fn event(&self, event: &WitEvent) -> Result<String> {
        let component = Component::new(&self.engine, &self.bytes)?;
        let mut store = Store::new(&self.engine, ());
        let listener = Listener::instantiate(&mut store, &component, &self.linker)?;
        let out = listener.call_handle(&mut store, event)?;
        out.map_err(|e| anyhow::anyhow!("guest error: {e}"))
    }
}

/// Checks a baseline gives the answer the guest computes for `value`.
pub fn check_fingerprint(out: &str, value: &str) -> Result<()> {
    let want = fingerprint(value);
    ensure!(out == want, "guest returned {out:?}, expected {want:?}");
    Ok(())
}

/// What `pure-reader` returns for a secret value (FNV-1a 64, hex).
pub fn fingerprint(value: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in value.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The baselines link what the bench guests import (a WIT version
    /// change once left them linking the old one, found only by CI's
    /// benchmark step).
    #[test]
    fn the_baselines_run_the_bench_guests() {
        for guest in [crate::PURE_READER, crate::ARENA_READER] {
            let bytes = std::fs::read(guest).unwrap();
            for floor in [Floor::new(&bytes).unwrap(), Floor::guarded(&bytes).unwrap()] {
                check_fingerprint(&floor.event(&wit_event("e1")).unwrap(), CONSTANT_SECRET)
                    .unwrap();
            }
            let naive = Naive::new(&bytes).unwrap();
            check_fingerprint(&naive.event(&wit_event("e2")).unwrap(), CONSTANT_SECRET).unwrap();
        }
    }
}
