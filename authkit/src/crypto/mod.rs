//! Authenticated encryption of stored secrets: the [`Sealer`].
//!
//! A sealed value is one printable string, `v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`,
//! made with XChaCha20-Poly1305 under the key named `kid` in the encryption [`KeyRing`]:
//!
//! - **Random nonces.** XChaCha20's 192-bit nonce is drawn from the injected
//!   [`RandomSource`] for every seal; at that size random nonces do not collide in practice,
//!   so no counter has to be kept (and shared between instances).
//! - **Associated data.** The caller names what the value is for (e.g. `b"authkit-mail-v1"`);
//!   a value sealed for one purpose does not open for another. The version and key id of the
//!   envelope are bound too, so an envelope cannot be relabelled.
//! - **Rotation** (SECURITY.md #36). New values use the ring's newest key; [`Sealer::open`]
//!   uses the key the envelope names, so adding a key ends nothing and values sealed under a
//!   retired key no longer open.
//! - **Key separation.** The AEAD key is derived from the ring key with HMAC-SHA256 and a
//!   fixed label, so the same ring can serve other purposes without key reuse across
//!   algorithms, and ring keys longer than 32 bytes are used in full.
//!
//! Queued mails (see [`crate::jobs`]) are sealed with it; OAuth provider tokens and TOTP
//! secrets will be too.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::rng::RandomSource;
use crate::secret::{KeyId, KeyRing};
use crate::util::Swappable;

/// The envelope format version written by [`Sealer::seal`].
const VERSION: &str = "v1";
/// Label of the HMAC that derives the AEAD key from a ring key.
const KDF_LABEL: &[u8] = b"authkit/sealer/v1/xchacha20poly1305";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a value could not be sealed or opened. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The text is not a `v1.<kid>.<base64url>` envelope.
    #[error("not a sealed value")]
    Malformed,
    /// The envelope names a key the ring no longer (or never) held: retired keys end what
    /// depends on them.
    #[error("sealed with key `{0}`, which is not in the key ring")]
    UnknownKey(String),
    /// Authentication failed: wrong key or associated data, or the value was altered.
    #[error("the sealed value does not authenticate")]
    Decrypt,
    /// The random source failed, so no nonce could be drawn.
    #[error("the random number generator failed")]
    Random,
}

/// Seals and opens values with the keys of an encryption [`KeyRing`]. Cheap to clone.
/// Clones share the keys, and [`set_keys`](Sealer::set_keys) replaces them for all of them.
#[derive(Clone)]
pub struct Sealer {
    keys: Swappable<SealerKeys>,
}

struct SealerKeys {
    /// Derived AEAD keys, newest first (the same order as the ring).
    keys: Vec<(KeyId, Zeroizing<[u8; 32]>)>,
}

impl Sealer {
    /// A sealer over `ring` (normally [`SecretKeys::encryption`](crate::secrets::SecretKeys)).
    pub fn new(ring: &KeyRing) -> Self {
        Self {
            keys: Swappable::new(SealerKeys::derive(ring)),
        }
    }

    /// Seals new values under `ring`'s newest key from now on (every clone); values sealed
    /// under a key no longer in `ring` stop opening.
    pub fn set_keys(&self, ring: &KeyRing) {
        self.keys.store(SealerKeys::derive(ring));
    }

    /// The id of the key new values are sealed under.
    pub fn current_key_id(&self) -> Option<KeyId> {
        self.keys.load().keys.first().map(|(id, _)| id.clone())
    }
}

impl SealerKeys {
    fn derive(ring: &KeyRing) -> Self {
        let keys = ring
            .ids()
            .filter_map(|id| {
                let key = ring.get(id.as_str())?;
                Some((id.clone(), derive_key(key.expose())))
            })
            .collect();
        Self { keys }
    }
}

