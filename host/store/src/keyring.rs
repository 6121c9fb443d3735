//! The master key (KEK) and where it comes from.
//!
//! The KEK never enters the data directory: a copy of the data dir (backup,
//! disk image, stolen laptop) must be useless without it. It lives either in
//! a key file outside the data dir or in an environment variable that the
//! caller passes as [`KeySource::Inline`].
//!
//! Both hold *keyring text*: one line per key version, `v<N> <64 hex>`, the
//! highest version being current. Versions exist so the KEK can be rotated
//! online: rotation appends a version, rewraps every DEK, then drops the old
//! lines. A bare 64-hex key is accepted as `v1`. Blank lines and `#`
//! comments are ignored. The file is always rewritten atomically (temp file
//! with mode 0600, fsync, rename, fsync of the directory) so a crash leaves
//! either the old or the new keyring, never a torn one. A key file that
//! group or others may read is refused: the store opens sealed and says
//! which `chmod` fixes it (`key_access.rs`).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::{self, Cipher, KEY_LEN};
use crate::error::StoreError;
use crate::key_access;

/// Where the master key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A keyring file outside the data directory.
    File(PathBuf),
    /// Hex-encoded keyring text (or a bare 64-hex key), e.g. from an env var.
    Inline(String),
    /// No key: the store opens sealed.
    None,
}

impl std::fmt::Debug for KeySource {
    // Inline text is key material: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            KeySource::Inline(_) => f.write_str("Inline([redacted])"),
            KeySource::None => f.write_str("None"),
        }
    }
}

impl KeySource {
    /// How the source is named in `Sealed` messages.
    pub(crate) fn location(&self) -> String {
        match self {
            KeySource::File(p) => p.display().to_string(),
            KeySource::Inline(_) => "<inline key text>".to_owned(),
            KeySource::None => "<no key configured>".to_owned(),
        }
    }
}

/// One KEK version.
#[derive(Clone)]
pub(crate) struct Kek {
    pub key: Zeroizing<[u8; KEY_LEN]>,
    pub cipher: Cipher,
}

/// Parsed keyring: version → key. Versions start at 1.
#[derive(Default, Clone)]
pub(crate) struct Keyring {
    pub keys: BTreeMap<u64, Kek>,
}

impl Keyring {
    pub fn insert(&mut self, version: u64, key: Zeroizing<[u8; KEY_LEN]>) {
        let cipher = Cipher::new(&key);
        self.keys.insert(version, Kek { key, cipher });
    }

    pub fn current(&self) -> Option<(u64, &Kek)> {
        self.keys.iter().next_back().map(|(v, k)| (*v, k))
    }

    pub fn get(&self, version: u64) -> Option<&Kek> {
        self.keys.get(&version)
    }

    /// Parses keyring text. Errors describe the line, never its key bytes.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut ring = Keyring::default();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if lines.is_empty() {
            return Err("no key in keyring text".into());
        }
        if let [only] = lines.as_slice()
            && !only.contains(char::is_whitespace)
        {
            ring.insert(1, parse_key(only).map_err(|e| format!("bare key: {e}"))?);
            return Ok(ring);
        }
        for (i, line) in lines.iter().enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(ver), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("key line {}: expected `v<N> <64 hex>`", i + 1));
            };
            let version = ver
                .strip_prefix('v')
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("key line {}: version must be v1, v2, ...", i + 1))?;
            let key = parse_key(hex).map_err(|e| format!("key line {}: {e}", i + 1))?;
            if ring.keys.contains_key(&version) {
                return Err(format!("key line {}: duplicate version v{version}", i + 1));
            }
            ring.insert(version, key);
        }
        Ok(ring)
    }

    /// Renders the keyring as file text.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        for (v, k) in &self.keys {
            out.push_str(&format!("v{v} "));
            out.push_str(&Zeroizing::new(hex::encode(*k.key)));
            out.push('\n');
        }
        out
    }
}

fn parse_key(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, &'static str> {
    if text.len() != KEY_LEN * 2 {
        return Err("key must be 64 hex characters (256 bits)");
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(text, key.as_mut()).map_err(|_| "key is not valid hex")?;
    Ok(key)
}

/// Outcome of loading a key source.
pub(crate) enum KeyMaterial {
    Ring(Keyring),
    /// No usable key material (none there, or a key file others can read,
    /// see `key_access.rs`): sealed with this reason.
    Missing(String),
}

pub(crate) fn load(source: &KeySource) -> Result<KeyMaterial, StoreError> {
    match source {
        KeySource::None => Ok(KeyMaterial::Missing(format!(
            "master key not available at {}",
            source.location()
        ))),
        KeySource::Inline(text) => Keyring::parse(text)
            .map(KeyMaterial::Ring)
            .map_err(|reason| StoreError::KeyFile {
                path: PathBuf::from(source.location()),
                reason,
            }),
        KeySource::File(path) => {
            let unreadable = |e: io::Error| StoreError::KeyFile {
                path: path.clone(),
                reason: e.to_string(),
            };
            let mut file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(KeyMaterial::Missing(format!(
                        "master key not available at {}",
                        path.display()
                    )));
                }
                Err(e) => return Err(unreadable(e)),
            };
            // Checked on the open file, before a byte of it is read.
            if let Some(refusal) = key_access::refusal(path, &file).map_err(unreadable)? {
                return Ok(KeyMaterial::Missing(refusal));
            }
            let mut text = Zeroizing::new(String::new());
            file.read_to_string(&mut text).map_err(unreadable)?;
            Keyring::parse(&text)
                .map(KeyMaterial::Ring)
                .map_err(|reason| StoreError::KeyFile {
                    path: path.clone(),
                    reason,
                })
        }
    }
}

