//! A LOCAL STAND-IN FOR THE SLACK API, for `scripts/demo.sh` only.
//!
//! It is not Slack and talks to nothing else: an HTTP/1.1 server on
//! 127.0.0.1 (the test suite's loopback stub server, [`StubServer`], on
//! hyper) that prints every request it receives (method,
//! path, `Authorization` header, body) and answers `{"ok":true}`, so the demo
//! can show a secret travelling from `keyhole secrets set` to an outbound
//! request. The tokens the demo uses are fake.
//!
//! Usage: `slack_stand_in [--port-file PATH]`. Binds 127.0.0.1:0, prints the
//! port, and writes it to PATH if given; serves until killed (or until the
//! stub server's connection bound, `MAX_CONNECTIONS`). Built by the demo with
//! `cargo build --release -p keyhole-stub-server --bin slack_stand_in`.

use std::io::Write;

use keyhole_stub_server::{Received, StubServer};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port_file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port-file" => port_file = args.next(),
            other => {
                eprintln!("usage: slack_stand_in [--port-file PATH] (unknown argument {other:?})");
                std::process::exit(2);
            }
        }
    }
    let server = StubServer::start_with(200, r#"{"ok":true}"#, print);
    println!(
        "[slack stand-in] local stand-in for the Slack API listening on {}",
        server.origin()
    );
    std::io::stdout().flush()?;
    if let Some(path) = port_file {
        // Write then rename, so a reader never sees a partial port number.
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, server.port.to_string())?;
        std::fs::rename(&tmp, &path)?;
    }
    server.wait();
    Ok(())
}

fn print(req: &Received) {
    println!(
        "[slack stand-in] {} {}\n[slack stand-in]   Authorization: {}\n[slack stand-in]   body: {}",
        req.method,
        req.path,
        req.header("authorization").unwrap_or("(none)"),
        req.body
    );
    let _ = std::io::stdout().flush();
}
