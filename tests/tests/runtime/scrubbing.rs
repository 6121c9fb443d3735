//! Scrubbing where the output cap cuts a value: wherever the 16 KiB cap
//! lands in a revealed value (inside a multibyte character, right after
//! one, between ASCII bytes), no piece of it reaches the run record or the
//! data directory, on stdout and on stderr.

use keyhole_runtime::{DeploySpec, OUTPUT_LIMIT, RunRecord};
use keyhole_store::Scope;
use keyhole_tests::*;
use serde_json::json;

/// 15 ASCII bytes, a 3-byte `€` (bytes 15..18), 6 more. No 4-byte piece of
/// it is all hex digits, so none can turn up by chance in a module hash.
const VALUE: &str = "KHCUT-ghijklmn-€-vwxyz";
const NAME: &str = "CUT_SECRET";

/// Every 4-byte piece of [`VALUE`] found in `haystack`.
fn pieces_in(haystack: &[u8]) -> Vec<String> {
    VALUE
        .as_bytes()
        .windows(4)
        .filter(|piece| haystack.windows(4).any(|w| w == *piece))
        .map(|piece| String::from_utf8_lossy(piece).into_owned())
        .collect()
}

fn cut_run(h: &Harness, stream: &str, kept: usize) -> RunRecord {
    let payload = json!({ "name": NAME, "filler": OUTPUT_LIMIT - kept, "stream": stream });
    h.run_of("cutter", "x", "prod", None, &payload.to_string())
}

/// Acceptance: the cap cuts the value 1..=len bytes in (and the whole value
/// fits with its newline cut off); each time the record keeps the filler
/// and `[redacted:CUT_SECRET]`, and nothing of the value.
#[test]
pub fn output_cutter() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(Scope::Environment("prod".into()), NAME, VALUE);
    h.deploy(OUTPUT_CUTTER, DeploySpec::new("cutter", "prod"));
    h.runtime.flush().unwrap();
    assert_eq!(
        pieces_in(&all_bytes(&h.data_dir())),
        Vec::<String>::new(),
        "the data directory holds pieces of the value before any run"
    );
    // Inside the `€` (16, 17), right after it (18), mid-ASCII (4, 8, 20),
    // right before it (15), the whole value (22).
    let cuts = [1, 4, 8, 15, 16, 17, 18, 20, VALUE.len()];
    for stream in ["stdout", "stderr"] {
        for kept in cuts {
            let run = cut_run(&h, stream, kept);
            let (text, other) = match stream {
                "stdout" => (&run.stdout, &run.stderr),
                _ => (&run.stderr, &run.stdout),
            };
            let filler = ".".repeat(OUTPUT_LIMIT - kept);
            assert_eq!(
                text.strip_prefix(&filler),
                Some("[redacted:CUT_SECRET]"),
                "{stream}, cut {kept} bytes into the value: recorded tail {:?}",
                &text[text.len().saturating_sub(40)..]
            );
            assert!(other.is_empty(), "{other:?}");
            assert_eq!(run.output_dropped, (VALUE.len() + 1 - kept) as u64);
            let serialized = serde_json::to_string(&run).unwrap();
            assert_eq!(
                pieces_in(serialized.as_bytes()),
                Vec::<String>::new(),
                "{stream}, cut {kept} bytes in: pieces of the value in the record"
            );
        }
    }
    assert_eq!(
        h.runtime.runs(Some("cutter"), 100).unwrap().len(),
        2 * cuts.len()
    );
    h.runtime.flush().unwrap();
    assert_eq!(
        pieces_in(&all_bytes(&h.data_dir())),
        Vec::<String>::new(),
        "pieces of the value in the data directory"
    );
}
