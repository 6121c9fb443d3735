//! Topic-bound secrets: a secret may carry topic globs (`action:*`), and a
//! listener reads it only during events whose topic matches one.
//!
//! The globs are the ones deployments filter topics with (`keyhole deploy
//! --topic`, the runtime's `topics.rs`): `globset` with its defaults, so a
//! pattern means the same in both places. They are checked and put in one
//! canonical order when a secret is set ([`normalize`]), because the
//! binding is part of the value's associated data and must read back
//! exactly as it was sealed. They are compiled once per record read from
//! the backend and kept, compiled, beside the sealed record in the cache
//! (`sealed_cache.rs`), so a `get-secret` never compiles a glob: an unbound
//! secret costs one branch, a bound one a match against its set.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::StoreError;

/// Most topic globs one secret may be bound to.
pub const MAX_TOPICS: usize = 64;
/// Longest topic glob (event topics are at most 256 characters too).
pub const MAX_TOPIC_LEN: usize = 256;

/// A secret's compiled topic globs.
pub(crate) struct TopicBinding {
    set: GlobSet,
    /// Bytes the patterns took, for the cache's accounting.
    pub(crate) bytes: usize,
}

impl TopicBinding {
    /// Compiles a stored binding. A glob that does not compile was not
    /// written by [`normalize`]: the record is corrupt.
    pub(crate) fn compile(topics: &[String]) -> Result<Self, StoreError> {
        let mut set = GlobSetBuilder::new();
        for t in topics {
            let glob = Glob::new(t)
                .map_err(|e| StoreError::corrupt(format!("secret record topic binding: {e}")))?;
            set.add(glob);
        }
        let set = set
            .build()
            .map_err(|e| StoreError::corrupt(format!("secret record topic binding: {e}")))?;
        Ok(TopicBinding {
            set,
            bytes: topics.iter().map(String::len).sum(),
        })
    }

    /// Whether an event on `topic` may read the secret.
    pub(crate) fn allows(&self, topic: &str) -> bool {
        self.set.is_match(topic)
    }
}

/// Checks the topic globs a secret is to be bound to and returns them in
/// the order they are stored: sorted, without duplicates. A binding that
/// holds `*` matches every topic, so it is no binding: the result is empty
/// (as it is for an empty list).
pub(crate) fn normalize(topics: &[String]) -> Result<Vec<String>, StoreError> {
    let bad = |topic: &str, rule: String| {
        Err(StoreError::InvalidTopics {
            topic: topic.chars().take(MAX_TOPIC_LEN + 1).collect(),
            rule,
        })
    };
    if topics.len() > MAX_TOPICS {
        return bad("", format!("at most {MAX_TOPICS} topic globs"));
    }
    for t in topics {
        if t.is_empty() || t.len() > MAX_TOPIC_LEN {
            return bad(t, format!("must be 1-{MAX_TOPIC_LEN} characters"));
        }
        if let Err(e) = Glob::new(t) {
            return bad(t, e.kind().to_string());
        }
    }
    if topics.iter().any(|t| t == "*") {
        return Ok(Vec::new());
    }
    let mut out = topics.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(ts: &[&str]) -> Vec<String> {
        ts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn bindings_match_as_topic_filters_do() {
        let b = TopicBinding::compile(&owned(&["action:*", "user.{created,deleted}"])).unwrap();
        assert!(b.allows("action:triggered"));
        assert!(b.allows("action:a/b"));
        assert!(b.allows("user.deleted"));
        assert!(!b.allows("user.updated"));
        assert!(!b.allows("records:created"));
        assert!(!b.allows("xaction:triggered"));
    }

    #[test]
    fn normalizing_sorts_dedups_and_drops_a_star() {
        assert_eq!(
            normalize(&owned(&["b", "a", "b"])).unwrap(),
            owned(&["a", "b"])
        );
        assert!(normalize(&owned(&["a", "*"])).unwrap().is_empty());
        assert!(normalize(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_globs_say_which_and_why() {
        for (topics, says) in [
            (owned(&["a["]), "unclosed character class"),
            (owned(&[""]), "1-256 characters"),
            (vec!["t".repeat(257)], "1-256 characters"),
            (vec!["t".to_string(); 65], "at most 64"),
        ] {
            let e = normalize(&topics).unwrap_err();
            assert!(matches!(e, StoreError::InvalidTopics { .. }), "{e:?}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
