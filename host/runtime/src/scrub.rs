//! Removing revealed secret values from what a run leaves behind.
//!
//! Every value a listener read during a run is replaced by `[redacted:NAME]`
//! in its captured output, returned text and outbound HTTP paths and errors
//! before the run record is stored.
//!
//! Scrubbing works on bytes. Output is captured with a byte cap that can
//! cut anywhere, inside a multibyte character too, so a value can end the
//! buffer as a prefix of any byte length: [`Scrubber::scrub_output`]
//! removes occurrences and that trailing prefix from the raw bytes, and
//! only then makes text of them. Converting first would turn the cut
//! character into U+FFFD, which no prefix of the value matches, and leave
//! the rest of the prefix in the record. The lossy conversion can itself
//! make a value (invalid bytes becoming a U+FFFD the value contains), so
//! text that needed it is scrubbed again. Every other cap (the returned
//! text's, in `run/outcome.rs`) cuts after scrubbing.
//!
//! Response bodies of requests that carried an injected secret are
//! scrubbed as they stream in ([`Scrubber::scrub_stream`], used by
//! `http_scrub.rs`), with the same result as scrubbing them whole.

use std::cell::OnceCell;

use memchr::memmem::Finder;

use crate::secrets::Revealed;

/// The values one run revealed, longest first. Built once per run and
/// applied to each text the run left (output streams, returned text, HTTP
/// calls).
pub(crate) struct Scrubber<'a> {
    by_length: Vec<Value<'a>>,
}

/// One revealed value and its searcher, built at most once per run and
/// only when some text is long enough to hold the value (building one
/// costs more than a short run's whole scrub).
struct Value<'a> {
    name: &'a str,
    bytes: &'a [u8],
    finder: OnceCell<Finder<'a>>,
}

impl<'a> Value<'a> {
    fn find(&self, text: &[u8]) -> Option<usize> {
        if text.len() < self.bytes.len() {
            return None;
        }
        self.finder
            .get_or_init(|| Finder::new(self.bytes))
            .find(text)
    }
}

/// One occurrence of a value in the bytes being scrubbed.
struct Hit<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

impl<'a> Scrubber<'a> {
    pub(crate) fn new(revealed: &'a [(String, Revealed)]) -> Self {
        let mut by_length: Vec<_> = revealed
            .iter()
            .filter(|(_, v)| !v.expose().is_empty())
            .map(|(name, v)| Value {
                name,
                bytes: v.expose().as_bytes(),
                finder: OnceCell::new(),
            })
            .collect();
        by_length.sort_by_key(|v| std::cmp::Reverse(v.bytes.len()));
        Scrubber { by_length }
    }

    /// Captured output, as raw bytes, made into text for the record with
    /// every revealed value removed. `truncated`: the capture cap cut the
    /// stream (at any byte), so a trailing prefix of a value goes too.
    pub(crate) fn scrub_output(&self, bytes: Vec<u8>, truncated: bool) -> String {
        let bytes = match self.scrub_bytes(&bytes, truncated) {
            Some(scrubbed) => scrubbed,
            None => bytes,
        };
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                // Invalid bytes become U+FFFD, which a value may contain.
                let mut text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                self.scrub(&mut text, truncated);
                text
            }
        }
    }

    /// Replaces every occurrence of each revealed value in `text`. When
    /// `truncated`, also drops a tail that is a prefix of some value.
    pub(crate) fn scrub(&self, text: &mut String, truncated: bool) {
        if let Some(bytes) = self.scrub_bytes(text.as_bytes(), truncated) {
            // Always valid: in valid UTF-8, a value (valid UTF-8 itself)
            // can only match from one character boundary to another, and a
            // trailing prefix starts at one. Lossy rather than a panic.
            *text = match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
        }
    }

    /// `text` scrubbed, or `None` when nothing in it needed scrubbing (no
    /// allocation then).
    ///
    /// Occurrences are found in the original bytes, overlapping ones too
    /// (`aa` twice in `aaa`, or one value's end being another's start), and
    /// each run of overlapping occurrences becomes one `[redacted:NAMES]`,
    /// naming every value in it that is not inside a longer one. Replacing
    /// value by value instead would leave the unmatched part of the second
    /// of two overlapping values behind.
    fn scrub_bytes(&self, text: &[u8], truncated: bool) -> Option<Vec<u8>> {
        if text.is_empty() || self.by_length.is_empty() {
            return None;
        }
        let hits = self.hits(text);
        let mut out = (!hits.is_empty()).then(|| replace_hits(text, hits));
        if truncated {
            for value in &self.by_length {
                let tail = out.as_deref().unwrap_or(text);
                // Any byte length: the cut may split a character.
                let longest = (1..value.bytes.len().min(tail.len() + 1))
                    .rev()
                    .find(|&n| tail.ends_with(&value.bytes[..n]));
                if let Some(n) = longest {
                    let kept = tail.len() - n;
                    let out = out.get_or_insert_with(|| text.to_vec());
                    out.truncate(kept);
                    push_label(out, &[value.name]);
                }
            }
        }
        out
    }
}

