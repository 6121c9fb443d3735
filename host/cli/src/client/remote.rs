//! Requests to a running daemon, over HTTP/1.1 or HTTPS.
//!
//! One connection per request: a CLI verb makes one or a few, so a pool
//! would buy nothing. The token goes in `Authorization: Bearer`, from a
//! zeroizing buffer. HTTPS trusts the CAs in `--ca-cert` / `KEYHOLE_CA_CERT`
//! (a PEM file, e.g. the self-signed certificate `serve --tls-cert` uses)
//! and otherwise the Mozilla roots compiled in; the name checked is the
//! URL's host.
//!
//! Timeouts: connecting (and the TLS handshake) gets [`CONNECT_TIMEOUT`];
//! the request itself none, since a deploy compiles for seconds and an
//! event runs its listeners to their own deadlines.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::{Body, Call, Reply};
use crate::errors::{CliError, Exit};

/// Time to connect and finish a TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses `http://` to a host that is not loopback (an IP address that
/// is, or `localhost`): every request would carry the API token in clear
/// text. An address that does not parse is left to [`Remote::new`].
pub fn refuse_plain_http_off_loopback(base: &str) -> Result<()> {
    let Ok(uri) = base.parse::<axum::http::Uri>() else {
        return Ok(());
    };
    let Some(host) = uri.host().filter(|_| uri.scheme_str() == Some("http")) else {
        return Ok(());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(CliError::new(
        Exit::Usage,
        format!(
            "not sending the API token unencrypted to {base}: plain http:// is for loopback addresses"
        ),
    )
    .hint("use https:// (the daemon's serve --tls-cert/--tls-key), or --insecure-http on a network you trust")
    .into())
}

/// A daemon's API.
pub struct Remote {
    base: String,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Zeroizing<String>,
    rt: tokio::runtime::Runtime,
}

impl Remote {
    /// The daemon at `base` (`http://HOST:PORT` or `https://…`).
    pub fn new(base: &str, token: Zeroizing<String>, ca_cert: Option<&Path>) -> Result<Remote> {
        let bad = |why: &str| {
            CliError::new(
                Exit::Usage,
                format!("invalid server address {base:?}: {why}"),
            )
            .hint("give it as http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:7700")
        };
        let uri: axum::http::Uri = base.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http or https").into()),
        };
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad("no path, only scheme, host and port").into());
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            Some(tls_connector(ca_cert)?)
        } else {
            None
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Remote {
            base: base.trim_end_matches('/').to_owned(),
            host,
            port,
            tls,
            token,
            rt,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn send(&self, call: Call) -> Result<Reply> {
        self.rt.block_on(self.exchange(call))
    }

    async fn exchange(&self, call: Call) -> Result<Reply> {
        let unreachable = |e: &dyn std::fmt::Display| {
            CliError::new(
                Exit::Failure,
                format!("cannot reach the keyhole daemon at {}: {e}", self.base),
            )
            .hint("is `keyhole serve` running there? (--server / KEYHOLE_SERVER choose another)")
        };
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            let stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(std::io::Error::other)?;
                    Box::new(tls.connect(name, tcp).await?)
                }
            };
            Ok::<_, std::io::Error>(stream)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable(&"timed out"))?
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection to the daemon: {e}");
            }
        });
        let response = sender
            .send_request(self.request(call)?)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes()
            .to_vec();
        Ok(Reply { status, body })
    }

    fn request(&self, call: Call) -> Result<Request<Full<Bytes>>> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.as_str()))
            .map_err(|_| CliError::new(Exit::Usage, "the API token is not valid header text"))?;
        auth.set_sensitive(true);
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let builder = Request::builder()
            .uri(call.uri()?)
            .method(call.method)
            .header(header::HOST, authority)
            .header(header::AUTHORIZATION, auth);
        let request = match call.body {
            Body::Empty => builder.body(Full::default()),
            Body::Json(bytes) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::copy_from_slice(&bytes))),
            Body::Ndjson(bytes) => builder
                .header(header::CONTENT_TYPE, super::NDJSON)
                .body(Full::new(Bytes::from(bytes))),
            Body::Multipart { boundary, bytes } => builder
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Full::new(Bytes::from(bytes))),
        };
        request.context("building the request")
    }
}

/// A TCP or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// HTTPS trust: the certificates in `ca_cert`, else the Mozilla roots.
fn tls_connector(ca_cert: Option<&Path>) -> Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| {
                    CliError::new(
                        Exit::Usage,
                        format!("reading CA certificates from {}: {e}", path.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(CliError::new(
                    Exit::Usage,
                    format!("{} holds no PEM certificate", path.display()),
                )
                .into());
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    CliError::new(
                        Exit::Usage,
                        format!("a certificate in {} is not usable: {e}", path.display()),
                    )
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
