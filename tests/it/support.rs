//! Test harness: one app per test on a chosen store, driven with `oneshot` (no sockets, no
//! fixed ports) and a manual clock (no sleeps).

use std::sync::Arc;

use authkit::clock::{ManualClock, Timestamp};
use authkit::jobs::{JobQueue, JobQueueOptions};
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
    /// The store's database URL (none for the memory store).
    pub db_url: Option<String>,
    vars: Vec<(String, String)>,
}

impl TestApp {
    /// A development-profile app on `backend`; `None` when the backend is not available here.
    pub async fn new(backend: Backend) -> Option<Self> {
        Self::with_env(backend, &[]).await
    }

    /// The same with extra `AUTHKIT_*` settings.
    pub async fn with_env(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        Self::with_env_at(backend, env, Timestamp::from_unix_seconds(START)).await
    }

    /// The same with the clock starting at `start` (tests against real peers that sign with
    /// the real time). The clock must be set before the app starts: its jobs read it at once,
    /// and a clock moved backwards afterwards makes the cleanup job see fresh rows as expired.
    pub async fn with_env_at(
        backend: Backend,
        env: &[(&str, &str)],
        start: Timestamp,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut pg_schema = None;
        let mut db_url = None;
        let jobs;
        let store: Arc<dyn Store> = match backend {
            Backend::Memory => {
                jobs = JobQueue::in_memory().await.unwrap();
                Arc::new(MemoryStore::new())
            }
            Backend::Sqlite => {
                let url = format!("sqlite://{}/authkit.db?mode=rwc", dir.path().display());
                let store = SqlStore::connect(&url, SqlStoreOptions::default())
                    .await
                    .unwrap();
                jobs = JobQueue::connect(&url, JobQueueOptions::default())
                    .await
                    .unwrap();
                db_url = Some(url);
                Arc::new(store)
            }
            Backend::Postgres => {
                let base = postgres_url()?;
                let (url, schema) = fresh_schema(&base).await;
                // apalis keeps its tables in the shared `apalis` schema: a per-test queue
                // prefix keeps tests from taking each other's jobs.
                jobs = JobQueue::connect(
                    &base,
                    JobQueueOptions::default().with_queue_prefix(format!("{schema}.")),
                )
                .await
                .unwrap();
                pg_schema = Some((base, schema));
                let options = SqlStoreOptions {
                    max_connections: 4,
                    ..SqlStoreOptions::default()
                };
                let store = SqlStore::connect(&url, options).await.unwrap();
                db_url = Some(url);
                Arc::new(store)
            }
        };
        let mut vars: Vec<(String, String)> = vec![
            ("AUTHKIT_PUBLIC_URL".into(), ORIGIN.into()),
            (
                "AUTHKIT_ALLOWED_ORIGINS".into(),
                "http://localhost:5173".into(),
            ),
            (
                "AUTHKIT_DEV_MAILBOX_DIR".into(),
                dir.path().join("mail").display().to_string(),
            ),
            (
                "AUTHKIT_AUDIT__ARCHIVE_DIR".into(),
                dir.path().join("archive").display().to_string(),
            ),
            ("AUTHKIT_JOBS__POLL_INTERVAL".into(), "20ms".into()),
        ];
        // Most tests sign up in one step; the verify-first flow sets its mode explicitly.
        if !env.iter().any(|(k, _)| *k == "AUTHKIT_REGISTRATION_MODE") {
            vars.push(("AUTHKIT_REGISTRATION_MODE".into(), "instant".into()));
        }
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::load(vars.clone()).unwrap().validate().unwrap();
        let clock = ManualClock::new(start);
        let app = App::build(
            config,
            Overrides {
                clock: Arc::new(clock.clone()),
                rng: Arc::new(OsRandom),
                store: Some(store),
                keys: Some(test_keys()),
                secret_refresh: None,
                jobs: Some(jobs),
                mailer: None,
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
            db_url,
            vars,
        })
    }

