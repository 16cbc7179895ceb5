//! The MFA store on memory, SQLite and PostgreSQL: enrolment, confirmation, the "each TOTP step
//! once" and "each backup code once" guarantees under real parallelism (tasks on several
//! threads, and on SQL two connection pools, as two server instances would have), and
//! disabling (SECURITY.md #24, #26).

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use authkit::audit::{AuditActor, AuditEventType, NewAuditEvent};
use authkit::clock::Timestamp;
use authkit::mfa::TotpAlgorithm;
use authkit::rng::OsRandom;
use authkit::secret::KeyId;
use authkit::store::{NewTotp, NewUser, Store, StoredBackupCode};
use authkit::user::{Email, UserId};

mod support;

use support::TwoStores;
/// The stores a test runs on.
type Backend = TwoStores;

const START: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(START)
}

async fn user(store: &dyn Store, name: &str) -> UserId {
    let id = UserId::generate(&OsRandom).unwrap();
    store
        .create_user(NewUser {
            id: id.clone(),
            email: Email::parse(&format!("{name}@example.com")).unwrap(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            email_verified: true,
            now: now(),
        })
        .await
        .unwrap();
    id
}

fn new_totp(secret: &str) -> NewTotp {
    NewTotp {
        secret: secret.to_owned(),
        algorithm: TotpAlgorithm::Sha1,
        digits: 6,
        period: 30,
        created_at: now(),
    }
}

fn audit(kind: AuditEventType, user: &UserId) -> NewAuditEvent {
    NewAuditEvent::new(kind, Some(user.clone()), now(), AuditActor::system())
}

fn codes(n: u8) -> Vec<StoredBackupCode> {
    (0..n)
        .map(|i| StoredBackupCode {
            hash: [i; 32],
            key_id: KeyId::new("p1").unwrap(),
        })
        .collect()
}

async fn lifecycle(backend: Backend) {
    let store = &*backend.a;
    let id = user(store, "lifecycle").await;
    assert!(store.totp(&id).await.unwrap().is_none());

    // Enrolment: replaceable until confirmed.
    assert!(
        store
            .begin_totp_enrolment(&id, &new_totp("sealed-1"))
            .await
            .unwrap()
    );
    assert!(
        store
            .begin_totp_enrolment(&id, &new_totp("sealed-2"))
            .await
            .unwrap()
    );
    let t = store.totp(&id).await.unwrap().unwrap();
    assert_eq!(
        (t.secret.as_str(), t.confirmed, t.last_step),
        ("sealed-2", false, None)
    );
    // A step is never accepted for an unconfirmed authenticator.
    assert!(!store.accept_totp_step(&id, "sealed-2", 5).await.unwrap());
    // Confirming the replaced secret does nothing; the current one works.
    let enabled = audit(AuditEventType::MfaEnabled, &id);
    assert!(
        !store
            .confirm_totp(&id, "sealed-1", 10, &codes(10), now(), &enabled)
            .await
            .unwrap()
    );
    assert!(
        store
            .confirm_totp(&id, "sealed-2", 10, &codes(10), now(), &enabled)
            .await
            .unwrap()
    );
    assert!(store.user_by_id(&id).await.unwrap().unwrap().mfa_enabled);
    let t = store.totp(&id).await.unwrap().unwrap();
    assert_eq!((t.confirmed, t.last_step), (true, Some(10)));
    assert_eq!(t.algorithm, TotpAlgorithm::Sha1);
    assert_eq!(store.backup_codes_remaining(&id).await.unwrap(), 10);
    // A confirmed authenticator is not replaced by a new enrolment.
    assert!(
        !store
            .begin_totp_enrolment(&id, &new_totp("sealed-3"))
            .await
            .unwrap()
    );
    assert_eq!(store.totp(&id).await.unwrap().unwrap().secret, "sealed-2");

    // Steps: strictly increasing only.
    assert!(!store.accept_totp_step(&id, "sealed-2", 10).await.unwrap());
    assert!(!store.accept_totp_step(&id, "sealed-2", 9).await.unwrap());
    // Only for the authenticator that was checked.
    assert!(!store.accept_totp_step(&id, "sealed-1", 11).await.unwrap());
    assert!(store.accept_totp_step(&id, "sealed-2", 11).await.unwrap());
    assert!(!store.accept_totp_step(&id, "sealed-2", 11).await.unwrap());
    // Re-sealing under a new key keeps the authenticator, conditionally.
    assert!(
        !store
            .reseal_totp(&id, "sealed-1", "sealed-4")
            .await
            .unwrap()
    );
    assert!(
        store
            .reseal_totp(&id, "sealed-2", "sealed-4")
            .await
            .unwrap()
    );
    assert!(store.accept_totp_step(&id, "sealed-4", 12).await.unwrap());

    // Backup codes: each once; a candidate list (several pepper keys) matches one row.
    let used = audit(AuditEventType::BackupCodeUsed, &id);
    assert!(
        store
            .consume_backup_code(&id, &[[99; 32], [3; 32]], &used)
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume_backup_code(&id, &[[3; 32]], &used)
            .await
            .unwrap()
    );
    assert!(!store.consume_backup_code(&id, &[], &used).await.unwrap());
    assert_eq!(store.backup_codes_remaining(&id).await.unwrap(), 9);
    // Another user's code is not this user's.
    let other = user(store, "other").await;
    assert!(
        !store
            .consume_backup_code(&other, &[[4; 32]], &used)
            .await
            .unwrap()
    );

    // Regeneration replaces the set.
    let regenerated = audit(AuditEventType::BackupCodesRegenerated, &id);
    let fresh: Vec<StoredBackupCode> = (100..110)
        .map(|i| StoredBackupCode {
            hash: [i; 32],
            key_id: KeyId::new("p1").unwrap(),
        })
        .collect();
    assert!(
        store
            .replace_backup_codes(&id, &fresh, now(), &regenerated)
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume_backup_code(&id, &[[4; 32]], &used)
            .await
            .unwrap()
    );
    assert!(
        store
            .consume_backup_code(&id, &[[100; 32]], &used)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_backup_codes(&other, &fresh, now(), &regenerated)
            .await
            .unwrap()
    );

    // Disable: everything goes; a second disable is a no-op.
    let disabled = audit(AuditEventType::MfaDisabled, &id);
    assert!(store.disable_mfa(&id, now(), &disabled).await.unwrap());
    assert!(!store.disable_mfa(&id, now(), &disabled).await.unwrap());
    assert!(store.totp(&id).await.unwrap().is_none());
    assert_eq!(store.backup_codes_remaining(&id).await.unwrap(), 0);
    assert!(!store.user_by_id(&id).await.unwrap().unwrap().mfa_enabled);

    // Each change wrote its audit event in its own transaction.
    let types: Vec<&str> = store
        .audit_for_user(&id, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "mfa.disabled",
            "backup_code.used",
            "backup_codes.regenerated",
            "backup_code.used",
            "mfa.enabled"
        ]
    );
    backend.finish().await;
}

