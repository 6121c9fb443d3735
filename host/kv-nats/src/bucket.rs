//! One JetStream KV bucket behind the seam's [`Bucket`]: keys encoded as
//! subject tokens, compare-and-set on the stream's sequences, watches from
//! a revision, and erasure of earlier revisions (see the crate docs).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::DeleteMessageErrorKind;
use futures_util::StreamExt;
use keyhole_kv::{Bucket, Cas, Change, Entry, Health, KvError, Revision, Watch};

use crate::watch::NatsWatch;
use crate::{Link, Rt, backend_error, block};

/// One bucket.
pub struct NatsBucket {
    pub(crate) name: String,
    /// The JetStream bucket's name (`NAMESPACE-NAME`).
    pub(crate) full: String,
    pub(crate) kv: jetstream::kv::Store,
    /// For the tombstones `delete` publishes itself.
    pub(crate) js: jetstream::Context,
    pub(crate) rt: Arc<Rt>,
    /// The newest revision this process has written or watched.
    pub(crate) seen: Arc<AtomicU64>,
    pub(crate) link: Arc<Link>,
    /// Whether the stream allows message deletes, so that history is
    /// erased in the server's files (`stream::wanted_before_erasure`).
    pub(crate) secure_erase: bool,
}

/// The NATS key for a seam key: `k` + hex.
fn encode(key: &[u8]) -> String {
    format!("k{}", hex::encode(key))
}

fn decode(bucket: &str, key: &str) -> Result<Vec<u8>, KvError> {
    key.strip_prefix('k')
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| KvError::Corrupt {
            bucket: bucket.to_owned(),
            what: format!("a key keyhole did not write: {key:?}"),
        })
}

impl NatsBucket {
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, KvError>> + Send + 'static,
    ) -> Result<T, KvError> {
        block(self.rt.get(), f)
    }

    fn wrote(&self, r: Revision) -> Revision {
        self.seen.fetch_max(r, Ordering::AcqRel);
        r
    }

    fn what(&self, op: &str) -> String {
        format!("{op} in bucket {}", self.full)
    }
}