    /// An app that opens everything itself, as `authkit-server serve` does: the database at
    /// `database_url`, the job queue on it, and the secrets through the provider `env` names
    /// (no key override). Its secrets are refreshed only by [`App::refresh_secrets`].
    pub async fn serving(database_url: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars: Vec<(String, String)> = vec![
            ("AUTHKIT_PUBLIC_URL".into(), ORIGIN.into()),
            ("AUTHKIT_DATABASE_URL".into(), database_url.into()),
            (
                "AUTHKIT_DEV_MAILBOX_DIR".into(),
                dir.path().join("mail").display().to_string(),
            ),
            ("AUTHKIT_JOBS__POLL_INTERVAL".into(), "20ms".into()),
            ("AUTHKIT_REGISTRATION_MODE".into(), "instant".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::load(vars.clone()).unwrap().validate().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(START));
        let app = App::build(
            config,
            Overrides {
                clock: Arc::new(clock.clone()),
                secret_refresh: Some(None),
                ..Overrides::default()
            },
        )
        .await
        .unwrap();
        Self {
            router: app.router(),
            app,
            clock,
            _dir: dir,
            pg_schema: None,
            db_url: Some(database_url.to_owned()),
            vars,
        }
    }

    /// A second server instance on the same database (its own connection pool, caches and
    /// per-instance attempt gates) and the same clock; runs no job workers. `None` on the
    /// memory store, which one process cannot share.
    pub async fn twin(&self) -> Option<Router> {
        let url = self.db_url.as_ref()?;
        let store = SqlStore::connect(url, SqlStoreOptions::default())
            .await
            .unwrap();
        let mut vars = self.vars.clone();
        vars.push(("AUTHKIT_JOBS__ENABLED".into(), "false".into()));
        let config = Config::load(vars).unwrap().validate().unwrap();
        let app = App::build(
            config,
            Overrides {
                clock: Arc::new(self.clock.clone()),
                rng: Arc::new(OsRandom),
                store: Some(Arc::new(store)),
                keys: Some(test_keys()),
                secret_refresh: None,
                jobs: Some(self.app.jobs().clone()),
                mailer: None,
            },
        )
        .await
        .unwrap();
        Some(app.router())
    }

    /// Every text and blob cell of `table` as text (for "no plaintext secret" checks); `None`
    /// on the memory store.
    pub async fn table_dump(&self, table: &str) -> Option<String> {
        let url = self.db_url.as_ref()?;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut out = String::new();
        for row in &rows {
            use sqlx::{Column as _, Row as _};
            for (i, col) in row.columns().iter().enumerate() {
                let cell = row
                    .try_get::<String, _>(i)
                    .ok()
                    .or_else(|| {
                        row.try_get::<Vec<u8>, _>(i)
                            .ok()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    })
                    .or_else(|| row.try_get::<i64, _>(i).ok().map(|n| n.to_string()))
                    .unwrap_or_default();
                out.push_str(&format!("{}={cell}\n", col.name()));
            }
        }
        pool.close().await;
        Some(out)
    }

    /// Stops the workers and drops the test's PostgreSQL schema.
    pub async fn finish(self) {
        self.app.shutdown_jobs().await;
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

    /// Where the development mailbox writes.
    pub fn mailbox(&self) -> std::path::PathBuf {
        self._dir.path().join("mail")
    }

    /// Every mail sent to `to` so far.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        read_mailbox(&self.mailbox())
            .into_iter()
            .filter(|m| m.to.contains(to))
            .collect()
    }

    /// Waits (polling, up to 20 s) until `to` has received `count` mails of `kind`; returns
    /// them. Delivery is asynchronous (queue and worker), so this waits for it instead of
    /// assuming a delay.
    pub async fn wait_for_mails(&self, to: &str, kind: &str, count: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let found: Vec<Mail> = self
                .mails_to(to)
                .into_iter()
                .filter(|m| m.kind() == kind)
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {kind} mail #{count} for {to}; mailbox: {:?}",
                read_mailbox(&self.mailbox())
                    .iter()
                    .map(|m| (&m.file, &m.to))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// The newest mail of `kind` to `to`, waiting for it.
    pub async fn wait_for_mail(&self, to: &str, kind: &str) -> Mail {
        self.wait_for_mails(to, kind, 1).await.pop().unwrap()
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
    }

    /// Sends a request. Unsafe methods get `Origin: <public URL>` unless `headers` sets
    /// browser headers itself (use [`Req::bare`] for none).
    pub async fn send(&self, req: Req) -> Resp {
        self.send_to(&self.router, req).await
    }

    /// [`send`](Self::send) to another router (e.g. a [`twin`](Self::twin) instance).
    pub async fn send_to(&self, router: &Router, req: Req) -> Resp {
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
        let mut cookies: Vec<String> = req.extra_cookies.clone();
        if let Some(cookie) = &req.cookie {
            cookies.push(format!("authkit_session={cookie}"));
        }
        if !cookies.is_empty() {
            builder = builder.header(header::COOKIE, cookies.join("; "));
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
        let mut request = builder.body(body).unwrap();
        if let Some(ip) = req.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                    ip, 40000,
                )));
        }
        let response = router.clone().oneshot(request).await.unwrap();
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
        self.login_ok_with(email, PASSWORD).await
    }

    /// Logs in successfully with `password`; returns the cookie.
    pub async fn login_ok_with(&self, email: &str, password: &str) -> String {
        let r = self.login(email, password).await;
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
    /// The TCP peer address the server sees (none: no `ConnectInfo`, no client address).
    pub peer: Option<std::net::IpAddr>,
    /// Other cookies, `name=value`.
    pub extra_cookies: Vec<String>,
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
            peer: None,
            extra_cookies: Vec::new(),
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
    /// Adds a cookie (`name=value`) besides the session cookie.
    pub fn with_cookie(mut self, pair: &str) -> Self {
        self.extra_cookies.push(pair.to_owned());
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    /// Sent from `ip` (the TCP peer the server sees).
    pub fn peer(mut self, ip: &str) -> Self {
        self.peer = Some(ip.parse().unwrap());
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
    /// `name=value` of the device cookie the response sets, if any.
    pub fn device_cookie(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (name, value) = first.split_once('=')?;
            (name.ends_with("authkit_device") && !value.is_empty()).then(|| first.to_owned())
        })
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

/// A mail as the development mailbox wrote it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// File name (`<secs>-<counter>-<kind>.eml`).
    pub file: String,
    /// The `To:` header.
    pub to: String,
    /// The `Subject:` header.
    pub subject: String,
    /// The decoded text body.
    pub body: String,
}

impl Mail {
    /// The token of the mail's link (`…#token=<43 chars>`).
    pub fn token(&self) -> String {
        let at = self
            .body
            .find("#token=")
            .unwrap_or_else(|| panic!("no link with a token in: {}", self.body));
        self.body[at + 7..].chars().take(43).collect()
    }

    pub fn kind(&self) -> &str {
        self.file
            .trim_end_matches(".eml")
            .splitn(3, '-')
            .nth(2)
            .unwrap_or_default()
    }
}

/// Reads one `.eml` file: headers (unfolded) and the body, undoing the transfer encoding.
pub fn parse_eml(file: &str, raw: &str) -> Mail {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .expect("headers and body");
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let cte = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let body = match cte.as_str() {
        "base64" => {
            use base64::Engine as _;
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap(),
            )
            .unwrap()
        }
        "quoted-printable" => decode_qp(body),
        _ => body.replace("\r\n", "\n"),
    };
    Mail {
        file: file.to_owned(),
        to: header("To"),
        subject: header("Subject"),
        body,
    }
}

fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap().replace("\r\n", "\n")
}

/// Every mail in `dir`, oldest first.
pub fn read_mailbox(dir: &std::path::Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| parse_eml(n, &std::fs::read_to_string(dir.join(n)).unwrap()))
        .collect()
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

/// Polls every future on this task until all are done (the requests run concurrently).
pub async fn join_all<F: std::future::Future<Output = Resp>>(futs: Vec<F>) -> Vec<Resp> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<Resp>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => results[i] = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}
