//! What a guest gets back once the host has injected a secret: the
//! response with every injected value replaced by `[redacted:NAME]`.
//!
//! A server that echoes its request (many do, in errors and debug
//! endpoints) would otherwise hand the guest the very credential it must
//! not read. So every response of a run that has injected a value is
//! scrubbed of the values injected so far, before the guest sees a byte:
//!
//! - headers and trailers: a value containing an injected value is
//!   rewritten, a header whose *name* contains one is dropped;
//! - the body, as it streams ([`ScrubbedBody`]): each chunk is scrubbed
//!   with a carry-over of the longest value's length less one
//!   (`Scrubber::scrub_stream`), so a value split across chunks is caught;
//!   `Content-Length` is removed, since the length changes;
//! - encodings: a request that carried a value asks for `identity`
//!   (`inject.rs`), and a response that comes back with any other
//!   `Content-Encoding` anyway is refused ([`ResponseScrub::refusal`]):
//!   compressed bytes would hide an echo from the scrubber.
//!
//! Only runs that injected something pay for this; see `http.rs`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};
use zeroize::{Zeroize, Zeroizing};

use crate::scrub::Scrubber;
use crate::secrets::Revealed;

/// How one response is scrubbed: the values injected so far in the run,
/// and whether its request carried one.
pub(crate) struct ResponseScrub {
    pub(crate) values: Vec<(String, Revealed)>,
    pub(crate) carried: bool,
}

impl ResponseScrub {
    /// Why the response must not reach the guest at all, if so: its
    /// request carried a value and it came back encoded (the header's text
    /// is the server's, and is not repeated).
    pub(crate) fn refusal<B>(&self, response: &http::Response<B>) -> Option<&'static str> {
        let encoded = response
            .headers()
            .get_all(CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
        (self.carried && encoded).then_some(
            "response refused: it came back with a Content-Encoding, and its request carried an injected secret",
        )
    }

    /// `response` with its headers scrubbed and its body scrubbed as it
    /// streams.
    pub(crate) fn apply(self, response: http::Response<WasiBody>) -> http::Response<WasiBody> {
        let (mut parts, body) = response.into_parts();
        scrub_headers(&Scrubber::new(&self.values), &mut parts.headers);
        parts.headers.remove(CONTENT_LENGTH);
        let body = ScrubbedBody {
            inner: body,
            values: self.values,
            pending: Zeroizing::new(Vec::new()),
            trailers: None,
            done: false,
        };
        http::Response::from_parts(parts, body.boxed_unsync())
    }
}

/// Rewrites each header value holding an injected value, and drops each
/// header whose name holds one. Nothing is allocated when none does.
pub(crate) fn scrub_headers(scrubber: &Scrubber<'_>, headers: &mut HeaderMap) {
    let mut changed: Vec<(http::HeaderName, Option<HeaderValue>)> = Vec::new();
    for name in headers.keys() {
        if scrubber.finds(name.as_str().as_bytes()) {
            changed.push((name.clone(), None));
            continue;
        }
        let values = headers.get_all(name);
        if values.iter().any(|v| scrubber.finds(v.as_bytes())) {
            for v in values {
                let mut text = String::from_utf8_lossy(v.as_bytes()).into_owned();
                scrubber.scrub(&mut text, false);
                // Still a valid value: only printable ASCII was added.
                let scrubbed = HeaderValue::from_bytes(text.as_bytes())
                    .unwrap_or_else(|_| HeaderValue::from_static("[redacted]"));
                changed.push((name.clone(), Some(scrubbed)));
            }
        }
    }
    let mut removed: Vec<http::HeaderName> = Vec::new();
    for (name, value) in changed {
        if !removed.contains(&name) {
            headers.remove(&name);
            removed.push(name.clone());
        }
        if let Some(value) = value {
            headers.append(name, value);
        }
    }
}

/// A response body scrubbed of injected values as it streams.
pub(crate) struct ScrubbedBody {
    inner: WasiBody,
    values: Vec<(String, Revealed)>,
    /// Received and not yet handed on: the carry-over. Zeroized, as it may
    /// hold the start of a value.
    pending: Zeroizing<Vec<u8>>,
    /// The inner body's trailers, scrubbed, once the data before them is
    /// handed on.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl ScrubbedBody {
    /// The scrubbed part of `pending` that can be handed on (all of it at
    /// the end), removed from `pending`.
    fn drain(&mut self, end: bool) -> Bytes {
        if self.pending.is_empty() {
            return Bytes::new();
        }
        let (out, used) = Scrubber::new(&self.values).scrub_stream(&self.pending, end);
        self.pending.drain(..used);
        Bytes::from(out)
    }
}

impl Body for ScrubbedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        loop {
            if let Some(trailers) = this.trailers.take() {
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let end = match frame.into_data() {
                        Ok(data) => {
                            this.pending.extend_from_slice(&data);
                            false
                        }
                        Err(frame) => match frame.into_trailers() {
                            Ok(mut trailers) => {
                                scrub_headers(&Scrubber::new(&this.values), &mut trailers);
                                this.trailers = Some(trailers);
                                true
                            }
                            // A kind of frame this version does not know.
                            Err(_) => continue,
                        },
                    };
                    let out = this.drain(end);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                None => {
                    this.done = true;
                    let out = this.drain(true);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Some(Err(e)) => {
                    // What is kept back never reaches the guest.
                    this.done = true;
                    this.pending.zeroize();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Scrubbing changes the length.
        SizeHint::default()
    }
}

#[cfg(test)]
#[path = "http_scrub_tests.rs"]
mod tests;
