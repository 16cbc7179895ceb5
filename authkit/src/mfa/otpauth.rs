//! `otpauth://totp/` key URIs (the de facto format of authenticator apps' QR codes).
//!
//! Written as
//! `otpauth://totp/<Issuer>:<account>?secret=<BASE32>&issuer=<Issuer>&algorithm=SHA1&digits=6&period=30`
//! with issuer and account percent-encoded (everything but `A–Z a–z 0–9 - . _ ~`, so spaces are
//! `%20`) and algorithm, digits and period always present: some apps assume defaults that
//! differ from ours when a parameter is missing.
//!
//! **Colons.** `:` separates issuer and account in the label, and implementations disagree on
//! whether an encoded `%3A` separates too (the Key URI format says yes, pyotp says no), so
//! neither name may contain one in any form:
//! - an issuer with `:` is a configuration error ([`TotpConfig::validate`] refuses it);
//! - in an account name each `:` is replaced by `_` (account names come from users, e.g. an
//!   e-mail address, and must not make enrolment fail);
//! - [`parse_otpauth_uri`] splits the label at the first `:` or `%3A` and refuses a label
//!   whose account part still holds a colon.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use super::MfaError;
use super::totp::{TotpAlgorithm, TotpConfig, TotpSecret, validate_issuer};

/// Longest URI [`parse_otpauth_uri`] looks at, in bytes.
pub const MAX_OTPAUTH_URI_LEN: usize = 4096;
/// Longest account name written into a URI, in bytes (after `:` replacement).
const MAX_ACCOUNT_LEN: usize = 256;
/// Shortest secret written or read: RFC 4226 §4 R6's 128 bits.
const MIN_URI_SECRET_BYTES: usize = 16;

/// Percent-encoded in labels and query values: all but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl TotpConfig {
    /// The `otpauth://totp/` URI that enrols `secret` for `account_name` (normally the user's
    /// e-mail address) in an authenticator app; show it as a QR code ([`super::qr_svg`],
    /// [`super::qr_png_data_uri`]) and as the base32 secret for manual entry.
    ///
    /// Refuses an invalid configuration ([`TotpConfig::validate`]), an empty account name, one
    /// longer than 256 bytes or with control characters, and a secret under 16 bytes
    /// ([`MfaError::Config`]). Each `:` in the account name becomes `_`: `:` separates issuer
    /// and account in the label, and apps disagree on whether `%3A` does too, so no colon is
    /// written in any form (the issuer cannot contain one either: `validate` refuses it).
    pub fn otpauth_uri(
        &self,
        secret: &TotpSecret,
        account_name: &str,
    ) -> Result<Zeroizing<String>, MfaError> {
        self.validate()?;
        let account = safe_account_name(account_name)?;
        if secret.expose().len() < MIN_URI_SECRET_BYTES {
            return Err(MfaError::Config("TOTP secret shorter than 128 bits"));
        }
        let issuer = utf8_percent_encode(&self.issuer, COMPONENT).to_string();
        let account = utf8_percent_encode(&account, COMPONENT).to_string();
        let secret = secret.to_base32();
        // Sized up front (numbers and keys fit in the 96 spare bytes) so the secret is never
        // left behind in a reallocated, unwiped buffer.
        let mut uri = Zeroizing::new(String::with_capacity(
            2 * issuer.len() + account.len() + secret.len() + 96,
        ));
        uri.push_str("otpauth://totp/");
        uri.push_str(&issuer);
        uri.push(':');
        uri.push_str(&account);
        uri.push_str("?secret=");
        uri.push_str(&secret);
        uri.push_str("&issuer=");
        uri.push_str(&issuer);
        uri.push_str("&algorithm=");
        uri.push_str(self.algorithm.as_str());
        // Writing to a `String` cannot fail.
        let _ = write!(
            uri,
            "&digits={}&period={}",
            self.digits,
            self.step.as_secs()
        );
        Ok(uri)
    }
}

/// The account name as written into a URI: `:` replaced by `_`.
fn safe_account_name(account: &str) -> Result<String, MfaError> {
    if account.is_empty() {
        return Err(MfaError::Config("TOTP account name must not be empty"));
    }
    if account.chars().any(char::is_control) {
        return Err(MfaError::Config(
            "TOTP account name must not contain control characters",
        ));
    }
    let safe = account.replace(':', "_");
    if safe.len() > MAX_ACCOUNT_LEN {
        return Err(MfaError::Config(
            "TOTP account name must be at most 256 bytes",
        ));
    }
    Ok(safe)
}

