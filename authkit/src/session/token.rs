//! The session token (the cookie value) and its stored hash.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::rng::{RandomError, RandomSource};

/// Bytes of randomness in a session token (256 bits; SECURITY.md #5).
pub const TOKEN_BYTES: usize = 32;
/// Length of the token's cookie form (unpadded base64url of 32 bytes).
pub const TOKEN_TEXT_LEN: usize = 43;

/// The raw session token. Only ever sent in `Set-Cookie`; never stored, logged or put in a body.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl SessionToken {
    /// A new token from the CSPRNG.
    pub fn generate(rng: &dyn RandomSource) -> Result<Self, RandomError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rng.try_fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Parses a cookie value: exactly 43 characters of unpadded base64url, nothing else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != TOKEN_TEXT_LEN {
            return None;
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        let n = URL_SAFE_NO_PAD
            .decode_slice(text.as_bytes(), &mut bytes)
            .ok()?;
        // Canonical form only: reject encodings whose unused trailing bits are set, so that a
        // token has exactly one accepted spelling.
        (n == TOKEN_BYTES && URL_SAFE_NO_PAD.encode(bytes) == text).then_some(Self(bytes))
    }

    /// The cookie value.
    pub fn to_cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The hash under which the session is stored (SECURITY.md #6).
    pub fn hash(&self) -> SessionIdHash {
        SessionIdHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([REDACTED])")
    }
}

/// SHA-256 of a session token: the store key. Knowing it does not let anyone use the session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionIdHash([u8; 32]);

impl SessionIdHash {
    /// A hash read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A hash read back from storage as a slice, if it has the right length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionIdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short prefix is enough to correlate logs; the full hash is not needed there.
        let prefix = self.0.get(..4).unwrap_or_default();
        write!(f, "SessionIdHash({}…)", crate::util::hex_lower(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::OsRandom;

    #[test]
    fn round_trips_and_hashes() {
        let t = SessionToken::generate(&OsRandom).unwrap();
        let text = t.to_cookie_value();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        let back = SessionToken::parse(&text).unwrap();
        assert_eq!(back.hash(), t.hash());
        assert_ne!(
            t.hash().as_bytes()[..],
            *URL_SAFE_NO_PAD.decode(&text).unwrap()
        );
    }

    #[test]
    fn rejects_non_canonical_and_wrong_lengths() {
        let t = SessionToken::generate(&OsRandom).unwrap().to_cookie_value();
        assert!(SessionToken::parse(&t[..42]).is_none());
        assert!(SessionToken::parse(&format!("{t}A")).is_none());
        assert!(SessionToken::parse(&format!("{}=", &t[..42])).is_none());
        assert!(SessionToken::parse(&"+".repeat(43)).is_none());
        // Same bytes, but the last character's two unused bits set: a second spelling of
        // one token, which must not be accepted.
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = t.chars().last().unwrap();
        let idx = ALPHABET.find(last).unwrap();
        assert!(
            idx.is_multiple_of(4),
            "canonical encodings leave the unused bits zero"
        );
        let tweaked = format!("{}{}", &t[..42], ALPHABET.chars().nth(idx + 1).unwrap());
        assert!(SessionToken::parse(&tweaked).is_none());
    }

    #[test]
    fn debug_redacts() {
        let t = SessionToken::generate(&OsRandom).unwrap();
        assert!(!format!("{t:?}").contains(&t.to_cookie_value()));
    }
}
