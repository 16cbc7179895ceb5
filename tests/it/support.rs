//! Test harness: one app per test on a chosen store, driven with `oneshot` (no sockets, no
//! fixed ports) and a manual clock (no sleeps).

use std::sync::Arc;

use authkit::clock::{ManualClock, Timestamp};
use authkit::rng::OsRandom;
use authkit::secret::KeyRing;
use authkit::secrets::SecretKeys;
use authkit::store::{MemoryStore, SqlStore, SqlStoreOptions, Store};
use authkit_server::{App, Config, Overrides};
use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

pub const ORIGIN: &str = "http://localhost:8080";
pub const PASSWORD: &str = "correct horse battery staple";
/// 2027-01-15T08:00:00Z: far from the epoch, so that no arithmetic hides near zero.
pub const START: i64 = 1_800_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL for tests. In CI (`CI=true`) a missing URL fails the test instead of
/// skipping it, so that the PostgreSQL suite cannot silently stop running.
pub fn postgres_url() -> Option<String> {
    match std::env::var("AUTHKIT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!(
                "CI=true but AUTHKIT_TEST_DATABASE_URL is not set: the PostgreSQL suite must run in CI"
            )
        }
        _ => {
            eprintln!(
                "skipping: set AUTHKIT_TEST_DATABASE_URL=postgres://… to run the PostgreSQL suite"
            );
            None
        }
    }
}

pub fn test_keys() -> SecretKeys {
    let ring = |b: u8| KeyRing::parse(&format!("t1:{}", base64_of(&[b; 32]))).unwrap();
    SecretKeys {
        session: ring(1),
        encryption: ring(2),
        pepper: ring(3),
    }
}

fn base64_of(bytes: &[u8]) -> String {
    // Tiny standard base64 encoder, so that the test crate needs no extra dependency.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub struct TestApp {
    pub router: Router,
    pub app: App,
    pub clock: ManualClock,
    _dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
}

impl TestApp {
    /// A development-profile app on `backend`; `None` when the backend is not available here.
    pub async fn new(backend: Backend) -> Option<Self> {
        Self::with_env(backend, &[]).await
    }

    /// The same with extra `AUTHKIT_*` settings.
    pub async fn with_env(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut pg_schema = None;
        let store: Arc<dyn Store> = match backend {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Sqlite => {
                let url = format!("sqlite://{}/authkit.db?mode=rwc", dir.path().display());
                Arc::new(
                    SqlStore::connect(&url, SqlStoreOptions::default())
                        .await
                        .unwrap(),
                )
            }
            Backend::Postgres => {
                let base = postgres_url()?;
                let (url, schema) = fresh_schema(&base).await;
                pg_schema = Some((base, schema));
                let options = SqlStoreOptions {
                    max_connections: 4,
                    ..SqlStoreOptions::default()
                };
                Arc::new(SqlStore::connect(&url, options).await.unwrap())
            }
        };
        let mut vars: Vec<(String, String)> = vec![
            ("AUTHKIT_PUBLIC_URL".into(), ORIGIN.into()),
            (
                "AUTHKIT_ALLOWED_ORIGINS".into(),
                "http://localhost:5173".into(),
            ),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::load(vars).unwrap().validate().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(START));
        let app = App::build(
            config,
            Overrides {
                clock: Arc::new(clock.clone()),
                rng: Arc::new(OsRandom),
                store: Some(store),
                keys: Some(test_keys()),
            },
        )
        .await
        .unwrap();
        Some(Self {
            router: app.router(),
            app,
            clock,
            _dir: dir,
            pg_schema,
        })
    }

    /// Drops the test's PostgreSQL schema.
    pub async fn finish(self) {
        if let Some((base, schema)) = self.pg_schema {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&base).await.unwrap();
            let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
    }

