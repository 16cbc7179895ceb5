//! CSRF, headers, error bodies, pending sessions and production settings. These do not
//! depend on the store, so they run on the memory store (plus SQLite where noted).

use std::sync::Arc;

use authkit::clock::Timestamp;
use authkit::session::{Aal, SessionKind, SessionRecord, SessionToken};
use authkit::user::UserId;
use http::{Method, StatusCode};
use serde_json::json;

use crate::support::{Backend, ORIGIN, PASSWORD, Req, TestApp, creds, email};

async fn memory_app() -> TestApp {
    TestApp::new(Backend::Memory).await.unwrap()
}

// SECURITY.md #12, #13, #14: the Fetch Metadata / Origin matrix, with a valid cookie.
#[tokio::test]
async fn csrf_matrix() {
    let app = memory_app().await;
    let cookie = app.register(&email("matrix")).await;
    let path = "/api/v1/auth/sessions/revoke-others";
    let cases: &[(&[(&str, &str)], u16)] = &[
        (
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
            403,
        ),
        (&[("sec-fetch-site", "cross-site"), ("origin", ORIGIN)], 403),
        (
            &[("sec-fetch-site", "same-origin"), ("origin", ORIGIN)],
            204,
        ),
        (
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "http://localhost:5173"),
            ],
            204,
        ),
        (
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "http://localhost:9999"),
            ],
            403,
        ),
        (&[("sec-fetch-site", "bogus")], 403),
        (&[("origin", "https://app.example.org.attacker.com")], 403),
        (&[("origin", "null")], 403),
        (&[("origin", "http://localhost:5173")], 204),
        (&[("referer", "https://evil.example/page")], 403),
        (&[("referer", "http://localhost:5173/settings")], 204),
    ];
    for (headers, expected) in cases {
        let mut req = Req::post(path).cookie(&cookie);
        for (k, v) in *headers {
            req = req.header(k, v);
        }
        let r = app.send(req).await;
        assert_eq!(r.status.as_u16(), *expected, "{headers:?}: {}", r.text());
        if *expected == 403 {
            r.assert_problem(403, "csrf_failed");
        }
        let vary = r
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            vary.contains("Sec-Fetch-Site") && vary.contains("Origin"),
            "Vary: {vary}"
        );
    }
    // Neither header, with a cookie: blocked (#12 "if both are missing, block").
    app.send(Req::post(path).cookie(&cookie).bare())
        .await
        .assert_problem(403, "csrf_failed");
    // Simple content types are refused before anything else (#13).
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = app
            .send(
                Req::post("/api/v1/auth/login")
                    .header("content-type", ct)
                    .raw("{}"),
            )
            .await;
        r.assert_problem(415, "unsupported_media_type");
    }
    // Login CSRF (#14): a cross-site login is refused like any unsafe request.
    let addr = email("logincsrf");
    app.register(&addr).await;
    let r = app
        .send(
            Req::post("/api/v1/auth/login")
                .header("sec-fetch-site", "cross-site")
                .json(creds(&addr, PASSWORD)),
        )
        .await;
    r.assert_problem(403, "csrf_failed");
    assert!(r.session_cookie().is_none());
    app.finish().await;
}

// SECURITY.md #37: on successes and errors alike.
#[tokio::test]
async fn security_headers_on_every_response() {
    let app = memory_app().await;
    let responses = [
        app.send(Req::get("/api/v1/health/live")).await,
        app.send(Req::get("/api/v1/auth/session")).await,
        app.send(Req::get("/no/such/route")).await,
        app.send(
            Req::post("/api/v1/auth/login")
                .header("content-type", "text/plain")
                .raw("x"),
        )
        .await,
    ];
    for r in &responses {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
        assert_eq!(r.header("cross-origin-resource-policy"), Some("same-site"));
        assert!(r.header("x-request-id").is_some());
        assert!(r.header("server").is_none() && r.header("x-powered-by").is_none());
        assert!(
            r.header("strict-transport-security").is_none(),
            "HSTS is sent only in production"
        );
    }
    app.finish().await;
}

// SECURITY.md #37: CORS with credentials only for configured origins, never `*` or `null`.
#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = memory_app().await;
    let preflight = |origin: &str| {
        Req::new(Method::OPTIONS, "/api/v1/auth/login")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
    };
    let ok = app.send(preflight("http://localhost:5173")).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    for bad in ["https://evil.example", "null"] {
        let r = app.send(preflight(bad)).await;
        assert!(r.header("access-control-allow-origin").is_none(), "{bad}");
    }
    app.finish().await;
}

