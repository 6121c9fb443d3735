//! keyhole's secret store: environments, spaces and envelope-encrypted
//! secrets, on the `keyhole-kv` storage seam.
//!
//! Why it is shaped this way:
//!
//! * **Values are write-only outside the runtime.** Listings return names,
//!   scopes, versions and timestamps; only [`SecretStore::get_secret`] and
//!   [`SecretStore::resolve`] return a [`SecretValue`], which never prints
//!   and zeroizes on drop.
//! * **Envelope encryption.** Each scope (environment or space) has its own
//!   random data-encryption key (DEK); DEKs are stored only wrapped by the
//!   master key (KEK), which never enters the backend. Every ciphertext is
//!   AES-256-GCM with a fresh random nonce and associated data binding it to
//!   its place, so moved or altered records fail with
//!   [`StoreError::Integrity`] instead of decrypting into garbage.
//! * **Topic-bound secrets.** A secret may be bound to event topics
//!   (`topic_binding.rs`); listeners read it only during matching events.
//!   The binding is sealed into the value's AD, so widening it by editing
//!   the data makes the value fail to open.
//! * **Sealed, not broken.** A missing or wrong master key, or a key file
//!   that group or others can read (refused, `key_access.rs`), opens the
//!   store *sealed*: metadata works, value operations return
//!   [`StoreError::Sealed`] and nothing is written.
//! * **Durable.** Every acknowledged write is flushed before returning.
//! * **Shareable.** Several stores may share one backend (several hosts):
//!   caches follow the backend's watch and key rotation coordinates through
//!   the backend's revisions, not in-process locks.
//! * **Online rotation** of the KEK and of each DEK (`rotation/`).
//!
//! Module map: `open` (the store and opening it), `scopes` (environments,
//! spaces, the membership check), `deletion/` (deleting a scope with its
//! secrets and data keys, crash-safely), `writes` (set, delete, the fenced sealed
//! write), `history` (kept older versions: rollback, undelete, destroy),
//! `read` (get, resolve), `listings`, `rotation/`, `keys/` (key
//! management: keyring, DEK cache, unsealing), `keyring` (master key text
//! and files), `key_access` (refusing a key file others can read),
//! `crypto` (the AEAD), `records` (record formats and AD),
//! `topic_binding` (a secret's topic globs, checked and compiled),
//! `layout` (where records live in the bucket), `sealed_cache` (records as
//! stored, in front of the backend), `cache_sync` (the watch that keeps the
//! caches true), `migrate` (release 0.1's layout), `validate`, `model`,
//! `error`.

#![forbid(unsafe_code)]

mod cache_sync;
mod crypto;
mod deletion;
mod error;
mod history;
mod kept;
mod key_access;
mod keyring;
mod keys;
mod layout;
mod listings;
mod locks;
mod migrate;
mod model;
mod open;
#[cfg(test)]
mod race_tests;
mod read;
mod records;
mod rotation;
mod scopes;
mod sealed_cache;
#[cfg(test)]
mod stress_tests;
#[cfg(test)]
mod tamper_tests;
#[cfg(test)]
mod test_hooks;
mod topic_binding;
mod validate;
mod writes;

pub use deletion::{DeleteReport, PendingDeletion, ScopeContents};
pub use error::StoreError;
pub use history::{DEFAULT_HISTORY, MAX_HISTORY, validate_versions_kept};
pub use keyhole_kv::Revision;
pub use keyring::{KeySource, key_file_inside};
pub use model::{
    EffectiveMeta, EnvironmentInfo, ParseScopeError, Provenance, Resolved, RotationReport,
    RotationTarget, Scope, SecretMeta, SecretValue, SpaceInfo, VersionInfo, VersionState,
};
pub use open::SecretStore;
pub use topic_binding::{MAX_TOPIC_LEN, MAX_TOPICS};
pub use validate::{MAX_ID_LEN, MAX_NAME_LEN, MAX_VALUE_LEN, validate_id, validate_name};
