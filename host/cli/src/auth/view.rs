//! The daemon's view of the tokens: every record of bucket `api` in memory,
//! kept true by the bucket's watch, and each token's "last used" time.
//!
//! Why a watch rather than a read per request: the event path goes through
//! the API, and a per-request read would put a backend round trip (a
//! network one, with a shared backend) in front of every event. Before each
//! check the view compares the bucket's revision with the one it has
//! applied (one comparison when nothing changed) and applies whatever the
//! watch holds, so a token revoked through this daemon, or through any host
//! on the same backend once its change arrives, fails the very next request.
//!
//! Why compare with every hash: looking the presented hash up in a map
//! would branch on its bytes. Instead each stored hash is compared with
//! `subtle`'s constant-time equality and the match chosen with a
//! constant-time select, so the time taken says nothing about how close a
//! guess came or which token it resembled.
//!
//! "Last used" is kept in memory and written back by [`TokenView::write_back`],
//! which the daemon calls about once a minute and at shutdown: at most one
//! write per token per call, never one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use keyhole_kv::{Change, Watch};
use sha2::Digest as _;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::records::{self, PREFIX, Token, Tokens, digest, now_ms};
use super::{Principal, TokenError};

struct Live {
    token: Token,
    principal: Principal,
    /// In memory; 0 when unused since the daemon started.
    last_used_ms: AtomicU64,
    /// What was last written back (or read from the record).
    written_ms: AtomicU64,
}

impl Live {
    fn new(token: Token, carried_last_used: u64) -> Arc<Self> {
        let stored = token.last_used_ms.unwrap_or(0);
        Arc::new(Live {
            principal: Principal::token(&token.name, token.role, token.scope.clone()),
            last_used_ms: AtomicU64::new(carried_last_used.max(stored)),
            written_ms: AtomicU64::new(stored),
            token,
        })
    }
}

/// The tokens, as the daemon checks them.
pub struct TokenView {
    tokens: Tokens,
    watch: Mutex<Box<dyn Watch>>,
    /// Every change up to this revision is applied to `live`.
    applied: AtomicU64,
    live: RwLock<Vec<Arc<Live>>>,
}

