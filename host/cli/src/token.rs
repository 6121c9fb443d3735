//! The admin API token: created by `keyhole init` (or `keyhole token reset`),
//! shown once, and stored only as its sha256 in a bucket of its own.
//!
//! Why a hash: the data directory may be backed up or copied; a copy must
//! not let anyone call the API. Why constant time: the daemon compares the
//! hash of every presented token with the stored one using `subtle`, so
//! response timing says nothing about how much of a guess was right.

use anyhow::{Context, Result};
use keyhole_kv::Backend;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The bucket for API state, apart from the store's and runtime's.
pub const BUCKET: &str = "api";
const ADMIN_KEY: &[u8] = b"admin-token-sha256";
/// Where release 0.1 kept it (same key and value), migrated on first use.
const LEGACY_TREE: &str = "keyhole-api";

fn bucket(backend: &dyn Backend) -> Result<std::sync::Arc<dyn keyhole_kv::Bucket>> {
    let bucket = backend.bucket(BUCKET).context("opening the API bucket")?;
    keyhole_kv::migrate_legacy(backend, LEGACY_TREE, &*bucket, |k| Ok(k.to_vec()))
        .context("migrating the admin token hash")?;
    Ok(bucket)
}
const PREFIX: &str = "kh_";

/// A fresh random token: `kh_` and 64 hex digits (256 bits).
pub fn generate() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut *bytes);
    Zeroizing::new(format!("{PREFIX}{}", hex::encode(*bytes)))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Stores `token`'s hash as the admin token, replacing any previous one,
/// and flushes before returning.
pub fn install(backend: &dyn Backend, token: &str) -> Result<()> {
    let bucket = bucket(backend)?;
    bucket
        .put(ADMIN_KEY, &digest(token))
        .context("storing the admin token hash")?;
    bucket.flush().context("flushing the admin token hash")?;
    Ok(())
}

/// The stored admin token hash, if `keyhole init` has run.
#[derive(Clone)]
pub struct TokenCheck {
    hash: [u8; 32],
}

impl TokenCheck {
    pub fn load(backend: &dyn Backend) -> Result<Option<Self>> {
        let Some(entry) = bucket(backend)?
            .get(ADMIN_KEY)
            .context("reading the admin token")?
        else {
            return Ok(None);
        };
        let hash: [u8; 32] = entry.value[..]
            .try_into()
            .map_err(|_| anyhow::anyhow!("corrupt admin token record"))?;
        Ok(Some(TokenCheck { hash }))
    }

    /// Constant-time comparison of the presented token's hash.
    pub fn verify(&self, presented: &str) -> bool {
        digest(presented).ct_eq(&self.hash).into()
    }

    /// Checks an `Authorization` header value (`Bearer <token>`).
    pub fn verify_header(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
        assert!(TokenCheck::load(&kv).unwrap().is_none());
        let token = generate();
        assert!(token.starts_with(PREFIX) && token.len() == 67);
        install(&kv, &token).unwrap();
        let check = TokenCheck::load(&kv).unwrap().unwrap();
        assert!(check.verify(&token));
        assert!(!check.verify("kh_wrong"));
        let header = format!("Bearer {}", *token);
        assert!(check.verify_header(Some(header.as_bytes())));
        assert!(!check.verify_header(Some(token.as_bytes())));
        assert!(!check.verify_header(None));
        let stored = bucket(&kv).unwrap().get(ADMIN_KEY).unwrap().unwrap().value;
        assert!(
            !stored
                .windows(8)
                .any(|w| token.as_bytes().windows(8).any(|t| t == w))
        );
    }

    #[test]
    fn a_release_0_1_admin_token_still_verifies() {
        use keyhole_kv::Backend;
        let dir = tempfile::tempdir().unwrap();
        let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
        let token = generate();
        kv.write_legacy(LEGACY_TREE, &[(ADMIN_KEY, &digest(&token))])
            .unwrap();
        let check = TokenCheck::load(&kv).unwrap().expect("migrated");
        assert!(check.verify(&token));
        assert!(kv.legacy(LEGACY_TREE).unwrap().is_none(), "migrated once");
    }
}
