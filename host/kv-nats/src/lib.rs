//! keyhole's cluster storage backend: the `keyhole-kv` seam on NATS
//! JetStream key-value buckets, so several hosts share environments,
//! spaces, sealed secrets, data keys, deployments and tokens.
//!
//! What NATS holds is what the embedded backend holds: sealed records and
//! metadata. Nothing in it opens without the master key, which stays with
//! the hosts.
//!
//! - **Buckets** are JetStream KV buckets named `NAMESPACE-NAME`. Each is
//!   created as its stream (`KV_NAMESPACE-NAME`) by hand, because the
//!   client's bucket calls fail on nats-server 2.9 (Debian's), and the
//!   configuration the server echoes back is compared with what keyhole
//!   asked for: an older server silently drops settings it does not know,
//!   and a stream made by someone else may differ. Either is an error
//!   naming the difference, never a silent change of semantics (`stream.rs`).
//! - **Keys** are arbitrary bytes in the seam and subject tokens in NATS:
//!   each is stored as `k` + lowercase hex, which keeps every byte (`.`,
//!   `*`, `>`, spaces, the empty key) out of the subject grammar.
//! - **Revisions** are the stream's sequence numbers: they grow with every
//!   write to the bucket, across keys, as the seam requires.
//! - **Compare-and-set** is JetStream's expected-last-subject-sequence;
//!   `create` is the client's (it accepts a key whose last change was a
//!   delete). Of racing writers exactly one wins, on any host.
//! - **Watches** are ordered consumers from a revision; a gap in the
//!   sequence (changes the stream no longer holds) is reported as
//!   [`Change::Lagged`]. A watch first catches up with every revision this
//!   process has written, so a change made here is seen by a watch here as
//!   soon as the write returns, as with the embedded backend. While the
//!   client is disconnected a watch stalls without a word, so the client's
//!   connection events feed [`Bucket::health`]: callers do not serve from
//!   watch-fed caches meanwhile, and empty them after each break.
//! - **Erasure**: a bucket keeps [`HISTORY`] messages per key, so a value
//!   replaced or deleted is still in the server's files; `erase_history`
//!   erases them (JetStream overwrites an erased message on disk).
//! - **Durability**: a write returns once JetStream acknowledged it (stored,
//!   and with replicas, on a quorum). `flush` has nothing more to wait for;
//!   how often the server syncs its files is the server's setting
//!   (`docs/cluster.md`).
//!
//! The seam is synchronous and NATS's client is async: the backend runs its
//! own small tokio runtime and each call waits for its operation there,
//! bounded by [`OP_TIMEOUT`]. Callers are blocking threads by the seam's
//! rule.
#![forbid(unsafe_code)]

pub mod queue;
mod stream;
#[cfg(feature = "test-server")]
pub mod test_server;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::DeleteMessageErrorKind;
use futures_util::StreamExt;
use keyhole_kv::{
    Backend, Bucket, Cas, Change, Entry, Health, KvError, LegacyRecords, Revision, Watch,
};

/// The longest any one NATS operation may take before the call fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a watch waits for changes this process already wrote.
const CATCH_UP: Duration = Duration::from_secs(5);
/// Versions of a key each bucket's stream keeps (the KV "history"): enough
/// that a watcher a little behind still sees every change.
pub const HISTORY: i64 = 8;

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// `nats://HOST:PORT` (several, comma-separated, for a NATS cluster).
    pub url: String,
    /// Prefix of every bucket name, so several keyhole installations can
    /// share one NATS account.
    pub namespace: String,
    /// Stream replicas for new buckets (3 in production: `docs/cluster.md`).
    pub replicas: usize,
}

/// The client's runtime, shared by the backend and its buckets (a bucket
/// may outlive the backend it came from), shut down when the last goes.
struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("runtime present until drop")
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Without blocking: a runtime dropped inside another would panic.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The backend: a connection to NATS and the buckets opened so far.
pub struct NatsKv {
    rt: Arc<Rt>,
    js: jetstream::Context,
    config: NatsConfig,
    buckets: Mutex<HashMap<String, Arc<NatsBucket>>>,
    link: Arc<Link>,
}

/// The connection's state as the client reports it (its events), shared by
/// every bucket: [`Bucket::health`].
#[derive(Default)]
struct Link {
    down: AtomicBool,
    breaks: AtomicU64,
}

impl Link {
    fn on(&self, event: &async_nats::Event) {
        match event {
            async_nats::Event::Disconnected => {
                self.breaks.fetch_add(1, Ordering::AcqRel);
                self.down.store(true, Ordering::Release);
            }
            async_nats::Event::Connected => self.down.store(false, Ordering::Release),
            _ => {}
        }
    }

    fn health(&self) -> Health {
        Health {
            live: !self.down.load(Ordering::Acquire),
            breaks: self.breaks.load(Ordering::Acquire),
        }
    }
}

fn backend_error(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("NATS: {what}: {e}"))
}