impl<'a> Scrubber<'a> {
    /// Whether `text` holds any of the values.
    pub(crate) fn finds(&self, text: &[u8]) -> bool {
        self.by_length.iter().any(|v| v.find(text).is_some())
    }

    /// Every occurrence of every value in `text`, overlapping ones too.
    fn hits(&self, text: &[u8]) -> Vec<Hit<'a>> {
        let mut hits = Vec::new();
        for value in &self.by_length {
            let mut from = 0;
            // A text too short to hold the value (a run's short result,
            // say) skips the search.
            while let Some(i) = value.find(&text[from..]) {
                let start = from + i;
                hits.push(Hit {
                    start,
                    end: start + value.bytes.len(),
                    name: value.name,
                });
                // Overlapping occurrences count too.
                from = start + 1;
            }
        }
        hits
    }

    /// A stream scrubbed as it arrives (a response body): of `pending`,
    /// the bytes received and not yet handed on, the scrubbed text of the
    /// part no later byte can change, and that part's length; the caller
    /// keeps the rest and calls again with more, or with `end` when the
    /// stream is over.
    ///
    /// The result is what scrubbing the whole stream at once gives. Any
    /// occurrence starting before the last `longest - 1` bytes is complete
    /// already, so those bytes (the carry-over) are kept back; so is a run
    /// of overlapping occurrences that reaches into them, from its start,
    /// since a value still arriving could extend it (and its label).
    pub(crate) fn scrub_stream(&self, pending: &[u8], end: bool) -> (Vec<u8>, usize) {
        let Some(longest) = self.by_length.first().map(|v| v.bytes.len()) else {
            return (pending.to_vec(), pending.len());
        };
        let mut hits = self.hits(pending);
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let cut = if end {
            pending.len()
        } else {
            pending.len().saturating_sub(longest - 1)
        };
        let mut emit = cut;
        let mut i = 0;
        while i < hits.len() {
            let (start, mut group_end) = (hits[i].start, hits[i].end);
            i += 1;
            while i < hits.len() && hits[i].start < group_end {
                group_end = group_end.max(hits[i].end);
                i += 1;
            }
            if group_end > cut {
                emit = emit.min(start);
                break;
            }
        }
        hits.retain(|h| h.end <= emit);
        let out = if hits.is_empty() {
            pending[..emit].to_vec()
        } else {
            replace_hits(&pending[..emit], hits)
        };
        (out, emit)
    }
}

/// `text` with each run of overlapping hits replaced by one label.
fn replace_hits(text: &[u8], mut hits: Vec<Hit<'_>>) -> Vec<u8> {
    // By start, longest first, so a hit inside another sorts after it.
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < hits.len() {
        let mut end = hits[i].end;
        let mut names: Vec<&str> = vec![hits[i].name];
        let mut j = i + 1;
        while j < hits.len() && hits[j].start < end {
            // Named unless it lies inside the group's extent so far.
            if hits[j].end > end && !names.contains(&hits[j].name) {
                names.push(hits[j].name);
            }
            end = end.max(hits[j].end);
            j += 1;
        }
        out.extend_from_slice(&text[copied..hits[i].start]);
        push_label(&mut out, &names);
        copied = end;
        i = j;
    }
    out.extend_from_slice(&text[copied..]);
    out
}

/// Appends `[redacted:A,B]`.
fn push_label(out: &mut Vec<u8>, names: &[&str]) {
    out.extend_from_slice(b"[redacted:");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b']');
}

