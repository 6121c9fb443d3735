//! The claim: once a scope is deleted, its values cannot be recovered, not
//! even by someone who holds the master key and reads the backend
//! afterwards, and who also kept the scope's sealed records from before
//! (a backup of the values, a replica's log).
//!
//! The attacker here is independent of the store's code: it parses the key
//! file, decodes records and rebuilds the associated data from the format
//! alone, then tries every data key it can unwrap on every ciphertext. Its
//! competence is shown first: before the deletion it recovers every value.

mod common;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use common::*;

const VALUES: [(&str, &str, &str); 4] = [
    ("env=prod", "DB_URL", "postgres://PLANTED-prod-9a1"),
    ("env=prod", "SLACK_TOKEN", "xoxb-PLANTED-prod-77c"),
    ("space=team-a", "SLACK_TOKEN", "xoxb-PLANTED-team-a-31d"),
    ("env=staging", "SLACK_TOKEN", "xoxb-staging-keeps-5e0"),
];

/// Release 0.1's record formats, as stored (unchanged since).
#[derive(serde::Deserialize)]
enum Versioned<T> {
    V1(T),
}

#[derive(serde::Deserialize)]
struct SecretRecord {
    version: u64,
    _created_at_ms: u64,
    _updated_at_ms: u64,
    dek_version: u64,
    nonce: [u8; 12],
    sealed: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct DekRecord {
    kek_version: u64,
    nonce: [u8; 12],
    wrapped: Vec<u8>,
}

/// The store's associated data: domain, 0, length-prefixed parts, numbers.
fn ad(domain: &str, parts: &[&[u8]], numbers: &[u64]) -> Vec<u8> {
    let mut out = domain.as_bytes().to_vec();
    out.push(0);
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    for n in numbers {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// `env=prod` (layout) as `e:prod` (associated data).
fn ad_scope(segment: &str) -> Vec<u8> {
    let (kind, id) = segment.split_once('=').unwrap();
    format!("{}:{id}", &kind[..1]).into_bytes()
}

fn open(key: &[u8], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    Aes256Gcm::new_from_slice(key)
        .unwrap()
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

/// The master key versions in a key file (`v<N> <hex>` lines).
fn keks(path: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (v, hex) = l.split_once(' ')?;
            Some((v.strip_prefix('v')?.parse().ok()?, hex::decode(hex).ok()?))
        })
        .collect()
}

/// A sealed value as the attacker kept it: where it was, and its record.
struct Kept {
    segment: String,
    name: String,
    record: Vec<u8>,
}

fn kept_records(fx: &Fixture) -> Vec<Kept> {
    store_bucket(&fx.store)
        .scan(b"secret/")
        .unwrap()
        .into_iter()
        .map(|(k, e)| {
            let k = String::from_utf8(k).unwrap();
            let mut parts = k.splitn(3, '/').skip(1);
            Kept {
                segment: parts.next().unwrap().to_owned(),
                name: parts.next().unwrap().to_owned(),
                record: e.value,
            }
        })
        .collect()
}

/// Everything the attacker recovers: every data key in the backend that
/// some master key version unwraps, tried on every kept record.
fn recover(fx: &Fixture, kept: &[Kept]) -> Vec<String> {
    let keks = keks(&fx.key_path);
    let mut deks = Vec::new();
    for (k, e) in store_bucket(&fx.store).scan(b"dek/").unwrap() {
        let k = String::from_utf8(k).unwrap();
        let (segment, version) = k["dek/".len()..].rsplit_once('/').unwrap();
        let version = u64::from_str_radix(version, 16).unwrap();
        let Versioned::V1(rec) = postcard::from_bytes::<Versioned<DekRecord>>(&e.value).unwrap();
        for (kek_version, kek) in keks.iter().filter(|(v, _)| *v == rec.kek_version) {
            let aad = ad(
                "keyhole-store/dek/v1",
                &[&ad_scope(segment)],
                &[version, *kek_version],
            );
            if let Some(dek) = open(kek, &rec.nonce, &aad, &rec.wrapped) {
                deks.push(dek);
            }
        }
    }
    assert!(!deks.is_empty(), "the attacker unwraps no key at all");
    let mut found = Vec::new();
    for k in kept {
        let Versioned::V1(rec) =
            postcard::from_bytes::<Versioned<SecretRecord>>(&k.record).unwrap();
        let aad = ad(
            "keyhole-store/value/v1",
            &[&ad_scope(&k.segment), k.name.as_bytes()],
            &[rec.version, rec.dek_version],
        );
        for dek in &deks {
            if let Some(plain) = open(dek, &rec.nonce, &aad, &rec.sealed) {
                found.push(String::from_utf8(plain).unwrap());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn a_deleted_environment_s_values_cannot_be_recovered_with_the_master_key() {
    let fx = Fixture::new().with_layout();
    for (segment, name, value) in VALUES {
        let (kind, id) = segment.split_once('=').unwrap();
        let scope = if kind == "env" { env(id) } else { space(id) };
        fx.store.set_secret(&scope, name, &val(value)).unwrap();
    }
    // Two data key versions for prod: the rotation's sweep moves every
    // value, and the attacker keeps the records from before and after it.
    let mut kept = kept_records(&fx);
    fx.store.rotate_dek(&env("prod")).unwrap();
    kept.extend(kept_records(&fx));

    let mut all: Vec<String> = VALUES.iter().map(|v| v.2.to_owned()).collect();
    all.sort();
    let before = recover(&fx, &kept);
    for v in &all {
        assert!(before.contains(v), "the attacker is competent: {v}");
    }

    assert!(fx.store.begin_delete(&env("prod"), true).unwrap());
    fx.store.finish_delete(&env("prod")).unwrap();
    // Afterwards: a fresh store on the backend, with the master key.
    let fx = fx.reopen_with_file();
    assert!(!fx.store.is_sealed());
    let after = recover(&fx, &kept);
    assert_eq!(after, ["xoxb-staging-keeps-5e0"], "only staging's value");

    // Nothing of prod's, team-a's or team-b's is left but each scope's
    // DEK pointer: a version number (8 bytes), kept so that a scope created
    // again under the id never reuses a version.
    for (k, e) in store_bucket(&fx.store).scan(b"").unwrap() {
        let k = String::from_utf8(k).unwrap();
        for id in ["env=prod", "space=team-a", "space=team-b"] {
            let (kind, bare) = id.split_once('=').unwrap();
            if k == format!("dek-current/{id}") {
                assert_eq!(e.value.len(), 8, "{k}");
                continue;
            }
            assert!(
                !k.contains(&format!("{id}/")) && k != format!("{kind}/{bare}"),
                "{k} survived the deletion"
            );
        }
    }

    // Planting the kept records back gets nothing out of the store either,
    // not even once the ids are created again with new keys.
    let bucket = store_bucket(&fx.store);
    let plant = |kept: &[Kept]| {
        for k in kept.iter().filter(|k| k.segment != "env=staging") {
            let key = format!("secret/{}/{}", k.segment, k.name);
            bucket.put(key.as_bytes(), &k.record).unwrap();
        }
    };
    plant(&kept);
    for (scope, name) in [(env("prod"), "DB_URL"), (space("team-a"), "SLACK_TOKEN")] {
        let err = fx.store.get_secret(&scope, name).unwrap_err();
        assert!(
            err.is_unavailable() || err.to_string().contains("unknown"),
            "{err}"
        );
    }
    fx.store.create_environment("prod").unwrap();
    fx.store.create_space("team-a", "prod").unwrap();
    fx.store
        .set_secret(&env("prod"), "NEW", &val("new-value"))
        .unwrap();
    fx.store
        .set_secret(&space("team-a"), "NEW", &val("new-value"))
        .unwrap();
    plant(&kept);
    for (scope, name) in [(env("prod"), "DB_URL"), (space("team-a"), "SLACK_TOKEN")] {
        let err = fx.store.get_secret(&scope, name).unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }
    assert_eq!(
        recover(&fx, &kept),
        ["xoxb-staging-keeps-5e0"],
        "the new keys open nothing old"
    );
}
