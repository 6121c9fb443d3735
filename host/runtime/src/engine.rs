//! The one wasmtime `Engine` keyhole runs every listener on, and the epoch
//! ticker that turns wall-clock deadlines into traps.
//!
//! Settings and why:
//! - **Pooling allocator**: instances come from pre-reserved slots, so a fresh
//!   instance per event costs microseconds, not an mmap dance.
//! - **Epoch interruption** rather than fuel: fuel slows every guest
//!   instruction; an epoch check is one load and compare per loop header. A
//!   ticker thread bumps the epoch every [`EPOCH_TICK`].
//! - **Bounded wasm stack**: unbounded recursion traps with a stack overflow
//!   long before the host thread's stack is at risk.
//! - **Async calls on fibers**: a run executes on the tokio task that emitted
//!   the event (`call_async` switches to a pooled fiber stack, about a
//!   microsecond), not on a blocking-pool thread: handing each run to another
//!   thread and back cost 30-90 µs per event on this 2-core VM. A running
//!   guest yields to tokio at every epoch tick, so it holds a worker thread
//!   for at most [`EPOCH_TICK`] at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// How often the epoch advances. Deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Largest linear memory any deployment may ask for. Pool slots reserve this
/// much address space (not RAM) each.
pub const MAX_MEMORY_BYTES: u64 = 512 << 20;

/// Maximum wasm stack per call.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Engine-wide capacity knobs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Instances that may be live at once across all runs (pool size).
    pub pool_instances: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_instances: 256,
        }
    }
}

/// keyhole's wasmtime configuration. Public so the benchmark's bare-engine
/// floor runs on exactly the same settings.
pub fn engine_config(cfg: &EngineConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let n = cfg.pool_instances;
    pool.total_component_instances(n)
        .total_stacks(n)
        .total_core_instances(n * 4)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .table_elements(100_000)
        // Resetting a slot for reuse: find the pages a run dirtied with
        // Linux's PAGEMAP_SCAN and zero them with memset (up to 4 MiB kept
        // resident) instead of madvise, whose TLB shootdowns serialize the
        // cores; decommit what remains in batches. Measured by keyhole-bench:
        // the per-event floor drops from ~30 to ~18 µs.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(16 << 10)
        .decommit_batch_size(16);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

pub(crate) fn new_engine(cfg: &EngineConfig) -> Result<Engine, RuntimeError> {
    Engine::new(&engine_config(cfg)).map_err(RuntimeError::engine)
}

/// Bumps the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("keyhole-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
