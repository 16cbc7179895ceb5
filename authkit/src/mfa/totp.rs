//! TOTP (RFC 6238) over HOTP (RFC 4226): secrets, codes, the acceptance window and replay.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Duration;

use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::{Zeroize as _, Zeroizing};

use super::MfaError;
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::rng::RandomSource;
use crate::user::UserId;

/// Shortest TOTP secret generated or configured, in bytes (160 bits, RFC 4226 §4 R6).
const MIN_SECRET_BYTES: usize = 20;
/// Longest TOTP secret generated or configured, in bytes (the SHA-512 output size).
const MAX_SECRET_BYTES: usize = 64;
/// Longest issuer name accepted by [`TotpConfig::validate`], in bytes.
pub(super) const MAX_ISSUER_LEN: usize = 100;
/// Longest raw input [`TotpCode::parse`] looks at, in bytes.
const MAX_CODE_INPUT_LEN: usize = 32;
/// Associated data of sealed TOTP secrets; the user id follows it.
const SEAL_AAD_LABEL: &[u8] = b"authkit/mfa/totp-secret/v1";

/// HMAC algorithm of TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlgorithm {
    /// HMAC-SHA1: the default, and the only one every authenticator app implements.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl TotpAlgorithm {
    /// The name used in `otpauth://` URIs: `SHA1`, `SHA256` or `SHA512`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Self::Sha1 => totp_rs::Algorithm::SHA1,
            Self::Sha256 => totp_rs::Algorithm::SHA256,
            Self::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl fmt::Display for TotpAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TotpAlgorithm {
    type Err = MfaError;

    /// `sha1`, `sha256` or `sha512`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or(MfaError::Config("unknown TOTP algorithm"))
    }
}

/// TOTP parameters. Build with `TotpConfig::default()` and change fields; check with
/// [`TotpConfig::validate`] at start-up.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct TotpConfig {
    /// Shown by authenticator apps next to the account; no `:` (reserved by the URI label),
    /// no control characters, 1–100 bytes. Default `"authkit"`.
    pub issuer: String,
    /// HMAC algorithm. Default SHA-1 (what authenticator apps implement).
    pub algorithm: TotpAlgorithm,
    /// Digits per code, 6–8. Default 6.
    pub digits: u8,
    /// Length of a time step: whole seconds, 15–300 s. Default 30 s.
    pub step: Duration,
    /// Steps before the current one that are accepted, 0–2. Default 1 (network delay).
    pub steps_back: u8,
    /// Steps after the current one that are accepted, 0–2. Default 1 (a fast phone clock).
    pub steps_ahead: u8,
    /// Length of generated secrets in bytes, 20–64. Default 20 (160 bits).
    pub secret_bytes: usize,
}

impl Default for TotpConfig {
    fn default() -> Self {
        Self {
            issuer: "authkit".to_owned(),
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            step: Duration::from_secs(30),
            steps_back: 1,
            steps_ahead: 1,
            secret_bytes: MIN_SECRET_BYTES,
        }
    }
}

/// The outcome of [`TotpConfig::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// The code is valid for `step`, later than the last accepted one: store `step` as the new
    /// last accepted step (atomically, so that a concurrent attempt with the same code loses).
    Accepted {
        /// The time step the code belongs to.
        step: u64,
    },
    /// The code is valid but for a step at or before the last accepted one: a replay. Refuse
    /// it and audit it.
    Reused {
        /// The time step the code belongs to.
        step: u64,
    },
    /// The code is wrong, malformed for this configuration, or the time is before 1970.
    Rejected,
}

impl TotpConfig {
    /// Checks every field's range; the issuer must be non-empty, at most 100 bytes, without
    /// `:` (the label separator of `otpauth://` URIs) or control characters.
    pub fn validate(&self) -> Result<(), MfaError> {
        self.validate_params()?;
        validate_issuer(&self.issuer)
    }

