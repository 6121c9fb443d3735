//! A real HTTP/1.1 server on loopback that records what it receives and
//! answers with a fixed JSON response: a stand-in for Slack in tests and in
//! the demo (`src/bin/slack_stand_in.rs`).
//!
//! A few paths answer otherwise, for the tests of injected secrets: what a
//! misbehaving or merely chatty server might send back.
//!
//! - `/echo`: every request header, as a response header `echo-NAME` and
//!   as a line of the body, then a blank line and the request body; with
//!   `?chunk=N`, the body goes out in N-byte chunks.
//! - `/encoded`: the same echo, labelled `Content-Encoding: gzip` (but not
//!   compressed).
//! - `/redirect?to=URL`: `302 Found` with `Location: URL`.
//!
//! hyper serves it, on a current-thread tokio runtime of its own, on its own
//! thread, so tests need no runtime of theirs. It binds 127.0.0.1 only, and
//! everything it does is bounded: [`MAX_CONNECTIONS`] connections in its
//! life, one request each, request heads within [`HEADER_TIMEOUT`], bodies up
//! to [`MAX_BODY_BYTES`], and each connection done within
//! [`CONNECTION_TIME`]. Dropping the server stops it.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Connections a server accepts in its life; then it stops.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Time a client has to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one connection may take, request and response.
pub const CONNECTION_TIME: Duration = Duration::from_secs(60);
/// Largest request body read; a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// One request as the server saw it. Header names are lower-case.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct StubServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Dropped to stop the server.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StubServer {
    /// Starts a server answering every request with `status` and `body`
    /// (as `application/json`).
    pub fn start(status: u16, body: &'static str) -> Self {
        Self::start_with(status, body, |_| {})
    }

    /// The same, calling `on_request` with each request as it arrives,
    /// before answering it.
    pub fn start_with(
        status: u16,
        body: &'static str,
        on_request: impl Fn(&Received) + Send + Sync + 'static,
    ) -> Self {
        let status = StatusCode::from_u16(status).expect("an HTTP status code");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(Handler {
            status,
            body,
            log: received.clone(),
            on_request: Box::new(on_request),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("stub-server-{port}"))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime")
                    .block_on(serve(listener, handler, stopped))
            })
            .expect("spawn stub server thread");
        StubServer {
            port,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Blocks until the server stops by itself (after [`MAX_CONNECTIONS`]).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("stub server thread");
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Handler {
    status: StatusCode,
    body: &'static str,
    log: Arc<Mutex<Vec<Received>>>,
    on_request: Box<dyn Fn(&Received) + Send + Sync>,
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Reply>, Infallible> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(json(StatusCode::PAYLOAD_TOO_LARGE, r#"{"ok":false}"#)),
        };
        let req = Received {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_string()),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes());
                    (k.as_str().to_string(), v.trim().to_string())
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        (self.on_request)(&req);
        let answer = answer(&req, &body).unwrap_or_else(|| json(self.status, self.body));
        self.log.lock().unwrap().push(req);
        Ok(answer)
    }
}

/// A response body: whole, or in chunks of a given size.
type Reply = BoxBody<Bytes, Infallible>;

