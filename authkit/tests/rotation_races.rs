//! Many sign-ins of one user at once on PostgreSQL (and SQLite): each session rotation checks in
//! its transaction that the verified password hash is still current. Two such checks must never
//! deadlock (a 500 for a correct sign-in); a password change racing them still wins.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use authkit::clock::Timestamp;
use authkit::rng::{OsRandom, RandomSource as _};
use authkit::session::{Aal, SessionIdHash, SessionKind, SessionRecord};
use authkit::store::{NewUser, Rotation, RotationGuard, SqlStore, SqlStoreOptions, Store};
use authkit::user::{Email, UserId};

mod support;

use support::PgSchema;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
const START: i64 = 1_800_000_000;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRandom.try_fill(&mut b).unwrap();
    b
}

fn record(user: &UserId) -> SessionRecord {
    let now = Timestamp::from_unix_seconds(START);
    SessionRecord {
        id_hash: SessionIdHash::from_bytes(random_bytes()),
        handle: random_bytes::<12>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        user_id: user.clone(),
        kind: SessionKind::Full,
        aal: Aal::Aal1,
        created_at: now,
        last_seen_at: now,
        authenticated_at: now,
        password_verified_at: Some(now),
        expires_at: now.saturating_add(std::time::Duration::from_secs(3600)),
        ip: None,
        user_agent: None,
    }
}

async fn storm(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let id = UserId::generate(&OsRandom).unwrap();
    a.create_user(NewUser {
        id: id.clone(),
        email: Email::parse("storm@example.com").unwrap(),
        password_hash: Some(HASH.into()),
        email_verified: true,
        now: Timestamp::from_unix_seconds(START),
    })
    .await
    .unwrap();
    for round in 0..10 {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = if i % 2 == 0 {
                    Arc::clone(&a)
                } else {
                    Arc::clone(&b)
                };
                let new = record(&id);
                tokio::spawn(async move {
                    let guard = RotationGuard {
                        password_hash: Some(HASH),
                        ..RotationGuard::default()
                    };
                    store.rotate_session(&new, guard).await
                })
            })
            .collect();
        for t in tasks {
            let result = t.await.unwrap();
            assert!(
                matches!(result, Ok(Rotation::Done)),
                "round {round}: {result:?}"
            );
        }
    }
    // A password change racing sign-ins checked against the old hash: each sign-in either
    // committed before it (and the change ended its session) or sees the new hash.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let new = record(&id);
            tokio::spawn(async move {
                let guard = RotationGuard {
                    password_hash: Some(HASH),
                    ..RotationGuard::default()
                };
                store.rotate_session(&new, guard).await.unwrap()
            })
        })
        .collect();
    let changed = a
        .change_password(
            &id,
            HASH,
            "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3",
            Timestamp::from_unix_seconds(START),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(changed.is_some());
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            matches!(r, Rotation::Done | Rotation::CredentialsChanged),
            "{r:?}"
        );
    }
    assert!(
        a.sessions_for_user(&id).await.unwrap().is_empty(),
        "no session verified against the old password outlives the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_rotations_never_deadlock_on_postgres() {
    let Some(schema) = PgSchema::create("authkit_rot").await else {
        return;
    };
    let options = SqlStoreOptions {
        max_connections: 16,
        ..SqlStoreOptions::default()
    };
    let a: Arc<dyn Store> = Arc::new(
        SqlStore::connect(&schema.url, options.clone())
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(SqlStore::connect(&schema.url, options).await.unwrap());
    storm(a, b).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_rotations_never_fail_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/rot.db?mode=rwc", dir.path().display());
    let a: Arc<dyn Store> = Arc::new(
        SqlStore::connect(&url, SqlStoreOptions::default())
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(
        SqlStore::connect(&url, SqlStoreOptions::default())
            .await
            .unwrap(),
    );
    storm(a, b).await;
}