impl Bucket for NatsBucket {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, KvError> {
        let (kv, k, what) = (self.kv.clone(), encode(key), self.what("reading"));
        self.run(async move {
            let e = kv.entry(k).await.map_err(|e| backend_error(&what, e))?;
            Ok(e.filter(|e| e.operation == Operation::Put).map(|e| Entry {
                value: e.value.to_vec(),
                revision: e.revision,
            }))
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, KvError> {
        let (kv, k, v, what) = (
            self.kv.clone(),
            encode(key),
            value.to_vec(),
            self.what("writing"),
        );
        let r = self.run(async move {
            kv.put(k, v.into())
                .await
                .map_err(|e| backend_error(&what, e))
        })?;
        Ok(self.wrote(r))
    }

    fn create(&self, key: &[u8], value: &[u8]) -> Result<Cas, KvError> {
        let (kv, k, v, what) = (
            self.kv.clone(),
            encode(key),
            value.to_vec(),
            self.what("creating"),
        );
        let cas = self.run(async move {
            match kv.create(k, v.into()).await {
                Ok(r) => Ok(Cas::Written(r)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(Cas::Conflict),
                Err(e) => Err(backend_error(&what, e)),
            }
        })?;
        Ok(self.note(cas))
    }

    fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Cas, KvError> {
        let (kv, k, v, what) = (
            self.kv.clone(),
            encode(key),
            value.to_vec(),
            self.what("updating"),
        );
        let cas = self.run(async move {
            match kv.update(k, v.into(), expected).await {
                Ok(r) => Ok(Cas::Written(r)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(Cas::Conflict),
                Err(e) => Err(backend_error(&what, e)),
            }
        })?;
        Ok(self.note(cas))
    }

    fn delete(&self, key: &[u8], expected: Revision) -> Result<Cas, KvError> {
        // The client's delete does not return the tombstone's revision, so
        // the tombstone is published here, as the client would.
        let subject = format!("$KV.{}.{}", self.full, encode(key));
        let (js, what) = (self.js.clone(), self.what("deleting"));
        let cas = self.run(async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("KV-Operation", "DEL");
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                expected.to_string().as_str(),
            );
            let ack = js
                .publish_with_headers(subject, headers, Default::default())
                .await
                .map_err(|e| backend_error(&what, e))?;
            match ack.await {
                Ok(a) => Ok(Cas::Written(a.sequence)),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Cas::Conflict),
                Err(e) => Err(backend_error(&what, e)),
            }
        })?;
        Ok(self.note(cas))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, KvError> {
        let (kv, what, bucket) = (self.kv.clone(), self.what("listing"), self.full.clone());
        let prefix = prefix.to_vec();
        self.run(async move {
            let mut keys = kv.keys().await.map_err(|e| backend_error(&what, e))?;
            let mut wanted = Vec::new();
            while let Some(k) = keys.next().await {
                let k = k.map_err(|e| backend_error(&what, e))?;
                let raw = decode(&bucket, &k)?;
                if raw.starts_with(&prefix) {
                    wanted.push((raw, k));
                }
            }
            wanted.sort();
            let mut out = Vec::with_capacity(wanted.len());
            for (raw, k) in wanted {
                // A key deleted since it was listed is simply left out.
                if let Some(e) = kv.entry(k).await.map_err(|e| backend_error(&what, e))?
                    && e.operation == Operation::Put
                {
                    out.push((
                        raw,
                        Entry {
                            value: e.value.to_vec(),
                            revision: e.revision,
                        },
                    ));
                }
            }
            Ok(out)
        })
    }

    fn revision(&self) -> Revision {
        self.seen.load(Ordering::Acquire)
    }

    /// The stream's last sequence, from the server: another host's
    /// acknowledged write is there before this host has watched it.
    fn written(&self) -> Result<Revision, KvError> {
        let (stream, what) = (
            self.kv.stream.clone(),
            self.what("reading the newest revision"),
        );
        // Not counted as seen: the caches have not watched it yet.
        self.run(async move {
            let info = stream
                .get_info()
                .await
                .map_err(|e| backend_error(&what, e))?;
            Ok(info.state.last_sequence)
        })
    }

    fn watch(&self, from: Revision) -> Result<Box<dyn Watch>, KvError> {
        let (tx, rx) = mpsc::channel();
        let (kv, what, bucket) = (self.kv.clone(), self.what("watching"), self.full.clone());
        let seen = self.seen.clone();
        // The consumer exists before this returns, so no later write is
        // missed; its changes are then forwarded as they come.
        let mut feed = self.run(async move {
            kv.watch_all_from_revision(from + 1)
                .await
                .map_err(|e| backend_error(&what, e))
        })?;
        self.rt.get().spawn(async move {
            while let Some(next) = feed.next().await {
                let change = match next {
                    Ok(e) => {
                        let key = match decode(&bucket, &e.key) {
                            Ok(k) => k,
                            Err(err) => {
                                let _ = tx.send(Err(err));
                                return;
                            }
                        };
                        seen.fetch_max(e.revision, Ordering::AcqRel);
                        match e.operation {
                            Operation::Put => Change::Put {
                                key,
                                value: e.value.to_vec(),
                                revision: e.revision,
                            },
                            Operation::Delete | Operation::Purge => Change::Delete {
                                key,
                                revision: e.revision,
                            },
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(backend_error("watching", e)));
                        return;
                    }
                };
                if tx.send(Ok(change)).is_err() {
                    return; // the watch was dropped
                }
            }
        });
        Ok(Box::new(NatsWatch::new(rx, from, self.seen.clone())))
    }

    fn flush(&self) -> Result<(), KvError> {
        Ok(())
    }

    fn health(&self) -> Health {
        self.link.health()
    }

    /// Erases (JetStream's secure delete: the server overwrites the message
    /// in its files) every message of `key` but the newest; a bucket made
    /// before keyhole erased history only allows a purge. A watch from
    /// before them sees the gap as [`Change::Lagged`].
    fn erase_history(&self, key: &[u8]) -> Result<(), KvError> {
        let (kv, k, what) = (
            self.kv.clone(),
            encode(key),
            self.what("erasing the history of a key"),
        );
        let secure = self.secure_erase;
        self.run(async move {
            if !secure {
                let subject = format!("{}{k}", kv.prefix);
                kv.stream
                    .purge()
                    .filter(subject)
                    .keep(1)
                    .await
                    .map_err(|e| backend_error(&what, e))?;
                return Ok(());
            }
            let mut history = kv.history(k).await.map_err(|e| backend_error(&what, e))?;
            let mut revisions = Vec::new();
            while let Some(e) = history.next().await {
                revisions.push(e.map_err(|e| backend_error(&what, e))?.revision);
            }
            revisions.sort_unstable();
            revisions.pop(); // the newest stays
            for seq in revisions {
                match kv.stream.delete_message(seq).await {
                    Ok(_) => {}
                    // Dropped meanwhile by the stream's history limit.
                    Err(e)
                        if matches!(e.kind(), DeleteMessageErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::NO_MESSAGE_FOUND) => {}
                    Err(e) => return Err(backend_error(&what, e)),
                }
            }
            Ok(())
        })
    }
}

impl NatsBucket {
    fn note(&self, cas: Cas) -> Cas {
        if let Cas::Written(r) = cas {
            self.wrote(r);
        }
        cas
    }
}
