//! Shared helpers for the `keyhole` binary's tests: a temporary installation
//! (data directory and key file apart), a runner for the real binary, a
//! daemon started on a free loopback port, a small HTTP client, and the
//! console's cookie-keeping client (`browser.rs`).
#![allow(dead_code)]

pub mod browser;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyhole");

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A data directory and a key file outside it, in one temporary directory.
pub struct Install {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub key: PathBuf,
}

impl Install {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let key = dir.path().join("keys").join("master.key");
        Install { dir, data, key }
    }

    /// The binary with this installation's environment and no stdin.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("KEYHOLE_DATA", &self.data)
            .env("KEYHOLE_KEY_FILE", &self.key)
            .env_remove("KEYHOLE_MASTER_KEY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// The binary as [`Install::cmd`], started from a shell whose umask is
    /// `umask` (e.g. `000`, as a careless service manager might leave it).
    pub fn cmd_with_umask(&self, umask: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .env("KEYHOLE_DATA", &self.data)
            .env("KEYHOLE_KEY_FILE", &self.key)
            .env_remove("KEYHOLE_MASTER_KEY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.cmd().args(args).output().expect("run keyhole").into()
    }

    pub fn run_stdin(&self, args: &[&str], input: &str) -> Out {
        self.run_piped(self.cmd(), args, input)
    }

    /// [`Install::run_stdin`] started in `cwd` (relative paths resolve
    /// there).
    pub fn run_stdin_in(&self, cwd: &std::path::Path, args: &[&str], input: &str) -> Out {
        let mut cmd = self.cmd();
        cmd.current_dir(cwd);
        self.run_piped(cmd, args, input)
    }

    fn run_piped(&self, mut cmd: Command, args: &[&str], input: &str) -> Out {
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyhole");
        feed(&mut child, input);
        child.wait_with_output().expect("wait keyhole").into()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "keyhole {args:?} failed: {out:?}");
        out.stdout
    }

    /// `keyhole env create ENV`, then `keyhole space create S --env ENV` for
    /// each of `spaces`, each asserted to succeed; returns what they printed.
    pub fn scopes(&self, env: &str, spaces: &[&str]) -> String {
        let mut out = self.ok(&["env", "create", env]);
        for space in spaces {
            out += &self.ok(&["space", "create", space, "--env", env]);
        }
        out
    }

    /// `keyhole init`; returns the admin token.
    pub fn init(&self) -> String {
        let out = self.ok(&["init"]);
        token_from(&out)
    }
}

pub fn token_from(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("kh_"))
        .unwrap_or_else(|| panic!("no token in {stdout:?}"))
        .trim()
        .to_string()
}

/// Cluster mode: `keyhole --cluster URL init` on a new installation; it
/// and the admin token.
pub fn cluster_init(nats_url: &str) -> (Install, String) {
    let k = Install::new();
    let out = k
        .cmd()
        .env("KEYHOLE_CLUSTER", nats_url)
        .arg("init")
        .output()
        .expect("run keyhole init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = token_from(&String::from_utf8_lossy(&out.stdout));
    (k, token)
}

/// Another host's installation: its own data directory, `first`'s master
/// key (copied, mode kept), no init.
pub fn cluster_member(first: &Install) -> Install {
    let k = Install::new();
    std::fs::create_dir_all(k.key.parent().unwrap()).unwrap();
    std::fs::copy(&first.key, &k.key).unwrap();
    k
}

/// `keyhole serve --cluster URL` on `k`, with `extra` flags; its log goes
/// to the test's stderr when `log` is set, else nowhere.
pub fn cluster_host(k: &Install, nats_url: &str, token: &str, extra: &[&str], log: bool) -> Server {
    let mut cmd = k.cmd();
    cmd.env("KEYHOLE_CLUSTER", nats_url)
        .stderr(if log { Stdio::inherit() } else { Stdio::null() });
    Server::spawn(cmd, k, token, extra)
}

/// A running `keyhole serve` on a free loopback port.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
}

impl Server {
    pub fn start(install: &Install, token: &str, extra: &[&str]) -> Server {
        let mut cmd = install.cmd();
        cmd.stderr(Stdio::inherit());
        Self::spawn(cmd, install, token, extra)
    }

    /// As [`Server::start`], with the daemon's log (its stderr) written to
    /// `log` instead of the test's stderr.
    pub fn start_logging_to(install: &Install, token: &str, extra: &[&str], log: &Path) -> Server {
        let mut cmd = install.cmd();
        cmd.stderr(std::fs::File::create(log).expect("create log file"));
        Self::spawn(cmd, install, token, extra)
    }

    /// Like [`Server::start_logging_to`], logging at debug level.
    pub fn start_logged(install: &Install, token: &str, extra: &[&str], log: &Path) -> Server {
        let mut cmd = install.cmd();
        cmd.env("RUST_LOG", "debug")
            .stderr(std::fs::File::create(log).expect("create log file"));
        Self::spawn(cmd, install, token, extra)
    }

