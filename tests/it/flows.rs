//! The auth API end to end, on every store.

use http::StatusCode;
use serde_json::json;

use crate::support::{PASSWORD, Req, TestApp, creds, email};

crate::for_each_store!(
    register_session_logout,
    login_rotates_the_session_id,
    wrong_password_and_unknown_user_answer_identically,
    registration_refusals,
    list_and_revoke_sessions,
    revoking_needs_a_recent_sign_in,
    password_change_revokes_other_sessions,
    idle_timeout_is_enforced_server_side,
    absolute_timeout_is_not_extended_by_activity,
    store_keeps_only_token_hashes,
    csrf_token_for_headerless_clients,
    rehash_never_overwrites_a_changed_password,
    rotation_never_resurrects_or_outlives_a_password_change,
);

// SECURITY.md #1, #3, #4, #7, #10
async fn register_session_logout(app: TestApp) {
    let addr = email("ada");
    let r = app
        .send(Req::post("/api/v1/auth/register").json(creds(&addr, PASSWORD)))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let cookie = r.session_cookie().unwrap();
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("authkit_session="))
        .unwrap();
    // The device cookie (lockout exemption) is the one persistent cookie, and it is strict.
    let device = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("authkit_device="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(device.contains(attr), "missing {attr}: {device}");
    }
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "missing {attr}: {set}");
    }
    for forbidden in ["Max-Age", "Expires", "Domain"] {
        assert!(
            !set.contains(forbidden),
            "session cookie must be non-persistent: {set}"
        );
    }
    assert!(set.len() <= 4096);
    assert!(
        !r.text().contains(&cookie),
        "the token never appears in a body"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["user"]["email"], addr);
    assert_eq!(body["session"]["aal"], "aal1");
    assert_eq!(body["session"]["current"], true);

    let me = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.json()["user"]["id"], body["user"]["id"]);
    assert_eq!(me.header("cache-control"), Some("no-store"));

    let out = app
        .send(Req::post("/api/v1/auth/logout").cookie(&cookie))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(out.header("clear-site-data"), Some("\"cache\""));
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("authkit_session=;") && c.contains("Max-Age=0"))
    );
    app.send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .assert_problem(401, "unauthenticated");
    app.send(Req::get("/api/v1/auth/logout"))
        .await
        .assert_problem(405, "method_not_allowed");
    app.finish().await;
}

