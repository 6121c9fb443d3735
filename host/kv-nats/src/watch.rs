//! A watch on a NATS bucket: the changes an ordered consumer forwards,
//! with gaps reported as [`Change::Lagged`] and a catch-up with every
//! revision this process wrote (see the crate docs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keyhole_kv::{Change, KvError, Revision, Watch};

/// How long a watch waits for changes this process already wrote.
const CATCH_UP: Duration = Duration::from_secs(5);

/// A watch: changes forwarded from an ordered consumer.
pub(crate) struct NatsWatch {
    rx: mpsc::Receiver<Result<Change, KvError>>,
    /// The last revision delivered (or the watch's start).
    last: Revision,
    seen: Arc<AtomicU64>,
    /// A change held back while its gap is reported first.
    pending: Option<Change>,
}

impl NatsWatch {
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<Change, KvError>>,
        from: Revision,
        seen: Arc<AtomicU64>,
    ) -> Self {
        NatsWatch {
            rx,
            last: from,
            seen,
            pending: None,
        }
    }

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
