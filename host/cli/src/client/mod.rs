//! The CLI's one way to act: requests to keyhole's HTTP API.
//!
//! Every verb that reads or changes state is a request to the API. When a
//! daemon runs, the request goes to it: the one that holds the data
//! directory (its address is in `DATA/serve.json`), or the one named by
//! `--server` / `KEYHOLE_SERVER` (`remote.rs`, with a token from
//! `KEYHOLE_TOKEN` or the token file). When none runs, the same API router
//! is built in this process on the data directory and answers the request
//! without a socket (`local.rs`), as the local user, who holds the files
//! and so acts as admin (`local:USER` in the audit log).
//!
//! Why one path: each operation then has one implementation, the API
//! handler (its scope checks, audit entry and error mapping), and a verb's
//! output, errors and exit code are the same with or without `keyhole
//! serve` running. Error bodies carry an [`ErrorCode`], which
//! `crate::errors` turns into the exit code and hint.
//!
//! Only what has no API works on the data directory directly: `init`,
//! `serve` and `token reset` (the way back in when every admin token is
//! lost).

mod local;
mod remote;

use std::path::Path;

use anyhow::{Context, Result};
use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::api::{ErrorBody, ErrorCode};
use crate::config::{Globals, ServeInfo};
use crate::errors::{CliError, Exit};

pub use local::Local;
pub use remote::Remote;

/// Where a verb's requests go.
pub enum Client {
    /// The API in this process, on the data directory.
    Local(Local),
    /// A daemon's API.
    Remote(Remote),
}

/// A request body.
pub enum Body {
    Empty,
    /// JSON, in a buffer zeroized when the request is done (it may hold a
    /// secret value).
    Json(Zeroizing<Vec<u8>>),
    /// Newline-delimited JSON (`POST /v1/events/batch`).
    Ndjson(Vec<u8>),
    /// multipart/form-data with this boundary.
    Multipart {
        boundary: String,
        bytes: Vec<u8>,
    },
}

/// The media type of [`Body::Ndjson`].
pub const NDJSON: &str = "application/x-ndjson";

/// A request: method, path with query, body.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Body,
}

impl Call {
    pub fn new(method: Method, path: &str, body: Body) -> Self {
        Call {
            method,
            path: path.to_owned(),
            body,
        }
    }

    /// The call's path and query as an address. Every name and id in it
    /// is percent-encoded, so only a length can fail here: a name far
    /// past any limit is refused as input, before any request is made.
    pub fn uri(&self) -> Result<axum::http::Uri> {
        self.path.parse().map_err(|e| {
            CliError::new(
                Exit::Usage,
                format!(
                    "a name or id in this request is far longer than keyhole accepts \
                     (ids are at most {} characters, secret names {}): {e}",
                    keyhole_store::MAX_ID_LEN,
                    keyhole_store::MAX_NAME_LEN
                ),
            )
            .into()
        })
    }

    /// This call as a request to a router in this process (`Local`, and
    /// the web console's `crate::console::call`).
    pub fn into_request(self) -> Result<axum::http::Request<axum::body::Body>> {
        let uri = self.uri()?;
        let builder = axum::http::Request::builder().method(self.method).uri(uri);
        let request = match self.body {
            Body::Empty => builder.body(axum::body::Body::empty()),
            Body::Json(bytes) => builder
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(bytes.to_vec())),
            Body::Ndjson(bytes) => builder
                .header(axum::http::header::CONTENT_TYPE, NDJSON)
                .body(axum::body::Body::from(bytes)),
            Body::Multipart { boundary, bytes } => builder
                .header(
                    axum::http::header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(axum::body::Body::from(bytes)),
        };
        request.context("building the request")
    }
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// The API refused a request: its code, message and, for a 403, the
/// permission the token lacks.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub code: ErrorCode,
    pub message: String,
    /// The id or name the error is about, if the API said.
    pub subject: Option<String>,
    pub missing_permission: Option<String>,
}

