//! The data directory belongs to keyhole's user alone: the directory and
//! every directory below it 0700, every file 0600, whatever the umask of
//! the shell that started keyhole.
//!
//! It holds no key, so a copy of it yields no secret value; but it does
//! hold names, scopes and versions, run records (listener output, scrubbed
//! of values), the audit log (who read what, when), API token hashes, and
//! compiled native code the host runs. Three mechanisms, each for a reason:
//!
//! - **A umask of 077, set first thing in `main`** ([`restrict_umask`]),
//!   before any thread starts. It is the only way to reach files that
//!   libraries create with default modes: the embedded database's files and
//!   directories, and anything a dependency writes. It also covers keyhole
//!   code yet to be written.
//! - **Explicit modes where keyhole creates files itself**: `DATA` and
//!   `DATA/db` and the lock file (`keyhole-kv-embedded`), run and audit log
//!   segments (`keyhole-seglog`), modules and artifacts (the runtime's
//!   `artifacts.rs`), `serve.json` (`config.rs`), the key file and its
//!   directory (`keyhole-store`). They hold under any umask, so the
//!   libraries stay private when another program embeds them without
//!   setting one (the benchmark, the tests).
//! - **A check of an existing data directory** ([`secure`], before the
//!   store opens): one created by an older keyhole, or by hand, with group
//!   or other bits is **tightened to 0700**, with a warning that says so.
//!   Tightened rather than refused, because nothing keyhole supports needs
//!   others to read it and a directory its owner cannot use would only
//!   block an upgrade; and a 0700 directory puts files made earlier with
//!   looser modes out of others' reach too, without rewriting them. If it
//!   cannot be tightened (another user owns it), the warning gives the
//!   command. The key file is treated the other way, refused until fixed
//!   (`keyhole-store`'s `key_access.rs`): a key that others could read may
//!   already be copied, so its owner has to look.

use std::path::Path;

use anyhow::{Context, Result};

use crate::errors::{CliError, Exit};

/// The umask keyhole runs with: no permission for group or others.
pub const UMASK: u32 = 0o077;

/// Sets the process umask to [`UMASK`]. Call it before anything creates a
/// file (or a thread).
pub fn restrict_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
    }
}

/// Makes sure `data` is private: creates it 0700 if it does not exist,
/// tightens it to 0700 (with a warning) if group or others have any
/// permission on it.
pub fn secure(data: &Path) -> Result<()> {
    let meta = match std::fs::metadata(data) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return create_private(data)
                .with_context(|| format!("creating data directory {}", data.display()));
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading data directory {}", data.display()));
        }
    };
    if !meta.is_dir() {
        return Err(CliError::new(
            Exit::Usage,
            format!("data directory {} is not a directory", data.display()),
        )
        .hint("point --data (KEYHOLE_DATA) at a directory")
        .into());
    }
    #[cfg(unix)]
    tighten(data, &meta);
    Ok(())
}

#[cfg(unix)]
fn tighten(data: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let shown = data.display();
    match std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => tracing::warn!(
            "data directory {shown} was open to others (mode {mode:04o}); tightened it to 0700"
        ),
        Err(e) => tracing::warn!(
            "data directory {shown} is open to others (mode {mode:04o}) and could not be \
             tightened ({e}); its owner should run: chmod 700 {shown}"
        ),
    }
}

/// Creates `dir` and missing parents, each new one mode 0700.
fn create_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_missing_directory_is_created_private_and_a_loose_one_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        secure(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);

        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        // Stricter is left alone.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
        secure(&data).unwrap();
        assert_eq!(mode(&data), 0o500);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_file_is_not_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = secure(&file).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }
}
