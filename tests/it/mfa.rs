//! MFA through the HTTP API on every store: TOTP enrolment, the second sign-in step, replay
//! and concurrency (one code, one success, also across two server instances), backup codes,
//! disabling and regenerating under fresh re-authentication, and the per-account budget
//! (SECURITY.md #9, #23–28, #40).

use authkit::clock::Clock as _;
use authkit::mfa::{TotpConfig, TotpSecret, parse_otpauth_uri};
use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, PASSWORD, Req, Resp, TestApp, email, join_all};

macro_rules! per_store {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Memory).await; } )* }
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await; } )* }
    };
}

per_store!(
    enrol_sign_in_replay_backup_code_and_disable,
    one_totp_code_one_success_under_concurrency,
    one_backup_code_one_success_under_concurrency,
    totp_window_is_one_step_either_side_and_never_backwards,
    disable_and_regenerate_need_a_password_proof_and_a_factor,
    mfa_attempts_have_a_per_account_budget,
    pending_session_ends_after_five_minutes_and_with_a_reset,
    required_mfa_lets_aal1_sessions_enrol,
    enrolment_offers_to_end_other_sessions_and_aal1_sessions_cannot_change_the_account,
);

const ENABLE: &str = "/api/v1/auth/mfa/enable";
const VERIFY: &str = "/api/v1/auth/mfa/verify";
const DISABLE: &str = "/api/v1/auth/mfa/disable";
const BACKUP_CODES: &str = "/api/v1/auth/mfa/backup-codes";
const STATUS: &str = "/api/v1/auth/mfa/status";

/// A user with MFA on.
pub(crate) struct Enrolled {
    pub(crate) email: String,
    /// The session cookie after enrolment (`aal2`).
    pub(crate) cookie: String,
    pub(crate) secret: TotpSecret,
    pub(crate) backup_codes: Vec<String>,
}

impl TestApp {
    fn now(&self) -> i64 {
        self.clock.now().unix_seconds()
    }

    /// The TOTP code of `secret` for the time step `offset` steps from now.
    pub(crate) fn code(&self, secret: &TotpSecret, offset: i64) -> String {
        let step = u64::try_from(self.now() / 30 + offset).unwrap();
        TotpConfig::default()
            .code_at(secret, step)
            .as_str()
            .to_owned()
    }

    pub(crate) async fn verify_code(&self, cookie: &str, code: &str) -> Resp {
        self.send(
            Req::post(VERIFY)
                .cookie(cookie)
                .json(json!({ "code": code })),
        )
        .await
    }

