//! Value parsers for arguments: durations, sizes, settings, each with its
//! bounds and an example in its error.

use std::time::Duration;

pub(super) fn parse_max_memory(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if !(256 << 20..=1 << 40).contains(&bytes) {
        return Err("must be between 256MiB and 1TiB".into());
    }
    Ok(bytes)
}

/// `serve --runs-max-age`: 1 s to 100 years.
pub(super) fn parse_max_age(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(100 * 365 * 86_400) {
        return Err("must be between 1s and 100years".into());
    }
    Ok(d)
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 5s, 1m)"))
}

/// Longest `serve` timeout: far beyond any sensible value, and short enough
/// that adding it to a clock reading cannot overflow.
const MAX_SERVE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A `serve` timeout: a duration from 1 ms to [`MAX_SERVE_TIMEOUT`].
pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) || d > MAX_SERVE_TIMEOUT {
        return Err("must be between 1ms and 24h".into());
    }
    Ok(d)
}

pub(super) fn parse_bytes(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (examples: 16MiB, 64MiB, 1048576)"))
}

/// `deploy --inject SECRET@ORIGIN/HEADER: TEMPLATE`, checked as the
/// runtime checks it at deploy, so a mistake is a usage error (exit 2)
/// before anything is uploaded.
pub(super) fn parse_inject(s: &str) -> Result<crate::requests::InjectBody, String> {
    let i = keyhole_runtime::Injection::parse(s).map_err(|e| e.to_string())?;
    Ok(crate::requests::InjectBody {
        secret: i.secret,
        origin: i.origin,
        header: i.header,
        template: i.template,
    })
}

pub(super) fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, KeysCmd};
    use clap::Parser;
    use keyhole_store::Scope;

    #[test]
    fn value_parsers() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("10s").unwrap(), Duration::from_secs(10));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("2days").is_err());
        assert_eq!(parse_max_age("30d"), Ok(Duration::from_secs(2_592_000)));
        assert!(parse_max_age("500ms").is_err() && parse_max_age("200years").is_err());
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(
            parse_setting("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert!(parse_setting("=x").is_err());
        // `--scope` parses with `Scope`'s own `FromStr`.
        let cli =
            Cli::try_parse_from(["keyhole", "keys", "rotate", "--scope", "space:team-a"]).unwrap();
        let Command::Keys {
            cmd: KeysCmd::Rotate { scope, prepare },
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(scope, Some(Scope::Space("team-a".into())));
        assert!(!prepare);
        assert!(Cli::try_parse_from(["keyhole", "keys", "rotate", "--scope", "prod"]).is_err());
        // Only the master key is prepared.
        assert!(
            Cli::try_parse_from(["keyhole", "keys", "rotate", "--prepare", "--scope", "env:p"])
                .is_err()
        );
    }
}
