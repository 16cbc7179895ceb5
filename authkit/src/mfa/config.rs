//! What the MFA endpoints do beyond the TOTP parameters.

use std::time::Duration;

use super::TotpConfig;

/// MFA settings of the auth service (see [`AuthKitBuilder::mfa`](crate::AuthKitBuilder::mfa)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MfaConfig {
    /// TOTP parameters of new enrolments; an existing authenticator keeps the algorithm, digits
    /// and period it was enrolled with.
    pub totp: TotpConfig,
    /// Every user must use a second factor: app routes refuse `aal1` sessions with
    /// `mfa_required` until the user enrols (`POST /mfa/enable`) or steps up
    /// (`POST /mfa/verify`). Sets [`SessionConfig::require_mfa`](crate::session::SessionConfig).
    pub required: bool,
    /// How long an unconfirmed enrolment (secret shown, no code yet) can be confirmed.
    pub enrolment_ttl: Duration,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            totp: TotpConfig::default(),
            required: false,
            enrolment_ttl: Duration::from_secs(15 * 60),
        }
    }
}