impl Sealer {
    /// Seals `plaintext` for the purpose named by `aad` under the newest key.
    pub fn seal(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        rng: &dyn RandomSource,
    ) -> Result<String, CryptoError> {
        // `KeyRing` cannot be empty, so neither can this list.
        let keys = self.keys.load();
        let (kid, key) = keys
            .keys
            .first()
            .ok_or(CryptoError::UnknownKey(String::new()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.try_fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let cipher = cipher_for(key)?;
        let bound = bound_aad(kid.as_str(), aad);
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &bound,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{VERSION}.{kid}.{}", URL_SAFE_NO_PAD.encode(blob)))
    }

    /// Opens an envelope made by [`Sealer::seal`] with the same `aad`, using the key it names.
    pub fn open(&self, envelope: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut parts = envelope.split('.');
        let (Some(VERSION), Some(kid), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        // Validate the id's alphabet before it can reach an error message or a log line.
        let kid = KeyId::new(kid).map_err(|_| CryptoError::Malformed)?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        let keys = self.keys.load();
        let key = keys
            .keys
            .iter()
            .find(|(id, _)| *id == kid)
            .map(|(_, key)| key)
            .ok_or_else(|| CryptoError::UnknownKey(kid.as_str().to_owned()))?;
        let cipher = cipher_for(key)?;
        let bound = bound_aad(kid.as_str(), aad);
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &bound,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl Sealer {
    /// Whether `envelope` names the ring's newest key (so re-sealing it would change nothing).
    /// A malformed envelope is not current.
    pub fn is_current(&self, envelope: &str) -> bool {
        let mut parts = envelope.split('.');
        let keys = self.keys.load();
        match (parts.next(), parts.next(), keys.keys.first()) {
            (Some(VERSION), Some(kid), Some((newest, _))) => kid == newest.as_str(),
            _ => false,
        }
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field(
                "key_ids",
                &self
                    .keys
                    .load()
                    .keys
                    .iter()
                    .map(|(id, _)| id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The cipher for a derived key, borrowed in place (no unwiped copy of the key is made here;
/// the cipher wipes its own copy on drop).
fn cipher_for(key: &Zeroizing<[u8; 32]>) -> Result<XChaCha20Poly1305, CryptoError> {
    let key =
        <&chacha20poly1305::Key>::try_from(key.as_slice()).map_err(|_| CryptoError::Decrypt)?;
    Ok(XChaCha20Poly1305::new(key))
}

fn derive_key(ring_key: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length, so this cannot fail; the fallback is never taken.
    if let Ok(mut mac) = <Hmac<Sha256> as hmac::Mac>::new_from_slice(ring_key) {
        mac.update(KDF_LABEL);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// The associated data actually authenticated: version and key id bound to the caller's.
fn bound_aad(kid: &str, aad: &[u8]) -> Vec<u8> {
    let mut bound = Vec::with_capacity(VERSION.len() + kid.len() + aad.len() + 2);
    bound.extend_from_slice(VERSION.as_bytes());
    bound.push(0);
    bound.extend_from_slice(kid.as_bytes());
    bound.push(0);
    bound.extend_from_slice(aad);
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{OsRandom, RandomError, SeededRandom};

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        crate::secret::test_ring(keys)
    }

    // SECURITY.md #35: AEAD with a key id and associated data.
    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let sealer = Sealer::new(&ring(&[("k1", 7)]));
        let sealed = sealer.seal(b"reset link", b"purpose", &OsRandom).unwrap();
        assert!(sealed.starts_with("v1.k1."), "{sealed}");
        assert!(!sealed.contains("reset"));
        let opened = sealer.open(&sealed, b"purpose").unwrap();
        assert_eq!(opened.as_slice(), b"reset link");
    }

    // SECURITY.md #35: a unique nonce per encryption.
    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let sealer = Sealer::new(&ring(&[("k1", 7)]));
        let rng = SeededRandom::new(1);
        let a = sealer.seal(b"same", b"aad", &rng).unwrap();
        let b = sealer.seal(b"same", b"aad", &rng).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_associated_data_fails() {
        let sealer = Sealer::new(&ring(&[("k1", 7)]));
        let sealed = sealer.seal(b"secret", b"mail", &OsRandom).unwrap();
        assert_eq!(sealer.open(&sealed, b"oauth"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn tampering_fails() {
        let sealer = Sealer::new(&ring(&[("k1", 7)]));
        let sealed = sealer.seal(b"secret", b"aad", &OsRandom).unwrap();
        let (head, body) = sealed.rsplit_once('.').unwrap();
        let mut blob = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in [0, NONCE_LEN, blob.len() - 1] {
            let mut altered = blob.clone();
            altered[i] ^= 1;
            let envelope = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&altered));
            assert_eq!(
                sealer.open(&envelope, b"aad"),
                Err(CryptoError::Decrypt),
                "byte {i}"
            );
        }
        blob.truncate(NONCE_LEN + TAG_LEN - 1);
        let short = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&blob));
        assert_eq!(sealer.open(&short, b"aad"), Err(CryptoError::Malformed));
    }

    #[test]
    fn relabelling_the_key_id_fails_even_with_the_same_key() {
        // An operator re-adding the same key under a new id must not make envelopes movable.
        let sealer = Sealer::new(&ring(&[("k2", 7), ("k1", 7)]));
        let sealed = sealer.seal(b"secret", b"aad", &OsRandom).unwrap();
        let relabelled = sealed.replacen("v1.k2.", "v1.k1.", 1);
        assert_eq!(sealer.open(&relabelled, b"aad"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        let sealer = Sealer::new(&ring(&[("k1", 7)]));
        for bad in [
            "",
            "v1",
            "v1.k1",
            "v2.k1.AAAA",
            "v1.k1.AAAA.extra",
            "v1.bad id.AAAA",
            "v1.k1.!!!",
        ] {
            assert_eq!(
                sealer.open(bad, b""),
                Err(CryptoError::Malformed),
                "{bad:?}"
            );
        }
    }

    // SECURITY.md #36: new material uses the new key id; old ciphertexts open until retired.
    #[test]
    fn rotation_keeps_old_keys_opening_and_retired_keys_fail() {
        let old = Sealer::new(&ring(&[("k1", 1)]));
        let sealed_old = old.seal(b"old", b"aad", &OsRandom).unwrap();

        // k2 added: new values use k2, old ones still open.
        let rotated = Sealer::new(&ring(&[("k2", 2), ("k1", 1)]));
        let sealed_new = rotated.seal(b"new", b"aad", &OsRandom).unwrap();
        assert!(sealed_new.starts_with("v1.k2."));
        assert_eq!(
            rotated.open(&sealed_old, b"aad").unwrap().as_slice(),
            b"old"
        );
        assert_eq!(
            rotated.open(&sealed_new, b"aad").unwrap().as_slice(),
            b"new"
        );

        // k1 retired: what still depended on it ends.
        let retired = Sealer::new(&ring(&[("k2", 2)]));
        assert_eq!(
            retired.open(&sealed_old, b"aad"),
            Err(CryptoError::UnknownKey("k1".into()))
        );
        assert_eq!(
            retired.open(&sealed_new, b"aad").unwrap().as_slice(),
            b"new"
        );
        // What to re-seal: envelopes under any key but the newest.
        assert!(!rotated.is_current(&sealed_old));
        assert!(rotated.is_current(&sealed_new));
        assert!(old.is_current(&sealed_old));
        assert!(!rotated.is_current("v2.k2.xyz"));
        assert!(!rotated.is_current("garbage"));
    }

    #[test]
    fn a_failing_random_source_is_reported() {
        #[derive(Debug)]
        struct Broken;
        impl RandomSource for Broken {
            fn try_fill(&self, _: &mut [u8]) -> Result<(), RandomError> {
                Err(RandomError)
            }
        }
        let sealer = Sealer::new(&ring(&[("k1", 7)]));
        assert_eq!(sealer.seal(b"x", b"", &Broken), Err(CryptoError::Random));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let sealer = Sealer::new(&ring(&[("k1", 0x41)]));
        let shown = format!("{sealer:?}");
        assert!(shown.contains("k1"), "{shown}");
        assert!(!shown.contains("65") && !shown.contains("AAAA"), "{shown}");
    }
}
