//! The in-process [`RateLimiter`] backend.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher as _;
use std::hash::RandomState;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::key::{LockoutKey, RateKey};
use super::lockout::{AttemptDecision, LockoutPolicy, LockoutState, begin_step};
use super::quota::{Decision, Quota, gcra_is_live, gcra_step, millis};
use super::{RateLimitError, RateLimiter};
use crate::clock::Timestamp;

/// Default most keys per table (quotas and lockout counters each): about 10 MB in all.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

const SHARDS: usize = 16;

/// Rate limits and lockout counters in process memory, for a single instance (several
/// instances need a shared backend such as Redis, or each would count alone).
///
/// Each operation takes one shard lock for its whole read-modify-write, so it is atomic per
/// key. Memory is bounded: each of the two tables (quota states, lockout counters) holds at
/// most `max_keys` keys. There is no background task: when a shard is full, a write first
/// drops the entries that hold no information any more (a refilled quota, a forgotten
/// counter) and, if the shard is still full, evicts the entry whose loss matters least: the
/// quota closest to refilled, or the lockout counter with the fewest failures (the oldest
/// among equals). Counters that reached the hard lock are never evicted; a shard full of them
/// makes `begin_attempt` fail with [`RateLimitError::Capacity`] for new keys.
pub struct MemoryRateLimiter {
    rates: Table<i64>,
    lockouts: Table<LockoutState>,
    hasher: RandomState,
}

struct Table<V> {
    shards: Vec<Mutex<HashMap<String, V>>>,
    per_shard: usize,
}

