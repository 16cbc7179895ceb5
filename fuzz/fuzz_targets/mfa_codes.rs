//! Codes as users type them: TOTP codes (6–8 digits) and backup codes. Parsing never panics,
//! whatever parses is in canonical form and parses back to itself, and checking a code at any
//! time (including before 1970 and at the end of `i64`) never panics.
//!
//! Input: the typed text, optionally followed by a NUL and up to 8 bytes of big-endian `now`
//! (seconds; without them `now` is 59, where the RFC 6238 vector `94287082` is valid).

#![no_main]

use authkit::clock::Timestamp;
use authkit::mfa::{BackupCode, TotpCheck, TotpCode, TotpConfig, TotpSecret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, now) = match data.iter().position(|&b| b == 0) {
        Some(nul) => {
            let (text, rest) = data.split_at(nul);
            let mut be = [0u8; 8];
            for (slot, b) in be.iter_mut().rev().zip(rest.iter().skip(1).rev()) {
                *slot = *b;
            }
            (text, i64::from_be_bytes(be))
        }
        None => (data, 59),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
    let now = Timestamp::from_unix_seconds(now);

    for digits in 6..=8u8 {
        let Ok(code) = TotpCode::parse(text, digits) else {
            continue;
        };
        let bare = code.as_str();
        assert_eq!(bare.len(), usize::from(digits));
        assert!(bare.bytes().all(|b| b.is_ascii_digit()));
        let again = TotpCode::parse(bare, digits).map(|c| c.as_str().to_owned());
        assert_eq!(again.as_deref(), Ok(bare));

        let mut config = TotpConfig::default();
        config.digits = digits;
        let result = config.check(&secret, &code, now, None);
        if now.unix_seconds() < 0 {
            assert_eq!(result, TotpCheck::Rejected);
        }
        if let TotpCheck::Accepted { step } = result {
            // An accepted code is the code of its step, and that step is in the window.
            assert_eq!(config.code_at(&secret, step).as_str(), bare);
            let current = config.current_step(now).unwrap_or(0);
            assert!(step + 1 >= current && step <= current.saturating_add(1));
            // The same code again is a replay.
            assert_eq!(
                config.check(&secret, &code, now, Some(step)),
                TotpCheck::Reused { step }
            );
        }
    }

    if let Ok(code) = BackupCode::parse(text) {
        let shown = code.as_str();
        assert_eq!(shown.len(), 29);
        assert!(
            shown
                .bytes()
                .all(|b| b == b'-' || b"0123456789abcdefghjkmnpqrstvwxyz".contains(&b))
        );
        assert_eq!(BackupCode::parse(shown).ok().as_ref(), Some(&code));
    }
});
