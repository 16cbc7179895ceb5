//! Accounts imported with legacy password hashes (bcrypt, PBKDF2-SHA256, Django) verify through
//! the public hasher of a built `AuthKit` and ask for an argon2id rehash (SECURITY.md #18),
//! while bcrypt's 72-byte truncation never lets a longer password in (SECURITY.md #16,
//! real-world bug 9).
//!
//! Vectors were made independently of this crate: Python's `bcrypt` 5.0, passlib 1.7.4,
//! Django 5.2 and `hashlib.pbkdf2_hmac`.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use authkit::AuthKit;
use authkit::clock::{ManualClock, Timestamp};
use authkit::password::{HashKind, Verification};
use authkit::rng::OsRandom;
use authkit::secrets::SecretKeys;
use authkit::store::{MemoryStore, NewUser};
use authkit::user::{Email, UserId};
use secrecy::SecretString;

const PASSWORD: &str = "correct horse battery staple";

/// `bcrypt.hashpw(PASSWORD, gensalt(5))`.
const BCRYPT: &str = "$2b$05$P9UdwfeZwAmSwLFXtORG7O/QGRHg0yAgzwSY/18kDBctcvXweqti6";
/// `bcrypt.hashpw(SEVENTY_TWO, gensalt(4))`: also what a truncating bcrypt stored for any
/// longer password starting with these 72 bytes.
const BCRYPT_72: &str = "$2b$04$kAzmbw5q3KgCuVUJjHtl/.FSWEpFFyY3EBlp5HOzgWy7TwrhpuwhK";
/// RustCrypto PHC form: `hashlib.pbkdf2_hmac("sha256", PASSWORD, bytes(range(16)), 1000)`.
const PBKDF2_PHC: &str =
    "$pbkdf2-sha256$i=1000$AAECAwQFBgcICQoLDA0ODw$ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4";
/// passlib `pbkdf2_sha256.using(rounds=1000, salt=…).hash(PASSWORD)`.
const PASSLIB: &str =
    "$pbkdf2-sha256$1000$........AAECA//./fz7.g$dX.mkoD35COC6upthSuL/tvKYvpRGZ7V285165i1Rfo";
/// Django `PBKDF2PasswordHasher().encode(PASSWORD, "Zk9mQ2pLc3R1", iterations=260000)`.
const DJANGO: &str =
    "pbkdf2_sha256$260000$Zk9mQ2pLc3R1$0EkamPl+ej8G9tXyk6EwSlt5JBrN9erRLaz27WpmYJ0=";

fn seventy_two() -> String {
    "0123456789".repeat(8).chars().take(72).collect()
}

async fn kit() -> AuthKit {
    AuthKit::builder()
        .store(Arc::new(MemoryStore::new()))
        .keys(SecretKeys::generate(&OsRandom).unwrap())
        .clock(Arc::new(ManualClock::new(Timestamp::from_unix_seconds(
            1_800_000_000,
        ))))
        .max_concurrent_hashes(2)
        .build()
        .await
        .unwrap()
}

/// Creates a user with `stored` as its hash and reads the stored hash back.
async fn user_with(kit: &AuthKit, email: &str, stored: &str) -> String {
    let email = Email::parse(email).unwrap();
    kit.store()
        .create_user(NewUser {
            id: UserId::generate(&OsRandom).unwrap(),
            email: email.clone(),
            password_hash: Some(stored.to_owned()),
            email_verified: true,
            now: Timestamp::from_unix_seconds(1_700_000_000),
        })
        .await
        .unwrap();
    kit.store()
        .user_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap()
}

async fn verify(kit: &AuthKit, password: &str, stored: &str) -> Verification {
    kit.hasher()
        .verify(&SecretString::from(password), Some(stored))
        .await
        .unwrap()
}

#[tokio::test]
async fn legacy_hashes_match_and_ask_for_an_argon2id_rehash() {
    let kit = kit().await;
    for (i, (stored, kind)) in [
        (BCRYPT, HashKind::Bcrypt),
        (PBKDF2_PHC, HashKind::Pbkdf2Sha256),
        (PASSLIB, HashKind::Pbkdf2Sha256),
        (DJANGO, HashKind::DjangoPbkdf2Sha256),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(HashKind::identify(stored), Some(kind), "{stored}");
        let stored = user_with(&kit, &format!("legacy{i}@example.com"), stored).await;
        assert_eq!(
            verify(&kit, PASSWORD, &stored).await,
            Verification::Match { needs_rehash: true },
            "{stored}"
        );
        for wrong in [
            "correct horse battery stapler",
            "Correct horse battery staple",
            "",
        ] {
            assert_eq!(
                verify(&kit, wrong, &stored).await,
                Verification::Mismatch,
                "{stored}"
            );
        }
    }
}

// SECURITY.md #16, real-world bug 9: a longer password sharing the first 72 bytes is refused.
#[tokio::test]
async fn bcrypt_passwords_past_72_bytes_never_match() {
    let kit = kit().await;
    let stored = user_with(&kit, "long@example.com", BCRYPT_72).await;
    let base = seventy_two();
    assert_eq!(
        verify(&kit, &base, &stored).await,
        Verification::Match { needs_rehash: true }
    );
    for longer in [
        format!("{base}ABCDEFGH"),
        format!("{base}X"),
        format!("{base}Y"),
    ] {
        assert_eq!(
            verify(&kit, &longer, &stored).await,
            Verification::Mismatch,
            "{} bytes",
            longer.len()
        );
    }
}

#[tokio::test]
async fn a_rehash_of_a_legacy_password_is_argon2id_and_verifies_without_a_rehash() {
    let kit = kit().await;
    let password = SecretString::from(PASSWORD);
    let upgraded = kit.hasher().hash(&password).await.unwrap();
    assert_eq!(HashKind::identify(&upgraded), Some(HashKind::Argon2id));
    assert_eq!(
        verify(&kit, PASSWORD, &upgraded).await,
        Verification::Match {
            needs_rehash: false
        }
    );
}

#[tokio::test]
async fn unusable_legacy_hashes_behave_like_no_password() {
    let kit = kit().await;
    for stored in [
        // Cost 17: over the limit.
        BCRYPT.replacen("$05$", "$17$", 1),
        // Over 10 million iterations.
        DJANGO.replacen("$260000$", "$10000001$", 1),
        // Truncated.
        PASSLIB.get(..PASSLIB.len() - 3).unwrap().to_owned(),
        // Django's bcrypt_sha256 wrapper is not supported.
        format!("bcrypt_sha256${BCRYPT}"),
    ] {
        assert_eq!(HashKind::identify(&stored), None, "{stored}");
        assert_eq!(
            verify(&kit, PASSWORD, &stored).await,
            Verification::Mismatch,
            "{stored}"
        );
    }
}
