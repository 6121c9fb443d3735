//! Safe defaults, as a user meets them: a data directory only its owner
//! can read whatever the umask, a key file others can read refused with
//! the command that fixes it, a sealed store that fails events up front
//! (CLI exit 5, API 503), and a key rotation that says where the new key
//! is. TLS is `tls.rs`.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use keyhole_tests::SECRET_READER;
use serde_json::json;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `dir` and everything below it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut below: Vec<PathBuf> = std::fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            out.append(&mut below);
        }
        i += 1;
    }
    out
}

/// Every directory under `data` is 0700 and every file 0600 (or
/// stricter); returns the paths checked, relative to `data`.
fn assert_private(data: &Path, when: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for p in tree(data) {
        let m = mode(&p);
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m & 0o077, 0, "{when}: {} is mode {m:04o}", p.display());
        assert_eq!(m, want, "{when}: {} is mode {m:04o}", p.display());
        seen.push(p.strip_prefix(data).unwrap().display().to_string());
    }
    seen
}

/// Runs keyhole from a shell with umask 000; asserts success.
fn loose(k: &Install, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = k
        .cmd_with_umask("000")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = Out::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "keyhole {args:?}: {out:?}");
    out.stdout
}

#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    let k = Install::new();
    let token = token_from(&loose(&k, &["init"], ""));
    assert_eq!(mode(&k.key), 0o600, "init writes the key 0600");
    assert_eq!(
        mode(k.key.parent().unwrap()),
        0o700,
        "in a directory it made 0700"
    );
    loose(&k, &["env", "create", "prod"], "");
    loose(&k, &["secrets", "set", "K", "--env", "prod"], "value-1");
    let deploy = ["deploy", SECRET_READER, "--name", "reader", "--env", "prod"];
    loose(&k, &deploy, "");
    loose(
        &k,
        &[
            "emit",
            "t",
            "--env",
            "prod",
            "--payload",
            r#"{"reads":[{"name":"K"}]}"#,
        ],
        "",
    );
    loose(&k, &["keys", "rotate"], "");
    assert_eq!(mode(&k.key), 0o600, "a rotation rewrites the key 0600");
    assert_private(&k.data, "after the CLI's writes");

    let server = Server::spawn(k.cmd_with_umask("000"), &k, &token, &[]);
    let h = server.http();
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "K2", "value": "value-2", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    h.create_token(&json!({"name": "ci", "role": "deployer"}));
    let seen = assert_private(&k.data, "while serving");
    assert!(seen.iter().any(|p| p == "serve.json"), "{seen:?}");
    assert!(server.terminate().success());

    let seen = assert_private(&k.data, "after serving");
    for expected in [
        "db",
        "keyhole.lock",
        "runs",
        "audit",
        "modules",
        "artifacts",
    ] {
        assert!(
            seen.iter().any(|p| p == expected),
            "no {expected} in {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|p| p.starts_with("db/")),
        "the database's files: {seen:?}"
    );
    assert!(seen.iter().any(|p| p.starts_with("runs/")), "{seen:?}");
    assert!(seen.iter().any(|p| p.starts_with("artifacts/")), "{seen:?}");
}

#[test]
fn a_data_directory_others_can_read_is_tightened_with_a_warning() {
    let k = Install::new();
    k.init();
    chmod(&k.data, 0o755);
    let out = k.run(&["env", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("was open to others (mode 0755); tightened it to 0700"),
        "{out:?}"
    );
    assert_eq!(mode(&k.data), 0o700);
    // Quiet once it is private.
    let out = k.run(&["env", "list"]);
    assert!(!out.stderr.contains("tightened"), "{out:?}");
}

/// The store opened with the key file refused (or missing) is sealed: the
/// CLI's value verbs and `emit` exit 5 with the reason, metadata still
/// works, the daemon answers 503, and no listener runs.
fn assert_sealed(k: &Install, token: &str, reason: &str) {
    let runs_before = k.ok(&["runs", "--json"]);
    for (args, stdin) in [
        (&["secrets", "set", "K2", "--env", "prod"][..], "v"),
        (&["emit", "t", "--env", "prod"][..], ""),
        (&["keys", "rotate"][..], ""),
    ] {
        let out = k.run_stdin(args, stdin);
        assert_eq!(out.code, 5, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(&format!("sealed: {reason}")),
            "{args:?}: {out:?}"
        );
    }
    assert!(k.ok(&["secrets", "list", "--env", "prod"]).contains("K"));

    let server = Server::start(k, token, &[]);
    let h = server.http();
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], format!("sealed: {reason}"));
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "K2", "value": "v", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 503, "{r:?}");
    // A bad event is still a bad request.
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "nope"}),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert!(server.terminate().success());
    assert_eq!(k.ok(&["runs", "--json"]), runs_before, "no listener ran");
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_command_that_fixes_it() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    assert_eq!(
        k.run_stdin(&["secrets", "set", "K", "--env", "prod"], "v")
            .code,
        0
    );
    k.ok(&["deploy", SECRET_READER, "--name", "reader", "--env", "prod"]);

    let key = k.key.display().to_string();
    for loose_mode in [0o644, 0o640] {
        chmod(&k.key, loose_mode);
        let reason = format!(
            "key file {key} is readable by others (mode {loose_mode:04o}); run: chmod 600 {key}"
        );
        assert_sealed(&k, &token, &reason);
    }
    chmod(&k.key, 0o600);
    let out = k.ok(&["emit", "t", "--env", "prod"]);
    assert!(out.contains("1 run") && out.contains("ok"), "{out}");

    // A missing key seals the same way.
    let away = k.dir.path().join("away.key");
    std::fs::rename(&k.key, &away).unwrap();
    assert_sealed(&k, &token, &format!("master key not available at {key}"));
    std::fs::rename(&away, &k.key).unwrap();
}

#[test]
fn a_key_rotation_says_where_the_new_key_is() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    let backup = std::fs::read(&k.key).unwrap();
    let out = k.ok(&["keys", "rotate"]);
    let key = k.key.display().to_string();
    let notice = format!(
        "the new master key (v2) is in {key}, which no longer holds the old one: back it up \
         again, apart from the data directory; backups of the key file made before this \
         rotation no longer open the store"
    );
    assert!(out.contains(&notice), "{out}");
    // A DEK rotation leaves the master key as it was: no notice.
    assert!(
        !k.ok(&["keys", "rotate", "--scope", "env:prod"])
            .contains("master key")
    );

    let server = Server::start(&k, &token, &[]);
    let h = server.http();
    let r = h.post_raw("/v1/keys/rotate", Vec::new());
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["keyFile"], key.as_str());
    assert_eq!(v["notice"], notice.replace("(v2)", "(v3)"));
    let r = h.post_json("/v1/keys/rotate", &json!({"scope": "env:prod"}));
    assert_eq!(
        (r.json()["keyFile"].clone(), r.json()["notice"].clone()),
        (json!(null), json!(null))
    );
    assert!(server.terminate().success());

    // And it is true: the old key file no longer opens the store.
    let old = k.dir.path().join("old.key");
    std::fs::write(&old, backup).unwrap();
    chmod(&old, 0o600);
    let out = Out::from(
        k.cmd()
            .env("KEYHOLE_KEY_FILE", &old)
            .args(["secrets", "set", "K", "--env", "prod", "--value", "v"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("does not open this store"), "{out:?}");
}
