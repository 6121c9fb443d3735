//! The CLI as a user drives it: init → env/space → secrets → deploy → emit →
//! runs, and the exit code and message of each kind of misuse.

mod common;

use common::*;
use keyhole_tests::{BIG_MEMORY, EXAMPLE_RUST_LISTENER, SECRET_READER};

const ENV_VALUE: &str = "xoxb-env-planted-value-93f1c";
const SPACE_VALUE: &str = "xoxb-space-override-77aa0e1";

#[test]
fn init_secrets_deploy_emit_runs() {
    let k = Install::new();
    let out = k.ok(&["init"]);
    let token = token_from(&out);
    assert_eq!(token.len(), 67, "{out}");
    assert!(k.key.exists() && !k.key.starts_with(&k.data));
    flow(&k, out);
}

/// The same verbs and assertions while `keyhole serve` holds the data
/// directory: the CLI finds the daemon (`serve.json`) and sends each verb
/// to its API with the token `init` wrote beside the key.
#[test]
fn the_same_flow_through_a_running_daemon() {
    let k = Install::new();
    let out = k.ok(&["init"]);
    let token = token_from(&out);
    let token_file = k.key.with_file_name("token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    assert_eq!(mode(&token_file), 0o600);
    let server = Server::start(&k, &token, &[]);
    flow(&k, out);
    // Every change went through the daemon, as the token.
    let audit = k.ok(&["audit", "tail", "--limit", "1000"]);
    assert!(
        audit.contains("token:admin secret.set env:prod/SLACK_TOKEN ok"),
        "{audit}"
    );
    // Only `init` worked on the data directory itself.
    assert_eq!(audit.matches(" local:").count(), 1, "{audit}");
    assert!(server.terminate().success());
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Everything after `init`: scopes, secrets, deploy, emit, runs, rotation,
/// removal. `seen` collects all output, which must hold no secret value.
fn flow(k: &Install, mut seen: String) {
    seen += &k.scopes("prod", &["team-a"]);
    assert!(k.ok(&["env", "list"]).contains("prod"));
    assert!(k.ok(&["space", "list", "--env", "prod"]).contains("team-a"));

    let set = |args: &[&str], value: &str| {
        let out = k.run_stdin(args, &format!("{value}\n"));
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout + &out.stderr
    };
    let out = set(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        ENV_VALUE,
    );
    assert!(
        out.contains("set SLACK_TOKEN in env:prod (version 1)"),
        "{out}"
    );
    seen += &out;
    let out = set(
        &[
            "secrets",
            "set",
            "SLACK_TOKEN",
            "--env",
            "prod",
            "--space",
            "team-a",
        ],
        SPACE_VALUE,
    );
    assert!(out.contains("space:team-a (version 1)"), "{out}");
    seen += &out;

    // --value works but warns about shell history.
    let out = k.run(&[
        "secrets", "set", "OTHER", "--env", "prod", "--value", "v-123456",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("shell history"), "{out:?}");

    let env_list = k.ok(&["secrets", "list", "--env", "prod"]);
    assert!(env_list.contains("SLACK_TOKEN") && env_list.contains("environment (prod)"));
    assert!(env_list.contains("OTHER"));
    let space_list = k.ok(&["secrets", "list", "--env", "prod", "--space", "team-a"]);
    assert!(
        space_list.contains("space override (team-a)"),
        "{space_list}"
    );
    assert!(space_list.contains("OTHER") && space_list.contains("environment (prod)"));
    let json: serde_json::Value = serde_json::from_str(&k.ok(&[
        "secrets", "list", "--env", "prod", "--space", "team-a", "--json",
    ]))
    .unwrap();
    let slack = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SLACK_TOKEN")
        .unwrap();
    assert_eq!(slack["id"], "space:team-a:SLACK_TOKEN");
    assert_eq!(slack["provenance"], "space-override");
    seen += &env_list;
    seen += &space_list;

    let out = k.ok(&[
        "deploy",
        EXAMPLE_RUST_LISTENER,
        "--name",
        "hello",
        "--env",
        "prod",
        "--topic",
        "action:*",
        "--setting",
        "greeting=hi",
        "--timeout",
        "2s",
        "--memory",
        "32MiB",
    ]);
    assert!(out.contains("deployed hello"), "{out}");
    let list = k.ok(&["listeners", "list"]);
    for want in [
        "hello",
        "env prod",
        "action:*",
        "greeting=hi",
        "timeout 2s",
        "32",
        "sha256:",
    ] {
        assert!(list.contains(want), "{want} missing from {list}");
    }

    let out = k.ok(&[
        "emit",
        "action:triggered",
        "--env",
        "prod",
        "--space",
        "team-a",
        "--payload",
        r#"{"action":"notify-team"}"#,
    ]);
    assert!(out.contains("1 run"), "{out}");
    let line = out.lines().find(|l| l.contains("hello")).expect("run line");
    assert!(line.contains(" ok "), "{line}");
    assert!(
        line.contains(&format!("token has {} characters", SPACE_VALUE.len())),
        "{line}"
    );
    seen += &out;
    let out = k.ok(&["emit", "action:triggered", "--env", "prod"]);
    assert!(out.contains(&format!("token has {} characters", ENV_VALUE.len())));
    assert!(
        k.ok(&["emit", "other", "--env", "prod"])
            .contains("no listener matched")
    );

    // A failing guest is an outcome, not a failure of `emit`.
    k.scopes("dev", &[]);
    k.ok(&[
        "deploy",
        EXAMPLE_RUST_LISTENER,
        "--name",
        "hello-dev",
        "--env",
        "dev",
    ]);
    let out = k.ok(&["emit", "x", "--env", "dev"]);
    assert!(
        out.contains("guest_error") && out.contains("set SLACK_TOKEN first"),
        "{out}"
    );

    let runs = k.ok(&["runs"]);
    assert!(runs.contains("hello") && runs.contains("ok") && runs.contains("guest_error"));
    seen += &runs;
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["runs", "--listener", "hello", "--json"])).unwrap();
    let runs = json.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r["listener"] == "hello" && r["outcome"]["kind"] == "ok")
    );
    assert_eq!(runs[0]["secretsRead"][0], "SLACK_TOKEN");
    let one: serde_json::Value =
        serde_json::from_str(&k.ok(&["runs", "--limit", "1", "--json"])).unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    // Filters, one run in full, and what does not exist.
    let failed: serde_json::Value = serde_json::from_str(&k.ok(&[
        "runs",
        "--outcome",
        "guest_error",
        "--env",
        "dev",
        "--since",
        "1h",
        "--json",
    ]))
    .unwrap();
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["listener"], "hello-dev");
    let id = runs[0]["id"].as_u64().unwrap().to_string();
    let shown = k.ok(&["runs", "show", &id]);
    assert!(shown.starts_with(&format!("run {id}\n")), "{shown}");
    assert!(shown.contains("secrets:    SLACK_TOKEN"), "{shown}");
    seen += &shown;
    let out = k.run(&["runs", "--listener", "nope"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("no listener named nope"), "{out:?}");
    assert_eq!(k.run(&["runs", "show", "999999"]).code, 3);
    assert_eq!(k.run(&["runs", "--since", "yesterdayish"]).code, 2);
    seen += &json.to_string();

    assert!(k.ok(&["keys", "rotate"]).contains("rotated master key"));
    assert!(
        k.ok(&["keys", "rotate", "--scope", "space:team-a"])
            .contains("data key of space:team-a")
    );
    let out = k.ok(&[
        "emit",
        "action:triggered",
        "--env",
        "prod",
        "--space",
        "team-a",
    ]);
    assert!(out.contains(&format!("token has {} characters", SPACE_VALUE.len())));

    k.ok(&[
        "secrets",
        "rm",
        "SLACK_TOKEN",
        "--env",
        "prod",
        "--space",
        "team-a",
    ]);
    let list = k.ok(&["secrets", "list", "--env", "prod", "--space", "team-a"]);
    assert!(!list.contains("space override"), "{list}");
    let one = k.ok(&["listeners", "show", "hello"]);
    assert!(
        one.starts_with("hello\n") && one.contains("sha256:"),
        "{one}"
    );
    k.ok(&["listeners", "rm", "hello"]);
    assert!(!k.ok(&["listeners", "list"]).contains("hello\n"));

    // One thing by id; deleting scopes, refused while they hold anything.
    let secret = k.ok(&["secrets", "show", "SLACK_TOKEN", "--env", "prod"]);
    assert!(secret.contains("version:  1"), "{secret}");
    seen += &secret;
    assert!(
        k.ok(&["env", "show", "prod"])
            .starts_with("environment prod\n")
    );
    assert!(
        k.ok(&["space", "show", "team-a"])
            .contains("environment: prod")
    );
    let out = k.run(&["env", "rm", "dev"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("still holds") && out.stderr.contains("1 listener"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("--force"),
        "{out:?}"
    );
    let out = k.ok(&["env", "delete", "dev", "--force"]);
    assert!(
        out.starts_with("deleted environment dev with 0 secrets, 0 spaces, 1 listener"),
        "{out}"
    );
    assert_eq!(k.run(&["env", "show", "dev"]).code, 3);
    assert!(!k.ok(&["listeners", "list"]).contains("hello-dev"));
    k.ok(&["space", "create", "empty", "--env", "prod"]);
    assert_eq!(k.ok(&["space", "rm", "empty"]), "deleted space empty\n");

    for value in [ENV_VALUE, SPACE_VALUE] {
        assert!(!seen.contains(value), "a secret value was printed");
    }
}

#[test]
fn misuse_has_clear_messages_and_exit_codes() {
    let k = Install::new();
    k.init();
    k.scopes("prod", &[]);
    misuse(&k);
    misuse_of_the_data_directory(&k);
}

/// The same answers while a daemon holds the data directory.
#[test]
fn misuse_through_a_running_daemon_has_the_same_answers() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    let server = Server::start(&k, &token, &[]);
    misuse(&k);
    assert!(server.terminate().success());
}

/// Misuse of the verbs: exit codes and messages.
fn misuse(k: &Install) {
    // 3: unknown environment, with a hint naming the fix.
    let out = k.run_stdin(&["secrets", "set", "A", "--env", "staging"], "v");
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains("error: unknown environment \"staging\""),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("hint: create it with `keyhole env create staging`")
    );
    assert_eq!(k.run(&["emit", "t", "--env", "staging"]).code, 3);
    assert_eq!(k.run(&["secrets", "rm", "NOPE", "--env", "prod"]).code, 3);
    assert_eq!(k.run(&["listeners", "rm", "nope"]).code, 3);
    assert_eq!(
        k.run(&[
            "deploy",
            "/nonexistent.wasm",
            "--name",
            "x",
            "--env",
            "prod"
        ])
        .code,
        3
    );

    // 2: invalid input names the rule; clap usage errors.
    let out = k.run_stdin(&["secrets", "set", "9lives", "--env", "prod"], "v");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("must start with a letter or '_'"),
        "{out:?}"
    );
    let out = k.run_stdin(&["secrets", "set", "A B", "--env", "prod"], "v");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("may contain only"), "{out:?}");
    let out = k.run_stdin(&["secrets", "set", "EMPTY", "--env", "prod"], "\n");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("must not be empty"), "{out:?}");
    assert_eq!(k.run(&["secrets", "set"]).code, 2);
    assert_eq!(
        k.run(&[
            "deploy", "x.wasm", "--name", "x", "--env", "prod", "--memory", "lots"
        ])
        .code,
        2
    );
    let garbage = k.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let out = k.run(&[
        "deploy",
        garbage.to_str().unwrap(),
        "--name",
        "g",
        "--env",
        "prod",
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not a WebAssembly binary"), "{out:?}");
    let out = k.run(&["emit", "t", "--env", "prod", "--payload", "{oops"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not valid JSON"), "{out:?}");
}

/// Misuse of the data directory and its key, which only the CLI working on
/// the directory itself sees.
fn misuse_of_the_data_directory(k: &Install) {
    // 3: a --data that does not exist (a typo) is not made into a new,
    // empty store that no daemon serves.
    let typo = k.dir.path().join("dat");
    let out = Out::from(
        k.cmd()
            .env("KEYHOLE_DATA", &typo)
            .args(["env", "create", "lost"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("no data directory at"), "{out:?}");
    assert!(out.stderr.contains("keyhole init"), "{out:?}");
    assert!(!typo.exists(), "the mistyped directory was made");
    // 5: missing key (sealed) names the key path; metadata still works.
    let k2 = k.dir.path().join("elsewhere.key");
    let sealed = |args: &[&str], stdin: &str| {
        let mut c = k.cmd();
        c.env("KEYHOLE_KEY_FILE", &k2)
            .args(args)
            .stdin(std::process::Stdio::piped());
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        feed(&mut child, stdin);
        Out::from(child.wait_with_output().unwrap())
    };
    let out = sealed(&["secrets", "set", "A", "--env", "prod"], "v");
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr.contains("sealed: master key not available at"),
        "{out:?}"
    );
    assert!(out.stderr.contains(k2.to_str().unwrap()), "{out:?}");
    assert_eq!(sealed(&["keys", "rotate"], "").code, 5);
    assert_eq!(sealed(&["secrets", "list", "--env", "prod"], "").code, 0);
    // A wrong key is sealed too.
    let out = k
        .cmd()
        .env("KEYHOLE_MASTER_KEY", "11".repeat(32))
        .args(["keys", "rotate", "--scope", "env:prod"])
        .output()
        .unwrap();
    let out = Out::from(out);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("does not open this store"), "{out:?}");

    // init twice refuses to overwrite the key.
    let before = std::fs::read(&k.key).unwrap();
    let out = k.run(&["init"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("already exists") && out.stderr.contains("never overwrites"));
    assert_eq!(std::fs::read(&k.key).unwrap(), before);

    // A key file inside the data directory is refused.
    let k3 = Install::new();
    let inside = k3.data.join("master.key");
    let out = Out::from(
        k3.cmd()
            .env("KEYHOLE_KEY_FILE", &inside)
            .arg("init")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("inside the data directory"), "{out:?}");
    assert!(!inside.exists());

    // Inline key text: init writes no file.
    let k4 = Install::new();
    let out = Out::from(
        k4.cmd()
            .env("KEYHOLE_MASTER_KEY", "22".repeat(32))
            .arg("init")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!k4.key.exists());
}

#[test]
fn every_verb_has_help() {
    let k = Install::new();
    let verbs: &[&[&str]] = &[
        &[],
        &["init"],
        &["token", "reset"],
        &["token", "create"],
        &["token", "list"],
        &["token", "revoke"],
        &["token", "rotate"],
        &["env"],
        &["env", "create"],
        &["env", "list"],
        &["space", "create"],
        &["space", "list"],
        &["secrets", "set"],
        &["secrets", "list"],
        &["secrets", "rm"],
        &["keys", "rotate"],
        &["deploy"],
        &["listeners", "list"],
        &["listeners", "rm"],
        &["emit"],
        &["runs"],
        &["serve"],
    ];
    for verb in verbs {
        let mut args = verb.to_vec();
        args.push("--help");
        let out = k.run(&args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(
            out.stdout.contains("Usage: keyhole"),
            "{args:?}: {}",
            out.stdout
        );
    }
    assert!(k.run(&["--help"]).stdout.contains("Exit codes:"));
    assert!(
        !k.data.exists(),
        "--help must not create the data directory"
    );
}

/// With a daemon holding the data directory, the CLI talks to it; without
/// a usable token, or with a token lacking the permission, it says so
/// (exit 6); a bad or unreachable `--server` is said plainly.
#[test]
fn the_cli_talks_to_the_daemon_and_says_when_it_cannot() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    let server = Server::start(&k, &token, &[]);
    for args in [
        &["env", "list"][..],
        &["secrets", "list", "--env", "prod"],
        &["emit", "t", "--env", "prod"],
        &["listeners", "list"],
    ] {
        let out = k.run(args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }
    let run_with = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = k.cmd();
        for (key, value) in envs {
            c.env(key, value);
        }
        Out::from(c.args(args).output().unwrap())
    };

    // No token anywhere: exit 6, naming both ways to give one.
    let nowhere = k.dir.path().join("no-such-token");
    let out = run_with(
        &[("KEYHOLE_TOKEN_FILE", nowhere.to_str().unwrap())],
        &["env", "list"],
    );
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("needs an API token"), "{out:?}");
    assert!(out.stderr.contains("KEYHOLE_TOKEN"), "{out:?}");
    // A token file others may read is not used (mode as ssh wants).
    let token_file = k.key.with_file_name("token");
    let mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o644);
    let out = k.run(&["env", "list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("readable or writable by others"),
        "{out:?}"
    );
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
    assert!(!out.stderr.contains(&token), "{out:?}");
    mode(0o600);
    assert_eq!(k.run(&["env", "list"]).code, 0);
    // A wrong token: exit 6.
    let out = run_with(&[("KEYHOLE_TOKEN", &"kh_0".repeat(16))], &["env", "list"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("refused the token"), "{out:?}");
    // A token without the permission: exit 6, naming it.
    let auditor = token_from(&k.ok(&["token", "create", "aud", "--role", "auditor"]));
    let out = run_with(&[("KEYHOLE_TOKEN", &auditor)], &["env", "create", "x"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("environments:write"), "{out:?}");
    // The same daemon named with --server, and the token in KEYHOLE_TOKEN.
    let out = run_with(
        &[("KEYHOLE_TOKEN", &token)],
        &["--server", &server.base, "env", "list"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("prod"), "{out:?}");
    // A server that is not a URL, or where nothing listens.
    let out = run_with(
        &[("KEYHOLE_TOKEN", &token)],
        &["--server", "ftp://x", "env", "list"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    let out = run_with(
        &[("KEYHOLE_TOKEN", &token)],
        &["--server", "http://127.0.0.1:1", "env", "list"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cannot reach"), "{out:?}");
    // Plain http:// off loopback would send the token in clear text:
    // refused before any connection (192.0.2.1 is a documentation
    // address; nothing is sent to it).
    for server in ["http://192.0.2.1:7700", "http://daemon.example:7700"] {
        let out = run_with(
            &[("KEYHOLE_TOKEN", &token)],
            &["--server", server, "env", "list"],
        );
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("unencrypted"), "{out:?}");
        assert!(out.stderr.contains("--insecure-http"), "{out:?}");
        assert!(!out.stderr.contains(&token), "{out:?}");
    }
    // `token reset` needs the data directory itself.
    let out = k.run(&["token", "reset"]);
    assert_eq!(out.code, 4, "{out:?}");
    for raw in [
        "could not acquire",
        "WouldBlock",
        "temporarily unavailable",
        "sled",
    ] {
        assert!(!out.stderr.contains(raw), "raw lock error leaked: {out:?}");
    }

    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!k.data.join("serve.json").exists());
    assert!(k.ok(&["env", "list"]).contains("prod"));
}

/// `keyhole deploy` of a module that could never run, or of a directory,
/// is invalid input (exit 2) with a message saying why; nothing deployed.
#[test]
fn deploying_what_cannot_run_is_invalid_input() {
    let k = Install::new();
    k.init();
    k.scopes("prod", &[]);
    let deploy = |file: &str, extra: &[&str]| {
        let mut args = vec!["deploy", file, "--name", "x", "--env", "prod"];
        args.extend_from_slice(extra);
        k.run(&args)
    };

    let out = deploy(BIG_MEMORY, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "the module needs 601 MiB of memory at start; the most a listener may have is 512 MiB"
        ),
        "{out:?}"
    );
    assert!(!out.stderr.contains("pooling allocator"), "{out:?}");

    let out = deploy(SECRET_READER, &["--memory", "1MiB"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("of memory at start; this deployment's memory limit is 1 MiB"),
        "{out:?}"
    );

    let dir = k.dir.path().join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let out = deploy(dir.to_str().unwrap(), &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("is a directory") && out.stderr.contains(".wasm"),
        "{out:?}"
    );

    assert!(k.ok(&["listeners", "list"]).starts_with("no listeners"));
}

/// `audit tail --follow` prints entries as they are written, through a
/// daemon; without one it is refused at once (it would hold the data
/// directory, so nothing could write an entry while it waited).
#[test]
fn audit_tail_follows_a_daemon_and_is_refused_without_one() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    let k = Install::new();
    let token = k.init();
    let args = ["audit", "tail", "--follow", "--limit", "1"];
    // Bounded: the command before this check never ended.
    let mut alone = k
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while alone.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = alone.kill();
    let out = Out::from(alone.wait_with_output().unwrap());
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("needs a running daemon"), "{out:?}");

    let server = Server::start(&k, &token, &[]);
    let mut follow = k
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // What happens after it started is printed as it is written.
    k.ok(&["env", "create", "followed-env"]);
    let until = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < until && !seen.iter().any(|l: &String| l.contains("followed-env")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("followed-env") && l.contains(" ok")),
        "{seen:?}"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