    /// Starts `keyhole serve` from `cmd` (e.g. [`Install::cmd_with_umask`]).
    pub fn spawn(mut cmd: Command, install: &Install, token: &str, extra: &[&str]) -> Server {
        let child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn keyhole serve");
        let pid = child.id();
        let info = install.data.join("serve.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            if let Ok(text) = std::fs::read_to_string(&info)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v["pid"].as_u64() == Some(u64::from(pid))
            {
                break v["address"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "keyhole serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            base,
            token: token.to_string(),
        }
    }

    pub fn http(&self) -> Http {
        Http::new(&self.base, &self.token)
    }

    /// SIGTERM, then wait (at most 60 s) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "keyhole serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response: status, body text and the `WWW-Authenticate` header.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub www_authenticate: Option<String>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A keep-alive HTTP/1.1 client for one server.
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
    pub token: String,
}

impl Http {
    pub fn new(base: &str, token: &str) -> Self {
        Self::build(base, token, true)
    }

    /// A client that opens a connection per request. For requests the
    /// server refuses before reading their body (a 401 or 403 on an
    /// upload): it then closes the connection, and a pooled client may
    /// send its next request into the closing socket.
    pub fn without_keep_alive(base: &str, token: &str) -> Self {
        Self::build(base, token, false)
    }

    fn build(base: &str, token: &str, keep_alive: bool) -> Self {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)));
        if !keep_alive {
            config = config.max_idle_connections(0);
        }
        let agent: ureq::Agent = config.build().into();
        Http {
            agent,
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    /// Sends a request with the given token (None: no Authorization).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        self.send_with(method, path, token, body, &[])
    }

    /// [`Http::send`] with extra request headers.
    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let result = match body {
            Some((ctype, bytes)) => self
                .agent
                .run(b.header("content-type", ctype).body(bytes).unwrap()),
            None => self.agent.run(b.body(()).unwrap()),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let www_authenticate = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        Resp {
            status,
            body,
            www_authenticate,
        }
    }

    /// The same server, with another token.
    pub fn with_token(&self, token: &str) -> Http {
        Http::new(&self.base, token)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, Some(&self.token.clone()), None)
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, Some(&self.token.clone()), None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        self.post_raw(path, body.to_string().into_bytes())
    }

    /// POSTs JSON; `false` if the request did not get a response (the
    /// server went away), whatever the status.
    pub fn try_post_json(&self, path: &str, body: &serde_json::Value) -> bool {
        self.post_json_status(path, body).is_some()
    }

    /// POSTs JSON; the status, or `None` if no response came (the server
    /// or what it depends on went away).
    pub fn post_json_status(&self, path: &str, body: &serde_json::Value) -> Option<u16> {
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap();
        let mut resp = self.agent.run(req).ok()?;
        let status = resp.status().as_u16();
        resp.body_mut().read_to_string().ok()?;
        Some(status)
    }

    /// POSTs JSON with extra request headers.
    pub fn post_json_with(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = ("application/json", body.to_string().into_bytes());
        self.send_with("POST", path, Some(&self.token.clone()), Some(body), headers)
    }

    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> Resp {
        self.send(
            "POST",
            path,
            Some(&self.token.clone()),
            Some(("application/json", body)),
        )
    }

    /// `POST /v1/tokens`; returns the new token (asserting a 201).
    pub fn create_token(&self, body: &serde_json::Value) -> String {
        let r = self.post_json("/v1/tokens", body);
        assert_eq!(r.status, 201, "POST /v1/tokens {body}: {r:?}");
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// `POST /v1/listeners` with a spec and a module.
    pub fn deploy(&self, spec: &serde_json::Value, module: &[u8]) -> Resp {
        let (ctype, body) = multipart(&[
            ("spec", "application/json", spec.to_string().as_bytes()),
            ("module", "application/wasm", module),
        ]);
        self.send(
            "POST",
            "/v1/listeners",
            Some(&self.token.clone()),
            Some((&ctype, body)),
        )
    }
}

/// Every run `GET /v1/runs?{filters}` lists, newest first, a page of 1000
/// at a time (at most 1,000 pages).
pub fn all_runs(h: &Http, filters: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut before = String::new();
    for _ in 0..1_000 {
        let r = h.get(&format!("/v1/runs?{filters}&limit=1000{before}"));
        assert_eq!(r.status, 200, "{r:?}");
        let page = r.json();
        out.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => before = format!("&before={next}"),
            None => return out,
        }
    }
    panic!("more than 1,000 pages of runs");
}

/// A multipart/form-data body: (content type, bytes).
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "keyhole-test-boundary-7c0d2f";
    let mut body = Vec::new();
    for (name, ctype, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Writes `input` to the child's stdin and closes it. A command that fails
/// before reading stdin (an unknown environment, say) closes the pipe first;
/// that broken pipe is the command's business, not the test's.
pub fn feed(child: &mut Child, input: &str) {
    let mut stdin = child.stdin.take().expect("piped stdin");
    match stdin.write_all(input.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write keyhole stdin"),
    }
}
