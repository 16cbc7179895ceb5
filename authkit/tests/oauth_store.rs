//! The OAuth store on memory, SQLite and PostgreSQL: single-use sign-in transactions (one
//! winner among concurrent callbacks on two connection pools, as two server instances would
//! have), linked accounts with their unique `(issuer, subject)`, the token compare-and-set, and
//! unlinking that never removes a user's last way to sign in, even under a race.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authkit::audit::{AuditActor, AuditEventType, NewAuditEvent};
use authkit::clock::Timestamp;
use authkit::rng::OsRandom;
use authkit::store::{
    LinkIntent, NewUser, OAuthAccount, OAuthTransaction, SealedTokens, Store, StoreError, Unlink,
};
use authkit::user::{Email, UserId};

mod support;

use support::TwoStores;
/// The stores a test runs on.
type Backend = TwoStores;

const START: i64 = 1_800_000_000;
const ISSUER: &str = "https://accounts.example.com";

fn at(offset: i64) -> Timestamp {
    Timestamp::from_unix_seconds(START + offset)
}

fn now() -> Timestamp {
    at(0)
}

fn new_user(name: &str, password: bool) -> NewUser {
    NewUser {
        id: UserId::generate(&OsRandom).unwrap(),
        email: Email::parse(&format!("{name}@example.com")).unwrap(),
        password_hash: password.then(|| "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        email_verified: true,
        now: now(),
    }
}

async fn user(store: &dyn Store, name: &str, password: bool) -> UserId {
    store
        .create_user(new_user(name, password))
        .await
        .unwrap()
        .id
}

fn audit(kind: AuditEventType, user: &UserId) -> NewAuditEvent {
    NewAuditEvent::new(kind, Some(user.clone()), now(), AuditActor::system())
}

fn tokens(tag: &str) -> SealedTokens {
    SealedTokens {
        access_token: Some(format!("v1.k1.access-{tag}")),
        refresh_token: Some(format!("v1.k1.refresh-{tag}")),
        expires_at: Some(at(3600)),
        scopes: Some("openid email profile".into()),
    }
}

fn account(id: &str, user: &UserId, subject: &str, created: i64) -> OAuthAccount {
    OAuthAccount {
        id: id.to_owned(),
        user_id: user.clone(),
        provider: "google".into(),
        issuer: ISSUER.into(),
        subject: subject.to_owned(),
        email: Some(format!("{subject}@gmail.example")),
        tokens: tokens(id),
        created_at: at(created),
        last_used_at: None,
    }
}

fn transaction(state: u8, expires: i64, link: Option<LinkIntent>) -> OAuthTransaction {
    OAuthTransaction {
        state_hash: [state; 32],
        provider: "google".into(),
        browser_hash: [state.wrapping_add(100); 32],
        sealed: format!("v1.k1.sealed-{state}"),
        redirect_to: "/welcome?tab=1".into(),
        link,
        created_at: now(),
        expires_at: at(expires),
    }
}

fn assert_same_transaction(got: &OAuthTransaction, want: &OAuthTransaction) {
    assert_eq!(got.state_hash, want.state_hash);
    assert_eq!(got.provider, want.provider);
    assert_eq!(got.browser_hash, want.browser_hash);
    assert_eq!(got.sealed, want.sealed);
    assert_eq!(got.redirect_to, want.redirect_to);
    assert!(got.link == want.link, "{:?} != {:?}", got.link, want.link);
    assert_eq!(got.created_at, want.created_at);
    assert_eq!(got.expires_at, want.expires_at);
}

fn assert_same_account(got: &OAuthAccount, want: &OAuthAccount) {
    assert_eq!(got.id, want.id);
    assert_eq!(got.user_id, want.user_id);
    assert_eq!(got.provider, want.provider);
    assert_eq!(got.issuer, want.issuer);
    assert_eq!(got.subject, want.subject);
    assert_eq!(got.email, want.email);
    assert!(got.tokens == want.tokens, "{:?}", got.tokens);
    assert_eq!(got.created_at, want.created_at);
    assert_eq!(got.last_used_at, want.last_used_at);
}

async fn event_types(store: &dyn Store, user: &UserId) -> Vec<&'static str> {
    store
        .audit_for_user(user, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type.as_str())
        .collect()
}

