//! Rotating every secret of a running server (issue 6, SECURITY.md #36), against real secret
//! servers: OpenBao (Vault KV v2) and moto (AWS Secrets Manager), with the database on a
//! private PostgreSQL cluster that checks passwords (scram-sha-256; the machine's own cluster
//! trusts every local connection, so a password there proves nothing).
//!
//! The story, once per provider: store the key rings and the database password in the
//! provider, start the server on them, sign users in (one with TOTP and backup codes), then,
//! while requests run concurrently, put new key rings (`k2` newest, `k1` kept) and a new
//! database password into the provider and let the server pick them up. Nothing fails, the
//! existing session, CSRF token, TOTP secret and backup codes keep working, new material uses
//! `k2`, the re-sealing job moves every TOTP secret to `k2`, and new connections use the new
//! password. Then `k1` is retired: what it alone signed stops working.
//!
//! Servers and credentials come from `scripts/secret-services.sh` (run by `.ci/run`):
//! `AUTHKIT_TEST_VAULT_ADDR` + `AUTHKIT_TEST_VAULT_TOKEN`, `AUTHKIT_TEST_AWS_ENDPOINT`,
//! `AUTHKIT_TEST_SCRAM_DATABASE_URL`. Missing ones skip the test, except in CI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use authkit::rng::{OsRandom, RandomSource as _};
use base64::Engine as _;
use http::StatusCode;
use serde_json::json;
use sqlx::Row as _;

use crate::support::{Req, TestApp, email};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_every_secret_in_vault_logs_nobody_out() {
    rotation_story(Kind::Vault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_every_secret_in_aws_logs_nobody_out() {
    rotation_story(Kind::Aws).await;
}

// One user whose password changes (no alternate user): new connections use the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_database_password_is_used_for_new_connections() {
    let Some(admin) = Admin::from_env(Kind::Vault) else {
        return;
    };
    let Some(scram_url) = required_env("AUTHKIT_TEST_SCRAM_DATABASE_URL") else {
        return;
    };
    let password_1 = random_hex(16);
    let db = Database::create(&scram_url, &password_1).await;
    for name in ["session_key", "encryption_key", "pepper"] {
        admin.put(name, &new_key("k1")).await;
    }
    admin.put("database_password", &password_1).await;
    let env = admin.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::serving(&db.url(), &env).await;
    let cookie = app.register(&email("pw-rot")).await;

    let password_2 = random_hex(16);
    db.set_password(&db.role, &password_2).await;
    admin.put("database_password", &password_2).await;
    let report = app.app.refresh_secrets().await.unwrap();
    assert_eq!(report.changed, vec!["database_password".to_owned()]);
    assert!(db.terminate_connections(&db.role).await > 0);
    // Readiness pings both pools (the store's and the job queue's): each must open a new
    // connection, which only the new password allows.
    let r = app.send(Req::get("/api/v1/health/ready")).await;
    assert_eq!(r.json()["status"], "ok", "{}", r.text());
    assert_eq!(db.connected_users().await, vec![db.role.clone()]);
    let r = app
        .send(Req::get("/api/v1/auth/session").cookie(&cookie))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // This cluster really checks passwords: the old one is refused.
    let old = sqlx::AnyPool::connect(&db.url_for(&db.role, &password_1)).await;
    assert!(old.is_err(), "the scram cluster accepted an old password");
    db.drop_all(app).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vault,
    Aws,
}

/// The test's environment variable `name`; `None` (skip) outside CI, a failure in CI.
fn required_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!(
                "CI=true but {name} is not set: run scripts/secret-services.sh start (.ci/run does)"
            )
        }
        _ => {
            eprintln!("skipping: {name} is not set (eval \"$(scripts/secret-services.sh start)\")");
            None
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRandom.try_fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh 32-byte key ring entry `kid:base64`.
fn new_key(kid: &str) -> String {
    let mut key = [0u8; 32];
    OsRandom.try_fill(&mut key).unwrap();
    format!(
        "{kid}:{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Writes secrets the way an operator would, through the server's HTTP API (the provider under
/// test reads them with the real client libraries).
struct Admin {
    kind: Kind,
    prefix: String,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn from_env(kind: Kind) -> Option<Self> {
        let prefix = format!("authkit-it-{}/", random_hex(6));
        let http = reqwest::Client::new();
        Some(match kind {
            Kind::Vault => Self {
                kind,
                prefix,
                http,
                base: required_env("AUTHKIT_TEST_VAULT_ADDR")?,
                token: required_env("AUTHKIT_TEST_VAULT_TOKEN")?,
            },
            Kind::Aws => {
                aws_test_credentials();
                Self {
                    kind,
                    prefix,
                    http,
                    base: required_env("AUTHKIT_TEST_AWS_ENDPOINT")?,
                    token: String::new(),
                }
            }
        })
    }

    /// The server settings that select this provider.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("AUTHKIT_SECRETS__PREFIX", self.prefix.clone())];
        match self.kind {
            Kind::Vault => {
                env.push(("AUTHKIT_SECRETS_PROVIDER", "vault".into()));
                env.push(("AUTHKIT_SECRETS__VAULT_ADDR", self.base.clone()));
                env.push(("AUTHKIT_SECRETS__VAULT_TOKEN", self.token.clone()));
            }
            Kind::Aws => {
                env.push(("AUTHKIT_SECRETS_PROVIDER", "aws".into()));
                env.push(("AUTHKIT_SECRETS__AWS_ENDPOINT", self.base.clone()));
                env.push(("AUTHKIT_SECRETS__AWS_REGION", "us-east-1".into()));
            }
        }
        env
    }

    /// Stores a new version of secret `name`.
    async fn put(&self, name: &str, value: &str) {
        let id = format!("{}{name}", self.prefix);
        match self.kind {
            Kind::Vault => {
                let r = self
                    .http
                    .post(format!("{}/v1/secret/data/{id}", self.base))
                    .header("X-Vault-Token", &self.token)
                    .header("Content-Type", "application/json")
                    .body(json!({ "data": { "value": value } }).to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "vault write: {}", r.status());
            }
            Kind::Aws => {
                // moto checks no signature; the header only names the region.
                let call = |target: &'static str, body: serde_json::Value| {
                    self.http
                        .post(&self.base)
                        .header("X-Amz-Target", format!("secretsmanager.{target}"))
                        .header("Content-Type", "application/x-amz-json-1.1")
                        .header(
                            "Authorization",
                            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
                        )
                        .body(body.to_string())
                        .send()
                };
                let r = call(
                    "PutSecretValue",
                    json!({ "SecretId": id, "SecretString": value }),
                )
                .await
                .unwrap();
                if r.status().is_success() {
                    return;
                }
                let r = call("CreateSecret", json!({ "Name": id, "SecretString": value }))
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "moto create: {}", r.status());
            }
        }
    }
}

