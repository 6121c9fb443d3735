//! Cross-site request forgery: two checks on every console POST, either
//! of which alone would stop a forged form.
//!
//! 1. **Same origin.** The request's `Origin` (or, without one, its
//!    `Referer`) must be this console's own origin: the `Host` it was sent
//!    to, over `https` under TLS (over `http` or `https` otherwise, for a
//!    daemon behind a TLS-terminating proxy). A browser always sends
//!    `Origin` on a cross-site POST, and a page cannot forge it. A POST
//!    with neither header is refused.
//! 2. **A per-session token.** Every form carries the session's random
//!    256-bit CSRF token in a hidden field; the POST's field is compared
//!    with the session's in constant time. Another site cannot read it
//!    (the same-origin policy), so it cannot put it in a forged form.
//!
//! The session cookie is also `SameSite=Strict`, so a browser does not
//! send it with another site's request at all. The sign-in form, which
//! comes before any session, uses the same token as a double-submit
//! cookie (`signin.rs`).

use axum::http::{HeaderMap, header};
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The name of the hidden field every form carries.
pub const FIELD: &str = "csrf";

/// A random 256-bit token, shown to forms as 64 hex digits.
#[derive(Clone)]
pub struct CsrfToken([u8; 32]);

impl CsrfToken {
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        CsrfToken(b)
    }

    /// From its hex form (a cookie); `None` if it is not one.
    pub fn parse(hex_text: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut b).ok()?;
        Some(CsrfToken(b))
    }

    /// The value forms carry.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether a form's field is this token, in constant time (a field
    /// that is not 64 hex digits is refused without comparing).
    pub fn matches(&self, presented: Option<&str>) -> bool {
        let Some(p) = presented.and_then(CsrfToken::parse) else {
            return false;
        };
        bool::from(p.0.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken([redacted])")
    }
}

/// Checks that a POST comes from this console's own pages (see the module
/// docs); the error says why not, for the refusal page.
pub fn same_origin(headers: &HeaderMap, tls: bool) -> Result<(), &'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or("the request names no Host")?;
    let schemes: &[&str] = if tls { &["https"] } else { &["http", "https"] };
    let ours = |origin: &str| {
        schemes.iter().any(|s| {
            origin
                .strip_prefix(s)
                .and_then(|r| r.strip_prefix("://"))
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| "its Origin is unreadable")?;
        return if ours(origin) {
            Ok(())
        } else {
            Err("it came from another site (Origin)")
        };
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let referer = referer.to_str().map_err(|_| "its Referer is unreadable")?;
        // The origin is what comes before the path.
        let origin = match referer.find("://") {
            Some(i) => {
                let rest = &referer[i + 3..];
                let end = rest
                    .find(['/', '?', '#'])
                    .map_or(referer.len(), |j| i + 3 + j);
                &referer[..end]
            }
            None => referer,
        };
        return if ours(origin) {
            Ok(())
        } else {
            Err("it came from another site (Referer)")
        };
    }
    Err("it carries neither Origin nor Referer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn tokens_match_only_themselves() {
        let t = CsrfToken::random();
        assert!(t.matches(Some(&t.hex())));
        assert!(!t.matches(Some(&CsrfToken::random().hex())));
        assert!(!t.matches(None));
        assert!(!t.matches(Some("")));
        assert!(!t.matches(Some(&t.hex()[..63])));
        assert!(!t.matches(Some(&format!("{}00", t.hex()))));
        assert!(!format!("{t:?}").contains(&t.hex()));
    }

    #[test]
    fn posts_must_come_from_this_origin() {
        let host = ("host", "127.0.0.1:7700");
        let ok = |pairs: &[(&str, &str)], tls| same_origin(&headers(pairs), tls).is_ok();
        assert!(ok(&[host, ("origin", "http://127.0.0.1:7700")], false));
        assert!(ok(&[host, ("origin", "https://127.0.0.1:7700")], false));
        assert!(ok(&[host, ("origin", "https://127.0.0.1:7700")], true));
        assert!(!ok(&[host, ("origin", "http://127.0.0.1:7700")], true));
        assert!(!ok(&[host, ("origin", "http://evil.example")], false));
        assert!(!ok(&[host, ("origin", "http://127.0.0.1:7701")], false));
        assert!(!ok(&[host, ("origin", "null")], false));
        assert!(!ok(
            &[host, ("origin", "http://127.0.0.1:7700.evil")],
            false
        ));
        assert!(ok(&[host, ("referer", "http://127.0.0.1:7700/x?y")], false));
        assert!(ok(&[host, ("referer", "http://127.0.0.1:7700")], false));
        assert!(!ok(
            &[host, ("referer", "http://127.0.0.1:7700.evil/")],
            false
        ));
        assert!(!ok(
            &[host, ("referer", "http://evil/127.0.0.1:7700")],
            false
        ));
        assert!(!ok(&[host], false));
        assert!(!ok(&[("origin", "http://127.0.0.1:7700")], false));
    }
}
