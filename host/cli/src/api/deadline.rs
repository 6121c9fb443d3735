//! A deadline for receiving each request body (`serve --request-timeout`).
//!
//! The header-read timeout (see `serve.rs`) stops a client from holding a
//! connection by trickling a request head, but once the head is in nothing
//! bounds the body: a client that declares `Content-Length: 100` and sends
//! ten bytes would keep its handler waiting, and its connection open,
//! forever. So every request body is wrapped in a [`DeadlineBody`]: waiting
//! for body data past the deadline (counted from the moment the request
//! reaches the router) fails the read with [`BodyTimedOut`], which
//! `read_body` answers with a 408, and the 408 closes the connection (the
//! rest of the request would otherwise be read as the next one).
//!
//! Only waiting for the client is bounded, not handler work. Cutting a
//! handler short would drop an event half-dispatched, or answer 408 for a
//! deployment that still completes on the blocking pool; work is bounded
//! where it runs (each listener run has its own deadline).

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// Middleware: gives the request body `timeout` to arrive, and closes the
/// connection after a 408.
pub async fn limit_body_time(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let req = req.map(|body| Body::new(DeadlineBody::new(body, timeout)));
    let mut response = next.run(req).await;
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        // RFC 9110 §15.5.9: the request was left incomplete.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The error a [`DeadlineBody`] read fails with once its time is up.
#[derive(Debug)]
pub struct BodyTimedOut(Duration);

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body not received within {}",
            humantime::format_duration(self.0)
        )
    }
}

impl StdError for BodyTimedOut {}

/// The [`BodyTimedOut`] somewhere in `e`'s chain of sources, if any.
pub fn timed_out<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a BodyTimedOut> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        next = err.source();
    }
    None
}

/// A body whose reads fail with [`BodyTimedOut`] once `timeout` has passed
/// since it was wrapped, whenever no data is ready.
pub struct DeadlineBody {
    inner: Body,
    timer: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    pub fn new(inner: Body, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            timer: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        ready!(this.timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body whose data never comes.
    struct Stalled;

    impl HttpBody for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    /// Runs `f` on a runtime with a timer (a `DeadlineBody` needs one).
    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_stalled_body_times_out_and_is_recognised_through_axum_errors() {
        let timeout = Duration::from_millis(20);
        let err = block_on(async {
            let body = Body::new(DeadlineBody::new(Body::new(Stalled), timeout));
            body.collect().await.unwrap_err()
        });
        let t = timed_out(&err).expect("a BodyTimedOut in the chain");
        assert_eq!(t.to_string(), "request body not received within 20ms");
    }

    #[test]
    fn a_prompt_body_is_untouched() {
        let bytes = block_on(async {
            let body = DeadlineBody::new(Body::from("hello"), Duration::from_secs(5));
            assert_eq!(body.size_hint().exact(), Some(5));
            Body::new(body).collect().await.unwrap().to_bytes()
        });
        assert_eq!(&bytes[..], b"hello");
    }

    #[test]
    fn other_errors_are_not_timeouts() {
        let e = axum::Error::new(std::io::Error::other("reset"));
        assert!(timed_out(&e).is_none());
    }
}
