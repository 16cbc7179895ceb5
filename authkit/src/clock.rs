//! Injected time.
//!
//! Every expiry, lockout and (later) TOTP window in authkit reads time through [`Clock`], so that
//! tests move time forward deterministically instead of sleeping. [`SystemClock`] is the only
//! place in the workspace allowed to read the wall clock (enforced by `clippy.toml`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A point in time: whole seconds since the Unix epoch, UTC.
///
/// Seconds are the resolution of every rule authkit enforces (timeouts, expiry) and of what it
/// stores, so one integer type serves the store, the cache and the API alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Serialised as RFC 3339 UTC text (`2026-11-27T12:00:00Z`), the form the API and the audit
/// archive use.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// A timestamp from seconds since the Unix epoch.
    pub const fn from_unix_seconds(secs: i64) -> Self {
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_seconds(self) -> i64 {
        self.0
    }

    /// This time plus `d`, saturating instead of overflowing.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_secs(d)))
    }

    /// This time minus `d`, saturating instead of overflowing.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_secs(d)))
    }

    /// Whole seconds from `earlier` to `self` (zero if `earlier` is later).
    pub fn seconds_since(self, earlier: Self) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// RFC 3339 form in UTC, e.g. `2026-11-27T09:52:16Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400);
        let secs_of_day = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (h, min, sec) = (
            secs_of_day / 3600,
            (secs_of_day % 3600) / 60,
            secs_of_day % 60,
        );
        if !(0..=9999).contains(&y) {
            return format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}Z");
        }
        // Written by hand: every session response carries several timestamps, and `format!`
        // showed up in the server's profile.
        let mut buf = *b"0000-00-00T00:00:00Z";
        for (at, width, value) in [
            (0, 4, y),
            (5, 2, i64::from(m)),
            (8, 2, i64::from(d)),
            (11, 2, h),
            (14, 2, min),
            (17, 2, sec),
        ] {
            let mut v = value;
            for i in (0..width).rev() {
                if let Some(slot) = buf.get_mut(at + i) {
                    *slot = b'0' + u8::try_from(v % 10).unwrap_or(0);
                }
                v /= 10;
            }
        }
        buf.iter().map(|&b| char::from(b)).collect()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn duration_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both values are in range by construction (1..=31 and 1..=12).
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(duration_secs)
            .unwrap_or(0);
        Timestamp(secs)
    }
}

/// A clock that only moves when told to: for tests of expiry and lockout without sleeping.
///
/// Clones share the same time, so a test keeps one handle and gives another to authkit.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(start.0)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(duration_secs(d), Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_in_utc() {
        assert_eq!(Timestamp::EPOCH.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_111_111_109).to_rfc3339(),
            "2005-03-18T01:58:29Z"
        );
        assert_eq!(
            Timestamp(20_000_000_000).to_rfc3339(),
            "2603-10-11T11:33:20Z"
        );
        assert_eq!(Timestamp(951_782_400).to_rfc3339(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp(100));
        let shared = clock.clone();
        assert_eq!(shared.now(), Timestamp(100));
        clock.advance(Duration::from_secs(30));
        assert_eq!(shared.now(), Timestamp(130));
    }
}
