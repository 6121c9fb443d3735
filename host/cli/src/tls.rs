//! HTTPS for `keyhole serve`, and the rule that decides when it is needed.
//!
//! Every API request carries a bearer token, and `POST /v1/secrets` carries
//! a secret value. On loopback those never leave the machine; anywhere else
//! they would cross a network in clear text. So a `--listen` address that
//! is not loopback (`127.0.0.0/8`, `::1`) is refused before anything binds
//! unless the daemon serves TLS (`--tls-cert` and `--tls-key`) or the
//! operator says plain HTTP is what they mean (`--insecure-listen`: a
//! TLS-terminating proxy in front, or a network they trust), which is then
//! logged as a warning.
//!
//! The certificate and key are PEM files read once at start. rustls with
//! the `ring` provider (the one already compiled into the tree for outbound
//! HTTPS from listeners), TLS 1.2 and 1.3, ALPN `http/1.1` only, as the
//! daemon serves nothing else (see `serve.rs`). A missing file, a file with
//! no certificate or key in it, or a key that is not the certificate's is
//! an error at start, in those words; key bytes never reach a message. The
//! handshake itself runs in the connection's task, under the header
//! timeout, so a client that never finishes one holds its connection slot
//! no longer than a client that never sends a request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use zeroize::Zeroizing;

/// `keyhole serve`'s TLS flags.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain: a PEM file, the server's
    /// certificate first, then any intermediates. Needs --tls-key. Required
    /// (or --insecure-listen) to listen on an address that is not loopback.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert: a PEM file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a --listen address that is not loopback. API
    /// tokens and secret values then cross the network unencrypted: only
    /// behind a TLS-terminating proxy, or on a network you trust.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_listen: bool,
}

/// Why the daemon will not serve as asked.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: API tokens \
         and secret values would cross the network unencrypted (serve HTTPS with --tls-cert \
         and --tls-key, or pass --insecure-listen)"
    )]
    PlainNonLoopback { addr: SocketAddr },
    #[error("TLS {what} {}: no such file", .path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("TLS {what} {}: {source}", .path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS certificate {}: {reason}", .path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("TLS key {}: {reason}", .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("TLS key {} is not the key of certificate {}", .key.display(), .cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS certificate {} with key {}: {reason}", .cert.display(), .key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Applies the listen rule and loads the certificate, before the daemon
/// opens or binds anything: `Some` acceptor to serve HTTPS, `None` for
/// plain HTTP.
pub fn configure(listen: SocketAddr, args: &TlsArgs) -> Result<Option<TlsAcceptor>, TlsError> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return acceptor(cert, key).map(Some);
    }
    if !is_loopback(listen) {
        if !args.insecure_listen {
            return Err(TlsError::PlainNonLoopback { addr: listen });
        }
        tracing::warn!(
            %listen,
            "serving plain HTTP on a non-loopback address (--insecure-listen): \
             API tokens and secret values cross the network unencrypted"
        );
    }
    Ok(None)
}

/// Loopback, IPv4 or IPv6 (an IPv4-mapped IPv6 loopback address too).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(cert)?;
    let private = private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rejected = |e: rustls::Error| TlsError::Rejected {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Mismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                }
            }
            other => rejected(other),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The whole file; zeroized on drop, as it may be a key.
fn read(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        let path = path.to_path_buf();
        if e.kind() == std::io::ErrorKind::NotFound {
            TlsError::Missing { what, path }
        } else {
            TlsError::Unreadable {
                what,
                path,
                source: e,
            }
        }
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("certificate", path)?;
    let bad = |reason: String| TlsError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(bad(
            "no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)".into(),
        ));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    warn_if_others_can_read(path);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::BadKey {
        path: path.to_path_buf(),
        // The parser's own text is not shown: it may quote the file.
        reason: match e {
            pem::Error::NoItemsFound => "no private key in it (expected a PEM `BEGIN PRIVATE \
                                         KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE \
                                         KEY` block)"
                .into(),
            _ => "not a readable PEM private key".into(),
        },
    })
}

/// The TLS key deserves the master key's care; unlike the master key it
/// opens no stored secret, so a loose mode is a warning, not a refusal.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "TLS key {} is readable by others (mode {mode:04o}); run: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(insecure: bool) -> TlsArgs {
        TlsArgs {
            tls_cert: None,
            tls_key: None,
            insecure_listen: insecure,
        }
    }

    #[test]
    fn plain_http_is_for_loopback_unless_asked_for() {
        for ok in [
            "127.0.0.1:7700",
            "127.1.2.3:0",
            "[::1]:7700",
            "[::ffff:127.0.0.1]:1",
        ] {
            let addr: SocketAddr = ok.parse().unwrap();
            assert!(configure(addr, &args(false)).unwrap().is_none(), "{ok}");
        }
        for refused in [
            "0.0.0.0:0",
            "[::]:7700",
            "192.0.2.1:7700",
            "[2001:db8::1]:1",
        ] {
            let addr: SocketAddr = refused.parse().unwrap();
            let Err(err) = configure(addr, &args(false)) else {
                panic!("{refused} was not refused");
            };
            let text = err.to_string();
            assert!(text.contains("not a loopback address"), "{text}");
            for flag in ["--tls-cert", "--tls-key", "--insecure-listen"] {
                assert!(text.contains(flag), "{text}");
            }
            assert!(configure(addr, &args(true)).unwrap().is_none());
        }
    }

    #[test]
    fn files_that_are_not_a_certificate_and_key_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            acceptor(&missing, &empty),
            Err(TlsError::Missing {
                what: "certificate",
                ..
            })
        ));
        assert!(matches!(
            acceptor(&empty, &empty),
            Err(TlsError::BadCertificate { .. })
        ));
        assert!(matches!(
            certificates(&empty),
            Err(TlsError::BadCertificate { .. })
        ));
        match private_key(&garbage) {
            Err(e @ TlsError::BadKey { .. }) => {
                assert!(!e.to_string().contains("!!!!"), "{e}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(matches!(private_key(&empty), Err(TlsError::BadKey { .. })));
    }
}