    /// The numeric parameters only (what [`TotpConfig::check`] depends on).
    pub(super) fn validate_params(&self) -> Result<(), MfaError> {
        if !(6..=8).contains(&self.digits) {
            return Err(MfaError::Config("TOTP digits must be 6 to 8"));
        }
        if self.step.subsec_nanos() != 0 || !(15..=300).contains(&self.step.as_secs()) {
            return Err(MfaError::Config(
                "TOTP step must be a whole number of seconds from 15 to 300",
            ));
        }
        if self.steps_back > 2 || self.steps_ahead > 2 {
            return Err(MfaError::Config(
                "TOTP steps_back and steps_ahead must be at most 2",
            ));
        }
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&self.secret_bytes) {
            return Err(MfaError::Config("TOTP secret_bytes must be 20 to 64"));
        }
        Ok(())
    }

    /// The time step `T = floor(now / step)` (RFC 6238 §4.2, T0 = 0); `None` before 1970 (or
    /// for a zero step).
    pub fn current_step(&self, now: Timestamp) -> Option<u64> {
        let now = u64::try_from(now.unix_seconds()).ok()?;
        now.checked_div(self.step.as_secs())
    }

    /// The code for time step `step` (RFC 6238's T; equally the RFC 4226 HOTP counter).
    ///
    /// A `digits` value outside 6–8 (which [`TotpConfig::validate`] refuses) is clamped to
    /// that range, so this never panics.
    pub fn code_at(&self, secret: &TotpSecret, step: u64) -> TotpCode {
        self.engine(secret).code(step)
    }

    /// Checks a code against the current step and `steps_back`/`steps_ahead` steps around
    /// it, with the replay rule. See the [module documentation](super) for the reasoning.
    ///
    /// Candidates are `T − steps_back ..= T + steps_ahead` (negative steps skipped). Every
    /// candidate's code is computed and compared in constant time. If some matching step is
    /// greater than `last_accepted_step` (or there is none), the result is
    /// [`TotpCheck::Accepted`] with the greatest such step; otherwise, if a step matched, it
    /// is [`TotpCheck::Reused`]; otherwise [`TotpCheck::Rejected`]. A code whose length is
    /// not `digits`, an invalid configuration or a time before 1970 gives `Rejected`.
    pub fn check(
        &self,
        secret: &TotpSecret,
        code: &TotpCode,
        now: Timestamp,
        last_accepted_step: Option<u64>,
    ) -> TotpCheck {
        if self.validate_params().is_err() || code.0.len() != usize::from(self.digits) {
            return TotpCheck::Rejected;
        }
        let Some(current) = self.current_step(now) else {
            return TotpCheck::Rejected;
        };
        let engine = self.engine(secret);
        let first = current.saturating_sub(u64::from(self.steps_back));
        let last = current.saturating_add(u64::from(self.steps_ahead));

        let mut fresh_found = Choice::from(0);
        let mut fresh_step = 0u64;
        let mut any_found = Choice::from(0);
        let mut any_step = 0u64;
        // Ascending, so the greatest matching step is the one left selected.
        for step in first..=last {
            let candidate = engine.code(step);
            let matched = candidate.0.as_bytes().ct_eq(code.0.as_bytes());
            // Step numbers are public; only the code comparison has to be constant time.
            let fresh = Choice::from(u8::from(last_accepted_step.is_none_or(|l| step > l)));
            fresh_step.conditional_assign(&step, matched & fresh);
            fresh_found |= matched & fresh;
            any_step.conditional_assign(&step, matched);
            any_found |= matched;
        }
        if bool::from(fresh_found) {
            TotpCheck::Accepted { step: fresh_step }
        } else if bool::from(any_found) {
            TotpCheck::Reused { step: any_step }
        } else {
            TotpCheck::Rejected
        }
    }

    /// A totp-rs generator whose "time" is the step counter itself (step duration 1 s), so
    /// `generate(T)` is HOTP(secret, T) and no multiplication can overflow.
    fn engine(&self, secret: &TotpSecret) -> Engine {
        let digits = self.digits.clamp(6, 8);
        // `build_noncompliant`: our own checks apply (secret length is the caller's concern
        // for `from_bytes`), and it cannot fail.
        let totp = totp_rs::Builder::new()
            .with_algorithm(self.algorithm.to_totp_rs())
            .with_digits(digits)
            .with_step_duration(1)
            .with_skew(0)
            .with_secret(secret.expose())
            .build_noncompliant();
        Engine { totp, digits }
    }
}

