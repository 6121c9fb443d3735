//! Token records: create, list, rotate, revoke, expiry, and release 0.1's admin hash.

use super::*;

fn kv() -> (tempfile::TempDir, keyhole_kv_embedded::EmbeddedKv) {
    let dir = tempfile::tempdir().unwrap();
    let kv = keyhole_kv_embedded::EmbeddedKv::open(dir.path()).unwrap();
    (dir, kv)
}

fn new(name: &str, role: Role, scope: TokenScope) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        scope,
        expires_in: None,
        created_by: "local:test".into(),
    }
}

#[test]
fn create_list_rotate_revoke() {
    let (_dir, kv) = kv();
    let tokens = Tokens::open(&kv).unwrap();
    assert!(!tokens.any().unwrap());
    let (t, secret) = tokens
        .create(new(
            "ci",
            Role::Deployer,
            TokenScope::Environment("prod".into()),
        ))
        .unwrap();
    assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() == 67);
    assert_eq!(t.sha256, digest(&secret));
    assert!(matches!(
        tokens.create(new("ci", Role::Auditor, TokenScope::All)),
        Err(TokenError::Exists(_))
    ));
    assert!(matches!(
        tokens.create(new("a b", Role::Auditor, TokenScope::All)),
        Err(TokenError::InvalidName)
    ));
    assert!(matches!(
        tokens.create(new(
            "x",
            Role::Admin,
            TokenScope::Environment("prod".into())
        )),
        Err(TokenError::Unscopable(Role::Admin))
    ));
    let listed = tokens.list().unwrap();
    assert_eq!(listed, std::slice::from_ref(&t));
    assert!(!format!("{listed:?}").contains(&hex::encode(t.sha256)));

    let (rotated, secret2) = tokens.rotate("ci").unwrap();
    assert_ne!(rotated.sha256, t.sha256);
    assert_eq!(rotated.sha256, digest(&secret2));
    assert_eq!(rotated.scope, t.scope);

    tokens.write_last_used("ci", 5).unwrap();
    tokens.write_last_used("ci", 3).unwrap();
    assert_eq!(tokens.list().unwrap()[0].last_used_ms, Some(5));

    tokens.revoke("ci").unwrap();
    assert!(matches!(tokens.revoke("ci"), Err(TokenError::NotFound(_))));
    tokens.write_last_used("ci", 9).unwrap(); // gone: nothing written
    assert!(!tokens.any().unwrap());
}

#[test]
fn no_record_holds_a_token() {
    let (_dir, kv) = kv();
    let tokens = Tokens::open(&kv).unwrap();
    let secret = tokens.install_admin("local:test").unwrap();
    for (_, e) in tokens.bucket.scan(b"").unwrap() {
        let stored = String::from_utf8_lossy(&e.value);
        assert!(!stored.contains(&secret[3..19]), "{stored}");
    }
}

#[test]
fn expiry_bounds() {
    let (_dir, kv) = kv();
    let tokens = Tokens::open(&kv).unwrap();
    let mut n = new("short", Role::Auditor, TokenScope::All);
    n.expires_in = Some(Duration::from_millis(10));
    assert!(matches!(
        tokens.create(n),
        Err(TokenError::InvalidExpiry(_))
    ));
    let mut n = new("hour", Role::Auditor, TokenScope::All);
    n.expires_in = Some(Duration::from_secs(3600));
    let (t, _) = tokens.create(n).unwrap();
    assert!(!t.expired_at(now_ms()));
    assert!(t.expired_at(now_ms() + 3_600_001));
}

#[test]
fn a_release_0_1_admin_hash_becomes_the_admin_token() {
    let (_dir, kv) = kv();
    let secret = generate();
    kv.write_legacy(LEGACY_TREE, &[(LEGACY_ADMIN_KEY, &digest(&secret))])
        .unwrap();
    let tokens = Tokens::open(&kv).unwrap();
    let listed = tokens.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, ADMIN);
    assert_eq!(listed[0].role, Role::Admin);
    assert_eq!(listed[0].scope, TokenScope::All);
    assert_eq!(listed[0].sha256, digest(&secret));
    assert_eq!(listed[0].created_by, LEGACY_CREATOR);
    assert!(kv.legacy(LEGACY_TREE).unwrap().is_none(), "migrated once");
    assert!(tokens.bucket.get(LEGACY_ADMIN_KEY).unwrap().is_none());
    // Opening again changes nothing.
    let again = Tokens::open(&kv).unwrap().list().unwrap();
    assert_eq!(again, listed);
}

#[test]
fn tokens_are_redacted_from_text_and_nothing_else_is() {
    let token = generate();
    let text = format!("env:{}/X and {}", token.as_str(), token.as_str());
    assert_eq!(
        redact_tokens(&text),
        "env:kh_[redacted]/X and kh_[redacted]"
    );
    // Longer runs of hex go whole; too short a run is no token.
    let long = format!("{}abc!", token.as_str());
    assert_eq!(redact_tokens(&long), "kh_[redacted]!");
    for kept in ["token:ci", "kh_", "kh_abc", &token[..66], "", "é kh_ é"] {
        assert!(
            matches!(redact_tokens(kept), Cow::Borrowed(k) if k == kept),
            "{kept}"
        );
    }
}
