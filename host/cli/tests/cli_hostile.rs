//! Every CLI verb with hostile values in each of its arguments: empty,
//! huge, control characters, traversal, number edges, non-ASCII, flag-like.
//! Each run must end with the exit code of bad input or of something not
//! found (never "runtime error", a panic or a signal), a
//! failure must say why on stderr in a few lines (not echo 70 KB back), no
//! output may hold the stored secret's value, and afterwards the
//! installation is as it was where no verb was asked to change it, and its
//! audit chain verifies.

mod common;

use common::{Install, Out};
use keyhole_tests::{SECRET_READER, all_bytes, contains};

/// The stored secret's value: no output or file may show it.
const PLANT: &str = "kh-hostile-cli-plant-90d1c4e2";

/// What a careless or hostile caller passes. (An argument cannot hold NUL.)
fn hostile_values() -> Vec<String> {
    vec![
        String::new(),
        "x".repeat(70_000),
        "a\u{7}b\r\nc\t".into(),
        "../../../etc/passwd".into(),
        "-1".into(),
        "18446744073709551616".into(),
        "é中😀".into(),
        "--env".into(),
        "%FF%FE".into(),
    ]
}

/// The verbs, `{}` where the hostile value goes. Each is a template that
/// would do something sensible with a sensible value there.
fn templates(reader: &str) -> Vec<Vec<String>> {
    let t: &[&[&str]] = &[
        &["token", "create", "{}", "--role", "auditor"],
        &["token", "create", "t1", "--role", "{}"],
        &[
            "token",
            "create",
            "t2",
            "--role",
            "secrets-writer",
            "--env",
            "{}",
        ],
        &[
            "token",
            "create",
            "t3",
            "--role",
            "auditor",
            "--expires",
            "{}",
        ],
        &["token", "revoke", "{}"],
        &["token", "rotate", "{}"],
        &["env", "create", "{}"],
        &["env", "show", "{}"],
        &["env", "rm", "{}"],
        &["space", "create", "{}", "--env", "prod"],
        &["space", "create", "s2", "--env", "{}"],
        &["space", "show", "{}"],
        &["space", "rm", "{}"],
        &["secrets", "set", "{}", "--env", "prod"],
        &["secrets", "set", "N1", "--env", "{}"],
        &["secrets", "set", "N2", "--env", "prod", "--space", "{}"],
        &["secrets", "set", "N3", "--env", "prod", "--topics", "{}"],
        &[
            "secrets",
            "set",
            "N4",
            "--env",
            "prod",
            "--expect-version",
            "{}",
        ],
        &[
            "secrets",
            "set",
            "N5",
            "--env",
            "prod",
            "--keep-versions",
            "{}",
        ],
        &["secrets", "config", "--versions", "{}"],
        &["secrets", "list", "--env", "{}"],
        &["secrets", "list", "--env", "prod", "--space", "{}"],
        &["secrets", "show", "{}", "--env", "prod"],
        &["secrets", "rm", "{}", "--env", "prod"],
        &["secrets", "history", "{}", "--env", "prod"],
        &[
            "secrets",
            "rollback",
            "TOKEN",
            "--env",
            "prod",
            "--version",
            "{}",
        ],
        &["secrets", "undelete", "{}", "--env", "prod"],
        &[
            "secrets",
            "destroy",
            "TOKEN",
            "--env",
            "prod",
            "--version",
            "{}",
        ],
        &["keys", "rotate", "--scope", "{}"],
        &["deploy", "{}", "--name", "d0", "--env", "prod"],
        &["deploy", "@", "--name", "{}", "--env", "prod"],
        &["listeners", "show", "{}"],
        &["listeners", "rm", "{}"],
        &["emit", "{}", "--env", "prod"],
        &["emit", "greet:x", "--env", "prod", "--payload", "{}"],
        &["emit", "greet:x", "--env", "prod", "--min-revision", "{}"],
        &["emit", "--batch", "{}", "--env", "prod"],
        &["env", "list", "--data", "{}"],
        &["env", "list", "--key-file", "{}"],
        &["runs", "show", "{}"],
        &["runs", "--before", "{}"],
        &["runs", "--since", "{}"],
        &["runs", "--limit", "{}"],
        &["runs", "--outcome", "{}"],
        &["audit", "tail", "--since", "{}"],
        &["audit", "tail", "--limit", "{}"],
        &["audit", "tail", "--outcome", "{}"],
    ];
    t.iter()
        .map(|args| {
            args.iter()
                .map(|a| {
                    if *a == "@" {
                        reader.to_owned()
                    } else {
                        (*a).to_owned()
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_verb_answers_hostile_arguments_with_a_short_error_and_keeps_the_data() {
    let k = Install::new();
    k.init();
    k.ok(&["env", "create", "prod"]);
    k.ok(&["space", "create", "team-a", "--env", "prod"]);
    let set = k.run_stdin(&["secrets", "set", "TOKEN", "--env", "prod"], PLANT);
    assert_eq!(set.code, 0, "{set:?}");
    let args = [
        "secrets", "set", "TOKEN", "--env", "prod", "--space", "team-a",
    ];
    let over = k.run_stdin(&args, &format!("{PLANT}-space"));
    assert_eq!(over.code, 0, "{over:?}");
    let reader = std::fs::canonicalize(SECRET_READER).unwrap();
    let reader = reader.to_str().unwrap();
    k.ok(&[
        "deploy", reader, "--name", "reader", "--env", "prod", "--topic", "greet:*",
    ]);
    let before = state(&k);

    // Relative paths (`--data 18446744073709551616` makes that data
    // directory) land in a directory of the test's own, never in the
    // source tree.
    let cwd = k.dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let mut runs = 0;
    for template in templates(reader) {
        for value in hostile_values() {
            let args: Vec<&str> = template
                .iter()
                .map(|a| {
                    if a == "{}" {
                        value.as_str()
                    } else {
                        a.as_str()
                    }
                })
                .collect();
            let out = run_in(&k, &cwd, &args);
            let shown: String = value.chars().take(30).collect();
            check(&format!("{} ({shown:?})", template.join(" ")), &out);
            runs += 1;
        }
    }
    assert!(runs > 400, "{runs} runs");

    // Only what a verb was asked for changed: every new name is one a
    // template or a hostile value supplied; nothing was removed.
    let after = state(&k);
    let mut named: Vec<String> = hostile_values();
    named.extend(templates(reader).into_iter().flatten());
    for line in after.iter().filter(|l| !before.contains(l)) {
        // `secret env:prod:NAME v1`: the name after the scope.
        let word = line.split_whitespace().nth(1).unwrap_or_default();
        let name = word.rsplit(':').next().unwrap_or(word);
        assert!(
            named.iter().any(|n| n == name),
            "{line} was made by no verb; now: {after:?}"
        );
    }
    let removed: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(removed.is_empty(), "a hostile verb removed {removed:?}");
    let shown = k.ok(&["secrets", "show", "TOKEN", "--env", "prod"]);
    assert!(!shown.contains(PLANT), "{shown}");
    let verify = k.run(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(!contains(&all_bytes(&k.data), PLANT));
}

/// Runs the binary as `k` does, from `cwd`; a secret's value, where a
/// verb reads one, comes from stdin.
fn run_in(k: &Install, cwd: &std::path::Path, args: &[&str]) -> Out {
    k.run_stdin_in(cwd, args, "v")
}

/// One run's answer: an exit code, a short reason on failure, no value.
fn check(what: &str, out: &Out) {
    // 0 accepted, 2 invalid input, 3 not found, 5 a key that cannot be
    // read (`keyhole --help`): never 1, "runtime or other error", for what
    // the caller typed; a panic is 101, a signal -1.
    let sealed = what.contains("--key-file") && out.code == 5;
    assert!(
        [0, 2, 3].contains(&out.code) || sealed,
        "{what}: exit {}: {}",
        out.code,
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    if out.code != 0 {
        assert!(
            !out.stderr.trim().is_empty(),
            "{what}: failed without a word"
        );
    }
    assert!(
        out.stderr.len() < 2_000,
        "{what}: {} bytes of error: {:.300}",
        out.stderr.len(),
        out.stderr
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(PLANT), "{what}: the value in the output");
    }
}

/// Environments, spaces, secrets of each (with versions), listeners and
/// tokens, one line each.
fn state(k: &Install) -> Vec<String> {
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&k.ok(args)).expect("--json output")
    };
    let mut out = Vec::new();
    let secrets = |args: &[&str], out: &mut Vec<String>| {
        for s in json(args).as_array().unwrap() {
            out.push(format!(
                "secret {} v{}",
                s["id"].as_str().unwrap(),
                s["version"]
            ));
        }
    };
    for line in k.ok(&["env", "list"]).lines().skip(1) {
        let env = line.split_whitespace().next().unwrap();
        out.push(format!("environment {env}"));
        secrets(&["secrets", "list", "--env", env, "--json"], &mut out);
    }
    for line in k.ok(&["space", "list"]).lines().skip(1) {
        let mut words = line.split_whitespace();
        let (space, env) = (words.next().unwrap(), words.next().unwrap());
        out.push(format!("space {space}"));
        let args = ["secrets", "list", "--env", env, "--space", space, "--json"];
        secrets(&args, &mut out);
    }
    for l in json(&["listeners", "list", "--json"]).as_array().unwrap() {
        out.push(format!("listener {}", l["name"].as_str().unwrap()));
    }
    for t in json(&["token", "list", "--json"]).as_array().unwrap() {
        out.push(format!("token {}", t["name"].as_str().unwrap()));
    }
    out.sort();
    out.dedup();
    out
}

/// A listener's text reaches the operator's terminal escaped: a name it
/// asks for with a newline cannot forge a line of `audit tail`, and an
/// escape sequence in it cannot rewrite the screen (`audit tail`, `runs`,
/// `runs show`).
#[test]
fn a_listeners_text_cannot_forge_terminal_lines() {
    let k = Install::new();
    k.init();
    k.ok(&["env", "create", "prod"]);
    let reader = std::fs::canonicalize(SECRET_READER).unwrap();
    k.ok(&[
        "deploy",
        reader.to_str().unwrap(),
        "--name",
        "reader",
        "--env",
        "prod",
    ]);
    let forged = "2026-01-01T00:00:00.000Z #42     admin  local:root token.revoke token:ci ok";
    let name = format!("X\n{forged}\u{1b}[2K\r");
    let payload = serde_json::json!({ "reads": [{ "name": name }] }).to_string();
    let out = k.ok(&["emit", "t", "--env", "prod", "--payload", &payload]);
    assert!(out.contains("1 run"), "{out}");

    let tail = k.ok(&["audit", "tail", "--limit", "1000"]);
    assert!(
        tail.contains(&format!("X\\n{forged}\\u{{1b}}[2K\\r")),
        "the name, escaped: {tail}"
    );
    for (what, out) in [
        ("audit tail", tail),
        ("runs", k.ok(&["runs"])),
        ("runs show", k.ok(&["runs", "show", "1"])),
    ] {
        assert!(
            !out.lines().any(|l| l.starts_with("2026-01-01")),
            "{what} printed a forged line: {out}"
        );
        assert!(!out.contains(['\u{1b}', '\r']), "{what}: {out:?}");
    }
}

/// Input without end (`/dev/zero`) as a module or a secret value is
/// refused for its size, not read until memory runs out.
#[test]
fn endless_input_is_refused_for_its_size() {
    let k = Install::new();
    k.init();
    k.ok(&["env", "create", "prod"]);
    let out = k.run(&["deploy", "/dev/zero", "--name", "zero", "--env", "prod"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("larger than the most"), "{out:?}");
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let out = common::Out::from(
        k.cmd()
            .args(["secrets", "set", "Z", "--env", "prod"])
            .stdin(zero)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("longer than 65536 bytes"), "{out:?}");
    assert!(!k.ok(&["secrets", "list", "--env", "prod"]).contains('Z'));
}
