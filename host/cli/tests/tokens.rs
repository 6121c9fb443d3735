//! API tokens over their whole life: the CLI verbs, revocation seen by a
//! running daemon on the next request, expiry, "last used" written back,
//! the release 0.1 verb (`token reset`), and no token or hash in any
//! listing, log line, error or file of the data directory.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

fn unauthorized(r: &Resp) {
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
}

#[test]
fn a_revoked_token_is_refused_by_the_running_daemon_on_its_next_request() {
    let k = Install::new();
    let admin = k.init();
    let ci = token_from(&k.ok(&["token", "create", "ci", "--role", "deployer"]));
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    let t = h.with_token(&ci);
    assert_eq!(t.get("/v1/listeners").status, 200);

    // Revoked through the API: the very next request is a bare 401.
    assert_eq!(h.delete("/v1/tokens/ci").status, 204);
    unauthorized(&t.get("/v1/listeners"));
    assert_eq!(h.delete("/v1/tokens/ci").status, 404);

    // Made and revoked while the daemon runs, several times over.
    for i in 0..3 {
        let name = format!("short-{i}");
        let tok = h.create_token(&json!({"name": name, "role": "auditor"}));
        let t = h.with_token(&tok);
        assert_eq!(t.get("/v1/runs").status, 200);
        assert_eq!(h.delete(&format!("/v1/tokens/{name}")).status, 204);
        unauthorized(&t.get("/v1/runs"));
    }

    // Last used: in memory while serving, in the record after shutdown.
    let kept = h.create_token(&json!({"name": "kept", "role": "auditor"}));
    assert_eq!(h.with_token(&kept).get("/v1/runs").status, 200);
    let listed = h.get("/v1/tokens").json();
    let kept_info = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "kept")
        .unwrap()
        .clone();
    assert!(kept_info["lastUsedAt"].is_string(), "{kept_info}");
    assert_eq!(kept_info["createdBy"], "token:admin");
    assert!(server.terminate().success());
    let listed: serde_json::Value =
        serde_json::from_str(&k.ok(&["token", "list", "--json"])).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "kept"]);
    assert_eq!(listed[1]["lastUsedAt"], kept_info["lastUsedAt"]);
    assert!(
        listed[0]["lastUsedAt"].is_string(),
        "admin was used: {listed}"
    );

    // Revoked with the CLI while stopped: refused after a restart.
    k.ok(&["token", "revoke", "kept"]);
    let server = Server::start(&k, &admin, &[]);
    unauthorized(&server.http().with_token(&kept).get("/v1/runs"));
    assert!(server.terminate().success());
}

