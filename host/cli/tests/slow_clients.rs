//! Slow and idle clients against the real daemon, over raw sockets: a
//! trickled request head and an idle keep-alive connection are cut off by
//! `--header-timeout`, and a body that stops arriving is answered 408 (then
//! the connection is closed) by `--request-timeout`, and a client that stops
//! reading is closed by `--write-timeout`. Other clients are served
//! meanwhile. Beyond `--max-connections`, a client waits for a free slot.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The timeouts the daemon is started with in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);

/// A daemon with `--header-timeout 1s --request-timeout 1s`.
fn start() -> (Install, Server) {
    start_with(&[])
}

/// The same, with `extra` serve flags.
fn start_with(extra: &[&str]) -> (Install, Server) {
    let k = Install::new();
    let token = k.init();
    let mut args = vec!["--header-timeout", "1s", "--request-timeout", "1s"];
    args.extend_from_slice(extra);
    let server = Server::start(&k, &token, &args);
    (k, server)
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.strip_prefix("http://").expect("http address");
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// What one poll of a socket found.
enum Poll {
    Data(Vec<u8>),
    Nothing,
    Closed,
}

fn poll(s: &mut TcpStream) -> Poll {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Poll::Closed,
        Ok(n) => Poll::Data(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Poll::Nothing,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Poll::Closed,
        Err(e) => panic!("reading the socket: {e}"),
    }
}

/// Reads until the server closes the connection (at most 4 s); returns
/// everything it sent.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        match poll(s) {
            Poll::Data(d) => got.extend_from_slice(&d),
            Poll::Nothing => {}
            Poll::Closed => return got,
        }
    }
    panic!(
        "the server did not close the connection; it sent {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Asserts `elapsed` is the 1 s timeout, give or take scheduling.
fn assert_about_timeout(elapsed: Duration) {
    assert!(
        elapsed >= TIMEOUT - Duration::from_millis(200) && elapsed < TIMEOUT * 3,
        "closed after {elapsed:?}, expected about {TIMEOUT:?}"
    );
}

#[test]
fn a_trickled_request_head_is_cut_off_while_others_are_served() {
    let (_k, server) = start();
    let mut slow = connect(&server);
    let start = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    slow.write_all(head).unwrap();

    // Another client is served meanwhile.
    let r = server.http().send("GET", "/healthz", None, None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(start.elapsed() < TIMEOUT, "the other request took too long");

    // One more header byte every 100 ms does not keep the connection open.
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "a trickling client was never cut off"
        );
        if slow.write_all(b"a").is_err() {
            break start.elapsed();
        }
        match poll(&mut slow) {
            Poll::Closed => break start.elapsed(),
            Poll::Nothing => {}
            Poll::Data(d) => panic!(
                "expected no response, got {:?}",
                String::from_utf8_lossy(&d)
            ),
        }
    };
    assert_about_timeout(closed_after);
    // And the daemon still serves.
    assert_eq!(
        server.http().send("GET", "/healthz", None, None).status,
        200
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (_k, server) = start();
    let mut s = connect(&server);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while !response.ends_with(b"}") {
        assert!(Instant::now() < deadline, "no response");
        match poll(&mut s) {
            Poll::Data(d) => response.extend_from_slice(&d),
            Poll::Nothing => {}
            Poll::Closed => panic!("closed before the response was complete"),
        }
    }
    let idle_from = Instant::now();
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.starts_with("http/1.1 200 "), "{text}");
    assert!(!text.contains("connection: close"), "{text}");

    assert!(read_to_close(&mut s).is_empty(), "nothing more is sent");
    assert_about_timeout(idle_from.elapsed());
}

