//! The audit log's copy in a bucket every host shares (cluster mode): each
//! host's chain, where any host can verify and read it.
//!
//! Each host keeps its own chain in its own files, as a single host does
//! (local, synced: what the durability promises rest on), and as part of
//! writing each batch copies the batch's stored lines, MACs and links
//! included, into the shared bucket (on NATS, a JetStream stream). A batch
//! counts as written only once both hold it, so the copy is never behind
//! what callers were told; while the bucket cannot take a batch, the log is
//! *failing* and `get-secret` and admin writes fail closed, as for a full
//! disk.
//!
//! Why one chain per host rather than one for the cluster: a single chain
//! would make every host's every entry wait for the others' (each link
//! needs the MAC before it). Per-host chains in one place give the same
//! evidence: the chain key is derived from the audit root key, which the
//! hosts share through the store, so any host verifies every host's chain,
//! and a host's chain cannot be edited, reordered, dropped or truncated
//! (its head is here too, authenticated) without verification naming the
//! entry.
//!
//! Layout:
//! - `chunk/<host>/<first seq, 16 hex>`: consecutive stored lines, at most
//!   [`CHUNK_BYTES`] each, created once. A batch tried again after a
//!   failure finds its chunks already there: the same bytes are fine,
//!   other bytes are an error (two hosts sharing one name).
//! - `head/<host>`: the host's chain head, as recorded locally.
//!
//! Retention: when a host's log deletes its oldest segments, its chunks
//! before the first kept entry are deleted too (housekeeping: a failure
//! leaves them for the next time, and the chain still verifies).

use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use keyhole_kv::{Bucket, Cas, KvError};

use crate::chain::Head;
use crate::verify::Piece;

/// Most bytes in one chunk (NATS's default message limit is 1 MiB).
pub const CHUNK_BYTES: usize = 256 << 10;
/// Longest host name.
const MAX_HOST: usize = 64;

/// Where a host copies its chain: the shared bucket and its own name.
#[derive(Clone)]
pub struct Mirror {
    bucket: Arc<dyn Bucket>,
    host: String,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("host", &self.host).finish()
    }
}