#[test]
fn an_expired_token_gets_a_bare_401() {
    let k = Install::new();
    let admin = k.init();
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    let created = Instant::now();
    let r = h.post_json(
        "/v1/tokens",
        &json!({"name": "brief", "role": "auditor", "expiresIn": "1s"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.json()["expiresAt"].is_string());
    let t = h.with_token(r.json()["token"].as_str().unwrap());
    let first = t.get("/v1/runs");
    if created.elapsed() < Duration::from_millis(800) {
        assert_eq!(first.status, 200, "{first:?}");
    }
    let deadline = created + Duration::from_secs(15);
    let r = loop {
        let r = t.get("/v1/runs");
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    unauthorized(&r);
    assert!(created.elapsed() >= Duration::from_millis(900));
    let listed = h.get("/v1/tokens").json();
    assert_eq!(listed[1]["name"], "brief");
    assert_eq!(listed[1]["expired"], true);
    assert!(server.terminate().success());
}

#[test]
fn token_verbs_and_the_release_0_1_reset() {
    let k = Install::new();
    let first = k.init();
    k.scopes("prod", &["team-a"]);
    let out = k.ok(&[
        "token",
        "create",
        "ci",
        "--role",
        "deployer",
        "--env",
        "prod",
        "--space",
        "team-a",
        "--expires",
        "30d",
    ]);
    assert!(
        out.contains("created token ci (role deployer, scope env:prod/space:team-a"),
        "{out}"
    );
    let ci = token_from(&out);
    assert!(ci.starts_with("kh_") && ci.len() == 67);

    let list = k.ok(&["token", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LAST USED"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("admin ") && lines[1].contains(" all "),
        "{list}"
    );
    assert!(
        lines[2].contains("env:prod/space:team-a") && lines[2].ends_with("never"),
        "{list}"
    );

    // Misuse: exit codes and messages.
    for (args, code) in [
        (&["token", "create", "ci", "--role", "auditor"][..], 1),
        (
            &["token", "create", "x", "--role", "admin", "--env", "prod"],
            2,
        ),
        (
            &["token", "create", "x", "--role", "auditor", "--env", "prod"],
            2,
        ),
        (
            &[
                "token", "create", "x", "--role", "deployer", "--env", "nope",
            ],
            3,
        ),
        (&["token", "create", "a.b", "--role", "auditor"], 2),
        (&["token", "create", "x", "--role", "root"], 2),
        (
            &[
                "token",
                "create",
                "x",
                "--role",
                "auditor",
                "--expires",
                "10ms",
            ],
            2,
        ),
        (
            &[
                "token", "create", "x", "--role", "deployer", "--space", "team-a",
            ],
            2,
        ),
        (&["token", "revoke", "nobody"], 3),
        (&["token", "rotate", "nobody"], 3),
    ] {
        let out = k.run(args);
        assert_eq!(out.code, code, "{args:?}: {out:?}");
    }

    // Rotate: a new secret, same role and scope; the old one is dead.
    let ci2 = token_from(&k.ok(&["token", "rotate", "ci"]));
    assert_ne!(ci, ci2);
    // The 0.1 verb still makes a new `admin`.
    let out = k.ok(&["token", "reset"]);
    let second = token_from(&out);
    assert!(out.contains("the old one no longer works"), "{out}");
    // A token file that cannot be written: the new token is still shown
    // (the old one is dead), and the failure said after it.
    let out = k.run(&["--token-file", "/dev/null/token", "token", "reset"]);
    assert_ne!(out.code, 0, "{out:?}");
    let third = token_from(&out.stdout);
    assert!(out.stderr.contains("printed above"), "{out:?}");
    let server = Server::start(&k, &third, &[]);
    let h = server.http();
    unauthorized(&h.with_token(&second).get("/v1/tokens"));
    unauthorized(&h.with_token(&first).get("/v1/tokens"));
    unauthorized(&h.with_token(&ci).get("/v1/listeners"));
    assert_eq!(h.with_token(&ci2).get("/v1/listeners").status, 200);
    let listed = h.get("/v1/tokens").json();
    assert_eq!(listed[0]["name"], "admin");
    let by = listed[0]["createdBy"].as_str().unwrap();
    assert!(by.starts_with("local:"), "{by}");
    assert_eq!(listed[1]["scope"], "env:prod/space:team-a");
    assert!(server.terminate().success());
}

/// `init` with a token file it cannot write: the admin token exists by
/// then, so it is printed all the same and the failure said after it; the
/// installation works with that token.
#[test]
fn init_prints_the_token_even_when_the_token_file_cannot_be_written() {
    let k = Install::new();
    let out = k.run(&["--token-file", "/dev/null/token", "init"]);
    assert_ne!(out.code, 0, "{out:?}");
    let admin = token_from(&out.stdout);
    assert!(out.stderr.contains("printed above"), "{out:?}");
    assert!(out.stderr.contains("/dev/null/token"), "{out:?}");
    let server = Server::start(&k, &admin, &[]);
    assert_eq!(server.http().get("/v1/tokens").status, 200);
    assert!(server.terminate().success());
}

#[test]
fn no_token_or_hash_in_listings_logs_errors_or_files() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &[]);
    let mut planted = vec![admin.clone()];
    planted.push(token_from(
        &k.ok(&["token", "create", "cli-made", "--role", "monitor"]),
    ));
    let log = k.dir.path().join("serve.log");
    let server = Server::start_logged(&k, &admin, &[], &log);
    let h = server.http();
    planted.push(
        h.create_token(&json!({"name": "api-made", "role": "deployer", "environmentId": "prod"})),
    );
    let mut seen = String::new();
    for t in &planted {
        let c = h.with_token(t);
        for path in [
            "/v1/tokens",
            "/v1/secrets?environmentId=prod",
            "/metrics",
            "/v1/runs",
            "/v1/audit",
        ] {
            seen += &c.get(path).body;
        }
        // Near misses of every kind.
        for bad in [&t[..66], &format!("{t}x"), &t.to_uppercase()] {
            seen += &h.send("GET", "/v1/tokens", Some(bad), None).body;
        }
    }
    seen += &h
        .post_json(
            "/v1/tokens",
            &json!({"name": "api-made", "role": "auditor"}),
        )
        .body;
    seen += &h.delete("/v1/tokens/nobody").body;
    seen += &h
        .post_json("/v1/tokens", &json!({"name": "x", "role": "root"}))
        .body;
    // A token pasted where a name belongs: refused before any audit entry
    // could keep it, and where another name's check comes after the entry
    // (an environment id), the entry keeps `kh_[redacted]` instead.
    for t in &planted {
        for r in [
            h.delete(&format!("/v1/tokens/{t}")),
            h.post_json(&format!("/v1/tokens/{t}/rotate"), &json!({})),
            h.post_json("/v1/tokens", &json!({"name": t, "role": "auditor"})),
        ] {
            assert_eq!(r.status, 400, "{r:?}");
            seen += &r.body;
        }
        let r = h.post_json("/v1/environments", &json!({"id": t}));
        assert_eq!(r.status, 400, "{r:?}");
        seen += &r.body;
        seen += &k.run(&["token", "revoke", t]).stderr;
    }
    let audit = h.get("/v1/audit?limit=1000").body;
    assert!(audit.contains("kh_[redacted]"), "{audit}");
    seen += &audit;
    assert!(server.terminate().success());
    seen += &k.ok(&["token", "list"]);
    seen += &k.ok(&["token", "list", "--json"]);
    seen += &k
        .run(&["token", "create", "cli-made", "--role", "monitor"])
        .stderr;
    seen += &std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.contains("api-made") && seen.contains("DEBUG"),
        "the log and lists were read"
    );

    let mut files = Vec::new();
    let mut dirs = vec![k.data.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(std::fs::read(&p).unwrap());
            }
        }
    }
    for t in &planted {
        let hash = hex::encode(Sha256::digest(t.as_bytes()));
        for needle in [&t[..], &t[3..], &hash[..], &hash[..32]] {
            assert!(!seen.contains(needle), "{needle} leaked");
        }
        for f in &files {
            let at = f.windows(t.len() - 3).any(|w| w == &t.as_bytes()[3..]);
            assert!(!at, "a token is in the data directory");
        }
    }
}
