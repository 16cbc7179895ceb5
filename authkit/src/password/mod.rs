//! Password hashing (argon2id) and the password policy.
//!
//! Hashing runs off the async executor on a fixed set of low-priority threads (one per core by
//! default), and each thread owns a reusable argon2 work area: concurrency, CPU and memory all
//! stay bounded however many logins arrive (peak ≈ threads × `m_cost`), and request handling
//! preempts hashing on a busy core. Unknown users are verified
//! against a dummy hash with the same parameters, so they cost the same work as a wrong
//! password (SECURITY.md #20).
//!
//! Hashes imported from other systems (bcrypt, PBKDF2-SHA256, Django; see [`HashKind`] and
//! `docs/migrating-users.md`) are verified too, on the same threads, and replaced with argon2id
//! at the next successful login.

mod common;
mod hasher;
mod legacy;
mod phc;
mod policy;

pub use hasher::{HashParams, PasswordHasher, Verification, default_concurrency};
pub use legacy::{BCRYPT_MAX_PASSWORD_BYTES, HashKind, MAX_BCRYPT_COST, MAX_PBKDF2_WORK};
pub use policy::{PasswordPolicy, PolicyViolation};

/// Why hashing or verification failed (never because the password was wrong).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Parameters below the accepted floor, or rejected by argon2.
    #[error("invalid argon2 parameters: {0}")]
    Params(&'static str),
    /// The random source failed while making a salt.
    #[error(transparent)]
    Random(#[from] crate::rng::RandomError),
    /// argon2 itself failed.
    #[error("argon2 failed")]
    Argon2,
    /// The blocking task was cancelled or panicked.
    #[error("the hashing task did not complete")]
    TaskFailed,
}
