//! Persistence: users and sessions behind small traits, with SQL and in-memory implementations.
//!
//! [`SqlStore`] keeps one schema for SQLite (the embedded default) and PostgreSQL, chosen by the
//! database URL, with embedded migrations. [`MemoryStore`] keeps everything in process, for
//! tests and demos. Every query is a single statement or one transaction; none loops per row.

mod memory;
mod oauth;
mod sql;

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use oauth::{LinkIntent, OAuthAccount, OAuthStore, OAuthTransaction, SealedTokens, Unlink};
pub use sql::{DatabaseKind, SqlStore, SqlStoreOptions, set_url_password};

use crate::audit::{AuditEvent, NewAuditEvent};
use crate::clock::Timestamp;
use crate::mfa::TotpAlgorithm;
use crate::ratelimit::{AttemptDecision, LockSpan, LockoutPolicy};
use crate::secret::KeyId;
use crate::session::{SessionIdHash, SessionRecord};
use crate::user::{Email, UserId, UserRecord};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. the e-mail address is taken).
    #[error("a record with the same unique key exists")]
    Conflict,
    /// The database URL is not `sqlite:` or `postgres:`.
    #[error("unsupported database URL scheme (expected sqlite: or postgres:)")]
    UnsupportedUrl,
    /// A stored value could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    /// The database failed.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database refused the credentials (PostgreSQL SQLSTATE class 28, e.g. a
    /// rotated password): the moment to read the password secret again.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Self::Database(e)
            if e.as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| code.starts_with("28")))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e.as_database_error() {
            Some(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(e),
        }
    }
}

/// A user to create.
#[derive(Clone)]
pub struct NewUser {
    /// The new user's id.
    pub id: UserId,
    /// The normalised address.
    pub email: Email,
    /// The PHC string of the password hash.
    pub password_hash: Option<String>,
    /// Whether the address is already proven (verify-first sign-up, imports).
    pub email_verified: bool,
    /// Creation time.
    pub now: Timestamp,
}

/// What a session rotation must hold to, checked in the same transaction as the write.
#[derive(Debug, Clone, Copy, Default)]
pub struct RotationGuard<'a> {
    /// The session being replaced, deleted in the same transaction.
    pub replace: Option<&'a SessionIdHash>,
    /// Fail with [`Rotation::Revoked`] if `replace` no longer exists: a re-authentication
    /// must not resurrect a session revoked while its password was being checked.
    pub require_replaced: bool,
    /// Fail with [`Rotation::CredentialsChanged`] unless the user's password hash is still
    /// this one: a sign-in checked against a password changed in the meantime must not
    /// produce a session.
    pub password_hash: Option<&'a str>,
    /// Written in the same transaction when the rotation is done (e.g. `login.succeeded`).
    pub audit: &'a [NewAuditEvent],
}

/// Outcome of [`SessionStore::rotate_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Rotation {
    /// The new session is stored (and the old one deleted).
    Done,
    /// The session to replace was already gone; nothing was written.
    Revoked,
    /// The password changed since it was verified; nothing was written.
    CredentialsChanged,
}

