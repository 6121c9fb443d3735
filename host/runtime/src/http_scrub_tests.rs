//! Responses as a guest gets them after an injection: headers, body and
//! trailers scrubbed, encoded answers refused.

use std::collections::VecDeque;

use super::*;

const TOKEN: &str = "xoxb-INJECTED-42";

fn values() -> Vec<(String, Revealed)> {
    vec![("SLACK_TOKEN".to_owned(), Revealed::new(TOKEN))]
}

/// A body made of the given frames, handed out one per poll.
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = HttpError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

fn response(
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
    trailers: Option<HeaderMap>,
) -> http::Response<WasiBody> {
    let mut frames: VecDeque<Frame<Bytes>> = chunks
        .iter()
        .map(|c| Frame::data(Bytes::copy_from_slice(c)))
        .collect();
    frames.extend(trailers.map(Frame::trailers));
    let mut r = http::Response::new(Frames(frames).boxed_unsync());
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// The body's bytes and trailers, as the guest would read them.
fn read(r: http::Response<WasiBody>) -> (Vec<u8>, Option<HeaderMap>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let collected = rt.block_on(r.into_body().collect()).unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers)
}

fn scrub(carried: bool) -> ResponseScrub {
    ResponseScrub {
        values: values(),
        carried,
    }
}

#[test]
fn an_echoed_body_split_at_every_point_reaches_the_guest_scrubbed() {
    let echo = format!("{{\"authorization\":\"Bearer {TOKEN}\",\"body\":\"{TOKEN}{TOKEN}\"}}");
    let want = "{\"authorization\":\"Bearer [redacted:SLACK_TOKEN]\",\
                \"body\":\"[redacted:SLACK_TOKEN][redacted:SLACK_TOKEN]\"}";
    let bytes = echo.as_bytes();
    for i in 0..=bytes.len() {
        for j in (i..=bytes.len()).step_by(7) {
            let r = response(&[], &[&bytes[..i], &bytes[i..j], &bytes[j..]], None);
            let (body, _) = read(scrub(true).apply(r));
            assert_eq!(String::from_utf8(body).unwrap(), want, "split at {i}, {j}");
        }
    }
}

#[test]
fn headers_and_trailers_are_scrubbed_and_the_length_dropped() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-echo", format!("t={TOKEN}").parse().unwrap());
    let r = response(
        &[
            ("content-length", "99"),
            ("echo-authorization", &format!("Bearer {TOKEN}")),
            ("set-cookie", "a=1"),
            ("set-cookie", &format!("b={TOKEN}")),
            (&format!("x-{}", TOKEN.to_ascii_lowercase()), "1"),
            ("content-type", "application/json"),
        ],
        &[b"ok"],
        Some(trailers),
    );
    let r = scrub(true).apply(r);
    let h = r.headers();
    assert!(h.get("content-length").is_none());
    assert_eq!(h["echo-authorization"], "Bearer [redacted:SLACK_TOKEN]");
    let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=[redacted:SLACK_TOKEN]"]);
    assert_eq!(h["content-type"], "application/json");
    // Header names are lower case: the value's lower-case form is not the
    // value, but a name holding the value itself is dropped.
    let mut named = HeaderMap::new();
    named.insert("x-xoxb", "1".parse().unwrap());
    let lower = vec![("K".to_owned(), Revealed::new("x-xoxb"))];
    scrub_headers(&Scrubber::new(&lower), &mut named);
    assert!(named.is_empty());
    let (body, trailers) = read(r);
    assert_eq!(body, b"ok");
    assert_eq!(trailers.unwrap()["x-echo"], "t=[redacted:SLACK_TOKEN]");
}

#[test]
fn an_encoded_answer_to_a_request_that_carried_a_value_is_refused() {
    for (coding, refused) in [
        ("gzip", true),
        ("identity", false),
        ("br, identity", true),
        ("IDENTITY", false),
    ] {
        let r = response(&[("content-encoding", coding)], &[], None);
        assert_eq!(scrub(true).refusal(&r).is_some(), refused, "{coding}");
        // A request that carried nothing gets its answer as it is.
        assert!(scrub(false).refusal(&r).is_none());
    }
    assert!(scrub(true).refusal(&response(&[], &[], None)).is_none());
}
