//! Account lifecycle through the HTTP API on every store: verify-first sign-up, e-mail
//! verification, password reset, lockout with device cookies, and the audit trail.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, PASSWORD, Req, Resp, TestApp, creds, email, join_all};

const NEW_PASSWORD: &str = "an entirely different passphrase";

/// The app with verify-first registration (the default once mail exists).
async fn verify_first(backend: Backend) -> Option<TestApp> {
    TestApp::with_env(backend, &[("AUTHKIT_REGISTRATION_MODE", "verify-first")]).await
}

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
    verify_first_signup_works_once,
    verify_first_answers_the_same_for_a_taken_address,
    forgot_and_reset_work_once_and_revoke_every_session,
    forgot_answers_identically_for_unknown_and_known_addresses,
    forgot_refuses_an_address_array_and_extra_fields,
    reset_links_expire,
    lockout_from_many_addresses_spares_other_accounts_and_known_devices,
    reset_ends_a_lockout,
    per_address_limit_answers_429_with_retry_after,
    audit_trail_records_every_action_without_secrets,
    email_variants_share_one_lockout_counter,
    resend_sends_a_fresh_link,
    someone_elses_pending_signup_cannot_take_the_address,
    device_cookies_end_with_the_password,
    parallel_correct_sign_ins_are_never_locked_out,
    notices_for_new_browsers_and_password_changes,
    legacy_hashes_sign_in_and_are_upgraded,
);

/// Bodies equal apart from `request_id` (SECURITY.md #20).
fn same_apart_from_request_id(a: &Resp, b: &Resp) {
    assert_eq!(a.status, b.status);
    let strip = |r: &Resp| {
        let mut v: Value = r.json();
        if let Some(o) = v.as_object_mut() {
            o.remove("request_id");
        }
        v
    };
    assert_eq!(strip(a), strip(b));
    let names = |r: &Resp| {
        let mut n: Vec<String> = r
            .headers
            .iter()
            .filter(|(k, _)| *k != "x-request-id" && *k != "date")
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(a), names(b));
}

// MISSION.md §3 `register` (verify-first) and `email/verify`.
async fn verify_first_signup_works_once(backend: Backend) {
    let Some(app) = verify_first(backend).await else {
        return;
    };
    let addr = email("vf");
    let r = app
        .send(Req::post("/api/v1/auth/register").json(creds(&addr, PASSWORD)))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json(), json!({"status": "verification_sent"}));
    assert!(r.session_cookie().is_none(), "no session before the link");
    // No account yet: signing in fails like for any unknown address.
    app.login(&addr, PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");

    let mail = app.wait_for_mail(&addr, "verification").await;
    assert!(!mail.subject.is_empty());
    assert!(
        mail.body
            .contains("http://localhost:8080/verify-email#token="),
        "{}",
        mail.body
    );
    let token = mail.token();
    let r = app
        .send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": token })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let body = r.json();
    assert_eq!(body["user"]["email"], addr);
    assert_eq!(body["user"]["email_verified"], true);
    assert_eq!(body["session"]["aal"], "aal1");
    let cookie = r.session_cookie().expect("verify starts a session");
    let me = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await;
    assert_eq!(me.status, StatusCode::OK);

    // Single use.
    app.send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": token })))
        .await
        .assert_problem(400, "invalid_token");
    // Malformed tokens are refused the same way.
    for bad in ["", "x", &"A".repeat(44)] {
        app.send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": bad })))
            .await
            .assert_problem(400, "invalid_token");
    }
    assert_eq!(app.login(&addr, PASSWORD).await.status, StatusCode::OK);
    app.finish().await;
}

