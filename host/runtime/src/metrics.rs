//! Prometheus metrics for events, runs and `get-secret` calls.
//!
//! Kept in the runtime (not the API) so that every path that dispatches — the
//! daemon, the CLI, the benchmark — counts the same way. The memory budget
//! and the pool's retained memory are read at each scrape (`budget.rs`).

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::durations::Durations;
use crate::striped::StripedU64;

/// A counter every run may add to: striped over threads (`striped.rs`).
type Count = Counter<u64, StripedU64>;

/// Outcome of one `get-secret` call, for metrics. Defined here, beside the
/// counters it labels, so the secrets capability reports to metrics and
/// nothing points back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    NotFound,
    AccessDenied,
    InvalidName,
    Unavailable,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::NotFound => "not_found",
            CallOutcome::AccessDenied => "access_denied",
            CallOutcome::InvalidName => "invalid_name",
            CallOutcome::Unavailable => "unavailable",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    events: Count,
    runs: Family<OutcomeLabel, Count>,
    get_secret: Family<OutcomeLabel, Count>,
    run_seconds: Durations,
    /// Pre-resolved counters so the hot path skips the family lookup.
    get_secret_ok: Count,
    runs_ok: Count,
    audit_entries: Count,
    audit_refused: Count,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// These metrics and those `collector` reads at each scrape (the
    /// runtime's memory budget and pool, `budget.rs`).
    pub(crate) fn with_collector(collector: Box<dyn Collector>) -> Self {
        Self::new(Some(collector))
    }

    fn new(collector: Option<Box<dyn Collector>>) -> Self {
        let mut registry = Registry::with_prefix("keyhole");
        if let Some(collector) = collector {
            registry.register_collector(collector);
        }
        let events = Count::default();
        let runs = Family::<OutcomeLabel, Count>::default();
        let get_secret = Family::<OutcomeLabel, Count>::default();
        let run_seconds = Durations::exponential(0.000_01, 4.0, 12);
        registry.register("events", "Events dispatched", events.clone());
        registry.register("runs", "Listener runs by outcome", runs.clone());
        registry.register(
            "get_secret_calls",
            "get-secret calls by outcome",
            get_secret.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Listener run duration",
            run_seconds.clone(),
        );
        let audit_entries = Count::default();
        let audit_refused = Count::default();
        registry.register(
            "audit_entries",
            "Audit entries accepted (get-secret calls and admin actions)",
            audit_entries.clone(),
        );
        registry.register(
            "audit_refused",
            "Audit entries the log could not accept (each failed closed)",
            audit_refused.clone(),
        );
        let get_secret_ok = get_secret
            .get_or_create(&OutcomeLabel { outcome: "ok" })
            .clone();
        let runs_ok = runs.get_or_create(&OutcomeLabel { outcome: "ok" }).clone();
        Metrics {
            registry,
            runs_ok,
            events,
            runs,
            get_secret,
            run_seconds,
            get_secret_ok,
            audit_entries,
            audit_refused,
        }
    }
}

impl Metrics {
    pub(crate) fn event(&self) {
        self.events.inc();
    }

    pub(crate) fn run(&self, outcome: &'static str, took: Duration) {
        match outcome {
            "ok" => self.runs_ok.inc(),
            _ => self.runs.get_or_create(&OutcomeLabel { outcome }).inc(),
        };
        self.run_seconds.observe(took);
    }

    pub(crate) fn get_secret(&self, outcome: CallOutcome) {
        match outcome {
            CallOutcome::Ok => self.get_secret_ok.inc(),
            other => self
                .get_secret
                .get_or_create(&OutcomeLabel {
                    outcome: other.as_str(),
                })
                .inc(),
        };
    }

    /// An audit entry was accepted.
    pub fn audit_entry(&self) {
        self.audit_entries.inc();
    }

    /// An audit entry was refused, and what it was for did not happen.
    pub fn audit_refused(&self) {
        self.audit_refused.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