/// Ten tasks on two pools race for one step and for one backup code: one winner each.
async fn races(backend: Backend) {
    let id = user(&*backend.a, "races").await;
    assert!(
        backend
            .a
            .begin_totp_enrolment(&id, &new_totp("s"))
            .await
            .unwrap()
    );
    let enabled = audit(AuditEventType::MfaEnabled, &id);
    assert!(
        backend
            .a
            .confirm_totp(&id, "s", 1, &codes(10), now(), &enabled)
            .await
            .unwrap()
    );
    for round in 0..5u64 {
        let step = 100 + round;
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = if i % 2 == 0 {
                    Arc::clone(&backend.a)
                } else {
                    Arc::clone(&backend.b)
                };
                let id = id.clone();
                tokio::spawn(async move { store.accept_totp_step(&id, "s", step).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "step {step}");

        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = if i % 2 == 0 {
                    Arc::clone(&backend.a)
                } else {
                    Arc::clone(&backend.b)
                };
                let id = id.clone();
                let used = audit(AuditEventType::BackupCodeUsed, &id);
                let hash = [u8::try_from(round).unwrap(); 32];
                tokio::spawn(async move {
                    store
                        .consume_backup_code(&id, &[hash], &used)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "backup code {round}");
    }
    assert_eq!(backend.a.backup_codes_remaining(&id).await.unwrap(), 5);
    // Exactly one audit event per used code.
    let used = backend
        .a
        .audit_for_user(&id, None, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == AuditEventType::BackupCodeUsed)
        .count();
    assert_eq!(used, 5);
    backend.finish().await;
}

/// Regenerating and disabling race on two pools: whichever commits first, no backup code is
/// left behind for a user without MFA, and a confirmation racing a new enrolment confirms at
/// most the secret it checked.
async fn change_races(backend: Backend) {
    for round in 0..10u8 {
        let id = user(&*backend.a, &format!("change-race-{round}")).await;
        assert!(
            backend
                .a
                .begin_totp_enrolment(&id, &new_totp("s"))
                .await
                .unwrap()
        );
        let enabled = audit(AuditEventType::MfaEnabled, &id);
        assert!(
            backend
                .a
                .confirm_totp(&id, "s", 1, &codes(10), now(), &enabled)
                .await
                .unwrap()
        );
        let (a, b) = (Arc::clone(&backend.a), Arc::clone(&backend.b));
        let (ida, idb) = (id.clone(), id.clone());
        let regenerate = tokio::spawn(async move {
            let fresh: Vec<StoredBackupCode> = (50..60)
                .map(|i| StoredBackupCode {
                    hash: [i; 32],
                    key_id: KeyId::new("p1").unwrap(),
                })
                .collect();
            let event = audit(AuditEventType::BackupCodesRegenerated, &ida);
            a.replace_backup_codes(&ida, &fresh, now(), &event)
                .await
                .unwrap()
        });
        let disable = tokio::spawn(async move {
            let event = audit(AuditEventType::MfaDisabled, &idb);
            b.disable_mfa(&idb, now(), &event).await.unwrap()
        });
        let (regenerated, disabled) = (regenerate.await.unwrap(), disable.await.unwrap());
        assert!(disabled, "round {round}");
        let _ = regenerated;
        assert!(backend.a.totp(&id).await.unwrap().is_none());
        assert_eq!(
            backend.b.backup_codes_remaining(&id).await.unwrap(),
            0,
            "round {round}: codes outlived MFA"
        );
        assert!(
            !backend
                .a
                .user_by_id(&id)
                .await
                .unwrap()
                .unwrap()
                .mfa_enabled
        );

        // A confirmation of secret "t" racing an enrolment that replaces it with "u".
        assert!(
            backend
                .a
                .begin_totp_enrolment(&id, &new_totp("t"))
                .await
                .unwrap()
        );
        let (a, b) = (Arc::clone(&backend.a), Arc::clone(&backend.b));
        let (ida, idb) = (id.clone(), id.clone());
        let confirm = tokio::spawn(async move {
            let event = audit(AuditEventType::MfaEnabled, &ida);
            a.confirm_totp(&ida, "t", 7, &codes(10), now(), &event)
                .await
                .unwrap()
        });
        let restart =
            tokio::spawn(
                async move { b.begin_totp_enrolment(&idb, &new_totp("u")).await.unwrap() },
            );
        let (confirmed, restarted) = (confirm.await.unwrap(), restart.await.unwrap());
        let t = backend.a.totp(&id).await.unwrap().unwrap();
        // Either the confirmation won (then the restart found MFA on and wrote nothing) or the
        // restart won (then nothing was confirmed); never a confirmed "u".
        assert_ne!(confirmed, restarted, "round {round}");
        if confirmed {
            assert_eq!((t.secret.as_str(), t.confirmed), ("t", true));
        } else {
            assert_eq!((t.secret.as_str(), t.confirmed), ("u", false));
        }
    }
    backend.finish().await;
}

/// The MFA lockout lives on the authenticator's row: both pools (instances) see one count;
/// concurrent attempts each count once; a success or a reset clears it.
async fn lockout(backend: Backend) {
    use authkit::ratelimit::{AttemptDecision, LockoutPolicy};
    let policy = LockoutPolicy::default();
    let id = user(&*backend.a, "lockout").await;
    // No authenticator: nothing to count.
    assert_eq!(
        backend
            .a
            .begin_mfa_attempt(&id, &policy, now())
            .await
            .unwrap(),
        AttemptDecision::Proceed { locks_now: false }
    );
    assert!(
        backend
            .a
            .begin_totp_enrolment(&id, &new_totp("s"))
            .await
            .unwrap()
    );
    let enabled = audit(AuditEventType::MfaEnabled, &id);
    assert!(
        backend
            .a
            .confirm_totp(&id, "s", 1, &codes(10), now(), &enabled)
            .await
            .unwrap()
    );
    // Ten concurrent attempts on two pools: exactly five proceed (the fifth starts the lock).
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&backend.a)
            } else {
                Arc::clone(&backend.b)
            };
            let id = id.clone();
            let policy = policy.clone();
            tokio::spawn(async move { store.begin_mfa_attempt(&id, &policy, now()).await.unwrap() })
        })
        .collect();
    let mut proceeded = 0;
    let mut locking = 0;
    for t in tasks {
        match t.await.unwrap() {
            AttemptDecision::Proceed { locks_now } => {
                proceeded += 1;
                locking += usize::from(locks_now);
            }
            AttemptDecision::Locked { retry_after } => {
                assert!(retry_after.is_some_and(|d| d.as_secs() <= 30));
            }
        }
    }
    assert_eq!((proceeded, locking), (5, 1));
    assert_eq!(
        backend.b.totp(&id).await.unwrap().unwrap().failed_attempts,
        5
    );
    // 30 s later the next attempt proceeds (and locks for a minute).
    let later = Timestamp::from_unix_seconds(START + 30);
    assert_eq!(
        backend
            .b
            .begin_mfa_attempt(&id, &policy, later)
            .await
            .unwrap(),
        AttemptDecision::Proceed { locks_now: true }
    );
    assert!(
        !backend
            .a
            .begin_mfa_attempt(&id, &policy, later)
            .await
            .unwrap()
            .may_proceed()
    );
    // A success resets the count; so does a reset.
    assert!(backend.a.accept_totp_step(&id, "s", 2).await.unwrap());
    assert_eq!(
        backend.a.totp(&id).await.unwrap().unwrap().failed_attempts,
        0
    );
    for _ in 0..5 {
        backend
            .a
            .begin_mfa_attempt(&id, &policy, later)
            .await
            .unwrap();
    }
    assert!(
        !backend
            .b
            .begin_mfa_attempt(&id, &policy, later)
            .await
            .unwrap()
            .may_proceed()
    );
    backend.b.clear_mfa_failures(&id).await.unwrap();
    assert!(
        backend
            .a
            .begin_mfa_attempt(&id, &policy, later)
            .await
            .unwrap()
            .may_proceed()
    );
    backend.finish().await;
}

