//! The optional end-to-end case: `POST /v1/events` against a real
//! `keyhole serve`, over one keep-alive HTTP/1.1 connection (latency), then
//! over [`CONNECTIONS`] at once (events per second), and `POST
//! /v1/events/batch` with [`BATCH`] events a request over one connection
//! (events per second).
//!
//! The CLI is written concurrently with this benchmark, so this case never
//! blocks the run: it is skipped (with the reason) when there is no binary,
//! when the daemon does not come up within a few seconds, or when the API
//! does not answer 2xx. Two ways in:
//! - `KEYHOLE_BENCH_API=http://127.0.0.1:PORT` (+ `KEYHOLE_BENCH_TOKEN`): use
//!   a daemon that is already running, with a listener on environment `prod`.
//! - otherwise, if `keyhole` sits next to this binary (target/release), the
//!   data dir is prepared through the library (env, secret, deploy), an
//!   admin token is made with `keyhole token reset` (its last output line)
//!   and `keyhole --data D --key-file K serve --listen ADDR` is started.
//!
//! A raw socket client keeps the benchmark free of an HTTP client stack whose
//! own cost would blur the figure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::placement;
use crate::stats::Samples;
use crate::{ENVIRONMENT, TOPIC};

/// What the API case measured.
pub struct ApiFigures {
    /// One keep-alive connection, one event at a time, wherever the
    /// kernel runs the two ends.
    pub latency: Samples,
    /// The same with the daemon and the client on CPU 0 (`placement.rs`);
    /// None if they could not be pinned (no `taskset`, a daemon not
    /// started by the bench).
    pub latency_one_cpu: Option<Samples>,
    /// Events per second over [`CONNECTIONS`] keep-alive connections.
    pub concurrent_events_per_s: f64,
    /// Events per second in batches of [`BATCH`] over one connection.
    pub batch_events_per_s: f64,
}

/// Events per `POST /v1/events/batch` of the batch figure.
pub const BATCH: usize = 100;

/// Concurrent keep-alive connections of the throughput figure.
pub const CONNECTIONS: usize = 32;

/// Runs `iterations` events through the API one at a time, then as many
/// as [`CONNECTIONS`] clients get through in `span`; or says why it could
/// not.
pub fn run(module: &[u8], iterations: usize, span: Duration) -> Result<ApiFigures, String> {
    let (addr, token, _daemon) = match std::env::var("KEYHOLE_BENCH_API") {
        Ok(url) => (
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            std::env::var("KEYHOLE_BENCH_TOKEN").unwrap_or_default(),
            None,
        ),
        Err(_) => {
            let d = Daemon::start(module)?;
            (d.addr.clone(), d.token.clone(), Some(d))
        }
    };
    let expect = Some(crate::floor::fingerprint(crate::SECRET_VALUE));
    let connect = || {
        Client::connect(&addr, &token, expect.clone()).map_err(|e| format!("connect {addr}: {e:#}"))
    };
    let mut client = connect()?;
    let latency = one_at_a_time(&mut client, iterations)?;
    let daemon_pid = _daemon.as_ref().map(|d| d.child.id());
    let latency_one_cpu = match daemon_pid {
        Some(pid) if placement::pin_process(pid, Some(0)) => {
            let pinned =
                placement::pin_this_thread(Some(0)).then(|| one_at_a_time(&mut client, iterations));
            placement::pin_this_thread(None);
            placement::pin_process(pid, None);
            pinned.transpose()?
        }
        _ => None,
    };
    drop(client);
    let concurrent_events_per_s = concurrent(&addr, &token, expect.clone(), span)?;
    let batch_events_per_s = batched(&addr, &token, expect, span)?;
    Ok(ApiFigures {
        latency,
        latency_one_cpu,
        concurrent_events_per_s,
        batch_events_per_s,
    })
}

/// `iterations` events one after another (and a tenth more to warm up).
fn one_at_a_time(client: &mut Client, iterations: usize) -> Result<Samples, String> {
    let mut latency = Samples::with_capacity(iterations);
    for i in 0..iterations / 10 + iterations {
        let t = Instant::now();
        client
            .post_event()
            .map_err(|e| format!("POST /v1/events: {e:#}"))?;
        if i >= iterations / 10 {
            latency.push(t.elapsed());
        }
    }
    Ok(latency)
}

