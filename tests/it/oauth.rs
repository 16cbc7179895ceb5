//! OAuth / OpenID Connect through the reference server against a real OpenID provider
//! (`oidc-provider` on Node, see tests/oidc-provider/) and a GitHub stand-in, driven like a
//! browser: redirects followed, cookies kept (SECURITY.md #2, #29–#35).

use authkit::clock::Timestamp;
use authkit::mfa::{TotpConfig, TotpSecret};
use authkit::user::UserId;
use http::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::oauth_support::{
    Browser, GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET, GithubStandIn, GithubUser, Hop, OpProcess,
    query_param, shared_op,
};
use crate::support::{Backend, ORIGIN, PASSWORD, Req, TestApp};

macro_rules! per_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await; } )* }
    };
}

per_store!(
    sign_up_sign_in_again_and_tokens_sealed_at_rest,
    unverified_provider_email_creates_no_account,
    claiming_an_unproven_address_drops_what_others_attached,
    sign_in_replaces_any_earlier_session,
    refreshes_of_one_account_take_turns,
    existing_address_is_never_taken_over,
    explicit_link_needs_a_fresh_session_and_binds_to_it,
    unlink_never_removes_the_last_way_to_sign_in,
    state_is_single_use_bound_to_browser_and_provider,
    forged_id_tokens_are_refused,
    provider_errors_end_in_a_redirect_with_a_code,
    users_with_mfa_pass_their_second_factor,
    github_sign_up_uses_the_verified_primary_address,
);

const SESSION: &str = "/api/v1/auth/session";
const ACCOUNTS: &str = "/api/v1/auth/oauth/accounts";
const TX_COOKIE: &str = "authkit_oauth";

// The provider signs with the real time, so the app's clock must show it too.
#[allow(clippy::disallowed_methods)]
fn real_now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix_seconds(i64::try_from(secs).unwrap())
}

