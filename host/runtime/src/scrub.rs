//! Removing revealed secret values from what a run leaves behind.
//!
//! Every value a listener read during a run is replaced by `[redacted:NAME]`
//! in its captured output, returned text and outbound HTTP paths and errors
//! before the run record is stored.
//! Output is captured with a byte cap, so a value can also be cut off at the
//! end of the buffer; [`Scrubber::scrub`] removes a trailing partial value too.

use keyhole_store::SecretValue;

/// The values one run revealed, longest first, so a value containing
/// another is replaced whole. Built once per run and applied to each text
/// the run left (output streams and returned text).
pub(crate) struct Scrubber<'a> {
    by_length: Vec<&'a (String, SecretValue)>,
}

impl<'a> Scrubber<'a> {
    pub(crate) fn new(revealed: &'a [(String, SecretValue)]) -> Self {
        let mut by_length: Vec<_> = revealed.iter().collect();
        by_length.sort_by_key(|(_, v)| std::cmp::Reverse(v.expose().len()));
        Scrubber { by_length }
    }

    /// Replaces every occurrence of each revealed value in `text`. When
    /// `truncated`, also drops a tail that is a prefix of some value.
    pub(crate) fn scrub(&self, text: &mut String, truncated: bool) {
        if text.is_empty() {
            return;
        }
        for (name, value) in &self.by_length {
            let v = value.expose();
            if !v.is_empty() && text.contains(v) {
                *text = text.replace(v, &format!("[redacted:{name}]"));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn revealed(pairs: &[(&str, &str)]) -> Vec<(String, SecretValue)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), SecretValue::new(v.to_string())))
            .collect()
    }

    fn scrub(text: &mut String, revealed: &[(String, SecretValue)], truncated: bool) {
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
}
