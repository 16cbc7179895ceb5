use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use http::HeaderName;
use sha2::Sha256;

use crate::secret::KeyRing;
use crate::session::SessionIdHash;
use crate::util::Swappable;

/// The request header that carries the token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

const CONTEXT: &[u8] = b"authkit-csrf-v1";

/// Issues and verifies session-bound CSRF tokens with a key ring. Clones share the ring, and
/// [`set_keys`](Self::set_keys) replaces it for all of them.
#[derive(Clone)]
pub struct CsrfTokens {
    keys: Swappable<KeyRing>,
}

impl std::fmt::Debug for CsrfTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfTokens")
            .field("keys", &*self.keys.load())
            .finish()
    }
}

impl CsrfTokens {
    /// Tokens signed with `keys` (the session key ring).
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys: Swappable::new(keys),
        }
    }

    /// Signs new tokens with `keys`' newest key from now on; tokens signed by a key no longer
    /// in `keys` stop verifying (SECURITY.md #36).
    pub fn set_keys(&self, keys: KeyRing) {
        self.keys.store(keys);
    }

    fn mac(key: &[u8], session: &SessionIdHash) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).ok()?;
        mac.update(CONTEXT);
        mac.update(session.as_bytes());
        Some(mac)
    }

    /// A token for the session stored under `session`, signed with the newest key.
    pub fn issue(&self, session: &SessionIdHash) -> Option<String> {
        let keys = self.keys.load();
        let (kid, key) = keys.current();
        let tag = Self::mac(key.expose(), session)?.finalize().into_bytes();
        Some(format!("v1.{kid}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// Whether `token` was issued for `session` by a key still in the ring (constant time).
    pub fn verify(&self, token: &str, session: &SessionIdHash) -> bool {
        if token.len() > 128 {
            return false;
        }
        let mut parts = token.split('.');
        let (Some("v1"), Some(kid), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let keys = self.keys.load();
        let (Some(key), Ok(tag)) = (keys.get(kid), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        Self::mac(key.expose(), session).is_some_and(|mac| mac.verify_slice(&tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[(&str, u8)]) -> KeyRing {
        crate::secret::test_ring(ids)
    }

    // SECURITY.md #13: a token from session A is rejected in session B.
    #[test]
    fn tokens_are_bound_to_their_session() {
        let t = CsrfTokens::new(ring(&[("k1", 1)]));
        let a = SessionIdHash::from_bytes([1; 32]);
        let b = SessionIdHash::from_bytes([2; 32]);
        let token = t.issue(&a).unwrap();
        assert!(t.verify(&token, &a));
        assert!(!t.verify(&token, &b));
        assert!(!t.verify("v1.k1.AAAA", &a));
        assert!(!t.verify("", &a));
        assert!(!t.verify(&format!("{token}."), &a));
    }

    // SECURITY.md #36: old tokens verify until the old key is retired.
    #[test]
    fn rotation_keeps_old_tokens_until_retired() {
        let old = CsrfTokens::new(ring(&[("k1", 1)]));
        let s = SessionIdHash::from_bytes([9; 32]);
        let token = old.issue(&s).unwrap();
        let rotated = CsrfTokens::new(ring(&[("k2", 2), ("k1", 1)]));
        assert!(rotated.verify(&token, &s));
        assert!(rotated.issue(&s).unwrap().starts_with("v1.k2."));
        let retired = CsrfTokens::new(ring(&[("k2", 2)]));
        assert!(!retired.verify(&token, &s));
    }
}