/// Events per second in batches of [`BATCH`], one request at a time over
/// one connection: the daemon runs each batch's events over its workers.
fn batched(addr: &str, token: &str, expect: Option<String>, span: Duration) -> Result<f64, String> {
    let mut client =
        Client::connect(addr, token, expect).map_err(|e| format!("connect {addr}: {e:#}"))?;
    client.request = batch_request(addr, token, BATCH);
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < span {
        client
            .post_event()
            .map_err(|e| format!("POST /v1/events/batch: {e:#}"))?;
        done += BATCH;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Events per second over [`CONNECTIONS`] keep-alive connections, driven
/// the way wrk drives them: one event-loop thread keeps one request in
/// flight on each (32 blocking client threads would spend the two cores
/// switching between themselves, and measure that).
fn concurrent(
    addr: &str,
    token: &str,
    expect: Option<String>,
    span: Duration,
) -> Result<f64, String> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    tokio.block_on(async {
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let c = AsyncClient::connect(addr, token, expect.clone())
                .await
                .map_err(|e| format!("connect {addr}: {e:#}"))?;
            clients.push(c);
        }
        let start = Instant::now();
        let deadline = start + span;
        let mut runs = tokio::task::JoinSet::new();
        for mut c in clients {
            runs.spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    c.post_event().await?;
                    done += 1;
                }
                anyhow::Ok(done)
            });
        }
        let mut done = 0;
        while let Some(joined) = runs.join_next().await {
            done += joined
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("POST /v1/events ({CONNECTIONS} connections): {e:#}"))?;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    })
}

/// The baseline of the API case: one request of `request_bytes` and one
/// answer of `answer_bytes` over a loopback TCP connection to an echo
/// thread, as the API client exchanges them, without HTTP or keyhole: what
/// the machine's kernel and scheduler cost a round trip, with the client on
/// CPU 0 and the echo thread on `echo_cpu` (`placement.rs`). None if the
/// threads could not be pinned.
pub fn loopback_round_trip(
    iterations: usize,
    request_bytes: usize,
    answer_bytes: usize,
    echo_cpu: usize,
) -> Result<Option<Samples>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<bool> {
        let pinned = placement::pin_this_thread(Some(echo_cpu));
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let (mut request, answer) = (vec![0u8; request_bytes], vec![b'a'; answer_bytes]);
        while conn.read_exact(&mut request).is_ok() {
            conn.write_all(&answer)?;
        }
        Ok(pinned)
    });
    let pinned = placement::pin_this_thread(Some(0));
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let (request, mut answer) = (vec![b'r'; request_bytes], vec![0u8; answer_bytes]);
    let mut samples = Samples::with_capacity(iterations);
    for i in 0..iterations / 10 + iterations {
        let t = Instant::now();
        conn.write_all(&request)?;
        conn.read_exact(&mut answer)?;
        if i >= iterations / 10 {
            samples.push(t.elapsed());
        }
    }
    drop(conn);
    placement::pin_this_thread(None);
    let echo_pinned = server
        .join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok((pinned && echo_pinned).then_some(samples))
}

