//! Offline compaction: every tree copied into a fresh sled database that
//! then replaces the old one, so that the bytes sled freed (replaced and
//! deleted records: destroyed secret versions, retired data keys) are gone
//! from the data directory. sled 0.34 cannot erase them in place; they stay
//! in its files until it happens to reuse the space.
//!
//! Crash-safe by ordering. The copy is written beside the database
//! (`db.compacting`); once it is complete and on disk, a marker file
//! (`compact.done`) says so; then `db` becomes `db.old`, the copy becomes
//! `db`, and `db.old` and the marker are removed. [`finish_interrupted`],
//! which every open runs first, completes a swap that has its marker and
//! throws away a copy that has none, so a kill at any point leaves either
//! the old database or the complete copy, never a mix.
//!
//! Revisions keep growing across the copy although a fresh database's id
//! generator starts again at zero: the copy records a revision base above
//! every revision handed out before ([`revision_base`]), which the backend
//! adds to the ids it draws.

use std::path::Path;

use keyhole_kv::KvError;

use crate::{DB_DIR, create_private_dir, db_error, open_sled};

/// The copy being written.
const COPY_DIR: &str = "db.compacting";
/// The database being replaced, during the swap.
const OLD_DIR: &str = "db.old";
/// Present once the copy is complete.
const DONE_MARKER: &str = "compact.done";

/// The tree holding the backend's own settings (not a bucket).
const META_TREE: &[u8] = b"kv-embedded/meta";
const REVISION_BASE: &[u8] = b"revision-base";

/// What a compaction did: the database's size on disk before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Added to sled's ids to make revisions: 0 until a compaction sets it.
pub(crate) fn revision_base(db: &sled::Db) -> Result<u64, KvError> {
    let meta = db.open_tree(META_TREE).map_err(db_error)?;
    Ok(match meta.get(REVISION_BASE).map_err(db_error)? {
        Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes")),
        Some(v) => {
            return Err(KvError::Corrupt {
                bucket: "kv-embedded/meta".into(),
                what: format!("a revision base of {} bytes", v.len()),
            });
        }
        None => 0,
    })
}

/// Copies the database in `data_dir` and swaps the copy in. The caller
/// holds the data directory's lock and nothing has the database open.
pub(crate) fn run(data_dir: &Path) -> Result<Compacted, KvError> {
    let copy_dir = data_dir.join(COPY_DIR);
    let bytes_before = bytes_under(&data_dir.join(DB_DIR))?;
    {
        let old = open_sled(data_dir, DB_DIR)?;
        if copy_dir.exists() {
            std::fs::remove_dir_all(&copy_dir)?;
        }
        create_private_dir(&copy_dir)?;
        let copy = open_sled(data_dir, COPY_DIR)?;
        // Above every revision `old` handed out: its id generator never
        // repeats, so its next id bounds them all.
        let base = revision_base(&old)? + old.generate_id().map_err(db_error)? + 1;
        for name in old.tree_names() {
            if name.as_ref() == META_TREE {
                continue;
            }
            let from = old.open_tree(&name).map_err(db_error)?;
            let to = copy.open_tree(&name).map_err(db_error)?;
            for item in from.iter() {
                let (k, v) = item.map_err(db_error)?;
                to.insert(k, v).map_err(db_error)?;
            }
        }
        copy.open_tree(META_TREE)
            .map_err(db_error)?
            .insert(REVISION_BASE, &base.to_be_bytes())
            .map_err(db_error)?;
        copy.flush().map_err(db_error)?;
    }
    std::fs::File::create(data_dir.join(DONE_MARKER))?.sync_all()?;
    sync_dir(data_dir)?;
    finish_interrupted(data_dir)?;
    Ok(Compacted {
        bytes_before,
        bytes_after: bytes_under(&data_dir.join(DB_DIR))?,
    })
}

/// Completes a compaction whose copy is marked complete, or discards one
/// whose copy is not. Runs under the data directory's lock, before sled
/// opens.
pub(crate) fn finish_interrupted(data_dir: &Path) -> Result<(), KvError> {
    let (db, copy, old, marker) = (
        data_dir.join(DB_DIR),
        data_dir.join(COPY_DIR),
        data_dir.join(OLD_DIR),
        data_dir.join(DONE_MARKER),
    );
    if !marker.exists() {
        if copy.exists() {
            std::fs::remove_dir_all(&copy)?;
        }
        return Ok(());
    }
    if copy.exists() {
        if db.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old)?;
            }
            std::fs::rename(&db, &old)?;
        }
        std::fs::rename(&copy, &db)?;
        sync_dir(data_dir)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    std::fs::remove_file(&marker)?;
    sync_dir(data_dir)
}

fn sync_dir(dir: &Path) -> Result<(), KvError> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The size of every file under `dir`.
fn bytes_under(dir: &Path) -> Result<u64, KvError> {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