fn oidc_env(op: &OpProcess, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for name in ["OIDC", "OTHER"] {
        for (k, v) in [
            ("KIND", "oidc".to_owned()),
            ("ISSUER", op.issuer()),
            ("CLIENT_ID", op.client_id().to_owned()),
            ("CLIENT_SECRET", op.client_secret().to_owned()),
        ] {
            vars.push((format!("AUTHKIT_OAUTH__{name}__{k}"), v));
        }
    }
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

/// An app with the `oidc` and `other` providers on the shared OP, its clock at the real time
/// (the OP signs tokens with the real time). `None` when the backend or node is missing.
async fn oidc_app(
    backend: Backend,
    extra: &[(&str, &str)],
) -> Option<(TestApp, &'static OpProcess)> {
    let op = shared_op()?;
    app_for(backend, &oidc_env(op, extra))
        .await
        .map(|a| (a, op))
}

async fn app_for(backend: Backend, vars: &[(String, String)]) -> Option<TestApp> {
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestApp::with_env_at(backend, &env, real_now()).await
}

/// `GET /oauth/{provider}` → the provider's URL (with `login_hint` for the test OP).
async fn start(browser: &Browser<'_>, provider: &str, redirect_to: &str, hint: &str) -> String {
    let path = format!(
        "/api/v1/auth/oauth/{provider}?redirect_to={}",
        url_encode(redirect_to)
    );
    let hop = browser.get(&path).await;
    assert_eq!(hop.status, StatusCode::FOUND, "{}", hop.body);
    let location = hop.location.unwrap();
    with_hint(&location, hint)
}

/// Picks the test OP's user.
fn with_hint(authorization_url: &str, hint: &str) -> String {
    format!("{authorization_url}&login_hint={hint}")
}

/// A whole sign-in; the last hop is the app's callback answer.
async fn sign_in(browser: &Browser<'_>, provider: &str, redirect_to: &str, hint: &str) -> Hop {
    let url = start(browser, provider, redirect_to, hint).await;
    callback_hop(browser, &url).await
}

async fn callback_hop(browser: &Browser<'_>, authorization_url: &str) -> Hop {
    // A fresh login at the OP each time (it would otherwise keep the previous user).
    browser.forget_provider_login();
    let hops = browser.follow_to_app(authorization_url, 10).await;
    let callback = hops.last().unwrap().next_url().unwrap_or_else(|| {
        panic!(
            "the provider did not redirect back: {:?}",
            hops.iter()
                .map(|h| (
                    h.status,
                    h.url.clone(),
                    h.body.chars().take(300).collect::<String>()
                ))
                .collect::<Vec<_>>()
        )
    });
    assert!(callback.contains("/callback?"), "{callback}");
    browser.get(&callback).await
}

/// Signs in with the e-mail address and [`PASSWORD`] like the frontend does.
async fn password_login(browser: &Browser<'_>, email: &str) -> crate::support::Resp {
    browser
        .csrf_post(
            "/api/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn location(hop: &Hop) -> String {
    assert_eq!(hop.status, StatusCode::FOUND, "{}", hop.body);
    hop.location.clone().unwrap()
}

fn error_of(hop: &Hop) -> Option<String> {
    query_param(&format!("{ORIGIN}{}", location(hop)), "oauth_error")
}

async fn current_user(browser: &Browser<'_>) -> Option<Value> {
    let r = browser.app_request(Req::get(SESSION)).await;
    (r.status == StatusCode::OK).then(|| r.json())
}

async fn audit_types(browser: &Browser<'_>) -> Vec<String> {
    let r = browser.app_request(Req::get("/api/v1/auth/audit")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn user_count(app: &TestApp) -> usize {
    match app.table_dump("users").await {
        Some(dump) => dump.lines().filter(|l| l.starts_with("id=")).count(),
        None => 0,
    }
}

async fn sign_up_sign_in_again_and_tokens_sealed_at_rest(backend: Backend) {
    let Some((app, op)) = oidc_app(backend, &[]).await else {
        return;
    };
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/dashboard?tab=1", "alice").await;
    assert_eq!(location(&hop), "/dashboard?tab=1");
    // The transaction cookie is deleted at the callback (SECURITY.md #2).
    assert!(
        hop.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{TX_COOKIE}=")) && c.contains("Max-Age=0")),
        "{:?}",
        hop.set_cookies()
    );
    let me = current_user(&browser).await.expect("signed in");
    assert_eq!(me["user"]["email"], "alice@example.test");
    assert_eq!(me["user"]["email_verified"], true);
    assert_eq!(me["session"]["aal"], "aal1");
    let user_id = me["user"]["id"].as_str().unwrap().to_owned();
    let types = audit_types(&browser).await;
    assert!(types.contains(&"oauth.linked".to_owned()), "{types:?}");
    assert!(types.contains(&"oauth.login".to_owned()), "{types:?}");
    // Sign out, sign in again: the same user, found by (issuer, subject).
    let out = browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(current_user(&browser).await.is_none());
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(location(&hop), "/");
    let me = current_user(&browser).await.unwrap();
    assert_eq!(me["user"]["id"], user_id.as_str());
    let list = browser.app_request(Req::get(ACCOUNTS)).await.json();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["accounts"][0]["provider"], "oidc");
    // The stored access token works at the provider, and the database holds it only sealed.
    let accounts = app.app.auth().linked_accounts().unwrap();
    let token = accounts
        .access_token(&UserId::from_stored(user_id.clone()), "oidc")
        .await
        .unwrap()
        .expect("an access token is stored");
    let userinfo = browser
        .external()
        .get(format!("{}/me", op.issuer()))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let userinfo: Value = serde_json::from_str(&userinfo).unwrap();
    assert_eq!(userinfo["sub"], "alice", "{userinfo}");
    let dump = app.table_dump("oauth_accounts").await.unwrap();
    assert!(!dump.contains(token.expose_secret()), "{dump}");
    assert!(dump.contains("access_token=v1."), "{dump}");
    // The response bodies never carry a provider token (SECURITY.md #35).
    assert!(!list.to_string().contains(token.expose_secret()));
    // A refresh token is stored sealed too; once the access token expires (on the app's
    // clock), asking for it refreshes it at the provider and stores the new one.
    assert!(dump.contains("refresh_token=v1."), "{dump}");
    app.advance(2 * 3600);
    let fresh = accounts
        .access_token(&UserId::from_stored(user_id.clone()), "oidc")
        .await
        .unwrap()
        .expect("refreshed");
    assert_ne!(fresh.expose_secret(), token.expose_secret());
    let userinfo = browser
        .external()
        .get(format!("{}/me", op.issuer()))
        .bearer_auth(fresh.expose_secret())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(userinfo.contains("\"sub\":\"alice\""), "{userinfo}");
    let after = app.table_dump("oauth_accounts").await.unwrap();
    assert_ne!(after, dump, "the refreshed tokens are stored");
    assert!(!after.contains(fresh.expose_secret()));
    app.finish().await;
}

// A provider that does not vouch for the address creates no account: otherwise anyone could
// open an account for someone else's address and keep a way into it (pre-hijacking,
// SECURITY.md #34). The same for a provider without any address, and sign-up can be off.
async fn unverified_provider_email_creates_no_account(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[("AUTHKIT_OAUTH__OTHER__SIGN_UP", "false")]).await
    else {
        return;
    };
    let before = user_count(&app).await;
    let browser = Browser::new(&app);
    for (provider, hint, code) in [
        ("oidc", "bob", "email_required"),
        ("oidc", "noemail", "email_required"),
        ("other", "alice", "sign_up_disabled"),
    ] {
        let hop = sign_in(&browser, provider, "/", hint).await;
        assert_eq!(error_of(&hop).as_deref(), Some(code), "{provider} {hint}");
        assert!(current_user(&browser).await.is_none());
    }
    assert_eq!(user_count(&app).await, before);
    // With sign-up off, a provider account that is already linked still signs in.
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop), None);
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    let hop = sign_in(&browser, "other", "/", "alice").await;
    assert_eq!(
        error_of(&hop),
        None,
        "same (issuer, subject) as the oidc account"
    );
    app.finish().await;
}

