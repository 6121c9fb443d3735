//! The stream behind each bucket: created by keyhole with the KV layout,
//! and checked against what the server says it holds.
//!
//! Why by hand: the client's `create_key_value` first reads account limits
//! that nats-server 2.9 does not send, and fails there. Why checked: 2.9
//! silently drops settings newer than itself, and a stream of the same name
//! made by someone else (or an older keyhole) may differ. A bucket whose
//! stream differs from what keyhole needs is refused, naming each
//! difference, rather than used with other semantics.

use async_nats::jetstream::{self, stream};
use keyhole_kv::KvError;

use crate::HISTORY;

/// The stream configuration keyhole needs for bucket `bucket`.
pub fn wanted(bucket: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: HISTORY,
        max_bytes: -1,
        max_message_size: -1,
        max_messages: -1,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        // Message deletes are what erases a key's earlier revisions
        // (`erase_history`: JetStream's secure delete overwrites them).
        deny_delete: false,
        allow_direct: true,
        ..Default::default()
    }
}

/// [`wanted`] as keyhole made buckets before it erased history: message
/// deletes denied, which JetStream never lets a stream take back. Such a
/// bucket is still used; it erases a key's history by purging it, which
/// drops the messages but lets the server keep their bytes until it
/// compacts its files (`docs/cluster.md`).
pub fn wanted_before_erasure(bucket: &str, replicas: usize) -> stream::Config {
    stream::Config {
        deny_delete: true,
        ..wanted(bucket, replicas)
    }
}

/// Every setting keyhole relies on that `got` does not have. Durations
/// keyhole leaves at zero (the server's default) are not compared.
pub fn differences(want: &stream::Config, got: &stream::Config) -> Vec<String> {
    let mut d = Vec::new();
    let mut check = |what: &str, w: String, g: String| {
        if w != g {
            d.push(format!("{what} is {g}, keyhole needs {w}"));
        }
    };
    check(
        "subjects",
        format!("{:?}", want.subjects),
        format!("{:?}", got.subjects),
    );
    check(
        "retention",
        format!("{:?}", want.retention),
        format!("{:?}", got.retention),
    );
    check(
        "max_msgs_per_subject (history)",
        want.max_messages_per_subject.to_string(),
        got.max_messages_per_subject.to_string(),
    );
    check(
        "storage",
        format!("{:?}", want.storage),
        format!("{:?}", got.storage),
    );
    check(
        "num_replicas",
        want.num_replicas.to_string(),
        got.num_replicas.to_string(),
    );
    check(
        "discard",
        format!("{:?}", want.discard),
        format!("{:?}", got.discard),
    );
    check(
        "allow_rollup_hdrs",
        want.allow_rollup.to_string(),
        got.allow_rollup.to_string(),
    );
    check(
        "deny_delete",
        want.deny_delete.to_string(),
        got.deny_delete.to_string(),
    );
    check(
        "allow_direct",
        want.allow_direct.to_string(),
        got.allow_direct.to_string(),
    );
    for (what, w, g) in [
        ("max_age", want.max_age, got.max_age),
        (
            "duplicate_window",
            want.duplicate_window,
            got.duplicate_window,
        ),
    ] {
        if !w.is_zero() {
            check(what, format!("{w:?}"), format!("{g:?}"));
        }
    }
    d
}

/// Makes sure stream `want.name` exists as `want` says: created if
/// missing, and what the server echoes compared with it.
pub async fn ensure(js: &jetstream::Context, want: &stream::Config) -> Result<(), KvError> {
    let got = match js.get_stream(&want.name).await {
        Ok(s) => s.cached_info().config.clone(),
        Err(_) => js
            .create_stream(want.clone())
            .await
            .map_err(|e| KvError::Backend(format!("NATS: creating stream {}: {e}", want.name)))?
            .cached_info()
            .config
            .clone(),
    };
    let diff = differences(want, &got);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(KvError::Backend(format!(
            "NATS stream {} is not configured as keyhole needs (an older server may have dropped a setting, or another program made it): {}",
            want.name,
            diff.join("; ")
        )))
    }
}