impl<V> Table<V> {
    fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(
        &self,
        hasher: &RandomState,
        key: &str,
    ) -> Result<MutexGuard<'_, HashMap<String, V>>, RateLimitError> {
        // A per-limiter random hasher: clients cannot aim their keys at one shard.
        let index = usize::try_from(hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let shard = self.shards.get(index).ok_or(RateLimitError::Capacity)?;
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        Ok(shard.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Sizes only: the keys (client addresses, account hashes) stay out of logs.
impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("quota_keys", &self.rates.len())
            .field("lockout_keys", &self.lockouts.len())
            .field("max_keys_per_table", &(self.rates.per_shard * SHARDS))
            .finish()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateLimiter {
    /// A limiter holding at most [`DEFAULT_MAX_KEYS`] keys per table.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A limiter holding at most about `max_keys` keys per table (rounded up to a multiple of
    /// the shard count).
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            rates: Table::new(max_keys),
            lockouts: Table::new(max_keys),
            hasher: RandomState::new(),
        }
    }

    /// The consecutive failures recorded under `key` (for tests and operators' tools).
    pub fn failures(&self, key: &LockoutKey) -> u32 {
        self.lockouts
            .shard(&self.hasher, key.as_str())
            .ok()
            .and_then(|shard| shard.get(key.as_str()).map(|s| s.failures))
            .unwrap_or(0)
    }

    /// How many keys both tables hold, idle ones not yet purged included.
    pub fn len(&self) -> usize {
        self.rates.len() + self.lockouts.len()
    }

    /// Whether both tables are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one more quota key in a full shard; always succeeds.
fn make_room_rates(shard: &mut HashMap<String, i64>, cap: usize, now_ms: i64) {
    if shard.len() < cap {
        return;
    }
    shard.retain(|_, tat| gcra_is_live(*tat, now_ms));
    if shard.len() < cap {
        return;
    }
    // The quota nearest to refilled loses the least by being forgotten.
    let victim = shard
        .iter()
        .min_by_key(|(_, tat)| **tat)
        .map(|(k, _)| k.clone());
    if let Some(victim) = victim {
        shard.remove(&victim);
    }
}

/// Makes room for one more lockout key in a full shard. Soft counters go first (fewest
/// failures, then oldest); only if every entry is hard-locked does the one whose last failure
/// is oldest go. Refusing new keys instead would let an attacker who filled the table with
/// hard-locked addresses turn every sign-in, the owners' device keys included, into a 503.
/// Returns false only for a zero-capacity shard.
fn make_room_lockouts(
    shard: &mut HashMap<String, LockoutState>,
    cap: usize,
    policy: &LockoutPolicy,
    now_ms: i64,
) -> bool {
    if shard.len() < cap {
        return true;
    }
    shard.retain(|_, s| s.is_live(policy, now_ms));
    if shard.len() < cap {
        return true;
    }
    // Fewest failures, then oldest: the counter whose loss gives an attacker the least.
    let victim = shard
        .iter()
        .filter(|(_, s)| s.failures < policy.hard_lock_at)
        .min_by_key(|(_, s)| (s.failures, s.last_failure_ms))
        .or_else(|| shard.iter().min_by_key(|(_, s)| s.last_failure_ms))
        .map(|(k, _)| k.clone());
    match victim {
        Some(victim) => {
            tracing::warn!("lockout table full: evicting the least significant counter");
            shard.remove(&victim);
            true
        }
        None => false,
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(
        &self,
        key: &RateKey,
        quota: Quota,
        now: Timestamp,
    ) -> Result<Decision, RateLimitError> {
        let now_ms = millis(now);
        let mut shard = self.rates.shard(&self.hasher, key.as_str())?;
        let stored = shard
            .get(key.as_str())
            .copied()
            .filter(|tat| gcra_is_live(*tat, now_ms));
        let (decision, next) = gcra_step(stored, quota, now_ms);
        if let Some(tat) = next {
            if let Some(slot) = shard.get_mut(key.as_str()) {
                *slot = tat;
            } else {
                make_room_rates(&mut shard, self.rates.per_shard, now_ms);
                shard.insert(key.as_str().to_owned(), tat);
            }
        }
        Ok(decision)
    }

    async fn begin_attempt(
        &self,
        key: &LockoutKey,
        policy: &LockoutPolicy,
        now: Timestamp,
    ) -> Result<AttemptDecision, RateLimitError> {
        let now_ms = millis(now);
        let mut shard = self.lockouts.shard(&self.hasher, key.as_str())?;
        let stored = shard.get(key.as_str()).copied();
        let (decision, next) = begin_step(stored, policy, now_ms);
        if let Some(state) = next {
            if let Some(slot) = shard.get_mut(key.as_str()) {
                *slot = state;
            } else if make_room_lockouts(&mut shard, self.lockouts.per_shard, policy, now_ms) {
                shard.insert(key.as_str().to_owned(), state);
            } else {
                // Refuse rather than let an uncounted attempt through (the caller fails closed).
                return Err(RateLimitError::Capacity);
            }
        }
        Ok(decision)
    }

    async fn attempt_succeeded(&self, key: &LockoutKey) -> Result<(), RateLimitError> {
        self.lockouts
            .shard(&self.hasher, key.as_str())?
            .remove(key.as_str());
        Ok(())
    }

    async fn clear(&self, key: &LockoutKey) -> Result<(), RateLimitError> {
        self.lockouts
            .shard(&self.hasher, key.as_str())?
            .remove(key.as_str());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::ratelimit::Flow;
    use crate::user::Email;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000 + secs)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lock_key(email: &str) -> LockoutKey {
        LockoutKey::account(Flow::Login, &Email::parse(email).unwrap())
    }

    fn limited(secs: u64) -> Decision {
        Decision::Limited {
            retry_after: Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn burst_then_limited_with_retry_after_then_refill() {
        let rl = MemoryRateLimiter::new();
        let key = RateKey::client(Flow::Login, ip("203.0.113.7"));
        let q = Quota::per_minute(20); // one every 3 s
        for _ in 0..20 {
            assert_eq!(rl.hit(&key, q, at(0)).await.unwrap(), Decision::Allowed);
        }
        assert_eq!(rl.hit(&key, q, at(0)).await.unwrap(), limited(3));
        assert_eq!(rl.hit(&key, q, at(2)).await.unwrap(), limited(1));
        // One cell refilled after 3 s, and only one.
        assert_eq!(rl.hit(&key, q, at(3)).await.unwrap(), Decision::Allowed);
        assert_eq!(rl.hit(&key, q, at(3)).await.unwrap(), limited(3));
        // A full period refills the whole burst.
        for _ in 0..20 {
            assert!(rl.hit(&key, q, at(63)).await.unwrap().is_allowed());
        }
        assert!(!rl.hit(&key, q, at(63)).await.unwrap().is_allowed());
    }

    #[test]
    fn debug_shows_sizes_not_keys() {
        let rl = MemoryRateLimiter::new();
        let key = RateKey::client(Flow::Login, ip("203.0.113.7"));
        futures_util::FutureExt::now_or_never(rl.hit(&key, Quota::per_minute(1), at(0)))
            .unwrap()
            .unwrap();
        let shown = format!("{rl:?}");
        assert!(shown.contains("quota_keys: 1"), "{shown}");
        assert!(!shown.contains("203.0.113.7"), "{shown}");
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let rl = MemoryRateLimiter::new();
        let q = Quota::per_hour(1);
        let a = RateKey::client(Flow::Login, ip("198.51.100.1"));
        let b = RateKey::client(Flow::Login, ip("198.51.100.2"));
        let a_register = RateKey::client(Flow::Register, ip("198.51.100.1"));
        assert!(rl.hit(&a, q, at(0)).await.unwrap().is_allowed());
        assert_eq!(rl.hit(&a, q, at(0)).await.unwrap(), limited(3600));
        assert!(rl.hit(&b, q, at(0)).await.unwrap().is_allowed());
        assert!(rl.hit(&a_register, q, at(0)).await.unwrap().is_allowed());
    }

    #[tokio::test]
    async fn refilled_quotas_are_purged_when_full() {
        let rl = MemoryRateLimiter::with_max_keys(SHARDS); // one key per shard
        let q = Quota::per_minute(1);
        for i in 0..200u32 {
            let key = RateKey::client(Flow::Login, IpAddr::from(i.to_be_bytes()));
            assert!(
                rl.hit(&key, q, at(i64::from(i) * 60))
                    .await
                    .unwrap()
                    .is_allowed()
            );
        }
        assert!(rl.len() <= SHARDS, "{}", rl.len());
        // Under pressure from live keys, the one nearest to refilled is evicted, never more.
        let rl = MemoryRateLimiter::with_max_keys(SHARDS);
        for i in 0..200u32 {
            let key = RateKey::client(Flow::Login, IpAddr::from(i.to_be_bytes()));
            assert!(rl.hit(&key, q, at(0)).await.unwrap().is_allowed());
        }
        assert!(rl.len() <= SHARDS, "{}", rl.len());
    }

    // SECURITY.md #22: progressive back-off, 30 s up to an hour, at most 100 consecutive.
    #[tokio::test]
    async fn lockout_schedule() {
        let rl = MemoryRateLimiter::new();
        let p = LockoutPolicy::default();
        let key = lock_key("victim@example.com");
        let proceed = |locks_now| AttemptDecision::Proceed { locks_now };
        let locked = |secs| AttemptDecision::Locked {
            retry_after: Some(Duration::from_secs(secs)),
        };
        for i in 1..=5 {
            assert_eq!(
                rl.begin_attempt(&key, &p, at(0)).await.unwrap(),
                proceed(i == 5)
            );
        }
        assert_eq!(rl.begin_attempt(&key, &p, at(0)).await.unwrap(), locked(30));
        assert_eq!(rl.begin_attempt(&key, &p, at(29)).await.unwrap(), locked(1));
        assert_eq!(rl.failures(&key), 5, "refused attempts are not counted");
        // Each further failure doubles the lock: 60 s, 120 s, … capped at one hour.
        let mut t = 30;
        for expected in [60, 120, 240, 480, 960, 1920, 3600, 3600] {
            assert_eq!(
                rl.begin_attempt(&key, &p, at(t)).await.unwrap(),
                proceed(true)
            );
            assert_eq!(
                rl.begin_attempt(&key, &p, at(t)).await.unwrap(),
                locked(expected)
            );
            assert_eq!(
                rl.begin_attempt(&key, &p, at(t + expected as i64 - 1))
                    .await
                    .unwrap(),
                locked(1)
            );
            t += expected as i64;
        }
        assert_eq!(rl.failures(&key), 13);
        // Up to the 100th failure, one per hour.
        while rl.failures(&key) < 99 {
            assert!(
                rl.begin_attempt(&key, &p, at(t))
                    .await
                    .unwrap()
                    .may_proceed()
            );
            t += 3600;
        }
        assert_eq!(
            rl.begin_attempt(&key, &p, at(t)).await.unwrap(),
            proceed(true)
        );
        assert_eq!(rl.failures(&key), 100);
        // From the 100th, locked however long one waits.
        for wait in [0, 3600, 365 * 86_400] {
            assert_eq!(
                rl.begin_attempt(&key, &p, at(t + wait)).await.unwrap(),
                AttemptDecision::Locked { retry_after: None }
            );
        }
        // Until a reset (or a success).
        rl.clear(&key).await.unwrap();
        assert_eq!(
            rl.begin_attempt(&key, &p, at(t)).await.unwrap(),
            proceed(false)
        );
    }

    #[tokio::test]
    async fn success_resets_the_count() {
        let rl = MemoryRateLimiter::new();
        let p = LockoutPolicy::default();
        let key = lock_key("user@example.com");
        for _ in 0..4 {
            assert!(
                rl.begin_attempt(&key, &p, at(0))
                    .await
                    .unwrap()
                    .may_proceed()
            );
        }
        // The fifth attempt is counted (and would lock) before the password is checked…
        assert_eq!(
            rl.begin_attempt(&key, &p, at(0)).await.unwrap(),
            AttemptDecision::Proceed { locks_now: true }
        );
        assert!(
            !rl.begin_attempt(&key, &p, at(0))
                .await
                .unwrap()
                .may_proceed()
        );
        // …and a correct password undoes it.
        rl.attempt_succeeded(&key).await.unwrap();
        assert_eq!(rl.failures(&key), 0);
        for _ in 0..5 {
            assert!(
                rl.begin_attempt(&key, &p, at(0))
                    .await
                    .unwrap()
                    .may_proceed()
            );
        }
        assert_eq!(rl.failures(&key), 5);
        // Another account is unaffected.
        let other = lock_key("other@example.com");
        assert!(
            rl.begin_attempt(&other, &p, at(0))
                .await
                .unwrap()
                .may_proceed()
        );
    }

    #[tokio::test]
    async fn forget_after_drops_old_counters_but_not_hard_locks() {
        let rl = MemoryRateLimiter::new();
        let p = LockoutPolicy {
            forget_after: Some(Duration::from_secs(86_400)),
            hard_lock_at: 7,
            ..LockoutPolicy::default()
        };
        let soft = lock_key("soft@example.com");
        for _ in 0..5 {
            rl.begin_attempt(&soft, &p, at(0)).await.unwrap();
        }
        assert_eq!(
            rl.begin_attempt(&soft, &p, at(86_400)).await.unwrap(),
            AttemptDecision::Proceed { locks_now: false }
        );
        assert_eq!(rl.failures(&soft), 1);
        let hard = lock_key("hard@example.com");
        let mut t = 0;
        while rl.failures(&hard) < 7 {
            if rl
                .begin_attempt(&hard, &p, at(t))
                .await
                .unwrap()
                .may_proceed()
            {
                continue;
            }
            t += 60;
        }
        assert_eq!(
            rl.begin_attempt(&hard, &p, at(t + 10 * 86_400))
                .await
                .unwrap(),
            AttemptDecision::Locked { retry_after: None }
        );
    }

    #[tokio::test]
    async fn a_full_lockout_table_evicts_the_least_significant_counter() {
        let rl = MemoryRateLimiter::with_max_keys(SHARDS); // one key per shard
        let p = LockoutPolicy {
            hard_lock_at: 3,
            ..LockoutPolicy::default()
        };
        // Fill every shard with hard-locked counters.
        let mut locked = Vec::new();
        let mut i = 0;
        while rl.len() < SHARDS && i < 10_000 {
            let key = lock_key(&format!("u{i}@example.com"));
            i += 1;
            for _ in 0..3 {
                let _ = rl.begin_attempt(&key, &p, at(0)).await;
            }
            if rl.failures(&key) == 3 {
                locked.push(key);
            }
        }
        assert_eq!(rl.len(), SHARDS);
        // A full table of hard locks still takes new keys (else every sign-in would fail):
        // the newcomer displaces the hard lock with the oldest last failure in its shard.
        let newcomer = lock_key("new@example.com");
        assert!(rl.begin_attempt(&newcomer, &p, at(5)).await.is_ok());
        assert_eq!(rl.failures(&newcomer), 1);
        assert_eq!(rl.len(), SHARDS);
        // (Filling may already have displaced some: one key per shard.)
        assert!(locked.iter().any(|k| rl.failures(k) == 0));
        assert!(locked.iter().filter(|k| rl.failures(k) == 3).count() >= SHARDS - 1);
        // A counter below the hard lock is displaced before any hard lock.
        let soft = locked.iter().find(|k| rl.failures(k) == 3).unwrap().clone();
        rl.clear(&soft).await.unwrap();
        rl.begin_attempt(&soft, &p, at(6)).await.unwrap();
        let mut j = 0;
        loop {
            let key = lock_key(&format!("n{j}@example.com"));
            j += 1;
            rl.begin_attempt(&key, &p, at(7)).await.unwrap();
            if rl.failures(&soft) == 0 {
                break;
            }
            assert!(j < 10_000);
        }
        assert_eq!(rl.len(), SHARDS);
    }

    /// SECURITY.md #22, RFC 4226 §7.3: parallel attempts are counted before any password is
    /// checked, so exactly `free_failures` of 200 simultaneous attempts may proceed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_attempts_cannot_exceed_the_free_failures() {
        let rl = Arc::new(MemoryRateLimiter::new());
        let p = Arc::new(LockoutPolicy::default());
        let key = lock_key("target@example.com");
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (rl, p, key, barrier) = (rl.clone(), p.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    rl.begin_attempt(&key, &p, at(0)).await.unwrap()
                })
            })
            .collect();
        let mut proceeded = 0;
        let mut locks = 0;
        for task in tasks {
            match task.await.unwrap() {
                AttemptDecision::Proceed { locks_now } => {
                    proceeded += 1;
                    locks += usize::from(locks_now);
                }
                AttemptDecision::Locked { retry_after } => {
                    assert_eq!(retry_after, Some(Duration::from_secs(30)));
                }
            }
        }
        assert_eq!(proceeded, p.free_failures as usize);
        assert_eq!(locks, 1, "exactly one attempt reports the new lock");
        assert_eq!(rl.failures(&key), p.free_failures);
    }
}