// SECURITY.md #9: a new id on every sign-in; the old one is dead.
async fn login_rotates_the_session_id(app: TestApp) {
    let addr = email("rot");
    let first = app.register(&addr).await;
    let r = app
        .send(
            Req::post("/api/v1/auth/login")
                .cookie(&first)
                .json(creds(&addr, PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let second = r.session_cookie().unwrap();
    assert_ne!(first, second);
    app.send(Req::get("/api/v1/auth/session").cookie(&first))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        app.send(Req::get("/api/v1/auth/session").cookie(&second))
            .await
            .status,
        StatusCode::OK
    );

    // Re-authentication rotates too, keeping the same public session id.
    let before = app
        .send(Req::get("/api/v1/auth/session").cookie(&second))
        .await
        .json();
    let re = app
        .send(
            Req::post("/api/v1/auth/reauthenticate")
                .cookie(&second)
                .json(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(re.status, StatusCode::OK, "{}", re.text());
    let third = re.session_cookie().unwrap();
    assert_ne!(third, second);
    assert_eq!(re.json()["session"]["id"], before["session"]["id"]);
    app.send(Req::get("/api/v1/auth/session").cookie(&second))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// SECURITY.md #20: same status, body (but request id) and headers for unknown users.
async fn wrong_password_and_unknown_user_answer_identically(app: TestApp) {
    let addr = email("enum");
    app.register(&addr).await;
    let wrong = app.login(&addr, "not the password at all").await;
    let unknown = app.login(&email("nobody"), "not the password at all").await;
    wrong.assert_problem(401, "invalid_credentials");
    unknown.assert_problem(401, "invalid_credentials");
    let strip = |r: &crate::support::Resp| {
        let mut v = r.json();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(&wrong), strip(&unknown));
    let names = |r: &crate::support::Resp| {
        let mut n: Vec<String> = r
            .headers
            .keys()
            .map(|k| k.to_string())
            .filter(|k| k != "x-request-id")
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&wrong), names(&unknown));
    assert!(wrong.set_cookies().is_empty() && unknown.set_cookies().is_empty());
    app.finish().await;
}

// SECURITY.md #16, #17
async fn registration_refusals(app: TestApp) {
    let addr = email("dup");
    app.register(&addr).await;
    let again = app
        .send(Req::post("/api/v1/auth/register").json(creds(&addr.to_uppercase(), PASSWORD)))
        .await;
    again.assert_problem(409, "account_exists");

    let weak = app
        .send(Req::post("/api/v1/auth/register").json(creds(&email("weak"), "password123456")))
        .await;
    weak.assert_problem(400, "password_too_weak");
    assert_eq!(weak.json()["reason"], "common");
    assert!(!weak.json()["detail"].as_str().unwrap().is_empty());

    let short = app
        .send(Req::post("/api/v1/auth/register").json(creds(&email("short"), "abc123")))
        .await;
    short.assert_problem(400, "password_too_weak");
    assert_eq!(short.json()["reason"], "too_short");

    // 64 characters are accepted; a password differing at character 73 is a different
    // password (the bcrypt 72-byte trap).
    let long: String = "Tr0ub4dor&3-horse-staple-"
        .repeat(4)
        .chars()
        .take(80)
        .collect();
    let long_addr = email("long");
    let r = app
        .send(Req::post("/api/v1/auth/register").json(creds(&long_addr, &long)))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut near = long.clone();
    near.replace_range(72..73, "#");
    app.login(&long_addr, &near)
        .await
        .assert_problem(401, "invalid_credentials");
    assert_eq!(app.login(&long_addr, &long).await.status, StatusCode::OK);

    // 129 characters: a client error before any hashing, never a 500.
    app.login(&long_addr, &"x".repeat(129))
        .await
        .assert_problem(400, "validation_failed");
    let too_long = app
        .send(Req::post("/api/v1/auth/register").json(creds(&email("tl"), &"y".repeat(129))))
        .await;
    too_long.assert_problem(400, "password_too_weak");
    app.finish().await;
}

// SECURITY.md #11
async fn list_and_revoke_sessions(app: TestApp) {
    let addr = email("multi");
    let s1 = app.register(&addr).await;
    let s2 = app.login_ok(&addr).await;
    let s3 = app.login_ok(&addr).await;
    let list = app
        .send(Req::get("/api/v1/auth/sessions").cookie(&s1))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    for s in &sessions {
        for cookie in [&s1, &s2, &s3] {
            assert_ne!(
                s["id"].as_str().unwrap(),
                cookie.as_str(),
                "the public id is not the token"
            );
        }
    }
    // Revoke s2 by its public id, from s1.
    let me2 = app
        .send(Req::get("/api/v1/auth/session").cookie(&s2))
        .await
        .json();
    let id2 = me2["session"]["id"].as_str().unwrap().to_owned();
    let del = app
        .send(Req::delete(&format!("/api/v1/auth/sessions/{id2}")).cookie(&s1))
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text());
    app.send(Req::get("/api/v1/auth/session").cookie(&s2))
        .await
        .assert_problem(401, "unauthenticated");
    app.send(Req::delete(&format!("/api/v1/auth/sessions/{id2}")).cookie(&s1))
        .await
        .assert_problem(404, "not_found");

    // Another user's session id is not found (never revoked).
    let other = app.register(&email("other")).await;
    let me1 = app
        .send(Req::get("/api/v1/auth/session").cookie(&s1))
        .await
        .json();
    let id1 = me1["session"]["id"].as_str().unwrap();
    app.send(Req::delete(&format!("/api/v1/auth/sessions/{id1}")).cookie(&other))
        .await
        .assert_problem(404, "not_found");

    let others = app
        .send(Req::post("/api/v1/auth/sessions/revoke-others").cookie(&s1))
        .await;
    assert_eq!(others.status, StatusCode::NO_CONTENT);
    app.send(Req::get("/api/v1/auth/session").cookie(&s3))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        app.send(Req::get("/api/v1/auth/session").cookie(&s1))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(Req::get("/api/v1/auth/session").cookie(&other))
            .await
            .status,
        StatusCode::OK
    );
    let left = app
        .send(Req::get("/api/v1/auth/sessions").cookie(&s1))
        .await
        .json();
    assert_eq!(left["sessions"].as_array().unwrap().len(), 1);
    app.finish().await;
}

// SECURITY.md #11 (A5 7.5.2): revoking other sessions needs a recent proof of the password.
async fn revoking_needs_a_recent_sign_in(app: TestApp) {
    let addr = email("reauth");
    let s1 = app.register(&addr).await;
    let _s2 = app.login_ok(&addr).await;
    app.advance(6 * 60);
    app.send(Req::post("/api/v1/auth/sessions/revoke-others").cookie(&s1))
        .await
        .assert_problem(403, "reauth_required");
    let wrong = app
        .send(
            Req::post("/api/v1/auth/reauthenticate")
                .cookie(&s1)
                .json(json!({"password": "nope nope nope"})),
        )
        .await;
    wrong.assert_problem(401, "invalid_credentials");
    let re = app
        .send(
            Req::post("/api/v1/auth/reauthenticate")
                .cookie(&s1)
                .json(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(re.status, StatusCode::OK);
    let fresh = re.session_cookie().unwrap();
    let ok = app
        .send(Req::post("/api/v1/auth/sessions/revoke-others").cookie(&fresh))
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    app.finish().await;
}

// SECURITY.md #19
async fn password_change_revokes_other_sessions(app: TestApp) {
    let addr = email("chg");
    let s1 = app.register(&addr).await;
    let s2 = app.login_ok(&addr).await;
    let path = "/api/v1/auth/password/change";
    let new_pw = "a completely new passphrase";
    app.send(
        Req::post(path)
            .cookie(&s1)
            .json(json!({"current_password": "wrong wrong", "new_password": new_pw})),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let weak = app
        .send(
            Req::post(path)
                .cookie(&s1)
                .json(json!({"current_password": PASSWORD, "new_password": "iloveyou"})),
        )
        .await;
    weak.assert_problem(400, "password_too_weak");
    let ok = app
        .send(
            Req::post(path)
                .cookie(&s1)
                .json(json!({"current_password": PASSWORD, "new_password": new_pw})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.text());
    let rotated = ok
        .session_cookie()
        .expect("the surviving session gets a new id");
    app.send(Req::get("/api/v1/auth/session").cookie(&s2))
        .await
        .assert_problem(401, "unauthenticated");
    app.send(Req::get("/api/v1/auth/session").cookie(&s1))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        app.send(Req::get("/api/v1/auth/session").cookie(&rotated))
            .await
            .status,
        StatusCode::OK
    );
    app.login(&addr, PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    assert_eq!(app.login(&addr, new_pw).await.status, StatusCode::OK);
    app.finish().await;
}

// SECURITY.md #8, #4: idle limit measured by the server's (injected) clock.
async fn idle_timeout_is_enforced_server_side(app: TestApp) {
    let cookie = app.register(&email("idle")).await;
    app.advance(30 * 60 - 1);
    assert_eq!(
        app.send(Req::get("/api/v1/auth/session").cookie(&cookie))
            .await
            .status,
        StatusCode::OK
    );
    // Activity moved the idle deadline: another 30 min − 1 s is still fine.
    app.advance(30 * 60 - 1);
    assert_eq!(
        app.send(Req::get("/api/v1/auth/session").cookie(&cookie))
            .await
            .status,
        StatusCode::OK
    );
    app.advance(30 * 60 + 1);
    let expired = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await;
    expired.assert_problem(401, "unauthenticated");
    assert!(
        expired
            .set_cookies()
            .iter()
            .any(|c| c.contains("Max-Age=0")),
        "a dead cookie is cleared"
    );
    app.finish().await;
}

// SECURITY.md #8: activity never extends a session past 12 h.
async fn absolute_timeout_is_not_extended_by_activity(app: TestApp) {
    let cookie = app.register(&email("abs")).await;
    for _ in 0..(12 * 3 - 1) {
        app.advance(20 * 60);
        assert_eq!(
            app.send(Req::get("/api/v1/auth/session").cookie(&cookie))
                .await
                .status,
            StatusCode::OK
        );
    }
    app.advance(20 * 60);
    app.send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// SECURITY.md #6: the store is keyed by a hash; the raw token finds nothing.
async fn store_keeps_only_token_hashes(app: TestApp) {
    use authkit::session::{SessionIdHash, SessionToken};
    let cookie = app.register(&email("hash")).await;
    let token = SessionToken::parse(&cookie).unwrap();
    let store = app.app.store();
    assert!(store.session(&token.hash()).await.unwrap().is_some());
    let raw = base64_url_decode(&cookie);
    let as_key = SessionIdHash::from_slice(&raw).unwrap();
    assert_ne!(as_key, token.hash());
    assert!(
        store.session(&as_key).await.unwrap().is_none(),
        "the raw token must not be a store key"
    );
    app.finish().await;
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    const A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.chars() {
        bits = (bits << 6) | A.find(c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

// SECURITY.md #13: header-less clients with a session need the session-bound token.
async fn csrf_token_for_headerless_clients(app: TestApp) {
    let a = app.register(&email("csrf-a")).await;
    let b = app.register(&email("csrf-b")).await;
    app.send(Req::get("/api/v1/auth/csrf"))
        .await
        .assert_problem(401, "unauthenticated");
    let token_a = app
        .send(Req::get("/api/v1/auth/csrf").cookie(&a))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = "/api/v1/auth/sessions/revoke-others";
    app.send(Req::post(list).cookie(&a).bare())
        .await
        .assert_problem(403, "csrf_failed");
    app.send(
        Req::post(list)
            .cookie(&b)
            .bare()
            .header("x-csrf-token", &token_a),
    )
    .await
    .assert_problem(403, "csrf_failed");
    let ok = app
        .send(
            Req::post(list)
                .cookie(&a)
                .bare()
                .header("x-csrf-token", &token_a),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.text());
    // Without a session cookie there is nothing to forge: header-less login works (scripts).
    let addr = email("script");
    app.register(&addr).await;
    let login = app
        .send(
            Req::post("/api/v1/auth/login")
                .bare()
                .json(creds(&addr, PASSWORD)),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    app.finish().await;
}

// A login's background rehash must not resurrect the old password when a password change
// lands first: the upgrade is conditional on the hash it verified.
async fn rehash_never_overwrites_a_changed_password(app: TestApp) {
    use authkit::clock::Timestamp;
    let addr = email("race");
    let cookie = app.register(&addr).await;
    let store = app.app.store();
    let me = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .json();
    let id = authkit::user::UserId::from_stored(me["user"]["id"].as_str().unwrap().to_owned());
    let before = store
        .user_by_id(&id)
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    let new_pw = "a completely new passphrase";
    let r = app
        .send(
            Req::post("/api/v1/auth/password/change")
                .cookie(&cookie)
                .json(json!({"current_password": PASSWORD, "new_password": new_pw})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let now = Timestamp::from_unix_seconds(crate::support::START);
    // A rehash of the old password that verified `before` arrives late: refused.
    assert!(
        !store
            .upgrade_password_hash(&id, &before, "$argon2id$stale", now)
            .await
            .unwrap()
    );
    let after = store
        .user_by_id(&id)
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    assert_ne!(after, "$argon2id$stale");
    assert!(
        store
            .upgrade_password_hash(&id, &after, &before, now)
            .await
            .unwrap()
    );
    app.finish().await;
}

// SECURITY.md #9, #11, #19: a re-authentication whose session was revoked meanwhile must not
// bring it back, and a sign-in verified against a password changed meanwhile must not create
// a session. Both checks run in the rotation's own transaction; here the races are staged by
// calling the store with the state a slow request would hold.
async fn rotation_never_resurrects_or_outlives_a_password_change(app: TestApp) {
    use authkit::session::SessionToken;
    use authkit::store::{Rotation, RotationGuard};
    let addr = email("rotrace");
    let cookie = app.register(&addr).await;
    let store = app.app.store();
    let old = SessionToken::parse(&cookie).unwrap().hash();
    let record = store.session(&old).await.unwrap().unwrap();
    let user = store.user_by_id(&record.user_id).await.unwrap().unwrap();
    let verified = user.password_hash.clone().unwrap();

    let fresh = |r: &authkit::session::SessionRecord| {
        let mut next = r.clone();
        next.id_hash = SessionToken::generate(&authkit::rng::OsRandom)
            .unwrap()
            .hash();
        next
    };
    // The session is revoked while a re-authentication is checking the password.
    assert!(app.app.auth().sessions().revoke(&old).await.unwrap());
    let next = fresh(&record);
    let guard = RotationGuard {
        replace: Some(&old),
        require_replaced: true,
        password_hash: Some(&verified),
        audit: &[],
    };
    assert_eq!(
        store.rotate_session(&next, guard).await.unwrap(),
        Rotation::Revoked
    );
    assert!(
        store.session(&next.id_hash).await.unwrap().is_none(),
        "nothing was written"
    );
    app.send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await
        .assert_problem(401, "unauthenticated");

    // The password changes while a login is checking the old one.
    let other = app.login_ok(&addr).await;
    let r = app
        .send(Req::post("/api/v1/auth/password/change").cookie(&other).json(json!({"current_password": PASSWORD, "new_password": "a completely new passphrase"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let late = fresh(&record);
    let guard = RotationGuard {
        replace: None,
        require_replaced: false,
        password_hash: Some(&verified),
        audit: &[],
    };
    assert_eq!(
        store.rotate_session(&late, guard).await.unwrap(),
        Rotation::CredentialsChanged
    );
    assert!(
        store.session(&late.id_hash).await.unwrap().is_none(),
        "nothing was written"
    );

    // A second password change verified against the old password is refused as a whole.
    let now = authkit::clock::Timestamp::from_unix_seconds(crate::support::START);
    let stale = store
        .change_password(
            &record.user_id,
            &verified,
            "$argon2id$stale",
            now,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(
        stale.is_none(),
        "a change checked against a replaced password must write nothing"
    );

    // With the current hash the same rotation goes through.
    let now_hash = store
        .user_by_id(&record.user_id)
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    let ok = fresh(&record);
    let guard = RotationGuard {
        replace: None,
        require_replaced: false,
        password_hash: Some(&now_hash),
        audit: &[],
    };
    assert_eq!(
        store.rotate_session(&ok, guard).await.unwrap(),
        Rotation::Done
    );
    assert!(store.session(&ok.id_hash).await.unwrap().is_some());
    app.finish().await;
}