/// What an `otpauth://totp/` URI says. `Debug` shows everything but the secret.
#[derive(Debug)]
pub struct OtpAuth {
    /// The issuer, from the label prefix or the `issuer` parameter (equal when both are given).
    pub issuer: Option<String>,
    /// The account name.
    pub account: String,
    /// `algorithm` (default SHA1).
    pub algorithm: TotpAlgorithm,
    /// `digits` (default 6).
    pub digits: u8,
    /// `period` in seconds (default 30).
    pub period: u64,
    /// The decoded `secret`.
    pub secret: TotpSecret,
}

impl OtpAuth {
    /// A [`TotpConfig`] with this URI's algorithm, digits, period and issuer (the default
    /// issuer when the URI names none) and the default window.
    pub fn totp_config(&self) -> TotpConfig {
        let mut config = TotpConfig {
            algorithm: self.algorithm,
            digits: self.digits,
            step: std::time::Duration::from_secs(self.period),
            ..TotpConfig::default()
        };
        if let Some(issuer) = &self.issuer {
            config.issuer.clone_from(issuer);
        }
        config
    }
}

/// Parses an `otpauth://totp/` URI (as [`TotpConfig::otpauth_uri`] writes, and as other
/// issuers write them).
///
/// Input over [`MAX_OTPAUTH_URI_LEN`] bytes is refused before anything else. Scheme and type
/// are case-insensitive; `hotp` URIs are refused. The label is split at the first `:` or
/// `%3A` (spaces before the account are skipped); issuer and account are percent-decoded
/// once, must be UTF-8, non-empty, free of control characters and (the account) of `:`.
/// Query values decode `+` as a space. `secret` is required (base32, ≥ 16 bytes); `digits`
/// must be 6–8 and `period` 15–300 (what [`TotpConfig`] accepts); `algorithm` is
/// SHA1/SHA256/SHA512 in any case. A repeated parameter, a bad percent escape, a fragment, or
/// an `issuer` parameter that differs from the label's issuer are refused. Unknown
/// parameters are ignored. Every failure is [`MfaError::InvalidUri`].
pub fn parse_otpauth_uri(uri: &str) -> Result<OtpAuth, MfaError> {
    if uri.len() > MAX_OTPAUTH_URI_LEN {
        return Err(MfaError::InvalidUri);
    }
    let rest = strip_prefix_ignore_case(uri, "otpauth://").ok_or(MfaError::InvalidUri)?;
    let rest = strip_prefix_ignore_case(rest, "totp/").ok_or(MfaError::InvalidUri)?;
    if rest.contains('#') {
        return Err(MfaError::InvalidUri);
    }
    let (label, query) = rest.split_once('?').unwrap_or((rest, ""));

    let (issuer_raw, account_raw) = split_label(label);
    let account = decode_name(account_raw.trim_start_matches(' '), false)?;
    if account.contains(':') {
        return Err(MfaError::InvalidUri);
    }
    let label_issuer = issuer_raw.map(|raw| decode_name(raw, false)).transpose()?;

    let mut secret = None;
    let mut param_issuer = None;
    let mut algorithm = None;
    let mut digits = None;
    let mut period = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "secret" => {
                let text = decode(value, true)?;
                let parsed = TotpSecret::from_base32(&text)?;
                set_once(&mut secret, parsed)?;
            }
            "issuer" => set_once(&mut param_issuer, decode_name(value, true)?)?,
            "algorithm" => {
                let parsed = decode(value, true)?
                    .parse::<TotpAlgorithm>()
                    .map_err(|_| MfaError::InvalidUri)?;
                set_once(&mut algorithm, parsed)?;
            }
            "digits" => {
                let parsed = decimal(&decode(value, true)?)
                    .filter(|d| (6..=8).contains(d))
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or(MfaError::InvalidUri)?;
                set_once(&mut digits, parsed)?;
            }
            "period" => {
                let parsed = decimal(&decode(value, true)?)
                    .filter(|p| (15..=300).contains(p))
                    .ok_or(MfaError::InvalidUri)?;
                set_once(&mut period, parsed)?;
            }
            _ => {}
        }
    }

    let secret = secret.ok_or(MfaError::InvalidUri)?;
    if secret.expose().len() < MIN_URI_SECRET_BYTES {
        return Err(MfaError::InvalidUri);
    }
    let issuer = match (label_issuer, param_issuer) {
        (Some(a), Some(b)) if a != b => return Err(MfaError::InvalidUri),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    // The same rules as a configured issuer: no ':', no control characters, 1-100 bytes.
    if issuer
        .as_deref()
        .is_some_and(|i| validate_issuer(i).is_err())
    {
        return Err(MfaError::InvalidUri);
    }
    Ok(OtpAuth {
        issuer,
        account,
        algorithm: algorithm.unwrap_or(TotpAlgorithm::Sha1),
        digits: digits.unwrap_or(6),
        period: period.unwrap_or(30),
        secret,
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Splits a still-encoded label at the first `:` or `%3A`.
fn split_label(label: &str) -> (Option<&str>, &str) {
    let bytes = label.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let separator_len = match b {
            b':' => 1,
            b'%' if matches!(bytes.get(i + 1..i + 3), Some([b'3', b'a' | b'A'])) => 3,
            _ => continue,
        };
        if let (Some(issuer), Some(account)) = (label.get(..i), label.get(i + separator_len..)) {
            return (Some(issuer), account);
        }
    }
    (None, label)
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), MfaError> {
    if slot.is_some() {
        return Err(MfaError::InvalidUri);
    }
    *slot = Some(value);
    Ok(())
}

/// A short unsigned decimal: ASCII digits only (no sign), at most 4 of them.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A decoded issuer or account name: non-empty, without control characters.
fn decode_name(raw: &str, plus_is_space: bool) -> Result<String, MfaError> {
    let text = decode(raw, plus_is_space)?;
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(MfaError::InvalidUri);
    }
    Ok(text.to_string())
}

/// Strict percent-decoding to UTF-8 (`%` must be followed by two hex digits). Zeroizing,
/// since it also decodes the secret.
fn decode(raw: &str, plus_is_space: bool) -> Result<Zeroizing<String>, MfaError> {
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(MfaError::InvalidUri);
                };
                out.push((hi << 4) | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    if std::str::from_utf8(&out).is_err() {
        return Err(MfaError::InvalidUri);
    }
    // Valid UTF-8 was just checked, so this takes the buffer without copying it.
    String::from_utf8(std::mem::take(&mut *out))
        .map(Zeroizing::new)
        .map_err(|_| MfaError::InvalidUri)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRandom;
    use proptest::prelude::*;

    const SEED20: &[u8] = b"12345678901234567890";

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(SEED20.to_vec())
    }

    #[test]
    fn writes_every_parameter() {
        let uri = TotpConfig::default()
            .otpauth_uri(&secret(), "alice@example.com")
            .unwrap();
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/authkit:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=authkit&algorithm=SHA1&digits=6&period=30"
        );
        let cfg = TotpConfig {
            issuer: "Acme Corp & Co".into(),
            algorithm: TotpAlgorithm::Sha512,
            digits: 8,
            step: std::time::Duration::from_secs(60),
            ..TotpConfig::default()
        };
        let uri = cfg.otpauth_uri(&secret(), "bob smith+x@例え.jp").unwrap();
        assert!(
            uri.starts_with(
                "otpauth://totp/Acme%20Corp%20%26%20Co:bob%20smith%2Bx%40%E4%BE%8B%E3%81%88.jp?"
            ),
            "{}",
            uri.as_str()
        );
        assert!(
            uri.ends_with("&issuer=Acme%20Corp%20%26%20Co&algorithm=SHA512&digits=8&period=60")
        );
        let parsed = parse_otpauth_uri(&uri).unwrap();
        assert_eq!(parsed.issuer.as_deref(), Some("Acme Corp & Co"));
        assert_eq!(parsed.account, "bob smith+x@例え.jp");
        assert_eq!(parsed.algorithm, TotpAlgorithm::Sha512);
        assert_eq!((parsed.digits, parsed.period), (8, 60));
        assert_eq!(parsed.secret.expose(), SEED20);
        let back = parsed.totp_config();
        assert_eq!(back.issuer, "Acme Corp & Co");
        assert_eq!(back.step.as_secs(), 60);
        assert!(back.validate().is_ok());
    }

    #[test]
    fn colons_never_reach_the_label() {
        let cfg = TotpConfig::default();
        let uri = cfg.otpauth_uri(&secret(), "a:b:c").unwrap();
        assert!(uri.starts_with("otpauth://totp/authkit:a_b_c?"));
        assert_eq!(parse_otpauth_uri(&uri).unwrap().account, "a_b_c");
        let bad_issuer = TotpConfig {
            issuer: "Evil:Corp".into(),
            ..TotpConfig::default()
        };
        assert!(matches!(
            bad_issuer.otpauth_uri(&secret(), "a"),
            Err(MfaError::Config(_))
        ));
    }

    #[test]
    fn refuses_bad_account_names_and_short_secrets() {
        let cfg = TotpConfig::default();
        for bad in ["", "a\nb", "\u{7f}", &"x".repeat(257)] {
            assert!(
                matches!(cfg.otpauth_uri(&secret(), bad), Err(MfaError::Config(_))),
                "{bad:?}"
            );
        }
        let short = TotpSecret::from_bytes(vec![1; 15]);
        assert!(matches!(
            cfg.otpauth_uri(&short, "a"),
            Err(MfaError::Config(_))
        ));
    }

    #[test]
    fn parses_other_writers_uris() {
        // The Key URI format's own example.
        let google = parse_otpauth_uri(
            "otpauth://totp/Example:alice@google.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Example",
        )
        .unwrap();
        assert_eq!(google.issuer.as_deref(), Some("Example"));
        assert_eq!(google.account, "alice@google.com");
        assert_eq!(google.algorithm, TotpAlgorithm::Sha1);
        assert_eq!((google.digits, google.period), (6, 30));
        assert_eq!(google.secret.expose(), SEED20);
        // Encoded separator, spaces after it, lower-case names, padding, '+' as space.
        let other = parse_otpauth_uri(
            "OTPAUTH://TOTP/ACME%20Co%3A%20john.doe@email.com?secret=gezdgnbvgy3tqojqgezdgnbvgy3tqojq====\
             &issuer=ACME+Co&algorithm=sha256&digits=8&period=60&image=x",
        )
        .unwrap();
        assert_eq!(other.issuer.as_deref(), Some("ACME Co"));
        assert_eq!(other.account, " john.doe@email.com");
        assert_eq!(other.algorithm, TotpAlgorithm::Sha256);
        // Literal spaces before the account are skipped.
        let spaced =
            parse_otpauth_uri("otpauth://totp/ACME:  john?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
                .unwrap();
        assert_eq!(spaced.account, "john");
        // No issuer at all.
        let bare = parse_otpauth_uri("otpauth://totp/john?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
            .unwrap();
        assert_eq!((bare.issuer, bare.account.as_str()), (None, "john"));
    }

    #[test]
    fn refuses_malformed_uris() {
        let long = format!(
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&x={}",
            "a".repeat(MAX_OTPAUTH_URI_LEN)
        );
        for bad in [
            "",
            "otpauth://",
            "otpauth://totp/",
            "otpauth://hotp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=1",
            "http://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/a",
            "otpauth://totp/a?secret=",
            "otpauth://totp/a?secret=JBSWY3DPEHPK3PX1",
            "otpauth://totp/a?secret=JBSWY3DP",
            // 80 bits (the Key URI format's own example): under RFC 4226's 128-bit minimum.
            "otpauth://totp/a?secret=JBSWY3DPEHPK3PXP",
            "otpauth://totp/?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/I:?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/:a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/I:a:b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/I:a%3Ab?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/a%ZZ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/a%?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/a%FF?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/a%0A?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/I:a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=J",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=I%3AJ",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=MD5",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=5",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=9",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=+6",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=06000",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=0",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=-30",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=99999999999999999999",
            "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ#frag",
            &long,
        ] {
            assert!(
                matches!(parse_otpauth_uri(bad), Err(MfaError::InvalidUri)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let uri = TotpConfig::default()
            .otpauth_uri(&secret(), "alice")
            .unwrap();
        let parsed = parse_otpauth_uri(&uri).unwrap();
        let shown = format!("{parsed:?}");
        assert!(shown.contains("TotpSecret([REDACTED])"), "{shown}");
        assert!(
            !shown.contains("GEZDGNBV") && !shown.contains("49, 50"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,200}") {
            let _ = parse_otpauth_uri(&input);
            let _ = parse_otpauth_uri(&format!("otpauth://totp/{input}"));
        }

        #[test]
        fn build_then_parse_round_trips(
            issuer in "[^:\\p{C}]{1,20}",
            account in "\\PC{1,60}",
            algorithm in prop_oneof![
                Just(TotpAlgorithm::Sha1),
                Just(TotpAlgorithm::Sha256),
                Just(TotpAlgorithm::Sha512),
            ],
            digits in 6u8..=8,
            period in 15u64..=300,
            seed in any::<u64>(),
        ) {
            let cfg = TotpConfig {
                issuer: issuer.clone(),
                algorithm,
                digits,
                step: std::time::Duration::from_secs(period),
                ..TotpConfig::default()
            };
            let secret = TotpSecret::generate(&SeededRandom::new(seed), 20).unwrap();
            let uri = cfg.otpauth_uri(&secret, &account).unwrap();
            let parsed = parse_otpauth_uri(&uri).unwrap();
            prop_assert_eq!(parsed.issuer.as_deref(), Some(issuer.as_str()));
            prop_assert_eq!(parsed.account, account.replace(':', "_"));
            prop_assert_eq!(parsed.algorithm, algorithm);
            prop_assert_eq!(parsed.digits, digits);
            prop_assert_eq!(parsed.period, period);
            prop_assert_eq!(parsed.secret.expose(), secret.expose());
        }
    }
}
