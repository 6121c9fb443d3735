//! Scrubbing a stream as it arrives gives what scrubbing it whole gives,
//! wherever the chunks are cut.

use super::*;

fn revealed(pairs: &[(&str, &str)]) -> Vec<(String, Revealed)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), Revealed::new(v)))
        .collect()
}

/// `chunks` through [`Scrubber::scrub_stream`] as a body would feed them.
fn streamed(scrubber: &Scrubber<'_>, chunks: &[&[u8]], carry: usize) -> Vec<u8> {
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let (scrubbed, used) = scrubber.scrub_stream(&pending, false);
        out.extend_from_slice(&scrubbed);
        pending.drain(..used);
        assert!(pending.len() <= carry, "kept {} bytes", pending.len());
    }
    let (scrubbed, used) = scrubber.scrub_stream(&pending, true);
    assert_eq!(used, pending.len(), "the end hands on everything");
    out.extend_from_slice(&scrubbed);
    out
}

fn whole(scrubber: &Scrubber<'_>, text: &[u8]) -> Vec<u8> {
    scrubber
        .scrub_bytes(text, false)
        .unwrap_or_else(|| text.to_vec())
}

/// Every split into two and into three chunks, and one byte at a time.
fn every_split(secrets: &[(String, Revealed)], text: &str, carry: usize) {
    let scrubber = Scrubber::new(secrets);
    let text = text.as_bytes();
    let want = whole(&scrubber, text);
    for (_, v) in secrets {
        let v = v.expose().as_bytes();
        assert!(
            !want.windows(v.len()).any(|w| w == v),
            "the whole text is scrubbed"
        );
    }
    for i in 0..=text.len() {
        let got = streamed(&scrubber, &[&text[..i], &text[i..]], carry);
        assert_eq!(got, want, "split at {i}");
        for j in i..=text.len() {
            let got = streamed(&scrubber, &[&text[..i], &text[i..j], &text[j..]], carry);
            assert_eq!(got, want, "split at {i} and {j}");
        }
    }
    let bytes: Vec<&[u8]> = text.chunks(1).collect();
    assert_eq!(streamed(&scrubber, &bytes, carry), want, "byte by byte");
}

#[test]
fn an_echo_split_anywhere_is_scrubbed_as_a_whole() {
    let secrets = revealed(&[("SLACK_TOKEN", "xoxb-SECRET-123")]);
    let text = "authorization: Bearer xoxb-SECRET-123\n\n\
                body xoxb-SECRET-123xoxb-SECRET-123 end xoxb-SECRET-12";
    // Nothing overlaps: kept back are at most the carry-over (the value's
    // length less one) and an occurrence reaching into it.
    let carry = "xoxb-SECRET-123".len() - 1;
    every_split(&secrets, text, 2 * carry);
    let scrubber = Scrubber::new(&secrets);
    let out = String::from_utf8(whole(&scrubber, text.as_bytes())).unwrap();
    assert_eq!(
        out,
        "authorization: Bearer [redacted:SLACK_TOKEN]\n\n\
         body [redacted:SLACK_TOKEN][redacted:SLACK_TOKEN] end xoxb-SECRET-12"
    );
}

#[test]
fn overlapping_and_several_values_split_anywhere() {
    // Overlapping runs are kept back whole until they cannot grow.
    let secrets = revealed(&[("A", "abcd"), ("B", "cdef"), ("K", "aa")]);
    every_split(&secrets, "x abcdef y abcd aaaaa cdefabcd z", 64);
    let secrets = revealed(&[("S", "秘密-€"), ("T", "tok")]);
    every_split(&secrets, "秘密-€tok é秘密-€ 秘密- tok", 64);
    every_split(&secrets, "", 64);
}

#[test]
fn without_values_a_stream_passes_as_it_comes() {
    let none = revealed(&[]);
    let scrubber = Scrubber::new(&none);
    assert_eq!(scrubber.scrub_stream(b"abc", false), (b"abc".to_vec(), 3));
}
