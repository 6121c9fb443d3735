//! keyhole against its floor on the same guest: latency in interleaved
//! rounds, and throughput on one thread and on all.

use std::time::Duration;

use anyhow::Result;

use crate::Plan;
use crate::cases::{self, Keyhole};
use crate::floor::{self, Floor};
use crate::stats::{self, Samples, Summary};

/// Floor and keyhole on the same guest: a warm-up of each, then rounds of
/// each in turn, so machine noise hits both alike.
pub fn compare(floor: &Floor, kh: &Keyhole, plan: &Plan) -> Result<(Summary, Summary)> {
    let fixed = floor::wit_event("ev_bench");
    let mut floor_s = Samples::with_capacity(plan.rounds * plan.batch);
    let mut kh_s = Samples::with_capacity(plan.rounds * plan.batch);
    let mut scratch = Samples::default();
    for _ in 0..plan.batch {
        floor::check_fingerprint(&floor.event(&fixed)?, floor::CONSTANT_SECRET)?;
        cases::timed_emit(&kh.runtime, &mut scratch, 1)?;
    }
    for _ in 0..plan.rounds {
        for _ in 0..plan.batch {
            let ev = floor::wit_event(&cases::event().id);
            floor_s.time(|| floor.event(&ev))?;
        }
        for _ in 0..plan.batch {
            cases::timed_emit(&kh.runtime, &mut kh_s, 1)?;
        }
    }
    Ok((floor_s.summary(), kh_s.summary()))
}

/// Events per second for the floor and for keyhole, on one thread and on all.
pub struct Throughput {
    pub floor_1: f64,
    pub floor_all: f64,
    pub keyhole_1: f64,
    pub keyhole_all: f64,
}

impl Throughput {
    pub fn measure(floor: &Floor, kh: &Keyhole, threads: usize, span: Duration) -> Result<Self> {
        let floor_tp = |n| {
            stats::throughput(n, span, || {
                floor.event(&floor::wit_event("ev_bench")).map(drop)
            })
        };
        Ok(Throughput {
            floor_1: floor_tp(1)?,
            floor_all: floor_tp(threads)?,
            keyhole_1: cases::throughput(&kh.runtime, 1, span)?,
            keyhole_all: cases::throughput(&kh.runtime, threads, span)?,
        })
    }
}
