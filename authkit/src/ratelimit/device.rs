//! Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies").
//!
//! After a successful sign-in, the browser receives a cookie that proves "this browser has
//! signed in to this account, with its current password, recently". Its value is
//! `v2.<iat>.<nonce>.<kid>.<tag>` where `iat` is the issue time (Unix seconds), `nonce` 128
//! random bits, `kid` the id of the signing key and
//! `tag = HMAC-SHA256(key, "authkit-device-v2" ‖ len(user id) ‖ user id ‖
//! SHA-256(credentials) ‖ iat ‖ nonce)`, binary parts base64url without padding. The context
//! string keeps these tags apart from every other HMAC made with the same key ring (CSRF
//! tokens use `authkit-csrf-v1`); the length prefix keeps the user id from running into what
//! follows.
//!
//! Nothing is stored server side. A cookie is valid for a user when its tag verifies under a
//! key still in the ring (retiring a key invalidates the cookies it signed, MISSION.md "Keys"),
//! it is younger than its maximum age (checked by the server, not left to the browser), and it
//! was issued under the user's current credentials: the caller passes the stored password
//! hash, so a password change or reset (new hash, new salt) ends every device cookie issued
//! before, and an attacker who once knew the old password keeps no exemption from the lockout. A browser presenting a valid cookie for the account it signs in to is counted
//! under its own [`LockoutKey::device`](super::LockoutKey::device) instead of the account's
//! counter.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::clock::Timestamp;
use crate::rng::{RandomError, RandomSource, random_array};
use crate::secret::KeyRing;
use crate::user::UserId;
use crate::util::Swappable;

const CONTEXT: &[u8] = b"authkit-device-v2";
const ID_CONTEXT: &[u8] = b"authkit-device-id-v1";
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// `v2.` + at most 19 (iat) + `.` + 22 (nonce) + `.` + at most 32 (kid) + `.` + 43 (tag).
const MAX_VALUE_LEN: usize = 3 + 19 + 1 + 22 + 1 + 32 + 1 + 43;
/// Issue times this far in the future are tolerated (instances' clocks differ a little).
const CLOCK_SKEW_SECS: i64 = 60;

/// The device cookie's name and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCookieConfig {
    /// Base name (default `authkit_device`); `__Host-` is prepended when `secure` is on.
    pub name: String,
    /// Send `Secure` and use the `__Host-` prefix. Required in production; off only for
    /// plain-http development on localhost.
    pub secure: bool,
    /// How long the browser keeps the cookie (default 365 days).
    pub max_age: Duration,
}

impl Default for DeviceCookieConfig {
    fn default() -> Self {
        Self {
            name: "authkit_device".into(),
            secure: false,
            max_age: Duration::from_secs(365 * 24 * 60 * 60),
        }
    }
}

impl DeviceCookieConfig {
    /// The production cookie: `__Host-authkit_device`, `Secure`.
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

/// One browser's identity from a verified device cookie: 32 hex characters derived from the
/// cookie's nonce (never the cookie itself), stable for the cookie's life, usable in limiter
/// keys and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    fn of_nonce(nonce: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(ID_CONTEXT);
        h.update(nonce);
        let digest = h.finalize();
        Self(crate::util::hex_lower(digest.get(..16).unwrap_or(&digest)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a device cookie could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceCookieError {
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The signing key was refused by HMAC (cannot happen with ring keys).
    #[error("the device cookie key is unusable")]
    Key,
}

/// Issues and verifies device cookies with a key ring. Clones share the ring, and
/// [`set_keys`](Self::set_keys) replaces it for all of them.
#[derive(Clone)]
pub struct DeviceCookies {
    keys: Swappable<KeyRing>,
    config: DeviceCookieConfig,
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCookies")
            .field("keys", &*self.keys.load())
            .field("config", &self.config)
            .finish()
    }
}

impl DeviceCookies {
    /// Device cookies signed with `keys` (newest first; older keys still verify) and named by
    /// `config`.
    pub fn new(keys: KeyRing, config: DeviceCookieConfig) -> Self {
        Self {
            keys: Swappable::new(keys),
            config,
        }
    }

    /// Signs new cookies with `keys`' newest key from now on; cookies signed by a key no
    /// longer in `keys` stop verifying.
    pub fn set_keys(&self, keys: KeyRing) {
        self.keys.store(keys);
    }

    /// The cookie's full name (`__Host-authkit_device` when secure).
    pub fn cookie_name(&self) -> String {
        self.config.full_name()
    }

    fn mac(
        key: &[u8],
        user: &UserId,
        credentials: &str,
        iat: i64,
        nonce: &[u8],
    ) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).ok()?;
        mac.update(CONTEXT);
        let user = user.as_str().as_bytes();
        mac.update(&u64::try_from(user.len()).unwrap_or(u64::MAX).to_be_bytes());
        mac.update(user);
        mac.update(&Sha256::digest(credentials.as_bytes()));
        mac.update(&iat.to_be_bytes());
        mac.update(nonce);
        Some(mac)
    }