/// The re-sealing job's pages of TOTP secrets not under the newest key, with its cursor, and
/// the compare-and-set re-seal.
async fn not_under_key(backend: Backend) {
    let store = &*backend.a;
    let mut users = Vec::new();
    for (name, sealed) in [
        ("r1", "v1.k_2.a"),
        ("r2", "v1.k1.b"),
        ("r3", "v1.kx2.c"),
        ("r4", "v1.k1.d"),
    ] {
        let id = user(store, name).await;
        assert!(
            store
                .begin_totp_enrolment(&id, &new_totp(sealed))
                .await
                .unwrap()
        );
        let enabled = audit(AuditEventType::MfaEnabled, &id);
        assert!(
            store
                .confirm_totp(&id, sealed, 10, &codes(10), now(), &enabled)
                .await
                .unwrap()
        );
        users.push((id, sealed));
    }
    // A pending enrolment is left alone (its confirmation matches the sealed text).
    let pending = user(store, "r5").await;
    assert!(
        store
            .begin_totp_enrolment(&pending, &new_totp("v1.k1.pending"))
            .await
            .unwrap()
    );
    let mut stale: Vec<(String, String)> = users
        .iter()
        .filter(|(_, s)| !s.starts_with("v1.k_2."))
        .map(|(u, s)| (u.as_str().to_owned(), (*s).to_owned()))
        .collect();
    stale.sort();
    let page = |list: Vec<(UserId, String)>| {
        list.into_iter()
            .map(|(u, s)| (u.as_str().to_owned(), s))
            .collect::<Vec<_>>()
    };
    let all = store
        .totp_secrets_not_under("v1.k_2.", None, 10)
        .await
        .unwrap();
    assert_eq!(page(all), stale);
    let first = store
        .totp_secrets_not_under("v1.k_2.", None, 2)
        .await
        .unwrap();
    assert_eq!(page(first.clone()), stale[..2]);
    let rest = backend
        .b
        .totp_secrets_not_under("v1.k_2.", Some(&first[1].0), 2)
        .await
        .unwrap();
    assert_eq!(page(rest), stale[2..]);
    // Re-sealed rows leave the list; a stale compare-and-set changes nothing.
    let (user_id, old) = &first[0];
    assert!(store.reseal_totp(user_id, old, "v1.k_2.new").await.unwrap());
    assert!(
        !backend
            .b
            .reseal_totp(user_id, old, "v1.k_2.other")
            .await
            .unwrap()
    );
    let left = store
        .totp_secrets_not_under("v1.k_2.", None, 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
}

per_backend!("mfa"; change_races, lockout, lifecycle, races, not_under_key);
