//! Request and response bodies of the auth API (the contract in MISSION.md §3).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::Timestamp;
use crate::session::{Aal, AuthenticatedSession, SessionRecord};
use crate::user::UserRecord;

/// `{email, password}` for `register` and `login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct Credentials {
    /// E-mail address (a single string; arrays and objects are refused).
    pub email: String,
    /// Password, 8–128 characters.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// `{password}` or `{code}` for `reauthenticate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "correct horse battery staple"}))]
pub struct Reauthenticate {
    /// The account password.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    /// A current second-factor code (once MFA is enrolled).
    #[schema(value_type = Option<String>)]
    pub code: Option<SecretString>,
}

/// `{current_password, new_password}` for `password/change`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password in use now.
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// The new password (password policy applies).
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// `{email}` for `password/forgot`. A single string: an array or object is refused
/// (GitLab CVE-2023-7028), as are extra fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct EmailOnly {
    /// The account's e-mail address.
    pub email: String,
}

/// `{email?}` for `email/resend`: the address is needed only without a session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendBody {
    /// The address of a pending sign-up (ignored when signed in).
    #[serde(default)]
    pub email: Option<String>,
}

/// `{token}` for `email/verify`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The token from the mailed link (43 base64url characters).
    pub token: String,
}

/// `{token, new_password}` for `password/reset`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The token from the mailed link.
    pub token: String,
    /// The new password (password policy applies).
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// `{status}`: `verification_sent` (verify-first `register`) or `accepted` (`password/forgot`,
/// `email/resend`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "accepted"}))]
pub struct StatusView {
    /// What happened, without saying whether an account exists.
    pub status: String,
}

/// Query of `GET /audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Events per page, 1–100 (default 50).
    pub limit: Option<u32>,
}

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// The event's id.
    pub id: String,
    /// e.g. `login.succeeded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Client address.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Non-secret details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<crate::audit::AuditEvent> for AuditEventView {
    fn from(e: crate::audit::AuditEvent) -> Self {
        Self {
            id: e.id.to_string(),
            event_type: e.event_type.as_str().to_owned(),
            at: e.at.to_rfc3339(),
            ip: e.ip,
            user_agent: e.user_agent,
            details: e.details,
        }
    }
}

/// `{events, next_cursor}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for older events; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Stable id (UUID).
    pub id: String,
    /// Normalised e-mail address.
    pub email: String,
    /// Whether the address is verified.
    pub email_verified: bool,
    /// Whether a second factor is enrolled.
    pub mfa_enabled: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.as_str().to_owned(),
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            created_at: u.created_at.to_rfc3339(),
        }
    }
}

/// A session. `id` is a public handle, never the cookie value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Public handle (for `DELETE /sessions/{id}`).
    pub id: String,
    /// `aal1` or `aal2`.
    pub aal: Aal,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub last_seen_at: String,
    /// When a factor was last proved, RFC 3339 UTC.
    pub authenticated_at: String,
    /// Absolute expiry, RFC 3339 UTC.
    pub expires_at: String,
    /// Expiry if unused from now on, RFC 3339 UTC.
    pub idle_expires_at: String,
    /// Whether this is the session of the request.
    pub current: bool,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// User agent at sign-in.
    pub user_agent: Option<String>,
}

impl SessionView {
    pub(crate) fn current(s: &AuthenticatedSession) -> Self {
        Self {
            id: s.handle().to_owned(),
            aal: s.aal(),
            created_at: s.created_at().to_rfc3339(),
            last_seen_at: s.last_seen_at().to_rfc3339(),
            authenticated_at: s.authenticated_at().to_rfc3339(),
            expires_at: s.expires_at().to_rfc3339(),
            idle_expires_at: s.idle_expires_at().to_rfc3339(),
            current: true,
            ip: s.ip().map(str::to_owned),
            user_agent: s.user_agent().map(str::to_owned),
        }
    }