/// Whether `host` is a usable host name: 1-64 of `[A-Za-z0-9_.-]`.
pub fn valid_host(host: &str) -> bool {
    (1..=MAX_HOST).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Mirror {
    /// Copies this host's chain, under the name `host`, into `bucket`.
    pub fn new(bucket: Arc<dyn Bucket>, host: &str) -> Result<Self, KvError> {
        if !valid_host(host) {
            return Err(KvError::Backend(format!(
                "audit host name {host:?} is not 1-64 of A-Z a-z 0-9 _ . -"
            )));
        }
        Ok(Mirror {
            bucket,
            host: host.to_owned(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn bucket(&self) -> &Arc<dyn Bucket> {
        &self.bucket
    }

    /// Copies one written batch (`stored`: lines ending in newlines, the
    /// first numbered `first_seq`).
    pub(crate) fn write_batch(&self, first_seq: u64, stored: &[u8]) -> io::Result<()> {
        let mut seq = first_seq;
        for chunk in split(stored, CHUNK_BYTES) {
            let key = chunk_key(&self.host, seq);
            match self.bucket.create(&key, chunk).map_err(io::Error::other)? {
                Cas::Written(_) => {}
                Cas::Conflict => {
                    let there = self.bucket.get(&key).map_err(io::Error::other)?;
                    if there.is_none_or(|e| e.value != chunk) {
                        return Err(io::Error::other(format!(
                            "the cluster's audit log already holds other entries from {}/{seq}: \
                             is another host using the name {:?}?",
                            self.host, self.host
                        )));
                    }
                }
            }
            seq += keyhole_seglog::complete_lines(chunk).count() as u64;
        }
        Ok(())
    }

    /// Records this host's head.
    pub(crate) fn write_head(&self, head: &[u8]) -> io::Result<()> {
        self.bucket
            .put(&head_key(&self.host), head)
            .map(drop)
            .map_err(io::Error::other)
    }

    /// Deletes this host's chunks that hold only entries before
    /// `first_kept`.
    pub(crate) fn trim(&self, first_kept: u64) -> Result<usize, KvError> {
        let chunks = self.bucket.scan(&chunk_prefix(&self.host))?;
        let mut deleted = 0;
        for (i, (key, entry)) in chunks.iter().enumerate() {
            let next = chunks.get(i + 1).and_then(|(k, _)| chunk_first(k));
            if next.is_none_or(|n| n > first_kept) {
                break;
            }
            deleted += usize::from(self.bucket.delete(key, entry.revision)?.written().is_some());
        }
        Ok(deleted)
    }
}

/// The hosts whose chains `bucket` holds, in name order.
pub(crate) fn hosts(bucket: &dyn Bucket) -> Result<Vec<String>, KvError> {
    let mut hosts: Vec<String> = bucket
        .scan(b"head/")?
        .into_iter()
        .chain(bucket.scan(b"chunk/")?)
        .filter_map(|(k, _)| {
            let rest = k.strip_prefix(b"head/").or(k.strip_prefix(b"chunk/"))?;
            let host = rest.split(|b| *b == b'/').next()?;
            String::from_utf8(host.to_vec()).ok()
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// `host`'s recorded head, if any (`Err`: it does not parse).
pub(crate) fn head(bucket: &dyn Bucket, host: &str) -> Result<Option<Head>, crate::AuditError> {
    let Some(e) = bucket.get(&head_key(host))? else {
        return Ok(None);
    };
    serde_json::from_slice(&e.value)
        .map(Some)
        .map_err(|e| crate::AuditError::Corrupt {
            seq: 0,
            what: format!("the recorded head of host {host}: {e}"),
        })
}

/// `host`'s chain as pieces to verify, oldest first.
pub(crate) fn pieces(bucket: &dyn Bucket, host: &str) -> Result<Vec<Piece>, KvError> {
    Ok(bucket
        .scan(&chunk_prefix(host))?
        .into_iter()
        .map(|(key, entry)| Piece {
            first: chunk_first(&key).unwrap_or(0),
            name: PathBuf::from(String::from_utf8_lossy(&key[b"chunk/".len()..]).into_owned()),
            bytes: entry.value,
        })
        .collect())
}

/// Calls `f` with `host`'s stored lines, oldest or newest first, until it
/// breaks.
pub(crate) fn walk(
    bucket: &dyn Bucket,
    host: &str,
    oldest_first: bool,
    f: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
) -> Result<(), KvError> {
    let mut chunks = pieces(bucket, host)?;
    if !oldest_first {
        chunks.reverse();
    }
    for chunk in &chunks {
        let lines = keyhole_seglog::complete_lines(&chunk.bytes);
        let flow = if oldest_first {
            lines.map(&mut *f).find(|c| c.is_break())
        } else {
            lines.rev().map(&mut *f).find(|c| c.is_break())
        };
        if flow.is_some() {
            break;
        }
    }
    Ok(())
}

fn chunk_prefix(host: &str) -> Vec<u8> {
    format!("chunk/{host}/").into_bytes()
}

fn chunk_key(host: &str, first: u64) -> Vec<u8> {
    format!("chunk/{host}/{first:016x}").into_bytes()
}

fn head_key(host: &str) -> Vec<u8> {
    format!("head/{host}").into_bytes()
}

fn chunk_first(key: &[u8]) -> Option<u64> {
    let hex = key.rsplit(|b| *b == b'/').next()?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// `stored` cut at line ends into pieces of at most `max` bytes (a longer
/// line is a piece of its own).
fn split(stored: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, b) in stored.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        if i + 1 - start > max && end > start {
            out.push(&stored[start..end]);
            start = end;
        }
        end = i + 1;
    }
    if end > start {
        out.push(&stored[start..end]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_at_line_ends() {
        let stored = b"aaaa\nbb\ncccccc\nd\n";
        assert_eq!(split(stored, 100), [&stored[..]]);
        assert_eq!(split(stored, 8), [&b"aaaa\nbb\n"[..], b"cccccc\n", b"d\n"]);
        assert_eq!(
            split(stored, 2),
            [&b"aaaa\n"[..], b"bb\n", b"cccccc\n", b"d\n"]
        );
        assert!(split(b"", 8).is_empty());
        assert_eq!(chunk_first(&chunk_key("h-1", 0x2a)), Some(42));
        assert!(valid_host("web-1.eu") && !valid_host("") && !valid_host("a/b"));
    }
}
