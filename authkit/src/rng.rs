//! Injected randomness.
//!
//! Session ids, salts and CSRF material come from a [`RandomSource`]. Production uses
//! [`OsRandom`] (the operating system's CSPRNG through `getrandom`); tests may inject a
//! deterministic source to make runs reproducible.

use std::fmt;
use std::sync::Arc;

/// The random source could not produce bytes.
#[derive(Debug, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RandomError;

/// A cryptographically secure source of random bytes.
pub trait RandomSource: Send + Sync + fmt::Debug + 'static {
    /// Fills `dest` with random bytes.
    fn try_fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

impl<R: RandomSource + ?Sized> RandomSource for Arc<R> {
    fn try_fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        (**self).try_fill(dest)
    }
}

/// Fills an array of `N` random bytes.
pub(crate) fn random_array<const N: usize>(rng: &dyn RandomSource) -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    rng.try_fill(&mut out)?;
    Ok(out)
}

/// The operating system's CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn try_fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        getrandom::fill(dest).map_err(|_| RandomError)
    }
}

/// A deterministic generator (SHA-256 in counter mode over a seed) for reproducible tests.
///
/// **Never use it in production**: anyone who knows the seed knows every session id.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct SeededRandom {
    seed: [u8; 32],
    counter: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "test-util"))]
impl SeededRandom {
    /// A generator whose output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        use sha2::Digest;
        let seed = sha2::Sha256::digest(seed.to_le_bytes()).into();
        Self {
            seed,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
impl RandomSource for SeededRandom {
    fn try_fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        use sha2::Digest;
        for chunk in dest.chunks_mut(32) {
            let n = self
                .counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut h = sha2::Sha256::new();
            h.update(self.seed);
            h.update(n.to_le_bytes());
            let block: [u8; 32] = h.finalize().into();
            for (d, s) in chunk.iter_mut().zip(block.iter()) {
                *d = *s;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_fills_and_differs() {
        let a: [u8; 32] = random_array(&OsRandom).unwrap();
        let b: [u8; 32] = random_array(&OsRandom).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn seeded_random_is_reproducible() {
        let a: [u8; 40] = random_array(&SeededRandom::new(7)).unwrap();
        let b: [u8; 40] = random_array(&SeededRandom::new(7)).unwrap();
        let c: [u8; 40] = random_array(&SeededRandom::new(8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
