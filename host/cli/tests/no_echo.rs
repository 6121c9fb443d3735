//! A secret typed at a terminal is not echoed: `keyhole secrets set` runs
//! in a real pseudo-terminal (util-linux `script`), the test types the
//! value after the prompt, and the value is nowhere in what the terminal
//! showed, while the secret is stored.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use keyhole_tests::EXAMPLE_RUST_LISTENER;

const VALUE: &str = "typed-at-a-tty-5b0e9c2d";

/// Single-quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn a_value_typed_at_a_terminal_is_not_echoed() {
    let k = Install::new();
    k.init();
    k.scopes("prod", &[]);

    let command = [BIN, "secrets", "set", "SLACK_TOKEN", "--env", "prod"]
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("KEYHOLE_DATA", &k.data)
        .env("KEYHOLE_KEY_FILE", &k.key)
        .env_remove("KEYHOLE_MASTER_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `script` (util-linux)");

    // Everything the terminal shows, as it arrives.
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();

    // Type only once the prompt is up (and echo is off), as a person would.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !shown().contains("input is hidden") {
        assert!(
            Instant::now() < deadline,
            "no prompt on the terminal: {:?}",
            shown()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{VALUE}\r").as_bytes()).unwrap();
    stdin.flush().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "keyhole did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    let screen = shown();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(
        screen.contains("set SLACK_TOKEN in env:prod (version 1)"),
        "{screen}"
    );
    assert!(!screen.contains(VALUE), "the value was echoed: {screen}");
    assert!(
        !screen.contains(&VALUE[..8]),
        "part of the value was echoed: {screen}"
    );
    // Stored as typed (no line ending): the example listener reports the
    // length of the SLACK_TOKEN it reads.
    k.ok(&[
        "deploy",
        EXAMPLE_RUST_LISTENER,
        "--name",
        "hello",
        "--env",
        "prod",
    ]);
    let out = k.ok(&["emit", "t", "--env", "prod"]);
    assert!(
        out.contains(&format!("token has {} characters", VALUE.len())),
        "{out}"
    );
}
