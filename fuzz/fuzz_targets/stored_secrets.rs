//! Stored and presented secrets that arrive from outside: legacy password hashes (an import
//! file, a migrated database) and device cookies (any browser). Neither may panic, and each
//! must refuse anything it would not itself produce.

#![no_main]

use authkit::clock::Timestamp;
use authkit::password::HashKind;
use authkit::ratelimit::{DeviceCookieConfig, DeviceCookies};
use authkit::secret::{KeyId, KeyRing, SecretKey};
use authkit::user::UserId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Legacy and argon2 hashes: classification never panics, and whatever is recognised is
    // within the documented bounds (every supported form is far below 512 bytes).
    if let Some(kind) = HashKind::identify(text) {
        assert!(text.len() <= 512, "{kind} accepted an over-long string");
        assert!(!kind.as_str().is_empty());
    }
    // Device cookies: strict parsing; an input that verifies must re-encode to itself (one
    // text per signed value), which random input essentially never does.
    let Ok(key) = SecretKey::new(vec![7; 32]) else {
        return;
    };
    let Ok(id) = KeyId::new("k1") else {
        return;
    };
    let Ok(ring) = KeyRing::new(vec![(id, key)]) else {
        return;
    };
    let cookies = DeviceCookies::new(ring, DeviceCookieConfig::default());
    let user = UserId::from_stored("00000000-0000-4000-8000-000000000000".to_owned());
    let now = Timestamp::from_unix_seconds(1_800_000_000);
    if let Some(device) = cookies.verify(text, &user, "", now) {
        panic!("a fuzzed device cookie verified: {device}");
    }
});
