//! Types for secret material: redacted `Debug`, zeroized on drop, compared in constant time.
//!
//! Passwords travel as [`secrecy::SecretString`]; keys as [`SecretKey`] inside a [`KeyRing`]
//! whose key ids let a key rotate without invalidating what older keys signed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use secrecy::{ExposeSecret, SecretString};

/// Minimum length of a key, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Key material. Its `Debug` prints nothing of the value and it is wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Wraps key bytes; refuses keys shorter than [`MIN_KEY_LEN`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyRingError> {
        if bytes.len() < MIN_KEY_LEN {
            let mut bytes = bytes;
            bytes.zeroize();
            return Err(KeyRingError::KeyTooShort { min: MIN_KEY_LEN });
        }
        Ok(Self(bytes))
    }

    /// The key bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

/// A key id: short, printable, safe to log and to embed in signed values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// A key id of 1–32 characters from `[A-Za-z0-9_-]`.
    pub fn new(id: impl Into<String>) -> Result<Self, KeyRingError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(id))
        } else {
            Err(KeyRingError::BadKeyId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key ring could not be built. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRingError {
    /// The ring has no key.
    #[error("the key ring is empty")]
    Empty,
    /// A key is shorter than the minimum.
    #[error("a key is shorter than {min} bytes")]
    KeyTooShort {
        /// The minimum length in bytes.
        min: usize,
    },
    /// A key id has characters outside `[A-Za-z0-9_-]` or is too long.
    #[error("a key id must be 1-32 characters from [A-Za-z0-9_-]")]
    BadKeyId,
    /// Two keys share an id.
    #[error("key id `{0}` appears twice")]
    DuplicateKeyId(String),
    /// An entry is not `kid:base64key`.
    #[error("entry {position} is not written `kid:base64key`")]
    Malformed {
        /// 1-based position of the entry in the list.
        position: usize,
    },
}

/// Keys with ids, newest first. New material uses [`KeyRing::current`]; verification tries
/// every key (SECURITY.md #36), so adding a key ends nothing and retiring one ends only what
/// still depends on it.
///
/// Cloning shares the keys (no copy of key material is made).
#[derive(Clone)]
pub struct KeyRing {
    keys: std::sync::Arc<RingKeys>,
}

struct RingKeys {
    newest: (KeyId, SecretKey),
    older: Vec<(KeyId, SecretKey)>,
}

impl KeyRing {
    /// A ring from `(id, key)` pairs, newest first.
    pub fn new(keys: Vec<(KeyId, SecretKey)>) -> Result<Self, KeyRingError> {
        for (i, (id, _)) in keys.iter().enumerate() {
            if keys.iter().skip(i + 1).any(|(other, _)| other == id) {
                return Err(KeyRingError::DuplicateKeyId(id.0.clone()));
            }
        }
        let mut keys = keys.into_iter();
        let newest = keys.next().ok_or(KeyRingError::Empty)?;
        Ok(Self {
            keys: std::sync::Arc::new(RingKeys {
                newest,
                older: keys.collect(),
            }),
        })
    }

    /// Parses the `kid:base64key[,kid:base64key…]` form used by `AUTHKIT_SECRET_*` variables.
    pub fn parse(text: &str) -> Result<Self, KeyRingError> {
        let mut keys = Vec::new();
        for (i, entry) in text.split(',').map(str::trim).enumerate() {
            let position = i + 1;
            let (id, b64) = entry
                .split_once(':')
                .ok_or(KeyRingError::Malformed { position })?;
            let bytes = STANDARD
                .decode(b64.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim()))
                .map_err(|_| KeyRingError::Malformed { position })?;
            keys.push((KeyId::new(id.trim())?, SecretKey::new(bytes)?));
        }
        Self::new(keys)
    }

    /// The key used for new material.
    pub fn current(&self) -> (&KeyId, &SecretKey) {
        (&self.keys.newest.0, &self.keys.newest.1)
    }

    fn all(&self) -> impl Iterator<Item = &(KeyId, SecretKey)> {
        std::iter::once(&self.keys.newest).chain(self.keys.older.iter())
    }

    /// The key with id `id`, if the ring still holds it.
    pub fn get(&self, id: &str) -> Option<&SecretKey> {
        self.all().find(|(k, _)| k.0 == id).map(|(_, key)| key)
    }

    /// All key ids, newest first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.all().map(|(id, _)| id)
    }

    /// Writes the ring back in its `kid:base64key,…` form (for persisting generated keys).
    pub fn to_secret_string(&self) -> SecretString {
        let text = self
            .all()
            .map(|(id, key)| format!("{id}:{}", STANDARD.encode(key.expose())))
            .collect::<Vec<_>>()
            .join(",");
        SecretString::from(text)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// A ring of test keys, newest first: each key is its byte repeated 32 times (worthless as a
/// secret; the secret scan treats such keys as test vectors).
#[cfg(test)]
pub(crate) fn test_ring(keys: &[(&str, u8)]) -> KeyRing {
    #[allow(clippy::unwrap_used)]
    KeyRing::new(
        keys.iter()
            .map(|(id, b)| {
                (
                    KeyId::new(*id).unwrap(),
                    SecretKey::new(vec![*b; 32]).unwrap(),
                )
            })
            .collect(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(n: u8, len: usize) -> String {
        STANDARD.encode(vec![n; len])
    }

    #[test]
    fn parses_newest_first_and_finds_old_keys() {
        let ring = KeyRing::parse(&format!("k2:{}, k1:{}", b64(2, 32), b64(1, 48))).unwrap();
        assert_eq!(ring.current().0.as_str(), "k2");
        assert_eq!(ring.get("k1").unwrap().expose(), &[1u8; 48][..]);
        assert!(ring.get("k3").is_none());
    }

    #[test]
    fn refuses_short_keys_duplicates_and_garbage() {
        assert_eq!(
            KeyRing::parse(&format!("k1:{}", b64(1, 31))).unwrap_err(),
            KeyRingError::KeyTooShort { min: 32 }
        );
        assert_eq!(
            KeyRing::parse(&format!("a:{},a:{}", b64(1, 32), b64(2, 32))).unwrap_err(),
            KeyRingError::DuplicateKeyId("a".into())
        );
        assert_eq!(
            KeyRing::parse("nokid").unwrap_err(),
            KeyRingError::Malformed { position: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("bad id:{}", b64(1, 32))).unwrap_err(),
            KeyRingError::BadKeyId
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let ring = KeyRing::parse(&format!("k1:{}", b64(0x41, 32))).unwrap();
        let shown = format!("{ring:?} {:?}", ring.current().1);
        assert!(shown.contains("k1"));
        assert!(!shown.contains("AAAA") && !shown.contains("65"), "{shown}");
    }

    #[test]
    fn round_trips_through_its_text_form() {
        let ring = KeyRing::parse(&format!("k2:{},k1:{}", b64(2, 32), b64(1, 32))).unwrap();
        let again = KeyRing::parse(ring.to_secret_string().expose_secret()).unwrap();
        assert_eq!(
            again.ids().map(KeyId::as_str).collect::<Vec<_>>(),
            ["k2", "k1"]
        );
    }
}
