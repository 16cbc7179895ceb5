//! What a session is, as stored.

use std::fmt;

use serde::Serialize;

use super::token::SessionIdHash;
use crate::clock::Timestamp;
use crate::user::UserId;

/// Authenticator assurance level (NIST SP 800-63B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aal {
    /// One factor (a password, or an OAuth sign-in).
    Aal1,
    /// Two factors.
    Aal2,
}

impl Aal {
    /// `"aal1"` or `"aal2"`, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }

    pub(crate) fn as_i64(self) -> i64 {
        match self {
            Self::Aal1 => 1,
            Self::Aal2 => 2,
        }
    }

    pub(crate) fn from_i64(v: i64) -> Option<Self> {
        match v {
            1 => Some(Self::Aal1),
            2 => Some(Self::Aal2),
            _ => None,
        }
    }
}

/// Whether a session is fully authenticated or still waits for its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Password done, second factor missing: accepted by no protected route.
    Pending,
    /// Fully authenticated.
    Full,
}

impl SessionKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Full => "full",
        }
    }

    pub(crate) fn parse(v: &str) -> Option<Self> {
        match v {
            "pending" => Some(Self::Pending),
            "full" => Some(Self::Full),
            _ => None,
        }
    }
}

/// A session as stored: keyed by the hash of its token, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the cookie token.
    pub id_hash: SessionIdHash,
    /// Public handle for listing and revoking (not the token, not derived from it).
    pub handle: String,
    /// The session's user.
    pub user_id: UserId,
    /// Pending or full.
    pub kind: SessionKind,
    /// Assurance level.
    pub aal: Aal,
    /// When the session was created.
    pub created_at: Timestamp,
    /// Last request seen (persisted at a coarse interval; see `SessionConfig::touch_interval`).
    pub last_seen_at: Timestamp,
    /// Last time the user proved a factor (login, re-authentication, second factor).
    pub authenticated_at: Timestamp,
    /// Last time the user proved the password in this session (`None`: never, e.g. a sign-up
    /// finished by an e-mail link). Changing MFA needs a recent password proof.
    pub password_verified_at: Option<Timestamp>,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    /// Client address at creation.
    pub ip: Option<String>,
    /// User agent at creation (truncated).
    pub user_agent: Option<String>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id_hash", &self.id_hash)
            .field("handle", &self.handle)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("aal", &self.aal)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