/// Generates codes for one secret and configuration.
struct Engine {
    totp: totp_rs::Totp,
    digits: u8,
}

impl Engine {
    fn code(&self, step: u64) -> TotpCode {
        let token = self.totp.generate(step);
        // Sized up front so the digits are never copied into a reallocated, unwiped buffer.
        let mut text = Zeroizing::new(String::with_capacity(16));
        // Writing to a `String` cannot fail.
        let _ = write!(text, "{token}");
        debug_assert_eq!(text.len(), usize::from(self.digits));
        TotpCode(text)
    }
}

pub(super) fn validate_issuer(issuer: &str) -> Result<(), MfaError> {
    if issuer.is_empty() || issuer.len() > MAX_ISSUER_LEN {
        return Err(MfaError::Config("TOTP issuer must be 1 to 100 bytes"));
    }
    if issuer.contains(':') {
        return Err(MfaError::Config(
            "TOTP issuer must not contain ':' (the otpauth label separator)",
        ));
    }
    if issuer.chars().any(char::is_control) {
        return Err(MfaError::Config(
            "TOTP issuer must not contain control characters",
        ));
    }
    Ok(())
}

/// A TOTP shared secret. `Debug` prints `TotpSecret([REDACTED])`; wiped on drop; no `Display`.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// `len` random bytes from `rng`; `len` must be 20–64 ([`MfaError::Config`] otherwise).
    pub fn generate(rng: &dyn RandomSource, len: usize) -> Result<Self, MfaError> {
        if len < MIN_SECRET_BYTES {
            return Err(MfaError::Config(
                "a TOTP secret must be at least 20 bytes (160 bits)",
            ));
        }
        if len > MAX_SECRET_BYTES {
            return Err(MfaError::Config("a TOTP secret must be at most 64 bytes"));
        }
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        rng.try_fill(&mut bytes).map_err(|_| MfaError::Random)?;
        Ok(Self(bytes))
    }

    /// Wraps existing secret bytes (e.g. test vectors). No length check: generate new
    /// secrets with [`TotpSecret::generate`].
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Decodes RFC 4648 base32 (either case, padding optional), as in `otpauth://` URIs.
    /// Other characters, or an empty result, give [`MfaError::InvalidUri`].
    pub fn from_base32(text: &str) -> Result<Self, MfaError> {
        let bytes = base32_decode(text).ok_or(MfaError::InvalidUri)?;
        if bytes.is_empty() {
            return Err(MfaError::InvalidUri);
        }
        Ok(Self(bytes))
    }

    /// The secret bytes. Keep the borrow short and never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32, upper case, without padding: what authenticator apps expect.
    pub fn to_base32(&self) -> Zeroizing<String> {
        base32_encode(&self.0)
    }

    /// Sealed for storage with the encryption key ring. The associated data binds it to
    /// `user`, so a row copied to another user does not open.
    pub fn seal(
        &self,
        sealer: &Sealer,
        user: &UserId,
        rng: &dyn RandomSource,
    ) -> Result<String, MfaError> {
        Ok(sealer.seal(&self.0, &seal_aad(user), rng)?)
    }

    /// Opens what [`TotpSecret::seal`] produced for the same user.
    pub fn open(sealer: &Sealer, envelope: &str, user: &UserId) -> Result<Self, MfaError> {
        Ok(Self(sealer.open(envelope, &seal_aad(user))?))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

fn seal_aad(user: &UserId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_AAD_LABEL.len() + 1 + user.as_str().len());
    aad.extend_from_slice(SEAL_AAD_LABEL);
    aad.push(0);
    aad.extend_from_slice(user.as_str().as_bytes());
    aad
}

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(5) * 8));
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let symbol = |v: u32| {
        BASE32_ALPHABET
            .get(usize::try_from(v & 31).unwrap_or(0))
            .map_or('A', |&b| char::from(b))
    };
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol(acc >> bits));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol(acc << (5 - bits)));
    }
    acc.zeroize();
    out
}

