//! keyhole's secret store: environments, spaces and envelope-encrypted
//! secrets in sled.
//!
//! Why it is shaped this way:
//!
//! * **Values are write-only outside the runtime.** Listings return names,
//!   scopes, versions and timestamps; only [`SecretStore::get_secret`] and
//!   [`SecretStore::resolve`] return a [`SecretValue`], which never prints
//!   and zeroizes on drop.
//! * **Envelope encryption.** Each scope (environment or space) has its own
//!   random data-encryption key (DEK); DEKs are stored only wrapped by the
//!   master key (KEK), which never enters the data directory. Every
//!   ciphertext is AES-256-GCM with a fresh random nonce and associated data
//!   binding it to its place, so moved or altered records fail with
//!   [`StoreError::Integrity`] instead of decrypting into garbage.
//! * **Sealed, not broken.** A missing or wrong master key opens the store
//!   *sealed*: metadata works, value operations return [`StoreError::Sealed`]
//!   and nothing is written.
//! * **Durable.** Every acknowledged write is flushed before returning.
//! * **Online rotation** of the KEK and of each DEK (see `rotation.rs`).
//!
//! Module map: `crypto` (the AEAD), `keyring` (master key text and files),
//! `keys` (sealing and DEK cache), `sealed_cache` (records as stored, in
//! front of sled on the read path), `records` (on-disk layout), `store`
//! (the operations), `rotation`, `validate`, `model`, `error`.

#![forbid(unsafe_code)]

mod crypto;
mod error;
mod keyring;
mod keys;
mod model;
#[cfg(test)]
mod race_tests;
mod records;
mod rotation;
mod sealed_cache;
mod store;
#[cfg(test)]
mod tamper_tests;
#[cfg(test)]
mod test_hooks;
mod validate;

pub use error::StoreError;
pub use keyring::KeySource;
pub use model::{
    EffectiveMeta, EnvironmentInfo, Provenance, Resolved, RotationReport, RotationTarget, Scope,
    SecretMeta, SecretValue, SpaceInfo,
};
pub use records::{
    TREE_DEK_CURRENT, TREE_DEKS, TREE_ENVIRONMENTS, TREE_META, TREE_SECRETS, TREE_SPACES,
};
pub use store::SecretStore;
pub use validate::{MAX_ID_LEN, MAX_NAME_LEN, MAX_VALUE_LEN, validate_id, validate_name};
