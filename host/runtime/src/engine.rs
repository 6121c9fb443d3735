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
//! - **Slots returned at once** (`decommit_batch_size(1)`): when a run's
//!   store drops, wasmtime zeroes the pages it dirtied, keeps up to
//!   [`LINEAR_MEMORY_KEEP_RESIDENT`] of them resident in the slot, and hands
//!   the rest back to the kernel before the drop returns. Batching those
//!   decommits (it was 16) kept every finished instance's whole memory
//!   resident until a batch filled: a listener touching 240 MiB per run
//!   held the idle daemon at up to 3.1 GiB with `--memory 256MiB`. The
//!   memory budget (`budget.rs`) counts on memory being back when the store
//!   is gone, and on the bound below for what slots keep.
//!
//! - **No guard pages; bounds checked by the compiled code**
//!   (`signals_based_traps(false)`, `memory_guard_size(0)`, reservations
//!   of [`MAX_MEMORY_BYTES`]). Most listeners grow their memory on their
//!   first allocation. With guard pages (wasmtime's default) every growth
//!   is an `mprotect` of the slot, and every reuse of the slot shrinks it
//!   back with another, and each one's TLB shootdown stalls the other core:
//!   an ordinary Rust listener ran at about 27k events/s on 2 threads,
//!   fewer than on one (65k). Without guard pages wasmtime leaves a reused
//!   slot's pages accessible (their contents are still reset), so growing
//!   into them is free: 131k events/s on 2 threads, 4.3 times the same
//!   pool with guard pages (`keyhole-bench --loop keyhole 2` against
//!   `--loop guarded-floor 2`). The price is an explicit bounds check on
//!   every memory access, with Spectre hardening kept on: a listener that
//!   does no memory-heavy computation does not notice it.
//!
//! What the pool can keep resident between runs is bounded by its shape:
//! every memory slot at most [`LINEAR_MEMORY_KEEP_RESIDENT`], every table
//! slot [`TABLE_KEEP_RESIDENT`], and every fiber stack (never zeroed, so
//! never decommitted) its whole [`ASYNC_STACK_BYTES`]:
//! [`EngineConfig::retained_bound`]. The budget sets that much aside, and
//! [`EngineConfig::for_budget`] sizes the pool so it stays a small part of
//! the budget.

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

/// The fiber stack an async run executes on: the wasm stack plus the host
/// calls made from it (wasmtime's default, stated so the bound below is
/// right).
pub const ASYNC_STACK_BYTES: u64 = 2 << 20;

/// Dirty bytes of a linear memory zeroed in place (and kept resident) when
/// its slot is reset; the rest is decommitted. See the module docs.
pub const LINEAR_MEMORY_KEEP_RESIDENT: u64 = 4 << 20;

/// The same for a table.
pub const TABLE_KEEP_RESIDENT: u64 = 16 << 10;

/// Largest pool; the default when the budget has room for it.
pub const MAX_POOL_INSTANCES: u32 = 256;

/// Smallest pool [`EngineConfig::for_budget`] picks.
pub const MIN_POOL_INSTANCES: u32 = 8;

/// Engine-wide capacity knobs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Instances that may be live at once across all runs (pool size).
    pub pool_instances: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_instances: MAX_POOL_INSTANCES,
        }
    }
}

impl EngineConfig {
    /// The pool for a host memory budget of `budget` bytes: as many
    /// instances (at most [`MAX_POOL_INSTANCES`], at least
    /// [`MIN_POOL_INSTANCES`]) as keep [`Self::retained_bound`] within an
    /// eighth of the budget.
    pub fn for_budget(budget: u64) -> Self {
        let per_instance = Self::retained_per_instance();
        let fit = (budget / 8) / per_instance;
        let n = fit.clamp(u64::from(MIN_POOL_INSTANCES), u64::from(MAX_POOL_INSTANCES));
        EngineConfig {
            pool_instances: n as u32,
        }
    }

    /// The most memory this pool can keep resident with no instance live:
    /// every slot warm and keeping all it may (see the module docs).
    pub fn retained_bound(&self) -> u64 {
        u64::from(self.pool_instances) * Self::retained_per_instance()
    }

    /// Per pool instance: two memory slots, four table slots, one stack.
    fn retained_per_instance() -> u64 {
        MEMORIES_PER_INSTANCE * LINEAR_MEMORY_KEEP_RESIDENT
            + TABLES_PER_INSTANCE * TABLE_KEEP_RESIDENT
            + ASYNC_STACK_BYTES
    }
}

/// Pool slots per instance of [`EngineConfig::pool_instances`].
const MEMORIES_PER_INSTANCE: u64 = 2;
const TABLES_PER_INSTANCE: u64 = 4;

/// keyhole's wasmtime configuration. Public so the benchmark's bare-engine
/// floor runs on exactly the same settings.
pub fn engine_config(cfg: &EngineConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let n = cfg.pool_instances;
    pool.total_component_instances(n)
        .total_stacks(n)
        .total_core_instances(n * 4)
        .total_memories(n * MEMORIES_PER_INSTANCE as u32)
        .total_tables(n * TABLES_PER_INSTANCE as u32)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .table_elements(100_000)
        // Resetting a slot for reuse: find the pages a run dirtied with
        // Linux's PAGEMAP_SCAN and zero them with memset (up to
        // LINEAR_MEMORY_KEEP_RESIDENT kept resident) instead of madvise,
        // whose TLB shootdowns serialize the cores. Measured by
        // keyhole-bench: the per-event floor drops from ~30 to ~18 µs.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT as usize)
        .table_keep_resident(TABLE_KEEP_RESIDENT as usize)
        // What remains is decommitted as the store drops, not batched.
        .decommit_batch_size(1);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK_BYTES as usize)
        // No guard pages: bounds checked by the compiled code, so a reused
        // slot keeps its pages accessible and a growing guest needs no
        // mprotect (see the module docs).
        .signals_based_traps(false)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .memory_reservation(MAX_MEMORY_BYTES)
        .memory_reservation_for_growth(0)
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
