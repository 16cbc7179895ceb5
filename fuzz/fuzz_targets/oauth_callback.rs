//! The OAuth callback's query string: hostile input from any browser. Parsing arbitrary bytes
//! never panics; what parses has exactly one of a code and an error, no control characters
//! and bounded values; and the redirect target a stored transaction carries is re-checked
//! (`RedirectTarget::check`) to stay same-origin or allow-listed.
//!
//! Input: the raw query string (also used as a redirect target candidate).

#![no_main]

use authkit::csrf::Origin;
use authkit::oauth::{CallbackParams, ProviderErrorCode, RedirectTarget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = CallbackParams::parse(query) {
        let ok = |v: &str| !v.is_empty() && v.len() <= 2048 && !v.chars().any(char::is_control);
        match &params.outcome {
            Ok(code) => assert!(ok(code)),
            Err(ProviderErrorCode::Other(Some(word))) => {
                assert!(word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            }
            Err(_) => {}
        }
        if let Some(state) = &params.state {
            assert!(ok(state));
        }
        if let Some(iss) = &params.issuer {
            assert!(ok(iss));
        }
    }
    let Ok(public) = Origin::parse("https://app.example.com") else {
        return;
    };
    let target = RedirectTarget::sanitize(query, &public, &[]);
    let t = target.as_str();
    assert!(
        t.starts_with("https://app.example.com/") || (t.starts_with('/') && !t.starts_with("//")),
        "{t:?}"
    );
});