    /// Sends a request. Unsafe methods get `Origin: <public URL>` unless `headers` sets
    /// browser headers itself (use [`Req::bare`] for none).
    pub async fn send(&self, req: Req) -> Resp {
        let mut builder = Request::builder().method(req.method.clone()).uri(&req.path);
        let unsafe_method = !matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let sets_browser = req.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("origin")
                || k.eq_ignore_ascii_case("sec-fetch-site")
                || k.eq_ignore_ascii_case("referer")
        });
        if unsafe_method && !sets_browser && !req.bare {
            builder = builder.header(header::ORIGIN, ORIGIN);
        }
        if let Some(cookie) = &req.cookie {
            builder = builder.header(header::COOKIE, format!("authkit_session={cookie}"));
        }
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = match req.body {
            Some(b) => {
                if !req
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    builder = builder.header(header::CONTENT_TYPE, "application/json");
                }
                Body::from(b)
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            bytes,
        }
    }

    /// Registers `email` with [`PASSWORD`]; returns the session cookie value.
    pub async fn register(&self, email: &str) -> String {
        let r = self
            .send(Req::post("/api/v1/auth/register").json(creds(email, PASSWORD)))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.session_cookie()
            .expect("register sets the session cookie")
    }

    /// Logs in; returns the response.
    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.send(Req::post("/api/v1/auth/login").json(creds(email, password)))
            .await
    }

    /// Logs in successfully; returns the cookie.
    pub async fn login_ok(&self, email: &str) -> String {
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.session_cookie().unwrap()
    }
}

async fn fresh_schema(base: &str) -> (String, String) {
    sqlx::any::install_default_drivers();
    let mut suffix = [0u8; 8];
    getrandom_fill(&mut suffix);
    let schema = format!(
        "authkit_test_{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let pool = sqlx::AnyPool::connect(base)
        .await
        .expect("PostgreSQL at AUTHKIT_TEST_DATABASE_URL is reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    (
        format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        schema,
    )
}

fn getrandom_fill(buf: &mut [u8]) {
    use authkit::rng::RandomSource as _;
    OsRandom.try_fill(buf).unwrap();
}

pub fn creds(email: &str, password: &str) -> Value {
    serde_json::json!({ "email": email, "password": password })
}

/// A unique address per call, so that tests sharing a database never collide.
pub fn email(name: &str) -> String {
    let mut b = [0u8; 6];
    getrandom_fill(&mut b);
    format!(
        "{name}-{}@example.com",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub cookie: Option<String>,
    pub headers: Vec<(String, String)>,
    pub bare: bool,
}

impl Req {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            body: None,
            cookie: None,
            headers: Vec::new(),
            bare: false,
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path)
    }
    pub fn json(mut self, v: Value) -> Self {
        self.body = Some(serde_json::to_vec(&v).unwrap());
        self
    }
    pub fn raw(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }
    pub fn cookie(mut self, c: &str) -> Self {
        self.cookie = Some(c.to_owned());
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    /// No browser headers at all (like curl or a server-side client).
    pub fn bare(mut self) -> Self {
        self.bare = true;
        self
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
    /// The new session cookie value, if the response sets a non-empty one.
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (name, value) = first.split_once('=')?;
            (name.ends_with("authkit_session") && !value.is_empty()).then(|| value.to_owned())
        })
    }
    /// Asserts an RFC 9457 body with `code` and the status that goes with it.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json; charset=utf-8"),
            "{}",
            self.text()
        );
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["status"], status);
        assert!(v["type"].as_str().unwrap().ends_with(code));
        assert!(!v["title"].as_str().unwrap().is_empty());
        assert!(!v["request_id"].as_str().unwrap().is_empty());
        // SECURITY.md #38: nothing internal leaks.
        let text = self.text();
        for leak in [
            "panicked",
            "src/",
            "SELECT",
            "sqlx",
            "Error {",
            "DELETE FROM",
            "INSERT",
        ] {
            assert!(!text.contains(leak), "error body leaks `{leak}`: {text}");
        }
    }
}

/// Generates one test per store from a list of `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(app) = $crate::support::TestApp::new($crate::support::Backend::Memory).await {
                    super::$name(app).await;
                }
            } )*
        }
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(app) = $crate::support::TestApp::new($crate::support::Backend::Sqlite).await {
                    super::$name(app).await;
                }
            } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(app) = $crate::support::TestApp::new($crate::support::Backend::Postgres).await {
                    super::$name(app).await;
                }
            } )*
        }
    };
}
