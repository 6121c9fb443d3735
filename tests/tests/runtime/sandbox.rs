//! Hostile guests: loops, memory bombs, recursion, panics, and probes for
//! ambient authority. Each is contained, and neighbours keep running.

use keyhole_runtime::{DeploySpec, Outcome};
use keyhole_tests::*;
use serde_json::Value;

#[test]
pub fn spin_loop() {
    let h = Harness::with_neighbour();
    h.deploy(SPIN_LOOP, limited("spin", 100, 64));
    for _ in 0..2 {
        let runs = h.emit("tick", "prod", None, "{}");
        let spin = runs.iter().find(|r| r.listener == "spin").unwrap();
        assert_eq!(spin.outcome, Outcome::Deadline { timeout_ms: 100 });
        assert!(
            spin.duration_us >= 100_000 && spin.duration_us < 2_000_000,
            "stopped after {} µs",
            spin.duration_us
        );
        assert_neighbour_ok(&runs);
    }
}

/// The same loop in a pure component (no WASI imports), which
/// `emit_blocking` calls synchronously, without a fiber: the deadline holds
/// there too, and through the async `emit`.
#[test]
pub fn pure_spin_loop() {
    let h = Harness::with_neighbour();
    h.deploy(PURE_SPIN_LOOP, limited("spin", 100, 64));
    let runs = h.emit("tick", "prod", None, "{}");
    let spin = runs.iter().find(|r| r.listener == "spin").unwrap();
    assert_eq!(spin.outcome, Outcome::Deadline { timeout_ms: 100 });
    assert!(spin.duration_us < 2_000_000, "{} µs", spin.duration_us);
    assert_neighbour_ok(&runs);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs = tokio
        .block_on(
            h.runtime
                .emit(keyhole_runtime::Event::new("tick", "prod", None)),
        )
        .unwrap();
    let spin = runs.iter().find(|r| r.listener == "spin").unwrap();
    assert_eq!(spin.outcome, Outcome::Deadline { timeout_ms: 100 });
    assert_neighbour_ok(&runs);
}

/// Runs execute on the emitting task's thread, so a guest that spins must
/// yield it: on a single-threaded tokio runtime, neighbour events keep
/// completing while a spinning run waits out its 1 s deadline.
#[tokio::test(flavor = "current_thread")]
pub async fn a_spinning_guest_yields_its_thread() {
    let h = Harness::with_neighbour();
    let mut spec = limited("spin", 1_000, 64);
    spec.topics = vec!["spin".into()];
    h.deploy(SPIN_LOOP, spec);
    let started = std::time::Instant::now();
    let rt = h.runtime.clone();
    let spinning = tokio::spawn(async move {
        rt.emit(keyhole_runtime::Event::new("spin", "prod", None))
            .await
    });
    tokio::task::yield_now().await; // let the spinner start
    let mut neighbour_done = Vec::new();
    for _ in 0..20 {
        let runs = h
            .runtime
            .emit(keyhole_runtime::Event::new("tick", "prod", None))
            .await
            .unwrap();
        assert_neighbour_ok(&runs);
        neighbour_done.push(started.elapsed());
    }
    let runs = spinning.await.unwrap().unwrap();
    let spin = runs.iter().find(|r| r.listener == "spin").unwrap();
    assert_eq!(spin.outcome, Outcome::Deadline { timeout_ms: 1_000 });
    assert_neighbour_ok(&runs);
    let spin_ended = started.elapsed();
    assert!(
        spin_ended >= std::time::Duration::from_secs(1),
        "{spin_ended:?}"
    );
    assert!(
        *neighbour_done.last().unwrap() < std::time::Duration::from_millis(700),
        "neighbours waited for the spinner: {neighbour_done:?}"
    );
}

#[test]
pub fn memory_bomb() {
    let h = Harness::with_neighbour();
    h.deploy(MEMORY_BOMB, limited("bomb", 5_000, 16));
    for _ in 0..2 {
        let runs = h.emit("tick", "prod", None, "{}");
        let bomb = runs.iter().find(|r| r.listener == "bomb").unwrap();
        assert_eq!(
            bomb.outcome,
            Outcome::Memory {
                limit_bytes: 16 << 20
            }
        );
        assert_neighbour_ok(&runs);
    }
}

#[test]
pub fn deep_recursion() {
    let h = Harness::with_neighbour();
    h.deploy(DEEP_RECURSION, limited("deep", 5_000, 64));
    for _ in 0..2 {
        let runs = h.emit("tick", "prod", None, "{}");
        let deep = runs.iter().find(|r| r.listener == "deep").unwrap();
        match &deep.outcome {
            Outcome::Trap { trap, .. } => assert_eq!(trap, "stack_overflow"),
            other => panic!("expected a stack overflow, got {other:?}"),
        }
        assert_neighbour_ok(&runs);
    }
}

