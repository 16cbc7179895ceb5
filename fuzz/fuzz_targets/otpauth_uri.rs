//! `otpauth://` URIs: parsing arbitrary text never panics, and a URI built from fuzzed issuer
//! and account names (whenever the configuration accepts them) parses back to the same
//! issuer, account (with `:` replaced by `_`), parameters and secret.
//!
//! Input: the text to parse as a URI; it is also split at the first NUL into issuer and
//! account for the build → parse round trip, and its first byte picks the parameters.

#![no_main]

use std::time::Duration;

use authkit::mfa::{TotpAlgorithm, TotpConfig, TotpSecret, parse_otpauth_uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = parse_otpauth_uri(text) {
        assert!(text.len() <= authkit::mfa::MAX_OTPAUTH_URI_LEN);
        assert!((6..=8).contains(&parsed.digits));
        assert!((15..=300).contains(&parsed.period));
        assert!(parsed.secret.expose().len() >= 16);
        assert!(!parsed.account.is_empty() && !parsed.account.contains(':'));
        if let Some(issuer) = &parsed.issuer {
            assert!(!issuer.is_empty() && !issuer.contains(':'));
        }
        // What parsed is a valid configuration.
        assert!(parsed.totp_config().validate().is_ok());
    }

    let Some((issuer, account)) = text.split_once('\0') else {
        return;
    };
    let selector = data.first().copied().unwrap_or(0);
    let mut config = TotpConfig::default();
    config.issuer = issuer.to_owned();
    config.algorithm = match selector % 3 {
        0 => TotpAlgorithm::Sha1,
        1 => TotpAlgorithm::Sha256,
        _ => TotpAlgorithm::Sha512,
    };
    config.digits = 6 + (selector / 3) % 3;
    config.step = Duration::from_secs(15 + u64::from(selector));
    if config.validate().is_err() {
        return;
    }
    let secret = TotpSecret::from_bytes((0..20).map(|i| selector ^ i).collect());
    let Ok(uri) = config.otpauth_uri(&secret, account) else {
        return;
    };
    let parsed = match parse_otpauth_uri(&uri) {
        Ok(parsed) => parsed,
        Err(e) => panic!("our own URI did not parse: {e}"),
    };
    assert_eq!(parsed.issuer.as_deref(), Some(issuer));
    assert_eq!(parsed.account, account.replace(':', "_"));
    assert_eq!(parsed.algorithm, config.algorithm);
    assert_eq!(parsed.digits, config.digits);
    assert_eq!(parsed.period, config.step.as_secs());
    assert_eq!(parsed.secret.expose(), secret.expose());
});
