//! Users and e-mail addresses.

use std::fmt;

use serde::Serialize;
use unicode_normalization::UnicodeNormalization as _;

use crate::clock::Timestamp;
use crate::rng::{RandomError, RandomSource, random_array};

/// A user's id: a random UUID (v4), public and stable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UserId(String);

impl UserId {
    /// A new random id.
    pub fn generate(rng: &dyn RandomSource) -> Result<Self, RandomError> {
        let bytes: [u8; 16] = random_array(rng)?;
        Ok(Self(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        ))
    }

    /// An id read back from storage.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest accepted e-mail address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Why an e-mail address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Empty, too long, or not `local@domain`.
    #[error("not a valid e-mail address")]
    Invalid,
}

/// A normalised e-mail address: the one form stored, compared and rate limited.
///
/// Normalisation happens once, at the edge: surrounding white space is trimmed, the text is
/// NFKC-normalised (so full-width and other compatibility variants fold to one form) and lower
/// cased. Addresses with white space, control characters or more than one `@` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Email(String);

impl Email {
    /// Validates and normalises `raw`.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        // NFKC, then lower case, then NFKC again until nothing changes: lower-casing can
        // produce text that NFKC reorders or composes (a letter followed by combining marks),
        // and the stored form must parse to itself.
        let mut folded: String = raw.trim().nfkc().collect();
        let mut settled = false;
        for _ in 0..4 {
            let next: String = folded.to_lowercase().nfkc().collect();
            if next == folded {
                settled = true;
                break;
            }
            folded = next;
        }
        if !settled {
            return Err(EmailError::Invalid);
        }
        if folded.is_empty() || folded.len() > MAX_EMAIL_LEN {
            return Err(EmailError::Invalid);
        }
        if folded.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = folded.split_once('@').ok_or(EmailError::Invalid)?;
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains(['(', ')', '<', '>', ',', ';', ':', '\\', '"', '[', ']']);
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(EmailError::Invalid);
        }
        Ok(Self(folded))
    }

    /// An address read back from storage (already normalised).
    pub fn from_stored(email: String) -> Self {
        Self(email)
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user as stored.
#[derive(Clone)]
pub struct UserRecord {
    /// The user's id.
    pub id: UserId,
    /// The normalised e-mail address.
    pub email: Email,
    /// Whether the address has been verified.
    pub email_verified: bool,
    /// The PHC string of the password hash; `None` for accounts without a password.
    pub password_hash: Option<String>,
    /// Whether a second factor is enrolled.
    pub mfa_enabled: bool,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When the account last changed.
    pub updated_at: Timestamp,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email_verified", &self.email_verified)
            .field("has_password", &self.password_hash.is_some())
            .field("mfa_enabled", &self.mfa_enabled)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_width_and_space() {
        let a = Email::parse("  Alice@Example.COM ").unwrap();
        let b = Email::parse("ａｌｉｃｅ@example.com").unwrap();
        assert_eq!(a.as_str(), "alice@example.com");
        assert_eq!(a, b);
    }

    #[test]
    fn normalisation_is_idempotent_with_combining_marks() {
        for raw in ["aH\u{331}@example.com", "a\u{130}\u{316}@example.com"] {
            let once = Email::parse(raw).unwrap();
            assert_eq!(Email::parse(once.as_str()).unwrap(), once, "{raw:?}");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@@b.c",
            "a@b@c.d",
            "a b@c.d",
            "a@.c",
            "a@c.",
            "a@c..d",
            "a\u{0}@c.d",
            "a@[1.2.3.4]",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn user_ids_are_uuid_v4() {
        let id = UserId::generate(&crate::rng::OsRandom).unwrap();
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }
}
