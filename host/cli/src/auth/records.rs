//! API tokens as stored: one record per token in the bucket `api`, under
//! `token/NAME`, holding its role, scope, times and the sha256 of the token
//! (never the token).
//!
//! Why a hash: the data directory may be backed up or copied; a copy must
//! not let anyone call the API. Tokens carry 256 random bits, so a plain
//! sha256 is enough (there is nothing to brute-force).
//!
//! Every change is compare-and-set on the record's revision, so a
//! revocation, a rotation and the daemon writing back a "last used" time
//! never undo each other. Release 0.1 kept one admin hash under
//! `admin-token-sha256` (first in a tree of its own, `keyhole-api`); opening
//! the bucket turns it into the token named `admin` with role admin, so a
//! 0.1 token keeps working.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyhole_kv::{Backend, Bucket, Cas, Entry};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Role, TokenError, TokenScope, valid_name};

/// The bucket for API state, apart from the store's and runtime's.
pub const BUCKET: &str = "api";
/// Prefix of token records.
pub(super) const PREFIX: &[u8] = b"token/";
/// Release 0.1's admin token hash (same key in the legacy tree).
const LEGACY_ADMIN_KEY: &[u8] = b"admin-token-sha256";
/// Where release 0.1 kept it, migrated on first use.
const LEGACY_TREE: &str = "keyhole-api";
/// The name every installation's first admin token has.
pub const ADMIN: &str = "admin";
/// Who "created" a token carried over from release 0.1.
const LEGACY_CREATOR: &str = "release-0.1";
const TOKEN_PREFIX: &str = "kh_";
/// Longest `--expires`: far beyond sensible, short enough not to overflow.
const MAX_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Compare-and-set retries before giving up with `Contended`.
const CAS_TRIES: usize = 16;

/// A fresh random token: `kh_` and 64 hex digits (256 bits).
pub fn generate() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut *bytes);
    Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex::encode(*bytes)))
}

/// `text` with every API token in it replaced by `kh_[redacted]`: for
/// text a caller typed that is about to be kept (an audit entry's target or
/// detail), in case a token was pasted where a name belongs. A token is
/// `kh_` and 64 hex digits; a shorter run is not one and is kept.
pub fn redact_tokens(text: &str) -> Cow<'_, str> {
    const TOKEN_HEX: usize = 64;
    let hex_after = |i: usize| {
        text[i + TOKEN_PREFIX.len()..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count()
    };
    let tokens = || {
        text.match_indices(TOKEN_PREFIX)
            .map(|(i, _)| (i, hex_after(i)))
            .filter(|&(_, hex)| hex >= TOKEN_HEX)
    };
    if tokens().next().is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    // A run of hex digits holds no `kh_`: the matches never overlap.
    for (i, hex) in tokens() {
        out.push_str(&text[rest..i]);
        out.push_str("kh_[redacted]");
        rest = i + TOKEN_PREFIX.len() + hex;
    }
    out.push_str(&text[rest..]);
    Cow::Owned(out)
}

pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One token as stored. `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub scope: TokenScope,
    pub(super) sha256: [u8; 32],
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub last_used_ms: Option<u64>,
    /// The actor that created it (`local:USER`, `token:NAME`).
    pub created_by: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| now_ms >= t)
    }
}

/// The stored form (JSON). Unknown fields are kept out of the way, so a
/// newer release may add some.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    space: Option<String>,
    sha256: String,
    created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_ms: Option<u64>,
    #[serde(default)]
    created_by: String,
}

fn encode(t: &Token) -> Vec<u8> {
    let wire = Wire {
        role: t.role.name().to_string(),
        environment: t.scope.environment().map(Into::into),
        space: t.scope.space().map(Into::into),
        sha256: hex::encode(t.sha256),
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
        last_used_ms: t.last_used_ms,
        created_by: t.created_by.clone(),
    };
    serde_json::to_vec(&wire).expect("a token record serializes")
}

/// Decodes the record under `key` (`token/NAME`). Errors name the token only.
pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Token, TokenError> {
    let name = key
        .strip_prefix(PREFIX)
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|n| valid_name(n))
        .ok_or_else(|| TokenError::Corrupt("a token key is not a valid name".into()))?;
    let bad = |what: &str| TokenError::Corrupt(format!("token {name}: {what}"));
    let w: Wire = serde_json::from_slice(value).map_err(|_| bad("not a token record"))?;
    let role = w.role.parse::<Role>().map_err(|_| bad("unknown role"))?;
    let scope = TokenScope::from_parts(w.environment, w.space).ok_or_else(|| bad("bad scope"))?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&w.sha256, &mut sha256).map_err(|_| bad("bad hash"))?;
    Ok(Token {
        name: name.to_string(),
        role,
        scope,
        sha256,
        created_at_ms: w.created_at_ms,
        expires_at_ms: w.expires_at_ms,
        last_used_ms: w.last_used_ms,
        created_by: w.created_by,
    })
}

fn key(name: &str) -> Vec<u8> {
    [PREFIX, name.as_bytes()].concat()
}

/// What `token create` / `POST /v1/tokens` ask for.
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub scope: TokenScope,
    /// From now; `None` never expires.
    pub expires_in: Option<Duration>,
    pub created_by: String,
}

/// The tokens of one installation.
#[derive(Clone)]
pub struct Tokens {
    bucket: Arc<dyn Bucket>,
}

impl Tokens {
    /// Opens the bucket, first carrying over release 0.1's admin hash.
    pub fn open(backend: &dyn Backend) -> Result<Self, TokenError> {
        let bucket = backend.bucket(BUCKET)?;
        keyhole_kv::migrate_legacy(backend, LEGACY_TREE, &*bucket, |k| Ok(k.to_vec()))?;
        let tokens = Tokens { bucket };
        tokens.migrate_legacy_admin()?;
        Ok(tokens)
    }

    pub(super) fn bucket(&self) -> &Arc<dyn Bucket> {
        &self.bucket
    }

    /// `admin-token-sha256` becomes the token `admin` (role admin). Safe to
    /// repeat after a crash: the old key goes only once the record exists.
    fn migrate_legacy_admin(&self) -> Result<(), TokenError> {
        let Some(old) = self.bucket.get(LEGACY_ADMIN_KEY)? else {
            return Ok(());
        };
        let sha256: [u8; 32] = old.value[..]
            .try_into()
            .map_err(|_| TokenError::Corrupt("release 0.1 admin token hash".into()))?;
        let admin = Token {
            name: ADMIN.into(),
            role: Role::Admin,
            scope: TokenScope::All,
            sha256,
            created_at_ms: now_ms(),
            expires_at_ms: None,
            last_used_ms: None,
            created_by: LEGACY_CREATOR.into(),
        };
        // A `Conflict` means an earlier run got this far already.
        let _ = self.bucket.create(&key(ADMIN), &encode(&admin))?;
        self.bucket.flush()?;
        let _ = self.bucket.delete(LEGACY_ADMIN_KEY, old.revision)?;
        self.bucket.flush()?;
        Ok(())
    }

    /// Whether any token exists (an initialized data directory has one).
    pub fn any(&self) -> Result<bool, TokenError> {
        Ok(!self.bucket.scan(PREFIX)?.is_empty())
    }

    /// Every token, by name. Records that do not decode are errors.
    pub fn list(&self) -> Result<Vec<Token>, TokenError> {
        self.bucket
            .scan(PREFIX)?
            .iter()
            .map(|(k, e)| decode(k, &e.value))
            .collect()
    }

    fn get(&self, name: &str) -> Result<Option<(Token, Entry)>, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::InvalidName);
        }
        let key = key(name);
        match self.bucket.get(&key)? {
            None => Ok(None),
            Some(e) => Ok(Some((decode(&key, &e.value)?, e))),
        }
    }

    /// Creates a token; returns it with the one clear copy of its secret.
    /// The caller has checked that its scope exists.
    pub fn create(&self, new: NewToken) -> Result<(Token, Zeroizing<String>), TokenError> {
        if !valid_name(&new.name) {
            return Err(TokenError::InvalidName);
        }
        if new.scope != TokenScope::All && !new.role.scopable() {
            return Err(TokenError::Unscopable(new.role));
        }
        let now = now_ms();
        let expires_at_ms = match new.expires_in {
            None => None,
            Some(d) if d < Duration::from_secs(1) || d > MAX_EXPIRY => {
                return Err(TokenError::InvalidExpiry(
                    "must be between 1s and 100 years".into(),
                ));
            }
            Some(d) => Some(now + d.as_millis() as u64),
        };
        let secret = generate();
        let token = Token {
            name: new.name,
            role: new.role,
            scope: new.scope,
            sha256: digest(&secret),
            created_at_ms: now,
            expires_at_ms,
            last_used_ms: None,
            created_by: new.created_by,
        };
        if self.bucket.create(&key(&token.name), &encode(&token))? == Cas::Conflict {
            return Err(TokenError::Exists(token.name));
        }
        self.bucket.flush()?;
        Ok((token, secret))
    }

    /// Deletes a token; it stops working at once.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        for _ in 0..CAS_TRIES {
            let Some((_, entry)) = self.get(name)? else {
                return Err(TokenError::NotFound(name.to_string()));
            };
            if self
                .bucket
                .delete(&key(name), entry.revision)?
                .written()
                .is_some()
            {
                self.bucket.flush()?;
                return Ok(());
            }
        }
        Err(TokenError::Contended(name.to_string()))
    }

    /// A new secret for an existing token (role, scope and expiry kept);
    /// the old secret stops working.
    pub fn rotate(&self, name: &str) -> Result<(Token, Zeroizing<String>), TokenError> {
        for _ in 0..CAS_TRIES {
            let Some((mut token, entry)) = self.get(name)? else {
                return Err(TokenError::NotFound(name.to_string()));
            };
            let secret = generate();
            token.sha256 = digest(&secret);
            let cas = self
                .bucket
                .update(&key(name), &encode(&token), entry.revision)?;
            if cas.written().is_some() {
                self.bucket.flush()?;
                return Ok((token, secret));
            }
        }
        Err(TokenError::Contended(name.to_string()))
    }

    /// `keyhole init` and `token reset`: (re)creates the token `admin`,
    /// role admin, everywhere, no expiry, whatever was there.
    pub fn install_admin(&self, created_by: &str) -> Result<Zeroizing<String>, TokenError> {
        let secret = generate();
        let token = Token {
            name: ADMIN.into(),
            role: Role::Admin,
            scope: TokenScope::All,
            sha256: digest(&secret),
            created_at_ms: now_ms(),
            expires_at_ms: None,
            last_used_ms: None,
            created_by: created_by.into(),
        };
        self.bucket.put(&key(ADMIN), &encode(&token))?;
        self.bucket.flush()?;
        Ok(secret)
    }

    /// Records that `name` was last used at `ms`, unless the record already
    /// says later, or the token is gone (revoked meanwhile). No flush: the
    /// daemon flushes once after writing back all of them.
    pub fn write_last_used(&self, name: &str, ms: u64) -> Result<(), TokenError> {
        for _ in 0..CAS_TRIES {
            let Some((mut token, entry)) = self.get(name)? else {
                return Ok(());
            };
            if token.last_used_ms.is_some_and(|t| t >= ms) {
                return Ok(());
            }
            token.last_used_ms = Some(ms);
            let cas = self
                .bucket
                .update(&key(name), &encode(&token), entry.revision)?;
            if cas.written().is_some() {
                return Ok(());
            }
        }
        Err(TokenError::Contended(name.to_string()))
    }

    pub fn flush(&self) -> Result<(), TokenError> {
        Ok(self.bucket.flush()?)
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