#[test]
fn a_body_that_stops_arriving_gets_408_and_the_connection_closed() {
    let (_k, server) = start();
    let post = |body: &str| {
        format!(
            "POST /v1/environments HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            server.token,
            body.len(),
        )
    };

    // A body sent in two parts well within the timeout is fine.
    let body = r#"{"id": "prod"}"#;
    let mut s = connect(&server);
    s.write_all(post(body).as_bytes()).unwrap();
    s.write_all(&body.as_bytes()[..5]).unwrap();
    std::thread::sleep(TIMEOUT / 3);
    s.write_all(&body.as_bytes()[5..]).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_close(&mut s)).unwrap();
    assert!(text.starts_with("HTTP/1.1 201 "), "{text}");

    // Content-Length: 100 and then 10 bytes: 408, JSON error, closed.
    let mut s = connect(&server);
    let head = post(&"x".repeat(100));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(br#"{"id": "st"#).unwrap();
    let start = Instant::now();
    let text = String::from_utf8(read_to_close(&mut s)).unwrap();
    assert_about_timeout(start.elapsed());
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 408 "), "{text}");
    assert!(head.contains("\r\nconnection: close"), "{text}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(v["error"], "request body not received within 1s", "{v}");

    // Nothing was created by the stalled request; the daemon still serves.
    let envs = server.http().get("/v1/environments").json();
    assert_eq!(envs.as_array().map(Vec::len), Some(1), "{envs}");
}

/// An accepted event runs to the end even if its client hangs up first: the
/// run is recorded although nobody is there to read the response.
#[test]
fn an_event_whose_client_hangs_up_still_runs_and_is_recorded() {
    let (_k, server) = start();
    let h = server.http();
    assert_eq!(
        h.post_json("/v1/environments", &serde_json::json!({"id": "prod"}))
            .status,
        201
    );
    let spec = serde_json::json!({
        "name": "slow", "environmentId": "prod", "limits": {"timeoutMs": 700}
    });
    let r = h.deploy(&spec, &keyhole_tests::wasm(keyhole_tests::SPIN_LOOP));
    assert_eq!(r.status, 201, "{r:?}");

    let body = r#"{"topic":"t","environmentId":"prod"}"#;
    let mut s = connect(&server);
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.token,
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(150)); // the run has started
    drop(s);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let runs = h.get("/v1/runs").json()["runs"].clone();
        if let Some(run) = runs.as_array().and_then(|a| a.first()) {
            assert_eq!(run["listener"], "slow", "{run}");
            assert_eq!(run["outcome"]["kind"], "deadline", "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "no run recorded: {runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (_k, server) = start_with(&["--max-connections", "2"]);
    // Two silent clients take both slots until the header timeout cuts them off.
    let start = Instant::now();
    let mut idle = [connect(&server), connect(&server)];
    // Give the daemon time to accept both before the third client arrives.
    std::thread::sleep(Duration::from_millis(200));
    let r = server.http().send("GET", "/healthz", None, None);
    let waited = start.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        waited >= TIMEOUT - Duration::from_millis(200) && waited < TIMEOUT * 3,
        "the third connection was served after {waited:?}; expected it to wait \
         about {TIMEOUT:?} for a slot"
    );
    for s in &mut idle {
        assert!(matches!(poll(s), Poll::Closed), "an idle client still open");
    }
    // With slots free again, a request is served at once.
    let again = Instant::now();
    assert_eq!(
        server.http().send("GET", "/healthz", None, None).status,
        200
    );
    assert!(again.elapsed() < TIMEOUT, "took {:?}", again.elapsed());
}

/// A client that sends requests but never reads the responses stalls the
/// daemon's writes once the socket buffers are full; `--write-timeout` then
/// closes the connection, so it cannot hold its slot (here the only one).
#[test]
fn a_client_that_never_reads_is_closed_after_the_write_timeout() {
    let (_k, server) = start_with(&["--write-timeout", "1s", "--max-connections", "1"]);
    let mut s = connect(&server);
    // 1,000 pipelined requests for the 27 KB OpenAPI document: far more
    // response than loopback's socket buffers hold.
    let request = format!(
        "GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        server.token
    );
    s.write_all(request.repeat(1000).as_bytes()).unwrap();
    let start = Instant::now();
    // The only slot is held until the stalled connection is closed.
    let r = server.http().send("GET", "/healthz", None, None);
    let waited = start.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        waited >= TIMEOUT - Duration::from_millis(300) && waited < TIMEOUT * 4,
        "the next client was served after {waited:?}; expected about {TIMEOUT:?}"
    );
    // And the stalled connection is closed (reset, as requests are unread).
    read_to_close(&mut s);
}