/// The AWS SDK's standard chain reads credentials from the environment; moto accepts any.
fn aws_test_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if std::env::var_os(k).is_none() {
                // SAFETY: set once, before the first AWS client of this process reads the
                // environment; no other test in this binary writes these variables.
                #[allow(unsafe_code)]
                unsafe {
                    std::env::set_var(k, v)
                };
            }
        }
    });
}

/// A login role with its own database on the scram cluster (plus, for the alternating-users
/// rotation, a second login role with the same rights).
struct Database {
    admin: sqlx::AnyPool,
    role: String,
    name: String,
    port: u16,
    others: Vec<String>,
}

impl Database {
    async fn create(admin_url: &str, password: &str) -> Self {
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(admin_url).await.unwrap();
        let role = format!("authkit_rot_{}", random_hex(4));
        let exec = |sql: String| {
            let admin = admin.clone();
            async move {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
        };
        exec(format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).await;
        exec(format!("CREATE DATABASE {role} OWNER {role}")).await;
        let port = url::Url::parse(admin_url).unwrap().port().unwrap();
        Self {
            admin,
            name: role.clone(),
            role,
            port,
            others: Vec::new(),
        }
    }

    /// The server's `AUTHKIT_DATABASE_URL`: no password (it comes from the provider).
    fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.role, self.port, self.name
        )
    }

    /// A full URL for `role` with `password` (the `database_url` secret).
    fn url_for(&self, role: &str, password: &str) -> String {
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{}",
            self.port, self.name
        )
    }

    /// A second login role that holds the first one's rights (it is a member of it).
    async fn add_alternate(&mut self, password: &str) -> String {
        let role = format!("{}_b", self.role);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE {}",
            self.role
        )))
        .execute(&self.admin)
        .await
        .unwrap();
        self.others.push(role.clone());
        role
    }

    /// Database users of the server's open connections.
    async fn connected_users(&self) -> Vec<String> {
        let rows = sqlx::query(
            "SELECT DISTINCT usename::TEXT AS u FROM pg_stat_activity \
             WHERE datname = $1 AND usename <> current_user",
        )
        .bind(&self.name)
        .fetch_all(&self.admin)
        .await
        .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>("u").unwrap())
            .collect()
    }

    async fn disable_login(&self, role: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER ROLE {role} NOLOGIN")))
            .execute(&self.admin)
            .await
            .unwrap();
    }

    async fn set_password(&self, role: &str, password: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER ROLE {role} PASSWORD '{password}'"
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }

    /// Ends every open connection of `role`: the pools must open new ones.
    async fn terminate_connections(&self, role: &str) -> i64 {
        sqlx::query(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE usename = $1",
        )
        .bind(role)
        .fetch_one(&self.admin)
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
    }

    async fn scalar_strings(&self, sql: &str) -> Vec<String> {
        // Read through a connection to the role's database (the admin pool is on `postgres`).
        let mut admin_url = self.admin.connect_options().database_url.clone();
        admin_url.set_path(&format!("/{}", self.name));
        let pool = sqlx::AnyPool::connect(admin_url.as_str()).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).unwrap())
            .collect()
    }

    async fn drop_all(self, app: TestApp) {
        app.finish().await;
        // Connections of the app's pools may linger for a moment after close.
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(&self.name)
        .execute(&self.admin)
        .await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS {}",
            self.role
        )))
        .execute(&self.admin)
        .await;
    }
}

