use std::time::Duration;

/// Session lifetimes and cookie settings. Defaults follow NIST SP 800-63B for AAL2 and
/// SECURITY.md #8: 30 minutes idle, 12 hours absolute.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute_timeout: Duration,
    /// A pending session (second factor missing) ends this long after the password step.
    pub pending_timeout: Duration,
    /// Sensitive actions need a password (or second factor) proved this recently.
    pub reauth_window: Duration,
    /// Activity is written to the store at most this often per session (the in-process cache
    /// is updated on every request). Capped at a tenth of the idle timeout.
    pub touch_interval: Duration,
    /// How long a session stays in the in-process cache before it is re-read from the store.
    /// Bounds how long a revocation made by *another* instance takes to apply here;
    /// revocations made through this instance apply on the next request.
    pub cache_ttl: Duration,
    /// Most sessions kept in the in-process cache.
    pub cache_capacity: u64,
    /// The cookie.
    pub cookie: CookieConfig,
    /// Every user must use a second factor: [`Session::authenticated`](super::Session::authenticated)
    /// (and so `CurrentUser` and `RequireAuthLayer`) refuses `aal1` sessions with
    /// `mfa_required` until the user enrols or steps up. The auth service's own routes still
    /// serve them, so that the user can enrol.
    pub require_mfa: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            pending_timeout: Duration::from_secs(5 * 60),
            reauth_window: Duration::from_secs(5 * 60),
            touch_interval: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(1),
            cache_capacity: 100_000,
            cookie: CookieConfig::default(),
            require_mfa: false,
        }
    }
}

impl SessionConfig {
    pub(crate) fn effective_touch_interval(&self) -> Duration {
        self.touch_interval.min(self.idle_timeout / 10)
    }
}

/// The session cookie: `HttpOnly`, `SameSite=Lax`, `Path=/`, no `Domain`, no `Max-Age`.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Base name; `__Host-` is prepended when `secure` is on.
    pub name: String,
    /// Send `Secure` and use the `__Host-` prefix (SECURITY.md #1). Required in production;
    /// off only for plain-http development on localhost.
    pub secure: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "authkit_session".into(),
            secure: false,
        }
    }
}

impl CookieConfig {
    /// The production cookie: `__Host-authkit_session`, `Secure`.
    pub fn production() -> Self {
        Self {
            secure: true,
            ..Self::default()
        }
    }

    /// The cookie's full name.
    pub fn full_name(&self) -> String {
        if self.secure {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }
}
