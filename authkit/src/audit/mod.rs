//! The audit trail: append-only security events (SECURITY.md #40).
//!
//! Events are written by the store in the same transaction as the change they record, so a
//! password reset without its `password.reset` event (or the reverse) cannot be committed.
//! An event holds the time (UTC), the user, the client address and user agent, and a small
//! JSON object of details that never carries a password, token, code or raw session id.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::user::UserId;

/// What happened. The string forms are stable (MISSION.md contract details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditEventType {
    /// A full session was issued (after the second factor, if any).
    LoginSucceeded,
    /// A sign-in was refused (wrong password, unknown account, locked account).
    LoginFailed,
    /// The user signed out.
    Logout,
    /// A session was revoked (one, or every other one).
    SessionRevoked,
    /// The user changed the password.
    PasswordChanged,
    /// The password was set through a reset link.
    PasswordReset,
    /// The address was proven through a verification link.
    EmailVerified,
    /// Repeated failures locked the account (for clients without a device cookie).
    AccountLocked,
    /// A second factor was enrolled.
    MfaEnabled,
    /// The second factor was turned off.
    MfaDisabled,
    /// A second factor was accepted.
    MfaSucceeded,
    /// A second factor was refused.
    MfaFailed,
    /// A TOTP code was presented again within its window.
    TotpReuseRejected,
    /// A backup code was consumed.
    BackupCodeUsed,
    /// The backup codes were replaced.
    BackupCodesRegenerated,
    /// A sign-in through an OAuth provider.
    OauthLogin,
    /// An OAuth account was linked.
    OauthLinked,
    /// An OAuth account was unlinked.
    OauthUnlinked,
}

impl AuditEventType {
    /// Every type, for exhaustive tests and documentation.
    pub const ALL: [Self; 18] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::Logout,
        Self::SessionRevoked,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::EmailVerified,
        Self::AccountLocked,
        Self::MfaEnabled,
        Self::MfaDisabled,
        Self::MfaSucceeded,
        Self::MfaFailed,
        Self::TotpReuseRejected,
        Self::BackupCodeUsed,
        Self::BackupCodesRegenerated,
        Self::OauthLogin,
        Self::OauthLinked,
        Self::OauthUnlinked,
    ];

    /// The stable name, e.g. `login.succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::Logout => "logout",
            Self::SessionRevoked => "session.revoked",
            Self::PasswordChanged => "password.changed",
            Self::PasswordReset => "password.reset",
            Self::EmailVerified => "email.verified",
            Self::AccountLocked => "account.locked",
            Self::MfaEnabled => "mfa.enabled",
            Self::MfaDisabled => "mfa.disabled",
            Self::MfaSucceeded => "mfa.succeeded",
            Self::MfaFailed => "mfa.failed",
            Self::TotpReuseRejected => "totp.reuse_rejected",
            Self::BackupCodeUsed => "backup_code.used",
            Self::BackupCodesRegenerated => "backup_codes.regenerated",
            Self::OauthLogin => "oauth.login",
            Self::OauthLinked => "oauth.linked",
            Self::OauthUnlinked => "oauth.unlinked",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for AuditEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditEventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Longest user agent kept, in bytes (longer ones are cut at a character boundary).
const MAX_USER_AGENT: usize = 256;

/// Who made the request: written with every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditActor {
    /// The client address, as resolved by the server.
    pub ip: Option<String>,
    /// The `User-Agent` header, cut to 256 bytes, control characters replaced.
    pub user_agent: Option<String>,
}

impl AuditActor {
    /// An actor from raw request metadata. Control characters in the user agent are replaced
    /// so that a stored event cannot forge log lines when printed (A5 16.4.1).
    pub fn new(ip: Option<std::net::IpAddr>, user_agent: Option<&str>) -> Self {
        Self {
            ip: ip.map(|ip| ip.to_string()),
            user_agent: user_agent.map(clean_user_agent),
        }
    }

    /// The actor of background work (no request).
    pub fn system() -> Self {
        Self::default()
    }
}

fn clean_user_agent(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_USER_AGENT));
    for c in raw.chars() {
        if out.len() + c.len_utf8() > MAX_USER_AGENT {
            break;
        }
        out.push(if c.is_control() { '\u{FFFD}' } else { c });
    }
    out
}

/// An event to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// What happened.
    pub event_type: AuditEventType,
    /// Whose account it concerns (none for a failed sign-in to an unknown address).
    pub user_id: Option<UserId>,
    /// When.
    pub at: Timestamp,
    /// Who made the request.
    pub actor: AuditActor,
    /// A JSON object of non-secret details (e.g. `{"reason":"locked"}`).
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    /// An event with no details.
    pub fn new(
        event_type: AuditEventType,
        user_id: Option<UserId>,
        at: Timestamp,
        actor: AuditActor,
    ) -> Self {
        Self {
            event_type,
            user_id,
            at,
            actor,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Adds details (a JSON object).
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Increasing id (the pagination cursor).
    pub id: i64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: AuditEventType,
    /// Whose account it concerns.
    pub user_id: Option<UserId>,
    /// When (Unix seconds, UTC).
    pub at: Timestamp,
    /// The client address.
    pub ip: Option<String>,
    /// The user agent.
    pub user_agent: Option<String>,
    /// Non-secret details.
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for t in AuditEventType::ALL {
            assert!(seen.insert(t.as_str()));
            assert_eq!(AuditEventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(AuditEventType::parse("login.bogus"), None);
    }

    #[test]
    fn user_agents_cannot_inject_lines_and_are_bounded() {
        let actor = AuditActor::new(None, Some("curl/8\r\nlogin.succeeded user=admin"));
        let ua = actor.user_agent.unwrap();
        assert!(!ua.contains('\n') && !ua.contains('\r'));
        let long = "é".repeat(400);
        let ua = AuditActor::new(None, Some(&long)).user_agent.unwrap();
        assert!(ua.len() <= MAX_USER_AGENT);
        assert!(ua.chars().all(|c| c == 'é'));
    }
}
