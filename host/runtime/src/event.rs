//! Events as emitted, and the rules an event passes before it is dispatched.
//!
//! An event is checked once, before any deployment is looked at, so a bad
//! one fails whole (nothing runs) with an `invalid event` error naming the
//! rule it broke, or the store's error for an unknown environment or space.

use keyhole_store::SecretStore;
use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// Largest accepted event payload.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// An event, as emitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub topic: String,
    pub environment: String,
    pub space: Option<String>,
    /// JSON text.
    pub payload: String,
    /// Which delivery this is: 1, or more when a cluster's queue delivers
    /// the event again (its first host stopped answering). Listeners that
    /// already have a run record for the event are not run again then.
    pub delivery: u32,
}

impl Event {
    /// A new event with a fresh random id and an empty JSON object payload.
    pub fn new(topic: &str, environment: &str, space: Option<&str>) -> Self {
        Event {
            id: format!("ev_{:032x}", rand::random::<u128>()),
            topic: topic.into(),
            environment: environment.into(),
            space: space.map(Into::into),
            payload: "{}".into(),
            delivery: 1,
        }
    }

    /// The same event under a given id (a client's, for deduplication).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The same event as its `delivery`th delivery.
    pub fn with_delivery(mut self, delivery: u32) -> Self {
        self.delivery = delivery.max(1);
        self
    }

    pub fn with_payload(mut self, payload: impl Into<String>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Checks the event against the payload rules, then its scope against
    /// `store`.
    pub(crate) fn check(&self, store: &SecretStore) -> Result<(), RuntimeError> {
        self.check_shape()?;
        store.check_scope(&self.environment, self.space.as_deref())?;
        Ok(())
    }

    /// The rules that need no store: topic, id, payload size and syntax
    /// (a client checks a batch with them before sending any of it).
    pub fn check_shape(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidEvent(m));
        if self.topic.is_empty() || self.topic.len() > 256 {
            return bad("topic must be 1-256 characters".into());
        }
        if self.id.is_empty() || self.id.len() > 128 {
            return bad("id must be 1-128 characters".into());
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return bad(format!("payload is larger than {MAX_PAYLOAD_BYTES} bytes"));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&self.payload) {
            return bad(format!("payload is not valid JSON: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: &Event) -> String {
        match event.check_shape() {
            Err(RuntimeError::InvalidEvent(m)) => m,
            other => panic!("expected InvalidEvent, got {other:?}"),
        }
    }

    #[test]
    fn shape_rules_are_invalid_event_errors() {
        let ok = Event::new("t", "prod", None);
        assert!(ok.check_shape().is_ok());
        assert!(message(&Event::new("", "prod", None)).contains("topic"));
        assert!(message(&Event::new(&"t".repeat(257), "prod", None)).contains("topic"));
        let mut no_id = ok.clone();
        no_id.id.clear();
        assert!(message(&no_id).contains("id must be"));
        let big = ok
            .clone()
            .with_payload(format!("\"{}\"", "x".repeat(MAX_PAYLOAD_BYTES)));
        assert!(message(&big).contains("larger than"));
        let err = ok.with_payload("{not json").check_shape().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid event: payload is not valid JSON")
        );
    }
}