fn json(status: StatusCode, body: &'static str) -> Response<Reply> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The answer of the special paths (see the module docs), if `req` is for
/// one.
fn answer(req: &Received, body: &[u8]) -> Option<Response<Reply>> {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    match path {
        "/redirect" => {
            let mut resp = Response::new(Full::new(Bytes::new()).boxed());
            *resp.status_mut() = StatusCode::FOUND;
            let to = HeaderValue::from_str(param("to").unwrap_or("/")).ok()?;
            resp.headers_mut().insert(LOCATION, to);
            Some(resp)
        }
        "/echo" | "/encoded" => {
            let mut text = Vec::new();
            for (k, v) in &req.headers {
                text.extend_from_slice(format!("{k}: {v}\n").as_bytes());
            }
            text.push(b'\n');
            text.extend_from_slice(body);
            let chunk = param("chunk")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let mut resp = Response::new(
                Chunks {
                    data: Bytes::from(text),
                    size: chunk.max(1),
                }
                .boxed(),
            );
            let headers = resp.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            for (k, v) in &req.headers {
                let name = HeaderName::from_bytes(format!("echo-{k}").as_bytes());
                if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(v)) {
                    headers.append(name, value);
                }
            }
            if path == "/encoded" {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Some(resp)
        }
        _ => None,
    }
}

/// `data` as frames of `size` bytes.
struct Chunks {
    data: Bytes,
    size: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.size.min(self.data.len());
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// Accepts and serves connections until `stopped` fires (or its sender is
/// dropped) or [`MAX_CONNECTIONS`] were accepted; then lets the connections
/// in flight finish.
async fn serve(listener: TcpListener, handler: Arc<Handler>, mut stopped: oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let mut connections = JoinSet::new();
    for _ in 0..MAX_CONNECTIONS {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let handler = handler.clone();
        let conn = http1::Builder::new()
            .keep_alive(false)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let handler = handler.clone();
                    async move { handler.handle(req).await }
                }),
            );
        connections.spawn(tokio::time::timeout(CONNECTION_TIME, conn));
        while connections.try_join_next().is_some() {}
    }
    tokio::select! {
        _ = stopped => {}
        _ = connections.join_all() => {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// Sends `request` on a new connection; returns the whole answer.
    fn exchange(server: &StubServer, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read to close");
        answer
    }

    #[test]
    fn records_each_request_answers_it_and_stops_when_dropped() {
        let server = StubServer::start(201, r#"{"ok":true}"#);
        let answer = exchange(
            &server,
            "POST /chat.postMessage?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer t0k\r\nContent-Length: 5\r\n\r\nhello",
        );
        let lower = answer.to_ascii_lowercase();
        assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
        assert!(lower.contains("content-type: application/json"), "{answer}");
        assert!(lower.contains("connection: close"), "{answer}");
        assert!(answer.ends_with(r#"{"ok":true}"#), "{answer}");
        exchange(
            &server,
            "PUT /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );

        let got = server.received();
        assert_eq!(got.len(), 2);
        let first = (&got[0].method[..], &got[0].path[..], &got[0].body[..]);
        assert_eq!(first, ("POST", "/chat.postMessage?x=1", "hello"));
        assert_eq!(got[0].header("Authorization"), Some("Bearer t0k"));
        assert!(got[0].headers.iter().all(|(k, _)| *k == k.to_lowercase()));
        assert_eq!((&got[1].method[..], &got[1].body[..]), ("PUT", "abcde"));

        let port = server.port;
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn echoes_redirects_and_labels_an_encoding() {
        let server = StubServer::start(200, "{}");
        let answer = exchange(
            &server,
            "POST /echo?chunk=3 HTTP/1.1\r\nHost: h\r\nX-Key: k3y\r\nContent-Length: 4\r\n\r\nbody",
        );
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("echo-x-key: k3y"), "{answer}");
        assert!(lower.contains("transfer-encoding: chunked"), "{answer}");
        // "host: h\nx-key: k3y\ncontent-length: 4\n\nbody", in 3-byte chunks.
        assert!(
            answer.contains("\r\n\r\n3\r\nhos\r\n3\r\nt: \r\n"),
            "{answer}"
        );
        assert_eq!(answer.matches("\r\n3\r\n").count(), 14, "{answer}");
        assert!(answer.ends_with("\r\n3\r\nody\r\n0\r\n\r\n"), "{answer}");
        let answer = exchange(
            &server,
            "GET /redirect?to=http://127.0.0.1:1/x HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 302 "), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("location: http://127.0.0.1:1/x")
        );
        let answer = exchange(&server, "GET /encoded HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-encoding: gzip")
        );
        assert_eq!(server.received().len(), 3);
    }
}
