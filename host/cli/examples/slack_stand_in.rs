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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

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
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let len = header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut buf = vec![0; len];
        reader.read_exact(&mut buf)?;
        buf
    };
    println!(
        "[slack stand-in] {method} {path}\n[slack stand-in]   Authorization: {}\n[slack stand-in]   body: {}",
        header("authorization").unwrap_or("(none)"),
        String::from_utf8_lossy(&body)
    );
    std::io::stdout().flush()?;
    let answer = r#"{"ok":true}"#;
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    out.flush()
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = size.trim().split(';').next().unwrap_or_default();
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
        if n == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk)?;
        body.extend_from_slice(&chunk[..n]);
    }
}
