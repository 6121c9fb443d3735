//! The cluster case: events/s through `keyhole serve --cluster` with one
//! and with three hosts on this machine, on one nats-server on loopback,
//! beside the embedded figures of the same run.
//!
//! Each phase has its own namespace (fresh buckets and queue): `init`,
//! the environment, the secret and the listener through the CLI, then the
//! hosts. `events` events are submitted over one keep-alive connection per
//! host (each answered 202 once queued) and the clock stops when the hosts'
//! `/metrics` count that many runs. No target: on 2 cores three hosts
//! share the same cores as nats-server and the submitter, so the figure
//! shows the queue's and the shared run records' cost, not scaling.
//!
//! Skipped (with the reason) without `nats-server` or the `keyhole` binary
//! next to this one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyhole_kv_nats::test_server::TestServer;

use crate::api::Client;
use crate::{ENVIRONMENT, SECRET_NAME, SECRET_VALUE, TOPIC};

/// Events/s with one host and with three.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub one_host: f64,
    pub three_hosts: f64,
}

pub fn run(module: &[u8], events: usize) -> Result<Figures, String> {
    let bin = crate::api::binary().ok_or("no target/release/keyhole binary yet")?;
    let nats_found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nats_found {
        return Err("nats-server is not installed".into());
    }
    let nats = TestServer::start();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let wasm = dir.path().join("bench.wasm");
    std::fs::write(&wasm, module).map_err(|e| e.to_string())?;
    let one_host = phase(&bin, &nats, dir.path(), &wasm, 1, events)?;
    let three_hosts = phase(&bin, &nats, dir.path(), &wasm, 3, events)?;
    Ok(Figures {
        one_host,
        three_hosts,
    })
}

struct Host {
    child: Child,
    addr: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn phase(
    bin: &Path,
    nats: &TestServer,
    root: &Path,
    wasm: &Path,
    hosts: usize,
    events: usize,
) -> Result<f64, String> {
    let namespace = format!("bench{hosts}");
    let key = root.join(format!("{namespace}.key"));
    let cli = |data: &Path| {
        let mut c = Command::new(bin);
        c.arg("--data")
            .arg(data)
            .arg("--key-file")
            .arg(&key)
            .args(["--cluster", &nats.url(), "--cluster-namespace", &namespace])
            .env_remove("KEYHOLE_MASTER_KEY")
            .env_remove("KEYHOLE_TOKEN")
            .env_remove("KEYHOLE_SERVER")
            .stdin(Stdio::null());
        c
    };
    let setup_data = root.join(format!("{namespace}-setup"));
    let run = |mut c: Command, what: &str| -> Result<String, String> {
        let out = c.output().map_err(|e| format!("{what}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let init = run(
        {
            let mut c = cli(&setup_data);
            c.arg("init");
            c
        },
        "init",
    )?;
    let token = init.lines().last().unwrap_or_default().trim().to_owned();
    run(
        {
            let mut c = cli(&setup_data);
            c.args(["env", "create", ENVIRONMENT]);
            c
        },
        "env create",
    )?;
    let mut set = cli(&setup_data);
    set.args(["secrets", "set", SECRET_NAME, "--env", ENVIRONMENT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = set.spawn().map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(SECRET_VALUE.as_bytes())
        .map_err(|e| e.to_string())?;
    if !child.wait().map_err(|e| e.to_string())?.success() {
        return Err("secrets set failed".into());
    }
    let mut deploy = cli(&setup_data);
    deploy.arg("deploy").arg(wasm).args([
        "--name",
        "bench",
        "--env",
        ENVIRONMENT,
        "--topic",
        TOPIC,
    ]);
    run(deploy, "deploy")?;

    let mut started = Vec::new();
    for i in 0..hosts {
        let data = root.join(format!("{namespace}-host{i}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut c = cli(&data);
        c.args(["serve", "--listen", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().map_err(|e| e.to_string())?;
        started.push(Host { child, addr });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for h in &started {
        while !get(&h.addr, &token, "/v1/listeners/bench").is_ok_and(|(s, _)| s == 200) {
            if Instant::now() > deadline {
                return Err("cluster hosts not ready within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut clients = started
        .iter()
        .map(|h| Client::connect(&h.addr, &token, None).map_err(|e| format!("{e:#}")))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for i in 0..events {
        let n = clients.len();
        match clients[i % n].post_event() {
            Ok(202) => {}
            Ok(status) => return Err(format!("POST /v1/events answered {status}, not 202")),
            Err(e) => return Err(format!("POST /v1/events: {e:#}")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: u64 = started.iter().map(|h| runs_counted(&h.addr, &token)).sum();
        if done >= events as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{done} of {events} queued events ran within 300 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// Runs a host has counted (its `/metrics`).
fn runs_counted(addr: &str, token: &str) -> u64 {
    let Ok((200, body)) = get(addr, token, "/metrics") else {
        return 0;
    };
    body.lines()
        .filter(|l| l.starts_with("keyhole_runs_total") || l.starts_with("runs_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One GET on a fresh connection: (status, body).
fn get(addr: &str, token: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}
