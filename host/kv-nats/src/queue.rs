//! A work queue on a JetStream stream: cluster mode's events.
//!
//! - **Publish** is acknowledged by JetStream before it returns, so an event
//!   accepted by any host is durable; the message id (`Nats-Msg-Id`, the
//!   event id) makes a repeated submission within the duplicate window a
//!   no-op that says so.
//! - **Consume**: every host pulls from one durable consumer with explicit
//!   acks, so each message goes to one host at a time. A message not acked
//!   within `ack_wait` (its host died, or hung) is delivered again, to any
//!   host, with its delivery count; a running host extends the wait with
//!   progress acks. After `max_deliver` deliveries the server stops
//!   delivering it; the caller decides before that what a last delivery
//!   means (keyhole: the dead-letter stream, [`WorkQueue::dead_letter`]).
//! - The streams are made and checked like the KV streams (`stream.rs`),
//!   the consumer likewise here: a differing configuration is an error
//!   naming it.
//!
//! Async, unlike the KV seam: its callers are the daemon's tasks.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use keyhole_kv::KvError;

use crate::NatsKv;

/// How a queue behaves.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Deliveries wait this long for an ack (or progress) before going to
    /// another host.
    pub ack_wait: Duration,
    /// Deliveries of one message at most.
    pub max_deliver: i64,
    /// Submissions of one id within this window are one message.
    pub duplicate_window: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// A queue and its consumer.
pub struct WorkQueue {
    /// The client's runtime: the queue keeps the connection alive after
    /// the [`NatsKv`] it came from is dropped.
    _rt: std::sync::Arc<crate::Rt>,
    js: jetstream::Context,
    subject: String,
    dead_subject: String,
    consumer: consumer::PullConsumer,
    config: QueueConfig,
}

/// What publishing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The id was already in the queue's window: nothing new was queued.
    pub duplicate: bool,
}

/// One delivery of a message.
pub struct Delivery {
    message: jetstream::Message,
    /// The message as published.
    pub body: Vec<u8>,
    /// 1 for the first delivery.
    pub delivered: u64,
    /// The message's sequence in the queue's stream: unique, unlike a
    /// body that cannot be read.
    pub sequence: u64,
}

fn nats(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("NATS: {what}: {e}"))
}

impl NatsKv {
    /// The work queue `name` (stream `NAMESPACE-NAME`, subject
    /// `NAMESPACE.NAME`, dead letters on `NAMESPACE.NAME-dead` in stream
    /// `NAMESPACE-NAME-dead`), created or checked.
    pub fn work_queue(&self, name: &str, config: QueueConfig) -> Result<WorkQueue, KvError> {
        keyhole_kv::validate_bucket_name(name)?;
        let ns = self.config.namespace.clone();
        let (js, replicas) = (self.js.clone(), self.config.replicas.max(1));
        let name = name.to_owned();
        let rt = self.rt.clone();
        crate::block(self.rt.get(), async move {
            let stream_name = format!("{ns}-{name}");
            let subject = format!("{ns}.{name}");
            let want = stream::Config {
                name: stream_name.clone(),
                subjects: vec![subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: config.duplicate_window,
                max_messages: -1,
                max_messages_per_subject: -1,
                max_bytes: -1,
                ..Default::default()
            };
            crate::stream::ensure(&js, &want).await?;
            let dead_subject = format!("{ns}.{name}-dead");
            let dead = stream::Config {
                name: format!("{stream_name}-dead"),
                subjects: vec![dead_subject.clone()],
                max_messages_per_subject: -1,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            };
            crate::stream::ensure(&js, &dead).await?;
            let s = js
                .get_stream(&stream_name)
                .await
                .map_err(|e| nats(&format!("opening stream {stream_name}"), e))?;
            let want_consumer = consumer::pull::Config {
                durable_name: Some("hosts".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_deliver: config.max_deliver,
                ..Default::default()
            };
            let consumer: consumer::PullConsumer = s
                .get_or_create_consumer("hosts", want_consumer.clone())
                .await
                .map_err(|e| nats(&format!("the consumer of {stream_name}"), e))?;
            let got = &consumer.cached_info().config;
            let mut diff = Vec::new();
            if got.ack_wait != want_consumer.ack_wait {
                diff.push(format!(
                    "ack_wait is {:?}, keyhole needs {:?}",
                    got.ack_wait, want_consumer.ack_wait
                ));
            }
            if got.max_deliver != want_consumer.max_deliver {
                diff.push(format!(
                    "max_deliver is {}, keyhole needs {}",
                    got.max_deliver, want_consumer.max_deliver
                ));
            }
            if got.ack_policy != consumer::AckPolicy::Explicit {
                diff.push(format!(
                    "ack_policy is {:?}, keyhole needs Explicit",
                    got.ack_policy
                ));
            }
            if !diff.is_empty() {
                return Err(KvError::Backend(format!(
                    "NATS consumer hosts of {stream_name} is not configured as keyhole needs \
                     (every host of a cluster must run with the same queue settings): {}",
                    diff.join("; ")
                )));
            }
            Ok(WorkQueue {
                _rt: rt,
                js,
                subject,
                dead_subject,
                consumer,
                config,
            })
        })
    }
}

impl WorkQueue {
    /// Queues `body` under message id `id`, durably (acknowledged).
    pub async fn publish(&self, id: &str, body: Vec<u8>) -> Result<Published, KvError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), headers, body.into())
            .await
            .map_err(|e| nats("queueing", e))?
            .await
            .map_err(|e| nats("queueing (no acknowledgement)", e))?;
        Ok(Published {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Up to `max` deliveries, waiting at most `wait` for the first.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, KvError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| nats("fetching", e))?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let message = m.map_err(|e| nats("fetching", e))?;
            let (delivered, sequence) = message.info().map_or((1, 0), |i| {
                (u64::try_from(i.delivered).unwrap_or(1), i.stream_sequence)
            });
            out.push(Delivery {
                body: message.payload.to_vec(),
                delivered,
                sequence,
                message,
            });
        }
        Ok(out)
    }

    /// The most deliveries of one message.
    pub fn max_deliver(&self) -> u64 {
        u64::try_from(self.config.max_deliver).unwrap_or(u64::MAX)
    }

    /// How long a delivery waits for its ack or progress.
    pub fn ack_wait(&self) -> Duration {
        self.config.ack_wait
    }

    /// Copies `d` to the dead-letter stream, then acks it (leaving the
    /// queue): for a message that will not be run again.
    pub async fn dead_letter(&self, d: &Delivery, id: &str) -> Result<(), KvError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        headers.insert("Keyhole-Deliveries", d.delivered.to_string().as_str());
        self.js
            .publish_with_headers(self.dead_subject.clone(), headers, d.body.clone().into())
            .await
            .map_err(|e| nats("dead-lettering", e))?
            .await
            .map_err(|e| nats("dead-lettering (no acknowledgement)", e))?;
        d.ack().await
    }
}

impl Delivery {
    /// Done: the message leaves the queue.
    pub async fn ack(&self) -> Result<(), KvError> {
        self.message
            .ack()
            .await
            .map_err(|e| nats("acknowledging", e))
    }

    /// Still working: the ack wait starts again.
    pub async fn progress(&self) -> Result<(), KvError> {
        self.message
            .ack_with(jetstream::AckKind::Progress)
            .await
            .map_err(|e| nats("extending the ack wait", e))
    }

    /// Not done: deliver it again (to any host) after `delay`.
    pub async fn retry_after(&self, delay: Duration) -> Result<(), KvError> {
        self.message
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| nats("returning to the queue", e))
    }
}
