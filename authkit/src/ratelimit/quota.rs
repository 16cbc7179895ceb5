//! Request quotas with the generic cell rate algorithm (GCRA).
//!
//! GCRA keeps one number per key, the *theoretical arrival time* (TAT): when the bucket would
//! be empty again if requests kept arriving at the allowed rate. It is equivalent to a token
//! bucket of `burst` tokens refilled one every `period / burst`, but its state is one integer,
//! its update one compare-and-set, and a key whose TAT has passed is indistinguishable from a
//! key never seen (so it can be dropped, or given a Redis `PEXPIREAT` of its TAT).

use std::time::Duration;

/// `burst` requests per `period`, refilled evenly (one every `period / burst`).
///
/// A client may send `burst` requests at once and then one per `period / burst`. Edge cases:
/// `burst == 0` refuses every request; a zero `period` allows every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed at once.
    pub burst: u32,
    /// Time in which a spent burst refills completely.
    pub period: Duration,
}

impl Quota {
    /// `burst` requests per `period`.
    pub const fn new(burst: u32, period: Duration) -> Self {
        Self { burst, period }
    }

    /// `burst` requests per minute.
    pub const fn per_minute(burst: u32) -> Self {
        Self::new(burst, Duration::from_secs(60))
    }

    /// `burst` requests per hour.
    pub const fn per_hour(burst: u32) -> Self {
        Self::new(burst, Duration::from_secs(60 * 60))
    }
}

/// The answer to one request against a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request is within the quota and was counted.
    Allowed,
    /// The quota is spent; nothing was counted.
    Limited {
        /// When the next request would be allowed.
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// Milliseconds since the epoch of a whole-second timestamp (saturating).
pub(crate) fn millis(now: crate::clock::Timestamp) -> i64 {
    now.unix_seconds().saturating_mul(1000)
}

/// A duration in milliseconds (saturating).
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One GCRA step for a key whose stored TAT is `tat` (`None` if absent), at `now_ms`.
///
/// Returns the decision and the TAT to store (`None`: leave the state as it is). This is the
/// whole algorithm; a Redis backend runs the same arithmetic in one Lua script.
pub(crate) fn gcra_step(tat: Option<i64>, quota: Quota, now_ms: i64) -> (Decision, Option<i64>) {
    if quota.burst == 0 {
        let retry_after = quota.period.max(Duration::from_secs(1));
        return (Decision::Limited { retry_after }, None);
    }
    let period = u64::try_from(quota.period.as_millis()).unwrap_or(u64::MAX);
    if period == 0 {
        return (Decision::Allowed, None);
    }
    // Emission interval, rounded up so that the long-run rate never exceeds the quota.
    let interval = i64::try_from(period.div_ceil(u64::from(quota.burst))).unwrap_or(i64::MAX);
    // How far ahead of now the TAT may run: exactly `burst` cells.
    let window = interval.saturating_mul(i64::from(quota.burst));
    let base = tat.map_or(now_ms, |t| t.max(now_ms));
    let next = base.saturating_add(interval);
    let allowed_at = next.saturating_sub(window);
    if allowed_at > now_ms {
        let wait = u64::try_from(allowed_at.saturating_sub(now_ms)).unwrap_or(u64::MAX);
        return (
            Decision::Limited {
                retry_after: Duration::from_millis(wait),
            },
            None,
        );
    }
    (Decision::Allowed, Some(next))
}

/// How long a TAT must be kept at `now_ms`: past it the key holds no information.
pub(crate) fn gcra_is_live(tat: i64, now_ms: i64) -> bool {
    tat > now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(quota: Quota, times_ms: &[i64]) -> Vec<Decision> {
        let mut tat = None;
        times_ms
            .iter()
            .map(|&now| {
                let (d, next) = gcra_step(tat, quota, now);
                if next.is_some() {
                    tat = next;
                }
                d
            })
            .collect()
    }

    #[test]
    fn burst_then_one_per_interval() {
        let q = Quota::per_minute(3); // one every 20 s
        let d = run(q, &[0, 0, 0, 0, 19_000, 20_000, 20_000, 40_000]);
        let limited = |ms| Decision::Limited {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(
            d,
            [
                Decision::Allowed,
                Decision::Allowed,
                Decision::Allowed,
                limited(20_000),
                limited(1_000),
                Decision::Allowed,
                limited(20_000),
                Decision::Allowed,
            ]
        );
    }

    #[test]
    fn degenerate_quotas() {
        assert!(!gcra_step(None, Quota::per_minute(0), 0).0.is_allowed());
        assert_eq!(
            gcra_step(None, Quota::new(5, Duration::ZERO), 0),
            (Decision::Allowed, None)
        );
        // Uneven division never lets more than `burst` through at once.
        let d = run(Quota::new(4, Duration::from_millis(10)), &[0; 6]);
        assert_eq!(d.iter().filter(|d| d.is_allowed()).count(), 4);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let q = Quota::per_hour(1);
        let (d, tat) = gcra_step(None, q, i64::MAX - 5);
        assert!(d.is_allowed());
        assert_eq!(tat, Some(i64::MAX));
        assert!(gcra_step(None, q, i64::MIN).0.is_allowed());
        assert!(!gcra_step(Some(i64::MAX), q, 0).0.is_allowed());
    }
}
