//! Account lifecycle settings and building blocks: registration mode, single-use tokens for
//! e-mail verification and password reset, and the outbox through which mails leave.
//!
//! Tokens are 256 random bits sent by mail (base64url, in the link's fragment so that they
//! never reach a server log or a `Referer`); the store keeps only their SHA-256, and redeeming
//! one deletes it in the same transaction as the change it authorises.

mod outbox;

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

pub use outbox::QueuedOutbox;

use crate::mail::MailMessage;
use crate::rng::{RandomError, RandomSource};

/// How `POST /register` works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationMode {
    /// 202 with the same body whether or not the address is taken, no cookie; the
    /// verification link creates the account and starts a session. The owner of a taken
    /// address gets a notice instead. Needs mail delivery. The default.
    #[default]
    VerifyFirst,
    /// 201 with a session at once, 409 `account_exists` when taken: reveals which addresses
    /// have accounts (a documented trade-off for apps without mail).
    Instant,
}

impl RegistrationMode {
    /// The configuration name (`verify-first`, `instant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyFirst => "verify-first",
            Self::Instant => "instant",
        }
    }
}

/// Account lifecycle settings.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// How registration works.
    pub registration: RegistrationMode,
    /// How long a verification (or verify-first sign-up) link works. Default 24 h.
    pub verification_ttl: Duration,
    /// How long a reset link works. Default 30 min.
    pub reset_ttl: Duration,
    /// Mail the user when the password changes or is reset. Default on.
    pub notify_password_changed: bool,
    /// Mail the user on a sign-in from a browser without this account's device cookie.
    /// Default on.
    pub notify_new_sign_in: bool,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            registration: RegistrationMode::VerifyFirst,
            verification_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(30 * 60),
            notify_password_changed: true,
            notify_new_sign_in: true,
        }
    }
}

/// Why a mail could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("could not queue the mail: {0}")]
pub struct OutboxError(pub String);

/// Where the endpoints put mails: a durable queue delivered by a background worker, so that
/// no request waits for SMTP. [`crate::jobs::JobQueue`] is the implementation authkit ships.
#[async_trait]
pub trait MailOutbox: Send + Sync + std::fmt::Debug {
    /// Queues `message` durably; returns once it is stored.
    async fn enqueue(&self, message: MailMessage) -> Result<(), OutboxError>;
}

/// Length of a mailed token in bytes (256 bits).
const TOKEN_BYTES: usize = 32;

/// A single-use token as mailed: base64url text, and the SHA-256 the store keys it by.
pub(crate) struct OneTimeToken {
    text: Zeroizing<String>,
    hash: [u8; 32],
}

impl OneTimeToken {
    /// A fresh token from the random source.
    pub(crate) fn generate(rng: &dyn RandomSource) -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        rng.try_fill(bytes.as_mut())?;
        Ok(Self {
            text: Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())),
            hash: Sha256::digest(bytes.as_ref()).into(),
        })
    }

    /// The hash of a token presented by a client, if it is well-formed (exactly 43 canonical
    /// base64url characters). Malformed input is refused before any lookup.
    pub(crate) fn hash_of(presented: &str) -> Option<[u8; 32]> {
        if presented.len() != 43 {
            return None;
        }
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(presented).ok()?);
        if bytes.len() != TOKEN_BYTES || URL_SAFE_NO_PAD.encode(bytes.as_slice()) != presented {
            return None;
        }
        Some(Sha256::digest(bytes.as_slice()).into())
    }

    /// The text for the link.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// What the store keeps.
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

impl std::fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneTimeToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::OsRandom;

    #[test]
    fn tokens_round_trip_to_their_hash() {
        let t = OneTimeToken::generate(&OsRandom).unwrap();
        assert_eq!(t.text().len(), 43);
        assert_eq!(OneTimeToken::hash_of(t.text()), Some(t.hash()));
        assert!(!format!("{t:?}").contains(t.text()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let t = OneTimeToken::generate(&OsRandom).unwrap();
        for bad in [
            "",
            "short",
            &format!("{}=", t.text()),
            &t.text().replace(|c: char| c.is_ascii_alphanumeric(), "+"),
            &"é".repeat(22),
        ] {
            assert_eq!(OneTimeToken::hash_of(bad), None, "{bad}");
        }
        // Non-canonical final character (unused low bits set) is refused.
        let mut chars: Vec<char> = t.text().chars().collect();
        let last = chars.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        let other = alphabet.chars().nth(idx ^ 1).unwrap();
        let tweaked: String = chars.into_iter().chain([other]).collect();
        assert_eq!(OneTimeToken::hash_of(&tweaked), None);
    }
}
