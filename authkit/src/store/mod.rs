//! Persistence: users and sessions behind small traits, with SQL and in-memory implementations.
//!
//! [`SqlStore`] keeps one schema for SQLite (the embedded default) and PostgreSQL, chosen by the
//! database URL, with embedded migrations. [`MemoryStore`] keeps everything in process, for
//! tests and demos. Every query is a single statement or one transaction; none loops per row.

mod memory;
mod sql;

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use sql::{DatabaseKind, SqlStore, SqlStoreOptions};

use crate::clock::Timestamp;
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

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e.as_database_error() {
            Some(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(e),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The new user's id.
    pub id: UserId,
    /// The normalised address.
    pub email: Email,
    /// The PHC string of the password hash.
    pub password_hash: Option<String>,
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
    /// Deletes one session; whether it existed.
    async fn delete_session(&self, id: &SessionIdHash) -> Result<bool, StoreError>;
    /// Every session of a user, newest first.
    async fn sessions_for_user(&self, user: &UserId) -> Result<Vec<SessionRecord>, StoreError>;
    /// Deletes the user's session with this public handle; its hash if it existed.
    async fn delete_session_by_handle(
        &self,
        user: &UserId,
        handle: &str,
    ) -> Result<Option<SessionIdHash>, StoreError>;
    /// Deletes every session of the user except `keep`; the hashes deleted.
    async fn delete_user_sessions_except(
        &self,
        user: &UserId,
        keep: Option<&SessionIdHash>,
    ) -> Result<Vec<SessionIdHash>, StoreError>;
    /// In one transaction: replaces the password hash if it is still `expected` (the one the
    /// request verified), deletes every session of the user, and stores `session` (the
    /// caller's session under a new id) if given. `None` when the hash changed meanwhile
    /// (nothing is written); else the hashes of the deleted sessions.
    async fn change_password(
        &self,
        user: &UserId,
        expected: &str,
        phc: &str,
        now: Timestamp,
        session: Option<&SessionRecord>,
    ) -> Result<Option<Vec<SessionIdHash>>, StoreError>;
    /// Deletes sessions whose absolute expiry has passed; how many.
    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// Everything authkit persists.
#[async_trait]
pub trait Store: UserStore + SessionStore {
    /// Checks that the store answers (readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;
}
