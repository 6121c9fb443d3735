//! Console sessions: kept in the daemon's memory, named by a random
//! 256-bit id that only the browser's cookie holds.
//!
//! Why server-side: a session holds no token, so a stolen cookie is worth
//! only what the session still is (the daemon forgets it at sign-out, after
//! [`Limits::idle`] without a request and after [`Limits::lifetime`] in
//! any case), and every request re-checks the token the session was opened
//! with (`auth::TokenView::recheck`): a revoked, expired or rotated token's
//! session stops working on its next request.
//!
//! The map is keyed by the sha256 of the id, so the id itself is never
//! stored and a lookup's timing depends on a hash, not on the id's bytes.
//! At most [`MAX_SESSIONS`] are kept; opening one more forgets the idlest.
//! A daemon restart ends every session (nothing is written to disk).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::csrf::CsrfToken;
use crate::auth::Binding;

/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Default idle expiry (`serve --console-idle-timeout`).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
/// Default absolute expiry (`serve --console-session-lifetime`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// How long sessions last.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Without a request for this long, a session ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: DEFAULT_IDLE,
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

/// The sha256 of a session id: how the map knows it.
pub type Key = [u8; 32];

struct Session {
    binding: Binding,
    csrf: CsrfToken,
    opened: Instant,
    last_seen: Instant,
}

/// A session found for a request.
pub struct Found {
    pub key: Key,
    pub binding: Binding,
    pub csrf: CsrfToken,
}

/// Why no session was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// No cookie, or an id the daemon does not know (signed out, or
    /// forgotten by a restart).
    Unknown,
    /// Idle or past its lifetime: now forgotten.
    Expired,
}

/// Every open session.
pub struct Sessions {
    limits: Limits,
    map: Mutex<HashMap<Key, Session>>,
}

fn key_of(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(limits: Limits) -> Self {
        Sessions {
            limits,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) < self.limits.idle
            && now.saturating_duration_since(s.opened) < self.limits.lifetime
    }

    /// Opens a session for `binding`; returns its id (for the cookie only).
    pub fn open(&self, binding: Binding, now: Instant) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *bytes);
        let id = Zeroizing::new(hex::encode(*bytes));
        let session = Session {
            binding,
            csrf: CsrfToken::random(),
            opened: now,
            last_seen: now,
        };
        let mut map = self.map();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| self.live(s, now));
        }
        if map.len() >= MAX_SESSIONS
            && let Some(idlest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k)
        {
            map.remove(&idlest);
        }
        map.insert(key_of(&id), session);
        id
    }

    /// The session `id` names, if it is still live (which counts as use).
    pub fn find(&self, id: &str, now: Instant) -> Result<Found, Missing> {
        let key = key_of(id);
        let mut map = self.map();
        let Some(s) = map.get_mut(&key) else {
            return Err(Missing::Unknown);
        };
        if !self.live(s, now) {
            map.remove(&key);
            return Err(Missing::Expired);
        }
        s.last_seen = now;
        Ok(Found {
            key,
            binding: s.binding.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// Ends a session (sign-out, or its token no longer valid).
    pub fn end(&self, key: &Key) {
        self.map().remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

/// The session cookie's name: with the `__Host-` prefix under TLS, so
/// the browser accepts it only as `Secure`, `Path=/` and without a
/// `Domain` (no other host or path can set or shadow it).
pub fn cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-keyhole_session"
    } else {
        "keyhole_session"
    }
}

/// A `Set-Cookie` value: `HttpOnly` (no script reads it), `SameSite=Strict`
/// (no other site's page sends it), `Path=/`, `Secure` under TLS.
/// `max_age`: `Some(0)` deletes it; `None` keeps it for the browser session.
pub fn set_cookie(name: &str, value: &str, tls: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if tls {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn read_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{NewToken, Role, TokenScope, TokenView, Tokens};

    fn binding() -> Binding {
        let dir = tempfile::tempdir().unwrap();
        let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
        let tokens = Tokens::open(&kv).unwrap();
        let (_, t) = tokens
            .create(NewToken {
                name: "ci".into(),
                role: Role::Auditor,
                scope: TokenScope::All,
                expires_in: None,
                created_by: "local:test".into(),
            })
            .unwrap();
        let view = TokenView::load(tokens).unwrap();
        view.verify(&t).unwrap().unwrap().1
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_lifetime() {
        let limits = Limits {
            idle: Duration::from_secs(30),
            lifetime: Duration::from_secs(100),
        };
        let s = Sessions::new(limits);
        let t0 = Instant::now();
        let id = s.open(binding(), t0);
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(s.find("nope", t0).err(), Some(Missing::Unknown));
        // Kept alive by use, up to the lifetime.
        for i in 1..=3 {
            let f = s.find(&id, t0 + Duration::from_secs(25 * i)).unwrap();
            assert_eq!(f.binding.name(), "ci");
        }
        let late = t0 + Duration::from_secs(100);
        assert_eq!(s.find(&id, late).err(), Some(Missing::Expired));
        assert_eq!(s.find(&id, late).err(), Some(Missing::Unknown));

        let idle = s.open(binding(), t0);
        let after = t0 + Duration::from_secs(31);
        assert_eq!(s.find(&idle, after).err(), Some(Missing::Expired));

        let ended = s.open(binding(), t0);
        let f = s.find(&ended, t0).unwrap();
        s.end(&f.key);
        assert_eq!(s.find(&ended, t0).err(), Some(Missing::Unknown));
    }

    #[test]
    fn the_map_is_bounded_and_forgets_the_idlest() {
        let s = Sessions::new(Limits::default());
        let t0 = Instant::now();
        let b = binding();
        let first = s.open(b.clone(), t0);
        for i in 1..MAX_SESSIONS {
            s.open(b.clone(), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        s.open(b, t0 + Duration::from_secs(60));
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.find(&first, t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn cookies_carry_their_flags() {
        assert_eq!(
            set_cookie(cookie_name(false), "abc", false, None),
            "keyhole_session=abc; Path=/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            set_cookie(cookie_name(true), "abc", true, Some(0)),
            "__Host-keyhole_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; keyhole_session=xyz ".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(read_cookie(&h, "keyhole_session"), Some("xyz"));
        assert_eq!(read_cookie(&h, "b"), Some("2"));
        assert_eq!(read_cookie(&h, "c"), None);
    }
}