#[test]
pub fn panicker() {
    let h = Harness::with_neighbour();
    h.deploy(PANICKER, DeploySpec::new("panicky", "prod"));
    let runs = h.emit("tick", "prod", None, "{}");
    let p = runs.iter().find(|r| r.listener == "panicky").unwrap();
    match &p.outcome {
        Outcome::Trap { trap, .. } => assert_eq!(trap, "unreachable"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(
        p.stderr.contains("listener gave up on event"),
        "panic message captured: {:?}",
        p.stderr
    );
    assert_neighbour_ok(&runs);
    // A fresh instance per event: the next run is unaffected.
    let calm = h.run_of("panicky", "tick", "prod", None, r#"{"calm":true}"#);
    assert_eq!(
        calm.outcome,
        Outcome::Ok {
            value: "calm".into()
        }
    );
}

/// Acceptance: the prober finds no environment variable, argument or file.
#[test]
pub fn wasi_prober() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.deploy(WASI_PROBER, DeploySpec::new("prober", "prod"));
    let run = h.run_of("prober", "x", "prod", None, "{}");
    let Outcome::Ok { value } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    let report: Value = serde_json::from_str(value).unwrap();
    assert_eq!(report["env"], Value::Array(vec![]), "{report}");
    assert_eq!(report["args"], Value::Array(vec![]), "{report}");
    assert_eq!(report["files"], Value::Array(vec![]), "{report}");
    assert_eq!(report["wrote"], false, "{report}");
    assert!(
        report["wall_clock_secs"].as_u64().unwrap() > 1_600_000_000,
        "clocks work"
    );
}

/// Acceptance: no sockets. A guest that uses std::net imports wasi:sockets
/// and is refused at deploy time, naming the import; nothing is stored.
#[test]
pub fn socket_prober() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    let err = h
        .runtime
        .deploy(DeploySpec::new("sockets", "prod"), &wasm(SOCKET_PROBER))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("import `wasi:sockets/"), "{msg}");
    assert!(h.runtime.deployments().is_empty());
}

/// Acceptance: a component with no WASI imports at all runs too.
#[test]
pub fn pure_reader() {
    let h = Harness::with_neighbour();
    let runs = h.emit("tick", "prod", None, "{}");
    assert_neighbour_ok(&runs);
    assert!(runs[0].stdout.is_empty() && runs[0].stderr.is_empty());
}

/// The benchmark's trivial listener: same answer as `pure-reader`, and its
/// memory never grows (the guest reports an error if it did). An event
/// larger than its 64 KiB arena is a recorded trap, not a host failure.
#[test]
pub fn arena_reader() {
    let h = Harness::with_neighbour();
    h.deploy(ARENA_READER, DeploySpec::new("arena", "prod"));
    for _ in 0..3 {
        let runs = h.emit("tick", "prod", None, "{}");
        assert_eq!(runs.len(), 2);
        assert_neighbour_ok(&runs);
        let by = |name: &str| &runs.iter().find(|r| r.listener == name).unwrap().outcome;
        assert_eq!(by("arena"), by("neighbour"));
    }
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
    let runs = h.emit("tick", "prod", None, &big);
    assert_neighbour_ok(&runs);
    let arena = runs.iter().find(|r| r.listener == "arena").unwrap();
    assert!(
        matches!(arena.outcome, Outcome::Trap { .. }),
        "{:?}",
        arena.outcome
    );
}

/// Many events at once through the async path: every run recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatch_records_every_run() {
    let h = Harness::with_neighbour();
    h.deploy(PANICKER, DeploySpec::new("panicky", "prod"));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let rt = h.runtime.clone();
        let payload = if i % 2 == 0 { "{}" } else { r#"{"calm":true}"# };
        let ev = keyhole_runtime::Event::new("tick", "prod", None).with_payload(payload);
        tasks.push(tokio::spawn(async move { rt.emit(ev).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let runs = t.await.unwrap().unwrap();
        assert_eq!(runs.len(), 2);
        assert_neighbour_ok(&runs);
        ok += runs
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Ok { .. }))
            .count();
    }
    assert_eq!(ok, 75);
    assert_eq!(h.runtime.runs(None, 1000).unwrap().len(), 100);
}

/// One event to six listeners that spin until their deadline, with room
/// for two runs at a time: the fan-out shares the runs over the worker
/// threads, but never more than two run at once (their recorded intervals
/// never overlap three deep), and every one is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_keeps_the_cap_on_concurrent_runs() {
    let h = Harness::with_config(keyhole_runtime::RuntimeConfig {
        max_concurrent_runs: 2,
        ..Default::default()
    });
    h.scopes("prod", &[]);
    for i in 0..6 {
        h.deploy(SPIN_LOOP, limited(&format!("spin{i}"), 50, 64));
    }
    let runs = h
        .runtime
        .emit(keyhole_runtime::Event::new("tick", "prod", None))
        .await
        .unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.listener.as_str()).collect();
    assert_eq!(
        names,
        ["spin0", "spin1", "spin2", "spin3", "spin4", "spin5"]
    );
    // Starts are recorded to the millisecond: each interval is taken to
    // end a millisecond early, so back-to-back runs never seem to overlap.
    let mut edges = Vec::new();
    for r in &runs {
        assert_eq!(r.outcome, Outcome::Deadline { timeout_ms: 50 });
        let start = r.started_at_ms * 1000;
        edges.push((start, 1));
        edges.push((start + r.duration_us - 1000, -1));
    }
    edges.sort();
    let (mut depth, mut deepest) = (0, 0);
    for (_, step) in edges {
        depth += step;
        deepest = deepest.max(depth);
    }
    assert_eq!(deepest, 2, "runs at once");
}
