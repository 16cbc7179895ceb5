//! Small helpers shared by several modules.

use std::fmt::Write as _;

/// Lower-case hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// At most `max` characters of `s` (on a char boundary).
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub(crate) use crate::error::error_chain;

/// A value every clone reads and any clone may replace: how key material rotates without a
/// restart. Readers take a cheap snapshot (`Arc` clone under a short read lock) and never hold
/// the lock while they work, so a rotation never waits for, or fails, a request in flight.
pub(crate) struct Swappable<T>(std::sync::Arc<std::sync::RwLock<std::sync::Arc<T>>>);

impl<T> Swappable<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(value),
        )))
    }

    /// The current value.
    pub(crate) fn load(&self) -> std::sync::Arc<T> {
        let guard = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::sync::Arc::clone(&guard)
    }

    /// Replaces the value for every clone.
    pub(crate) fn store(&self, value: T) {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = std::sync::Arc::new(value);
    }
}

impl<T> Clone for Swappable<T> {
    fn clone(&self) -> Self {
        Self(std::sync::Arc::clone(&self.0))
    }
}
