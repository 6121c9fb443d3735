//! Compiled listener artifacts, so a restart never recompiles.
//!
//! Modules are stored by sha256 under `modules/`, their precompiled form
//! (`Engine::precompile_component`) under `artifacts/`, named by module hash
//! and the engine's compatibility hash so a wasmtime upgrade or a different
//! configuration falls back to compiling once more. The sha256 of each
//! artifact is recorded in the bucket `artifacts` when it is written and checked before it is
//! loaded: a truncated or altered file is recompiled from the module, never
//! deserialized. Both directories are created 0700 and every file 0600,
//! whatever the process umask: modules may embed their authors' settings,
//! and an artifact is native code the host runs.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::cluster::SharedModules;
use crate::error::RuntimeError;

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) struct Artifacts {
    engine: Engine,
    modules: PathBuf,
    artifacts: PathBuf,
    digests: Arc<dyn keyhole_kv::Bucket>,
    /// In cluster mode: modules as every host sees them (`cluster.rs`).
    shared: Option<SharedModules>,
    compat: String,
    cache: Mutex<HashMap<String, Component>>,
    pub(crate) compiled: AtomicU64,
    pub(crate) loaded: AtomicU64,
}

impl Artifacts {
    /// Artifacts under `data_dir`, their digests in `backend` (this
    /// host's); with `shared`, modules also go to and come from it.
    pub(crate) fn open(
        engine: &Engine,
        data_dir: &Path,
        backend: &dyn keyhole_kv::Backend,
        shared: Option<SharedModules>,
    ) -> Result<Self, RuntimeError> {
        let modules = data_dir.join("modules");
        let artifacts = data_dir.join("artifacts");
        for d in [&modules, &artifacts] {
            create_private_dir(d).map_err(|e| RuntimeError::io(d, e))?;
            remove_temporaries(d)?;
        }
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Artifacts {
            engine: engine.clone(),
            modules,
            artifacts,
            digests: open_digests(backend)?,
            shared,
            compat: format!("{:016x}", h.finish()),
            cache: Mutex::default(),
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
        })
    }

    fn artifact_path(&self, module_hash: &str) -> PathBuf {
        self.artifacts
            .join(format!("{module_hash}-{}.cwasm", self.compat))
    }

    fn module_path(&self, module_hash: &str) -> PathBuf {
        self.modules.join(format!("{module_hash}.wasm"))
    }

    /// Compiles `bytes` without storing anything. Returns the component and
    /// its serialized artifact.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<(Component, Vec<u8>), RuntimeError> {
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let component = self.deserialize(&artifact)?;
        Ok((component, artifact))
    }

    /// Stores a validated module and its artifact.
    pub(crate) fn persist(
        &self,
        module_hash: &str,
        module: &[u8],
        artifact: &[u8],
        component: &Component,
    ) -> Result<(), RuntimeError> {
        if let Some(shared) = &self.shared {
            shared.put(module_hash, module)?;
        }
        write_atomic(&self.module_path(module_hash), module)?;
        let path = self.artifact_path(module_hash);
        write_atomic(&path, artifact)?;
        self.digests
            .put(&path_key(&path), sha256_hex(artifact).as_bytes())?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(module_hash.to_string(), component.clone());
        Ok(())
    }

    /// The component for `module_hash` if this process already has it.
    pub(crate) fn load_cached(&self, module_hash: &str) -> Option<Component> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(module_hash)
            .cloned()
    }

    /// The component for a stored module: from memory, else from its verified
    /// artifact, else compiled again from the stored module.
    pub(crate) fn load(&self, module_hash: &str) -> Result<Component, RuntimeError> {
        if let Some(c) = self.load_cached(module_hash) {
            return Ok(c);
        }
        let path = self.artifact_path(module_hash);
        let recorded = self.digests.get(&path_key(&path))?.map(|e| e.value);
        let component = match (std::fs::read(&path), recorded) {
            (Ok(bytes), Some(digest)) if sha256_hex(&bytes).as_bytes() == &digest[..] => {
                self.loaded.fetch_add(1, Ordering::Relaxed);
                self.deserialize(&bytes)?
            }
            _ => {
                let module_path = self.module_path(module_hash);
                let module = match (std::fs::read(&module_path), &self.shared) {
                    (Ok(m), _) => m,
                    // Deployed on another host: fetched once, kept here.
                    (Err(e), Some(shared)) if e.kind() == std::io::ErrorKind::NotFound => {
                        let m = shared
                            .get(module_hash)?
                            .ok_or_else(|| RuntimeError::io(&module_path, e))?;
                        write_atomic(&module_path, &m)?;
                        m
                    }
                    (Err(e), _) => return Err(RuntimeError::io(&module_path, e)),
                };
                if sha256_hex(&module) != module_hash {
                    return Err(RuntimeError::Corrupt(format!(
                        "{} does not match its hash",
                        module_path.display()
                    )));
                }
                let (component, artifact) = self.compile(&module)?;
                write_atomic(&path, &artifact)?;
                self.digests
                    .put(&path_key(&path), sha256_hex(&artifact).as_bytes())?;
                component
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(module_hash.to_string(), component.clone());
        Ok(component)
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, artifact: &[u8]) -> Result<Component, RuntimeError> {
        // SAFETY: `artifact` is either fresh output of this engine's
        // `precompile_component`, or a file this module wrote whose sha256
        // matches the digest recorded in the bucket when it was written. The file
        // name carries the engine's compatibility hash, and wasmtime checks
        // the engine/config header again on deserialize.
        unsafe { Component::deserialize(&self.engine, artifact) }.map_err(RuntimeError::engine)
    }
}

/// The bucket of artifact digests (file name -> sha256 hex), with release
/// 0.1's tree of the same records migrated into it.
fn open_digests(
    backend: &dyn keyhole_kv::Backend,
) -> Result<Arc<dyn keyhole_kv::Bucket>, RuntimeError> {
    let bucket = backend.bucket("artifacts")?;
    keyhole_kv::migrate_legacy(backend, "artifacts", &*bucket, |k| Ok(k.to_vec()))?;
    Ok(bucket)
}

fn path_key(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default()
}

/// Deletes what a write cut short by a crash left behind.
fn remove_temporaries(dir: &Path) -> Result<(), RuntimeError> {
    let io = |e| RuntimeError::io(dir, e);
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path).map_err(|e| RuntimeError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Writes `path` whole or not at all. Each call writes its own temporary
/// file: two deploys of one module write the same paths at once, and with
/// a shared temporary name one's rename found the file already moved.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    write_private(&tmp, bytes).map_err(|e| RuntimeError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RuntimeError::io(path, e))
}

/// Writes `bytes` to `path`, creating it mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

/// Creates `dir` (and missing parents) mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
