//! Input rules for ids, secret names and values.
//!
//! These run before anything touches the database, so invalid input is
//! rejected with an error naming the broken rule and nothing is written.
//! They are also on the guest hot path (`get-secret`), so they only scan
//! bytes: the owned copy of the offending input is made only when building
//! an error.

use crate::error::StoreError;

pub const MAX_ID_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_VALUE_LEN: usize = 64 * 1024;

pub const ID_EMPTY: &str = "must not be empty";
pub const ID_TOO_LONG: &str = "must be at most 64 characters";
pub const ID_CHARS: &str = "may contain only A-Z, a-z, 0-9, '_' and '-'";

pub const NAME_EMPTY: &str = "must not be empty";
pub const NAME_TOO_LONG: &str = "must be at most 256 characters";
pub const NAME_FIRST: &str = "must start with a letter or '_'";
pub const NAME_CHARS: &str = "may contain only A-Z, a-z, 0-9, '_', '.' and '-'";

pub const VALUE_EMPTY: &str = "must not be empty";
pub const VALUE_TOO_LONG: &str = "must be at most 65536 bytes";

/// Checks an environment or space id: 1–64 chars of `[A-Za-z0-9_-]`.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let rule = if id.is_empty() {
        ID_EMPTY
    } else if id.len() > MAX_ID_LEN {
        ID_TOO_LONG
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        ID_CHARS
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidId {
        id: id.chars().take(MAX_ID_LEN + 1).collect(),
        rule,
    })
}

/// Checks a secret name: 1–256 chars of `[A-Za-z0-9_.-]`, starting with a
/// letter or `_`.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let bytes = name.as_bytes();
    let rule = match bytes.first() {
        None => NAME_EMPTY,
        Some(_) if bytes.len() > MAX_NAME_LEN => NAME_TOO_LONG,
        Some(&first) if !(first.is_ascii_alphabetic() || first == b'_') => {
            if is_name_byte(first) {
                NAME_FIRST
            } else {
                NAME_CHARS
            }
        }
        Some(_) if !bytes.iter().all(|&b| is_name_byte(b)) => NAME_CHARS,
        Some(_) => return Ok(()),
    };
    // Keep only a prefix: the error shows a preview anyway, and a hostile
    // name may be huge.
    Err(StoreError::InvalidName {
        name: name.chars().take(MAX_NAME_LEN + 1).collect(),
        rule,
    })
}

/// Checks a value: 1 byte to 64 KiB (UTF-8 is guaranteed by the type).
pub(crate) fn validate_value(value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::InvalidValue { rule: VALUE_EMPTY });
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(StoreError::InvalidValue {
            rule: VALUE_TOO_LONG,
        });
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_rule(name: &str) -> &'static str {
        match validate_name(name) {
            Err(StoreError::InvalidName { rule, .. }) => rule,
            other => panic!("expected InvalidName for {name:?}, got {other:?}"),
        }
    }

    fn id_rule(id: &str) -> &'static str {
        match validate_id(id) {
            Err(StoreError::InvalidId { rule, .. }) => rule,
            other => panic!("expected InvalidId for {id:?}, got {other:?}"),
        }
    }

    #[test]
    fn names() {
        for ok in ["A", "_", "DB_URL", "a.b-c_9", &"x".repeat(256)] {
            validate_name(ok).unwrap();
        }
        assert_eq!(name_rule(""), NAME_EMPTY);
        assert_eq!(name_rule(&"x".repeat(257)), NAME_TOO_LONG);
        assert_eq!(name_rule("1ABC"), NAME_FIRST);
        assert_eq!(name_rule(".env"), NAME_FIRST);
        assert_eq!(name_rule("A B"), NAME_CHARS);
        assert_eq!(name_rule("A/B"), NAME_CHARS);
        assert_eq!(name_rule("é"), NAME_CHARS);
        assert_eq!(name_rule("A\0"), NAME_CHARS);
    }

    #[test]
    fn ids() {
        for ok in ["prod", "team-a", "A_1", "0", &"x".repeat(64)] {
            validate_id(ok).unwrap();
        }
        assert_eq!(id_rule(""), ID_EMPTY);
        assert_eq!(id_rule(&"x".repeat(65)), ID_TOO_LONG);
        assert_eq!(id_rule("a.b"), ID_CHARS);
        assert_eq!(id_rule("a:b"), ID_CHARS);
    }

    #[test]
    fn values() {
        validate_value("x").unwrap();
        validate_value(&"x".repeat(MAX_VALUE_LEN)).unwrap();
        assert!(matches!(
            validate_value(""),
            Err(StoreError::InvalidValue { rule: VALUE_EMPTY })
        ));
        assert!(matches!(
            validate_value(&"x".repeat(MAX_VALUE_LEN + 1)),
            Err(StoreError::InvalidValue {
                rule: VALUE_TOO_LONG
            })
        ));
    }

    #[test]
    fn error_messages_name_the_rule() {
        let msg = validate_name("9lives").unwrap_err().to_string();
        assert!(msg.contains(NAME_FIRST), "{msg}");
        let msg = validate_id("").unwrap_err().to_string();
        assert!(msg.contains(ID_EMPTY), "{msg}");
    }
}
