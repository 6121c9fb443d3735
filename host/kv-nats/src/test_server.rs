//! A throwaway nats-server for tests (feature `test-server`): JetStream on a
//! free loopback port, file storage in a temporary directory, killed on
//! drop. Needs Debian's `nats-server` on the PATH.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server.
pub struct TestServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// Whether `nats-server` can be run here. Without it tests skip, unless
/// `KEYHOLE_REQUIRE_NATS` is set (CI sets it), when they fail.
pub fn available() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("KEYHOLE_REQUIRE_NATS").is_none(),
            "KEYHOLE_REQUIRE_NATS is set but nats-server is missing (apt-get install nats-server)"
        );
        eprintln!("skipped: nats-server is not installed");
    }
    found
}

impl TestServer {
    /// Starts one and waits (at most 30 s) until it accepts connections.
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> TestServer {
        Self::start_on(dir, None)
    }

    fn start_on(dir: tempfile::TempDir, port: Option<u16>) -> TestServer {
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports).unwrap();
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let port = wait_for_port(&ports, child.id());
        TestServer { child, dir, port }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Where it stores its streams.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// Kills it (SIGKILL) and starts it again on the same storage and
    /// port, so clients connected to it reconnect.
    pub fn restart(mut self) -> TestServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let _ = std::fs::remove_dir_all(dir.path().join("ports"));
        Self::start_on(dir, Some(port))
    }
}

fn wait_for_port(ports: &Path, pid: u32) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file = ports.join(format!("nats-server_{pid}.ports"));
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = v["nats"][0].as_str()
            && let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok())
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP proxy in front of a [`TestServer`] that a test can cut
/// and restore: one host's network partition, while others stay connected
/// to the server directly. Cutting closes every proxied connection and
/// refuses new ones until restored.
pub struct CutProxy {
    port: u16,
    state: std::sync::Arc<ProxyState>,
    accept: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyState {
    cut: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    conns: std::sync::Mutex<Vec<std::net::TcpStream>>,
}

impl ProxyState {
    fn close_all(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for c in conns.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl CutProxy {
    /// Starts proxying loopback connections to `server`.
    pub fn new(server: &TestServer) -> CutProxy {
        use std::sync::atomic::Ordering;
        let upstream = server.port;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState::default());
        let st = state.clone();
        let accept = std::thread::spawn(move || {
            while !st.stop.load(Ordering::Acquire) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if st.cut.load(Ordering::Acquire) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let mut conns = st.conns.lock().unwrap_or_else(|e| e.into_inner());
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
                conns.extend([client, server]);
            }
        });
        CutProxy {
            port,
            state,
            accept: Some(accept),
        }
    }

    /// `nats://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.state
            .cut
            .store(true, std::sync::atomic::Ordering::Release);
        self.state.close_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        self.state.close_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
