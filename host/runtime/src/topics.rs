//! Topic filters: which events a deployment receives.
//!
//! A deployment's filters are globs over the event topic (`action:*`,
//! `records:created`, `*`), matched with `globset`. Every event is checked
//! against every deployment of its environment, so the common cases stay
//! off the glob engine: `*` (the default) matches without looking, and
//! the topic is prepared for matching once per event ([`Topic`]), not once
//! per deployment.

use globset::{Candidate, Glob, GlobSet, GlobSetBuilder};

use crate::error::RuntimeError;

/// A deployment's compiled topic filters.
pub(crate) struct TopicFilter {
    /// One of the filters is `*`: every topic matches.
    all: bool,
    set: GlobSet,
}

/// An event topic, prepared once for matching against many filters.
pub(crate) struct Topic<'a>(Candidate<'a>);

impl<'a> Topic<'a> {
    pub(crate) fn new(topic: &'a str) -> Self {
        Topic(Candidate::new(topic))
    }
}

impl TopicFilter {
    /// Compiles `patterns`; an invalid glob is an `InvalidSpec` error.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, RuntimeError> {
        let invalid = |e: globset::Error| RuntimeError::InvalidSpec(e.to_string());
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            set.add(Glob::new(p).map_err(invalid)?);
        }
        Ok(TopicFilter {
            all: patterns.iter().any(|p| p == "*"),
            set: set.build().map_err(invalid)?,
        })
    }

    pub(crate) fn matches(&self, topic: &Topic<'_>) -> bool {
        self.all || self.set.is_match_candidate(&topic.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> TopicFilter {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        TopicFilter::new(&owned).unwrap()
    }

    fn matches(f: &TopicFilter, topic: &str) -> bool {
        f.matches(&Topic::new(topic))
    }

    #[test]
    fn star_matches_every_topic() {
        let f = filter(&["*"]);
        for t in ["a", "action:created", "a/b/c", "x.y", " "] {
            assert!(matches(&f, t), "{t}");
        }
    }

    #[test]
    fn globs_match_as_globset_does() {
        let f = filter(&["action:*", "records:created"]);
        assert!(matches(&f, "action:created"));
        assert!(matches(&f, "action:"));
        assert!(matches(&f, "action:a/b"));
        assert!(matches(&f, "records:created"));
        assert!(!matches(&f, "records:deleted"));
        assert!(!matches(&f, "xaction:created"));
        let f = filter(&["user.{created,deleted}", "job-?"]);
        assert!(matches(&f, "user.deleted"));
        assert!(!matches(&f, "user.updated"));
        assert!(matches(&f, "job-1"));
        assert!(!matches(&f, "job-12"));
    }

    #[test]
    fn an_invalid_glob_is_a_spec_error() {
        let err = TopicFilter::new(&["a[".to_owned()]).err().unwrap();
        assert!(matches!(err, RuntimeError::InvalidSpec(_)), "{err:?}");
    }
}
