//! The session cookie as it arrives: a whole `Cookie` header, split like `tower-cookies` does,
//! every value fed to `SessionToken::parse`. Whatever parses must be the canonical 43-character
//! spelling of its bytes (SECURITY.md #5) and keep its hash across a round trip (#6).

#![no_main]

use authkit::session::{SessionToken, TOKEN_TEXT_LEN};
use cookie::Cookie;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    for cookie in Cookie::split_parse(header).flatten() {
        for candidate in [cookie.value(), cookie.value_trimmed(), cookie.name()] {
            check(candidate);
        }
    }
    // The raw header too: a client may send the bare value.
    check(header);
});

fn check(text: &str) {
    let Some(token) = SessionToken::parse(text) else {
        return;
    };
    let cookie_value = token.to_cookie_value();
    assert_eq!(text.len(), TOKEN_TEXT_LEN);
    assert_eq!(
        cookie_value, text,
        "a token has exactly one accepted spelling"
    );
    let again = SessionToken::parse(&cookie_value).expect("the cookie form parses");
    assert_eq!(again.hash(), token.hash());
    assert!(
        !format!("{token:?}").contains(text),
        "Debug leaks the token"
    );
}