/// Users.
#[async_trait]
pub trait UserStore: Send + Sync + std::fmt::Debug {
    /// Creates a user; [`StoreError::Conflict`] when the address is taken.
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError>;
    /// The user with this (normalised) address.
    async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError>;
    /// The user with this id.
    async fn user_by_id(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Replaces the password hash only if it is still `expected`: the rehash at login with
    /// newer parameters must never overwrite a password changed in the meantime. Returns
    /// whether it replaced.
    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &str,
        phc: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Sessions, keyed by the hash of their token, with a per-user index.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// Stores `new` in one transaction with the checks of `guard`: the id rotation of a
    /// sign-in or re-authentication. See [`RotationGuard`] for what is checked and why.
    async fn rotate_session(
        &self,
        new: &SessionRecord,
        guard: RotationGuard<'_>,
    ) -> Result<Rotation, StoreError>;
    /// The session stored under this hash.
    async fn session(&self, id: &SessionIdHash) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity (the only column an ordinary request writes).
    async fn touch_session(&self, id: &SessionIdHash, seen: Timestamp) -> Result<(), StoreError>;
    /// Deletes one session; whether it existed. `audit` is written in the same transaction
    /// if it did.
    async fn delete_session(
        &self,
        id: &SessionIdHash,
        audit: Option<&NewAuditEvent>,
    ) -> Result<bool, StoreError>;
    /// Every session of a user, newest first.
    async fn sessions_for_user(&self, user: &UserId) -> Result<Vec<SessionRecord>, StoreError>;
    /// Deletes the user's session with this public handle; its hash if it existed. `audit`
    /// is written in the same transaction if it did.
    async fn delete_session_by_handle(
        &self,
        user: &UserId,
        handle: &str,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Option<SessionIdHash>, StoreError>;
    /// Deletes every session of the user except `keep`; the hashes deleted. `audit` is
    /// written in the same transaction if any was.
    async fn delete_user_sessions_except(
        &self,
        user: &UserId,
        keep: Option<&SessionIdHash>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Vec<SessionIdHash>, StoreError>;
    /// In one transaction: replaces the password hash if it is still `expected` (the one the
    /// request verified), deletes every session and outstanding reset token of the user, and
    /// stores `session` (the
    /// caller's session under a new id) if given. `None` when the hash changed meanwhile
    /// (nothing is written); else the hashes of the deleted sessions. `audit` is written in
    /// the same transaction.
    async fn change_password(
        &self,
        user: &UserId,
        expected: &str,
        phc: &str,
        now: Timestamp,
        session: Option<&SessionRecord>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Option<Vec<SessionIdHash>>, StoreError>;
    /// Deletes sessions whose absolute expiry has passed; how many.
    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// What a single-use account token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Finishes a `verify-first` sign-up: carries the address and the password hash; the
    /// account is created only when the link is used.
    Registration,
    /// Proves the address of an existing account.
    VerifyEmail,
    /// Sets a new password.
    ResetPassword,
}

impl TokenPurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "registration" => Some(Self::Registration),
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            _ => None,
        }
    }
}

/// A single-use token to store. Only the SHA-256 of the token is kept.
#[derive(Clone)]
pub struct NewAccountToken {
    /// SHA-256 of the token sent by mail.
    pub token_hash: [u8; 32],
    /// What it is for.
    pub purpose: TokenPurpose,
    /// The account (none for a registration).
    pub user_id: Option<UserId>,
    /// The address the link was sent to.
    pub email: Email,
    /// For a registration: the PHC string of the chosen password.
    pub password_hash: Option<String>,
    /// Issue time.
    pub created_at: Timestamp,
    /// The token is refused from this time on.
    pub expires_at: Timestamp,
}

/// A token taken out of the store by [`TokenStore::consume_token`].
#[derive(Clone)]
pub struct AccountToken {
    /// What it is for.
    pub purpose: TokenPurpose,
    /// The account (none for a registration).
    pub user_id: Option<UserId>,
    /// The address the link was sent to.
    pub email: Email,
    /// For a registration: the PHC string of the chosen password.
    pub password_hash: Option<String>,
    /// Issue time.
    pub created_at: Timestamp,
}

/// What a consumed token changes, applied in the same transaction as the consumption.
#[derive(Clone)]
pub enum TokenEffect {
    /// Registration: create this user (verified) and delete the address's other pending
    /// registrations. Fails the whole transaction with [`StoreError::Conflict`] if the address
    /// was taken meanwhile.
    CreateUser(NewUser),
    /// Mark the user's address verified.
    VerifyEmail,
    /// Set the password hash, mark the address verified (the mail proved it), delete every
    /// session and every other reset token of the user.
    ResetPassword {
        /// The new PHC string.
        password_hash: String,
    },
}

/// The result of [`TokenStore::redeem_token`].
#[derive(Debug, Clone)]
pub struct Redeemed {
    /// The token that was consumed.
    pub token: AccountToken,
    /// The user after the change.
    pub user: UserRecord,
    /// Hashes of the sessions deleted (a reset deletes them all).
    pub revoked_sessions: Vec<SessionIdHash>,
}

/// Single-use, expiring account tokens (verification, reset, pending registrations).
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Stores a token.
    async fn insert_token(&self, token: &NewAccountToken) -> Result<(), StoreError>;
    /// The unexpired token with this hash and purpose, without consuming it.
    async fn peek_token(
        &self,
        token_hash: &[u8; 32],
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<Option<AccountToken>, StoreError>;
    /// In one transaction: deletes the unexpired token with this hash and purpose, applies
    /// `effect`, and writes `audit` (its `user_id` is filled in with the affected user).
    /// `None` (nothing written) when the token is unknown, used or expired.
    async fn redeem_token(
        &self,
        token_hash: &[u8; 32],
        purpose: TokenPurpose,
        now: Timestamp,
        effect: TokenEffect,
        audit: NewAuditEvent,
    ) -> Result<Option<Redeemed>, StoreError>;
    /// Deletes tokens that expired; how many.
    async fn delete_expired_tokens(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// The audit trail. Events that record a change are written by the change's own transaction
/// (e.g. [`TokenStore::redeem_token`]); this trait writes stand-alone events and reads them.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Appends an event.
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError>;
    /// The user's events, newest first, with an id below `before` (a cursor), at most `limit`.
    async fn audit_for_user(
        &self,
        user: &UserId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Events older than `cutoff` with an id above `after`, oldest first, at most `limit`:
    /// the retention job archives them page by page.
    async fn audit_older_than(
        &self,
        cutoff: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Deletes events older than `cutoff` with an id up to `up_to` (those already archived);
    /// how many.
    async fn delete_audit_up_to(&self, cutoff: Timestamp, up_to: i64) -> Result<u64, StoreError>;
}

/// A user's TOTP authenticator as stored.
#[derive(Clone)]
pub struct TotpRecord {
    /// The secret, sealed for this user (see [`TotpSecret::seal`](crate::mfa::TotpSecret::seal)).
    pub secret: String,
    /// HMAC algorithm.
    pub algorithm: TotpAlgorithm,
    /// Code length.
    pub digits: u8,
    /// Time step in seconds.
    pub period: u64,
    /// Whether enrolment was confirmed with a first code (MFA is active only then).
    pub confirmed: bool,
    /// The last accepted time step; a code is accepted only for a strictly greater one.
    pub last_step: Option<u64>,
    /// Consecutive failed code attempts (the account's MFA lockout counter).
    pub failed_attempts: u32,
    /// When the last failed attempt began.
    pub last_failure_at: Option<Timestamp>,
    /// When enrolment began.
    pub created_at: Timestamp,
    /// When enrolment was confirmed.
    pub confirmed_at: Option<Timestamp>,
}

/// An enrolment to store (unconfirmed).
#[derive(Clone)]
pub struct NewTotp {
    /// The sealed secret.
    pub secret: String,
    /// HMAC algorithm.
    pub algorithm: TotpAlgorithm,
    /// Code length.
    pub digits: u8,
    /// Time step in seconds.
    pub period: u64,
    /// When enrolment began.
    pub created_at: Timestamp,
}

/// A backup code as stored: its peppered hash and the pepper key's id.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredBackupCode {
    /// HMAC of the code (see [`BackupCodeHasher`](crate::mfa::BackupCodeHasher)).
    pub hash: [u8; 32],
    /// The pepper key it was made with.
    pub key_id: KeyId,
}

/// Second factors: the TOTP authenticator and backup codes. Every method is one transaction;
/// the conditional updates make "each code once" hold across requests and instances.
#[async_trait]
pub trait MfaStore: Send + Sync + std::fmt::Debug {
    /// The user's authenticator, confirmed or not.
    async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError>;
    /// Stores an unconfirmed enrolment, replacing an earlier unconfirmed one. `false` (nothing
    /// written) when the user already has a confirmed authenticator.
    async fn begin_totp_enrolment(&self, user: &UserId, new: &NewTotp) -> Result<bool, StoreError>;
    /// Confirms the enrolment whose sealed secret is still `secret` (a second `enable` may have
    /// replaced it meanwhile): marks it confirmed with `step` as the last accepted step, turns
    /// `mfa_enabled` on, replaces the backup codes with `codes` and writes `audit`. `false`
    /// (nothing written) when there is no such unconfirmed enrolment.
    async fn confirm_totp(
        &self,
        user: &UserId,
        secret: &str,
        step: u64,
        codes: &[StoredBackupCode],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Records `step` as the last accepted one of the confirmed authenticator whose sealed
    /// secret is still `secret`, if it is greater than the stored one (one conditional update),
    /// and resets the failure counter: `true` for exactly one of any number of concurrent
    /// callers.
    async fn accept_totp_step(
        &self,
        user: &UserId,
        secret: &str,
        step: u64,
    ) -> Result<bool, StoreError>;
    /// Counts one code attempt as a failure *before* it is checked, unless the user's MFA is
    /// locked under `policy` (see [`RateLimiter::begin_attempt`](crate::ratelimit::RateLimiter::begin_attempt)
    /// for why the count comes first). Kept on the authenticator's row, so every instance
    /// shares it and a restart keeps it. Without an authenticator, nothing is counted and the
    /// answer is `Proceed` (the check then fails on its own).
    async fn begin_mfa_attempt(
        &self,
        user: &UserId,
        policy: &LockoutPolicy,
        now: Timestamp,
    ) -> Result<AttemptDecision, StoreError>;
    /// Forgets the user's failed MFA attempts (after a password reset).
    async fn clear_mfa_failures(&self, user: &UserId) -> Result<(), StoreError>;
    /// Replaces the sealed secret `old` with `new` (the same secret sealed under the newest
    /// key); `false` when the stored one is no longer `old`.
    async fn reseal_totp(&self, user: &UserId, old: &str, new: &str) -> Result<bool, StoreError>;
    /// Up to `limit` confirmed TOTP secrets whose envelope does not start with `prefix`
    /// (`v1.<newest key id>.`), of users after `after` in id order: the re-sealing job's pages
    /// after a key rotation. Returns `(user, sealed secret)`. Pending enrolments are left out:
    /// their confirmation matches the sealed text, and they expire within minutes.
    async fn totp_secrets_not_under(
        &self,
        prefix: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<(UserId, String)>, StoreError>;
    /// Deletes the user's backup code whose hash is one of `candidates` (the code hashed under
    /// each pepper key), resets the failure counter and writes `audit` with it: `true` for
    /// exactly one of any number of concurrent callers with the same code.
    async fn consume_backup_code(
        &self,
        user: &UserId,
        candidates: &[[u8; 32]],
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Replaces every backup code of a user with confirmed MFA by `codes` and writes `audit`;
    /// `false` (nothing written) when MFA is not on.
    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[StoredBackupCode],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// How many unused backup codes the user has.
    async fn backup_codes_remaining(&self, user: &UserId) -> Result<u32, StoreError>;
    /// Turns MFA off: deletes the authenticator and the backup codes, clears `mfa_enabled` and
    /// writes `audit`. `false` (nothing written) when MFA was not on.
    async fn disable_mfa(
        &self,
        user: &UserId,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
}

/// Everything authkit persists.
#[async_trait]
pub trait Store:
    UserStore + SessionStore + TokenStore + AuditStore + MfaStore + OAuthStore
{
    /// Checks that the store answers (readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;
}

// Password hashes and token hashes stay out of `Debug` output (and so out of logs and panic
// messages): they are not the secrets themselves, but an offline guessing attack starts there.
impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("has_password", &self.password_hash.is_some())
            .field("email_verified", &self.email_verified)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewAccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccountToken")
            .field("purpose", &self.purpose)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountToken")
            .field("purpose", &self.purpose)
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TokenEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CreateUser(new) => f.debug_tuple("CreateUser").field(new).finish(),
            Self::VerifyEmail => f.write_str("VerifyEmail"),
            Self::ResetPassword { .. } => f.write_str("ResetPassword { .. }"),
        }
    }
}

/// Whether `failures` consecutive failures, the last at `last_failure`, lock at `now`; and if
/// not, what counting one more means. Shared by the SQL and memory stores.
pub(crate) fn mfa_attempt_decision(
    policy: &LockoutPolicy,
    failures: u32,
    last_failure: Option<Timestamp>,
    now: Timestamp,
) -> AttemptDecision {
    let since = last_failure.map_or(u64::MAX, |at| now.seconds_since(at));
    match policy.lock_after(failures) {
        LockSpan::UntilReset => return AttemptDecision::Locked { retry_after: None },
        LockSpan::For(lock) if since < lock.as_secs() => {
            return AttemptDecision::Locked {
                retry_after: Some(std::time::Duration::from_secs(lock.as_secs() - since)),
            };
        }
        _ => {}
    }
    AttemptDecision::Proceed {
        locks_now: policy.lock_after(failures.saturating_add(1)) != LockSpan::None,
    }
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("confirmed", &self.confirmed)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTotp")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StoredBackupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredBackupCode")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_hash() {
        let email = Email::parse("ada@example.com").unwrap();
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
        let new = NewUser {
            id: UserId::from_stored("u1".into()),
            email: email.clone(),
            password_hash: Some(phc.into()),
            email_verified: false,
            now: Timestamp::EPOCH,
        };
        let token = NewAccountToken {
            token_hash: [0xab; 32],
            purpose: TokenPurpose::Registration,
            user_id: None,
            email,
            password_hash: Some(phc.into()),
            created_at: Timestamp::EPOCH,
            expires_at: Timestamp::EPOCH,
        };
        let reset = TokenEffect::ResetPassword {
            password_hash: phc.into(),
        };
        for text in [
            format!("{new:?}"),
            format!("{token:?}"),
            format!("{reset:?}"),
            format!("{:?}", TokenEffect::CreateUser(new.clone())),
        ] {
            assert!(!text.contains("argon2"), "{text}");
            assert!(!text.contains("abab"), "{text}");
        }
    }
}
