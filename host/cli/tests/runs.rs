//! `GET /v1/runs` and `GET /v1/runs/{id}` against the daemon: every filter,
//! combined filters, pages walked while runs are recorded, one run by id
//! (found, missing, out of scope), the unknown-listener 404, bad input as
//! 400s, and retention (`serve --max-runs`, `--runs-max-age`) across a
//! restart.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use keyhole_tests::{PANICKER, PURE_READER, wasm};
use serde_json::{Value, json};

/// `prod` (spaces `team-a`, `team-b`) and `dev`; `moody` (the panicker:
/// `ok` on a calm event, `trap` otherwise) listens in prod, `reader` (the
/// pure reader: `guest_error` without its secret) in dev.
fn world(h: &Http) {
    assert_eq!(
        h.post_json("/v1/environments", &json!({"id": "prod"}))
            .status,
        201
    );
    assert_eq!(
        h.post_json("/v1/environments", &json!({"id": "dev"}))
            .status,
        201
    );
    for s in ["team-a", "team-b"] {
        let r = h.post_json("/v1/spaces", &json!({"id": s, "environmentId": "prod"}));
        assert_eq!(r.status, 201, "{r:?}");
    }
    let r = h.deploy(
        &json!({"name": "moody", "environmentId": "prod"}),
        &wasm(PANICKER),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = h.deploy(
        &json!({"name": "reader", "environmentId": "dev"}),
        &wasm(PURE_READER),
    );
    assert_eq!(r.status, 201, "{r:?}");
}

/// Emits an event; returns its one run.
fn emit(h: &Http, env: &str, space: Option<&str>, mood: &str) -> Value {
    let body =
        json!({"topic": "t", "environmentId": env, "spaceId": space, "payload": {"mood": mood}});
    let r = h.post_json("/v1/events", &body);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["runs"][0].clone()
}

/// The ids of a `GET /v1/runs` page, asserting a 200.
fn ids(h: &Http, query: &str) -> Vec<u64> {
    let r = h.get(&format!("/v1/runs?{query}"));
    assert_eq!(r.status, 200, "{query}: {r:?}");
    r.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

fn ms(run: &Value) -> u64 {
    let t = humantime::parse_rfc3339(run["startedAt"].as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn error(r: &Resp, status: u16) -> String {
    assert_eq!(r.status, status, "{r:?}");
    r.json()["error"].as_str().unwrap().to_string()
}

#[test]
fn runs_are_filtered_paged_and_shown_by_id() {
    let k = Install::new();
    let admin = k.init();
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    world(&h);
    // A few ms apart, so start times tell them apart.
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let a = emit(&h, "prod", Some("team-a"), "calm"); // 1 ok
    pause();
    let b = emit(&h, "prod", Some("team-b"), "storm"); // 2 trap
    pause();
    let c = emit(&h, "dev", None, "calm"); // 3 guest_error
    pause();
    let d = emit(&h, "prod", None, "calm"); // 4 ok
    let kinds: Vec<&Value> = [&a, &b, &c, &d]
        .iter()
        .map(|r| &r["outcome"]["kind"])
        .collect();
    assert_eq!(kinds, ["ok", "trap", "guest_error", "ok"]);

    // The page: runs newest first, and no next page.
    let page = h.get("/v1/runs").json();
    assert_eq!(
        page.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["next", "runs"]
    );
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["runs"][3], a, "a listed run is what emit returned");
    assert_eq!(ids(&h, ""), [4, 3, 2, 1]);
    // Each filter, then together.
    assert_eq!(ids(&h, "environmentId=dev"), [3]);
    assert_eq!(ids(&h, "spaceId=team-b"), [2]);
    assert_eq!(ids(&h, "listener=moody"), [4, 2, 1]);
    assert_eq!(ids(&h, "outcome=trap"), [2]);
    assert_eq!(ids(&h, "outcome=trap,guest_error"), [3, 2]);
    assert_eq!(
        ids(&h, &format!("eventId={}", c["eventId"].as_str().unwrap())),
        [3]
    );
    assert_eq!(ids(&h, &format!("since={}", ms(&c))), [4, 3]);
    assert_eq!(ids(&h, &format!("until={}", ms(&b))), [2, 1]);
    let rfc =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms(&c)));
    assert_eq!(ids(&h, &format!("since={rfc}")), [4, 3]);
    assert_eq!(
        ids(&h, "listener=moody&environmentId=prod&outcome=ok"),
        [4, 1]
    );
    assert_eq!(
        ids(
            &h,
            "listener=moody&environmentId=prod&spaceId=team-a&outcome=ok"
        ),
        [1]
    );
    assert_eq!(
        ids(&h, &format!("listener=moody&outcome=ok&until={}", ms(&c))),
        [1]
    );
    assert_eq!(ids(&h, "outcome=memory"), Vec::<u64>::new());

    // One run by id: the listed shape; missing and malformed ids.
    let r = h.get("/v1/runs/3");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), c);
    assert_eq!(error(&h.get("/v1/runs/99"), 404), "no run 99");
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        assert!(error(&h.get(&format!("/v1/runs/{bad}")), 400).contains("run id"));
    }

    // A scoped token: its runs only; another scope's run is "no run".
    let dev = h.create_token(&json!({"name": "dev", "role": "deployer", "environmentId": "dev"}));
    let t = h.with_token(&dev);
    assert_eq!(ids(&t, ""), [3]);
    assert_eq!(t.get("/v1/runs/3").json(), c);
    assert_eq!(error(&t.get("/v1/runs/2"), 404), "no run 2");
    assert_eq!(error(&t.get("/v1/runs/99"), 404), "no run 99");
    let r = t.get("/v1/runs?environmentId=prod");
    assert_eq!(
        (r.status, &r.json()["missingPermission"]),
        (403, &json!("runs:read"))
    );
    assert_eq!(ids(&t, "environmentId=dev&outcome=guest_error"), [3]);

    // Listeners: unknown is a 404; a removed one keeps its runs.
    assert_eq!(
        error(&h.get("/v1/runs?listener=nope"), 404),
        "no listener named nope"
    );
    assert_eq!(
        error(&t.get("/v1/runs?listener=moody"), 404),
        "no listener named moody"
    );
    assert_eq!(
        ids(&h, "listener=reader&outcome=ok"),
        Vec::<u64>::new(),
        "deployed: 200"
    );
    assert_eq!(h.delete("/v1/listeners/reader").status, 204);
    assert_eq!(ids(&h, "listener=reader"), [3]);
    assert_eq!(
        ids(&h, "listener=reader&outcome=ok"),
        Vec::<u64>::new(),
        "recorded: 200"
    );

    // Bad values are 400s that name the parameter.
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("before=0", "before"),
        ("before=x", "before"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("outcome=oops", "outcome"),
        ("outcome=ok,", "outcome"),
        ("environmentId=a.b", "environmentId"),
        ("spaceId=", "spaceId"),
        ("listener=no%20spaces", "listener"),
        ("eventId=", "eventId"),
        ("since=2000&until=1000", "since"),
        ("color=red", "color"),
    ] {
        let message = error(&h.get(&format!("/v1/runs?{query}")), 400);
        assert!(message.contains(names), "{query}: {message}");
    }
    assert!(error(&h.get("/v1/runs?outcome=oops"), 400).contains("guest_error"));
    assert!(
        error(
            &h.get(&format!("/v1/runs?listener={}", "x".repeat(10_000))),
            400
        )
        .len()
            < 300
    );
}

