//! The tower guard without axum extractors: `RequireAuthLayer::aal2()` lets only sessions that
//! passed a second factor through, and with `MfaConfig::required` even `RequireAuthLayer::new()`
//! refuses `aal1` sessions while the auth endpoints keep serving them for enrolment.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::sync::Arc;

use authkit::clock::{Clock as _, ManualClock, Timestamp};
use authkit::mfa::{MfaConfig, TotpConfig, TotpSecret};
use authkit::rng::OsRandom;
use authkit::secrets::SecretKeys;
use authkit::store::MemoryStore;
use authkit::{AuthKit, AuthenticatedSession, Body, Origin, RequireAuthLayer};
use axum::Router;
use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tower::{Layer as _, ServiceExt as _};

const ORIGIN: &str = "http://localhost:8080";

async fn kit(clock: &ManualClock, required: bool) -> AuthKit {
    let mut mfa = MfaConfig::default();
    mfa.required = required;
    AuthKit::builder()
        .store(Arc::new(MemoryStore::new()))
        .keys(SecretKeys::generate(&OsRandom).unwrap())
        .clock(Arc::new(clock.clone()))
        .allowed_origins([Origin::parse(ORIGIN).unwrap()])
        .mfa(mfa)
        .build()
        .await
        .unwrap()
}

/// `/guarded` behind `guard`, the auth endpoints, and the authkit layer in front.
fn app(auth: &AuthKit, guard: RequireAuthLayer) -> Router {
    let inner = tower::service_fn(|req: Request<axum::body::Body>| async move {
        let aal = req
            .extensions()
            .get::<AuthenticatedSession>()
            .map(|s| s.aal().as_str())
            .unwrap_or("none");
        Ok::<_, Infallible>(Response::new(Body::from(aal)))
    });
    Router::new()
        .route_service("/guarded", guard.layer(inner))
        .nest_service("/api/v1/auth", auth.service())
        .layer(auth.layer())
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
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
    (status, cookie, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn register(app: &Router) -> String {
    let (status, cookie, body) = send(
        app,
        "POST",
        "/api/v1/auth/register",
        "",
        Some(json!({"email": "ada@example.org", "password": "vintage-orbit-lantern-42"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    cookie
}

/// Enables and confirms TOTP; returns the new (`aal2`) cookie.
async fn enrol(app: &Router, clock: &ManualClock, cookie: &str) -> String {
    let (status, _, body) = send(app, "POST", "/api/v1/auth/mfa/enable", cookie, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let secret = TotpSecret::from_base32(body["secret"].as_str().unwrap()).unwrap();
    let config = TotpConfig::default();
    let code = config.code_at(&secret, config.current_step(clock.now()).unwrap());
    let (status, cookie, body) = send(
        app,
        "POST",
        "/api/v1/auth/mfa/verify",
        cookie,
        Some(json!({ "code": code.as_str() })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    cookie
}

#[tokio::test]
async fn aal2_guard_needs_a_second_factor() {
    let clock = ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000));
    let auth = kit(&clock, false).await;
    let app = app(&auth, RequireAuthLayer::aal2());
    let (status, _, body) = send(&app, "GET", "/guarded", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"unauthenticated\""), "{body}");
    let aal1 = register(&app).await;
    let (status, _, body) = send(&app, "GET", "/guarded", &aal1, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"mfa_required\""), "{body}");
    let aal2 = enrol(&app, &clock, &aal1).await;
    let (status, _, body) = send(&app, "GET", "/guarded", &aal2, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "aal2"));
}

#[tokio::test]
async fn required_mfa_turns_the_plain_guard_into_an_aal2_guard() {
    let clock = ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000));
    let auth = kit(&clock, true).await;
    let app = app(&auth, RequireAuthLayer::new());
    let aal1 = register(&app).await;
    let (status, _, body) = send(&app, "GET", "/guarded", &aal1, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"mfa_required\""), "{body}");
    // The auth endpoints still serve the aal1 session, so the user can enrol.
    let (status, _, body) = send(&app, "GET", "/api/v1/auth/session", &aal1, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let aal2 = enrol(&app, &clock, &aal1).await;
    let (status, _, body) = send(&app, "GET", "/guarded", &aal2, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "aal2"));
}

#[tokio::test]
async fn require_mfa_in_the_session_config_alone_is_kept() {
    let clock = ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000));
    let auth = AuthKit::builder()
        .store(Arc::new(MemoryStore::new()))
        .keys(SecretKeys::generate(&OsRandom).unwrap())
        .clock(Arc::new(clock.clone()))
        .allowed_origins([Origin::parse(ORIGIN).unwrap()])
        .session_config(authkit::session::SessionConfig {
            require_mfa: true,
            ..authkit::session::SessionConfig::default()
        })
        .build()
        .await
        .unwrap();
    assert!(auth.sessions().config().require_mfa);
    let app = app(&auth, RequireAuthLayer::new());
    let aal1 = register(&app).await;
    let (status, _, body) = send(&app, "GET", "/guarded", &aal1, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"mfa_required\""), "{body}");
}
