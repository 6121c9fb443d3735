//! A real HTTP/1.1 server on loopback that records what it receives and
//! answers with a fixed response: a stand-in for Slack in tests and the demo.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub use crate::http1::Received;
use crate::http1::{read_request, write_json};

pub struct StubServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl StubServer {
    /// Starts a server answering every request with `status` and `body`.
    pub fn start(status: u16, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &log, status, body);
                });
            }
        });
        StubServer { port, received }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    if let Some(req) = read_request(&mut reader)? {
        log.lock().unwrap().push(req);
        let mut out = stream;
        write_json(&mut out, status, body)?;
    }
    Ok(())
}