// Someone registers the victim's address with a password (unverified) and links their own
// provider account. When the owner claims the address with a password reset, that provider
// account no longer signs in to it.
async fn claiming_an_unproven_address_drops_what_others_attached(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    let victim = "victim@example.com";
    let attacker = Browser::new(&app);
    app.register(victim).await;
    let r = password_login(&attacker, victim).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = attacker
        .csrf_post("/api/v1/auth/oauth/oidc/link", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let url = with_hint(r.json()["authorization_url"].as_str().unwrap(), "alice");
    let hop = callback_hop(&attacker, &url).await;
    assert_eq!(error_of(&hop), None);

    // The owner resets the password through the mailed link.
    let r = app
        .send(Req::post("/api/v1/auth/password/forgot").json(json!({"email": victim})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mail = app.wait_for_mail(victim, "password_reset").await;
    let new_password = "the owner's own passphrase";
    let r = app
        .send(
            Req::post("/api/v1/auth/password/reset")
                .json(json!({"token": mail.token(), "new_password": new_password})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = app.login(victim, new_password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let owner = r.json();
    // The attacker's provider account no longer reaches this user.
    let again = Browser::new(&app);
    let hop = sign_in(&again, "oidc", "/", "alice").await;
    if let Some(me) = current_user(&again).await {
        assert_ne!(me["user"]["id"], owner["user"]["id"], "{:?}", hop.location);
    }
    let cookie = r.session_cookie().unwrap();
    let list = app.send(Req::get(ACCOUNTS).cookie(&cookie)).await.json();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 0, "{list}");
    app.finish().await;
}

// SECURITY.md #9: an OAuth sign-in issues a new session id; one planted before stops working.
async fn sign_in_replaces_any_earlier_session(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    let email = "planted@example.com";
    app.register(email).await;
    let browser = Browser::new(&app);
    let r = password_login(&browser, email).await;
    let planted = r.session_cookie().unwrap();
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop), None);
    let me = current_user(&browser).await.unwrap();
    assert_eq!(me["user"]["email"], "alice@example.test");
    app.send(Req::get(SESSION).cookie(&planted))
        .await
        .assert_problem(401, "unauthenticated");
    app.finish().await;
}

// Parallel requests for an expired access token refresh it once and all get the new one
// (providers that rotate refresh tokens would revoke the grant on a second use).
async fn refreshes_of_one_account_take_turns(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    let browser = Browser::new(&app);
    sign_in(&browser, "oidc", "/", "alice").await;
    let me = current_user(&browser).await.unwrap();
    let user = UserId::from_stored(me["user"]["id"].as_str().unwrap().to_owned());
    let accounts = app.app.auth().linked_accounts().unwrap();
    let first = accounts.access_token(&user, "oidc").await.unwrap().unwrap();
    app.advance(2 * 3600);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let accounts = accounts.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            accounts.access_token(&user, "oidc").await
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        let token = t
            .await
            .unwrap()
            .expect("every request gets a token")
            .unwrap();
        tokens.push(token.expose_secret().to_owned());
    }
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "one refresh, one new token"
    );
    assert_ne!(tokens[0], first.expose_secret());
    app.finish().await;
}

/// Registers `email` with a password; with `verify`, proves it by the mailed link.
async fn local_account(app: &TestApp, email: &str, verify: bool) {
    app.register(email).await;
    if verify {
        let mail = app.wait_for_mail(email, "verification").await;
        let r = app
            .send(Req::post("/api/v1/auth/email/verify").json(json!({"token": mail.token()})))
            .await;
        assert!(r.status.is_success(), "{}", r.text());
    }
}

async fn existing_address_is_never_taken_over(backend: Backend) {
    // Auto-linking is off by default: an existing address is refused even when both sides
    // verified it.
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    local_account(&app, "alice@example.test", true).await;
    let before = user_count(&app).await;
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop).as_deref(), Some("account_exists"));
    assert!(current_user(&browser).await.is_none());
    assert_eq!(user_count(&app).await, before);
    app.finish().await;

    // With auto-linking on (SECURITY.md #34):
    let auto = [("AUTHKIT_OAUTH__OIDC__AUTO_LINK", "true")];
    // - pre-hijacking: a local *unverified* account with the address is not handed to the
    //   provider's user, nor the provider's user to the password holder;
    let Some((app, _)) = oidc_app(backend, &auto).await else {
        return;
    };
    local_account(&app, "alice@example.test", false).await;
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop).as_deref(), Some("account_exists"));
    assert!(current_user(&browser).await.is_none());
    assert!(
        !app.table_dump("oauth_accounts")
            .await
            .unwrap()
            .contains("subject=")
    );
    // - a provider that does not assert the address (bob: email_verified=false) gets no link
    //   and no sign-in, even to a verified local account;
    local_account(&app, "bob@example.test", true).await;
    let hop = sign_in(&browser, "oidc", "/", "bob").await;
    assert_eq!(error_of(&hop).as_deref(), Some("account_exists"));
    assert!(current_user(&browser).await.is_none());
    app.finish().await;
    // - both verified: linked, and the local user is signed in.
    let Some((app, _)) = oidc_app(backend, &auto).await else {
        return;
    };
    local_account(&app, "alice@example.test", true).await;
    let local_id = {
        let r = app.login("alice@example.test", PASSWORD).await;
        r.json()["user"]["id"].as_str().unwrap().to_owned()
    };
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop), None);
    let me = current_user(&browser).await.unwrap();
    assert_eq!(me["user"]["id"], local_id.as_str());
    let notice = app
        .wait_for_mail("alice@example.test", "oauth_changed")
        .await;
    assert!(notice.kind() == "oauth_changed");
    app.finish().await;
}

