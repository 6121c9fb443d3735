//! Bounded capture of a guest's stdout/stderr.
//!
//! wasmtime-wasi's `MemoryOutputPipe` fails writes past its capacity, which
//! makes Rust's `println!` panic inside the guest. A listener that logs too
//! much should lose log lines, not its run, so this pipe accepts everything
//! and keeps the first `limit` bytes, counting what it dropped.
//!
//! The bytes are handed over as they are: the cap may have cut a character,
//! and a secret value with it, so they are scrubbed before they become text
//! (`scrub.rs`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: u64,
}

/// A cloneable handle to one captured stream.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    limit: usize,
    inner: Arc<Mutex<Buffer>>,
}

impl CapturedOutput {
    pub(crate) fn new(limit: usize) -> Self {
        CapturedOutput {
            limit,
            inner: Arc::default(),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.limit.saturating_sub(buf.bytes.len());
        let take = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..take]);
        buf.dropped += (data.len() - take) as u64;
    }

    /// The captured bytes, not yet text (see module docs), and how many
    /// bytes were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut buf.bytes), buf.dropped)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