fn base32_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = text.trim_end_matches('=');
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() * 5 / 8));
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for b in body.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a',
            b'2'..=b'7' => b - b'2' + 26,
            _ => {
                acc.zeroize();
                return None;
            }
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or(0));
        }
        acc &= (1 << bits) - 1;
    }
    acc.zeroize();
    Some(out)
}

/// A TOTP code as typed by the user (or computed by [`TotpConfig::code_at`]): the bare
/// digits. `Debug` prints `TotpCode([REDACTED])`; wiped on drop.
pub struct TotpCode(Zeroizing<String>);

/// Why a typed code was refused. Never echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The input is longer than any code could be.
    #[error("the code is too long")]
    TooLong,
    /// The input has characters other than ASCII digits and single group separators.
    #[error("the code may only contain digits")]
    Malformed,
    /// The input has the wrong number of digits (or symbols, for backup codes).
    #[error("the code has the wrong number of digits")]
    WrongLength,
}

impl TotpCode {
    /// Parses a code as typed.
    ///
    /// Input longer than 32 bytes is refused before anything else ([`CodeError::TooLong`]).
    /// Surrounding white space is trimmed; ASCII digits may be grouped with single spaces or
    /// hyphens between groups of any size (`"123 456"`, `"123-456"`, `"12 34 56"`); anything
    /// else — non-ASCII digits such as `"١٢٣٤٥٦"`, signs, doubled or leading separators — is
    /// [`CodeError::Malformed`]. Exactly `digits` digits are required, and `digits` must be
    /// 6–8 ([`CodeError::WrongLength`] otherwise).
    pub fn parse(input: &str, digits: u8) -> Result<Self, CodeError> {
        if input.len() > MAX_CODE_INPUT_LEN {
            return Err(CodeError::TooLong);
        }
        let mut out = Zeroizing::new(String::with_capacity(MAX_CODE_INPUT_LEN));
        // True right after a digit: a separator is allowed only there.
        let mut after_digit = false;
        for b in input.trim().bytes() {
            match b {
                b'0'..=b'9' => {
                    out.push(char::from(b));
                    after_digit = true;
                }
                b' ' | b'-' if after_digit => after_digit = false,
                _ => return Err(CodeError::Malformed),
            }
        }
        if !after_digit && !out.is_empty() {
            // A trailing separator (only possible for '-', since spaces were trimmed).
            return Err(CodeError::Malformed);
        }
        if !(6..=8).contains(&digits) || out.len() != usize::from(digits) {
            return Err(CodeError::WrongLength);
        }
        Ok(Self(out))
    }

    /// The bare digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{OsRandom, SeededRandom};
    use crate::secret::KeyRing;
    use proptest::prelude::*;

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// RFC 6238 Appendix B: (time, SHA1, SHA256, SHA512), 8 digits.
    const RFC6238: [(i64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];

    /// RFC 4226 Appendix D: HOTP for counts 0..=9.
    const RFC4226: [&str; 10] = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];

