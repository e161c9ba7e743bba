//! Sealing connection secrets with AES-256-GCM under a master key kept outside the database.
//!
//! The caller supplies the key (from `KEELSON_MASTER_KEY` or a 0600 key file, read by the CLI);
//! the store never reads the environment. Each sealed value records its key's id, so a
//! [`Keyring`] holding the new key plus the old ones reads everything while
//! [`Store::rotate_secrets`](crate::Store::rotate_secrets) re-encrypts. The associated data binds a
//! ciphertext to its connection and setting name, so rows cannot be swapped.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::{Error, Result};

const NONCE_LEN: usize = 12;

/// A 256-bit master key and the id under which sealed values name it.
pub struct MasterKey {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl MasterKey {
    /// Wraps 32 key bytes. The id is 1–64 characters of `A-Za-z0-9._-`.
    pub fn from_bytes(id: impl Into<String>, bytes: &[u8]) -> Result<Self> {
        let id = id.into();
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(Error::InvalidKeyId(id));
        }
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidKeyLength(bytes.len()))?;
        Ok(Self {
            id,
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// A fresh random key, for `keelson init`-style setup and tests.
    pub fn generate(id: impl Into<String>) -> Result<Self> {
        let mut bytes: [u8; 32] = rand::random();
        let key = Self::from_bytes(id, &bytes);
        bytes.fill(0);
        key
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// The current master key (used to seal) and older ones (still accepted to open).
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a key that may still have sealed some values, during rotation.
    pub fn with_previous(mut self, key: MasterKey) -> Self {
        self.previous.push(key);
        self
    }

    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Whether `bytes` are one of this ring's keys, so a caller can refuse to pass a key on as
    /// something else (a connection's secret).
    pub fn contains(&self, bytes: &[u8]) -> bool {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|k| k.key.expose_secret().as_slice() == bytes)
    }

    fn by_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

/// A sealed secret as stored.
pub(crate) struct Sealed {
    pub(crate) key_id: String,
    pub(crate) nonce: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

fn aad(connection: &str, secret: &str) -> Vec<u8> {
    let mut aad = b"keelson-secret\0".to_vec();
    aad.extend_from_slice(connection.as_bytes());
    aad.push(0);
    aad.extend_from_slice(secret.as_bytes());
    aad
}

pub(crate) fn seal(
    key: &MasterKey,
    connection: &str,
    secret: &str,
    value: &SecretString,
) -> Result<Sealed> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let aad = aad(connection, secret);
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: value.expose_secret().as_bytes(),
                aad: &aad,
            },
        )
        // AES-GCM refuses only plaintexts longer than 64 GiB.
        .map_err(|_| Error::SecretTooLarge {
            connection: connection.to_owned(),
            secret: secret.to_owned(),
        })?;
    Ok(Sealed {
        key_id: key.id.clone(),
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

pub(crate) fn open(
    keys: &Keyring,
    connection: &str,
    secret: &str,
    sealed: &Sealed,
) -> Result<SecretString> {
    let key = keys
        .by_id(&sealed.key_id)
        .ok_or_else(|| Error::MissingKey {
            connection: connection.to_owned(),
            secret: secret.to_owned(),
            key_id: sealed.key_id.clone(),
        })?;
    let decrypt_err = || Error::Decrypt {
        connection: connection.to_owned(),
        secret: secret.to_owned(),
        key_id: sealed.key_id.clone(),
    };
    if sealed.nonce.len() != NONCE_LEN {
        return Err(decrypt_err());
    }
    let aad = aad(connection, secret);
    let plain = key
        .cipher()
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| decrypt_err())?;
    String::from_utf8(plain)
        .map(SecretString::from)
        .map_err(|_| decrypt_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_binds_the_name() {
        let keys = Keyring::new(MasterKey::generate("k1").unwrap());
        let sealed = seal(
            keys.current(),
            "prod",
            "client-secret",
            &SecretString::from("s3cret".to_owned()),
        )
        .unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cret"));
        let opened = open(&keys, "prod", "client-secret", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "s3cret");
        // The same ciphertext under another connection's name is rejected.
        assert!(matches!(
            open(&keys, "staging", "client-secret", &sealed),
            Err(Error::Decrypt { .. })
        ));
    }

    #[test]
    fn a_keyring_knows_its_own_keys() {
        let keys = Keyring::new(MasterKey::from_bytes("k2", &[2; 32]).unwrap())
            .with_previous(MasterKey::from_bytes("k1", &[1; 32]).unwrap());
        assert!(keys.contains(&[2; 32]));
        assert!(keys.contains(&[1; 32]));
        assert!(!keys.contains(&[3; 32]));
        assert!(!keys.contains(&[2; 31]));
    }

    #[test]
    fn wrong_and_missing_keys_are_distinct_errors() {
        let sealed = seal(
            &MasterKey::generate("k1").unwrap(),
            "prod",
            "client-secret",
            &SecretString::from("s3cret".to_owned()),
        )
        .unwrap();
        let other_bytes = Keyring::new(MasterKey::generate("k1").unwrap());
        let err = open(&other_bytes, "prod", "client-secret", &sealed).unwrap_err();
        assert!(matches!(err, Error::Decrypt { .. }));
        assert!(err.to_string().contains("`k1`"), "{err}");
        let other_id = Keyring::new(MasterKey::generate("k2").unwrap());
        assert!(matches!(
            open(&other_id, "prod", "client-secret", &sealed),
            Err(Error::MissingKey { key_id, .. }) if key_id == "k1"
        ));
    }

    #[test]
    fn keys_are_validated_and_never_printed() {
        assert!(matches!(
            MasterKey::from_bytes("k", &[0; 31]),
            Err(Error::InvalidKeyLength(31))
        ));
        assert!(matches!(
            MasterKey::from_bytes("a b", &[0; 32]),
            Err(Error::InvalidKeyId(_))
        ));
        let key = MasterKey::from_bytes("k", &[0xAB; 32]).unwrap();
        let debug = format!("{key:?}");
        assert!(
            !debug.contains("171") && !debug.to_lowercase().contains("ab, "),
            "{debug}"
        );
    }
}
