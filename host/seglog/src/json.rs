//! Writing JSON values into a line by hand, for logs whose lines are
//! written on a hot path.
//!
//! `serde_json` checks a string one byte at a time for characters to
//! escape; the strings in log lines are mostly ids, hex and short text that
//! need none, so [`string`] checks a whole string at once (a loop the
//! compiler vectorises) and copies it, leaving anything unusual to
//! `serde_json`. The output is byte for byte what `serde_json` writes.

/// Whether `s` can be copied into a JSON string as is.
fn plain(s: &str) -> bool {
    // `fold`, not `all`: no early exit, so the loop vectorises.
    s.as_bytes()
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// A JSON string: copied as is when nothing in it needs escaping.
pub fn string(buf: &mut Vec<u8>, s: &str) {
    if plain(s) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        serde(buf, s);
    }
}

/// The inside of a JSON string (escaped, without the quotes), for
/// strings built from parts.
pub fn string_body(buf: &mut Vec<u8>, s: &str) {
    if plain(s) {
        buf.extend_from_slice(s.as_bytes());
    } else {
        let start = buf.len();
        serde(buf, s);
        buf.remove(start);
        buf.pop();
    }
}

/// A JSON number.
pub fn number(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Any value, through `serde_json`.
pub fn serde<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    // Strings, integers, plain enums and structs of them into a `Vec`:
    // this cannot fail.
    serde_json::to_writer(&mut *buf, value).expect("a log line serializes");
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_what_serde_json_writes() {
        for s in [
            "",
            "plain ev_0123 abc",
            "quote \" backslash \\ newline \n tab \t nul \0 del \u{7f} é 中 😀 </script>",
        ] {
            let mut buf = Vec::new();
            super::string(&mut buf, s);
            assert_eq!(buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        let mut buf = b"\"env:".to_vec();
        super::string_body(&mut buf, "a\"b");
        buf.push(b'"');
        assert_eq!(buf, serde_json::to_vec("env:a\"b").unwrap());
        let mut buf = Vec::new();
        super::number(&mut buf, u64::MAX);
        assert_eq!(buf, b"18446744073709551615");
    }
}