async fn explicit_link_needs_a_fresh_session_and_binds_to_it(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    // A local user whose address differs from the provider's: linking is by subject only.
    let email = "someone.else@example.com";
    app.register(email).await;
    let browser = Browser::new(&app);
    let r = password_login(&browser, email).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let local_id = r.json()["user"]["id"].as_str().unwrap().to_owned();
    let r = browser
        .csrf_post(
            "/api/v1/auth/oauth/oidc/link",
            json!({"redirect_to": "/settings"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let url = with_hint(r.json()["authorization_url"].as_str().unwrap(), "alice");
    let hop = callback_hop(&browser, &url).await;
    assert_eq!(location(&hop), "/settings?oauth=linked");
    let list = browser.app_request(Req::get(ACCOUNTS)).await.json();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1, "{list}");
    assert!(
        audit_types(&browser)
            .await
            .contains(&"oauth.linked".to_owned())
    );
    app.wait_for_mail(email, "oauth_changed").await;
    // The provider account now signs in to the local user.
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop), None);
    assert_eq!(
        current_user(&browser).await.unwrap()["user"]["id"],
        local_id.as_str()
    );

    // A link needs a recent authentication…
    app.advance(10 * 60);
    let r = browser
        .csrf_post("/api/v1/auth/oauth/other/link", json!({}))
        .await;
    r.assert_problem(403, "reauth_required");
    // …and its callback must come back to the session that started it.
    let r = browser
        .csrf_post("/api/v1/auth/reauthenticate", json!({"password": PASSWORD}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = browser
        .csrf_post("/api/v1/auth/oauth/other/link", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let url = with_hint(r.json()["authorization_url"].as_str().unwrap(), "bob");
    // Meanwhile this browser signs in again as the same user: a new session, not the one that
    // started the link.
    let r = password_login(&browser, email).await;
    assert_eq!(r.status, StatusCode::OK);
    let hop = callback_hop(&browser, &url).await;
    assert_eq!(error_of(&hop).as_deref(), Some("reauth_required"));
    let list = browser.app_request(Req::get(ACCOUNTS)).await.json();
    assert_eq!(
        list["accounts"].as_array().unwrap().len(),
        1,
        "nothing linked: {list}"
    );
    // And signed out: the same.
    let r = browser
        .csrf_post("/api/v1/auth/oauth/other/link", json!({}))
        .await;
    let url = with_hint(r.json()["authorization_url"].as_str().unwrap(), "bob");
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    let hop = callback_hop(&browser, &url).await;
    assert_eq!(error_of(&hop).as_deref(), Some("reauth_required"));
    // Another user's provider account cannot be linked a second time.
    let other = Browser::new(&app);
    password_login(&other, email).await;
    let intruder_email = "intruder@example.com";
    app.register(intruder_email).await;
    let intruder = Browser::new(&app);
    let r = password_login(&intruder, intruder_email).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = intruder
        .csrf_post("/api/v1/auth/oauth/oidc/link", json!({}))
        .await;
    let url = with_hint(r.json()["authorization_url"].as_str().unwrap(), "alice");
    let hop = callback_hop(&intruder, &url).await;
    assert_eq!(error_of(&hop).as_deref(), Some("already_linked"));
    app.finish().await;
}

async fn unlink_never_removes_the_last_way_to_sign_in(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    // An OAuth-only user: the account is the only way in.
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    let list = browser.app_request(Req::get(ACCOUNTS)).await.json();
    let id = list["accounts"][0]["id"].as_str().unwrap().to_owned();
    let del = |id: String| {
        let browser = &browser;
        async move {
            let token = browser.csrf_token().await.unwrap();
            browser
                .app_request(
                    Req::delete(&format!("{ACCOUNTS}/{id}"))
                        .header("origin", ORIGIN)
                        .header("x-csrf-token", &token),
                )
                .await
        }
    };
    del(id.clone())
        .await
        .assert_problem(409, "last_sign_in_method");
    del("no-such-account".into())
        .await
        .assert_problem(404, "not_found");
    // With a second provider linked, one of them can go.
    let r = browser
        .csrf_post("/api/v1/auth/oauth/other/link", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let url = with_hint(r.json()["authorization_url"].as_str().unwrap(), "bob");
    let hop = callback_hop(&browser, &url).await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    let r = del(id.clone()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let list = browser.app_request(Req::get(ACCOUNTS)).await.json();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);
    assert!(
        audit_types(&browser)
            .await
            .contains(&"oauth.unlinked".to_owned())
    );
    // The deleted account's tokens are gone with it.
    assert!(
        !app.table_dump("oauth_accounts")
            .await
            .unwrap()
            .contains(&id)
    );
    app.finish().await;
}

async fn state_is_single_use_bound_to_browser_and_provider(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    // Replay: the callback URL and the transaction cookie presented twice.
    let browser = Browser::new(&app);
    let url = start(&browser, "oidc", "/", "alice").await;
    let tx = browser.app_cookie(TX_COOKIE).expect("transaction cookie");
    browser.forget_provider_login();
    let hops = browser.follow_to_app(&url, 10).await;
    let callback = hops.last().unwrap().next_url().unwrap();
    let first = browser.get(&callback).await;
    assert_eq!(error_of(&first), None);
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    browser.set_app_cookie(TX_COOKIE, &tx);
    let replay = browser.get(&callback).await;
    assert_eq!(error_of(&replay).as_deref(), Some("invalid_state"));
    assert!(current_user(&browser).await.is_none());

    // Another browser (no transaction cookie, or another one) presenting the callback.
    let victim = Browser::new(&app);
    let url = start(&victim, "oidc", "/", "alice").await;
    victim.forget_provider_login();
    let hops = victim.follow_to_app(&url, 10).await;
    let callback = hops.last().unwrap().next_url().unwrap();
    let attacker = Browser::new(&app);
    start(&attacker, "oidc", "/", "bob").await; // the attacker has a cookie of their own
    let hop = attacker.get(&callback).await;
    assert_eq!(error_of(&hop).as_deref(), Some("invalid_state"));
    assert!(current_user(&attacker).await.is_none());
    // The attempt did not spend the victim's transaction: their own callback still works.
    let hop = victim.get(&callback).await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    assert_eq!(
        current_user(&victim).await.unwrap()["user"]["email"],
        "alice@example.test"
    );

    // A state minted for `other` presented at `oidc`'s callback.
    let browser = Browser::new(&app);
    let url = start(&browser, "other", "/", "alice").await;
    browser.forget_provider_login();
    let hops = browser.follow_to_app(&url, 10).await;
    let callback = hops.last().unwrap().next_url().unwrap();
    let swapped = callback.replace("/oauth/other/callback", "/oauth/oidc/callback");
    let hop = browser.get(&swapped).await;
    assert_eq!(error_of(&hop).as_deref(), Some("invalid_state"));
    assert!(current_user(&browser).await.is_none());

    // An authorization response naming another issuer (RFC 9207 mix-up defence).
    let url = start(&browser, "oidc", "/", "alice").await;
    browser.forget_provider_login();
    let hops = browser.follow_to_app(&url, 10).await;
    let callback = hops.last().unwrap().next_url().unwrap();
    assert!(callback.contains("&iss="), "{callback}");
    let (head, _) = callback.split_once("&iss=").unwrap();
    let hop = browser
        .get(&format!("{head}&iss=https%3A%2F%2Fevil.example"))
        .await;
    assert_eq!(error_of(&hop).as_deref(), Some("provider_error"));
    assert!(current_user(&browser).await.is_none());

    // Missing, altered and malformed states.
    for query in [
        "code=abc",
        "code=abc&state=",
        "code=abc&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "code=a&code=b&state=x",
        "",
    ] {
        let hop = browser
            .get(&format!("/api/v1/auth/oauth/oidc/callback?{query}"))
            .await;
        assert_eq!(error_of(&hop).as_deref(), Some("invalid_state"), "{query}");
    }
    // An expired transaction.
    let url = start(&browser, "oidc", "/", "alice").await;
    browser.forget_provider_login();
    let hops = browser.follow_to_app(&url, 10).await;
    let callback = hops.last().unwrap().next_url().unwrap();
    app.advance(11 * 60);
    let hop = browser.get(&callback).await;
    assert_eq!(error_of(&hop).as_deref(), Some("invalid_state"));
    app.finish().await;
}

async fn forged_id_tokens_are_refused(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    let before = user_count(&app).await;
    for mode in [
        "wrong_aud",
        "extra_aud",
        "wrong_iss",
        "no_nonce",
        "wrong_nonce",
        "expired",
        "iat_future",
        "unknown_kid",
        "bad_signature",
        "alg_none",
        "hs256",
    ] {
        let browser = Browser::new(&app);
        let hop = sign_in(&browser, "oidc", "/", &format!("f_{mode}")).await;
        assert_eq!(
            error_of(&hop).as_deref(),
            Some("invalid_id_token"),
            "{mode}"
        );
        assert!(current_user(&browser).await.is_none(), "{mode}");
    }
    // `bare_iss` does not even parse as a token response.
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/", "f_bare_iss").await;
    assert!(error_of(&hop).is_some());
    assert!(current_user(&browser).await.is_none());
    assert_eq!(user_count(&app).await, before, "no user was created");
    app.finish().await;
}

async fn provider_errors_end_in_a_redirect_with_a_code(backend: Backend) {
    let Some((app, _op)) = oidc_app(backend, &[]).await else {
        return;
    };
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/after", "mallory").await;
    assert_eq!(location(&hop), "/after?oauth_error=access_denied");
    let hop = sign_in(&browser, "oidc", "/", "noemail").await;
    assert_eq!(error_of(&hop).as_deref(), Some("email_required"));
    // Open redirects are refused: the target falls back to `/` (SECURITY.md #33).
    for evil in [
        "//evil.com",
        "https://evil.com/x",
        "/\\evil.com",
        "javascript:alert(1)",
    ] {
        let hop = sign_in(&browser, "oidc", evil, "alice").await;
        assert_eq!(location(&hop), "/", "{evil}");
        browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    }
    // An allowed frontend origin is kept.
    let hop = sign_in(&browser, "oidc", "http://localhost:5173/home", "alice").await;
    assert_eq!(location(&hop), "http://localhost:5173/home");
    // The redirect_uri comes from configuration, never from Host (SECURITY.md #32).
    let r = browser
        .app_request(
            Req::get("/api/v1/auth/oauth/oidc")
                .header("host", "evil.example")
                .header("x-forwarded-host", "evil.example"),
        )
        .await;
    let auth = r.header("location").unwrap().to_owned();
    assert_eq!(
        query_param(&auth, "redirect_uri").as_deref(),
        Some("http://localhost:8080/api/v1/auth/oauth/oidc/callback")
    );
    assert_eq!(
        query_param(&auth, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&auth, "state").unwrap().len(), 43);
    assert!(query_param(&auth, "nonce").is_some());
    // Unknown providers are a plain 404.
    app.send(Req::get("/api/v1/auth/oauth/nope"))
        .await
        .assert_problem(404, "not_found");
    app.finish().await;
}

async fn users_with_mfa_pass_their_second_factor(backend: Backend) {
    let trust = [("AUTHKIT_OAUTH__OTHER__TRUST_MFA_CLAIMS", "true")];
    let Some((app, _op)) = oidc_app(backend, &trust).await else {
        return;
    };
    // carol signs up through OIDC and turns MFA on.
    let browser = Browser::new(&app);
    let hop = sign_in(&browser, "oidc", "/", "carol").await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    let r = browser
        .csrf_post("/api/v1/auth/mfa/enable", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret = TotpSecret::from_base32(r.json()["secret"].as_str().unwrap()).unwrap();
    let code = |app: &TestApp| {
        use authkit::clock::Clock as _;
        let step = u64::try_from(app.clock.now().unix_seconds() / 30).unwrap();
        TotpConfig::default()
            .code_at(&secret, step)
            .as_str()
            .to_owned()
    };
    let r = browser
        .csrf_post("/api/v1/auth/mfa/verify", json!({"code": code(&app)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    app.advance(30);
    // Through `oidc` (claims not trusted), the sign-in stops at the second factor…
    let hop = sign_in(&browser, "oidc", "/home", "carol").await;
    assert_eq!(location(&hop), "/home?oauth=mfa_required");
    browser
        .app_request(Req::get(SESSION))
        .await
        .assert_problem(401, "mfa_required");
    let r = browser
        .csrf_post("/api/v1/auth/mfa/verify", json!({"code": code(&app)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        current_user(&browser).await.unwrap()["session"]["aal"],
        "aal2"
    );
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    // …through `other`, which is trusted and whose claims show MFA (amr pwd+otp), it does not.
    let hop = sign_in(&browser, "other", "/", "carol").await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    let me = current_user(&browser).await.unwrap();
    assert_eq!(me["session"]["aal"], "aal2");
    // alice has no MFA claims: trusted or not, her sign-in to an MFA account would stop.
    app.finish().await;
}

async fn github_sign_up_uses_the_verified_primary_address(backend: Backend) {
    let mut user = GithubUser::new(583231, "octocat", "octocat@example.com");
    user.public_email = Some("public@example.com".into());
    user.emails
        .insert(0, ("unverified@example.com".into(), false, false));
    let gh = GithubStandIn::start(user);
    let vars: Vec<(String, String)> = [
        ("KIND", "github".to_owned()),
        ("CLIENT_ID", GITHUB_CLIENT_ID.to_owned()),
        ("CLIENT_SECRET", GITHUB_CLIENT_SECRET.to_owned()),
        ("AUTHORIZATION_URL", gh.authorize_url()),
        ("TOKEN_URL", gh.token_url()),
        ("API_URL", gh.base_url()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("AUTHKIT_OAUTH__GITHUB__{k}"), v))
    .collect();
    let Some(app) = app_for(backend, &vars).await else {
        return;
    };
    let browser = Browser::new(&app);
    let hop = browser
        .get("/api/v1/auth/oauth/github?redirect_to=/gh")
        .await;
    let auth = hop.location.clone().unwrap();
    assert_eq!(
        query_param(&auth, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let hop = callback_hop(&browser, &auth).await;
    assert_eq!(location(&hop), "/gh", "{:?}", gh.token_failures());
    let me = current_user(&browser).await.unwrap();
    assert_eq!(me["user"]["email"], "octocat@example.com");
    assert_eq!(me["user"]["email_verified"], true);
    assert_eq!(gh.token_requests(), 1);
    // A replayed callback is refused before any code exchange.
    let replay = browser.get(&hop.url).await;
    assert_eq!(error_of(&replay).as_deref(), Some("invalid_state"));
    assert_eq!(gh.token_requests(), 1, "no second code exchange");
    app.finish().await;

    // Only an address that is both primary and verified counts.
    for (emails, expected) in [
        // primary but unverified, plus a verified secondary one: none.
        (
            vec![
                ("primary@example.com", true, false),
                ("second@example.com", false, true),
            ],
            None,
        ),
        // a verified secondary one listed first: the primary one.
        (
            vec![
                ("second@example.com", false, true),
                ("primary@example.com", true, true),
            ],
            Some("primary@example.com"),
        ),
    ] {
        let mut user = GithubUser::new(42, "someone", "unused@example.com");
        user.emails = emails
            .iter()
            .map(|(e, p, v)| ((*e).to_owned(), *p, *v))
            .collect();
        let gh = GithubStandIn::start(user);
        let vars: Vec<(String, String)> = [
            ("KIND", "github".to_owned()),
            ("CLIENT_ID", GITHUB_CLIENT_ID.to_owned()),
            ("CLIENT_SECRET", GITHUB_CLIENT_SECRET.to_owned()),
            ("AUTHORIZATION_URL", gh.authorize_url()),
            ("TOKEN_URL", gh.token_url()),
            ("API_URL", gh.base_url()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("AUTHKIT_OAUTH__GITHUB__{k}"), v))
        .collect();
        let app = app_for(backend, &vars).await.unwrap();
        let browser = Browser::new(&app);
        let auth = browser
            .get("/api/v1/auth/oauth/github")
            .await
            .location
            .unwrap();
        let hop = callback_hop(&browser, &auth).await;
        match expected {
            None => assert_eq!(error_of(&hop).as_deref(), Some("email_required")),
            Some(address) => {
                assert_eq!(error_of(&hop), None);
                assert_eq!(
                    current_user(&browser).await.unwrap()["user"]["email"],
                    address
                );
            }
        }
        app.finish().await;
    }
}

// JWKS rotation: a token signed by a key the provider published after we cached its key set
// is accepted after one refetch (its own provider process: the rotation is global to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_once() {
    let Some(op) = OpProcess::start_rotation() else {
        return;
    };
    let Some(app) = app_for(Backend::Memory, &oidc_env(&op, &[])).await else {
        return;
    };
    let browser = Browser::new(&app);
    // The first sign-in caches the key set (k1 only).
    let hop = sign_in(&browser, "oidc", "/", "alice").await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    let hop = sign_in(&browser, "oidc", "/", "f_rotated_key").await;
    assert_eq!(error_of(&hop), None, "{:?}", hop.location);
    assert!(current_user(&browser).await.is_some());
    app.finish().await;
}