impl ApiFailure {
    /// What a refusal's body says; `who` names the answering side for a
    /// body that says nothing (a 401 has none, on purpose).
    pub fn from_reply(reply: &Reply, who: &str) -> ApiFailure {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(&reply.body) {
            return ApiFailure {
                code: body.code,
                message: body.error,
                subject: body.subject,
                missing_permission: body.missing_permission,
            };
        }
        let (code, message) = match reply.status {
            StatusCode::UNAUTHORIZED => (
                ErrorCode::Unauthenticated,
                format!("{who} refused the token: missing, wrong, revoked or expired"),
            ),
            s => (ErrorCode::Other, format!("{who} answered {s}")),
        };
        ApiFailure {
            code,
            message,
            subject: None,
            missing_permission: None,
        }
    }
}

impl Client {
    /// The daemon if one runs (or `--server` names one), else the API in
    /// this process.
    pub fn connect(g: &Globals) -> Result<Client> {
        if let Some(server) = &g.server {
            // Before the token is read: it must not leave unencrypted.
            if !g.insecure_http {
                remote::refuse_plain_http_off_loopback(server)?;
            }
            let token = token(g, server)?;
            return Ok(Client::Remote(Remote::new(
                server,
                token,
                g.ca_cert.as_deref(),
            )?));
        }
        // A mistyped --data must not become a new, empty store that no
        // daemon serves: only `init` (and `serve`) make one. In cluster
        // mode the state is in NATS and a new host's directory is made
        // on first use.
        if g.cluster.is_none() && !g.data.exists() {
            return Err(CliError::new(
                Exit::NotFound,
                format!("no data directory at {}", g.data.display()),
            )
            .hint("check --data (KEYHOLE_DATA), or run `keyhole init` to make one")
            .into());
        }
        match Local::open(g) {
            Ok(local) => Ok(Client::Local(local)),
            Err(e) if held_by_another_process(&e) => match ServeInfo::read(&g.data) {
                Some(info) => {
                    let token = token(g, &info.address)?;
                    // A daemon on this machine serving its own certificate
                    // is trusted with it.
                    let ca = g.ca_cert.as_deref().or(info.tls_cert.as_deref());
                    Ok(Client::Remote(Remote::new(&info.address, token, ca)?))
                }
                // Held, but by a process that serves no API (yet).
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Sends `call` and returns the reply, whatever its status.
    pub fn send(&self, call: Call) -> Result<Reply> {
        match self {
            Client::Local(l) => l.send(call),
            Client::Remote(r) => r.send(call),
        }
    }

    /// Sends `call`; a 2xx reply's JSON body as `T`, any other as the
    /// [`ApiFailure`] it says.
    pub fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let reply = self.send(call)?;
        if !reply.status.is_success() {
            return Err(self.failure(&reply).into());
        }
        let body: &[u8] = if reply.body.is_empty() {
            b"null"
        } else {
            &reply.body
        };
        serde_json::from_slice(body).context("reading the API's answer")
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Call {
            method: Method::GET,
            path: path.to_owned(),
            body: Body::Empty,
        })
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.call(Call {
            method: Method::POST,
            path: path.to_owned(),
            body: json(body)?,
        })
    }

    /// A POST without a body.
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Call {
            method: Method::POST,
            path: path.to_owned(),
            body: Body::Empty,
        })
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Call {
            method: Method::DELETE,
            path: path.to_owned(),
            body: Body::Empty,
        })
    }

    fn failure(&self, reply: &Reply) -> ApiFailure {
        ApiFailure::from_reply(reply, &format!("the daemon at {}", self.place()))
    }

    /// Errors (sealed, exit 5) unless the store can read and write secret
    /// values: for verbs to say so before asking for a value.
    pub fn require_unsealed(&self) -> Result<()> {
        match self {
            Client::Local(l) => match l.sealed_reason() {
                None => Ok(()),
                Some(reason) => Err(keyhole_store::StoreError::Sealed { reason }.into()),
            },
            Client::Remote(r) => {
                #[derive(serde::Deserialize)]
                struct Health {
                    sealed: bool,
                }
                let health: Health = self.get("/healthz")?;
                if !health.sealed {
                    return Ok(());
                }
                Err(CliError::new(
                    Exit::Sealed,
                    format!(
                        "sealed: the daemon at {} has no usable master key, so it cannot store secrets",
                        r.base()
                    ),
                )
                .hint("restart `keyhole serve` with the master key this data directory was initialized with")
                .into())
            }
        }
    }

    /// Where requests go, for messages: a URL, or "this process".
    pub fn place(&self) -> String {
        match self {
            Client::Local(_) => "this process".into(),
            Client::Remote(r) => r.base().to_owned(),
        }
    }
}

