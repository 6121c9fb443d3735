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
//!   [`Change::Lagged`](keyhole_kv::Change::Lagged). A watch first catches
//!   up with every revision this process has written, so a change made
//!   here is seen by a watch here as soon as the write returns, as with the
//!   embedded backend. While the client is disconnected a watch stalls
//!   without a word, so the client's connection events feed
//!   [`Bucket::health`]: callers do not serve from watch-fed caches
//!   meanwhile, and empty them after each break.
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
//!
//! Files: `lib.rs` the connection and its runtime, `bucket.rs` a bucket,
//! `watch.rs` a watch, `stream.rs` the streams' configuration, `queue.rs`
//! the cluster's event queue.
#![forbid(unsafe_code)]

mod bucket;
pub mod queue;
mod stream;
#[cfg(feature = "test-server")]
pub mod test_server;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_nats::jetstream;
use keyhole_kv::{Backend, Bucket, Health, KvError, LegacyRecords};

pub use bucket::NatsBucket;

/// The longest any one NATS operation may take before the call fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
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
