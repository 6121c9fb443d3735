//! The run-record model: what happened each time a listener handled an
//! event.
//!
//! Kept apart from any log that stores records, so dispatch and readers
//! (the CLI, the API) share one type whatever the storage is. The serde
//! derives are the stored form too: the JSONL log writes and reads records
//! with them (`runs/jsonl/line.rs` writes the same bytes by hand).

use serde::{Deserialize, Serialize};

use crate::http::HttpCall;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `handle` returned `ok(text)`.
    Ok { value: String },
    /// `handle` returned `err(text)`.
    GuestError { message: String },
    /// The run passed its wall-clock deadline and was interrupted.
    Deadline { timeout_ms: u64 },
    /// The guest asked for more memory (or table space) than its limit.
    Memory { limit_bytes: u64 },
    /// The guest trapped (panic, stack overflow, ...).
    Trap { trap: String, message: String },
    /// The host could not run the listener (e.g. instantiation failed).
    Failed { message: String },
    /// The listener did not run: the host's memory budget
    /// (`serve --max-memory`) had no room for its memory limit within its
    /// timeout (`waited_ms`; 0 when the limit could never fit). Records
    /// before this variant existed never have it.
    MemoryBudget {
        limit_bytes: u64,
        budget_bytes: u64,
        waited_ms: u64,
    },
}

impl Outcome {
    /// The text the run returned or failed with, if the outcome has one.
    pub(crate) fn text_mut(&mut self) -> Option<&mut String> {
        match self {
            Outcome::Ok { value: t }
            | Outcome::GuestError { message: t }
            | Outcome::Trap { message: t, .. }
            | Outcome::Failed { message: t } => Some(t),
            Outcome::Deadline { .. } | Outcome::Memory { .. } | Outcome::MemoryBudget { .. } => {
                None
            }
        }
    }

    /// Every [`Outcome::label`], in the order of the variants.
    pub const LABELS: [&'static str; 7] = [
        "ok",
        "guest_error",
        "deadline",
        "memory",
        "trap",
        "failed",
        "memory_budget",
    ];

    /// Short label for metrics, listings and queries (one of
    /// [`Outcome::LABELS`]).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::GuestError { .. } => "guest_error",
            Outcome::Deadline { .. } => "deadline",
            Outcome::Memory { .. } => "memory",
            Outcome::Trap { .. } => "trap",
            Outcome::Failed { .. } => "failed",
            Outcome::MemoryBudget { .. } => "memory_budget",
        }
    }
}

/// One recorded run. Secret values never appear here: see `scrub.rs`.
///
/// In the log, empty output, lists and a zero drop count are left out of a
/// record's line (most runs have them), and read back as empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub event_id: String,
    pub topic: String,
    /// The event's environment and space (empty and absent in records
    /// written before they were recorded).
    #[serde(default)]
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    pub listener: String,
    pub module_hash: String,
    pub outcome: Outcome,
    pub started_at_ms: u64,
    pub duration_us: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Bytes of output dropped beyond the capture limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_dropped: u64,
    /// Names (never values) of the secrets this run read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_read: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpCall>,
    /// What went wrong around the run that the guest could not be told in
    /// full, e.g. a `get-secret` call refused because the audit log could
    /// not record it. Never a secret value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Which delivery of the event ran: 1, or more in cluster mode when
    /// the event came back after its first host stopped answering.
    #[serde(default = "first", skip_serializing_if = "is_first")]
    pub delivery: u32,
}

impl RunRecord {
    /// The record of a run whose guest never ran (refused by the memory
    /// budget, or given up by a cluster's queue): no output, nothing read.
    /// The run log assigns its id.
    pub(crate) fn not_run(
        event: &crate::Event,
        target: &crate::deploy::Deployment,
        outcome: Outcome,
        started_at_ms: u64,
        duration_us: u64,
    ) -> Self {
        RunRecord {
            id: 0,
            event_id: event.id.clone(),
            topic: event.topic.clone(),
            environment: event.environment.clone(),
            space: event.space.clone(),
            listener: target.spec.name.clone(),
            module_hash: target.module_hash.clone(),
            outcome,
            started_at_ms,
            duration_us,
            stdout: String::new(),
            stderr: String::new(),
            output_dropped: 0,
            secrets_read: Vec::new(),
            http: Vec::new(),
            notes: Vec::new(),
            delivery: event.delivery,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn first() -> u32 {
    1
}

fn is_first(n: &u32) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_listed() {
        let all = [
            Outcome::Ok {
                value: String::new(),
            },
            Outcome::GuestError {
                message: String::new(),
            },
            Outcome::Deadline { timeout_ms: 1 },
            Outcome::Memory { limit_bytes: 1 },
            Outcome::Trap {
                trap: String::new(),
                message: String::new(),
            },
            Outcome::Failed {
                message: String::new(),
            },
            Outcome::MemoryBudget {
                limit_bytes: 1,
                budget_bytes: 1,
                waited_ms: 0,
            },
        ];
        // A new variant does not compile here until it is in `all` too.
        for o in &all {
            match o {
                Outcome::Ok { .. }
                | Outcome::GuestError { .. }
                | Outcome::Deadline { .. }
                | Outcome::Memory { .. }
                | Outcome::Trap { .. }
                | Outcome::Failed { .. }
                | Outcome::MemoryBudget { .. } => {}
            }
        }
        let labels: Vec<&str> = all.iter().map(Outcome::label).collect();
        assert_eq!(labels, Outcome::LABELS);
    }
}
