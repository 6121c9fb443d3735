//! How a fan-out and a batch spread their runs (`runtime/src/lanes.rs`):
//! the emitting task is a lane itself and takes the next run as it goes, so
//! a dispatch never waits for a lane that has not started.

use std::sync::mpsc;
use std::time::Duration;

use keyhole_runtime::{DeploySpec, Event, Outcome, RunRecord};
use keyhole_tests::*;

fn all_ok(runs: &[RunRecord], n: usize) {
    assert_eq!(runs.len(), n);
    for r in runs {
        assert!(matches!(r.outcome, Outcome::Ok { .. }), "{r:?}");
    }
}

/// With the blocking pool's one thread held, a fan-out to nine pure
/// listeners and a batch of three events still finish: the emitting task
/// runs them all, and the lanes queued behind the held thread find nothing
/// left when they start. (With fixed shares, each dispatch waited for its
/// queued lanes, that is, for the held thread.)
#[test]
fn a_dispatch_does_not_wait_for_a_lane_that_has_not_started() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let h = Harness::with_neighbour();
    for i in 0..8 {
        h.deploy(PURE_READER, DeploySpec::new(&format!("reader{i}"), "prod"));
    }
    let (started, wait_started) = mpsc::channel();
    let (release, held) = mpsc::channel::<()>();
    let blocker = tokio.spawn_blocking(move || {
        started.send(()).unwrap();
        let _ = held.recv_timeout(Duration::from_secs(60));
    });
    wait_started
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking thread is held");

    let rt = h.runtime.clone();
    let dispatches = async move {
        let runs = rt.emit(Event::new("tick", "prod", None)).await.unwrap();
        let events = (0..3).map(|_| Event::new("tick", "prod", None)).collect();
        (runs, rt.emit_many(events).await)
    };
    let (runs, batch) = tokio
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), dispatches).await })
        .expect("the dispatches finished while the blocking pool was held");
    all_ok(&runs, 9);
    assert_eq!(batch.len(), 3);
    for runs in batch {
        all_ok(&runs.unwrap(), 9);
    }
    release.send(()).unwrap();
    tokio.block_on(blocker).unwrap();
    assert_eq!(h.runtime.runs(None, 100).unwrap().len(), 36);
}