    fn config(algorithm: TotpAlgorithm, digits: u8) -> TotpConfig {
        TotpConfig {
            algorithm,
            digits,
            ..TotpConfig::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(secs)
    }

    fn code(text: &str, digits: u8) -> TotpCode {
        TotpCode::parse(text, digits).unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        for (time, sha1, sha256, sha512) in RFC6238 {
            for (algorithm, seed, expected) in [
                (TotpAlgorithm::Sha1, SEED20, sha1),
                (TotpAlgorithm::Sha256, SEED32, sha256),
                (TotpAlgorithm::Sha512, SEED64, sha512),
            ] {
                let cfg = config(algorithm, 8);
                let secret = TotpSecret::from_bytes(seed.to_vec());
                let step = cfg.current_step(at(time)).unwrap();
                assert_eq!(step, u64::try_from(time).unwrap() / 30);
                assert_eq!(
                    cfg.code_at(&secret, step).as_str(),
                    expected,
                    "{algorithm} t={time}"
                );
                assert_eq!(
                    cfg.check(&secret, &code(expected, 8), at(time), None),
                    TotpCheck::Accepted { step },
                    "{algorithm} t={time}"
                );
            }
        }
    }

    // SECURITY.md §2: the SHA-512 vector uses the 64-byte seed; with the 20-byte seed the
    // value at t=59 would be 69342147.
    #[test]
    fn sha512_vector_is_not_the_twenty_byte_seed_pitfall() {
        let cfg = config(TotpAlgorithm::Sha512, 8);
        let right = TotpSecret::from_bytes(SEED64.to_vec());
        let wrong = TotpSecret::from_bytes(SEED20.to_vec());
        assert_eq!(cfg.code_at(&right, 1).as_str(), "90693936");
        assert_ne!(cfg.code_at(&right, 1).as_str(), "69342147");
        assert_eq!(cfg.code_at(&wrong, 1).as_str(), "69342147");
        assert_eq!(
            cfg.check(&right, &code("69342147", 8), at(59), None),
            TotpCheck::Rejected
        );
    }

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let cfg = config(TotpAlgorithm::Sha1, 6);
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        for (count, expected) in (0u64..).zip(RFC4226) {
            assert_eq!(
                cfg.code_at(&secret, count).as_str(),
                expected,
                "count {count}"
            );
            let now = at(i64::try_from(count).unwrap() * 30);
            assert_eq!(
                cfg.check(&secret, &code(expected, 6), now, None),
                TotpCheck::Accepted { step: count },
                "count {count}"
            );
        }
    }

    // SECURITY.md #23: T−1 and T+1 accepted, T−2 and T+2 rejected; time from `now` only.
    #[test]
    fn window_is_one_step_either_side() {
        let cfg = TotpConfig::default();
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        let now = at(1_700_000_015);
        let t = cfg.current_step(now).unwrap();
        for (step, expected) in [
            (t - 2, TotpCheck::Rejected),
            (t - 1, TotpCheck::Accepted { step: t - 1 }),
            (t, TotpCheck::Accepted { step: t }),
            (t + 1, TotpCheck::Accepted { step: t + 1 }),
            (t + 2, TotpCheck::Rejected),
        ] {
            let c = cfg.code_at(&secret, step);
            assert_eq!(cfg.check(&secret, &c, now, None), expected, "step {step}");
        }
    }

    #[test]
    fn wider_and_narrower_windows() {
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        let now = at(30 * 100);
        let strict = TotpConfig {
            steps_back: 0,
            steps_ahead: 0,
            ..TotpConfig::default()
        };
        assert_eq!(
            strict.check(&secret, &strict.code_at(&secret, 99), now, None),
            TotpCheck::Rejected
        );
        let wide = TotpConfig {
            steps_back: 2,
            steps_ahead: 2,
            ..TotpConfig::default()
        };
        assert_eq!(
            wide.check(&secret, &wide.code_at(&secret, 98), now, None),
            TotpCheck::Accepted { step: 98 }
        );
        // Near the epoch the negative candidates are skipped.
        assert_eq!(
            wide.check(&secret, &wide.code_at(&secret, 0), at(10), None),
            TotpCheck::Accepted { step: 0 }
        );
    }

    // SECURITY.md #24: each code once; an older step after a newer one is a replay.
    #[test]
    fn replays_are_reported_not_accepted() {
        let cfg = TotpConfig::default();
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        let now = at(1_234_567_890);
        let t = cfg.current_step(now).unwrap();
        let current = cfg.code_at(&secret, t);
        assert_eq!(
            cfg.check(&secret, &current, now, None),
            TotpCheck::Accepted { step: t }
        );
        // Same code again, second login session.
        assert_eq!(
            cfg.check(&secret, &current, now, Some(t)),
            TotpCheck::Reused { step: t }
        );
        // A code for T−1 after T was accepted: a replay, never accepted.
        let previous = cfg.code_at(&secret, t - 1);
        assert_eq!(
            cfg.check(&secret, &previous, now, Some(t)),
            TotpCheck::Reused { step: t - 1 }
        );
        // The next step's code is still fresh.
        let next = cfg.code_at(&secret, t + 1);
        assert_eq!(
            cfg.check(&secret, &next, now, Some(t)),
            TotpCheck::Accepted { step: t + 1 }
        );
        // A wrong code is rejected whatever the last step.
        let wrong = code(
            if current.as_str() == "000000" {
                "111111"
            } else {
                "000000"
            },
            6,
        );
        if [t - 1, t, t + 1]
            .iter()
            .all(|s| cfg.code_at(&secret, *s).as_str() != wrong.as_str())
        {
            assert_eq!(
                cfg.check(&secret, &wrong, now, Some(t)),
                TotpCheck::Rejected
            );
        }
    }

