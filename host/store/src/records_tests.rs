use super::*;

#[test]
fn records_round_trip_and_reject_garbage() {
    let mut rec = SecretRecord {
        version: 7,
        created_at_ms: 1,
        updated_at_ms: 2,
        dek_version: 3,
        nonce: [9; NONCE_LEN],
        sealed: &[1, 2, 3, 4],
        topics: Vec::new(),
    };
    let bytes = encode_secret(&rec);
    let back = decode_secret(&bytes).unwrap();
    assert_eq!(
        (back.version, back.dek_version, back.nonce, back.sealed),
        (7, 3, [9; NONCE_LEN], &[1u8, 2, 3, 4][..])
    );
    assert!(back.topics.is_empty());
    assert!(matches!(
        decode_secret(&[7, 1]),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        decode_secret(&bytes[..bytes.len() - 2]),
        Err(StoreError::Corrupt { .. })
    ));
    rec.topics = vec!["action:*".into(), "records:created".into()];
    let bound = encode_secret(&rec);
    assert_eq!(decode_secret(&bound).unwrap().topics, rec.topics);
    let t = Tombstone {
        version: 4,
        created_at_ms: 1,
        deleted_at_ms: 3,
        topics: Vec::new(),
    };
    let dead = encode_tombstone(&t);
    assert!(matches!(decode_current(&dead), Ok(Current::Deleted(back)) if back == t));
    assert!(matches!(decode_current(&bound), Ok(Current::Live(r)) if r.version == 7));
    assert!(decode_secret(&dead).is_err());
    assert_ne!(
        slot_ad(Slot::Current, b"e:a", "b", 1, 1, &[]),
        slot_ad(Slot::History, b"e:a", "b", 1, 1, &[])
    );
}

/// Release 0.1 wrote secret records as `Versioned::V1(fields)`; a
/// record without topics is still exactly that, and reads back.
#[test]
fn unbound_secrets_keep_release_0_1_bytes() {
    #[derive(Serialize)]
    struct Old<'a> {
        version: u64,
        created_at_ms: u64,
        updated_at_ms: u64,
        dek_version: u64,
        nonce: [u8; NONCE_LEN],
        sealed: &'a [u8],
    }
    let old = encode(&Old {
        version: 2,
        created_at_ms: 5,
        updated_at_ms: 6,
        dek_version: 1,
        nonce: [3; NONCE_LEN],
        sealed: &[8, 9],
    });
    let rec = decode_secret(&old).unwrap();
    assert_eq!((rec.version, rec.sealed), (2, &[8u8, 9][..]));
    assert_eq!(encode_secret(&rec), old);
}

#[test]
fn a_live_scope_record_is_release_0_1_s_record() {
    let old = encode(&SpaceRecord {
        environment: "prod",
        created_at_ms: 5,
    });
    let rec = SpaceRecord {
        environment: "prod",
        created_at_ms: 5,
    };
    assert_eq!(encode_scope(&ScopeState::Live(rec)), old);
    let back: ScopeState<SpaceRecord<'_>> = decode_scope(&old, "t").unwrap();
    assert!(back.mark().is_none());
    assert_eq!(back.record().environment, "prod");
    let mark = DeleteMark {
        forced: true,
        since_ms: 9,
    };
    let deleting = encode_scope(&ScopeState::Deleting {
        record: EnvRecord { created_at_ms: 1 },
        mark,
    });
    let back: ScopeState<EnvRecord> = decode_scope(&deleting, "t").unwrap();
    assert_eq!((back.mark(), back.record().created_at_ms), (Some(mark), 1));
    assert!(decode_scope::<EnvRecord>(&[9, 1], "t").is_err());
}

#[test]
fn scope_keys_and_ad_are_unambiguous() {
    let e = scope_key(&Scope::Environment("ab".into()));
    let s = scope_key(&Scope::Space("ab".into()));
    assert_ne!(e, s);
    assert_eq!(parse_scope_key(&s), Some(Scope::Space("ab".into())));
    assert_eq!(parse_scope_key(&e), Some(Scope::Environment("ab".into())));
    let none: &[String] = &[];
    assert_ne!(
        value_ad(b"e:a", "bc", 1, 1, none),
        value_ad(b"e:ab", "c", 1, 1, none)
    );
    assert_ne!(
        value_ad(b"e:a", "b", 1, 2, none),
        value_ad(b"e:a", "b", 2, 1, none)
    );
    let t = |ts: &[&str]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let bound = value_ad(b"e:a", "b", 1, 1, &t(&["x"]));
    assert_ne!(bound, value_ad(b"e:a", "b", 1, 1, none));
    assert_ne!(bound, value_ad(b"e:a", "b", 1, 1, &t(&["x", "y"])));
    assert_ne!(
        value_ad(b"e:a", "b", 1, 1, &t(&["xy"])),
        value_ad(b"e:a", "b", 1, 1, &t(&["x", "y"]))
    );
    assert_ne!(dek_ad(b"e:a", 1, 2), dek_ad(b"e:a", 2, 1));
    assert_ne!(check_ad(1), check_ad(2));
}
