//! Removing revealed secret values from what a run leaves behind.
//!
//! Every value a listener read during a run is replaced by `[redacted:NAME]`
//! in its captured output, returned text and outbound HTTP paths and errors
//! before the run record is stored.
//! Output is captured with a byte cap, so a value can also be cut off at the
//! end of the buffer; [`Scrubber::scrub`] removes a trailing partial value too.

use crate::secrets::Revealed;

/// The values one run revealed, longest first. Built once per run and
/// applied to each text the run left (output streams, returned text, HTTP
/// calls).
pub(crate) struct Scrubber<'a> {
    by_length: Vec<&'a (String, Revealed)>,
}

/// One occurrence of a value in the text being scrubbed.
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
            .collect();
        by_length.sort_by_key(|(_, v)| std::cmp::Reverse(v.expose().len()));
        Scrubber { by_length }
    }

    /// Replaces every occurrence of each revealed value in `text`. When
    /// `truncated`, also drops a tail that is a prefix of some value.
    ///
    /// Occurrences are found in the original text, overlapping ones too
    /// (`aa` twice in `aaa`, or one value's end being another's start), and
    /// each run of overlapping occurrences becomes one `[redacted:NAMES]`,
    /// naming every value in it that is not inside a longer one. Replacing
    /// value by value instead would leave the unmatched part of the second
    /// of two overlapping values behind.
    pub(crate) fn scrub(&self, text: &mut String, truncated: bool) {
        if text.is_empty() || self.by_length.is_empty() {
            return;
        }
        let mut hits = Vec::new();
        for (name, value) in &self.by_length {
            let v = value.expose();
            let mut from = 0;
            // `find` prepares a searcher for `v` on every call; a text too
            // short to hold `v` (a run's short result, say) skips that.
            while text.len() - from >= v.len()
                && let Some(i) = text[from..].find(v)
            {
                let start = from + i;
                hits.push(Hit {
                    start,
                    end: start + v.len(),
                    name,
                });
                // The next char boundary: overlapping occurrences count too.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if !hits.is_empty() {
            *text = replace_hits(text, hits);
        }
        if truncated {
            for (name, value) in &self.by_length {
                let v = value.expose();
                let longest = (1..v.len().min(text.len() + 1))
                    .rev()
                    .filter(|&n| v.is_char_boundary(n))
                    .find(|&n| text.ends_with(&v[..n]));
                if let Some(n) = longest {
                    text.truncate(text.len() - n);
                    text.push_str(&format!("[redacted:{name}]"));
                }
            }
        }
    }
}

/// `text` with each run of overlapping hits replaced by one label.
fn replace_hits(text: &str, mut hits: Vec<Hit<'_>>) -> String {
    // By start, longest first, so a hit inside another sorts after it.
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut out = String::with_capacity(text.len());
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
        out.push_str(&text[copied..hits[i].start]);
        out.push_str("[redacted:");
        out.push_str(&names.join(","));
        out.push(']');
        copied = end;
        i = j;
    }
    out.push_str(&text[copied..]);
    out
}

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
}
