//! The chain that makes the log tamper-evident.
//!
//! Each stored line is
//!
//! ```text
//! {"seq":N,"prev":"<mac of line N-1>","entry":{...},"mac":"<64 hex>"}
//! ```
//!
//! where `mac` is HMAC-SHA256, under the audit key, of everything before
//! `,"mac"`. So an entry cannot be edited, dropped, reordered or moved to
//! another segment without a MAC or a link failing, and none can be forged
//! without the key. The first entry ever links to 32 zero bytes.
//!
//! The key is derived (HKDF-SHA256) from a random root key the store keeps
//! wrapped under the master key, so a copy of the data directory without
//! the master key can neither forge entries nor verify them, and master key
//! rotation does not change it.
//!
//! Dropping the newest entries (truncation) leaves a valid chain, so after
//! each batch the writer also records the *head*, the last entry's sequence
//! number and MAC, itself authenticated, in a bucket of the storage seam.
//! Verification fails if the log ends before the head.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

pub(crate) const MAC_LEN: usize = 32;
/// `,"mac":"` + 64 hex + `"}`.
const MAC_SUFFIX_LEN: usize = 8 + 2 * MAC_LEN + 2;

/// The key that authenticates the chain. Zeroized on drop; never printed.
pub struct AuditKey(Zeroizing<[u8; 32]>);

impl AuditKey {
    /// Derives the chain key from the store's audit root key.
    pub fn derive(root: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"keyhole-audit-v1"), root);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(b"entry-chain-mac", key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        AuditKey(key)
    }

    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Constant-time check of a MAC.
    pub(crate) fn verify(&self, parts: &[&[u8]], mac: &[u8; MAC_LEN]) -> bool {
        use subtle::ConstantTimeEq;
        self.mac(parts).ct_eq(mac).into()
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

/// Writes the stored form of entry `seq` (JSON `body`) linked to `prev`
/// into `out` (no newline); returns its MAC.
pub(crate) fn store(
    key: &AuditKey,
    seq: u64,
    prev: &[u8; MAC_LEN],
    body: &[u8],
    out: &mut Vec<u8>,
) -> [u8; MAC_LEN] {
    let start = out.len();
    out.extend_from_slice(b"{\"seq\":");
    keyhole_seglog::json::number(out, seq);
    out.extend_from_slice(b",\"prev\":\"");
    push_hex(out, prev);
    out.extend_from_slice(b"\",\"entry\":");
    out.extend_from_slice(body);
    let mac = key.mac(&[&out[start..]]);
    out.extend_from_slice(b",\"mac\":\"");
    push_hex(out, &mac);
    out.extend_from_slice(b"\"}");
    mac
}

/// A MAC in lowercase hex, without an intermediate `String` (`hex::encode`
/// builds one a `char` at a time: a tenth of the audit writer's time).
fn push_hex(out: &mut Vec<u8>, mac: &[u8; MAC_LEN]) {
    let mut text = [0u8; 2 * MAC_LEN];
    hex::encode_to_slice(mac, &mut text).expect("the buffer is twice the MAC's length");
    out.extend_from_slice(&text);
}

/// A stored line, taken apart.
pub(crate) struct Stored<'a> {
    pub seq: u64,
    pub prev: [u8; MAC_LEN],
    pub entry: &'a [u8],
    pub mac: [u8; MAC_LEN],
    /// What the MAC covers.
    pub covered: &'a [u8],
}

/// Takes a stored line apart; `Err` says what is malformed.
pub(crate) fn parse(line: &[u8]) -> Result<Stored<'_>, &'static str> {
    let split = line
        .len()
        .checked_sub(MAC_SUFFIX_LEN)
        .ok_or("line too short")?;
    let (covered, suffix) = line.split_at(split);
    let mac_hex = suffix
        .strip_prefix(b",\"mac\":\"")
        .and_then(|s| s.strip_suffix(b"\"}"))
        .ok_or("no MAC at the end")?;
    let rest = covered
        .strip_prefix(b"{\"seq\":")
        .ok_or("no sequence number")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or("bad sequence number")?;
    let rest = rest[digits..]
        .strip_prefix(b",\"prev\":\"")
        .ok_or("no link to the previous entry")?;
    let (prev_hex, rest) = rest.split_at_checked(2 * MAC_LEN).ok_or("short link")?;
    let entry = rest.strip_prefix(b"\",\"entry\":").ok_or("no entry")?;
    Ok(Stored {
        seq,
        prev: decode(prev_hex).ok_or("bad link")?,
        entry,
        mac: decode(mac_hex).ok_or("bad MAC")?,
        covered,
    })
}

fn decode(hex_text: &[u8]) -> Option<[u8; MAC_LEN]> {
    let mut out = [0u8; MAC_LEN];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

/// The chain's head: the newest entry known to have been written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    pub seq: u64,
    pub mac: String,
    /// HMAC of `head`, seq and mac, so the head cannot be forged either.
    pub tag: String,
}

impl Head {
    pub(crate) fn new(key: &AuditKey, seq: u64, mac: &[u8; MAC_LEN]) -> Self {
        let tag = key.mac(&[b"head", &seq.to_be_bytes(), mac]);
        Head {
            seq,
            mac: hex::encode(mac),
            tag: hex::encode(tag),
        }
    }

    /// The head's MAC, if its tag checks out.
    pub(crate) fn check(&self, key: &AuditKey) -> Option<[u8; MAC_LEN]> {
        let mac = decode(self.mac.as_bytes())?;
        let tag = decode(self.tag.as_bytes())?;
        key.verify(&[b"head", &self.seq.to_be_bytes(), &mac], &tag)
            .then_some(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lines_parse_back_and_authenticate() {
        let key = AuditKey::derive(&[7; 32]);
        let mut out = Vec::new();
        let mac = store(&key, 42, &[1; MAC_LEN], br#"{"kind":"x"}"#, &mut out);
        let s = parse(&out).unwrap();
        assert_eq!((s.seq, s.prev, s.mac), (42, [1; MAC_LEN], mac));
        assert_eq!(s.entry, br#"{"kind":"x"}"#);
        assert!(key.verify(&[s.covered], &s.mac));
        assert!(!AuditKey::derive(&[8; 32]).verify(&[s.covered], &s.mac));
        for cut in [0, 10, out.len() - 1] {
            assert!(parse(&out[..cut]).is_err());
        }
        let head = Head::new(&key, 42, &mac);
        assert_eq!(head.check(&key), Some(mac));
        let forged = Head { seq: 41, ..head };
        assert_eq!(forged.check(&key), None);
        assert_eq!(format!("{key:?}"), "AuditKey([redacted])");
    }
}
