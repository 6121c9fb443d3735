//! The host-wide memory budget (`keyhole serve --max-memory`): what bounds
//! the memory of all runs together, where each deployment's memory limit
//! bounds only its own.
//!
//! Without it a tenant could push the host to many times any limit: runs
//! of one 256 MiB listener, one after another, left the idle daemon at up
//! to 3.1 GiB, and four at once peaked at 4.1 GiB. Two things were at
//! fault: the pool kept finished instances' memory resident (fixed in
//! `engine.rs`: it is now returned as the store drops), and nothing bounded
//! how many large runs were live at once (this file).
//!
//! The budget is split in two:
//!
//! - **The pool's allowance**, set aside at open: the most the pooling
//!   allocator can keep resident between runs, from its shape
//!   ([`EngineConfig::retained_bound`]). Runs never get it.
//! - **The rest, for live runs.** A run reserves its deployment's memory
//!   limit plus its fiber stack ([`run_bytes`]) before its instance exists,
//!   and releases it after the store (and so the instance's memory) is
//!   gone. The run's limiter caps all its memories together at that limit
//!   (`sandbox.rs`), so a live run never holds more than it reserved.
//!
//! A run that finds no room waits, in arrival order, for at most its own
//! timeout; then it is recorded as `memory_budget` without running. A run
//! that could never fit (its reservation exceeds the runs' share) is
//! recorded so at once. Neither touches the host or other runs.
//!
//! Cost on the event path: reserving is one compare-and-swap on the
//! semaphore (a timer exists only for a run that has to wait), releasing
//! an uncontended lock. Nothing here is paid per `get-secret`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::{Engine, PoolingAllocatorMetrics};

use crate::deploy::Limits;
use crate::engine::{ASYNC_STACK_BYTES, EngineConfig};
use crate::error::RuntimeError;

/// Reservations are counted in wasm pages (64 KiB), so a budget of a
/// terabyte still fits the semaphore's permit count.
const UNIT: u64 = 64 << 10;

/// Bytes a run of a deployment with `limits` reserves: its memory limit and
/// the fiber stack it may run on.
pub(crate) fn run_bytes(limits: &Limits) -> u64 {
    limits.memory_bytes.saturating_add(ASYNC_STACK_BYTES)
}

/// The budget shared by every run of one runtime.
pub(crate) struct MemoryBudget {
    total: u64,
    pool_allowance: u64,
    /// Units for live runs: `total - pool_allowance`, rounded down.
    capacity: u32,
    units: Semaphore,
    waited: AtomicU64,
    refused: AtomicU64,
}

/// A run's share of the budget, given back when dropped. It borrows the
/// budget (the run is shorter than its runtime), so taking one touches no
/// reference count.
pub(crate) struct Reservation<'a> {
    _permit: SemaphorePermit<'a>,
}

/// Why a run got no reservation, and how long it waited for one.
pub(crate) struct Refused {
    pub(crate) waited: Duration,
}

