//! Data written by release 0.1, moved into the store's bucket on first open.
//!
//! Release 0.1 kept the store in six trees of the embedded database, keyed
//! by `scope-key 0x00 suffix` (scope key `e:<id>` or `s:<id>`, versions as
//! 8 big-endian bytes). The record formats and the associated data are
//! unchanged, so moving a record is only renaming its key (`layout.rs`):
//! values migrated here open exactly as before. Each tree is moved whole
//! and then dropped; a crash part-way leaves the rest for the next open.

use keyhole_kv::{Backend, Bucket, migrate_legacy};

use crate::error::StoreError;
use crate::layout;
use crate::records;

/// Release 0.1's trees, in the order they are moved.
const TREES: &[&str] = &[
    "keyhole-store/meta",
    "keyhole-store/environments",
    "keyhole-store/spaces",
    "keyhole-store/deks",
    "keyhole-store/dek-current",
    "keyhole-store/secrets",
];

pub(crate) fn from_release_0_1(
    backend: &dyn Backend,
    bucket: &dyn Bucket,
) -> Result<(), StoreError> {
    for tree in TREES {
        migrate_legacy(backend, tree, bucket, |key| rekey(tree, key))?;
    }
    Ok(())
}

/// A 0.1 key's place in the bucket.
fn rekey(tree: &str, key: &[u8]) -> Result<Vec<u8>, String> {
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| e.to_string())
    };
    let version = |b: &[u8]| -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| "a version is not 8 bytes")?,
        ))
    };
    let scope = |b: &[u8]| records::parse_scope_key(b).ok_or("an unknown scope key");
    let split = |k: &[u8]| -> Result<(Vec<u8>, Vec<u8>), String> {
        let at = k.iter().position(|&b| b == 0).ok_or("no scope separator")?;
        Ok((k[..at].to_vec(), k[at + 1..].to_vec()))
    };
    Ok(match tree {
        "keyhole-store/meta" => {
            let v = key
                .strip_prefix(b"kek-check/")
                .ok_or("an unknown metadata key")?;
            layout::kek_check(version(v)?)
        }
        "keyhole-store/environments" => layout::env(&text(key)?),
        "keyhole-store/spaces" => layout::space(&text(key)?),
        "keyhole-store/deks" => {
            let (sk, v) = split(key)?;
            layout::dek(&scope(&sk)?, version(&v)?)
        }
        "keyhole-store/dek-current" => layout::dek_current(&scope(key)?),
        "keyhole-store/secrets" => {
            let (sk, name) = split(key)?;
            layout::secret(&scope(&sk)?, &text(&name)?)
        }
        other => return Err(format!("no migration for {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;

    #[test]
    fn release_0_1_keys_find_their_place() {
        let prod = Scope::Environment("prod".into());
        let team = Scope::Space("team-a".into());
        let mut k = b"kek-check/".to_vec();
        k.extend_from_slice(&3u64.to_be_bytes());
        assert_eq!(rekey("keyhole-store/meta", &k), Ok(layout::kek_check(3)));
        assert_eq!(
            rekey("keyhole-store/environments", b"prod"),
            Ok(layout::env("prod"))
        );
        let mut k = b"s:team-a\0".to_vec();
        k.extend_from_slice(&2u64.to_be_bytes());
        assert_eq!(rekey("keyhole-store/deks", &k), Ok(layout::dek(&team, 2)));
        assert_eq!(
            rekey("keyhole-store/dek-current", b"e:prod"),
            Ok(layout::dek_current(&prod))
        );
        assert_eq!(
            rekey("keyhole-store/secrets", b"e:prod\0SLACK_TOKEN"),
            Ok(layout::secret(&prod, "SLACK_TOKEN"))
        );
        assert!(rekey("keyhole-store/secrets", b"x:prod\0A").is_err());
        assert!(rekey("keyhole-store/meta", b"other").is_err());
    }
}