    #[test]
    fn time_past_2038_and_before_1970() {
        let cfg = config(TotpAlgorithm::Sha1, 8);
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        assert_eq!(
            cfg.check(&secret, &code("65353130", 8), at(20_000_000_000), None),
            TotpCheck::Accepted {
                step: 20_000_000_000 / 30
            }
        );
        assert_eq!(cfg.current_step(at(-1)), None);
        let c = cfg.code_at(&secret, 0);
        assert_eq!(cfg.check(&secret, &c, at(-1), None), TotpCheck::Rejected);
        assert_eq!(
            cfg.check(&secret, &c, at(i64::MIN), None),
            TotpCheck::Rejected
        );
        // The far end of time does not overflow.
        let _ = cfg.check(&secret, &c, at(i64::MAX), None);
        let _ = cfg.code_at(&secret, u64::MAX);
    }

    #[test]
    fn code_of_the_wrong_length_is_rejected() {
        let cfg = config(TotpAlgorithm::Sha1, 8);
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        // The 6-digit tail of the 8-digit code at t=59.
        assert_eq!(
            cfg.check(&secret, &code("287082", 6), at(59), None),
            TotpCheck::Rejected
        );
    }

    #[test]
    fn invalid_config_rejects_instead_of_panicking() {
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        for cfg in [
            TotpConfig {
                digits: 10,
                ..TotpConfig::default()
            },
            TotpConfig {
                step: Duration::ZERO,
                ..TotpConfig::default()
            },
        ] {
            assert!(cfg.validate().is_err());
            let c = cfg.code_at(&secret, 1);
            assert_eq!(cfg.check(&secret, &c, at(59), None), TotpCheck::Rejected);
        }
    }