// SECURITY.md #38 and MISSION.md: malformed input is a 4xx problem, never a 500.
#[tokio::test]
async fn client_mistakes_get_problem_json() {
    let app = memory_app().await;
    let login = "/api/v1/auth/login";
    app.send(Req::post(login).raw("{not json"))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).raw(vec![0xff, 0xfe, 0x7b]))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).raw(""))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).json(json!({"email": "a@b.c"})))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).json(json!({"email": "a@b.c", "password": 12345678})))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).json(json!({"email": "a@b.c", "password": "x", "admin": true})))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).json(json!({"email": "not-an-address", "password": "whatever1"})))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::post(login).raw("{} {}"))
        .await
        .assert_problem(400, "validation_failed");
    app.send(
        Req::post(login)
            .header("content-type", "application/xml")
            .raw("<a/>"),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    app.send(Req::post(login).raw(vec![b'a'; 10 * 1024 * 1024]))
        .await
        .assert_problem(413, "payload_too_large");
    app.send(Req::post(login).raw(vec![b' '; 20 * 1024]))
        .await
        .assert_problem(413, "payload_too_large");
    app.send(Req::get(login))
        .await
        .assert_problem(405, "method_not_allowed");
    app.send(Req::new(Method::PUT, "/api/v1/auth/session"))
        .await
        .assert_problem(405, "method_not_allowed");
    app.send(Req::get("/api/v1/nothing"))
        .await
        .assert_problem(404, "not_found");
    app.send(Req::get("/api/v1/auth/nothing"))
        .await
        .assert_problem(404, "not_found");
    // A malformed cookie is simply no session.
    app.send(Req::get("/api/v1/auth/session").cookie("../../etc/passwd"))
        .await
        .assert_problem(401, "unauthenticated");
    app.send(Req::get("/api/v1/auth/session").cookie(&"A".repeat(5000)))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// SECURITY.md #21 (GitLab CVE-2023-7028 class): an address given as an array is refused.
#[tokio::test]
async fn email_arrays_and_objects_are_refused() {
    let app = memory_app().await;
    let victim = email("victim");
    app.register(&victim).await;
    for body in [
        json!({"email": [victim, "attacker@evil.example"], "password": PASSWORD}),
        json!({"email": {"address": victim}, "password": PASSWORD}),
    ] {
        let r = app.send(Req::post("/api/v1/auth/login").json(body)).await;
        r.assert_problem(400, "validation_failed");
        assert!(r.session_cookie().is_none());
    }
    app.finish().await;
}

/// Inserts a pending session (password done, second factor missing) for a new user.
async fn pending_cookie(app: &TestApp) -> String {
    let cookie = app.register(&email("pending")).await;
    let me = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .json();
    let user = UserId::from_stored(me["user"]["id"].as_str().unwrap().to_owned());
    let token = SessionToken::generate(&authkit::rng::OsRandom).unwrap();
    let now = Timestamp::from_unix_seconds(crate::support::START);
    let record = SessionRecord {
        id_hash: token.hash(),
        handle: "pending-handle".into(),
        user_id: user,
        kind: SessionKind::Pending,
        aal: Aal::Aal1,
        created_at: now,
        last_seen_at: now,
        authenticated_at: now,
        password_verified_at: Some(now),
        expires_at: now.saturating_add(std::time::Duration::from_secs(300)),
        ip: None,
        user_agent: None,
    };
    app.app.store().insert_session(&record).await.unwrap();
    token.to_cookie_value()
}

// SECURITY.md #28: a pending session is authenticated nowhere. The routes come from the
// OpenAPI document (every operation that declares the session cookie), not a hand list.
#[tokio::test]
async fn pending_session_is_refused_by_every_protected_route() {
    let app = memory_app().await;
    let pending = pending_cookie(&app).await;
    let doc = app.send(Req::get("/api/v1/openapi.json")).await.json();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let protected = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("session_cookie").is_some()));
            // `csrf` serves pending sessions too (MFA verification needs a token), and
            // `mfa/verify` is the one route meant for them (tested in mfa.rs).
            if !protected || path == "/api/v1/auth/csrf" || path == "/api/v1/auth/mfa/verify" {
                continue;
            }
            let concrete = path.replace("{id}", "some-session-id");
            let req = Req::new(method.to_uppercase().parse().unwrap(), &concrete).cookie(&pending);
            let req = if method == "get" || method == "delete" {
                req
            } else {
                req.json(json!({"password": PASSWORD, "current_password": PASSWORD, "new_password": "another good passphrase", "code": "123456"}))
            };
            let r = app.send(req).await;
            r.assert_problem(401, "mfa_required");
            checked += 1;
        }
    }
    assert!(
        checked >= 6,
        "expected the protected routes in the OpenAPI document, found {checked}"
    );
    // Logging out of a pending session works and kills it.
    let out = app
        .send(Req::post("/api/v1/auth/logout").cookie(&pending))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    app.send(Req::get("/api/v1/auth/session").cookie(&pending))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// A pending session expires after 5 minutes (SECURITY.md #8 for the MFA step).