/// A JSON body, serialized into a zeroizing buffer.
pub fn json(body: &impl Serialize) -> Result<Body> {
    let mut buf = Zeroizing::new(Vec::with_capacity(256));
    serde_json::to_writer(&mut *buf, body).context("encoding the request")?;
    Ok(Body::Json(buf))
}

/// A multipart/form-data body of `(name, content type, bytes)` parts, with
/// a random boundary that occurs in none of them.
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> Body {
    let boundary = loop {
        let b = format!("keyhole-{}", hex::encode(rand::random::<[u8; 16]>()));
        if parts
            .iter()
            .all(|(_, _, bytes)| memchr::memmem::find(bytes, b.as_bytes()).is_none())
        {
            break b;
        }
    };
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.2.len() + 160).sum());
    for (name, content_type, data) in parts {
        bytes.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Body::Multipart { boundary, bytes }
}

/// One path segment, percent-encoded (names are validated by the API; this
/// only keeps the URL well-formed whatever was typed).
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A query string (`?a=1&b=2`, or empty) from a serializable struct whose
/// `None` fields are left out.
pub fn query(params: &impl Serialize) -> Result<String> {
    let q = serde_urlencoded::to_string(params).context("encoding the query")?;
    Ok(if q.is_empty() { q } else { format!("?{q}") })
}

/// The environment variable holding an API token for `--server`.
pub const TOKEN_ENV: &str = "KEYHOLE_TOKEN";

/// The token for a daemon: `KEYHOLE_TOKEN`, else the token file.
fn token(g: &Globals, server: &str) -> Result<Zeroizing<String>> {
    if let Ok(t) = std::env::var(TOKEN_ENV)
        && !t.trim().is_empty()
    {
        return Ok(Zeroizing::new(t.trim().to_owned()));
    }
    let missing = || {
        CliError::new(
            Exit::Denied,
            format!("the daemon at {server} needs an API token, and none was given"),
        )
        .hint(format!(
            "set {TOKEN_ENV}, or point --token-file / KEYHOLE_TOKEN_FILE at the file \
             `keyhole init` wrote{}",
            g.token_file
                .as_deref()
                .map_or(String::new(), |p| format!(" (default {})", p.display()))
        ))
    };
    let Some(path) = &g.token_file else {
        return Err(missing().into());
    };
    match read_token_file(path) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(missing().into()),
        Err(e) => Err(e),
    }
}

/// The token in `path`; `None` if there is no such file.
fn read_token_file(path: &Path) -> Result<Option<Zeroizing<String>>> {
    // As ssh does with a private key, and keyhole with its master key: a
    // token others may read is not used (it may be theirs by now).
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "the token file {} is readable or writable by others (mode {mode:04o}): not used",
                    path.display()
                ),
            )
            .hint(format!(
                "chmod 600 {} (and replace the token if others may have read it: keyhole token rotate NAME)",
                path.display()
            ))
            .into());
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            let t = text.trim();
            if t.is_empty() {
                return Ok(None);
            }
            Ok(Some(Zeroizing::new(t.to_owned())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(CliError::new(Exit::Failure, format!("reading {}: {e}", path.display())).into())
        }
    }
}

/// Whether `e` says the data directory is held by another process.
fn held_by_another_process(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<keyhole_store::StoreError>(),
            Some(keyhole_store::StoreError::Locked { .. })
        ) || matches!(
            c.downcast_ref::<keyhole_kv::KvError>(),
            Some(keyhole_kv::KvError::Locked { .. })
        )
    })
}