    /// Registers, enables and confirms MFA; the clock then moves to the next step so that the
    /// next code is not a replay of the confirming one.
    pub(crate) async fn enrol(&self, name: &str) -> Enrolled {
        let email = email(name);
        let cookie = self.register(&email).await;
        let r = self.send(Req::post(ENABLE).cookie(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        let secret = TotpSecret::from_base32(body["secret"].as_str().unwrap()).unwrap();
        let r = self.verify_code(&cookie, &self.code(&secret, 0)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let backup_codes: Vec<String> = r.json()["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let cookie = r.session_cookie().expect("enrolment rotates the session");
        self.advance(30);
        Enrolled {
            email,
            cookie,
            secret,
            backup_codes,
        }
    }

    /// Password step of a sign-in with MFA: the pending cookie.
    pub(crate) async fn pending(&self, email: &str) -> String {
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            r.json(),
            json!({"mfa_required": true, "methods": ["totp", "backup_code"]})
        );
        r.session_cookie().expect("a pending-session cookie")
    }

    /// A full sign-in: password, then the current code; the `aal2` cookie.
    pub(crate) async fn sign_in_with_code(&self, user: &Enrolled) -> String {
        let p = self.pending(&user.email).await;
        let r = self.verify_code(&p, &self.code(&user.secret, 0)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.session_cookie().unwrap()
    }

    async fn audit_types(&self, cookie: &str) -> Vec<String> {
        let r = self
            .send(Req::get("/api/v1/auth/audit?limit=100").cookie(cookie))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn reauthenticate(&self, cookie: &str) -> String {
        let r = self
            .send(
                Req::post("/api/v1/auth/reauthenticate")
                    .cookie(cookie)
                    .json(json!({ "password": PASSWORD })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.session_cookie().unwrap()
    }
}

fn status_of(r: &Resp) -> u16 {
    r.status.as_u16()
}

/// The "done when" path, plus what SECURITY.md #24–#26 ask of it.
async fn enrol_sign_in_replay_backup_code_and_disable(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let email = email("mfa-flow");
    let cookie = app.register(&email).await;

    // Enable: the secret, the URI and both QR forms; MFA is not on yet (SECURITY.md #25).
    let r = app.send(Req::post(ENABLE).cookie(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    let secret = TotpSecret::from_base32(body["secret"].as_str().unwrap()).unwrap();
    assert!(secret.expose().len() >= 20, "a 160-bit secret");
    let uri = parse_otpauth_uri(body["otpauth_uri"].as_str().unwrap()).unwrap();
    assert_eq!(uri.secret.expose(), secret.expose());
    assert_eq!(uri.account, email);
    assert_eq!((uri.digits, uri.period), (6, 30));
    assert!(body["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(
        body["qr_png"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    let status = app.send(Req::get(STATUS).cookie(&cookie)).await.json();
    assert_eq!(
        status,
        json!({"enabled": false, "backup_codes_remaining": 0})
    );

    // A wrong code does not confirm; a right one does, once, and answers ten backup codes.
    let wrong = format!(
        "{:06}",
        (app.code(&secret, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    app.verify_code(&cookie, &wrong)
        .await
        .assert_problem(401, "invalid_credentials");
    let r = app.verify_code(&cookie, &app.code(&secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let codes: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let cookie = r
        .session_cookie()
        .expect("a new session id at aal2 (SECURITY.md #9)");
    let me = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .json();
    assert_eq!(me["session"]["aal"], "aal2");
    assert_eq!(me["user"]["mfa_enabled"], true);
    let status = app.send(Req::get(STATUS).cookie(&cookie)).await.json();
    assert_eq!(
        status,
        json!({"enabled": true, "backup_codes_remaining": 10})
    );
    // The secret is never shown again.
    app.send(Req::post(ENABLE).cookie(&cookie))
        .await
        .assert_problem(400, "validation_failed");

    // Sign out; the password alone now gives a pending session, refused elsewhere.
    app.send(Req::post("/api/v1/auth/logout").cookie(&cookie))
        .await;
    app.advance(30);
    let pending = app.pending(&email).await;
    app.send(Req::get("/api/v1/auth/session").cookie(&pending))
        .await
        .assert_problem(401, "mfa_required");
    let code = app.code(&secret, 0);
    let r = app.verify_code(&pending, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let full = r
        .session_cookie()
        .expect("a new cookie for the full session");
    assert_ne!(full, pending);
    assert_eq!(r.json()["session"]["aal"], "aal2");
    app.send(Req::get("/api/v1/auth/session").cookie(&pending))
        .await
        .assert_problem(401, "unauthenticated");
    let me = app
        .send(Req::get("/api/v1/auth/session").cookie(&full))
        .await
        .json();
    assert_eq!(me["session"]["aal"], "aal2");

    // The same code again, from a new pending session: refused and audited (#24).
    let again = app.pending(&email).await;
    app.verify_code(&again, &code)
        .await
        .assert_problem(401, "invalid_credentials");

    // A backup code works once.
    let r = app
        .send(
            Req::post(VERIFY)
                .cookie(&again)
                .json(json!({ "backup_code": codes[0] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let third = app.pending(&email).await;
    app.send(
        Req::post(VERIFY)
            .cookie(&third)
            .json(json!({ "backup_code": codes[0] })),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    // Spaces and upper case are forgiven (typed from paper).
    let typed = codes[1].replace('-', " ").to_uppercase();
    let r = app
        .send(
            Req::post(VERIFY)
                .cookie(&third)
                .json(json!({ "backup_code": typed })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let latest = r.session_cookie().unwrap();
    let status = app.send(Req::get(STATUS).cookie(&latest)).await.json();
    assert_eq!(status["backup_codes_remaining"], 8);

    // Disable: without a fresh password proof it fails, with one (and a code) it works.
    app.advance(6 * 60);
    app.send(
        Req::post(DISABLE)
            .cookie(&latest)
            .json(json!({ "code": app.code(&secret, 0) })),
    )
    .await
    .assert_problem(403, "reauth_required");
    let latest = app.reauthenticate(&latest).await;
    app.send(Req::post(DISABLE).cookie(&latest).json(json!({})))
        .await
        .assert_problem(400, "validation_failed");
    let r = app
        .send(
            Req::post(DISABLE)
                .cookie(&latest)
                .json(json!({ "code": app.code(&secret, 0) })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let status = app.send(Req::get(STATUS).cookie(&latest)).await.json();
    assert_eq!(
        status,
        json!({"enabled": false, "backup_codes_remaining": 0})
    );
    // Without MFA the password signs in fully again.
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.json()["user"]["mfa_enabled"], false);

    // Every step is in the audit trail, without a code or secret (SECURITY.md #40).
    let types = app.audit_types(&latest).await;
    for expected in [
        "mfa.enabled",
        "mfa.succeeded",
        "mfa.failed",
        "totp.reuse_rejected",
        "backup_code.used",
        "mfa.disabled",
        "login.succeeded",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} in {types:?}"
        );
    }
    let audit = app
        .send(Req::get("/api/v1/auth/audit?limit=100").cookie(&latest))
        .await
        .text();
    assert!(!audit.contains(&code));
    assert!(!audit.contains(&codes[0]));
    assert!(!audit.contains(&*secret.to_base32()));
    // Notices: enabled, a reused code, disabled (SECURITY.md #24, #27).
    let notices = app.wait_for_mails(&email, "mfa_changed", 3).await;
    assert!(notices.iter().all(|m| !m.body.contains(&code)));
    app.finish().await;
}

/// SECURITY.md #24: one code from two sessions at once (and on two instances sharing the
/// database): exactly one success.
async fn one_totp_code_one_success_under_concurrency(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let user = app.enrol("mfa-race").await;
    let code = app.code(&user.secret, 0);
    let twin = app.twin().await;
    let mut pendings = Vec::new();
    for _ in 0..8 {
        pendings.push(app.pending(&user.email).await);
    }
    let results = join_all(
        pendings
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let req = Req::post(VERIFY).cookie(p).json(json!({ "code": code }));
                let (app, twin) = (&app, twin.as_ref());
                async move {
                    match (i % 2, twin) {
                        (1, Some(router)) => app.send_to(router, req).await,
                        _ => app.send(req).await,
                    }
                }
            })
            .collect(),
    )
    .await;
    let statuses: Vec<u16> = results.iter().map(status_of).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // The others are wrong codes (401) or, once the account's MFA budget is spent, 429.
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    // The winner's step is used up for good: after the budget refills, the same code (still
    // inside the window) is refused as a replay.
    app.advance(35);
    let reuses = |types: Vec<String>| types.iter().filter(|t| *t == "totp.reuse_rejected").count();
    let before = reuses(app.audit_types(&user.cookie).await);
    let p = app.pending(&user.email).await;
    app.verify_code(&p, &code)
        .await
        .assert_problem(401, "invalid_credentials");
    assert_eq!(reuses(app.audit_types(&user.cookie).await), before + 1);
    app.finish().await;
}

/// SECURITY.md #26: one backup code fired by ten parallel requests: exactly one success;
/// regenerating invalidates every old code; the database holds no plaintext.
async fn one_backup_code_one_success_under_concurrency(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let user = app.enrol("mfa-backup").await;
    let twin = app.twin().await;
    let mut pendings = Vec::new();
    for _ in 0..10 {
        pendings.push(app.pending(&user.email).await);
    }
    let code = &user.backup_codes[3];
    let results = join_all(
        pendings
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let req = Req::post(VERIFY)
                    .cookie(p)
                    .json(json!({ "backup_code": code }));
                let (app, twin) = (&app, twin.as_ref());
                async move {
                    match (i % 2, twin) {
                        (1, Some(router)) => app.send_to(router, req).await,
                        _ => app.send(req).await,
                    }
                }
            })
            .collect(),
    )
    .await;
    let statuses: Vec<u16> = results.iter().map(status_of).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    // Let the account's MFA budget refill.
    app.advance(120);

    // Nothing secret in the rows: no backup code, no TOTP secret in any form we hand out.
    for table in ["mfa_backup_codes", "mfa_totp", "audit_events"] {
        if let Some(dump) = app.table_dump(table).await {
            for c in &user.backup_codes {
                assert!(!dump.contains(c.as_str()), "{table} holds a backup code");
                assert!(
                    !dump.contains(&c.replace('-', "")),
                    "{table} holds a backup code"
                );
            }
            assert!(
                !dump.contains(&*user.secret.to_base32()),
                "{table} holds the secret"
            );
        }
    }

    // Regenerate (fresh password + a factor): the old set dies, the new set works.
    let cookie = app.reauthenticate(&user.cookie).await;
    let r = app
        .send(
            Req::post(BACKUP_CODES)
                .cookie(&cookie)
                .json(json!({ "code": app.code(&user.secret, 0) })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let fresh: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|c| !user.backup_codes.contains(c)));
    let status = app.send(Req::get(STATUS).cookie(&cookie)).await.json();
    assert_eq!(status["backup_codes_remaining"], 10);
    let p = app.pending(&user.email).await;
    app.send(
        Req::post(VERIFY)
            .cookie(&p)
            .json(json!({ "backup_code": user.backup_codes[5] })),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let r = app
        .send(
            Req::post(VERIFY)
                .cookie(&p)
                .json(json!({ "backup_code": fresh[0] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        app.audit_types(&cookie)
            .await
            .iter()
            .any(|t| t == "backup_codes.regenerated")
    );
    app.finish().await;
}

/// SECURITY.md #23 with a fake clock: T−1 and T+1 are accepted, T−2 and T+2 refused; after a
/// step was accepted, no earlier or equal step is (#24). Step-up on a full session.
async fn totp_window_is_one_step_either_side_and_never_backwards(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let user = app.enrol("mfa-window").await;
    // Two more steps, so that T−1 is newer than the step that confirmed the enrolment.
    app.advance(60);
    let step_up = |code: String| {
        let app = &app;
        let cookie = user.cookie.clone();
        async move { app.verify_code(&cookie, &code).await }
    };
    step_up(app.code(&user.secret, -2))
        .await
        .assert_problem(401, "invalid_credentials");
    step_up(app.code(&user.secret, 2))
        .await
        .assert_problem(401, "invalid_credentials");
    let r = step_up(app.code(&user.secret, -1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cookie = r.session_cookie().unwrap();
    app.advance(90);
    let r = app.verify_code(&cookie, &app.code(&user.secret, 1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cookie = r.session_cookie().unwrap();
    // The current step is now older than the last accepted one.
    app.verify_code(&cookie, &app.code(&user.secret, 0))
        .await
        .assert_problem(401, "invalid_credentials");
    app.finish().await;
}

/// SECURITY.md #27: a session older than the window gets `reauth_required`; a re-authentication
/// with a code alone does not count as the password proof; a password without a code fails.
async fn disable_and_regenerate_need_a_password_proof_and_a_factor(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let user = app.enrol("mfa-reauth").await;
    // A sign-in with password and code: the password is proven now.
    let fresh = app.sign_in_with_code(&user).await;
    app.advance(30);
    let other = app.sign_in_with_code(&user).await;
    // Within the window the password proof of the sign-in counts (regenerate works) …
    let r = app
        .send(
            Req::post(BACKUP_CODES)
                .cookie(&fresh)
                .json(json!({ "backup_code": user.backup_codes[9] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let backup_codes: Vec<String> = r.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    // … and six minutes later it no longer does.
    app.advance(6 * 60);
    for path in [DISABLE, BACKUP_CODES] {
        app.send(
            Req::post(path)
                .cookie(&fresh)
                .json(json!({ "code": app.code(&user.secret, 0) })),
        )
        .await
        .assert_problem(403, "reauth_required");
    }
    // Re-authenticating with a code refreshes the session, not the password proof.
    let r = app
        .send(
            Req::post("/api/v1/auth/reauthenticate")
                .cookie(&fresh)
                .json(json!({ "code": app.code(&user.secret, 0) })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["session"]["aal"], "aal2");
    let cookie = r.session_cookie().unwrap();
    app.advance(30);
    for path in [DISABLE, BACKUP_CODES] {
        app.send(
            Req::post(path)
                .cookie(&cookie)
                .json(json!({ "code": app.code(&user.secret, 0) })),
        )
        .await
        .assert_problem(403, "reauth_required");
    }
    // A fresh password but no factor (or a wrong one) still fails.
    let cookie = app.reauthenticate(&cookie).await;
    app.send(
        Req::post(DISABLE)
            .cookie(&cookie)
            .json(json!({ "code": "" })),
    )
    .await
    .assert_problem(400, "validation_failed");
    app.send(
        Req::post(DISABLE)
            .cookie(&cookie)
            .json(json!({ "code": "000000", "backup_code": "x" })),
    )
    .await
    .assert_problem(400, "validation_failed");
    app.send(
        Req::post(DISABLE)
            .cookie(&cookie)
            .json(json!({ "backup_code": "0000-0000-0000-0000-0000-0000" })),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    // Both, with the offer to end the other sessions taken up.
    let r = app
        .send(Req::post(DISABLE).cookie(&cookie).json(json!({
            "backup_code": backup_codes[0],
            "revoke_other_sessions": true,
        })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.send(Req::get("/api/v1/auth/session").cookie(&other))
        .await
        .assert_problem(401, "unauthenticated");
    let r = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Enrolling also needs a recent authentication (the window, 5 minutes by default).
    let late = app.register(&email("mfa-late")).await;
    app.advance(6 * 60);
    app.send(Req::post(ENABLE).cookie(&late))
        .await
        .assert_problem(403, "reauth_required");
    let late = app.reauthenticate(&late).await;
    let r = app.send(Req::post(ENABLE).cookie(&late)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.finish().await;
}

/// The code space is small: MFA attempts have their own per-account budget, whatever the
/// client address and the instance (the lockout lives on the authenticator's row). A locked
/// account answers like a wrong code (MISSION.md), even to the right one; a reset ends the lock.
async fn mfa_attempts_have_a_per_account_budget(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let twin = app.twin().await;
    let user = app.enrol("mfa-budget").await;
    let pending = app.pending(&user.email).await;
    let wrong = |app: &TestApp| {
        let right = app.code(&user.secret, 0).parse::<u32>().unwrap();
        format!("{:06}", (right + 500_000) % 1_000_000)
    };
    let mut last_wrong = None;
    for i in 0..5 {
        let r = app
            .send(
                Req::post(VERIFY)
                    .cookie(&pending)
                    .peer(&format!("198.51.100.{}", i + 1))
                    .json(json!({ "code": wrong(&app) })),
            )
            .await;
        r.assert_problem(401, "invalid_credentials");
        last_wrong = Some(r);
    }
    // Locked now: the right code, from another address and (on SQL) on another instance whose
    // in-process quota is untouched, answers exactly like a wrong one.
    let right = Req::post(VERIFY)
        .cookie(&pending)
        .peer("203.0.113.9")
        .json(json!({ "code": app.code(&user.secret, 0) }));
    let r = match &twin {
        Some(router) => app.send_to(router, right).await,
        None => app.send(right).await,
    };
    r.assert_problem(401, "invalid_credentials");
    assert!(r.header("retry-after").is_none());
    let without_id = |r: &Resp| {
        let mut v = r.json();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(without_id(&r), without_id(&last_wrong.unwrap()));
    // The lock (30 s after the fifth failure) and the quota pass.
    app.advance(60);
    let r = app.verify_code(&pending, &app.code(&user.secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cookie = r.session_cookie().unwrap();
    let types = app.audit_types(&cookie).await;
    assert!(types.iter().filter(|t| *t == "mfa.failed").count() >= 6);
    assert!(types.iter().any(|t| t == "account.locked"));

    // Lock it again, then reset the password: the lock ends with it.
    app.advance(60);
    let pending = app.pending(&user.email).await;
    for _ in 0..5 {
        app.verify_code(&pending, &wrong(&app))
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let r = app
        .send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": user.email })))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let token = app
        .wait_for_mail(&user.email, "password_reset")
        .await
        .token();
    let r = app
        .send(Req::post("/api/v1/auth/password/reset").json(json!({
            "token": token,
            "new_password": "an entirely different passphrase",
        })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.advance(30);
    let r = app
        .login(&user.email, "an entirely different passphrase")
        .await;
    let pending = r.session_cookie().unwrap();
    let r = app.verify_code(&pending, &app.code(&user.secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.finish().await;
}

/// The pending session lives five minutes, and a password reset ends it.
async fn pending_session_ends_after_five_minutes_and_with_a_reset(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let user = app.enrol("mfa-pending").await;
    let pending = app.pending(&user.email).await;
    app.advance(301);
    app.verify_code(&pending, &app.code(&user.secret, 0))
        .await
        .assert_problem(401, "unauthenticated");
    // A reset deletes every session, pending ones included.
    let pending = app.pending(&user.email).await;
    let r = app
        .send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": user.email })))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let token = app
        .wait_for_mail(&user.email, "password_reset")
        .await
        .token();
    let r = app
        .send(Req::post("/api/v1/auth/password/reset").json(json!({
            "token": token,
            "new_password": "an entirely different passphrase",
        })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.verify_code(&pending, &app.code(&user.secret, 0))
        .await
        .assert_problem(401, "unauthenticated");
    // MFA survives the reset: the new password still needs the second factor.
    let r = app
        .login(&user.email, "an entirely different passphrase")
        .await;
    assert_eq!(r.json()["mfa_required"], true);
    app.finish().await;
}

/// `AUTHKIT_MFA__REQUIRED`: a user without MFA gets an `aal1` session that the auth service
/// serves (so that the user can enrol); enrolment makes it `aal2`.
async fn required_mfa_lets_aal1_sessions_enrol(backend: Backend) {
    let Some(app) = TestApp::with_env(backend, &[("AUTHKIT_MFA__REQUIRED", "true")]).await else {
        return;
    };
    let email = email("mfa-required");
    let cookie = app.register(&email).await;
    let me: Value = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .json();
    assert_eq!(me["session"]["aal"], "aal1");
    assert_eq!(me["user"]["mfa_enabled"], false);
    let r = app.send(Req::post(ENABLE).cookie(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret = TotpSecret::from_base32(r.json()["secret"].as_str().unwrap()).unwrap();
    let r = app.verify_code(&cookie, &app.code(&secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cookie = r.session_cookie().unwrap();
    let me: Value = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .json();
    assert_eq!(me["session"]["aal"], "aal2");
    app.finish().await;
}

/// SECURITY.md #27 (revocation offered on an MFA change) and the assurance of account changes:
/// sessions from before enrolment stay `aal1` and cannot change the password or end the owner's
/// sessions until they pass the second factor.
async fn enrolment_offers_to_end_other_sessions_and_aal1_sessions_cannot_change_the_account(
    backend: Backend,
) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let addr = email("mfa-others");
    let first = app.register(&addr).await;
    let second = app.login_ok(&addr).await;
    let third = app.login_ok(&addr).await;
    let r = app.send(Req::post(ENABLE).cookie(&first)).await;
    let secret = TotpSecret::from_base32(r.json()["secret"].as_str().unwrap()).unwrap();
    let r = app
        .send(Req::post(VERIFY).cookie(&first).json(json!({
            "code": app.code(&secret, 0),
            "revoke_other_sessions": true,
        })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let first = r.session_cookie().unwrap();
    for gone in [&second, &third] {
        app.send(Req::get("/api/v1/auth/session").cookie(gone))
            .await
            .assert_problem(401, "unauthenticated");
    }
    let r = app
        .send(Req::get("/api/v1/auth/session").cookie(&first))
        .await;
    assert_eq!(r.json()["session"]["aal"], "aal2");

    // Without the offer taken: another user's older sessions stay, at aal1.
    let addr = email("mfa-others-kept");
    let owner = app.register(&addr).await;
    let old = app.login_ok(&addr).await;
    let r = app.send(Req::post(ENABLE).cookie(&owner)).await;
    let secret = TotpSecret::from_base32(r.json()["secret"].as_str().unwrap()).unwrap();
    let r = app.verify_code(&owner, &app.code(&secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .send(Req::get("/api/v1/auth/session").cookie(&old))
        .await;
    assert_eq!(r.json()["session"]["aal"], "aal1");
    app.send(Req::post("/api/v1/auth/password/change").cookie(&old).json(
        json!({ "current_password": PASSWORD, "new_password": "a password chosen by a thief" }),
    ))
    .await
    .assert_problem(401, "mfa_required");
    app.send(Req::post("/api/v1/auth/sessions/revoke-others").cookie(&old))
        .await
        .assert_problem(401, "mfa_required");
    // A step-up makes it a full session of an MFA user.
    app.advance(30);
    let r = app.verify_code(&old, &app.code(&secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let stepped = r.session_cookie().unwrap();
    assert_eq!(r.json()["session"]["aal"], "aal2");
    let r = app
        .send(Req::post("/api/v1/auth/sessions/revoke-others").cookie(&stepped))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.finish().await;
}