#[tokio::test]
async fn pending_session_expires_after_five_minutes() {
    let app = memory_app().await;
    let pending = pending_cookie(&app).await;
    app.send(Req::get("/api/v1/auth/session").cookie(&pending))
        .await
        .assert_problem(401, "mfa_required");
    app.advance(300);
    app.send(Req::get("/api/v1/auth/session").cookie(&pending))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// SECURITY.md #1, #37: production cookies are `__Host-` + Secure; HSTS is on.
#[tokio::test]
async fn production_profile_uses_host_prefixed_secure_cookies() {
    let app = TestApp::with_env(
        Backend::Memory,
        &[
            ("AUTHKIT_PROFILE", "production"),
            ("AUTHKIT_PUBLIC_URL", "https://auth.example.org"),
            ("AUTHKIT_ALLOWED_ORIGINS", "https://app.example.org"),
            ("AUTHKIT_SMTP_URL", "smtp://mail.example.org:587"),
        ],
    )
    .await
    .unwrap();
    let r = app
        .send(
            Req::post("/api/v1/auth/register")
                .header("origin", "https://app.example.org")
                .json(creds(&email("prod"), PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let cookies = r.set_cookies();
    let set = cookies
        .iter()
        .find(|c| c.starts_with("__Host-authkit_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "missing {attr}: {set}");
    }
    // The device cookie too: `__Host-`, Secure, HttpOnly, Strict.
    let device = cookies
        .iter()
        .find(|c| c.starts_with("__Host-authkit_device="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(device.contains(attr), "missing {attr}: {device}");
    }
    assert!(cookies.iter().all(|c| !c.contains("Domain")));
    let hsts = r.header("strict-transport-security").unwrap();
    assert!(hsts.contains("max-age=63072000") && hsts.contains("includeSubDomains"));
    app.finish().await;
}

#[tokio::test]
async fn health_and_openapi() {
    let app = memory_app().await;
    let live = app.send(Req::get("/api/v1/health/live")).await;
    assert_eq!(
        (live.status, live.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let ready = app.send(Req::get("/api/v1/health/ready")).await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let doc = app.send(Req::get("/api/v1/openapi.json")).await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/session",
        "/api/v1/auth/sessions",
        "/api/v1/auth/sessions/{id}",
        "/api/v1/auth/sessions/revoke-others",
        "/api/v1/auth/reauthenticate",
        "/api/v1/auth/password/change",
        "/api/v1/auth/csrf",
        "/api/v1/health/live",
        "/api/v1/health/ready",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    assert!(doc["components"]["securitySchemes"]["session_cookie"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    app.finish().await;
}

// Rehash on login (SECURITY.md #18): a hash made with older parameters is upgraded.
#[tokio::test]
async fn login_upgrades_hashes_with_old_parameters() {
    use authkit::password::{HashParams, PasswordHasher};
    use authkit::store::NewUser;
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let old = PasswordHasher::new(
        HashParams {
            m_cost_kib: 12_288,
            t_cost: 3,
            p_cost: 1,
        },
        Some(1),
        Arc::new(authkit::rng::OsRandom),
    )
    .await
    .unwrap();
    let phc = old.hash(&PASSWORD.to_owned().into()).await.unwrap();
    let addr = email("legacy");
    let user = app
        .app
        .store()
        .create_user(NewUser {
            id: UserId::generate(&authkit::rng::OsRandom).unwrap(),
            email: authkit::user::Email::parse(&addr).unwrap(),
            password_hash: Some(phc.clone()),
            email_verified: false,
            now: Timestamp::from_unix_seconds(crate::support::START),
        })
        .await
        .unwrap();
    assert_eq!(app.login(&addr, PASSWORD).await.status, StatusCode::OK);
    // The upgrade runs in the background so that the login's timing does not reveal it; wait
    // for it by polling the store (bounded), never by sleeping a fixed time.
    let upgraded = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let stored = app
                .app
                .store()
                .user_by_id(&user.id)
                .await
                .unwrap()
                .unwrap()
                .password_hash
                .unwrap();
            if stored != phc {
                return stored;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the hash is upgraded after login");
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded}"
    );
    assert_eq!(app.login(&addr, PASSWORD).await.status, StatusCode::OK);
    app.finish().await;
}

// The session id hash shown in Debug output is a short prefix, never the token.
#[test]
fn debug_output_never_contains_tokens() {
    let token = SessionToken::generate(&authkit::rng::OsRandom).unwrap();
    let shown = format!("{token:?} {:?}", token.hash());
    assert!(!shown.contains(&token.to_cookie_value()));
    let hex: String = token
        .hash()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        !shown.contains(&hex),
        "only a short prefix of the hash is shown"
    );
}
