//! Auth request bodies: the same bytes through every body type, both with plain
//! `serde_json::from_slice` and the way the service's extractor reads them
//! (`serde_path_to_error` + `Deserializer::end`), then the checks a handler runs next.

#![no_main]

use authkit::password::PasswordPolicy;
use authkit::secret::ExposeSecret as _;
use authkit::service::{
    ChangePassword, Credentials, EmailOnly, Reauthenticate, ResendBody, ResetPassword, TokenBody,
};
use authkit::user::Email;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// Parses like `serde_json::from_slice` and like the service's `JsonBody`, and checks that the
/// two agree on whether the body is acceptable.
fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    let plain = serde_json::from_slice::<T>(data);
    let mut de = serde_json::Deserializer::from_slice(data);
    let extracted = serde_path_to_error::deserialize::<_, T>(&mut de)
        .ok()
        .filter(|_| de.end().is_ok());
    assert_eq!(
        plain.is_ok(),
        extracted.is_some(),
        "from_slice and the service extractor disagree"
    );
    plain.ok()
}

fuzz_target!(|data: &[u8]| {
    let policy = PasswordPolicy::default();
    if let Some(body) = parse::<Credentials>(data) {
        let email = Email::parse(&body.email);
        if let Ok(email) = &email {
            let s = email.as_str();
            assert!(!s.is_empty() && s.len() <= authkit::user::MAX_EMAIL_LEN);
            assert_eq!(s.matches('@').count(), 1);
        }
        let password = body.password.expose_secret();
        let _ = policy.check_length(password);
        let verdict = policy.check(password, email.as_ref().ok());
        if policy.check_length(password).is_err() {
            assert!(verdict.is_err(), "check accepts what check_length refuses");
        }
    }
    if let Some(body) = parse::<Reauthenticate>(data) {
        for secret in [&body.password, &body.code].into_iter().flatten() {
            let _ = policy.check_length(secret.expose_secret());
        }
    }
    if let Some(body) = parse::<ChangePassword>(data) {
        let _ = policy.check_length(body.current_password.expose_secret());
        let _ = policy.check(body.new_password.expose_secret(), None);
    }
    // The address of `password/forgot` is one string: arrays and objects never parse
    // (GitLab CVE-2023-7028).
    if let Some(body) = parse::<EmailOnly>(data) {
        let _ = Email::parse(&body.email);
    }
    if let Some(body) = parse::<ResendBody>(data) {
        if let Some(e) = &body.email {
            let _ = Email::parse(e);
        }
    }
    let _ = parse::<TokenBody>(data);
    if let Some(body) = parse::<ResetPassword>(data) {
        let _ = policy.check(body.new_password.expose_secret(), None);
    }
});
