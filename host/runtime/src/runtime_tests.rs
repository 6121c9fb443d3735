use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyhole_store::KeySource;

use super::*;
use crate::runs::Outcome;

/// A run log in memory that counts its syncs.
#[derive(Default)]
struct MemoryLog {
    records: Mutex<Vec<RunRecord>>,
    syncs: AtomicUsize,
}

impl RunLog for MemoryLog {
    fn append(&self, record: &mut RunRecord) -> Result<u64, RuntimeError> {
        let mut records = self.records.lock().unwrap();
        record.id = records.len() as u64 + 1;
        records.push(record.clone());
        Ok(record.id)
    }

    fn sync(&self) -> Result<(), RuntimeError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError> {
        let records = self.records.lock().unwrap();
        let wanted = |r: &&RunRecord| query.matches(r);
        Ok(records
            .iter()
            .rev()
            .filter(wanted)
            .take(query.limit)
            .cloned()
            .collect())
    }
}

fn record(listener: &str) -> RunRecord {
    RunRecord {
        id: 0,
        event_id: "ev_1".into(),
        topic: "t".into(),
        environment: "e".into(),
        space: None,
        listener: listener.into(),
        module_hash: "00".into(),
        outcome: Outcome::Ok {
            value: String::new(),
        },
        started_at_ms: 0,
        duration_us: 1,
        stdout: String::new(),
        stderr: String::new(),
        output_dropped: 0,
        secrets_read: vec![],
        http: vec![],
        notes: vec![],
        delivery: 1,
    }
}

#[test]
fn the_run_log_is_chosen_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let store = SecretStore::open(&dir.path().join("data"), KeySource::File(key)).unwrap();
    let log = Arc::new(MemoryLog::default());
    let config = RuntimeConfig::default();
    let runtime = Runtime::open_with_run_log(store, dir.path(), config, log.clone()).unwrap();
    for listener in ["a", "b", "a"] {
        log.append(&mut record(listener)).unwrap();
    }
    let ids: Vec<u64> = runtime
        .runs(Some("a"), 10)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [3, 1]);
    assert_eq!(runtime.runs(None, 2).unwrap().len(), 2);
    let page = runtime.runs_page(&RunQuery::recent(None, 2)).unwrap();
    assert_eq!((page.runs.len(), page.next), (2, Some(2)));
    assert_eq!(runtime.run_record(2).unwrap().unwrap().listener, "b");
    assert_eq!(runtime.run_record(4).unwrap(), None);
    runtime.flush().unwrap();
    assert_eq!(log.syncs.load(Ordering::Relaxed), 1);
    assert!(!dir.path().join("runs").exists(), "no JSONL files");
}