/// Round trips, single use, expiry and the cleanup.
async fn transactions(backend: Backend) {
    let store = &*backend.a;
    let plain = transaction(1, 600, None);
    store.insert_oauth_transaction(&plain).await.unwrap();
    // The state hash is the key.
    assert!(matches!(
        store.insert_oauth_transaction(&plain).await,
        Err(StoreError::Conflict)
    ));
    // Another browser's binding neither gets it nor spends it.
    assert!(
        store
            .take_oauth_transaction(&[1; 32], &[42; 32], now())
            .await
            .unwrap()
            .is_none()
    );
    let taken = store
        .take_oauth_transaction(&[1; 32], &[101; 32], now())
        .await
        .unwrap()
        .unwrap();
    assert_same_transaction(&taken, &plain);
    // Once only, on either instance.
    assert!(
        store
            .take_oauth_transaction(&[1; 32], &[101; 32], now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        backend
            .b
            .take_oauth_transaction(&[1; 32], &[101; 32], now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_oauth_transaction(&[9; 32], &[109; 32], now())
            .await
            .unwrap()
            .is_none()
    );

    // A link transaction keeps its user and session.
    let id = user(store, "linker", true).await;
    let link = LinkIntent {
        user_id: id.clone(),
        session_hash: [0xee; 32],
    };
    let linking = transaction(2, 600, Some(link));
    store.insert_oauth_transaction(&linking).await.unwrap();
    let taken = backend
        .b
        .take_oauth_transaction(&[2; 32], &[102; 32], at(599))
        .await
        .unwrap()
        .unwrap();
    assert_same_transaction(&taken, &linking);

    // Refused from `expires_at` on, and left for the cleanup job.
    store
        .insert_oauth_transaction(&transaction(3, 600, None))
        .await
        .unwrap();
    store
        .insert_oauth_transaction(&transaction(4, 900, None))
        .await
        .unwrap();
    assert!(
        store
            .take_oauth_transaction(&[3; 32], &[103; 32], at(600))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_oauth_transaction(&[3; 32], &[103; 32], at(700))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .delete_expired_oauth_transactions(at(600))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_expired_oauth_transactions(at(600))
            .await
            .unwrap(),
        0
    );
    // The unexpired one survived the cleanup.
    assert!(
        store
            .take_oauth_transaction(&[4; 32], &[104; 32], at(600))
            .await
            .unwrap()
            .is_some()
    );
    backend.finish().await;
}

/// Ten callbacks with one state on two pools: exactly one gets the transaction.
async fn take_race(backend: Backend) {
    for round in 0..5u8 {
        let tx = transaction(round, 600, None);
        backend.a.insert_oauth_transaction(&tx).await.unwrap();
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = backend.pick(i);
                tokio::spawn(async move {
                    store
                        .take_oauth_transaction(&[round; 32], &[round.wrapping_add(100); 32], now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if let Some(got) = t.await.unwrap() {
                assert_same_transaction(&got, &tx);
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    backend.finish().await;
}

/// Creating a user with an account, the unique keys, linking, sign-ins and the token CAS.
async fn accounts(backend: Backend) {
    let store = &*backend.a;

    // A new user signs up through a provider: user, account and audit in one transaction.
    let new = new_user("oauth-ada", false);
    let ada = new.id.clone();
    let first = account("acc-ada-1", &ada, "sub-ada", 0);
    let events = [
        audit(AuditEventType::OauthLinked, &ada),
        audit(AuditEventType::OauthLogin, &ada),
    ];
    let created = store
        .create_user_with_oauth_account(new.clone(), &first, &events)
        .await
        .unwrap();
    assert_eq!(created.id, ada);
    assert_eq!(created.email, new.email);
    assert!(created.password_hash.is_none());
    assert!(created.email_verified);
    let stored = store.user_by_id(&ada).await.unwrap().unwrap();
    assert!(stored.password_hash.is_none());
    assert!(stored.email_verified);
    assert_eq!(stored.email, new.email);
    let got = backend
        .b
        .oauth_account(ISSUER, "sub-ada")
        .await
        .unwrap()
        .unwrap();
    assert_same_account(&got, &first);
    assert!(
        store
            .oauth_account(ISSUER, "sub-x")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .oauth_account("https://other.example", "sub-ada")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        event_types(store, &ada).await,
        ["oauth.login", "oauth.linked"]
    );

    // The same (issuer, subject) again: refused, and no second user.
    let dup = new_user("oauth-ada-again", false);
    let dup_account = account("acc-dup", &dup.id, "sub-ada", 0);
    assert!(matches!(
        store
            .create_user_with_oauth_account(
                dup.clone(),
                &dup_account,
                &[audit(AuditEventType::OauthLinked, &dup.id)]
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(store.user_by_email(&dup.email).await.unwrap().is_none());
    assert!(store.user_by_id(&dup.id).await.unwrap().is_none());
    assert!(event_types(store, &dup.id).await.is_empty());

    // The address taken (by a password user): refused, and no account row.
    let bob = user(store, "oauth-bob", true).await;
    let mut taken = new_user("oauth-bob", false);
    taken.id = UserId::generate(&OsRandom).unwrap();
    let taken_account = account("acc-taken", &taken.id, "sub-bob", 0);
    assert!(matches!(
        store
            .create_user_with_oauth_account(
                taken.clone(),
                &taken_account,
                &[audit(AuditEventType::OauthLinked, &taken.id)]
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(
        store
            .oauth_account(ISSUER, "sub-bob")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.user_by_id(&taken.id).await.unwrap().is_none());
    assert!(
        store
            .oauth_accounts_for_user(&bob)
            .await
            .unwrap()
            .is_empty()
    );

    // Linking: another account for Bob works (with its audit row)...
    let bob_google = account("acc-bob-1", &bob, "sub-bob", 10);
    store
        .link_oauth_account(&bob_google, &[audit(AuditEventType::OauthLinked, &bob)])
        .await
        .unwrap();
    assert_eq!(event_types(store, &bob).await, ["oauth.linked"]);
    // ...but Ada's (issuer, subject) cannot be linked to Bob, nor Bob's again to Bob...
    for (id, subject) in [("acc-bob-2", "sub-ada"), ("acc-bob-3", "sub-bob")] {
        assert!(matches!(
            backend
                .b
                .link_oauth_account(
                    &account(id, &bob, subject, 20),
                    &[audit(AuditEventType::OauthLinked, &bob)]
                )
                .await,
            Err(StoreError::Conflict)
        ));
        assert!(store.oauth_account_by_id(&bob, id).await.unwrap().is_none());
    }
    // ...nor an account reusing a public id.
    assert!(matches!(
        store
            .link_oauth_account(&account("acc-ada-1", &bob, "sub-new", 20), &[])
            .await,
        Err(StoreError::Conflict)
    ));
    // Nothing written by the refused links.
    assert_eq!(event_types(store, &bob).await, ["oauth.linked"]);
    assert_eq!(store.oauth_accounts_for_user(&bob).await.unwrap().len(), 1);
    assert_eq!(
        store
            .oauth_account(ISSUER, "sub-ada")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        ada
    );

    // By id: only the owner's.
    let got = store
        .oauth_account_by_id(&bob, "acc-bob-1")
        .await
        .unwrap()
        .unwrap();
    assert_same_account(&got, &bob_google);
    assert!(
        store
            .oauth_account_by_id(&ada, "acc-bob-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .oauth_account_by_id(&bob, "acc-ada-1")
            .await
            .unwrap()
            .is_none()
    );

    // Oldest first, then by id; accounts without tokens round-trip too.
    let mut bare = account("acc-bob-0b", &bob, "sub-bob-b", 5);
    bare.tokens = SealedTokens::default();
    bare.email = None;
    let mut later_same = account("acc-bob-0a", &bob, "sub-bob-a", 5);
    later_same.provider = "github".into();
    later_same.issuer = "https://github.com".into();
    later_same.last_used_at = Some(at(7));
    store.link_oauth_account(&bare, &[]).await.unwrap();
    store.link_oauth_account(&later_same, &[]).await.unwrap();
    let list = backend.b.oauth_accounts_for_user(&bob).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["acc-bob-0a", "acc-bob-0b", "acc-bob-1"]);
    assert_same_account(&list[0], &later_same);
    assert_same_account(&list[1], &bare);
    assert_same_account(&list[2], &bob_google);

    // A sign-in records its fresh tokens, the reported address and the time.
    let fresh = SealedTokens {
        access_token: Some("v1.k2.access-fresh".into()),
        refresh_token: None,
        expires_at: None,
        scopes: Some("openid".into()),
    };
    store
        .record_oauth_login("acc-bob-1", Some("bob@gmail.example"), &fresh, at(100))
        .await
        .unwrap();
    let got = backend
        .b
        .oauth_account_by_id(&bob, "acc-bob-1")
        .await
        .unwrap()
        .unwrap();
    assert!(got.tokens == fresh);
    assert_eq!(got.email.as_deref(), Some("bob@gmail.example"));
    assert_eq!(got.last_used_at, Some(at(100)));
    store
        .record_oauth_login("acc-bob-1", None, &fresh, at(200))
        .await
        .unwrap();
    let got = store
        .oauth_account_by_id(&bob, "acc-bob-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.email, None);
    assert_eq!(got.last_used_at, Some(at(200)));
    // An unknown account: nothing to record, no error.
    store
        .record_oauth_login("acc-none", None, &fresh, at(200))
        .await
        .unwrap();

    // The token compare-and-set: a refresh replaces only the tokens it started from
    // (NULL-safe: the stored refresh token and expiry are absent).
    let refreshed = tokens("refreshed");
    assert!(
        !store
            .replace_oauth_tokens("acc-bob-1", &tokens("acc-bob-1"), &refreshed)
            .await
            .unwrap()
    );
    let mut almost = fresh.clone();
    almost.expires_at = Some(at(1));
    assert!(
        !store
            .replace_oauth_tokens("acc-bob-1", &almost, &refreshed)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_oauth_tokens("acc-none", &fresh, &refreshed)
            .await
            .unwrap()
    );
    assert!(
        backend
            .b
            .replace_oauth_tokens("acc-bob-1", &fresh, &refreshed)
            .await
            .unwrap()
    );
    // The same refresh again is stale now.
    assert!(
        !store
            .replace_oauth_tokens("acc-bob-1", &fresh, &tokens("other"))
            .await
            .unwrap()
    );
    let got = store
        .oauth_account_by_id(&bob, "acc-bob-1")
        .await
        .unwrap()
        .unwrap();
    assert!(got.tokens == refreshed);
    // A refresh does not count as a sign-in.
    assert_eq!(got.last_used_at, Some(at(200)));
    // Empty tokens compare equal to empty tokens.
    assert!(
        store
            .replace_oauth_tokens("acc-bob-0b", &SealedTokens::default(), &fresh)
            .await
            .unwrap()
    );
    assert!(
        store
            .oauth_account_by_id(&bob, "acc-bob-0b")
            .await
            .unwrap()
            .unwrap()
            .tokens
            == fresh
    );

    // Ten concurrent refreshes from the same tokens on two pools: one replaces.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = backend.pick(i);
            let expected = refreshed.clone();
            tokio::spawn(async move {
                store
                    .replace_oauth_tokens("acc-bob-1", &expected, &tokens(&format!("race-{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);

    // Deleting a user (SQL only: the store has no such operation) takes its accounts and its
    // link transactions with it.
    if let Some(pool) = &backend.raw {
        store
            .insert_oauth_transaction(&transaction(
                7,
                600,
                Some(LinkIntent {
                    user_id: bob.clone(),
                    session_hash: [1; 32],
                }),
            ))
            .await
            .unwrap();
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(bob.as_str())
            .execute(pool)
            .await
            .unwrap();
        assert!(
            store
                .oauth_accounts_for_user(&bob)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .oauth_account(ISSUER, "sub-bob")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .take_oauth_transaction(&[7; 32], &[107; 32], now())
                .await
                .unwrap()
                .is_none()
        );
        // Ada's account is untouched.
        assert!(
            store
                .oauth_account(ISSUER, "sub-ada")
                .await
                .unwrap()
                .is_some()
        );
    }
    backend.finish().await;
}

/// Unlinking: only the user's own account, never the last way to sign in.
async fn unlink(backend: Backend) {
    let store = &*backend.a;
    let unlinked = |id: &UserId| audit(AuditEventType::OauthUnlinked, id);

    // A passwordless user with one account.
    let new = new_user("unlink-solo", false);
    let solo = new.id.clone();
    store
        .create_user_with_oauth_account(new, &account("solo-1", &solo, "sub-solo", 0), &[])
        .await
        .unwrap();
    // A password user with one account.
    let pw = user(store, "unlink-pw", true).await;
    store
        .link_oauth_account(&account("pw-1", &pw, "sub-pw", 0), &[])
        .await
        .unwrap();

    // Someone else's account, or none: not found, nothing written.
    assert_eq!(
        store
            .unlink_oauth_account(&pw, "solo-1", &unlinked(&pw))
            .await
            .unwrap(),
        Unlink::NotFound
    );
    assert_eq!(
        store
            .unlink_oauth_account(&pw, "nope", &unlinked(&pw))
            .await
            .unwrap(),
        Unlink::NotFound
    );
    let ghost = UserId::generate(&OsRandom).unwrap();
    assert_eq!(
        store
            .unlink_oauth_account(&ghost, "solo-1", &unlinked(&ghost))
            .await
            .unwrap(),
        Unlink::NotFound
    );
    assert!(
        store
            .oauth_account(ISSUER, "sub-solo")
            .await
            .unwrap()
            .is_some()
    );

    // The passwordless user's only account: refused, nothing written.
    assert_eq!(
        store
            .unlink_oauth_account(&solo, "solo-1", &unlinked(&solo))
            .await
            .unwrap(),
        Unlink::LastSignInMethod
    );
    assert_eq!(store.oauth_accounts_for_user(&solo).await.unwrap().len(), 1);
    assert!(event_types(store, &solo).await.is_empty());

    // With a password, the only account can go.
    assert_eq!(
        store
            .unlink_oauth_account(&pw, "pw-1", &unlinked(&pw))
            .await
            .unwrap(),
        Unlink::Done
    );
    assert!(store.oauth_accounts_for_user(&pw).await.unwrap().is_empty());
    assert!(
        store
            .oauth_account(ISSUER, "sub-pw")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(event_types(store, &pw).await, ["oauth.unlinked"]);
    assert_eq!(
        store
            .unlink_oauth_account(&pw, "pw-1", &unlinked(&pw))
            .await
            .unwrap(),
        Unlink::NotFound
    );

    // With another account, one can go; then the other is the last.
    store
        .link_oauth_account(&account("solo-2", &solo, "sub-solo-2", 1), &[])
        .await
        .unwrap();
    assert_eq!(
        backend
            .b
            .unlink_oauth_account(&solo, "solo-1", &unlinked(&solo))
            .await
            .unwrap(),
        Unlink::Done
    );
    assert_eq!(
        store
            .unlink_oauth_account(&solo, "solo-2", &unlinked(&solo))
            .await
            .unwrap(),
        Unlink::LastSignInMethod
    );
    let left = store.oauth_accounts_for_user(&solo).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "solo-2");
    assert_eq!(event_types(store, &solo).await, ["oauth.unlinked"]);
    // An unlinked subject can be linked again (to anyone).
    store
        .link_oauth_account(&account("pw-2", &pw, "sub-solo", 2), &[])
        .await
        .unwrap();
    backend.finish().await;
}

/// Two concurrent unlinks of a passwordless user's two accounts, on two pools: exactly one
/// goes, and the user keeps a way to sign in.
async fn unlink_race(backend: Backend) {
    for round in 0..8 {
        let new = new_user(&format!("unlink-race-{round}"), false);
        let id = new.id.clone();
        let (first, second) = (format!("race-{round}-a"), format!("race-{round}-b"));
        backend
            .a
            .create_user_with_oauth_account(
                new,
                &account(&first, &id, &format!("sub-race-{round}-a"), 0),
                &[],
            )
            .await
            .unwrap();
        backend
            .a
            .link_oauth_account(
                &account(&second, &id, &format!("sub-race-{round}-b"), 1),
                &[],
            )
            .await
            .unwrap();
        let tasks: Vec<_> = [first, second]
            .into_iter()
            .enumerate()
            .map(|(i, account)| {
                let store = backend.pick(i);
                let id = id.clone();
                tokio::spawn(async move {
                    let event = audit(AuditEventType::OauthUnlinked, &id);
                    store
                        .unlink_oauth_account(&id, &account, &event)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        outcomes.sort_by_key(|o| *o == Unlink::Done);
        assert_eq!(
            outcomes,
            [Unlink::LastSignInMethod, Unlink::Done],
            "round {round}"
        );
        assert_eq!(
            backend.b.oauth_accounts_for_user(&id).await.unwrap().len(),
            1,
            "round {round}"
        );
        assert_eq!(
            event_types(&*backend.a, &id).await,
            ["oauth.unlinked"],
            "round {round}"
        );
    }
    backend.finish().await;
}

/// The re-sealing job's pages: accounts with a token not under the newest key's prefix, in id
/// order after a cursor. A key id with `_` is matched literally (no LIKE wildcard).
async fn not_under_key(backend: Backend) {
    let store = &*backend.a;
    let id = user(store, "resealed", true).await;
    let under = |acct: &str, subject: &str, access: Option<&str>, refresh: Option<&str>| {
        let mut a = account(acct, &id, subject, 0);
        a.tokens.access_token = access.map(str::to_owned);
        a.tokens.refresh_token = refresh.map(str::to_owned);
        a
    };
    for a in [
        under("a1", "s1", Some("v1.k_2.x"), Some("v1.k_2.y")),
        under("a2", "s2", Some("v1.k1.x"), None),
        under("a3", "s3", Some("v1.k_2.x"), Some("v1.k1.y")),
        under("a4", "s4", None, None),
        under("a5", "s5", Some("v1.kx2.x"), None),
    ] {
        store.link_oauth_account(&a, &[]).await.unwrap();
    }
    let ids = |list: Vec<OAuthAccount>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let all = store
        .oauth_accounts_not_under("v1.k_2.", None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all), ["a2", "a3", "a5"]);
    let page = store
        .oauth_accounts_not_under("v1.k_2.", None, 2)
        .await
        .unwrap();
    assert_eq!(ids(page), ["a2", "a3"]);
    let rest = backend
        .b
        .oauth_accounts_not_under("v1.k_2.", Some("a3"), 2)
        .await
        .unwrap();
    assert_eq!(ids(rest), ["a5"]);
}

per_backend!("oauth"; transactions, take_race, accounts, unlink, unlink_race, not_under_key);