impl TokenView {
    pub fn load(tokens: Tokens) -> Result<Self, TokenError> {
        // Watch first, then read: a change in between is in both, and
        // applying it twice is harmless.
        let from = tokens.bucket().revision();
        let watch = tokens.bucket().watch(from)?;
        let view = TokenView {
            watch: Mutex::new(watch),
            applied: AtomicU64::new(from),
            live: RwLock::new(Vec::new()),
            tokens,
        };
        view.reload()?;
        Ok(view)
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Live>>> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Live>>> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every record again (at start, and after a lag notice).
    fn reload(&self) -> Result<(), TokenError> {
        let mut fresh = Vec::new();
        for (key, entry) in self.tokens.bucket().scan(PREFIX)? {
            match records::decode(&key, &entry.value) {
                Ok(t) => {
                    let carried = self.last_used_of(&t.name);
                    fresh.push(Live::new(t, carried));
                }
                // Fail closed: a record that does not decode opens nothing.
                Err(e) => tracing::warn!("ignoring a token record: {e}"),
            }
        }
        *self.write() = fresh;
        Ok(())
    }

    fn last_used_of(&self, name: &str) -> u64 {
        self.read()
            .iter()
            .find(|l| l.token.name == name)
            .map_or(0, |l| l.last_used_ms.load(Ordering::Relaxed))
    }

    /// Applies every change the bucket has seen that the view has not.
    fn catch_up(&self) -> Result<(), TokenError> {
        if self.tokens.bucket().revision() <= self.applied.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(change) = watch.try_next()? {
            self.apply(&change)?;
            self.applied.store(change.revision(), Ordering::Release);
        }
        Ok(())
    }

    fn apply(&self, change: &Change) -> Result<(), TokenError> {
        let Some(key) = change.key() else {
            return self.reload(); // lagged: anything may have changed
        };
        let Some(name) = key.strip_prefix(PREFIX) else {
            return Ok(());
        };
        let decoded = match change {
            Change::Put { value, .. } => match records::decode(key, value) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("ignoring a token record: {e}");
                    None
                }
            },
            _ => None,
        };
        let mut live = self.write();
        let old = live.iter().position(|l| l.token.name.as_bytes() == name);
        let carried = old.map_or(0, |i| live[i].last_used_ms.load(Ordering::Relaxed));
        if let Some(i) = old {
            live.swap_remove(i);
        }
        if let Some(t) = decoded {
            live.push(Live::new(t, carried));
        }
        Ok(())
    }

    /// The principal a presented `Authorization` header value stands for:
    /// `None` for a missing, malformed, unknown, revoked or expired token.
    pub fn verify_header(&self, header: Option<&[u8]>) -> Result<Option<Principal>, TokenError> {
        let Some(token) = bearer(header) else {
            return Ok(None);
        };
        Ok(self.verify(token)?.map(|(p, _)| p))
    }

    /// The principal a presented token stands for, and the binding a
    /// console session keeps in its place (`crate::console`): `None` for
    /// an unknown, revoked or expired token.
    pub fn verify(&self, token: &str) -> Result<Option<(Principal, Binding)>, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(None);
        }
        self.catch_up()?;
        let presented = digest(token);
        let live = self.read();
        // Constant time over all stored hashes: compare each, select the
        // match without branching on it.
        let mut hit = u64::MAX;
        for (i, l) in live.iter().enumerate() {
            let eq = presented.ct_eq(&l.token.sha256);
            hit.conditional_assign(&(i as u64), eq);
        }
        let Some(l) = usize::try_from(hit).ok().and_then(|i| live.get(i)) else {
            return Ok(None);
        };
        let now = now_ms();
        if l.token.expired_at(now) {
            return Ok(None);
        }
        l.last_used_ms.fetch_max(now, Ordering::Relaxed);
        let binding = Binding {
            name: l.token.name.clone(),
            tag: Binding::tag(&l.token.sha256),
        };
        Ok(Some((l.principal.clone(), binding)))
    }

    /// The principal of a console session's token, checked again as if it
    /// had been presented: `None` once the token is revoked, expired, or
    /// rotated or reset (its secret changed, so its binding no longer
    /// matches).
    pub fn recheck(&self, b: &Binding) -> Result<Option<Principal>, TokenError> {
        self.catch_up()?;
        let live = self.read();
        let Some(l) = live.iter().find(|l| l.token.name == b.name) else {
            return Ok(None);
        };
        if !bool::from(Binding::tag(&l.token.sha256).ct_eq(&b.tag)) {
            return Ok(None);
        }
        let now = now_ms();
        if l.token.expired_at(now) {
            return Ok(None);
        }
        l.last_used_ms.fetch_max(now, Ordering::Relaxed);
        Ok(Some(l.principal.clone()))
    }

    /// The last-used time this daemon knows for `name` (newer than the
    /// record's between write-backs).
    pub fn last_used(&self, name: &str) -> Option<u64> {
        Some(self.last_used_of(name)).filter(|&t| t > 0)
    }

    /// Writes back every last-used time newer than what is stored: one
    /// write per token used since the previous call, then one flush.
    pub fn write_back(&self) -> Result<usize, TokenError> {
        let due: Vec<(Arc<Live>, u64)> = self
            .read()
            .iter()
            .filter_map(|l| {
                let used = l.last_used_ms.load(Ordering::Relaxed);
                (used > l.written_ms.load(Ordering::Relaxed)).then(|| (l.clone(), used))
            })
            .collect();
        for (l, used) in &due {
            self.tokens.write_last_used(&l.token.name, *used)?;
            l.written_ms.fetch_max(*used, Ordering::Relaxed);
        }
        if !due.is_empty() {
            self.tokens.flush()?;
        }
        Ok(due.len())
    }

    #[cfg(test)]
    fn applied(&self) -> keyhole_kv::Revision {
        self.applied.load(Ordering::Acquire)
    }
}

/// Which token a console session was opened with, held in the token's
/// place: its name, and a tag derived from the stored hash of its secret
/// (neither the token nor the hash itself), so a rotated or reset token's
/// sessions end with the old secret. `Debug` shows the name only.
#[derive(Clone)]
pub struct Binding {
    name: String,
    tag: [u8; 32],
}

impl Binding {
    fn tag(stored: &[u8; 32]) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(b"keyhole console session binding\0");
        h.update(stored);
        h.finalize().into()
    }

    /// The token's name.
    #[cfg(test)]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The token in `Bearer <token>`, if that is what the header holds.
