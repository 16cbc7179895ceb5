//! authkit with axum: cookie sessions, CSRF protection and password login in a few lines.
//!
//! - `GET /` is public;
//! - `GET /portfolio` needs a signed-in user (the [`CurrentUser`] extractor answers 401
//!   problem+json otherwise);
//! - `POST /trade` also needs a second factor: the [`RequireAal2`] extractor answers 401
//!   `mfa_required` until the session passed one (`/api/v1/auth/mfa/…`);
//! - `/api/v1/auth/*` are authkit's endpoints (`register`, `login`, `logout`, `session`, …).
//!
//! Run it with `cargo run -p example-axum-app` and see `README.md` for a curl session.

use std::net::{Ipv4Addr, SocketAddr};

use authkit::csrf::Origin;
use authkit::secrets::LocalSecrets;
use authkit::{AuthKit, CurrentUser, RequireAal2};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The SQLite file (`mode=rwc` creates it on first run; authkit runs its migrations).
const DATABASE_URL: &str = "sqlite://example-axum.db?mode=rwc";
/// Development keys, generated on first run and kept on disk so that sessions survive a
/// restart. Never use `LocalSecrets` in production.
const SECRETS_DIR: &str = "./.authkit/secrets";

/// The whole app. Kept apart from `main` so that the tests can drive it without a socket.
fn app(auth: &AuthKit) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/portfolio", get(portfolio))
        .route("/trade", post(trade))
        // authkit's endpoints: POST /api/v1/auth/register, /login, /logout, GET /session, …
        .nest_service("/api/v1/auth", auth.service())
        // Cookies, CSRF checks and session loading, in front of every route (including the
        // auth endpoints, which need the session it loads).
        .layer(auth.layer())
}

/// Public: no extractor, no session needed.
async fn home() -> &'static str {
    "authkit axum example: POST /api/v1/auth/register, then GET /portfolio\n"
}

/// Protected: taking a [`CurrentUser`] is all it takes. Without a signed-in session the
/// extractor rejects the request with `401 application/problem+json` before this runs.
async fn portfolio(user: CurrentUser) -> Json<Value> {
    Json(json!({
        "user_id": user.id,
        "holdings": [],
    }))
}