// SECURITY.md #20: registration answers the same whether or not the address is taken.
async fn verify_first_answers_the_same_for_a_taken_address(backend: Backend) {
    let Some(app) = verify_first(backend).await else {
        return;
    };
    let taken = email("taken");
    let r = app
        .send(Req::post("/api/v1/auth/register").json(creds(&taken, PASSWORD)))
        .await;
    let token = app.wait_for_mail(&taken, "verification").await.token();
    let v = app
        .send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": token })))
        .await;
    assert_eq!(v.status, StatusCode::CREATED);

    let free = email("free");
    let a = app
        .send(Req::post("/api/v1/auth/register").json(creds(&free, PASSWORD)))
        .await;
    let b = app
        .send(Req::post("/api/v1/auth/register").json(creds(&taken, NEW_PASSWORD)))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.bytes, r.bytes);
    same_apart_from_request_id(&a, &b);
    // The owner of the taken address is told; nobody gets a second account.
    let notice = app.wait_for_mail(&taken, "account_exists").await;
    assert!(!notice.body.contains("#token="), "{}", notice.body);
    assert_eq!(app.login(&taken, PASSWORD).await.status, StatusCode::OK);
    app.login(&taken, NEW_PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    app.finish().await;
}

// SECURITY.md #21, MISSION.md `password/forgot`, `password/reset`.
async fn forgot_and_reset_work_once_and_revoke_every_session(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let addr = email("reset");
    let first = app.register(&addr).await;
    let second = app.login_ok(&addr).await;

    let r = app
        .send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": addr })))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json(), json!({"status": "accepted"}));
    let mail = app.wait_for_mail(&addr, "password_reset").await;
    assert!(
        mail.body
            .contains("http://localhost:8080/reset-password#token="),
        "{}",
        mail.body
    );
    let token = mail.token();

    // A weak password is refused and the token stays usable.
    app.send(Req::post("/api/v1/auth/password/reset").json(json!({
        "token": token, "new_password": "password123456"
    })))
    .await
    .assert_problem(400, "password_too_weak");

    let r = app
        .send(
            Req::post("/api/v1/auth/password/reset")
                .cookie(&first)
                .json(json!({ "token": token, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.session_cookie().is_none(), "a reset never signs in");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    for cookie in [&first, &second] {
        app.send(Req::get("/api/v1/auth/session").cookie(cookie))
            .await
            .assert_problem(401, "unauthenticated");
    }
    // Single use.
    app.send(Req::post("/api/v1/auth/password/reset").json(json!({
        "token": token, "new_password": "yet another fine passphrase"
    })))
    .await
    .assert_problem(400, "invalid_token");
    app.login(&addr, PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    assert_eq!(app.login(&addr, NEW_PASSWORD).await.status, StatusCode::OK);
    app.wait_for_mail(&addr, "password_changed").await;
    app.finish().await;
}

// SECURITY.md #20: byte-identical answers; the timing is measured by scripts/enumeration.sh.
async fn forgot_answers_identically_for_unknown_and_known_addresses(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let known = email("known");
    app.register(&known).await;
    let unknown = email("unknown");
    let a = app
        .send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": known })))
        .await;
    let b = app
        .send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": unknown })))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.bytes, b.bytes);
    same_apart_from_request_id(&a, &b);
    // And login: unknown address vs wrong password.
    let a = app.login(&known, "not the password at all").await;
    let b = app.login(&unknown, "not the password at all").await;
    a.assert_problem(401, "invalid_credentials");
    same_apart_from_request_id(&a, &b);
    app.wait_for_mail(&known, "password_reset").await;
    assert!(app.mails_to(&unknown).is_empty());
    app.finish().await;
}

// SECURITY.md #21, GitLab CVE-2023-7028.
async fn forgot_refuses_an_address_array_and_extra_fields(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let victim = email("victim");
    app.register(&victim).await;
    let attacker = email("attacker");
    for body in [
        json!({ "email": [victim, attacker] }),
        json!({ "email": { "0": victim, "1": attacker } }),
        json!({ "email": victim, "email2": attacker }),
        json!({ "email": victim, "extra": attacker }),
        json!([victim, attacker]),
    ] {
        app.send(Req::post("/api/v1/auth/password/forgot").json(body))
            .await
            .assert_problem(400, "validation_failed");
    }
    // A valid request sends the link to the stored address only.
    let r = app
        .send(
            Req::post("/api/v1/auth/password/forgot")
                .json(json!({ "email": victim.to_uppercase() })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mail = app.wait_for_mail(&victim, "password_reset").await;
    assert_eq!(mail.to, victim);
    assert!(app.mails_to(&attacker).is_empty());
    app.finish().await;
}

async fn reset_links_expire(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let addr = email("expire");
    app.register(&addr).await;
    app.send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": addr })))
        .await;
    let token = app.wait_for_mail(&addr, "password_reset").await.token();
    app.advance(30 * 60);
    app.send(Req::post("/api/v1/auth/password/reset").json(json!({
        "token": token, "new_password": NEW_PASSWORD
    })))
    .await
    .assert_problem(400, "invalid_token");
    assert_eq!(app.login(&addr, PASSWORD).await.status, StatusCode::OK);
    app.finish().await;
}

/// An app that believes `X-Forwarded-For` from 127.0.0.1 (see [`login_from`]).
async fn behind_proxy(backend: Backend) -> Option<TestApp> {
    TestApp::with_env(backend, &[("AUTHKIT_TRUSTED_PROXIES", "127.0.0.1/32")]).await
}

/// 100 consecutive wrong passwords for `addr`, each after the previous lock ended (from new
/// addresses): the hard lock.
async fn hard_lock(app: &TestApp, addr: &str) {
    for i in 0..100u32 {
        app.advance(3601);
        let ip = format!("203.0.113.{}", i % 250 + 1);
        app.send(login_from(addr, "wrong guess number two", &ip))
            .await
            .assert_problem(401, "invalid_credentials");
    }
}

/// A login from client address `ip` through the trusted proxy.
fn login_from(addr: &str, password: &str, ip: &str) -> Req {
    Req::post("/api/v1/auth/login")
        .peer("127.0.0.1")
        .header("x-forwarded-for", ip)
        .json(creds(addr, password))
}

// SECURITY.md #22 and #20: 101 wrong passwords from 101 addresses at once; the lock answers
// like a wrong password; other accounts and the owner's known browser are unaffected. The
// documented behaviour of the correct password: refused while a lock lasts (5 free failures,
// then 30 s doubling to 1 h), and from 100 consecutive failures until a success from a known
// browser or a password reset.
async fn lockout_from_many_addresses_spares_other_accounts_and_known_devices(backend: Backend) {
    let Some(app) = behind_proxy(backend).await else {
        return;
    };
    let victim = email("victim");
    app.register(&victim).await;
    let bystander = email("bystander");
    app.register(&bystander).await;
    // The owner's browser signed in before the attack: it holds a device cookie.
    let owner = app
        .send(login_from(&victim, PASSWORD, "198.51.100.7"))
        .await;
    assert_eq!(owner.status, StatusCode::OK);
    let device = owner.device_cookie().expect("a device cookie");

    let attempts: Vec<_> = (0..101u32)
        .map(|i| {
            let ip = format!("203.0.{}.{}", i / 200, i % 200 + 1);
            app.send(login_from(&victim, "wrong guess number one", &ip))
        })
        .collect();
    let results = join_all(attempts).await;
    for r in &results {
        r.assert_problem(401, "invalid_credentials");
    }
    // The correct password is refused exactly like a wrong one, from a fresh address.
    let locked = app.send(login_from(&victim, PASSWORD, "192.0.2.55")).await;
    locked.assert_problem(401, "invalid_credentials");
    same_apart_from_request_id(&locked, &results[0]);
    // Another account is unaffected.
    let other = app
        .send(login_from(&bystander, PASSWORD, "192.0.2.57"))
        .await;
    assert_eq!(other.status, StatusCode::OK);
    // Counted before verification, the parallel burst could not buy more than the free
    // failures: once the first lock (30 s) is over, the owner gets in from anywhere.
    app.advance(31);
    let r = app.send(login_from(&victim, PASSWORD, "192.0.2.58")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // 100 consecutive failures, each after the previous lock ended: the hard lock.
    hard_lock(&app, &victim).await;
    app.advance(2 * 86_400);
    app.send(login_from(&victim, PASSWORD, "192.0.2.59"))
        .await
        .assert_problem(401, "invalid_credentials");
    // The owner's known browser still gets in, under its own counter.
    let r = app
        .send(login_from(&victim, PASSWORD, "198.51.100.7").with_cookie(&device))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.finish().await;
}

// A password reset ends a hard lock (the reset proved control of the address).
async fn reset_ends_a_lockout(backend: Backend) {
    let Some(app) = behind_proxy(backend).await else {
        return;
    };
    let victim = email("relock");
    app.register(&victim).await;
    hard_lock(&app, &victim).await;
    app.send(login_from(&victim, PASSWORD, "192.0.2.60"))
        .await
        .assert_problem(401, "invalid_credentials");
    app.send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": victim })))
        .await;
    let token = app.wait_for_mail(&victim, "password_reset").await.token();
    let r = app
        .send(Req::post("/api/v1/auth/password/reset").json(json!({
            "token": token, "new_password": NEW_PASSWORD
        })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .send(login_from(&victim, NEW_PASSWORD, "192.0.2.61"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.finish().await;
}

// MISSION.md `ratelimit`: per client address, 429 with Retry-After; other addresses unaffected.
async fn per_address_limit_answers_429_with_retry_after(backend: Backend) {
    let Some(app) = behind_proxy(backend).await else {
        return;
    };
    let addr = email("limited");
    let mut last = None;
    for _ in 0..40 {
        let r = app
            .send(login_from(&addr, "wrong guess number one", "203.0.113.9"))
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            last = Some(r);
            break;
        }
    }
    let limited = last.expect("the per-address limit answers 429 within 40 attempts");
    limited.assert_problem(429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another address is unaffected; IPv6 neighbours in one /64 share a budget.
    app.send(login_from(&addr, "wrong guess number one", "203.0.113.10"))
        .await
        .assert_problem(401, "invalid_credentials");
    app.advance(retry);
    app.send(login_from(&addr, "wrong guess number one", "203.0.113.9"))
        .await
        .assert_problem(401, "invalid_credentials");
    app.finish().await;
}

// SECURITY.md #40: every action leaves an event; none holds a secret.
async fn audit_trail_records_every_action_without_secrets(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let addr = email("audited");
    let cookie = app.register(&addr).await;
    app.login(&addr, "a wrong password here")
        .await
        .assert_problem(401, "invalid_credentials");
    let other = app.login_ok(&addr).await;
    let r = app
        .send(
            Req::post("/api/v1/auth/password/change")
                .cookie(&other)
                .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let current = r.session_cookie().unwrap();
    app.send(Req::post("/api/v1/auth/password/forgot").json(json!({ "email": addr })))
        .await;
    let token = app.wait_for_mail(&addr, "password_reset").await.token();
    let verify_token = app.wait_for_mail(&addr, "verification").await.token();
    let r = app
        .send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": verify_token })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = app
        .send(Req::post("/api/v1/auth/password/reset").json(json!({
            "token": token, "new_password": "the third passphrase of the day"
        })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let fresh = app.login(&addr, "the third passphrase of the day").await;
    let fresh = fresh.session_cookie().unwrap();
    let second = app
        .login_ok_with(&addr, "the third passphrase of the day")
        .await;
    let r = app
        .send(Req::post("/api/v1/auth/sessions/revoke-others").cookie(&fresh))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.send(Req::post("/api/v1/auth/logout").cookie(&fresh))
        .await;
    let last = app
        .login_ok_with(&addr, "the third passphrase of the day")
        .await;

    let r = app
        .send(Req::get("/api/v1/auth/audit?limit=100").cookie(&last))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let page = r.json();
    let types: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for expected in [
        "login.succeeded",
        "login.failed",
        "password.changed",
        "email.verified",
        "password.reset",
        "session.revoked",
        "logout",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    // Newest first, with the fields of the contract.
    let first = &page["events"][0];
    assert_eq!(first["type"], "login.succeeded");
    for field in ["id", "type", "at", "ip", "user_agent", "details"] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    let text = r.text();
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        "the third passphrase of the day",
        &token,
        &verify_token,
        &cookie,
        &other,
        &current,
        &second,
        &last,
    ] {
        assert!(!text.contains(secret), "the audit trail holds a secret");
    }
    // Pagination: a page of 2 and its cursor.
    let p1 = app
        .send(Req::get("/api/v1/auth/audit?limit=2").cookie(&last))
        .await
        .json();
    assert_eq!(p1["events"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap().to_owned();
    let p2 = app
        .send(Req::get(&format!("/api/v1/auth/audit?limit=2&cursor={cursor}")).cookie(&last))
        .await
        .json();
    assert!(
        p2["events"][0]["id"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            < cursor.parse::<i64>().unwrap()
    );
    app.send(Req::get("/api/v1/auth/audit?limit=0").cookie(&last))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::get("/api/v1/auth/audit?cursor=abc").cookie(&last))
        .await
        .assert_problem(400, "validation_failed");
    app.send(Req::get("/api/v1/auth/audit"))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// MISSION.md `ratelimit`: case and Unicode variants of an address count as one account.
async fn email_variants_share_one_lockout_counter(backend: Backend) {
    let Some(app) = behind_proxy(backend).await else {
        return;
    };
    let addr = email("variant");
    app.register(&addr).await;
    let (local, domain) = addr.split_once('@').unwrap();
    // Upper case, and the fullwidth commercial at / letters that NFKC folds back.
    let variants = [
        addr.to_uppercase(),
        format!("{}@{}", local.to_uppercase(), domain),
        format!("{local}\u{FF20}{domain}"),
        format!("\u{FF56}{}@{domain}", &local[1..]),
        format!("{}@{}", local, domain.to_uppercase()),
    ];
    for (i, v) in variants.iter().enumerate() {
        app.send(login_from(
            v,
            "wrong guess number one",
            &format!("203.0.113.{}", i + 1),
        ))
        .await
        .assert_problem(401, "invalid_credentials");
    }
    // Five failures on one counter: the right password is now refused for 30 s.
    app.send(login_from(&addr, PASSWORD, "203.0.113.77"))
        .await
        .assert_problem(401, "invalid_credentials");
    app.advance(31);
    assert_eq!(
        app.send(login_from(&addr, PASSWORD, "203.0.113.78"))
            .await
            .status,
        StatusCode::OK
    );
    app.finish().await;
}

// SECURITY.md #16, #18; real-world bug 9 (bcrypt's 72 bytes): imported hashes sign in, are
// upgraded to argon2id, and a longer different password never gets in.
async fn legacy_hashes_sign_in_and_are_upgraded(backend: Backend) {
    use authkit::clock::Timestamp;
    use authkit::store::NewUser;
    use authkit::user::{Email, UserId};

    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let long: String = "l".repeat(72);
    let cases = [
        (
            email("bcrypt"),
            bcrypt::hash(PASSWORD, 6).unwrap(),
            PASSWORD.to_owned(),
        ),
        (
            email("bcrypt72"),
            bcrypt::hash(&long, 6).unwrap(),
            long.clone(),
        ),
        (
            email("django"),
            // Django 5 `pbkdf2_sha256`, 1000 iterations, salt `saltsalt`, password PASSWORD.
            django_pbkdf2(PASSWORD, "saltsalt", 1000),
            PASSWORD.to_owned(),
        ),
    ];
    for (addr, hash, _) in &cases {
        app.app
            .store()
            .create_user(NewUser {
                id: UserId::generate(&authkit::rng::OsRandom).unwrap(),
                email: Email::parse(addr).unwrap(),
                password_hash: Some(hash.clone()),
                email_verified: true,
                now: Timestamp::from_unix_seconds(crate::support::START),
            })
            .await
            .unwrap();
    }
    // bcrypt would compare only the first 72 bytes: a 73-byte password sharing them is refused.
    let (addr72, _, _) = &cases[1];
    app.login(addr72, &format!("{long}x"))
        .await
        .assert_problem(401, "invalid_credentials");
    for (addr, old, password) in &cases {
        app.login(addr, "a wrong password entirely")
            .await
            .assert_problem(401, "invalid_credentials");
        let r = app.login(addr, password).await;
        assert_eq!(r.status, StatusCode::OK, "{addr}: {}", r.text());
        // The upgrade runs in the background after the session is written.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let stored = app
                .app
                .store()
                .user_by_email(&Email::parse(addr).unwrap())
                .await
                .unwrap()
                .unwrap()
                .password_hash
                .unwrap();
            if stored != *old {
                assert!(
                    stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
                    "{stored}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{addr} was not upgraded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(app.login(addr, password).await.status, StatusCode::OK);
    }
    app.finish().await;
}

/// `pbkdf2_sha256$<iterations>$<salt>$<base64 of 32 bytes>`, computed here with HMAC-SHA256.
fn django_pbkdf2(password: &str, salt: &str, iterations: u32) -> String {
    use base64::Engine as _;
    let key = pbkdf2_sha256(password.as_bytes(), salt.as_bytes(), iterations);
    format!(
        "pbkdf2_sha256${iterations}${salt}${}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // One block suffices for 32 bytes: U1 = HMAC(P, S || INT(1)), Ui = HMAC(P, Ui-1).
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(password, &block);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

// `email/resend`: for the signed-in user (no body needed), or by address for an unverified
// account; never for a pending sign-up; always 202 with the same body.
async fn resend_sends_a_fresh_link(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let addr = email("resend");
    let cookie = app.register(&addr).await;
    app.wait_for_mails(&addr, "verification", 1).await;
    let r = app
        .send(Req::post("/api/v1/auth/email/resend").cookie(&cookie))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json(), json!({"status": "accepted"}));
    let mails = app.wait_for_mails(&addr, "verification", 2).await;
    // Both links work until one is used; each once.
    let r = app
        .send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": mails[1].token() })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    // Verified now: a resend sends nothing more.
    let r = app
        .send(
            Req::post("/api/v1/auth/email/resend")
                .cookie(&cookie)
                .json(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // Without a session, a pending verify-first sign-up gets no new link (it may be someone
    // else's attempt, made with their password); the answer is the same 202.
    let Some(vf) = verify_first(backend).await else {
        return;
    };
    let pending = email("pending");
    vf.send(Req::post("/api/v1/auth/register").json(creds(&pending, PASSWORD)))
        .await;
    vf.wait_for_mails(&pending, "verification", 1).await;
    let unknown = email("nobody");
    let a = vf
        .send(Req::post("/api/v1/auth/email/resend").json(json!({ "email": pending })))
        .await;
    let b = vf
        .send(Req::post("/api/v1/auth/email/resend").json(json!({ "email": unknown })))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    same_apart_from_request_id(&a, &b);
    vf.send(Req::post("/api/v1/auth/email/resend"))
        .await
        .assert_problem(400, "validation_failed");
    // Give the (delayed, background) work time to run before checking that it sent nothing.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(vf.mails_to(&pending).len(), 1);
    assert!(vf.mails_to(&unknown).is_empty());
    vf.finish().await;
    // Only two verification mails for the first address: none after it was verified.
    assert_eq!(
        app.mails_to(&addr)
            .iter()
            .filter(|m| m.kind() == "verification")
            .count(),
        2
    );
    app.finish().await;
}

// Security notices (SECURITY.md #19): a sign-in from a browser without this account's device
// cookie, and a password change, are mailed; a known browser signs in quietly.
async fn notices_for_new_browsers_and_password_changes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let addr = email("notice");
    app.register(&addr).await; // the first browser: no notice
    let first = app.login(&addr, PASSWORD).await; // a browser without the cookie
    assert_eq!(first.status, StatusCode::OK);
    let device = first.device_cookie().unwrap();
    let notice = app.wait_for_mail(&addr, "new_sign_in").await;
    assert!(!notice.body.contains(PASSWORD));
    let r = app
        .send(
            Req::post("/api/v1/auth/login")
                .with_cookie(&device)
                .json(creds(&addr, PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.session_cookie().unwrap();
    let r = app
        .send(
            Req::post("/api/v1/auth/password/change")
                .cookie(&cookie)
                .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.wait_for_mail(&addr, "password_changed").await;
    // Exactly one new-sign-in notice: registration and the known browser sent none.
    assert_eq!(
        app.mails_to(&addr)
            .iter()
            .filter(|m| m.kind() == "new_sign_in")
            .count(),
        1
    );
    app.finish().await;
}

// Pre-hijacking: an attacker's pending sign-up with the victim's address (and the attacker's
// password) dies when the victim completes their own; its link no longer works.
async fn someone_elses_pending_signup_cannot_take_the_address(backend: Backend) {
    let Some(app) = verify_first(backend).await else {
        return;
    };
    let victim = email("owner");
    let attacker_password = "the attacker knows this one";
    app.send(Req::post("/api/v1/auth/register").json(creds(&victim, attacker_password)))
        .await;
    let attackers_link = app.wait_for_mails(&victim, "verification", 1).await[0].token();
    app.advance(1);
    app.send(Req::post("/api/v1/auth/register").json(creds(&victim, PASSWORD)))
        .await;
    let mails = app.wait_for_mails(&victim, "verification", 2).await;
    let own_link = mails[1].token();
    assert_ne!(own_link, attackers_link);
    let r = app
        .send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": own_link })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    app.send(Req::post("/api/v1/auth/email/verify").json(json!({ "token": attackers_link })))
        .await
        .assert_problem(400, "invalid_token");
    app.login(&victim, attacker_password)
        .await
        .assert_problem(401, "invalid_credentials");
    assert_eq!(app.login(&victim, PASSWORD).await.status, StatusCode::OK);
    app.finish().await;
}

// A device cookie is bound to the password it was earned with: after a change, an old one no
// longer exempts its browser from the lockout; the browser that made the change gets a new one.
async fn device_cookies_end_with_the_password(backend: Backend) {
    let Some(app) = behind_proxy(backend).await else {
        return;
    };
    let addr = email("devices");
    app.register(&addr).await;
    let old_browser = app.send(login_from(&addr, PASSWORD, "198.51.100.1")).await;
    let old_device = old_browser.device_cookie().unwrap();
    let changer = app.send(login_from(&addr, PASSWORD, "198.51.100.2")).await;
    let r = app
        .send(
            Req::post("/api/v1/auth/password/change")
                .peer("127.0.0.1")
                .header("x-forwarded-for", "198.51.100.2")
                .cookie(&changer.session_cookie().unwrap())
                .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let new_device = r
        .device_cookie()
        .expect("a fresh device cookie for the new password");
    for i in 0..5 {
        app.send(login_from(
            &addr,
            "wrong guess number three",
            &format!("203.0.113.{}", i + 1),
        ))
        .await
        .assert_problem(401, "invalid_credentials");
    }
    app.send(login_from(&addr, NEW_PASSWORD, "198.51.100.1").with_cookie(&old_device))
        .await
        .assert_problem(401, "invalid_credentials");
    let r = app
        .send(login_from(&addr, NEW_PASSWORD, "198.51.100.2").with_cookie(&new_device))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.finish().await;
}

// Counting attempts before the check must not turn parallel correct sign-ins (a double click,
// several tabs, a script) into a lockout: on one instance they take turns per account.
async fn parallel_correct_sign_ins_are_never_locked_out(backend: Backend) {
    let Some(app) = behind_proxy(backend).await else {
        return;
    };
    let addr = email("parallel");
    app.register(&addr).await;
    let attempts: Vec<_> = (0..24u32)
        .map(|i| {
            app.send(login_from(
                &addr,
                PASSWORD,
                &format!("198.51.100.{}", i + 1),
            ))
        })
        .collect();
    for r in join_all(attempts).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    app.finish().await;
}
