//! Answering queries from the segment files: newest first, one segment in
//! memory at a time, reading as little as the query allows.
//!
//! A run's id is its line's sequence number (the run log appends nothing
//! else), and segment files are named by their first, so:
//!
//! 1. Segments wholly at or above the cursor (`before`) are passed over by
//!    name, unread, and so is every segment below the oldest run retention
//!    still shows; there the scan ends.
//! 2. A complete segment whose summary rules the query out is passed over
//!    unread (`summary.rs`). The first read of a complete segment sums it up.
//! 3. In a segment that is read, lines at or above the cursor are skipped
//!    unparsed; of the others only the fields a query tests are parsed
//!    ([`Head`]), and the whole record only for a match.
//! 4. The scan stops as soon as the page is full.
//!
//! [`get`] reads the one segment that holds the id.

use std::borrow::Cow;

use keyhole_seglog::{SegLog, Segment, SegmentLines};
use serde::Deserialize;

use super::summary::Summaries;
use crate::error::RuntimeError;
use crate::runs::{RunFields, RunQuery, RunRecord};

/// What retention still shows: runs from this id on that started at or
/// after this time.
#[derive(Clone, Copy, Debug)]
pub(super) struct Visible {
    pub min_id: u64,
    pub min_started_ms: u64,
}

impl Visible {
    fn shows(&self, f: &RunFields<'_>) -> bool {
        f.id >= self.min_id && f.started_at_ms >= self.min_started_ms
    }
}

/// The fields of a stored record a query tests, borrowed from its line
/// where it needs no unescaping.
#[derive(Deserialize)]
struct Head<'a> {
    id: u64,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow, default)]
    environment: Cow<'a, str>,
    #[serde(default)]
    space: Option<String>,
    #[serde(borrow)]
    listener: Cow<'a, str>,
    #[serde(borrow)]
    outcome: Kind<'a>,
    started_at_ms: u64,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

impl Head<'_> {
    fn fields(&self) -> RunFields<'_> {
        RunFields {
            id: self.id,
            event_id: &self.event_id,
            environment: &self.environment,
            space: self.space.as_deref(),
            listener: &self.listener,
            outcome: &self.outcome.kind,
            started_at_ms: self.started_at_ms,
        }
    }
}

fn corrupt(e: serde_json::Error) -> RuntimeError {
    RuntimeError::Corrupt(format!("run record: {e}"))
}

fn reading(e: std::io::Error) -> RuntimeError {
    RuntimeError::Corrupt(format!("reading run records: {e}"))
}

fn head(line: &[u8]) -> Result<Head<'_>, RuntimeError> {
    serde_json::from_slice(line).map_err(corrupt)
}

/// Records matching `query`, newest first, at most `query.limit`.
pub(super) fn query(
    log: &SegLog,
    summaries: &Summaries,
    visible: Visible,
    query: &RunQuery,
) -> Result<Vec<RunRecord>, RuntimeError> {
    let mut out = Vec::new();
    if query.limit == 0 {
        return Ok(out);
    }
    let segments = log.segments().map_err(reading)?;
    // Listed oldest first, so sorted by first id.
    summaries.retain(|first| segments.binary_search_by_key(&first, |s| s.first).is_ok());
    for segment in segments.iter().rev() {
        if query.before.is_some_and(|b| segment.first >= b) {
            continue;
        }
        if segment.end.is_some_and(|end| end <= visible.min_id) {
            break;
        }
        let summary = segment.end.and_then(|_| summaries.get(segment.first));
        if summary.is_some_and(|s| !summaries.may_match(&s, query, visible.min_started_ms)) {
            continue;
        }
        let Some(lines) = segment.read().map_err(reading)? else {
            break; // deleted since listed: older ones are gone too
        };
        if segment.end.is_some() && summaries.get(segment.first).is_none() {
            summarize(summaries, segment, &lines);
        }
        for (seq, line) in lines.lines().rev() {
            if query.before.is_some_and(|b| seq >= b) {
                continue;
            }
            let head = head(line)?;
            let fields = head.fields();
            if !visible.shows(&fields) || !query.matches_fields(&fields) {
                continue;
            }
            out.push(serde_json::from_slice(line).map_err(corrupt)?);
            if out.len() >= query.limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Sums up a complete segment; one with a line that does not parse is
/// left without a summary (a query that reaches the line reports it).
fn summarize(summaries: &Summaries, segment: &Segment, lines: &SegmentLines) {
    let heads: Result<Vec<_>, _> = lines.lines().map(|(_, line)| head(line)).collect();
    if let Ok(heads) = heads {
        summaries.insert(segment.first, heads.iter().map(Head::fields));
    }
}

/// The run with this id, if retention still shows it.
pub(super) fn get(
    log: &SegLog,
    visible: Visible,
    id: u64,
) -> Result<Option<RunRecord>, RuntimeError> {
    if id < visible.min_id {
        return Ok(None);
    }
    let segments = log.segments().map_err(reading)?;
    let Some(segment) = segments.iter().rev().find(|s| s.may_hold(id)) else {
        return Ok(None);
    };
    let Some(lines) = segment.read().map_err(reading)? else {
        return Ok(None);
    };
    let Some(line) = lines.get(id) else {
        return Ok(None);
    };
    let record: RunRecord = serde_json::from_slice(line).map_err(corrupt)?;
    if record.id != id {
        return Err(RuntimeError::Corrupt(format!(
            "run record {id} is stored as run {}",
            record.id
        )));
    }
    Ok(visible.shows(&RunFields::of(&record)).then_some(record))
}