impl MemoryBudget {
    /// `total` bytes for runs and the pool of `engine` together; fails if
    /// the pool's allowance leaves no room for the smallest run.
    pub(crate) fn new(total: u64, engine: &EngineConfig) -> Result<Self, RuntimeError> {
        let pool_allowance = engine.retained_bound();
        // The smallest memory limit a deployment may have.
        let smallest = run_bytes(&Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        });
        let for_runs = total.saturating_sub(pool_allowance);
        if for_runs < smallest {
            return Err(RuntimeError::Engine(format!(
                "a memory budget of {total} bytes leaves no room for a run: the pool of {} \
                 instances may keep {pool_allowance} bytes resident",
                engine.pool_instances
            )));
        }
        let capacity = u32::try_from(for_runs / UNIT)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Ok(MemoryBudget {
            total,
            pool_allowance,
            capacity,
            units: Semaphore::new(capacity as usize),
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes` for a run, waiting for at most `patience` (in
    /// arrival order) if the budget is full.
    pub(crate) async fn reserve(
        &self,
        bytes: u64,
        patience: Duration,
    ) -> Result<Reservation<'_>, Refused> {
        let units = bytes.div_ceil(UNIT);
        let Some(units) = u32::try_from(units).ok().filter(|&u| u <= self.capacity) else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused {
                waited: Duration::ZERO,
            });
        };
        // Fails while others wait: permits go to waiters first.
        if let Ok(permit) = self.units.try_acquire_many(units) {
            return Ok(Reservation { _permit: permit });
        }
        self.waited.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let wait = self.units.acquire_many(units);
        match tokio::time::timeout(patience, wait).await {
            Ok(Ok(permit)) => Ok(Reservation { _permit: permit }),
            // The semaphore is never closed; a timeout it is.
            Ok(Err(_)) | Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Refused {
                    waited: start.elapsed(),
                })
            }
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by live runs' reservations.
    fn reserved(&self) -> u64 {
        let free = self.units.available_permits() as u64;
        (u64::from(self.capacity) - free.min(u64::from(self.capacity))) * UNIT
    }
}

/// Memory figures of a runtime, as `/metrics` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// The host memory budget (`--max-memory`).
    pub budget_bytes: u64,
    /// The part of it set aside for what the pool may keep resident.
    pub pool_allowance_bytes: u64,
    /// Reserved by runs now live (the budget in use).
    pub reserved_bytes: u64,
    /// Kept resident by the pool in memory and table slots no instance
    /// uses (wasmtime's own count). Fiber stacks are not zeroed, so
    /// wasmtime does not count theirs; the allowance covers them.
    pub pool_retained_bytes: u64,
    /// Linear memories live now.
    pub live_memories: u64,
    /// Memory slots used before and kept warm.
    pub warm_memory_slots: u64,
    /// Runs that had to wait for room, and runs refused, since open.
    pub runs_waited: u64,
    pub runs_refused: u64,
}

/// Reads a runtime's [`MemoryStats`]; also its `/metrics` collector.
#[derive(Clone)]
pub(crate) struct MemoryGauges {
    budget: Arc<MemoryBudget>,
    pool: Option<PoolingAllocatorMetrics>,
}

impl MemoryGauges {
    pub(crate) fn new(budget: Arc<MemoryBudget>, engine: &Engine) -> Self {
        MemoryGauges {
            budget,
            pool: engine.pooling_allocator_metrics(),
        }
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        let b = &self.budget;
        let (retained, live, warm) = self.pool.as_ref().map_or((0, 0, 0), |p| {
            (
                (p.unused_memory_bytes_resident() + p.unused_table_bytes_resident()) as u64,
                p.memories() as u64,
                u64::from(p.unused_warm_memories()),
            )
        });
        MemoryStats {
            budget_bytes: b.total,
            pool_allowance_bytes: b.pool_allowance,
            reserved_bytes: b.reserved(),
            pool_retained_bytes: retained,
            live_memories: live,
            warm_memory_slots: warm,
            runs_waited: b.waited.load(Ordering::Relaxed),
            runs_refused: b.refused.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for MemoryGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGauges").finish_non_exhaustive()
    }
}

impl Collector for MemoryGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats();
        let gauges: [(&str, &str, u64); 6] = [
            (
                "memory_budget_bytes",
                "Host memory budget for runs and the instance pool (serve --max-memory)",
                s.budget_bytes,
            ),
            (
                "memory_budget_pool_allowance_bytes",
                "Part of the budget set aside for memory the instance pool may keep resident",
                s.pool_allowance_bytes,
            ),
            (
                "memory_budget_reserved_bytes",
                "Part of the budget reserved by live runs",
                s.reserved_bytes,
            ),
            (
                "pool_retained_bytes",
                "Memory the instance pool keeps resident in unused memory and table slots",
                s.pool_retained_bytes,
            ),
            (
                "pool_live_memories",
                "Linear memories of live instances",
                s.live_memories,
            ),
            (
                "pool_warm_memory_slots",
                "Unused memory slots that were used before",
                s.warm_memory_slots,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "memory_budget_waits",
                "Runs that waited for room in the memory budget",
                s.runs_waited,
            ),
            (
                "memory_budget_refusals",
                "Runs not run for want of room in the memory budget",
                s.runs_refused,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
