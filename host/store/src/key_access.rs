//! Who may read the key file: only its owner.
//!
//! The key file is the one thing that turns a copy of the data directory
//! into secrets. A key file that group or others can read (or write: a
//! writer could slip in a key version of their own, which the next
//! rotation would wrap every data key under) is **refused**, not fixed:
//! the store opens sealed, and the reason names the exact command, e.g.
//! `key file /x/master.key is readable by others (mode 0644); run: chmod
//! 600 /x/master.key`. It is not tightened silently because it may already
//! have been copied while it was open: the operator has to look, and
//! perhaps rotate (`keyhole keys rotate`) once it is private again. This
//! is the rule OpenSSH applies to private keys (any group or other bit).
//!
//! The mode is read from the open file (`fstat`), so the file checked is
//! the file read. Key text from `KEYHOLE_MASTER_KEY` has no file and no
//! mode. Directories keyhole creates for a key file are 0700, the file
//! itself 0600 (`keyring.rs`).

use std::fs::File;
use std::io;
use std::path::Path;

/// Why `file` (opened from `path`) must not be used as a key file, if it
/// must not.
#[cfg(unix)]
pub(crate) fn refusal(path: &Path, file: &File) -> io::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode();
    Ok(refusal_for_mode(path, mode))
}

#[cfg(not(unix))]
pub(crate) fn refusal(_path: &Path, _file: &File) -> io::Result<Option<String>> {
    Ok(None)
}

/// The refusal for a key file at `path` with `mode`, if any group or other
/// permission bit is set.
pub(crate) fn refusal_for_mode(path: &Path, mode: u32) -> Option<String> {
    let how = if mode & 0o044 != 0 {
        "readable"
    } else if mode & 0o022 != 0 {
        "writable"
    } else if mode & 0o011 != 0 {
        "accessible"
    } else {
        return None;
    };
    Some(format!(
        "key file {} is {how} by others (mode {:04o}); run: chmod 600 {}",
        path.display(),
        mode & 0o7777,
        shell_quote(&path.display().to_string()),
    ))
}

/// `text` as one shell word: unchanged when it is plainly safe to paste,
/// else in single quotes.
pub(crate) fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Creates `dir` and any missing parents, each new one mode 0700 (existing
/// ones are left as they are).
pub(crate) fn create_private_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_group_or_other_bit_is_refused_with_the_command_that_fixes_it() {
        let p = Path::new("/x/master.key");
        assert_eq!(refusal_for_mode(p, 0o100600), None);
        assert_eq!(refusal_for_mode(p, 0o400), None);
        assert_eq!(
            refusal_for_mode(p, 0o100644).unwrap(),
            "key file /x/master.key is readable by others (mode 0644); run: chmod 600 /x/master.key"
        );
        assert!(refusal_for_mode(p, 0o640).unwrap().contains("readable"));
        assert!(refusal_for_mode(p, 0o620).unwrap().contains("writable"));
        assert!(refusal_for_mode(p, 0o610).unwrap().contains("accessible"));
        assert!(refusal_for_mode(p, 0o604).unwrap().contains("(mode 0604)"));
    }

    #[test]
    fn paths_are_quoted_only_when_a_shell_would_need_it() {
        assert_eq!(
            shell_quote("/home/a/.config/k.key"),
            "/home/a/.config/k.key"
        );
        assert_eq!(shell_quote("/my keys/k"), "'/my keys/k'");
        assert_eq!(shell_quote("/a'b"), r"'/a'\''b'");
        assert_eq!(shell_quote("$HOME/k"), "'$HOME/k'");
    }

    #[cfg(unix)]
    #[test]
    fn new_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dirs(&nested).unwrap();
        for d in [dir.path().join("a"), nested] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
    }
}