fn bearer(header: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(header?).ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::{NewToken, Role, TokenScope};

    fn header(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    fn new(name: &str, role: Role) -> NewToken {
        NewToken {
            name: name.into(),
            role,
            scope: TokenScope::All,
            expires_in: None,
            created_by: "local:test".into(),
        }
    }

    #[test]
    fn verify_follows_creates_rotations_and_revocations() {
        let dir = tempfile::tempdir().unwrap();
        let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
        let tokens = Tokens::open(&kv).unwrap();
        let admin = tokens.install_admin("local:test").unwrap();
        let view = TokenView::load(Tokens::open(&kv).unwrap()).unwrap();
        let p = view.verify_header(Some(&header(&admin))).unwrap().unwrap();
        assert_eq!(p.actor(), "token:admin");
        assert!(
            view.verify_header(Some(admin.as_bytes()))
                .unwrap()
                .is_none()
        );
        assert!(view.verify_header(None).unwrap().is_none());
        assert!(
            view.verify_header(Some(b"Bearer kh_wrong"))
                .unwrap()
                .is_none()
        );
        assert!(view.verify_header(Some(b"Bearer ")).unwrap().is_none());

        // Another handle on the backend (as another host would) writes.
        let (_, ci) = tokens.create(new("ci", Role::Deployer)).unwrap();
        let p = view.verify_header(Some(&header(&ci))).unwrap().unwrap();
        assert_eq!((p.actor(), p.role), ("token:ci".into(), Role::Deployer));
        let (_, ci2) = tokens.rotate("ci").unwrap();
        assert!(view.verify_header(Some(&header(&ci))).unwrap().is_none());
        assert!(view.verify_header(Some(&header(&ci2))).unwrap().is_some());
        tokens.revoke("ci").unwrap();
        assert!(view.verify_header(Some(&header(&ci2))).unwrap().is_none());
        assert_eq!(view.applied(), tokens.bucket().revision());
        assert!(view.verify_header(Some(&header(&admin))).unwrap().is_some());
    }

    #[test]
    fn a_binding_holds_until_its_token_is_rotated_or_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
        let tokens = Tokens::open(&kv).unwrap();
        let (_, ci) = tokens.create(new("ci", Role::Deployer)).unwrap();
        let view = TokenView::load(Tokens::open(&kv).unwrap()).unwrap();
        assert!(view.verify("kh_wrong").unwrap().is_none());
        let (p, b) = view
            .verify(&format!(" {}\n", ci.as_str()))
            .unwrap()
            .unwrap();
        assert_eq!((p.actor(), b.name()), ("token:ci".into(), "ci"));
        assert!(!format!("{b:?}").contains(&hex::encode(digest(&ci))));
        assert_eq!(view.recheck(&b).unwrap(), Some(p));
        tokens.rotate("ci").unwrap();
        assert!(view.recheck(&b).unwrap().is_none(), "rotated");
        let (_, ci2) = tokens.rotate("ci").unwrap();
        let (_, b2) = view.verify(&ci2).unwrap().unwrap();
        assert!(view.recheck(&b2).unwrap().is_some());
        tokens.revoke("ci").unwrap();
        assert!(view.recheck(&b2).unwrap().is_none(), "revoked");
    }

    #[test]
    fn expired_tokens_fail_and_last_used_is_written_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
        let tokens = Tokens::open(&kv).unwrap();
        let mut n = new("brief", Role::Auditor);
        n.expires_in = Some(Duration::from_secs(1));
        let (_, brief) = tokens.create(n).unwrap();
        let (_, ci) = tokens.create(new("ci", Role::Deployer)).unwrap();
        let view = TokenView::load(tokens.clone()).unwrap();
        assert_eq!(view.write_back().unwrap(), 0, "nothing used yet");

        for _ in 0..100 {
            assert!(view.verify_header(Some(&header(&ci))).unwrap().is_some());
        }
        let before = tokens.bucket().revision();
        assert_eq!(view.write_back().unwrap(), 1, "one write for 100 uses");
        assert_eq!(view.write_back().unwrap(), 0);
        assert!(tokens.bucket().revision() > before);
        let stored = tokens.list().unwrap();
        let ci_rec = stored.iter().find(|t| t.name == "ci").unwrap();
        assert_eq!(ci_rec.last_used_ms, view.last_used("ci"));
        // Its own write-back came through the watch: still valid.
        assert!(view.verify_header(Some(&header(&ci))).unwrap().is_some());

        std::thread::sleep(Duration::from_millis(1100));
        assert!(view.verify_header(Some(&header(&brief))).unwrap().is_none());
    }
}