async fn csrf_token(app: &TestApp, cookie: &str) -> String {
    let r = app.send(Req::get("/api/v1/auth/csrf").cookie(cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

/// An unsafe request from a header-less client: passes only with a valid CSRF token.
fn csrf_protected(cookie: &str, token: &str) -> Req {
    Req::post("/api/v1/auth/sessions/revoke-others")
        .cookie(cookie)
        .bare()
        .header("x-csrf-token", token)
}

async fn rotation_story(kind: Kind) {
    let Some(admin) = Admin::from_env(kind) else {
        return;
    };
    let Some(scram_url) = required_env("AUTHKIT_TEST_SCRAM_DATABASE_URL") else {
        return;
    };
    let (session_k1, encryption_k1, pepper_k1) = (new_key("k1"), new_key("k1"), new_key("k1"));
    // The database credentials rotate between two users ("alternating users"): the idle
    // user gets a new password and becomes current, so at no moment is the password the
    // server knows already invalid.
    let password_a = random_hex(16);
    let mut db = Database::create(&scram_url, &password_a).await;
    let user_b = db.add_alternate(&random_hex(16)).await;
    admin.put("session_key", &session_k1).await;
    admin.put("encryption_key", &encryption_k1).await;
    admin.put("pepper", &pepper_k1).await;
    admin
        .put("database_url", &db.url_for(&db.role, &password_a))
        .await;

    let env = admin.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::serving(&db.url(), &env).await;

    // Before: a user with TOTP and backup codes, a plain user, and one whose TOTP secret
    // nobody touches until the re-sealing job does.
    let mfa_user = app.enrol("rot-mfa").await;
    let idle_user = app.enrol("rot-idle").await;
    let plain = app.register(&email("rot-plain")).await;
    let old_csrf = csrf_token(&app, &plain).await;
    assert!(old_csrf.starts_with("v1.k1."), "{old_csrf}");
    let sealed_before = db.scalar_strings("SELECT secret FROM mfa_totp").await;
    assert_eq!(sealed_before.len(), 2);
    assert!(sealed_before.iter().all(|s| s.starts_with("v1.k1.")));

    // Requests run concurrently with the whole rotation; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let driver = {
        let (router, stop, ok, failed) = (
            app.router.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        let (plain, token, mfa_cookie) = (plain.clone(), old_csrf.clone(), mfa_user.cookie.clone());
        let app = &app;
        async move {
            while !stop.load(Ordering::SeqCst) {
                let checks = [
                    (Req::get("/api/v1/auth/session").cookie(&plain), 200),
                    (Req::get("/api/v1/auth/mfa/status").cookie(&mfa_cookie), 200),
                    (csrf_protected(&plain, &token), 204),
                ];
                for (req, want) in checks {
                    let r = app.send_to(&router, req).await;
                    if r.status.as_u16() == want {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        eprintln!("request failed during rotation: {} {}", r.status, r.text());
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    };
    let rotate = async {
        // Let some requests through on the old secrets first.
        while ok.load(Ordering::SeqCst) < 30 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let password_b = random_hex(16);
        db.set_password(&user_b, &password_b).await;
        admin
            .put("database_url", &db.url_for(&user_b, &password_b))
            .await;
        admin
            .put("session_key", &format!("{},{session_k1}", new_key("k2")))
            .await;
        admin
            .put(
                "encryption_key",
                &format!("{},{encryption_k1}", new_key("k2")),
            )
            .await;
        admin
            .put("pepper", &format!("{},{pepper_k1}", new_key("k2")))
            .await;
        let report = app.app.refresh_secrets().await.unwrap();
        let mut changed = report.changed.clone();
        changed.sort();
        assert_eq!(
            changed,
            ["database_url", "encryption_key", "pepper", "session_key"],
            "{report:?}"
        );
        assert!(report.failed.is_empty(), "{report:?}");
        // More requests on the new secrets.
        let at = ok.load(Ordering::SeqCst);
        while ok.load(Ordering::SeqCst) < at + 30 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(driver, rotate);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during the rotation"
    );
    assert!(ok.load(Ordering::SeqCst) >= 60);

    // The old user is retired: it can no longer log in and its pooled connections are ended.
    // The server still answers, so its new connections are user B's, with B's new password.
    db.disable_login(&db.role).await;
    assert!(db.terminate_connections(&db.role).await > 0);
    let r = app
        .send(Req::get("/api/v1/auth/session").cookie(&plain))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app.send(Req::get("/api/v1/health/ready")).await;
    assert_eq!(r.json()["status"], "ok", "{}", r.text());
    assert_eq!(db.connected_users().await, vec![user_b.clone()]);

    // Existing material made under k1 still works; new material uses k2.
    let r = app.send(csrf_protected(&plain, &old_csrf)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let new_csrf = csrf_token(&app, &plain).await;
    assert!(new_csrf.starts_with("v1.k2."), "{new_csrf}");
    app.advance(30);
    let full = app.sign_in_with_code(&mfa_user).await;
    let pending = app.pending(&mfa_user.email).await;
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/verify")
                .cookie(&pending)
                .json(json!({ "backup_code": mfa_user.backup_codes[0] })),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "backup code hashed under pepper k1: {}",
        r.text()
    );
    let fresh = app.enrol("rot-fresh").await;

    // The re-sealing job (queued by the rotation) moves every TOTP secret to k2.
    let mut sealed = Vec::new();
    for _ in 0..500 {
        sealed = db.scalar_strings("SELECT secret FROM mfa_totp").await;
        if sealed.iter().all(|s| s.starts_with("v1.k2.")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sealed.len(), 3);
    assert!(
        sealed.iter().all(|s| s.starts_with("v1.k2.")),
        "not re-sealed: {:?}",
        sealed.iter().map(|s| &s[..6]).collect::<Vec<_>>()
    );

    // Retiring k1: the rings now hold k2 only.
    let rings = |app: &TestApp| app.app.auth().keys();
    let k2_only = |ring: &authkit::secret::KeyRing| {
        ring.ids().map(ToString::to_string).collect::<Vec<_>>() == ["k2"]
    };
    for name in ["session_key", "encryption_key", "pepper"] {
        let current = match name {
            "session_key" => rings(&app).session,
            "encryption_key" => rings(&app).encryption,
            _ => rings(&app).pepper,
        };
        let (id, key) = current.current();
        assert_eq!(id.as_str(), "k2");
        let text = format!(
            "k2:{}",
            base64::engine::general_purpose::STANDARD.encode(key.expose())
        );
        admin.put(name, &text).await;
    }
    let report = app.app.refresh_secrets().await.unwrap();
    assert!(report.keys_changed(), "{report:?}");
    let keys = rings(&app);
    assert!(k2_only(&keys.session) && k2_only(&keys.encryption) && k2_only(&keys.pepper));
    // Sessions are not signed: nobody is logged out.
    for cookie in [&plain, &full, &fresh.cookie] {
        let r = app
            .send(Req::get("/api/v1/auth/session").cookie(cookie))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    // A CSRF token signed by the retired key is refused, a k2 one passes.
    app.send(csrf_protected(&plain, &old_csrf))
        .await
        .assert_problem(403, "csrf_failed");
    let r = app.send(csrf_protected(&plain, &new_csrf)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    // A ring that drops the key in use is refused: the old rings stay, readiness says so,
    // and the refusal lasts until the provider is fixed.
    let session_k2 = {
        let (_, key) = keys.session.current();
        format!(
            "k2:{}",
            base64::engine::general_purpose::STANDARD.encode(key.expose())
        )
    };
    admin.put("session_key", &new_key("k3")).await;
    app.app.refresh_secrets().await.unwrap();
    assert!(k2_only(&rings(&app).session));
    for _ in 0..2 {
        let r = app.send(Req::get("/api/v1/health/ready")).await;
        assert_eq!(r.json()["status"], "degraded", "{}", r.text());
        app.app.refresh_secrets().await.unwrap();
    }
    let r = app.send(csrf_protected(&plain, &new_csrf)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    admin.put("session_key", &session_k2).await;
    app.app.refresh_secrets().await.unwrap();
    let r = app.send(Req::get("/api/v1/health/ready")).await;
    assert_eq!(r.json()["status"], "ok", "{}", r.text());

    // The idle user's TOTP secret was re-sealed, so it survives the retirement.
    app.advance(30);
    app.sign_in_with_code(&idle_user).await;
    // Backup codes cannot be re-hashed (only their hash is stored): those made under the
    // retired pepper key end with it (docs/security.md, "Rotating secrets").
    let pending = app.pending(&idle_user.email).await;
    let r = app
        .send(
            Req::post("/api/v1/auth/mfa/verify")
                .cookie(&pending)
                .json(json!({ "backup_code": idle_user.backup_codes[0] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    db.drop_all(app).await;
}
