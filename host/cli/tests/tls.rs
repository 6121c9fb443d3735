//! `keyhole serve` over HTTPS, with a self-signed certificate made here and
//! a real rustls client that trusts only it; plain HTTP to the TLS port;
//! the handshake held to the header timeout; and the rule that keeps plain
//! HTTP on loopback, checked without binding anything else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName};

/// A self-signed certificate for 127.0.0.1 and localhost, written to
/// `dir`: (certificate PEM path, key PEM path, certificate DER).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generate a certificate");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.der().clone())
}

/// `GET path` over TLS from a rustls client whose only trust anchor is
/// `trusted`: (status, body).
fn https_get(
    base: &str,
    trusted: &CertificateDer<'static>,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    https_get_head(base, trusted, path, token).map(|(status, _, body)| (status, body))
}

/// [`https_get`], with the response's head (status line and headers).
fn https_get_head(
    base: &str,
    trusted: &CertificateDer<'static>,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String, String), String> {
    let addr = base.strip_prefix("https://").ok_or("not an https URL")?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    match tls.read_to_end(&mut bytes) {
        Ok(_) => {}
        // A peer that closes without close_notify, after the response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&bytes);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// `keyhole ARGS` that must exit by itself: killed (and the test failed)
/// if it is still running after 60 s.
fn run_bounded(k: &Install, args: &[&str]) -> Out {
    let mut child = k
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("keyhole {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

#[test]
fn the_api_is_served_over_tls_and_plain_http_to_it_fails() {
    let k = Install::new();
    let token = k.init();
    let (cert, key, der) = self_signed(k.dir.path(), "server");
    let server = Server::start(
        &k,
        &token,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(k.data.join("serve.json")).unwrap()).unwrap();
    assert_eq!(
        info["address"],
        server.base.as_str(),
        "serve.json has the https URL"
    );

    let (status, body) = https_get(&server.base, &der, "/healthz", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    let (status, body) = https_get(&server.base, &der, "/v1/environments", Some(&token)).unwrap();
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert_eq!(
        https_get(&server.base, &der, "/v1/environments", None)
            .unwrap()
            .0,
        401
    );

    // The web console's cookies are Secure and `__Host-` under TLS.
    let (status, head, _) = https_get_head(&server.base, &der, "/signin", None).unwrap();
    assert_eq!(status, 200, "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        cookie.contains("__Host-keyhole_signin=")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.base.replacen("https://", "http://", 1);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let result = agent.get(format!("{plain}/healthz")).call();
    assert!(result.is_err(), "plain HTTP got an answer: {result:?}");

    // A client that does not trust the certificate refuses it.
    let (_, _, stranger) = self_signed(k.dir.path(), "stranger");
    let err = https_get(&server.base, &stranger, "/healthz", None).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // The daemon is unharmed by both.
    assert_eq!(
        https_get(&server.base, &der, "/healthz", None).unwrap().0,
        200
    );

    // The CLI on this machine finds the daemon and trusts the certificate
    // it serves (named in serve.json); elsewhere, --ca-cert names it.
    k.ok(&["env", "create", "prod"]);
    assert!(k.ok(&["env", "list"]).contains("prod"));
    let remote = |ca: &Path| {
        Out::from(
            k.cmd()
                .env("KEYHOLE_TOKEN", &token)
                .env("KEYHOLE_TOKEN_FILE", k.dir.path().join("none"))
                .args(["--server", &server.base, "--ca-cert"])
                .arg(ca)
                .args(["env", "list"])
                .output()
                .unwrap(),
        )
    };
    let out = remote(&cert);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("prod"), "{out:?}");
    let stranger_pem = k.dir.path().join("stranger.crt");
    let out = remote(&stranger_pem);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cannot reach"), "{out:?}");
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out:?}");
    assert!(server.terminate().success());
    assert!(!k.data.join("serve.json").exists());
}

#[test]
fn a_client_that_never_finishes_its_handshake_gives_up_its_slot() {
    let k = Install::new();
    let token = k.init();
    let (cert, key, der) = self_signed(k.dir.path(), "server");
    let server = Server::start(
        &k,
        &token,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--max-connections",
            "1",
            "--header-timeout",
            "500ms",
        ],
    );
    let addr = server.base.strip_prefix("https://").unwrap().to_string();
    // Takes the one slot and sends nothing.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (status, _) = https_get(&server.base, &der, "/healthz", None).unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "served after {:?}",
        started.elapsed()
    );
    // The silent client was cut off, not left holding the slot.
    let mut buf = [0u8; 64];
    match idle.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes to a client that sent none"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "still open: {e}"
        ),
    }
    assert!(server.terminate().success());
}

#[test]
fn plain_http_on_an_address_that_is_not_loopback_is_refused_before_anything_opens() {
    let k = Install::new();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let out = run_bounded(&k, &["serve", "--listen", addr]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("refusing to serve plain HTTP on {addr}")),
            "{out:?}"
        );
        assert!(out.stderr.contains("not a loopback address"), "{out:?}");
        assert!(out.stderr.contains("unencrypted"), "says why: {out:?}");
        for flag in ["--tls-cert", "--tls-key", "--insecure-listen"] {
            assert!(out.stderr.contains(flag), "names {flag}: {out:?}");
        }
        assert!(
            !k.data.exists(),
            "refused before the data directory was opened"
        );
    }
    // The flags come in pairs, and TLS and --insecure-listen exclude each other.
    let out = run_bounded(&k, &["serve", "--tls-cert", "c.pem"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = run_bounded(
        &k,
        &[
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--insecure-listen",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn certificate_and_key_files_that_do_not_serve_are_clear_errors() {
    let k = Install::new();
    k.init();
    let dir = k.dir.path();
    let (cert, key, _) = self_signed(dir, "server");
    let (_, other_key, _) = self_signed(dir, "other");
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    let cases = [
        (
            p(&missing),
            p(&key),
            3,
            format!("TLS certificate {}: no such file", p(&missing)),
        ),
        (
            p(&cert),
            p(&missing),
            3,
            format!("TLS key {}: no such file", p(&missing)),
        ),
        (p(&garbage), p(&key), 2, "no certificate in it".to_string()),
        (p(&key), p(&key), 2, "no certificate in it".to_string()),
        (p(&cert), p(&cert), 2, "no private key in it".to_string()),
        (
            p(&cert),
            p(&other_key),
            2,
            format!(
                "TLS key {} is not the key of certificate {}",
                p(&other_key),
                p(&cert)
            ),
        ),
    ];
    for (c, kf, code, expect) in cases {
        let out = run_bounded(
            &k,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &c,
                "--tls-key",
                &kf,
            ],
        );
        assert_eq!(out.code, code, "{c} {kf}: {out:?}");
        assert!(out.stderr.contains(&expect), "{c} {kf}: {out:?}");
        assert!(
            !out.stderr.contains("PRIVATE KEY-----"),
            "no key text: {out:?}"
        );
        assert!(!k.data.join("serve.json").exists());
    }
}
