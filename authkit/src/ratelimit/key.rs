//! Limiter keys: which flow, which client address bucket, which account.
//!
//! Keys are plain strings so that a Redis backend can use them as they are. They are built only
//! through the constructors here, which keeps two invariants: every key is namespaced by its
//! kind (`rl:` for quotas, `lk:` for lockouts, so one key never holds two kinds of state) and by
//! its [`Flow`], and no key contains an e-mail address (accounts appear as SHA-256 hex).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest as _, Sha256};

use super::device::DeviceId;
use crate::user::Email;

/// An auth flow with its own budgets (MISSION.md §3: "separate budgets per flow").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// `login` and `reauthenticate`: password checks.
    Login,
    /// `register`.
    Register,
    /// `password/forgot` and `password/reset`.
    PasswordReset,
    /// `email/verify` and `email/resend`.
    EmailVerification,
    /// `mfa/verify`: TOTP and backup codes.
    Mfa,
    /// OAuth: starting a sign-in or a link (each stores a transaction) and the callback (each
    /// may call the provider).
    OAuth,
}

impl Flow {
    /// Every flow, for iteration.
    pub const ALL: [Self; 6] = [
        Self::Login,
        Self::Register,
        Self::PasswordReset,
        Self::EmailVerification,
        Self::Mfa,
        Self::OAuth,
    ];

    /// The flow's name inside keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
            Self::Mfa => "mfa",
            Self::OAuth => "oauth",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bucket a client address counts against.
///
/// IPv4 addresses count individually; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack socket reports for an IPv4 peer) counts as that IPv4 address; any other IPv6
/// address counts as its /64, because one subscriber usually holds a whole /64 and can pick
/// any of its 2^64 addresses per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientBucket {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// One IPv6 /64 network, given by its first 64 bits.
    V6Net64(u64),
}

impl ClientBucket {
    /// The bucket of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net64((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

impl From<IpAddr> for ClientBucket {
    fn from(ip: IpAddr) -> Self {
        Self::of(ip)
    }
}

/// `203.0.113.7` or `2001:db8:1:2::/64`.
impl fmt::Display for ClientBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Net64(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(prefix) << 64))
            }
        }
    }
}

/// SHA-256 (lower-case hex) of a normalised e-mail address: the account's name in keys.
fn account_hash(email: &Email) -> String {
    crate::util::hex_lower(&Sha256::digest(email.as_str().as_bytes()))
}

/// The key of a request quota ([`RateLimiter::hit`](super::RateLimiter::hit)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey(String);

impl RateKey {
    /// The per-client-address quota of `flow`: `rl:<flow>:ip:<bucket>`.
    pub fn client(flow: Flow, ip: IpAddr) -> Self {
        Self(format!("rl:{flow}:ip:{}", ClientBucket::of(ip)))
    }

    /// The per-account quota of `flow`: `rl:<flow>:acct:<sha256 hex of the address>`.
    pub fn account(flow: Flow, email: &Email) -> Self {
        Self(format!("rl:{flow}:acct:{}", account_hash(email)))
    }

    /// The key as text (what a backend stores it under).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of a lockout counter ([`RateLimiter::begin_attempt`](super::RateLimiter::begin_attempt)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockoutKey(String);

impl LockoutKey {
    /// The counter of `flow` for clients without a device cookie for this account:
    /// `lk:<flow>:acct:<sha256 hex>`.
    ///
    /// Keyed by the submitted address, not the user id, so that unknown addresses are counted
    /// exactly like known ones (SECURITY.md #20).
    pub fn account(flow: Flow, email: &Email) -> Self {
        Self(format!("lk:{flow}:acct:{}", account_hash(email)))
    }

    /// The counter of `flow` for one browser holding a valid device cookie for this account:
    /// `lk:<flow>:acct:<sha256 hex>:dev:<device id>`. Such a browser is exempt from the
    /// account's counter but has its own.
    pub fn device(flow: Flow, email: &Email, device: &DeviceId) -> Self {
        Self(format!(
            "lk:{flow}:acct:{}:dev:{}",
            account_hash(email),
            device.as_str()
        ))
    }

    /// The key as text (what a backend stores it under).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockoutKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(s: &str) -> String {
        ClientBucket::of(s.parse().unwrap()).to_string()
    }

    #[test]
    fn buckets_ipv4_mapped_and_ipv6_by_64() {
        assert_eq!(bucket("203.0.113.7"), "203.0.113.7");
        assert_eq!(bucket("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(
            ClientBucket::of("::ffff:203.0.113.7".parse().unwrap()),
            ClientBucket::of("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            bucket("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(bucket("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(bucket("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(bucket("::1"), "::/64");
    }

    #[test]
    fn keys_are_namespaced_and_hold_no_email() {
        let email = Email::parse("Alice@Example.com").unwrap();
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let client = RateKey::client(Flow::Login, ip);
        assert_eq!(client.as_str(), "rl:login:ip:2001:db8::/64");
        let account = RateKey::account(Flow::PasswordReset, &email);
        let lock = LockoutKey::account(Flow::Login, &email);
        // SHA-256("alice@example.com")
        let hash = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976";
        assert_eq!(account.as_str(), format!("rl:password_reset:acct:{hash}"));
        assert_eq!(lock.as_str(), format!("lk:login:acct:{hash}"));
        for key in [account.as_str(), lock.as_str()] {
            assert!(!key.contains("alice") && !key.contains('@'), "{key}");
        }
        assert_ne!(
            RateKey::client(Flow::Login, ip),
            RateKey::client(Flow::Register, ip)
        );
    }

    #[test]
    fn flow_names_are_distinct() {
        let names: std::collections::HashSet<_> = Flow::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), Flow::ALL.len());
    }
}
