//! Key rotation under MFA (SECURITY.md #36): a TOTP secret sealed under an older encryption key
//! still works while that key is in the ring and is re-sealed under the newest key at its next
//! use; backup codes verify under every pepper key of the ring; retiring a key ends only what
//! still depends on it, with 401, never 500.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use authkit::clock::{Clock as _, ManualClock, Timestamp};
use authkit::mfa::{TotpConfig, TotpSecret};
use authkit::secret::{KeyId, KeyRing, SecretKey};
use authkit::secrets::SecretKeys;
use authkit::store::{MemoryStore, MfaStore as _, Store, UserStore as _};
use authkit::user::Email;
use authkit::{AuthKit, Origin};
use axum::Router;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const ORIGIN: &str = "http://localhost:8080";
const EMAIL: &str = "ada@example.org";
const PASSWORD: &str = "vintage-orbit-lantern-42";

/// A ring of `(id, byte)` keys, newest first.
fn ring(keys: &[(&str, u8)]) -> KeyRing {
    KeyRing::new(
        keys.iter()
            .map(|(id, b)| {
                (
                    KeyId::new(*id).unwrap(),
                    SecretKey::new(vec![*b; 32]).unwrap(),
                )
            })
            .collect(),
    )
    .unwrap()
}

/// An instance on the shared store with the given encryption and pepper rings.
async fn instance(
    store: &Arc<MemoryStore>,
    clock: &ManualClock,
    encryption: &[(&str, u8)],
    pepper: &[(&str, u8)],
) -> Router {
    let auth = AuthKit::builder()
        .store(Arc::clone(store) as Arc<dyn Store>)
        .keys(SecretKeys {
            session: ring(&[("s1", 1)]),
            encryption: ring(encryption),
            pepper: ring(pepper),
        })
        .clock(Arc::new(clock.clone()))
        .allowed_origins([Origin::parse(ORIGIN).unwrap()])
        .build()
        .await
        .unwrap();
    Router::new()
        .nest_service("/api/v1/auth", auth.service())
        .layer(auth.layer())
}

async fn post(
    app: &Router,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let mut req = Request::post(path)
        .header(header::ORIGIN, ORIGIN)
        .header(header::COOKIE, cookie);
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            axum::body::Body::from(v.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .filter(|c| c.starts_with("authkit_session=") && c.len() > "authkit_session=".len())
        .collect::<Vec<_>>()
        .join("; ");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        cookie,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code(secret: &TotpSecret, clock: &ManualClock) -> String {
    let config = TotpConfig::default();
    config
        .code_at(secret, config.current_step(clock.now()).unwrap())
        .as_str()
        .to_owned()
}

/// Password, then `factor`: the status of the second step.
async fn sign_in(app: &Router, factor: Value) -> StatusCode {
    let (status, pending, body) = post(
        app,
        "/api/v1/auth/login",
        "",
        Some(json!({ "email": EMAIL, "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_required"], true);
    post(app, "/api/v1/auth/mfa/verify", &pending, Some(factor))
        .await
        .0
}

async fn sealed_secret(store: &MemoryStore) -> String {
    let user = store
        .user_by_email(&Email::parse(EMAIL).unwrap())
        .await
        .unwrap()
        .unwrap();
    store.totp(&user.id).await.unwrap().unwrap().secret
}

#[tokio::test]
async fn rotation_reseals_totp_secrets_and_keeps_backup_codes_until_their_key_retires() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000));

    // Enrol under encryption key e1 and pepper p1.
    let first = instance(&store, &clock, &[("e1", 11)], &[("p1", 21)]).await;
    let (status, cookie, _) = post(
        &first,
        "/api/v1/auth/register",
        "",
        Some(json!({ "email": EMAIL, "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, enrolment) = post(&first, "/api/v1/auth/mfa/enable", &cookie, None).await;
    let secret = TotpSecret::from_base32(enrolment["secret"].as_str().unwrap()).unwrap();
    let (status, _, body) = post(
        &first,
        "/api/v1/auth/mfa/verify",
        &cookie,
        Some(json!({ "code": code(&secret, &clock) })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let backup: Vec<String> = body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(sealed_secret(&store).await.starts_with("v1.e1."));

    // Add e2 and p2 in front: the old secret and codes still work; the secret is re-sealed.
    let second = instance(
        &store,
        &clock,
        &[("e2", 12), ("e1", 11)],
        &[("p2", 22), ("p1", 21)],
    )
    .await;
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(
        sign_in(&second, json!({ "code": code(&secret, &clock) })).await,
        StatusCode::OK
    );
    assert!(sealed_secret(&store).await.starts_with("v1.e2."));
    assert_eq!(
        sign_in(&second, json!({ "backup_code": backup[0] })).await,
        StatusCode::OK
    );

    // Retire e1 and p1: the re-sealed secret works; codes hashed under p1 are gone.
    let third = instance(&store, &clock, &[("e2", 12)], &[("p2", 22)]).await;
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(
        sign_in(&third, json!({ "code": code(&secret, &clock) })).await,
        StatusCode::OK
    );
    assert_eq!(
        sign_in(&third, json!({ "backup_code": backup[1] })).await,
        StatusCode::UNAUTHORIZED
    );

    // Retire e2 as well: the secret no longer opens; a clear 401, not a 500.
    let fourth = instance(&store, &clock, &[("e3", 13)], &[("p2", 22)]).await;
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(
        sign_in(&fourth, json!({ "code": code(&secret, &clock) })).await,
        StatusCode::UNAUTHORIZED
    );
}
