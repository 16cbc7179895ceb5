//! Exponential back-off with jitter between attempts of a job.

use std::time::Duration;

use crate::rng::RandomSource;

/// The delay before attempt `attempt + 1`, after `attempt` (1-based) failed:
/// `base × 2^(attempt-1)`, capped at `cap`, then "equal jitter": a uniformly random point in
/// the upper half, so that jobs failing together (an SMTP outage) do not retry in lockstep.
/// Without randomness the full delay is used.
pub(crate) fn retry_delay(
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: &dyn RandomSource,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let full = base
        .checked_mul(1u32 << exponent)
        .map_or(cap, |d| d.min(cap));
    let full_ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX);
    let half = full_ms / 2;
    let mut bytes = [0u8; 8];
    if rng.try_fill(&mut bytes).is_err() || half == 0 {
        return full;
    }
    let jitter = u64::from_le_bytes(bytes) % (full_ms - half + 1);
    Duration::from_millis(half + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRandom;

    #[test]
    fn doubles_per_attempt_within_jitter_bounds_and_caps() {
        let rng = SeededRandom::new(3);
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        for attempt in 1..=12u32 {
            let full = (base * 2u32.pow(attempt - 1)).min(cap);
            for _ in 0..50 {
                let d = retry_delay(base, cap, attempt, &rng);
                assert!(
                    d <= full && d >= full / 2,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        assert!(retry_delay(base, cap, 40, &rng) <= cap);
        assert!(retry_delay(base, cap, u32::MAX, &rng) <= cap);
    }

    #[test]
    fn zero_base_means_no_delay() {
        let rng = SeededRandom::new(1);
        assert_eq!(
            retry_delay(Duration::ZERO, Duration::from_secs(1), 5, &rng),
            Duration::ZERO
        );
    }

    #[test]
    fn jitter_spreads_retries() {
        let rng = SeededRandom::new(9);
        let base = Duration::from_secs(30);
        let seen: std::collections::HashSet<_> = (0..20)
            .map(|_| retry_delay(base, Duration::from_secs(3600), 3, &rng))
            .collect();
        assert!(seen.len() > 10);
    }
}
