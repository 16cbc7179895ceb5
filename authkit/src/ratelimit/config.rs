//! Budgets per flow.

use super::key::Flow;
use super::lockout::LockoutPolicy;
use super::quota::Quota;

/// The quotas of one flow. `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowLimits {
    /// Requests per client address bucket ([`ClientBucket`](super::ClientBucket)), enforced by
    /// [`RateLimitLayer`](super::RateLimitLayer) before the handler runs.
    pub per_client: Option<Quota>,
    /// Requests per account (per submitted e-mail address), enforced by the handler.
    pub per_account: Option<Quota>,
}

impl FlowLimits {
    /// No limit at all.
    pub const UNLIMITED: Self = Self {
        per_client: None,
        per_account: None,
    };

    /// Limits with both quotas given.
    pub const fn new(per_client: Option<Quota>, per_account: Option<Quota>) -> Self {
        Self {
            per_client,
            per_account,
        }
    }
}

/// Every flow's quotas and the account lockout policy.
///
/// Defaults (per client address bucket / per account):
/// - **login** (and `reauthenticate`): 20 per minute / none. Accounts are protected by the
///   lockout instead, which a device cookie can bypass; a per-account quota could not be, and
///   would let anyone lock a user out.
/// - **register**: 10 per hour / 5 per hour (verification mails to one address).
/// - **password reset** (`forgot` and `reset`): 10 per hour / 3 per hour (reset mails to one
///   address, SECURITY.md #21).
/// - **e-mail verification** (`verify` and `resend`): 30 per hour / 5 per hour.
/// - **MFA** (TOTP and backup codes): 30 per minute / 5 per minute (their entropy is below
///   64 bits, SECURITY.md #22).
/// - **OAuth** (start, link, callback): 60 per minute / none (each start stores a
///   transaction; each callback may call the provider).
/// - **lockout**: [`LockoutPolicy::default`] (5 free failures, then 30 s doubling to 1 h,
///   locked from the 100th).
///
/// Tests and small deployments override one flow with [`RateLimitConfig::with_flow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `login` and `reauthenticate`.
    pub login: FlowLimits,
    /// `register`.
    pub register: FlowLimits,
    /// `password/forgot` and `password/reset`.
    pub password_reset: FlowLimits,
    /// `email/verify` and `email/resend`.
    pub email_verification: FlowLimits,
    /// `mfa/verify`.
    pub mfa: FlowLimits,
    /// `oauth/{provider}`, `oauth/{provider}/callback`, `oauth/{provider}/link`.
    pub oauth: FlowLimits,
    /// Consecutive-failure lockout of accounts.
    pub lockout: LockoutPolicy,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login: FlowLimits::new(Some(Quota::per_minute(20)), None),
            register: FlowLimits::new(Some(Quota::per_hour(10)), Some(Quota::per_hour(5))),
            password_reset: FlowLimits::new(Some(Quota::per_hour(10)), Some(Quota::per_hour(3))),
            email_verification: FlowLimits::new(
                Some(Quota::per_hour(30)),
                Some(Quota::per_hour(5)),
            ),
            mfa: FlowLimits::new(Some(Quota::per_minute(30)), Some(Quota::per_minute(5))),
            oauth: FlowLimits::new(Some(Quota::per_minute(60)), None),
            lockout: LockoutPolicy::default(),
        }
    }
}

impl RateLimitConfig {
    /// The limits of `flow`.
    pub fn flow(&self, flow: Flow) -> &FlowLimits {
        match flow {
            Flow::Login => &self.login,
            Flow::Register => &self.register,
            Flow::PasswordReset => &self.password_reset,
            Flow::EmailVerification => &self.email_verification,
            Flow::Mfa => &self.mfa,
            Flow::OAuth => &self.oauth,
        }
    }

    /// The limits of `flow`, to change in place.
    pub fn flow_mut(&mut self, flow: Flow) -> &mut FlowLimits {
        match flow {
            Flow::Login => &mut self.login,
            Flow::Register => &mut self.register,
            Flow::PasswordReset => &mut self.password_reset,
            Flow::EmailVerification => &mut self.email_verification,
            Flow::Mfa => &mut self.mfa,
            Flow::OAuth => &mut self.oauth,
        }
    }

    /// This configuration with `flow`'s limits replaced.
    #[must_use]
    pub fn with_flow(mut self, flow: Flow, limits: FlowLimits) -> Self {
        *self.flow_mut(flow) = limits;
        self
    }

    /// This configuration with another lockout policy.
    #[must_use]
    pub fn with_lockout(mut self, lockout: LockoutPolicy) -> Self {
        self.lockout = lockout;
        self
    }

    /// No quota on any flow (for tests); the lockout policy stays the default, because it is a
    /// security property rather than a capacity one.
    pub fn without_quotas() -> Self {
        let mut config = Self::default();
        for flow in Flow::ALL {
            *config.flow_mut(flow) = FlowLimits::UNLIMITED;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_touch_one_flow() {
        let loose = FlowLimits::new(Some(Quota::per_minute(1000)), None);
        let config = RateLimitConfig::default().with_flow(Flow::Login, loose);
        assert_eq!(*config.flow(Flow::Login), loose);
        assert_eq!(config.register, RateLimitConfig::default().register);
        let none = RateLimitConfig::without_quotas();
        assert!(
            Flow::ALL
                .iter()
                .all(|f| *none.flow(*f) == FlowLimits::UNLIMITED)
        );
        assert_eq!(none.lockout, LockoutPolicy::default());
    }
}