    /// A new cookie value for `user`, signed with the newest key, bound to `credentials` (the
    /// user's stored password hash, or `""` for an account without one) and issued at `now`.
    pub fn issue(
        &self,
        user: &UserId,
        credentials: &str,
        now: Timestamp,
        rng: &dyn RandomSource,
    ) -> Result<String, DeviceCookieError> {
        let nonce: [u8; NONCE_LEN] = random_array(rng)?;
        let keys = self.keys.load();
        let (kid, key) = keys.current();
        let iat = now.unix_seconds();
        let tag = Self::mac(key.expose(), user, credentials, iat, &nonce)
            .ok_or(DeviceCookieError::Key)?
            .finalize()
            .into_bytes();
        Ok(format!(
            "v2.{iat}.{}.{kid}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// The device behind `value` if it is a cookie issued to `user` under `credentials` (as
    /// passed to [`issue`](Self::issue)), by a key still in the ring, no longer ago than the
    /// configured maximum age.
    ///
    /// Parsing is strict (exactly five fields, a plain decimal time, canonical unpadded
    /// base64url of the exact lengths, bounded total length) and the tag is compared in
    /// constant time.
    pub fn verify(
        &self,
        value: &str,
        user: &UserId,
        credentials: &str,
        now: Timestamp,
    ) -> Option<DeviceId> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        let mut parts = value.split('.');
        let (Some("v2"), Some(iat), Some(nonce), Some(kid), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        // Canonical decimal only: one signed value has exactly one text.
        if iat.is_empty()
            || iat.len() > 19
            || (iat.len() > 1 && iat.starts_with('0'))
            || !iat.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let iat: i64 = iat.parse().ok()?;
        let age = now.unix_seconds().checked_sub(iat)?;
        let max_age = i64::try_from(self.config.max_age.as_secs()).unwrap_or(i64::MAX);
        if age > max_age || age < -CLOCK_SKEW_SECS {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD.decode(nonce).ok()?.try_into().ok()?;
        let tag: [u8; TAG_LEN] = URL_SAFE_NO_PAD.decode(tag).ok()?.try_into().ok()?;
        let keys = self.keys.load();
        let key = keys.get(kid)?;
        // `verify_slice` compares in constant time.
        Self::mac(key.expose(), user, credentials, iat, &nonce)?
            .verify_slice(&tag)
            .ok()
            .map(|()| DeviceId::of_nonce(&nonce))
    }

    fn build(&self, value: String, max_age: Duration) -> Cookie<'static> {
        let max_age =
            cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        // SameSite=Strict: the cookie only matters to sign-in requests from our own pages.
        // No Domain, Path=/: required by `__Host-`.
        Cookie::build((self.config.full_name(), value))
            .http_only(true)
            .secure(self.config.secure)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age)
            .build()
    }

    /// The `Set-Cookie` for a value from [`issue`](Self::issue).
    pub fn cookie(&self, value: String) -> Cookie<'static> {
        self.build(value, self.config.max_age)
    }

    /// A `Set-Cookie` that deletes the device cookie (`Max-Age=0`, same attributes).
    pub fn removal_cookie(&self) -> Cookie<'static> {
        self.build(String::new(), Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRandom;

    fn ring(ids: &[(&str, u8)]) -> KeyRing {
        crate::secret::test_ring(ids)
    }

    fn user(s: &str) -> UserId {
        UserId::from_stored(s.to_owned())
    }

    const CRED: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    const NOW: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);

    #[test]
    fn round_trip_and_binding_to_the_user() {
        let d = DeviceCookies::new(ring(&[("k1", 1)]), DeviceCookieConfig::default());
        let rng = SeededRandom::new(7);
        let alice = user("4a1c0e9e-0000-4000-8000-000000000001");
        let value = d.issue(&alice, CRED, NOW, &rng).unwrap();
        assert!(
            value.starts_with("v2.1800000000.") && value.contains(".k1."),
            "{value}"
        );
        assert!(value.len() <= MAX_VALUE_LEN);
        let id = d.verify(&value, &alice, CRED, NOW).unwrap();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(
            d.verify(&value, &alice, CRED, NOW),
            Some(id.clone()),
            "stable"
        );
        let bob = user("4a1c0e9e-0000-4000-8000-000000000002");
        assert!(d.verify(&value, &bob, CRED, NOW).is_none());
        // Another cookie for the same user is another device.
        let other = d.issue(&alice, CRED, NOW, &rng).unwrap();
        assert_ne!(d.verify(&other, &alice, CRED, NOW).unwrap(), id);
    }

    #[test]
    fn a_new_password_or_old_age_ends_the_cookie() {
        let d = DeviceCookies::new(ring(&[("k1", 1)]), DeviceCookieConfig::default());
        let u = user("u-1");
        let value = d.issue(&u, CRED, NOW, &SeededRandom::new(2)).unwrap();
        assert!(d.verify(&value, &u, "$argon2id$other", NOW).is_none());
        assert!(d.verify(&value, &u, "", NOW).is_none());
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(
            d.verify(&value, &u, CRED, NOW.saturating_add(year))
                .is_some()
        );
        let later = NOW.saturating_add(year + Duration::from_secs(1));
        assert!(d.verify(&value, &u, CRED, later).is_none());
        // Issued in the future (beyond the skew): refused.
        let early = NOW.saturating_sub(Duration::from_secs(61));
        assert!(d.verify(&value, &u, CRED, early).is_none());
    }

    #[test]
    fn tampered_truncated_and_malformed_values_are_refused() {
        let d = DeviceCookies::new(ring(&[("k1", 1)]), DeviceCookieConfig::default());
        let u = user("u-1");
        let value = d.issue(&u, CRED, NOW, &SeededRandom::new(1)).unwrap();
        let parts: Vec<&str> = value.split('.').collect();
        let (iat, nonce, tag) = (parts[1], parts[2], parts[4]);
        let flip = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            b[0] = if b[0] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        let bad = [
            String::new(),
            "v2".into(),
            value[..value.len() - 1].to_owned(),
            format!("{value}."),
            format!("{value}A"),
            format!("v1.{iat}.{nonce}.k1.{tag}"),
            format!("v2.{}.{nonce}.k1.{tag}", 1_800_000_001),
            format!("v2.+{iat}.{nonce}.k1.{tag}"),
            format!("v2.0{iat}.{nonce}.k1.{tag}"),
            format!("v2..{nonce}.k1.{tag}"),
            format!("v2.{iat}.{}.k1.{tag}", flip(nonce)),
            format!("v2.{iat}.{nonce}.k1.{}", flip(tag)),
            format!("v2.{iat}.{nonce}.k2.{tag}"),
            format!("v2.{iat}.{nonce}=.k1.{tag}"),
            format!("v2.{iat}.{nonce}.k1.{tag}="),
            format!("v2.{iat}.{nonce}.k1.{}", &tag[..tag.len() - 4]),
            format!("v2.{iat}.{}.k1.{tag}", &nonce[..nonce.len() - 2]),
            format!("v2.{iat}.{nonce}.k1.{tag}.{tag}"),
            format!("v2.{iat}.{nonce}.{}.{tag}", "k".repeat(1000)),
            value.replace('.', ","),
        ];
        for b in bad {
            assert!(d.verify(&b, &u, CRED, NOW).is_none(), "{b}");
        }
        assert!(d.verify(&value, &u, CRED, NOW).is_some());
    }

    #[test]
    fn tags_are_domain_separated_from_csrf_tokens() {
        // Same ring, same bytes signed: the device tag must not equal a CSRF-style tag.
        let keys = ring(&[("k1", 1)]);
        let d = DeviceCookies::new(keys.clone(), DeviceCookieConfig::default());
        let u = user("u-1");
        let value = d.issue(&u, CRED, NOW, &SeededRandom::new(3)).unwrap();
        let tag = value.rsplit('.').next().unwrap();
        let mut plain = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&[1; 32]).unwrap();
        plain.update(u.as_str().as_bytes());
        plain.update(
            &URL_SAFE_NO_PAD
                .decode(value.split('.').nth(2).unwrap())
                .unwrap(),
        );
        assert_ne!(URL_SAFE_NO_PAD.encode(plain.finalize().into_bytes()), tag);
    }

