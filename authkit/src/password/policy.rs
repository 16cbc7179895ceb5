//! NIST SP 800-63B password policy: length in code points, no composition rules, and a
//! blocklist of common passwords (SECURITY.md #16, #17).

use std::collections::HashSet;

use super::common;
use crate::user::Email;

/// What a new password must satisfy.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Fewest code points (default 8; NIST's floor when MFA is available).
    pub min_chars: usize,
    /// Most code points (default 128). Longer input is refused, never truncated.
    pub max_chars: usize,
    /// Refuse passwords on, or trivially derived from, the shipped common-password list.
    pub reject_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 8,
            max_chars: 128,
            reject_common: true,
        }
    }
}

/// Why a new password was refused. The `reason` is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Fewer code points than the minimum.
    #[error("the password must have at least {min} characters")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// More code points than the maximum.
    #[error("the password must have at most {max} characters")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// On the common-password list, or a listed password with digits or symbols added.
    #[error("the password is too common: it appears in lists of breached passwords")]
    Common,
    /// Made of one or two repeated characters.
    #[error("the password is too repetitive")]
    Repetitive,
    /// Contains the account's e-mail address or its name part.
    #[error("the password must not contain your e-mail address")]
    ContainsEmail,
}

impl PolicyViolation {
    /// A stable machine-readable reason.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::TooLong { .. } => "too_long",
            Self::Common => "common",
            Self::Repetitive => "repetitive",
            Self::ContainsEmail => "contains_email",
        }
    }
}

impl PasswordPolicy {
    /// Only the length bounds: what a login checks before hashing (so that a 1 MB "password"
    /// is refused with 400 instead of being hashed).
    pub fn check_length(&self, password: &str) -> Result<(), PolicyViolation> {
        // Count at most max+1 code points: never walk a huge input to the end.
        let n = password
            .chars()
            .take(self.max_chars.saturating_add(1))
            .count();
        if n > self.max_chars {
            return Err(PolicyViolation::TooLong {
                max: self.max_chars,
            });
        }
        if n < self.min_chars {
            return Err(PolicyViolation::TooShort {
                min: self.min_chars,
            });
        }
        Ok(())
    }

    /// Every rule, for a new password (registration, change, reset).
    pub fn check(&self, password: &str, email: Option<&Email>) -> Result<(), PolicyViolation> {
        self.check_length(password)?;
        let lowered = password.to_lowercase();
        if lowered.chars().collect::<HashSet<char>>().len() <= 2 {
            return Err(PolicyViolation::Repetitive);
        }
        if let Some(email) = email {
            let address = email.as_str();
            let name = address.split('@').next().unwrap_or_default();
            if lowered.contains(address) || (name.chars().count() >= 4 && lowered.contains(name)) {
                return Err(PolicyViolation::ContainsEmail);
            }
        }
        if self.reject_common {
            if common::contains(&lowered) {
                return Err(PolicyViolation::Common);
            }
            // "password123456", "dragon1987!": a listed password with only digits or
            // punctuation around it is as guessable as the listed one.
            let core = lowered.trim_matches(|c: char| !c.is_alphabetic());
            if core.len() != lowered.len() && core.chars().count() >= 4 && common::contains(core) {
                return Err(PolicyViolation::Common);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy::default()
    }

    // SECURITY.md #16
    #[test]
    fn length_is_counted_in_code_points_and_never_truncated() {
        assert_eq!(
            policy().check_length("short12"),
            Err(PolicyViolation::TooShort { min: 8 })
        );
        // 8 code points, 24 bytes: accepted.
        assert_eq!(policy().check_length("ééééé€€€"), Ok(()));
        let sixty_four: String = "correct horse battery staple "
            .repeat(3)
            .chars()
            .take(64)
            .collect();
        assert_eq!(policy().check(&sixty_four, None), Ok(()));
        let long = "x".repeat(129);
        assert_eq!(
            policy().check_length(&long),
            Err(PolicyViolation::TooLong { max: 128 })
        );
        assert_eq!(policy().check_length(&"y".repeat(128)), Ok(()));
    }

    // SECURITY.md #17
    #[test]
    fn refuses_common_passwords_with_a_reason() {
        assert!(
            common::len() >= 10_000,
            "the shipped list must have at least 10 000 entries"
        );
        for pw in [
            "password123456",
            "iloveyou",
            "Password1",
            "football!!",
            "12345678",
            "qwertyuiop",
        ] {
            let err = policy().check(pw, None).unwrap_err();
            assert_eq!(err, PolicyViolation::Common, "{pw}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn no_composition_rules() {
        for pw in [
            "correct horse battery staple",
            "zebra umbrella quasar",
            "ünïcödé-pässwörd",
        ] {
            assert_eq!(policy().check(pw, None), Ok(()), "{pw}");
        }
    }

    #[test]
    fn refuses_repetition_and_the_email() {
        assert_eq!(
            policy().check("aaaaaaaaaa", None),
            Err(PolicyViolation::Repetitive)
        );
        assert_eq!(
            policy().check("abababababab", None),
            Err(PolicyViolation::Repetitive)
        );
        let email = Email::parse("zanzibar@example.com").unwrap();
        assert_eq!(
            policy().check("my-zanzibar-secret", Some(&email)),
            Err(PolicyViolation::ContainsEmail)
        );
    }
}
