//! Account lockout with progressive back-off (SECURITY.md #22).
//!
//! State per key: the number of consecutive failures and the time of the last one. Every lock
//! is derived from those two numbers and the [`LockoutPolicy`], so a policy change applies to
//! existing counters and a Redis backend stores two integers.

use std::time::Duration;

use super::quota::duration_millis;

/// How consecutive failures lock an account.
///
/// With `n` consecutive failures recorded, the last at time `t`:
/// - `n < free_failures`: not locked;
/// - `free_failures <= n < hard_lock_at`: locked until
///   `t + min(base_lock * 2^(n - free_failures), max_lock)`;
/// - `n >= hard_lock_at`: locked until a success or [`clear`](super::RateLimiter::clear)
///   (a password reset), however long one waits.
///
/// The defaults give, by failure number: 1–4 no wait; 5th: 30 s; 6th: 1 min; 7th: 2 min;
/// 8th: 4 min; 9th: 8 min; 10th: 16 min; 11th: 32 min; 12th to 99th: 1 h each; 100th: locked
/// until a success or a reset. That is 11 guesses in the first hour and 100 in about 88 hours,
/// within NIST's "at most 100 consecutive failures" and ASVS's "at most 100 per hour".
///
/// The lock binds clients without a device cookie for the account; a browser with one uses its
/// own counter (see [`LockoutKey::device`](super::LockoutKey::device)), so an attacker cannot
/// lock the owner out of their usual browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures before the first lock (default 5).
    pub free_failures: u32,
    /// The first lock (default 30 s); each further failure doubles it.
    pub base_lock: Duration,
    /// The longest temporary lock (default 1 h).
    pub max_lock: Duration,
    /// From this many consecutive failures the lock lasts until a success or a reset
    /// (default 100, NIST SP 800-63B §5.2.2).
    pub hard_lock_at: u32,
    /// Forget a counter this long after its last failure, unless it reached `hard_lock_at`.
    ///
    /// Default `None`: counters are kept until a success or a reset, as NIST counts
    /// *consecutive* failures with no time limit. `Some` bounds what a store keeps at the cost
    /// of letting an attacker who waits this long start again.
    pub forget_after: Option<Duration>,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_lock: Duration::from_secs(30),
            max_lock: Duration::from_secs(60 * 60),
            hard_lock_at: 100,
            forget_after: None,
        }
    }
}

/// How long an account is locked after a number of consecutive failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockSpan {
    /// Not locked.
    None,
    /// Locked for this long after the last failure.
    For(Duration),
    /// Locked until a success or a reset.
    UntilReset,
}

impl LockoutPolicy {
    /// The lock that follows `failures` consecutive failures (see the type's docs).
    pub fn lock_after(&self, failures: u32) -> LockSpan {
        if failures == 0 {
            return LockSpan::None;
        }
        if failures >= self.hard_lock_at {
            return LockSpan::UntilReset;
        }
        let first = self.free_failures.max(1);
        if failures < first {
            return LockSpan::None;
        }
        let doublings = failures - first;
        let lock = 1u32
            .checked_shl(doublings)
            .and_then(|factor| self.base_lock.checked_mul(factor))
            .unwrap_or(self.max_lock);
        LockSpan::For(lock.min(self.max_lock))
    }
}

/// The answer to [`begin_attempt`](super::RateLimiter::begin_attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptDecision {
    /// Check the credentials. The attempt has **already been counted as a failure**: call
    /// [`attempt_succeeded`](super::RateLimiter::attempt_succeeded) if they are right.
    Proceed {
        /// Counting this attempt started a lock: the `free_failures`-th failure and every
        /// later one (each back-off step is a new, longer lock; the `hard_lock_at`-th is the
        /// lasting one). Set on exactly one attempt per lock, never on refused ones. If the
        /// credentials prove wrong, write one `account.locked` audit event; if they prove
        /// right, the success undoes the lock.
        locks_now: bool,
    },
    /// Locked: do not check the credentials, answer exactly as for a wrong password (and
    /// spend the same time doing so, SECURITY.md #20). Nothing was counted.
    Locked {
        /// When the lock ends; `None` when it lasts until a success or a reset. For logs
        /// only: telling the client would reveal the lock.
        retry_after: Option<Duration>,
    },
}

impl AttemptDecision {
    /// Whether the credentials may be checked.
    pub fn may_proceed(self) -> bool {
        matches!(self, Self::Proceed { .. })
    }
}