    pub(crate) fn stored(s: &SessionRecord, idle_expires_at: Timestamp, current: bool) -> Self {
        Self {
            id: s.handle.clone(),
            aal: s.aal,
            created_at: s.created_at.to_rfc3339(),
            last_seen_at: s.last_seen_at.to_rfc3339(),
            authenticated_at: s.authenticated_at.to_rfc3339(),
            expires_at: s.expires_at.to_rfc3339(),
            idle_expires_at: idle_expires_at.to_rfc3339(),
            current,
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
        }
    }
}

/// `{user, session}`: answer of login, register, `GET /session` and re-authentication.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSession {
    /// The signed-in user.
    pub user: UserView,
    /// The current session.
    pub session: SessionView,
}

/// Answer of a login that needs a second factor.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mfa_required": true, "methods": ["totp", "backup_code"]}))]
pub struct MfaRequired {
    /// Always `true`.
    pub mfa_required: bool,
    /// Factors the user can complete the login with.
    pub methods: Vec<String>,
}

/// `{code}` or `{backup_code}`: the second factor of `mfa/verify`, `mfa/disable` and
/// `mfa/backup-codes` (and `{code}` of `reauthenticate`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "123456"}))]
pub struct SecondFactor {
    /// A current code from the authenticator app.
    #[schema(value_type = Option<String>)]
    pub code: Option<SecretString>,
    /// One of the backup codes (works once; spaces and hyphens are ignored).
    #[schema(value_type = Option<String>)]
    pub backup_code: Option<SecretString>,
    /// Also end every other session of the user: when `verify` confirms an enrolment, and
    /// for `disable` and `backup-codes` (ignored when `verify` completes a sign-in).
    #[serde(default)]
    pub revoke_other_sessions: bool,
}

/// `{secret, otpauth_uri, qr_svg, qr_png}`: answer of `mfa/enable`, shown once.
#[derive(Serialize, ToSchema)]
pub struct MfaEnrolment {
    /// The TOTP secret in base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/…`: what the QR code holds.
    pub otpauth_uri: String,
    /// The QR code as SVG markup.
    pub qr_svg: String,
    /// The QR code as a `data:image/png;base64,…` URI.
    pub qr_png: String,
}

/// `{backup_codes}`: answer of enrolment's `mfa/verify` and of `mfa/backup-codes`, shown once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"backup_codes": ["7k2m-q9vd-3xfp-h8tb-c4wn-r6ja"]}))]
pub struct BackupCodesView {
    /// Ten single-use codes.
    pub backup_codes: Vec<String>,
}

/// Answer of `mfa/verify`: `{backup_codes}` when it confirmed an enrolment, `{user, session}`
/// when it completed a sign-in or stepped a session up (with a new session cookie).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MfaVerified {
    /// Enrolment confirmed: the backup codes, shown once.
    Enrolled(BackupCodesView),
    /// Sign-in completed or session stepped up to `aal2`.
    SignedIn(Box<UserSession>),
}

/// `{enabled, backup_codes_remaining}`: answer of `mfa/status`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"enabled": true, "backup_codes_remaining": 9}))]
pub struct MfaStatus {
    /// Whether MFA is on.
    pub enabled: bool,
    /// Unused backup codes.
    pub backup_codes_remaining: u32,
}

/// `{sessions: [Session]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// The user's live sessions, newest first.
    pub sessions: Vec<SessionView>,
}

/// `{token}` for clients that send no browser headers.
#[derive(Serialize, ToSchema)]
pub struct CsrfTokenView {
    /// Send as `X-CSRF-Token` on unsafe requests.
    pub token: String,
}

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    )*};
}
redacted_debug!(
    Credentials,
    Reauthenticate,
    ChangePassword,
    CsrfTokenView,
    TokenBody,
    ResetPassword,
    SecondFactor,
    MfaEnrolment,
    BackupCodesView,
    MfaVerified
);