    #[test]
    fn validate_checks_every_range() {
        assert!(TotpConfig::default().validate().is_ok());
        let bad = [
            TotpConfig {
                digits: 5,
                ..TotpConfig::default()
            },
            TotpConfig {
                digits: 9,
                ..TotpConfig::default()
            },
            TotpConfig {
                step: Duration::from_secs(14),
                ..TotpConfig::default()
            },
            TotpConfig {
                step: Duration::from_secs(301),
                ..TotpConfig::default()
            },
            TotpConfig {
                step: Duration::from_millis(30_500),
                ..TotpConfig::default()
            },
            TotpConfig {
                steps_back: 3,
                ..TotpConfig::default()
            },
            TotpConfig {
                steps_ahead: 3,
                ..TotpConfig::default()
            },
            TotpConfig {
                secret_bytes: 19,
                ..TotpConfig::default()
            },
            TotpConfig {
                secret_bytes: 65,
                ..TotpConfig::default()
            },
            TotpConfig {
                issuer: String::new(),
                ..TotpConfig::default()
            },
            TotpConfig {
                issuer: "Acme:Corp".into(),
                ..TotpConfig::default()
            },
            TotpConfig {
                issuer: "Acme\n".into(),
                ..TotpConfig::default()
            },
            TotpConfig {
                issuer: "a".repeat(101),
                ..TotpConfig::default()
            },
        ];
        for cfg in bad {
            assert!(
                matches!(cfg.validate(), Err(MfaError::Config(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn algorithm_names() {
        for (text, algorithm) in [
            ("sha1", TotpAlgorithm::Sha1),
            ("SHA256", TotpAlgorithm::Sha256),
            ("Sha512", TotpAlgorithm::Sha512),
        ] {
            assert_eq!(text.parse::<TotpAlgorithm>().unwrap(), algorithm);
            assert!(algorithm.as_str().eq_ignore_ascii_case(text));
        }
        for bad in ["", "md5", "sha-1", "SHA384", "sha1 "] {
            assert!(bad.parse::<TotpAlgorithm>().is_err(), "{bad:?}");
        }
    }

    // SECURITY.md #25: ≥160 bits from the CSPRNG, unique per user.
    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let a = TotpSecret::generate(&OsRandom, 20).unwrap();
        let b = TotpSecret::generate(&OsRandom, 20).unwrap();
        assert_eq!(a.expose().len(), 20);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(
            TotpSecret::generate(&OsRandom, 64).unwrap().expose().len(),
            64
        );
        assert!(matches!(
            TotpSecret::generate(&OsRandom, 19),
            Err(MfaError::Config(_))
        ));
        assert!(matches!(
            TotpSecret::generate(&OsRandom, 65),
            Err(MfaError::Config(_))
        ));
    }

    #[test]
    fn a_failing_random_source_is_reported() {
        #[derive(Debug)]
        struct Broken;
        impl RandomSource for Broken {
            fn try_fill(&self, _: &mut [u8]) -> Result<(), crate::rng::RandomError> {
                Err(crate::rng::RandomError)
            }
        }
        assert!(matches!(
            TotpSecret::generate(&Broken, 20),
            Err(MfaError::Random)
        ));
    }

    #[test]
    fn base32_matches_rfc4648_and_round_trips() {
        // RFC 4648 §10 test vectors (without padding).
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            let secret = TotpSecret::from_bytes(plain.as_bytes().to_vec());
            assert_eq!(secret.to_base32().as_str(), encoded);
            assert_eq!(base32_decode(encoded).unwrap().as_slice(), plain.as_bytes());
        }
        assert_eq!(
            TotpSecret::from_bytes(SEED20.to_vec()).to_base32().as_str(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let rng = SeededRandom::new(3);
        for len in 20..=64 {
            let secret = TotpSecret::generate(&rng, len).unwrap();
            let text = secret.to_base32();
            assert!(text.bytes().all(|b| BASE32_ALPHABET.contains(&b)));
            let back = TotpSecret::from_base32(&text).unwrap();
            assert_eq!(back.expose(), secret.expose());
            let lower = TotpSecret::from_base32(&text.to_lowercase()).unwrap();
            assert_eq!(lower.expose(), secret.expose());
        }
        assert_eq!(
            TotpSecret::from_base32("MZXW6YQ=").unwrap().expose(),
            b"foob"
        );
        for bad in ["", "MZXW 6", "MZXW1", "MZ=XW", "é"] {
            assert!(TotpSecret::from_base32(bad).is_err(), "{bad:?}");
        }
    }

    fn ring(id: &str, byte: u8) -> KeyRing {
        crate::secret::test_ring(&[(id, byte)])
    }

    #[test]
    fn seal_and_open_are_bound_to_the_user() {
        let sealer = Sealer::new(&ring("k1", 9));
        let alice = UserId::from_stored("alice-id".into());
        let bob = UserId::from_stored("bob-id".into());
        let secret = TotpSecret::generate(&OsRandom, 20).unwrap();
        let sealed = secret.seal(&sealer, &alice, &OsRandom).unwrap();
        assert!(sealed.starts_with("v1.k1."));
        assert!(!sealed.contains(secret.to_base32().as_str()));
        let opened = TotpSecret::open(&sealer, &sealed, &alice).unwrap();
        assert_eq!(opened.expose(), secret.expose());
        assert!(matches!(
            TotpSecret::open(&sealer, &sealed, &bob),
            Err(MfaError::Crypto(crate::crypto::CryptoError::Decrypt))
        ));
        assert!(matches!(
            TotpSecret::open(&sealer, "garbage", &alice),
            Err(MfaError::Crypto(_))
        ));
    }

    #[test]
    fn debug_output_hides_secrets_and_codes() {
        let secret = TotpSecret::from_bytes(SEED20.to_vec());
        let c = TotpConfig::default().code_at(&secret, 1);
        let shown = format!("{secret:?} {c:?}");
        assert_eq!(shown, "TotpSecret([REDACTED]) TotpCode([REDACTED])");
        assert!(!shown.contains("287082") && !shown.contains("1234"));
        // Errors name no input either.
        let err = TotpCode::parse("12345x", 6).unwrap_err();
        assert!(!err.to_string().contains("12345"));
    }

    #[test]
    fn code_parsing_table() {
        let ok: [(&str, u8, &str); 11] = [
            ("123456", 6, "123456"),
            ("  123456\n", 6, "123456"),
            ("123 456", 6, "123456"),
            ("123-456", 6, "123456"),
            ("12 3456", 6, "123456"),
            ("12 34 56", 6, "123456"),
            ("000000", 6, "000000"),
            ("1234567", 7, "1234567"),
            ("1234 5678", 8, "12345678"),
            ("\t12345678 ", 8, "12345678"),
            ("123-45 678", 8, "12345678"),
        ];
        for (input, digits, bare) in ok {
            assert_eq!(
                TotpCode::parse(input, digits).map(|c| c.as_str().to_owned()),
                Ok(bare.to_owned()),
                "{input:?}"
            );
        }
        let bad: [(&str, u8, CodeError); 21] = [
            ("", 6, CodeError::WrongLength),
            ("   ", 6, CodeError::WrongLength),
            ("12345", 6, CodeError::WrongLength),
            ("1234567", 6, CodeError::WrongLength),
            ("123456", 8, CodeError::WrongLength),
            ("123456", 5, CodeError::WrongLength),
            ("123456789", 9, CodeError::WrongLength),
            ("١٢٣٤٥٦", 6, CodeError::Malformed),
            ("１２３４５６", 6, CodeError::Malformed),
            ("+12345", 6, CodeError::Malformed),
            ("-123456", 6, CodeError::Malformed),
            ("123456-", 6, CodeError::Malformed),
            ("123  456", 6, CodeError::Malformed),
            ("123--456", 6, CodeError::Malformed),
            ("123 - 456", 6, CodeError::Malformed),
            ("123_456", 6, CodeError::Malformed),
            ("12345a", 6, CodeError::Malformed),
            ("123\u{0}456", 6, CodeError::Malformed),
            ("123\t456", 6, CodeError::Malformed),
            ("1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7", 6, CodeError::TooLong),
            (
                "                                 123456",
                6,
                CodeError::TooLong,
            ),
        ];
        for (input, digits, err) in bad {
            assert_eq!(
                TotpCode::parse(input, digits).map(|c| c.as_str().to_owned()),
                Err(err),
                "{input:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn code_parse_never_panics(input in ".{0,40}", digits in 0u8..12) {
            if let Ok(c) = TotpCode::parse(&input, digits) {
                prop_assert_eq!(c.as_str().len(), usize::from(digits));
                prop_assert!(c.as_str().bytes().all(|b| b.is_ascii_digit()));
                let again = TotpCode::parse(c.as_str(), digits).unwrap();
                prop_assert_eq!(again.as_str(), c.as_str());
            }
        }

        #[test]
        fn code_parse_accepts_digit_strings(code in "[0-9]{6,8}") {
            let digits = u8::try_from(code.len()).unwrap();
            let parsed = TotpCode::parse(&code, digits).unwrap();
            prop_assert_eq!(parsed.as_str(), code.as_str());
        }

        #[test]
        fn check_never_panics(now in any::<i64>(), last in any::<Option<u64>>(), code in "[0-9]{6}") {
            let cfg = TotpConfig::default();
            let secret = TotpSecret::from_bytes(SEED20.to_vec());
            let result = cfg.check(&secret, &TotpCode::parse(&code, 6).unwrap(), Timestamp::from_unix_seconds(now), last);
            if let TotpCheck::Accepted { step } = result {
                prop_assert!(last.is_none_or(|l| step > l));
            }
        }
    }
}