    // SECURITY.md #36: an older key of the ring still verifies; a retired one does not.
    #[test]
    fn key_rotation() {
        let u = user("u-1");
        let old = DeviceCookies::new(ring(&[("k1", 1)]), DeviceCookieConfig::default());
        let value = old.issue(&u, CRED, NOW, &SeededRandom::new(5)).unwrap();
        let rotated =
            DeviceCookies::new(ring(&[("k2", 2), ("k1", 1)]), DeviceCookieConfig::default());
        assert_eq!(
            rotated.verify(&value, &u, CRED, NOW),
            old.verify(&value, &u, CRED, NOW)
        );
        assert!(rotated.verify(&value, &u, CRED, NOW).is_some());
        assert!(
            rotated
                .issue(&u, CRED, NOW, &SeededRandom::new(6))
                .unwrap()
                .contains(".k2.")
        );
        let retired = DeviceCookies::new(ring(&[("k2", 2)]), DeviceCookieConfig::default());
        assert!(retired.verify(&value, &u, CRED, NOW).is_none());
        // A different key under the old id does not verify either.
        let reused_id = DeviceCookies::new(ring(&[("k1", 9)]), DeviceCookieConfig::default());
        assert!(reused_id.verify(&value, &u, CRED, NOW).is_none());
    }

    #[test]
    fn cookie_attributes() {
        let dev = DeviceCookies::new(ring(&[("k1", 1)]), DeviceCookieConfig::default());
        let c = dev.cookie("v".into()).to_string();
        assert_eq!(
            c,
            "authkit_device=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=31536000"
        );
        let prod = DeviceCookies::new(ring(&[("k1", 1)]), DeviceCookieConfig::production());
        assert_eq!(prod.cookie_name(), "__Host-authkit_device");
        let c = prod.cookie("v".into()).to_string();
        assert_eq!(
            c,
            "__Host-authkit_device=v; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=31536000"
        );
        let gone = prod.removal_cookie().to_string();
        assert_eq!(
            gone,
            "__Host-authkit_device=; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=0"
        );
    }
}
