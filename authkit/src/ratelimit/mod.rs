//! Rate limits, account lockout and device cookies (MISSION.md §3 "Throttling and lockout",
//! SECURITY.md #20, #22).
//!
//! # The model
//! Three mechanisms, each answering a different attacker:
//!
//! 1. **Per client address, at the edge.** [`RateLimitLayer`] gives each flow ([`Flow`]) a
//!    [`Quota`] per client address bucket ([`ClientBucket`]: an IPv4 address, or an IPv6 /64)
//!    and answers `429 rate_limited` with `Retry-After` once it is spent. It runs before any
//!    handler, costs one limiter operation and no password hash, and stops a single source
//!    from hammering the service. It does nothing against a botnet, which is what the next
//!    mechanism is for. Quotas use GCRA (see [`Quota`]).
//! 2. **Per account, lockout with progressive back-off.** A botnet can spread guesses over
//!    thousands of addresses, so failures are also counted per account, whatever the address
//!    ([`RateLimiter::begin_attempt`], [`LockoutPolicy`]): 5 free failures, then a lock of
//!    30 s doubling per further failure up to 1 h, and from 100 consecutive failures a lock
//!    that lasts until a success or a password reset. A locked account answers **exactly like
//!    a wrong password** (same status, body, headers and time), so the lock reveals neither
//!    itself nor whether the account exists. Some flows also have a plain per-account
//!    [`Quota`] (reset and verification mails, MFA codes), enforced by their handlers.
//! 3. **Device cookies exempt their browser from the account lock.** Lockout alone would let
//!    anyone lock a user out by failing on purpose. A browser that already signed in to the
//!    account holds a signed cookie ([`DeviceCookies`]); it is counted under its own key
//!    ([`LockoutKey::device`]) instead of the account's, so the owner's usual browser keeps
//!    working while the account is locked for everyone else. It is still subject to its
//!    address limit.
//!
//! # Why the attempt is counted before the password is checked
//! [`RateLimiter::begin_attempt`] records the attempt as a failure *before* the credentials are
//! verified, and a success undoes it. If failures were recorded after verification, 100
//! parallel guesses would all pass the "is it locked?" check before the first failure was
//! written (RFC 4226 §7.3 asks that counters hold across parallel requests). Counting first
//! makes the check-and-count one atomic step per key: of any number of simultaneous attempts,
//! at most `free_failures` proceed before the lock.
//!
//! # What a login handler does
//! 1. Apply the flow's per-account quota, if any: [`RateLimiter::hit`] on [`RateKey::account`].
//! 2. Choose the lockout key: if the request carries a device cookie that
//!    [`DeviceCookies::verify`] accepts for the account's user, [`LockoutKey::device`];
//!    otherwise (also for unknown addresses) [`LockoutKey::account`]. OWASP suggests treating
//!    a device cookie whose own counter is locked as absent (fall back to the account key).
//! 3. [`RateLimiter::begin_attempt`]: on `Locked`, do the dummy password hash and answer
//!    `invalid_credentials`; on `Proceed`, verify. If wrong, nothing more to count (write one
//!    `account.locked` audit event when `locks_now` is set); if right, call
//!    [`RateLimiter::attempt_succeeded`] on the key used (and on the account key, since a
//!    proven password ends the run of *consecutive* failures) and issue a fresh device cookie.
//! 4. A password reset calls [`RateLimiter::clear`] on the account key.
//!
//! A limiter error on the address limit lets the request through (logged); on the lockout it
//! must fail closed (`503`).
//!
//! # Backends
//! [`MemoryRateLimiter`] keeps everything in the process (one instance). A shared backend
//! (Redis) must reproduce the same semantics: one integer per quota key (the GCRA theoretical
//! arrival time in Unix milliseconds, expiring at that time) and two per lockout key (failure
//! count and time of the last failure), each operation one atomic script per key.

mod config;
mod device;
mod key;
mod layer;
mod lockout;
mod memory;
mod quota;

use std::fmt;

use async_trait::async_trait;

pub use config::{FlowLimits, RateLimitConfig};
pub use device::{DeviceCookieConfig, DeviceCookieError, DeviceCookies, DeviceId};
pub use key::{ClientBucket, Flow, LockoutKey, RateKey};
pub use layer::{RateLimitLayer, RateLimitService};
pub use lockout::{AttemptDecision, LockSpan, LockoutPolicy};
pub use memory::{DEFAULT_MAX_KEYS, MemoryRateLimiter};
pub use quota::{Decision, Quota};

use crate::clock::Timestamp;

/// Why a limiter operation failed. Never carries a key's account part or any secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The backend holds its maximum number of keys and none could be dropped.
    #[error("the rate limiter is full")]
    Capacity,
    /// The backend (e.g. Redis) failed.
    #[error("the rate limiter backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where quotas and lockout counters live.
///
/// Every operation is atomic per key, so concurrent requests (on one instance or, with a shared
/// backend, on several) cannot both pass a check that only one should. Time is passed in by the
/// caller (from the injected [`Clock`](crate::clock::Clock)); no operation sleeps.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Counts one request against `quota` under `key` if the quota allows it.
    async fn hit(
        &self,
        key: &RateKey,
        quota: Quota,
        now: Timestamp,
    ) -> Result<Decision, RateLimitError>;

    /// Starts an authentication attempt under `key`: if the key is locked, answers
    /// [`AttemptDecision::Locked`] and counts nothing; otherwise counts the attempt as a
    /// failure *now* and answers [`AttemptDecision::Proceed`].
    async fn begin_attempt(
        &self,
        key: &LockoutKey,
        policy: &LockoutPolicy,
        now: Timestamp,
    ) -> Result<AttemptDecision, RateLimitError>;

    /// The attempt's credentials were right: resets `key`'s consecutive failures (and any lock).
    async fn attempt_succeeded(&self, key: &LockoutKey) -> Result<(), RateLimitError>;

    /// Forgets `key`'s failures and lock (after a password reset or by an operator).
    async fn clear(&self, key: &LockoutKey) -> Result<(), RateLimitError>;
}