/// A `keyhole serve` child process on a prepared data dir.
struct Daemon {
    child: Child,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(module: &[u8]) -> Result<Daemon, String> {
        let bin = binary().ok_or("no target/release/keyhole binary yet")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (data, key) = (dir.path().join("data"), dir.path().join("master.key"));
        prepare(&data, &key, module).map_err(|e| format!("preparing data dir: {e:#}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cli = |args: &[&str]| {
            let mut cmd = Command::new(&bin);
            cmd.arg("--data")
                .arg(&data)
                .arg("--key-file")
                .arg(&key)
                .args(args)
                .env_remove("KEYHOLE_MASTER_KEY")
                .env_remove("KEYHOLE_DATA")
                .env_remove("KEYHOLE_KEY_FILE");
            cmd
        };
        let out = cli(&["token", "reset"])
            .output()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(|l| l.trim().to_owned())
            .filter(|t| out.status.success() && !t.is_empty() && !t.contains(' '))
            .ok_or_else(|| format!("`keyhole token reset` failed ({})", out.status))?;
        let child = cli(&["serve", "--listen", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut daemon = Daemon {
            child,
            addr,
            token,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!("`keyhole serve` exited early ({status})"));
            }
            if TcpStream::connect(&daemon.addr).is_ok() {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                return Err("`keyhole serve` not listening after 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keyhole` next to this executable (both live in target/release).
pub(crate) fn binary() -> Option<PathBuf> {
    let bin = std::env::current_exe().ok()?.parent()?.join("keyhole");
    bin.is_file().then_some(bin)
}

/// Environment, secret and one deployment, written through the library.
fn prepare(data: &std::path::Path, key: &std::path::Path, module: &[u8]) -> Result<()> {
    let (store, runtime, _) = crate::cases::setup(data, key, module, 1)?;
    runtime.flush()?;
    drop((runtime, store));
    Ok(())
}

/// A keep-alive connection that posts one fixed event again and again
/// (also the cluster case's submitter).
pub(crate) struct Client {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    /// The listener's answer, which every response must carry (a queued
    /// event's answer has none).
    expect: Option<String>,
}

impl Client {
    pub(crate) fn connect(addr: &str, token: &str, expect: Option<String>) -> Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            reader: BufReader::new(stream),
            request: event_request(addr, token),
            expect,
        })
    }

    /// Sends one event and reads the whole response; errors unless 2xx
    /// (and the expected answer); returns the status.
    pub(crate) fn post_event(&mut self) -> Result<u16> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = status_of(&line)?;
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            length = length.or(content_length(l));
        }
        let length = length.context("response without Content-Length")?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        check_answer(status, &body, self.expect.as_deref())
    }
}

/// `POST /v1/events` of the bench's event, whole.
fn event_request(addr: &str, token: &str) -> Vec<u8> {
    let body =
        format!("{{\"topic\":\"{TOPIC}\",\"environmentId\":\"{ENVIRONMENT}\",\"payload\":{{}}}}");
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `POST /v1/events/batch` of `n` of the bench's events, whole.
fn batch_request(addr: &str, token: &str, n: usize) -> Vec<u8> {
    let line =
        format!("{{\"topic\":\"{TOPIC}\",\"environmentId\":\"{ENVIRONMENT}\",\"payload\":{{}}}}\n");
    let body = line.repeat(n);
    format!(
        "POST /v1/events/batch HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status line's code.
fn status_of(line: &str) -> Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))
}

/// A header line's Content-Length, if it is that header.
fn content_length(line: &str) -> Option<usize> {
    let (k, v) = line.split_once(':')?;
    k.eq_ignore_ascii_case("content-length")
        .then(|| v.trim().parse().ok())
        .flatten()
}

/// Errors unless the answer is 2xx and carries `expect`; returns the status.
fn check_answer(status: u16, body: &[u8], expect: Option<&str>) -> Result<u16> {
    let body = String::from_utf8_lossy(body);
    if !(200..300).contains(&status) {
        bail!("HTTP {status}: {body}");
    }
    if let Some(expect) = expect
        && !body.contains(expect)
    {
        bail!("response lacks the listener's result: {body}");
    }
    Ok(status)
}

/// [`Client`] on tokio, for [`concurrent`].
struct AsyncClient {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
    request: Vec<u8>,
    expect: Option<String>,
    line: String,
    body: Vec<u8>,
}

impl AsyncClient {
    async fn connect(addr: &str, token: &str, expect: Option<String>) -> Result<AsyncClient> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(AsyncClient {
            reader: tokio::io::BufReader::new(stream),
            request: event_request(addr, token),
            expect,
            line: String::new(),
            body: Vec::new(),
        })
    }

    async fn post_event(&mut self) -> Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let timeout = Duration::from_secs(10);
        let exchange = async {
            self.reader.get_mut().write_all(&self.request).await?;
            self.line.clear();
            self.reader.read_line(&mut self.line).await?;
            let status = status_of(&self.line)?;
            let mut length = None;
            loop {
                self.line.clear();
                self.reader.read_line(&mut self.line).await?;
                let l = self.line.trim_end();
                if l.is_empty() {
                    break;
                }
                length = length.or(content_length(l));
            }
            self.body
                .resize(length.context("response without Content-Length")?, 0);
            self.reader.read_exact(&mut self.body).await?;
            anyhow::Ok(status)
        };
        let status = tokio::time::timeout(timeout, exchange)
            .await
            .context("no answer in 10 s")??;
        check_answer(status, &self.body, self.expect.as_deref())
    }
}