/// A key's lockout counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockoutState {
    /// Consecutive failures (attempts begun and not followed by a success).
    pub(crate) failures: u32,
    /// When the last of them began, in Unix milliseconds.
    pub(crate) last_failure_ms: i64,
}

impl LockoutState {
    /// Whether the counter still means something at `now_ms` (else it can be dropped).
    pub(crate) fn is_live(&self, policy: &LockoutPolicy, now_ms: i64) -> bool {
        if self.failures == 0 {
            return false;
        }
        match policy.forget_after {
            Some(f) if self.failures < policy.hard_lock_at => {
                now_ms.saturating_sub(self.last_failure_ms) < duration_millis(f)
            }
            _ => true,
        }
    }
}

/// One lockout step for a key whose stored counter is `state`, at `now_ms`.
///
/// Returns the decision and the counter to store (`None`: leave it as it is). A Redis backend
/// runs the same arithmetic in one Lua script.
pub(crate) fn begin_step(
    state: Option<LockoutState>,
    policy: &LockoutPolicy,
    now_ms: i64,
) -> (AttemptDecision, Option<LockoutState>) {
    let state = state.filter(|s| s.is_live(policy, now_ms));
    let failures = state.map_or(0, |s| s.failures);
    let last = state.map_or(now_ms, |s| s.last_failure_ms);
    match policy.lock_after(failures) {
        LockSpan::UntilReset => {
            return (AttemptDecision::Locked { retry_after: None }, None);
        }
        LockSpan::For(lock) => {
            let until = last.saturating_add(duration_millis(lock));
            if until > now_ms {
                let wait = u64::try_from(until.saturating_sub(now_ms)).unwrap_or(u64::MAX);
                let retry_after = Some(Duration::from_millis(wait));
                return (AttemptDecision::Locked { retry_after }, None);
            }
        }
        LockSpan::None => {}
    }
    let failures = failures.saturating_add(1);
    let locks_now = policy.lock_after(failures) != LockSpan::None;
    (
        AttemptDecision::Proceed { locks_now },
        Some(LockoutState {
            failures,
            last_failure_ms: now_ms,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_matches_the_docs() {
        let p = LockoutPolicy::default();
        let secs = |s| LockSpan::For(Duration::from_secs(s));
        for n in 0..5 {
            assert_eq!(p.lock_after(n), LockSpan::None, "{n}");
        }
        assert_eq!(p.lock_after(5), secs(30));
        assert_eq!(p.lock_after(6), secs(60));
        assert_eq!(p.lock_after(7), secs(120));
        assert_eq!(p.lock_after(11), secs(1920));
        assert_eq!(p.lock_after(12), secs(3600));
        assert_eq!(p.lock_after(99), secs(3600));
        assert_eq!(p.lock_after(100), LockSpan::UntilReset);
        assert_eq!(p.lock_after(u32::MAX), LockSpan::UntilReset);
    }

    #[test]
    fn unusual_policies_stay_sane() {
        let p = LockoutPolicy {
            free_failures: 0,
            hard_lock_at: u32::MAX,
            ..LockoutPolicy::default()
        };
        // Zero free failures: the first failure already locks.
        assert_eq!(p.lock_after(0), LockSpan::None);
        assert_eq!(p.lock_after(1), LockSpan::For(Duration::from_secs(30)));
        assert_eq!(p.lock_after(40), LockSpan::For(Duration::from_secs(3600)));
        let p = LockoutPolicy {
            base_lock: Duration::from_secs(7200),
            ..LockoutPolicy::default()
        };
        assert_eq!(p.lock_after(5), LockSpan::For(Duration::from_secs(3600)));
    }

    #[test]
    fn steps_follow_the_schedule() {
        let p = LockoutPolicy::default();
        let mut state = None;
        for i in 1..=5 {
            let (d, next) = begin_step(state, &p, 1_000);
            assert_eq!(d, AttemptDecision::Proceed { locks_now: i == 5 });
            state = next;
        }
        let (d, next) = begin_step(state, &p, 30_999);
        assert_eq!(
            d,
            AttemptDecision::Locked {
                retry_after: Some(Duration::from_millis(1))
            }
        );
        assert_eq!(next, None);
        let (d, _) = begin_step(state, &p, 31_000);
        assert_eq!(d, AttemptDecision::Proceed { locks_now: true });
    }
}
