//! The random values of one sign-in: `state`, the browser binding, the PKCE verifier and the
//! nonce. Only hashes of the first two are stored; the last two are stored sealed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::Sealer;
use crate::rng::{RandomError, RandomSource, random_array};

/// 256 bits, as base64url: 43 characters.
const RANDOM_TEXT_LEN: usize = 43;

fn random_text(rng: &dyn RandomSource) -> Result<Zeroizing<String>, RandomError> {
    let bytes = Zeroizing::new(random_array::<32>(rng)?);
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

fn well_formed(text: &str) -> bool {
    text.len() == RANDOM_TEXT_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! random_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub(crate) struct $name(Zeroizing<String>);

        impl $name {
            pub(crate) fn generate(rng: &dyn RandomSource) -> Result<Self, RandomError> {
                random_text(rng).map(Self)
            }

            /// A presented value; `None` unless it has the shape of one we made.
            pub(crate) fn parse(text: &str) -> Option<Self> {
                well_formed(text).then(|| Self(Zeroizing::new(text.to_owned())))
            }

            pub(crate) fn as_str(&self) -> &str {
                &self.0
            }

            /// What the store keeps.
            pub(crate) fn hash(&self) -> [u8; 32] {
                Sha256::digest(self.0.as_bytes()).into()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

random_value!(
    /// The `state` sent to the provider (256 bits).
    StateToken
);
random_value!(
    /// The value in the transaction cookie that ties a state to one browser (256 bits).
    BrowserBinding
);

/// The PKCE verifier (43 characters, 256 bits: RFC 7636 §4.1) and the OIDC nonce.
pub(crate) struct FlowSecrets {
    pub(crate) pkce_verifier: Zeroizing<String>,
    pub(crate) nonce: Zeroizing<String>,
}

impl std::fmt::Debug for FlowSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSecrets([REDACTED])")
    }
}

const AAD: &[u8] = b"authkit oauth transaction\0";

impl FlowSecrets {
    pub(crate) fn generate(rng: &dyn RandomSource) -> Result<Self, RandomError> {
        Ok(Self {
            pkce_verifier: random_text(rng)?,
            nonce: random_text(rng)?,
        })
    }

    /// Sealed for the transaction with this state hash (a row copied to another state does
    /// not open).
    pub(crate) fn seal(
        &self,
        sealer: &Sealer,
        state_hash: &[u8; 32],
        rng: &dyn RandomSource,
    ) -> Result<String, crate::crypto::CryptoError> {
        let plain = Zeroizing::new(format!("{}.{}", *self.pkce_verifier, *self.nonce));
        sealer.seal(plain.as_bytes(), &aad(state_hash), rng)
    }

    pub(crate) fn open(sealer: &Sealer, sealed: &str, state_hash: &[u8; 32]) -> Option<Self> {
        let plain = sealer.open(sealed, &aad(state_hash)).ok()?;
        let text = std::str::from_utf8(&plain).ok()?;
        let (pkce, nonce) = text.split_once('.')?;
        (well_formed(pkce) && well_formed(nonce)).then(|| Self {
            pkce_verifier: Zeroizing::new(pkce.to_owned()),
            nonce: Zeroizing::new(nonce.to_owned()),
        })
    }
}

fn aad(state_hash: &[u8; 32]) -> Vec<u8> {
    let mut aad = AAD.to_vec();
    aad.extend_from_slice(state_hash);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{OsRandom, SeededRandom};
    use crate::secret::KeyRing;

    #[test]
    fn values_are_256_bit_base64url_and_distinct() {
        let a = StateToken::generate(&OsRandom).unwrap();
        let b = StateToken::generate(&OsRandom).unwrap();
        assert_eq!(a.as_str().len(), 43);
        assert_ne!(a.as_str(), b.as_str());
        assert!(StateToken::parse(a.as_str()).is_some());
        assert!(StateToken::parse("short").is_none());
        assert!(StateToken::parse(&format!("{}=", &a.as_str()[..42])).is_none());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_appendix_b() {
        let verifier =
            oauth2::PkceCodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        let challenge = oauth2::PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        assert_eq!(
            challenge.as_str(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(challenge.method().as_str(), "S256");
    }

    #[test]
    fn secrets_open_only_for_their_state() {
        let ring = KeyRing::parse("k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
        let sealer = Sealer::new(&ring);
        let rng = SeededRandom::new(7);
        let secrets = FlowSecrets::generate(&rng).unwrap();
        let sealed = secrets.seal(&sealer, &[1; 32], &rng).unwrap();
        assert!(!sealed.contains(secrets.nonce.as_str()));
        let opened = FlowSecrets::open(&sealer, &sealed, &[1; 32]).unwrap();
        assert_eq!(*opened.pkce_verifier, *secrets.pkce_verifier);
        assert_eq!(*opened.nonce, *secrets.nonce);
        assert!(FlowSecrets::open(&sealer, &sealed, &[2; 32]).is_none());
    }
}
