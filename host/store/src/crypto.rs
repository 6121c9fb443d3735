//! The one place that touches the AEAD: AES-256-GCM seal/open with an
//! explicit key, 96-bit nonce and associated data.
//!
//! Keeping the primitive behind this narrow surface means the rest of the
//! store never handles tags, nonce sizes or cipher state directly, and the
//! primitive can be pinned down by known-answer vectors (McGrew & Viega,
//! "The Galois/Counter Mode of Operation", AES-256 test cases 13–16) rather
//! than only by round trips, which a broken-but-symmetric cipher would pass.
//!
//! Sealed output is `ciphertext || 16-byte tag`. Opening never returns
//! unauthenticated bytes: any change to key, nonce, AD, ciphertext or tag is
//! an [`OpenError`].

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Authentication failed: wrong key, or the data or its context changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

/// An AES-256-GCM key, ready to use. Its key schedule is zeroized on drop.
#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl Cipher {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Cipher(Aes256Gcm::new(key.into()))
    }

    /// Encrypts `plaintext`, binding `aad`; returns ciphertext || tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.0
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Only fails for inputs beyond GCM's ~64 GiB limit.
            .expect("AES-GCM input within limits")
    }

    /// Verifies and decrypts ciphertext || tag. The plaintext is zeroized
    /// when dropped.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < TAG_LEN {
            return Err(OpenError);
        }
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map(Zeroizing::new)
            .map_err(|_| OpenError)
    }
}

/// A fresh random 96-bit nonce from the OS-seeded CSPRNG.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// A fresh random 256-bit key.
pub fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    rand::thread_rng().fill_bytes(k.as_mut());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        name: &'static str,
        key: &'static str,
        iv: &'static str,
        pt: &'static str,
        aad: &'static str,
        ct: &'static str,
        tag: &'static str,
    }

    const K15: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const IV15: &str = "cafebabefacedbaddecaf888";
    const P15: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                       1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const C15: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                       8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

    /// McGrew & Viega, GCM spec, Appendix B, AES-256 test cases 13–16.
    const VECTORS: &[Vector] = &[
        Vector {
            name: "TC13 empty",
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            iv: "000000000000000000000000",
            pt: "",
            aad: "",
            ct: "",
            tag: "530f8afbc74536b9a963b4f1c4cb738b",
        },
        Vector {
            name: "TC14 one block",
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            iv: "000000000000000000000000",
            pt: "00000000000000000000000000000000",
            aad: "",
            ct: "cea7403d4d606b6e074ec5d3baf39d18",
            tag: "d0d1c8a799996bf0265b98b5d48ab919",
        },
        Vector {
            name: "TC15 four blocks",
            key: K15,
            iv: IV15,
            pt: P15,
            aad: "",
            ct: C15,
            tag: "b094dac5d93471bdec1a502270e3cc6c",
        },
        Vector {
            name: "TC16 with AAD",
            key: K15,
            iv: IV15,
            // TC15's plaintext/ciphertext truncated to 60 bytes.
            pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                 1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b",
        },
    ];

    fn h(s: &str) -> Vec<u8> {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(clean).unwrap()
    }

    fn parts(v: &Vector) -> (Cipher, [u8; NONCE_LEN], Vec<u8>, Vec<u8>, Vec<u8>) {
        let key: [u8; KEY_LEN] = h(v.key).try_into().unwrap();
        let nonce: [u8; NONCE_LEN] = h(v.iv).try_into().unwrap();
        let mut expected = h(v.ct);
        expected.extend(h(v.tag));
        (Cipher::new(&key), nonce, h(v.pt), h(v.aad), expected)
    }

    #[test]
    fn known_answer_vectors_seal() {
        for v in VECTORS {
            let (cipher, nonce, pt, aad, expected) = parts(v);
            assert_eq!(cipher.seal(&nonce, &aad, &pt), expected, "{}", v.name);
        }
    }

    #[test]
    fn known_answer_vectors_open() {
        for v in VECTORS {
            let (cipher, nonce, pt, aad, sealed) = parts(v);
            let opened = cipher.open(&nonce, &aad, &sealed).expect(v.name);
            assert_eq!(&opened[..], &pt[..], "{}", v.name);
        }
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        for v in VECTORS {
            let (cipher, nonce, _, aad, sealed) = parts(v);
            for i in 0..sealed.len() * 8 {
                let mut bad = sealed.clone();
                bad[i / 8] ^= 1 << (i % 8);
                assert_eq!(
                    cipher.open(&nonce, &aad, &bad),
                    Err(OpenError),
                    "{}",
                    v.name
                );
            }
            for i in 0..NONCE_LEN * 8 {
                let mut bad = nonce;
                bad[i / 8] ^= 1 << (i % 8);
                assert_eq!(
                    cipher.open(&bad, &aad, &sealed),
                    Err(OpenError),
                    "{}",
                    v.name
                );
            }
            let mut bad_aad = aad.clone();
            bad_aad.push(0);
            assert_eq!(cipher.open(&nonce, &bad_aad, &sealed), Err(OpenError));
        }
    }

    #[test]
    fn truncation_and_wrong_key_are_rejected() {
        let (cipher, nonce, _, aad, sealed) = parts(&VECTORS[3]);
        assert_eq!(
            cipher.open(&nonce, &aad, &sealed[..sealed.len() - 1]),
            Err(OpenError)
        );
        assert_eq!(
            cipher.open(&nonce, &aad, &sealed[..TAG_LEN - 1]),
            Err(OpenError)
        );
        assert_eq!(cipher.open(&nonce, &aad, &[]), Err(OpenError));
        let other = Cipher::new(&random_key());
        assert_eq!(other.open(&nonce, &aad, &sealed), Err(OpenError));
    }

    #[test]
    fn random_material_differs() {
        assert_ne!(random_nonce(), random_nonce());
        assert_ne!(*random_key(), *random_key());
        let key = random_key();
        let c = Cipher::new(&key);
        let n = random_nonce();
        let sealed = c.seal(&n, b"ad", b"hello");
        assert_eq!(&c.open(&n, b"ad", &sealed).unwrap()[..], b"hello");
    }
}