#[test]
fn pages_walk_every_run_once_while_runs_are_recorded() {
    let k = Install::new();
    let admin = k.init();
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    world(&h);
    for _ in 0..40 {
        emit(&h, "prod", None, "calm");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitter = {
        let (h, stop) = (server.http(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1_000 {
                emit(&h, "prod", Some("team-a"), "calm");
                n += 1;
            }
            n
        })
    };
    let (mut seen, mut before, started) = (Vec::new(), String::new(), Instant::now());
    loop {
        let page = h
            .get(&format!("/v1/runs?listener=moody&limit=6{before}"))
            .json();
        let runs = page["runs"].as_array().unwrap();
        seen.extend(runs.iter().map(|r| r["id"].as_u64().unwrap()));
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(runs.len(), 6, "only the last page is short");
                assert_eq!(
                    Some(next),
                    seen.last().copied(),
                    "next is the last id shown"
                );
                before = format!("&before={next}");
            }
            None => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(30) && seen.len() < 5_000,
            "the walk ends"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        emitter.join().unwrap() > 0,
        "runs were recorded during the walk"
    );
    let top = seen[0];
    assert!(top >= 40);
    assert_eq!(
        seen,
        (1..=top).rev().collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
}

#[test]
fn retention_by_count_and_by_age_holds_across_restarts() {
    let k = Install::new();
    let admin = k.init();
    let server = Server::start(&k, &admin, &["--max-runs", "5"]);
    let h = server.http();
    world(&h);
    for _ in 0..12 {
        emit(&h, "prod", None, "calm");
    }
    assert_eq!(ids(&h, ""), [12, 11, 10, 9, 8]);
    assert_eq!(error(&h.get("/v1/runs/7"), 404), "no run 7");
    assert!(server.terminate().success());

    let server = Server::start(&k, &admin, &["--max-runs", "5"]);
    let h = server.http();
    assert_eq!(ids(&h, ""), [12, 11, 10, 9, 8]);
    assert_eq!(emit(&h, "prod", None, "calm")["id"], 13, "ids continue");
    assert_eq!(ids(&h, "")[..2], [13, 12]);
    assert!(server.terminate().success());

    let aging = ["--max-runs", "5", "--runs-max-age", "1s"];
    let server = Server::start(&k, &admin, &aging);
    let h = server.http();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ids(&h, "").is_empty() {
        assert!(Instant::now() < deadline, "runs outlived --runs-max-age");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(emit(&h, "prod", None, "calm")["id"], 14);
    assert_eq!(ids(&h, ""), [14]);
    assert!(server.terminate().success());
    let server = Server::start(&k, &admin, &aging);
    assert_eq!(
        emit(&server.http(), "prod", None, "calm")["id"],
        15,
        "ids continue"
    );
    assert!(server.terminate().success());

    for bad in [
        &["--max-runs", "0"][..],
        &["--runs-max-age", "0s"],
        &["--runs-max-age", "soon"],
    ] {
        let out = k.run(&[&["serve", "--listen", "127.0.0.1:0"], bad].concat());
        assert_eq!(out.code, 2, "{bad:?}: {out:?}");
    }
}