impl NatsKv {
    /// Connects (waiting at most [`OP_TIMEOUT`]).
    pub fn connect(config: NatsConfig) -> Result<NatsKv, KvError> {
        keyhole_kv::validate_bucket_name(&config.namespace)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyhole-nats")
            .enable_all()
            .build()?;
        let url = config.url.clone();
        let link = Arc::new(Link::default());
        let events = link.clone();
        let client = block(&rt, async move {
            async_nats::ConnectOptions::new()
                .name("keyhole")
                .event_callback(move |event| {
                    events.on(&event);
                    async {}
                })
                .connect(url.as_str())
                .await
                .map_err(|e| backend_error(&format!("connecting to {url}"), e))
        })?;
        let js = {
            let _in = rt.enter();
            jetstream::new(client)
        };
        Ok(NatsKv {
            js,
            rt: Arc::new(Rt(Some(rt))),
            config,
            buckets: Mutex::new(HashMap::new()),
            link,
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.get()
    }
}

/// Runs `f` on `rt` and waits for it (at most [`OP_TIMEOUT`]), from any
/// thread that is allowed to block.
fn block<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T, KvError>> + Send + 'static,
) -> Result<T, KvError> {
    let (tx, rx) = mpsc::sync_channel(1);
    rt.spawn(async move {
        let out = match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(out) => out,
            Err(_) => Err(KvError::Backend(format!(
                "NATS did not answer within {} s",
                OP_TIMEOUT.as_secs()
            ))),
        };
        let _ = tx.send(out);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(KvError::Backend("NATS client stopped".into())))
}

impl Backend for NatsKv {
    fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>, KvError> {
        keyhole_kv::validate_bucket_name(name)?;
        let mut open = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = open.get(name) {
            return Ok(b.clone());
        }
        let full = format!("{}-{name}", self.config.namespace);
        let (js, replicas, full2) = (self.js.clone(), self.config.replicas, full.clone());
        let (kv, secure_erase) = block(self.rt(), async move {
            let secure_erase = match stream::ensure(&js, &stream::wanted(&full2, replicas)).await {
                Ok(()) => true,
                Err(e) => {
                    let older = stream::wanted_before_erasure(&full2, replicas);
                    stream::ensure(&js, &older).await.map_err(|_| e)?;
                    false
                }
            };
            let kv = js
                .get_key_value(full2.as_str())
                .await
                .map_err(|e| backend_error(&format!("opening bucket {full2}"), e))?;
            Ok((kv, secure_erase))
        })?;
        let bucket = Arc::new(NatsBucket {
            name: name.to_owned(),
            full,
            kv,
            js: self.js.clone(),
            rt: self.rt.clone(),
            seen: Arc::new(AtomicU64::new(0)),
            link: self.link.clone(),
            secure_erase,
        });
        open.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }

    fn legacy(&self, _name: &str) -> Result<Option<LegacyRecords>, KvError> {
        Ok(None)
    }

    fn drop_legacy(&self, _name: &str) -> Result<(), KvError> {
        Ok(())
    }
}

/// One bucket.
pub struct NatsBucket {
    name: String,
    /// The JetStream bucket's name (`NAMESPACE-NAME`).
    full: String,
    kv: jetstream::kv::Store,
    /// For the tombstones `delete` publishes itself.
    js: jetstream::Context,
    rt: Arc<Rt>,
    /// The newest revision this process has written or watched.
    seen: Arc<AtomicU64>,
    link: Arc<Link>,
    /// Whether the stream allows message deletes, so that history is
    /// erased in the server's files (`stream::wanted_before_erasure`).
    secure_erase: bool,
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
        Ok(Box::new(NatsWatch {
            rx,
            last: from,
            seen: self.seen.clone(),
            pending: None,
        }))
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

/// A watch: changes forwarded from an ordered consumer.
struct NatsWatch {
    rx: mpsc::Receiver<Result<Change, KvError>>,
    /// The last revision delivered (or the watch's start).
    last: Revision,
    seen: Arc<AtomicU64>,
    /// A change held back while its gap is reported first.
    pending: Option<Change>,
}

impl NatsWatch {
    /// Delivers `c`, or first a `Lagged` for the changes before it that
    /// the stream no longer holds.
    fn deliver(&mut self, c: Change) -> Change {
        let r = c.revision();
        if r > self.last + 1 {
            self.pending = Some(c);
            self.last = r - 1;
            return Change::Lagged { revision: r - 1 };
        }
        self.last = self.last.max(r);
        c
    }

    fn next_until(&mut self, until: Option<Instant>) -> Result<Option<Change>, KvError> {
        if let Some(c) = self.pending.take() {
            self.last = self.last.max(c.revision());
            return Ok(Some(c));
        }
        let got = match self.rx.try_recv() {
            Ok(x) => Some(x),
            Err(mpsc::TryRecvError::Disconnected) => {
                return Err(KvError::Backend("NATS watch ended".into()));
            }
            Err(mpsc::TryRecvError::Empty) => {
                // Catch up with what this process wrote, else wait as asked.
                let behind = self.last < self.seen.load(Ordering::Acquire);
                let until = match (behind, until) {
                    (true, u) => Some(u.map_or(Instant::now() + CATCH_UP, |u| {
                        u.max(Instant::now() + CATCH_UP)
                    })),
                    (false, u) => u,
                };
                match until {
                    None => None,
                    Some(u) => match self
                        .rx
                        .recv_timeout(u.saturating_duration_since(Instant::now()))
                    {
                        Ok(x) => Some(x),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            return Err(KvError::Backend("NATS watch ended".into()));
                        }
                    },
                }
            }
        };
        match got {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(c)) => Ok(Some(self.deliver(c))),
        }
    }
}

impl Watch for NatsWatch {
    fn try_next(&mut self) -> Result<Option<Change>, KvError> {
        self.next_until(None)
    }

    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, KvError> {
        self.next_until(Some(Instant::now() + timeout))
    }
}
