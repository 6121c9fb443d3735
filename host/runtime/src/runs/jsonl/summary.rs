//! What a complete segment holds, in brief, so a query can pass over a
//! segment without reading it.
//!
//! A segment's lines never change once a newer segment exists, so the
//! first query that reads a complete segment sums it up once (one pass
//! over its lines' filtered fields) and later queries test the summary
//! first: the range of start times, the set of outcome labels, and a Bloom
//! filter of its listeners, environments, spaces and event ids. A summary
//! may say "maybe" for a segment without a match (then it is read, as it
//! would be without one), never "no" for a segment with one. Summaries
//! live in memory only, a few KiB per segment, and go with their segment.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use crate::runs::{Outcome, RunFields, RunQuery};

/// Bits of the Bloom filter per distinct key, and probes per key: about a
/// 1% false-positive rate.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 4;

/// Keys the Bloom filters with a per-process secret, so crafted names
/// cannot make every segment look like a match. Tests use fixed keys: with
/// a random key, "this segment is passed over unread" fails about 1% of
/// runs (a false positive reads it).
#[cfg(not(test))]
type FilterKey = std::hash::RandomState;
#[cfg(test)]
type FilterKey = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

/// The bit for outcome labels a newer release may have written.
const OTHER_OUTCOME: u8 = 1 << Outcome::LABELS.len();

/// One complete segment, in brief.
pub(super) struct Summary {
    min_started_ms: u64,
    max_started_ms: u64,
    /// A bit per label of [`Outcome::LABELS`] (and [`OTHER_OUTCOME`]).
    outcomes: u8,
    /// Listeners, environments, spaces and event ids, tagged by kind.
    keys: Vec<u64>,
}

fn outcome_bit(label: &str) -> u8 {
    Outcome::LABELS
        .iter()
        .position(|l| *l == label)
        .map_or(OTHER_OUTCOME, |i| 1 << i)
}

/// The summaries of the segments read so far, by first run id.
#[derive(Default)]
pub(super) struct Summaries {
    by_first: Mutex<HashMap<u64, Arc<Summary>>>,
    hasher: FilterKey,
}

impl Summaries {
    pub(super) fn get(&self, first: u64) -> Option<Arc<Summary>> {
        self.lock().get(&first).cloned()
    }

    /// Sums up the segment starting at `first` from its lines' fields.
    pub(super) fn insert<'a>(&self, first: u64, runs: impl Iterator<Item = RunFields<'a>>) {
        let mut min_started_ms = u64::MAX;
        let mut max_started_ms = 0;
        let mut outcomes = 0;
        let mut hashes = HashSet::new();
        for f in runs {
            min_started_ms = min_started_ms.min(f.started_at_ms);
            max_started_ms = max_started_ms.max(f.started_at_ms);
            outcomes |= outcome_bit(f.outcome);
            hashes.insert(self.hash(b'l', f.listener));
            hashes.insert(self.hash(b'e', f.environment));
            hashes.insert(self.hash(b's', f.space.unwrap_or_default()));
            hashes.insert(self.hash(b'v', f.event_id));
        }
        let bits = (hashes.len() * BITS_PER_KEY).next_power_of_two().max(64);
        let mut keys = vec![0u64; bits / 64];
        for h in hashes {
            for bit in probes(h, bits) {
                keys[bit / 64] |= 1 << (bit % 64);
            }
        }
        let summary = Summary {
            min_started_ms,
            max_started_ms,
            outcomes,
            keys,
        };
        self.lock().insert(first, Arc::new(summary));
    }

    /// Forgets the summaries of segments no longer there.
    pub(super) fn retain(&self, mut kept: impl FnMut(u64) -> bool) {
        self.lock().retain(|first, _| kept(*first));
    }

    /// Whether `summary`'s segment may hold a run `query` asks for that
    /// started at or after `min_started_ms` (what retention still shows).
    pub(super) fn may_match(
        &self,
        summary: &Summary,
        query: &RunQuery,
        min_started_ms: u64,
    ) -> bool {
        let since = query.since_ms.unwrap_or(0).max(min_started_ms);
        let has = |tag, key: &str| {
            let bits = summary.keys.len() * 64;
            probes(self.hash(tag, key), bits).all(|b| summary.keys[b / 64] & (1 << (b % 64)) != 0)
        };
        summary.max_started_ms >= since
            && query.until_ms.is_none_or(|t| summary.min_started_ms <= t)
            && query
                .outcomes
                .as_ref()
                .is_none_or(|o| o.iter().any(|l| summary.outcomes & outcome_bit(l) != 0))
            && query.listener.as_deref().is_none_or(|l| has(b'l', l))
            && query.environment.as_deref().is_none_or(|e| has(b'e', e))
            && query.space.as_deref().is_none_or(|s| has(b's', s))
            && query.event_id.as_deref().is_none_or(|v| has(b'v', v))
    }

    fn hash(&self, tag: u8, key: &str) -> u64 {
        self.hasher.hash_one((tag, key))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Summary>>> {
        self.by_first.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The filter's bits for a key's hash (double hashing).
fn probes(hash: u64, bits: usize) -> impl Iterator<Item = usize> {
    let (h1, h2) = (hash, hash.rotate_left(32) | 1);
    (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(n: u64) -> (String, String) {
        (format!("listener-{}", n % 7), format!("ev_{n:032x}"))
    }

    #[test]
    fn a_summary_never_rules_out_a_segment_with_a_match() {
        let s = Summaries::default();
        let owned: Vec<(String, String)> = (0..2_000).map(fields).collect();
        let runs = owned
            .iter()
            .enumerate()
            .map(|(n, (listener, event_id))| RunFields {
                id: n as u64,
                event_id,
                environment: if n.is_multiple_of(2) {
                    "prod"
                } else {
                    "staging"
                },
                space: n.is_multiple_of(3).then_some("team-a"),
                listener,
                outcome: if n.is_multiple_of(5) {
                    "deadline"
                } else {
                    "ok"
                },
                started_at_ms: 1_000 + n as u64,
            });
        s.insert(1, runs);
        let summary = s.get(1).unwrap();
        let q = |f: &dyn Fn(&mut RunQuery)| {
            let mut q = RunQuery::recent(None, 1);
            f(&mut q);
            s.may_match(&summary, &q, 0)
        };
        for (listener, event_id) in &owned {
            assert!(q(&|q| q.listener = Some(listener.clone())));
            assert!(q(&|q| q.event_id = Some(event_id.clone())));
        }
        assert!(q(&|q| q.space = Some("team-a".into())));
        assert!(q(&|q| q.outcomes = Some(vec!["deadline".into()])));
        assert!(!q(
            &|q| q.outcomes = Some(vec!["trap".into(), "memory".into()])
        ));
        assert!(q(&|q| q.since_ms = Some(2_999)) && !q(&|q| q.since_ms = Some(3_000)));
        assert!(q(&|q| q.until_ms = Some(1_000)) && !q(&|q| q.until_ms = Some(999)));
        assert!(
            !s.may_match(&summary, &RunQuery::default(), 3_000),
            "all expired"
        );
        let misses = (0..1_000)
            .filter(|n| q(&|q| q.event_id = Some(format!("ev_absent_{n}"))))
            .count();
        assert!(misses < 50, "{misses} false positives in 1000");
        s.retain(|first| first != 1);
        assert!(s.get(1).is_none());
    }
}