/// Sensitive: [`RequireAal2`] lets only sessions that passed a second factor (`aal2`) in.
async fn trade(RequireAal2(user): RequireAal2) -> Json<Value> {
    Json(json!({
        "user_id": user.id,
        "order": "accepted",
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse()?,
        Err(_) => 3000,
    };

    let auth = AuthKit::builder()
        .database(DATABASE_URL)
        .await?
        .secrets(LocalSecrets::new(SECRETS_DIR))
        .await?
        // Unsafe requests (POST, …) are only accepted from these origins: the page that
        // calls the API must be served from here.
        .allowed_origins([Origin::parse(&format!("http://localhost:{port}"))?])
        .build()
        .await?;

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://localhost:{port}");
    // `ConnectInfo<SocketAddr>` lets authkit record the client address of each session.
    axum::serve(
        listener,
        app(&auth).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use authkit::secret::{KeyId, KeyRing, SecretKey};
    use authkit::secrets::SecretKeys;
    use authkit::store::MemoryStore;
    use axum::body::Body;
    use http::{Request, StatusCode, header};
    use tower::ServiceExt as _;

    use super::*;

    const ORIGIN: &str = "http://localhost:3000";

    /// A key ring with one 32-byte key (fixed bytes: fine for tests, never for real use).
    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(vec![(
            KeyId::new("k1").unwrap(),
            SecretKey::new(vec![byte; 32]).unwrap(),
        )])
        .unwrap()
    }

    /// authkit on memory, with in-process keys: no file, no database.
    async fn test_auth() -> AuthKit {
        AuthKit::builder()
            .store(Arc::new(MemoryStore::new()))
            .keys(SecretKeys {
                session: ring(1),
                encryption: ring(2),
                pepper: ring(3),
            })
            .allowed_origins([Origin::parse(ORIGIN).unwrap()])
            .build()
            .await
            .unwrap()
    }

    async fn body_json(response: http::Response<Body>) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// `name=value` of every `Set-Cookie`, joined into a `Cookie` header.
    fn cookie_header(response: &http::Response<Body>) -> String {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[tokio::test]
    async fn home_is_public() {
        let app = app(&test_auth().await);
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn register_then_portfolio() {
        let app = app(&test_auth().await);

        // 1. Not signed in: 401 problem+json.
        let response = app
            .clone()
            .oneshot(Request::get("/portfolio").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );

        // 2. Register: 201, a session cookie, and the new user in the body.
        let response = app
            .clone()
            .oneshot(
                Request::post("/api/v1/auth/register")
                    .header(header::ORIGIN, ORIGIN)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"email": "ada@example.org", "password": "vintage-orbit-lantern-42"})
                            .to_string(),
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let cookie = cookie_header(&response);
        // The session, and the device cookie that exempts this browser from its account's
        // lockout.
        assert!(cookie.contains("authkit_session="), "{cookie}");
        assert!(cookie.contains("authkit_device="), "{cookie}");
        let registered = body_json(response).await;
        let user_id = registered["user"]["id"].as_str().unwrap().to_owned();

        // 3. With the cookie: 200 and the same user id.
        let response = app
            .oneshot(
                Request::get("/portfolio")
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_json(response).await["user_id"], user_id.as_str());
    }

    /// Sends `method path` with the cookie (and an `Origin`, and `body` as JSON).
    async fn send(
        app: &Router,
        method: http::Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> http::Response<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ORIGIN, ORIGIN)
            .header(header::COOKIE, cookie);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        app.clone().oneshot(req.body(body).unwrap()).await.unwrap()
    }

    /// Registers, then enrols a TOTP authenticator; returns the `aal2` cookie.
    async fn register_and_enrol(app: &Router) -> (String, String) {
        let response = send(
            app,
            http::Method::POST,
            "/api/v1/auth/register",
            "",
            Some(json!({"email": "grace@example.org", "password": "vintage-orbit-lantern-42"})),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let aal1 = cookie_header(&response);
        let response = send(
            app,
            http::Method::POST,
            "/api/v1/auth/mfa/enable",
            &aal1,
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let enrolment = body_json(response).await;
        // What an authenticator app would show now.
        let secret =
            authkit::mfa::TotpSecret::from_base32(enrolment["secret"].as_str().unwrap()).unwrap();
        let config = authkit::mfa::TotpConfig::default();
        let now = authkit::clock::Clock::now(&authkit::clock::SystemClock);
        let code = config.code_at(&secret, config.current_step(now).unwrap());
        let response = send(
            app,
            http::Method::POST,
            "/api/v1/auth/mfa/verify",
            &aal1,
            Some(json!({ "code": code.as_str() })),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let aal2 = cookie_header(&response);
        assert_eq!(
            body_json(response).await["backup_codes"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
        (aal1, aal2)
    }

    #[tokio::test]
    async fn trade_needs_a_second_factor() {
        let app = app(&test_auth().await);
        let (aal1, aal2) = register_and_enrol(&app).await;
        // The password-only session was replaced when the second factor was proven.
        let response = send(&app, http::Method::POST, "/trade", &aal1, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = send(&app, http::Method::POST, "/trade", &aal2, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_json(response).await["order"], "accepted");
    }

    #[tokio::test]
    async fn trade_refuses_a_password_only_session() {
        let app = app(&test_auth().await);
        let response = send(
            &app,
            http::Method::POST,
            "/api/v1/auth/register",
            "",
            Some(json!({"email": "lin@example.org", "password": "vintage-orbit-lantern-42"})),
        )
        .await;
        let aal1 = cookie_header(&response);
        let response = send(&app, http::Method::POST, "/trade", &aal1, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body_json(response).await["code"], "mfa_required");
        // `CurrentUser` routes take it.
        let response = send(&app, http::Method::GET, "/portfolio", &aal1, None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn required_mfa_sends_password_only_sessions_to_enrol() {
        let mut mfa = authkit::mfa::MfaConfig::default();
        mfa.required = true;
        let auth = AuthKit::builder()
            .store(Arc::new(MemoryStore::new()))
            .keys(SecretKeys {
                session: ring(1),
                encryption: ring(2),
                pepper: ring(3),
            })
            .allowed_origins([Origin::parse(ORIGIN).unwrap()])
            .mfa(mfa)
            .build()
            .await
            .unwrap();
        let app = app(&auth);
        let response = send(
            &app,
            http::Method::POST,
            "/api/v1/auth/register",
            "",
            Some(json!({"email": "kai@example.org", "password": "vintage-orbit-lantern-42"})),
        )
        .await;
        let aal1 = cookie_header(&response);
        // App routes refuse the `aal1` session; the auth endpoints still serve it.
        let response = send(&app, http::Method::GET, "/portfolio", &aal1, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body_json(response).await["code"], "mfa_required");
        let response = send(&app, http::Method::GET, "/api/v1/auth/session", &aal1, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = send(
            &app,
            http::Method::POST,
            "/api/v1/auth/mfa/enable",
            &aal1,
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        // Once enrolled, the `aal2` session reaches the app.
        let (_, aal2) = register_and_enrol(&app).await;
        let response = send(&app, http::Method::GET, "/portfolio", &aal2, None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn register_from_a_foreign_origin_is_refused() {
        let app = app(&test_auth().await);
        let response = app
            .oneshot(
                Request::post("/api/v1/auth/register")
                    .header(header::ORIGIN, "https://evil.example")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"email": "eve@example.org", "password": "vintage-orbit-lantern-42"})
                            .to_string(),
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}
