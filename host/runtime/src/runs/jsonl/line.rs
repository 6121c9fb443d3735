//! A run record as one line of the run log, written by hand.
//!
//! Every run appends a line on the dispatch path, and `serde_json` spent
//! about 280 ns on a typical record, mostly checking one byte at a time
//! whether a string needs escaping. A record is mostly ids, hex and short
//! text that needs none, so [`write`] uses `keyhole_seglog::json`, which
//! checks a whole string at once, and leaves anything unusual (failed
//! outcomes, HTTP calls) to `serde_json`.
//!
//! The output is byte for byte what `serde_json::to_writer` writes for the
//! record's derived `Serialize` (tested below), so the log reads back with
//! the derived `Deserialize`. [`write`] destructures the record, so a new
//! field does not compile until it is written here too.

use keyhole_seglog::json::{number, serde, string};

use crate::runs::record::{Outcome, RunRecord};

/// Appends `record` to `buf`, as one line without its newline (the log
/// adds it).
pub(super) fn write(buf: &mut Vec<u8>, record: &RunRecord) {
    let RunRecord {
        id,
        event_id,
        topic,
        environment,
        space,
        listener,
        module_hash,
        outcome,
        started_at_ms,
        duration_us,
        stdout,
        stderr,
        output_dropped,
        secrets_read,
        http,
        notes,
        delivery,
    } = record;
    buf.extend_from_slice(b"{\"id\":");
    number(buf, *id);
    buf.extend_from_slice(b",\"event_id\":");
    string(buf, event_id);
    buf.extend_from_slice(b",\"topic\":");
    string(buf, topic);
    buf.extend_from_slice(b",\"environment\":");
    string(buf, environment);
    if let Some(space) = space {
        buf.extend_from_slice(b",\"space\":");
        string(buf, space);
    }
    buf.extend_from_slice(b",\"listener\":");
    string(buf, listener);
    buf.extend_from_slice(b",\"module_hash\":");
    string(buf, module_hash);
    buf.extend_from_slice(b",\"outcome\":");
    match outcome {
        Outcome::Ok { value } => {
            buf.extend_from_slice(b"{\"kind\":\"ok\",\"value\":");
            string(buf, value);
            buf.push(b'}');
        }
        other => serde(buf, other),
    }
    buf.extend_from_slice(b",\"started_at_ms\":");
    number(buf, *started_at_ms);
    buf.extend_from_slice(b",\"duration_us\":");
    number(buf, *duration_us);
    // Left out when empty, as the `skip_serializing_if`s on `RunRecord` say.
    if !stdout.is_empty() {
        buf.extend_from_slice(b",\"stdout\":");
        string(buf, stdout);
    }
    if !stderr.is_empty() {
        buf.extend_from_slice(b",\"stderr\":");
        string(buf, stderr);
    }
    if *output_dropped != 0 {
        buf.extend_from_slice(b",\"output_dropped\":");
        number(buf, *output_dropped);
    }
    if !secrets_read.is_empty() {
        buf.extend_from_slice(b",\"secrets_read\":[");
        for (i, name) in secrets_read.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            string(buf, name);
        }
        buf.push(b']');
    }
    if !http.is_empty() {
        buf.extend_from_slice(b",\"http\":");
        serde(buf, http);
    }
    if !notes.is_empty() {
        buf.extend_from_slice(b",\"notes\":");
        serde(buf, notes);
    }
    if *delivery != 1 {
        buf.extend_from_slice(b",\"delivery\":");
        number(buf, u64::from(*delivery));
    }
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpCall;

    fn base() -> RunRecord {
        RunRecord {
            id: 42,
            event_id: format!("ev_{:032x}", u128::MAX / 3),
            topic: "orders:created".into(),
            environment: "prod".into(),
            space: None,
            listener: "bench-0001".into(),
            module_hash: "ab".repeat(32),
            outcome: Outcome::Ok {
                value: "0123456789abcdef".into(),
            },
            started_at_ms: 1_780_000_000_123,
            duration_us: 0,
            stdout: String::new(),
            stderr: String::new(),
            output_dropped: 0,
            secrets_read: vec![],
            http: vec![],
            notes: vec![],
            delivery: 1,
        }
    }

    fn variants() -> Vec<RunRecord> {
        let awkward = "quote \" backslash \\ newline \n tab \t nul \0 bell \u{7} \
                       del \u{7f} é 中 😀 </script>";
        let mut out = vec![base()];
        let mut r = base();
        r.topic = awkward.into();
        r.environment = awkward.into();
        r.space = Some(awkward.into());
        r.outcome = Outcome::Ok {
            value: awkward.into(),
        };
        r.stdout = "line\n".into();
        r.stderr = awkward.into();
        r.output_dropped = u64::MAX;
        r.secrets_read = vec!["A".into(), awkward.into(), String::new()];
        r.id = u64::MAX;
        out.push(r);
        for outcome in [
            Outcome::Ok {
                value: String::new(),
            },
            Outcome::GuestError {
                message: awkward.into(),
            },
            Outcome::Deadline { timeout_ms: 5000 },
            Outcome::Memory {
                limit_bytes: 1 << 20,
            },
            Outcome::Trap {
                trap: "unreachable".into(),
                message: "wasm trap\n  0: handle".into(),
            },
            Outcome::Failed {
                message: String::new(),
            },
        ] {
            let mut r = base();
            r.outcome = outcome;
            out.push(r);
        }
        let mut r = base();
        r.notes = vec!["get-secret K: audit log unavailable (disk \"full\")".into()];
        out.push(r);
        let mut r = base();
        r.http = vec![HttpCall {
            method: "GET".into(),
            host: "example.com".into(),
            path: "/\"x\"".into(),
            status: None,
            error: Some("refused".into()),
            duration_us: 3,
            injected: Vec::new(),
        }];
        out.push(r);
        let mut r = base();
        r.http = vec![HttpCall {
            method: "POST".into(),
            host: "slack.com".into(),
            path: "/api".into(),
            status: Some(200),
            error: None,
            duration_us: 9,
            injected: vec!["SLACK_TOKEN".into()],
        }];
        out.push(r);
        out
    }

    #[test]
    fn lines_are_what_serde_json_writes() {
        for record in variants() {
            let mut line = Vec::new();
            write(&mut line, &record);
            let want = serde_json::to_vec(&record).unwrap();
            assert_eq!(
                String::from_utf8(line.clone()).unwrap(),
                String::from_utf8(want).unwrap()
            );
            let back: RunRecord = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, record);
        }
    }
}