/// Creates a new key file holding one random KEK (`v1`), mode 0600, in
/// directories created 0700 if missing. Refuses to overwrite an existing
/// file.
pub(crate) fn init_key_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        key_access::create_private_dirs(parent)?;
    }
    let mut ring = Keyring::default();
    ring.insert(1, crypto::random_key());
    let mut file = match open_private(path, true) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists(format!(
                "key file {}",
                path.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    file.write_all(ring.to_text().as_bytes())?;
    file.sync_all()?;
    sync_parent(path)?;
    Ok(())
}

/// A random KEK as bare hex, for `KEYHOLE_MASTER_KEY`-style configuration.
pub(crate) fn generate_key_text() -> String {
    hex::encode(*crypto::random_key())
}

/// Replaces the key file atomically with `ring`.
pub(crate) fn write_atomic(path: &Path, ring: &Keyring) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyring".into());
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}",
        hex::encode(crypto::random_nonce())
    ));
    let result = (|| -> io::Result<()> {
        let mut f = open_private(&tmp, true)?;
        f.write_all(ring.to_text().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| StoreError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("rewriting keyring: {e}"),
    })
}

/// An exclusive lock on a key file's sidecar `.<name>.lock`, held while a
/// KEK rotation rewrites the file: two rotations sharing one file (two
/// stores in one process, or two processes) must not each rewrite it from
/// what they read before the other's write, or one's new version is lost.
/// (A lock on the key file itself would not do: rewrites replace it.)
pub(crate) struct KeyFileLock(#[allow(dead_code)] File);

impl KeyFileLock {
    pub(crate) fn acquire(path: &Path) -> Result<Self, StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keyring".into());
        let lock_path = path.with_file_name(format!(".{name}.lock"));
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&lock_path)?;
        file.lock()?;
        Ok(KeyFileLock(file))
    }
}

/// True if `key_file` is `data_dir` or lies below it, resolving symlinks
/// and `..` for the parts that exist (a key file that does not exist yet
/// counts too): a key inside the data directory would travel with every
/// copy of it.
pub fn key_file_inside(key_file: &Path, data_dir: &Path) -> bool {
    fn resolve(p: &Path) -> PathBuf {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut norm = PathBuf::new();
        for c in abs.components() {
            match c {
                Component::ParentDir => {
                    norm.pop();
                }
                Component::CurDir => {}
                other => norm.push(other),
            }
        }
        // Resolve symlinks in the longest prefix that exists.
        let mut existing = norm.clone();
        let mut rest = Vec::new();
        let mut out = loop {
            if let Ok(canon) = existing.canonicalize() {
                break canon;
            }
            match existing.file_name() {
                Some(name) => {
                    rest.push(name.to_os_string());
                    existing.pop();
                }
                None => return norm,
            }
        };
        out.extend(rest.iter().rev());
        out
    }
    resolve(key_file).starts_with(resolve(data_dir))
}

fn open_private(path: &Path, create_new: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(create_new);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn parses_bare_key_and_versioned_lines() {
        let ring = Keyring::parse(&format!("  {K1}\n")).unwrap();
        assert_eq!(ring.current().unwrap().0, 1);
        let ring = Keyring::parse(&format!("# keyhole\nv1 {K1}\n\nv2 {K2}\n")).unwrap();
        let (v, k) = ring.current().unwrap();
        assert_eq!(v, 2);
        assert_eq!(hex::encode(*k.key), K2);
        assert_eq!(
            Keyring::parse(&ring.to_text()).unwrap().keys.len(),
            2,
            "to_text round-trips"
        );
    }

    #[test]
    fn rejects_bad_text_without_echoing_keys() {
        for bad in [
            "",
            "zz",
            &format!("v0 {K1}"),
            &format!("v1 {K1}\nv1 {K2}"),
            &format!("x1 {K1}"),
            &format!("v1 {K1} extra"),
            &format!("v1 {}", &K1[..62]),
        ] {
            let err = Keyring::parse(bad).err().expect(bad);
            assert!(!err.contains("1111"), "{err}");
        }
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/master.key");
        init_key_file(&path).unwrap();
        let first = fs::read_to_string(&path).unwrap();
        assert!(Keyring::parse(&first).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            init_key_file(&path),
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), first);
    }

    #[test]
    fn atomic_rewrite_keeps_mode_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        init_key_file(&path).unwrap();
        let ring = Keyring::parse(&format!("v1 {K1}\nv2 {K2}")).unwrap();
        write_atomic(&path, &ring).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("v1 {K1}\nv2 {K2}\n")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn inside_checks_resolve_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        assert!(key_file_inside(&data.join("keys/master.key"), &data));
        assert!(key_file_inside(&data.join("x/../master.key"), &data));
        assert!(!key_file_inside(&dir.path().join("master.key"), &data));
        assert!(!key_file_inside(
            &dir.path().join("data2/master.key"),
            &data
        ));
        assert!(!key_file_inside(&data.join("x/../../master.key"), &data));
    }

    #[test]
    fn generated_text_is_a_valid_key() {
        let t = generate_key_text();
        assert_eq!(t.len(), 64);
        assert!(Keyring::parse(&t).is_ok());
        assert!(
            format!("{:?}", KeySource::Inline(t.clone()))
                .find(&t)
                .is_none()
        );
    }
}