#[cfg(test)]
#[path = "scrub_stream_tests.rs"]
mod stream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn revealed(pairs: &[(&str, &str)]) -> Vec<(String, Revealed)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), Revealed::new(v)))
            .collect()
    }

    fn scrub(text: &mut String, revealed: &[(String, Revealed)], truncated: bool) {
        Scrubber::new(revealed).scrub(text, truncated);
    }

    #[test]
    fn replaces_every_occurrence() {
        let mut t = "token=xoxb-123 again xoxb-123".to_string();
        scrub(&mut t, &revealed(&[("SLACK_TOKEN", "xoxb-123")]), false);
        assert_eq!(
            t,
            "token=[redacted:SLACK_TOKEN] again [redacted:SLACK_TOKEN]"
        );
    }

    #[test]
    fn longer_value_wins_over_contained_one() {
        let mut t = "abcdef".to_string();
        scrub(
            &mut t,
            &revealed(&[("SHORT", "abc"), ("LONG", "abcdef")]),
            false,
        );
        assert_eq!(t, "[redacted:LONG]");
    }

    #[test]
    fn truncated_tail_prefix_is_removed() {
        let mut t = "log: supersec".to_string();
        scrub(&mut t, &revealed(&[("K", "supersecret")]), true);
        assert_eq!(t, "log: [redacted:K]");
        let mut untouched = "log: supersec".to_string();
        scrub(&mut untouched, &revealed(&[("K", "supersecret")]), false);
        assert_eq!(untouched, "log: supersec");
    }

    #[test]
    fn overlapping_values_leave_nothing_behind() {
        let secrets = revealed(&[("A", "abcd"), ("B", "cdef")]);
        let mut t = "x abcdef y".to_string();
        scrub(&mut t, &secrets, false);
        assert_eq!(t, "x [redacted:A,B] y");
        let mut t = "aaa".to_string();
        scrub(&mut t, &revealed(&[("K", "aa")]), false);
        assert_eq!(t, "[redacted:K]");
        let mut t = "cdef abcd".to_string();
        scrub(&mut t, &secrets, false);
        assert_eq!(t, "[redacted:B] [redacted:A]");
    }

    #[test]
    fn values_at_the_very_end_and_texts_shorter_than_a_value() {
        let secrets = revealed(&[("K", "key"), ("LONG", "a-much-longer-value")]);
        let mut t = "ends in key".to_string();
        scrub(&mut t, &secrets, false);
        assert_eq!(t, "ends in [redacted:K]");
        let mut t = "key".to_string();
        scrub(&mut t, &secrets, false);
        assert_eq!(t, "[redacted:K]");
        let mut t = "ke".to_string();
        scrub(&mut t, &secrets, false);
        assert_eq!(t, "ke");
    }

    #[test]
    fn multibyte_text_and_values() {
        let mut t = "é秘密é秘密".to_string();
        scrub(&mut t, &revealed(&[("S", "秘密")]), false);
        assert_eq!(t, "é[redacted:S]é[redacted:S]");
    }

    #[test]
    fn empty_values_and_texts_are_left_alone() {
        let mut t = "text".to_string();
        scrub(&mut t, &revealed(&[("E", "")]), true);
        assert_eq!(t, "text");
        let mut t = String::new();
        scrub(&mut t, &revealed(&[("K", "v")]), true);
        assert_eq!(t, "");
    }

    fn output(bytes: &[u8], revealed: &[(String, Revealed)], truncated: bool) -> String {
        Scrubber::new(revealed).scrub_output(bytes.to_vec(), truncated)
    }

    #[test]
    fn a_cut_inside_a_character_of_a_value_leaves_nothing() {
        let secrets = revealed(&[("K", "KHCUT-€-x")]);
        // `€` is E2 82 AC: cut after one and after two of its bytes.
        for cut in [b"log: KHCUT-\xE2".as_slice(), b"log: KHCUT-\xE2\x82"] {
            assert_eq!(output(cut, &secrets, true), "log: [redacted:K]");
        }
        assert_eq!(
            output("log: KHCUT-€".as_bytes(), &secrets, true),
            "log: [redacted:K]"
        );
        // Not cut: the guest wrote that much itself, and it is no value.
        assert_eq!(
            output(b"log: KHCUT-\xE2", &secrets, false),
            "log: KHCUT-\u{FFFD}"
        );
    }

    #[test]
    fn a_cut_character_that_is_no_value_becomes_a_replacement_character() {
        let secrets = revealed(&[("K", "zzz")]);
        assert_eq!(output(b"ok \xE2\x82", &secrets, true), "ok \u{FFFD}");
        assert_eq!(output(b"ok \xE2\x82", &[], true), "ok \u{FFFD}");
        assert_eq!(output(b"a zzz b", &secrets, false), "a [redacted:K] b");
    }

    #[test]
    fn values_holding_a_replacement_character_are_scrubbed_after_conversion() {
        let secrets = revealed(&[("K", "ab\u{FFFD}cd")]);
        // Written as is, or made by the conversion from an invalid byte.
        assert_eq!(
            output("x ab\u{FFFD}cd".as_bytes(), &secrets, false),
            "x [redacted:K]"
        );
        assert_eq!(output(b"x ab\xFFcd y", &secrets, false), "x [redacted:K] y");
        // Cut inside its U+FFFD (EF BF BD), or after an invalid byte.
        assert_eq!(output(b"x ab\xEF\xBF", &secrets, true), "x [redacted:K]");
        assert_eq!(output(b"x ab\xFF", &secrets, true), "x [redacted:K]");
    }
}
