//! SECURITY.md #40: every account flow with all logs captured at TRACE level; no secret the
//! run used may appear in them. A binary of its own, so that its global log subscriber sees
//! everything the process logs and nothing from other tests.

// Test code: failing loudly is the point.
#![allow(
    unreachable_pub,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../it/support.rs"]
mod support;

// The OpenID provider harness (its own few self-tests run in this binary too; their logs
// only add to the capture).
#[path = "../it/oauth_support.rs"]
mod oauth_support;

use http::StatusCode;
use serde_json::json;

use support::{Backend, PASSWORD, Req, TestApp, creds, email};

const NEW_PASSWORD: &str = "an entirely different passphrase";

async fn verify_first(backend: Backend) -> Option<TestApp> {
    TestApp::with_env(backend, &[("AUTHKIT_REGISTRATION_MODE", "verify-first")]).await
}

/// Everything the process logs (the subscriber is global: this binary holds this one test).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// SECURITY.md #40 (and #3, #21): run every account flow with all logs captured at TRACE level,
// then look for every secret the run used: passwords, mailed tokens, session and device cookie
// values. None may appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_a_secret_used_in_the_flows() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Global, not thread-local: a thread-local default loses events to callsite interest
    // cached by other threads (seen as a flaky capture when this test shared a binary).
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let app = verify_first(Backend::Sqlite).await.unwrap();
    let addr = email("logged");
    let mut secrets: Vec<String> = vec![PASSWORD.into(), NEW_PASSWORD.into()];
    app.send(Req::post("/api/v1/auth/register").json(creds(&addr, PASSWORD)))
        .await;
    let token = app.wait_for_mail(&addr, "verification").await.token();
    secrets.push(token.clone());
    let r = app
        .send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": token })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    secrets.push(r.session_cookie().unwrap());
    secrets.push(r.device_cookie().unwrap());
    app.login(&addr, "a wrong password for the log")
        .await
        .assert_problem(401, "invalid_credentials");
    secrets.push("a wrong password for the log".into());
    let r = app.login(&addr, PASSWORD).await;
    let cookie = r.session_cookie().unwrap();
    secrets.push(cookie.clone());
    secrets.push(r.device_cookie().unwrap());
    let r = app
        .send(
            Req::post("/api/v1/auth/password/change")
                .cookie(&cookie)
                .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    secrets.push(r.session_cookie().unwrap());
    app.send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": addr })))
        .await;
    let reset = app.wait_for_mail(&addr, "password_reset").await.token();
    secrets.push(reset.clone());
    let third = "a third passphrase for the log";
    secrets.push(third.into());
    let r = app
        .send(Req::post("/api/v1/auth/password/reset").json(json!({
            "token": reset, "new_password": third
        })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.wait_for_mail(&addr, "password_changed").await;

    // MFA: enrolment (secret, URI, QR), confirmation (backup codes), a sign-in with a code, a
    // replayed code, a backup code, regeneration and disabling (SECURITY.md #40: no OTP or
    // backup code in the logs).
    let cookie = app.login_ok_with(&addr, third).await;
    let r = app
        .send(Req::post("/api/v1/auth/mfa/enable").cookie(&cookie))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let enrolment = r.json();
    let secret_b32 = enrolment["secret"].as_str().unwrap().to_owned();
    secrets.push(secret_b32.clone());
    secrets.push(enrolment["otpauth_uri"].as_str().unwrap().to_owned());
    let secret = authkit::mfa::TotpSecret::from_base32(&secret_b32).unwrap();
    let code_now = |app: &TestApp| {
        use authkit::clock::Clock as _;
        let config = authkit::mfa::TotpConfig::default();
        let step = config.current_step(app.clock.now()).unwrap();
        config.code_at(&secret, step).as_str().to_owned()
    };
    let code = code_now(&app);
    secrets.push(code.clone());
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/verify")
                .cookie(&cookie)
                .json(json!({ "code": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let backup: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    secrets.extend(backup.iter().cloned());
    secrets.extend(backup.iter().map(|c| c.replace('-', "")));
    let cookie = r.session_cookie().unwrap();
    secrets.push(cookie.clone());
    app.advance(30);
    let pending = app.login(&addr, third).await.session_cookie().unwrap();
    secrets.push(pending.clone());
    // The confirming code again (a replay), then the current one.
    app.send(
        Req::post("/api/v1/auth/mfa/verify")
            .cookie(&pending)
            .json(json!({ "code": code })),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let code = code_now(&app);
    secrets.push(code.clone());
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/verify")
                .cookie(&pending)
                .json(json!({ "code": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let full = r.session_cookie().unwrap();
    secrets.push(full.clone());
    let pending = app.login(&addr, third).await.session_cookie().unwrap();
    secrets.push(pending.clone());
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/verify")
                .cookie(&pending)
                .json(json!({ "backup_code": backup[0] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let full = r.session_cookie().unwrap();
    secrets.push(full.clone());
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/backup-codes")
                .cookie(&full)
                .json(json!({ "backup_code": backup[1] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let fresh: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    secrets.extend(fresh.iter().cloned());
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/disable")
                .cookie(&full)
                .json(json!({ "backup_code": fresh[0] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.wait_for_mails(&addr, "mfa_changed", 4).await;
    app.finish().await;

    oauth_flows(&mut secrets).await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.len() > 1000, "the capture works: {} bytes", logs.len());
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the logs: {}…",
            &secret[..secret.len().min(6)]
        );
    }
}

/// OAuth sign-in against the real OpenID provider, a replayed callback and a forged ID token;
/// collects the state, nonce, code, transaction and session cookies and the provider's access
/// token.
async fn oauth_flows(secrets: &mut Vec<String>) {
    use oauth_support::{Browser, query_param, shared_op};
    let Some(op) = shared_op() else {
        return;
    };
    let vars: Vec<(String, String)> = [
        ("KIND", "oidc".to_owned()),
        ("ISSUER", op.issuer()),
        ("CLIENT_ID", op.client_id().to_owned()),
        ("CLIENT_SECRET", op.client_secret().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("AUTHKIT_OAUTH__OIDC__{k}"), v))
    .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    #[allow(clippy::disallowed_methods)] // the provider signs with the real time
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = authkit::clock::Timestamp::from_unix_seconds(i64::try_from(now).unwrap());
    let app = TestApp::with_env_at(Backend::Sqlite, &env, start)
        .await
        .unwrap();
    secrets.push(op.client_secret().to_owned());
    for hint in ["alice", "f_wrong_aud"] {
        let browser = Browser::new(&app);
        let hop = browser.get("/api/v1/auth/oauth/oidc?redirect_to=/").await;
        let auth = format!("{}&login_hint={hint}", hop.location.unwrap());
        secrets.push(query_param(&auth, "state").unwrap());
        secrets.push(query_param(&auth, "nonce").unwrap());
        secrets.push(browser.app_cookie("authkit_oauth").unwrap());
        let hops = browser.follow_to_app(&auth, 10).await;
        let callback = hops.last().unwrap().next_url().unwrap();
        secrets.push(query_param(&callback, "code").unwrap());
        let done = browser.get(&callback).await;
        assert_eq!(done.status, StatusCode::FOUND);
        // Replayed: refused, and logged without the values.
        browser.get(&callback).await;
        if hint == "alice" {
            let me = browser.app_request(Req::get("/api/v1/auth/session")).await;
            assert_eq!(me.status, StatusCode::OK, "{}", me.text());
            secrets.push(browser.app_cookie("authkit_session").unwrap());
            let user = authkit::user::UserId::from_stored(
                me.json()["user"]["id"].as_str().unwrap().to_owned(),
            );
            let token = app
                .app
                .auth()
                .linked_accounts()
                .unwrap()
                .access_token(&user, "oidc")
                .await
                .unwrap()
                .unwrap();
            secrets.push(secrecy::ExposeSecret::expose_secret(&token).to_owned());
        }
    }
    app.finish().await;
}
