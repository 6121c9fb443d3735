//! The admin API token: created by `keyhole init` (or `keyhole token reset`),
//! shown once, and stored only as its sha256 in a sled tree of its own.
//!
//! Why a hash: the data directory may be backed up or copied; a copy must
//! not let anyone call the API. Why constant time: the daemon compares the
//! hash of every presented token with the stored one using `subtle`, so
//! response timing says nothing about how much of a guess was right.

use anyhow::{Context, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The sled tree for API state, apart from the store's and runtime's trees.
pub const TREE: &str = "keyhole-api";
const ADMIN_KEY: &[u8] = b"admin-token-sha256";
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
pub fn install(db: &sled::Db, token: &str) -> Result<()> {
    let tree = db.open_tree(TREE).context("opening the API tree")?;
    tree.insert(ADMIN_KEY, &digest(token)[..])
        .context("storing the admin token hash")?;
    db.flush().context("flushing the admin token hash")?;
    Ok(())
}

/// The stored admin token hash, if `keyhole init` has run.
#[derive(Clone)]
pub struct TokenCheck {
    hash: [u8; 32],
}

impl TokenCheck {
    pub fn load(db: &sled::Db) -> Result<Option<Self>> {
        let tree = db.open_tree(TREE).context("opening the API tree")?;
        let Some(bytes) = tree.get(ADMIN_KEY).context("reading the admin token")? else {
            return Ok(None);
        };
        let hash: [u8; 32] = bytes[..]
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
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        assert!(TokenCheck::load(&db).unwrap().is_none());
        let token = generate();
        assert!(token.starts_with(PREFIX) && token.len() == 67);
        install(&db, &token).unwrap();
        let check = TokenCheck::load(&db).unwrap().unwrap();
        assert!(check.verify(&token));
        assert!(!check.verify("kh_wrong"));
        let header = format!("Bearer {}", *token);
        assert!(check.verify_header(Some(header.as_bytes())));
        assert!(!check.verify_header(Some(token.as_bytes())));
        assert!(!check.verify_header(None));
        let stored = db.open_tree(TREE).unwrap().get(ADMIN_KEY).unwrap().unwrap();
        assert!(
            !stored
                .windows(8)
                .any(|w| token.as_bytes().windows(8).any(|t| t == w))
        );
    }
}
