//! Mail delivery: the [`Mailer`] trait, an SMTP implementation ([`SmtpMailer`]), a development
//! mailbox that writes `.eml` files ([`DevMailbox`]) and the message [`templates`].
//!
//! Sending never happens on the request path: handlers queue a [`MailMessage`] durably and a
//! background worker calls [`Mailer::send`], retrying on [`MailError::Transient`] and giving up
//! on [`MailError::Permanent`]. That is why a message is serialisable, and why it is careful
//! about its body: verification and reset mails carry single-use links, so the body is never
//! printed by `Debug`, never part of an error and wiped from memory when the message is dropped.

mod build;
mod dev_mailbox;
mod smtp;
pub mod templates;

use std::fmt;

use zeroize::Zeroize as _;

pub use dev_mailbox::DevMailbox;
pub use smtp::{MailConfigError, SmtpMailer, SmtpSecurity};
pub use templates::{LinkBase, LinkBaseError, MfaChange, OAuthChange, TemplateError, Templates};

/// One e-mail to send. Serialisable because it is queued; Debug shows only kind and recipient
/// domain, never the body (it carries single-use links).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct MailMessage {
    /// The recipient's address (`local@domain`, no display name).
    pub to: String,
    /// The subject line: one line of text, no control characters.
    pub subject: String,
    /// The plain-text body. Secret: it may carry a single-use link.
    pub text: String,
    /// What the message is about (for logs, metrics and file names).
    pub kind: MailKind,
}

impl MailMessage {
    /// The part of the recipient address after the last `@` (what logs may show).
    pub fn recipient_domain(&self) -> &str {
        self.to.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

impl fmt::Debug for MailMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailMessage")
            .field("kind", &self.kind)
            .field("recipient_domain", &self.recipient_domain())
            .finish_non_exhaustive()
    }
}

/// Wipes the body (it may hold a single-use token). Best effort: copies made by serialisation
/// or by the transport are outside this value's reach.
impl Drop for MailMessage {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

/// What a [`MailMessage`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    /// An e-mail verification link.
    Verification,
    /// A password reset link.
    PasswordReset,
    /// Someone tried to register with an address that already has an account.
    AccountExists,
    /// Security notice: the password was changed.
    PasswordChanged,
    /// Security notice: a sign-in from a device not seen before.
    NewSignIn,
    /// Security notice: two-factor authentication was turned on or off, backup codes were
    /// regenerated, or a used code was tried again.
    MfaChanged,
    /// A provider account was linked to or unlinked from the account.
    OauthChanged,
}

impl MailKind {
    /// The stable snake_case name (the same as the serialised form).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::PasswordReset => "password_reset",
            Self::AccountExists => "account_exists",
            Self::PasswordChanged => "password_changed",
            Self::NewSignIn => "new_sign_in",
            Self::MfaChanged => "mfa_changed",
            Self::OauthChanged => "oauth_changed",
        }
    }
}

impl fmt::Display for MailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that delivers a [`MailMessage`].
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Delivers one message (or hands it to the next hop). Safe to retry on
    /// [`MailError::Transient`]; a retry may deliver a duplicate, never lose one.
    async fn send(&self, message: &MailMessage) -> Result<(), MailError>;
}

/// Why a message was not delivered. The text never contains the message body.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Worth retrying later: the server could not be reached, timed out, or answered 4xx.
    #[error("temporary mail failure: {0}")]
    Transient(String),
    /// Retrying will not help: the server answered 5xx (unknown mailbox, policy) or the message
    /// itself is malformed (bad address, control characters in the subject).
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

impl MailError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> MailMessage {
        MailMessage {
            to: "alice@example.com".into(),
            subject: "Verify".into(),
            text: "https://app.example/verify-email#token=SECRET".into(),
            kind: MailKind::Verification,
        }
    }

    #[test]
    fn debug_shows_kind_and_domain_only() {
        let shown = format!("{:?}", message());
        assert!(shown.contains("Verification"), "{shown}");
        assert!(shown.contains("example.com"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("Verify\""), "{shown}");
    }

    #[test]
    fn kinds_serialise_as_their_names() {
        for kind in [
            MailKind::Verification,
            MailKind::PasswordReset,
            MailKind::AccountExists,
            MailKind::PasswordChanged,
            MailKind::NewSignIn,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<MailKind>(&json).unwrap(), kind);
        }
    }

    #[test]
    fn message_round_trips_through_json() {
        let json = serde_json::to_string(&message()).unwrap();
        let back: MailMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to, "alice@example.com");
        assert_eq!(back.kind, MailKind::Verification);
        assert!(back.text.ends_with("token=SECRET"));
    }
}
