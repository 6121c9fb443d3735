//! A LOCAL STAND-IN FOR THE SLACK API, for `scripts/demo.sh` only.
//!
//! It is not Slack and talks to nothing else: a std-only HTTP/1.1 server on
//! 127.0.0.1 that prints every request it receives (method, path,
//! `Authorization` header, body) and answers `{"ok":true}`, so the demo can
//! show a secret travelling from `keyhole secrets set` to an outbound
//! request. The tokens the demo uses are fake.
//!
//! Usage: `slack_stand_in [--port-file PATH]`. Binds 127.0.0.1:0, prints the
//! port, and writes it to PATH if given. Bodies may be sent with
//! Content-Length or chunked transfer encoding.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};

// The request parser the test suite's stand-in uses too.
#[path = "../../../tests/src/http1.rs"]
#[allow(dead_code)]
mod http1;

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
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    println!(
        "[slack stand-in] local stand-in for the Slack API listening on http://127.0.0.1:{port}"
    );
    if let Some(path) = port_file {
        // Write then rename, so a reader never sees a partial port number.
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, port.to_string())?;
        std::fs::rename(&tmp, &path)?;
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = handle(stream) {
                        println!("[slack stand-in] connection error: {e}");
                    }
                });
            }
            Err(e) => println!("[slack stand-in] accept error: {e}"),
        }
    }
    Ok(())
}

fn handle(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(req) = http1::read_request(&mut reader)? else {
        return Ok(());
    };
    println!(
        "[slack stand-in] {} {}\n[slack stand-in]   Authorization: {}\n[slack stand-in]   body: {}",
        req.method,
        req.path,
        req.header("authorization").unwrap_or("(none)"),
        req.body
    );
    std::io::stdout().flush()?;
    let mut out = stream;
    http1::write_json(&mut out, 200, r#"{"ok":true}"#)
}
