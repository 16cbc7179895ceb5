//! OAuth/OIDC test harness:
//! - [`OpProcess`]: a real OpenID Provider (`tests/oidc-provider/op.mjs`, oidc-provider run with
//!   node) on an ephemeral loopback port, non-interactive (the `login_hint` picks the test user),
//!   with per-user "forge" modes that tamper with the ID token (see its README.md);
//! - [`GithubStandIn`]: GitHub's OAuth endpoints and `/user`, `/user/emails` in their documented
//!   shapes (errors with HTTP 200, secret in the body, `User-Agent` required) on a loopback socket;
//! - [`Browser`]: follows redirects across hosts with cookies; requests to the app's origin go
//!   in-process through [`TestApp::send`], everything else over HTTP.
//!
//! Both servers use real time. The app's clock is a [`ManualClock`](authkit::clock::ManualClock)
//! starting at [`START`](crate::support::START); if ID token times are checked against the app's
//! clock, start an OP with `OP_CLOCK_OFFSET` (see [`OpProcess::start_with_env`]).

// The library's OAuth tests use most of this; the harness tests below use part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::{ORIGIN, Req, Resp, TestApp};

/// The callback of the authkit provider config named `oidc`.
pub const OIDC_CALLBACK: &str = "http://localhost:8080/api/v1/auth/oauth/oidc/callback";
/// The callback of the second config, `other`, that points at the same OP.
pub const OTHER_CALLBACK: &str = "http://localhost:8080/api/v1/auth/oauth/other/callback";
/// The OP's one client.
pub const OP_CLIENT_ID: &str = "authkit-test";
pub const OP_CLIENT_SECRET: &str = "authkit-test-secret";
/// Every forge mode of `op.mjs`; user `f_<mode>` has it in [`standard_users`] (except
/// `rotated_key`, see [`OpProcess::start_rotation`]).
pub const FORGE_MODES: [&str; 13] = [
    "wrong_aud",
    "extra_aud",
    "wrong_iss",
    "bare_iss",
    "no_nonce",
    "wrong_nonce",
    "expired",
    "iat_future",
    "unknown_kid",
    "bad_signature",
    "alg_none",
    "hs256",
    "rotated_key",
];

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    use authkit::rng::RandomSource as _;
    let mut b = vec![0u8; n];
    authkit::rng::OsRandom.try_fill(&mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

fn random_hex(n: usize) -> String {
    use authkit::rng::RandomSource as _;
    let mut b = vec![0u8; n];
    authkit::rng::OsRandom.try_fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The S256 PKCE challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh PKCE pair `(verifier, S256 challenge)`.
pub fn pkce_pair() -> (String, String) {
    let verifier = random_token(32);
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

fn jwt_part(jwt: &str, i: usize) -> Value {
    let part = jwt
        .split('.')
        .nth(i)
        .unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWT part {i} is not base64url ({e}): {jwt}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part {i} is not JSON ({e})"))
}

/// The decoded (unverified) claims of a JWT.
pub fn jwt_payload(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

/// The decoded protected header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

/// The first value of query parameter `name` in `url` (absolute, or a path on the app).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url)
        .or_else(|_| url::Url::parse(ORIGIN).and_then(|base| base.join(url)))
        .ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ---------------------------------------------------------------------------------------------
// The OpenID Provider
// ---------------------------------------------------------------------------------------------

/// `tests/oidc-provider`.
pub fn op_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// Whether `node` runs; without it, panics in CI and skips (false) elsewhere.
fn node_available() -> bool {
    let found = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !ci(),
            "CI=true but `node` was not found: the OAuth tests need Node.js and npm (tests/oidc-provider)"
        );
        eprintln!("skipping: node not found (the OAuth tests need Node.js and npm)");
    }
    found
}

/// Runs `npm ci` in `tests/oidc-provider` once if its modules are missing (a fresh clone).
fn ensure_node_modules() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = op_dir();
    let modules = dir.join("node_modules");
    if modules.join("oidc-provider/package.json").is_file()
        && modules.join("jose/package.json").is_file()
    {
        return;
    }
    eprintln!(
        "installing the test OP's node modules: npm ci in {}",
        dir.display()
    );
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `npm ci` in {} ({e}): is npm installed?",
                dir.display()
            )
        });
    assert!(
        out.status.success(),
        "`npm ci` in {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `op.mjs`. Dropping it closes its stdin and kills it; a shared one ([`shared_op`])
/// lives as long as the test binary, and exits when the binary's end of its stdin closes.
#[derive(Debug)]
pub struct OpProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    stderr: Arc<Mutex<String>>,
    users: Value,
}

impl OpProcess {
    /// Starts an OP with `users` (`{"<sub>": {email, email_verified, name, amr, acr, deny,
    /// forge}}`) and one client with `redirect_uris`. `None` when node is not installed (outside
    /// CI). Blocks until it is listening (up to 20 s).
    pub fn start(users: &Value, redirect_uris: &[&str]) -> Option<Self> {
        Self::start_with_env(users, redirect_uris, &[])
    }

    /// The same with extra `OP_*` settings, e.g. `("OP_AUTH_METHOD", "client_secret_post")` or
    /// `("OP_CLOCK_OFFSET", "<seconds>")`.
    pub fn start_with_env(
        users: &Value,
        redirect_uris: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Self> {
        if !node_available() {
            return None;
        }
        ensure_node_modules();
        let dir = op_dir();
        let script = dir.join("op.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .current_dir(&dir)
            .env("OP_PORT", "0")
            .env("OP_HOST", "127.0.0.1")
            .env("OP_CLIENT_ID", OP_CLIENT_ID)
            .env("OP_CLIENT_SECRET", OP_CLIENT_SECRET)
            .env("OP_REDIRECT_URIS", redirect_uris.join(","))
            .env("OP_USERS", users.to_string())
            .env_remove("OP_USERS_FILE")
            .env_remove("OP_ISSUER")
            .env_remove("OP_IGNORE_STDIN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {} ({e})", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        // Both pipes are drained for the child's whole life, so that it never blocks on them.
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let buf = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
                    buf.push_str(&line);
                    buf.push('\n');
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => Some(Self {
                child,
                stdin,
                port,
                stderr,
                users: users.clone(),
            }),
            other => {
                drop(stdin);
                let _ = child.kill();
                let status = child.wait();
                let _ = stderr_reader.join();
                let log = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                panic!(
                    "the test OP (node {}) exited or did not print `READY <port>` within 20 s \
                     ({other:?}, exit: {status:?}); its stderr:\n{log}",
                    script.display()
                )
            }
        }
    }

    /// An OP of its own for the key-rotation test: `f_rotated_key` (its first token is signed
    /// with a second key that `/jwks` publishes from then on) and `alice`.
    pub fn start_rotation() -> Option<Self> {
        let users = json!({
            "alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice"},
            "f_rotated_key": {
                "email": "f_rotated_key@example.test",
                "email_verified": true,
                "forge": "rotated_key"
            },
        });
        Self::start(&users, &[OIDC_CALLBACK, OTHER_CALLBACK])
    }

    /// `http://127.0.0.1:<port>` (no trailing slash; discovery below it).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn client_id(&self) -> &'static str {
        OP_CLIENT_ID
    }

    pub fn client_secret(&self) -> &'static str {
        OP_CLIENT_SECRET
    }

    /// The users it was started with.
    pub fn users(&self) -> &Value {
        &self.users
    }

    /// What the OP wrote to stderr so far (warnings, `server_error`s).
    pub fn stderr_log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for OpProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The users of [`shared_op`]: `alice` (verified), `bob` (`email_verified: false`), `carol`
/// (verified, `amr: ["pwd","otp"]`, `acr: "mfa"`), `noemail` (no email claim), `mallory`
/// (denies: `error=access_denied`) and `f_<mode>` (verified `f_<mode>@example.test`) for every
/// forge mode but `rotated_key`.
pub fn standard_users() -> Value {
    let mut users = json!({
        "alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice"},
        "bob": {"email": "bob@example.test", "email_verified": false, "name": "Bob"},
        "carol": {
            "email": "carol@example.test",
            "email_verified": true,
            "name": "Carol",
            "amr": ["pwd", "otp"],
            "acr": "mfa"
        },
        "noemail": {"name": "No Email"},
        "mallory": {"email": "mallory@example.test", "email_verified": true, "deny": true},
    });
    for mode in FORGE_MODES.iter().filter(|m| **m != "rotated_key") {
        users[format!("f_{mode}")] = json!({
            "email": format!("f_{mode}@example.test"),
            "email_verified": true,
            "forge": mode,
        });
    }
    users
}

/// One OP per test binary, with [`standard_users`] and the callbacks of the provider configs
/// `oidc` and `other`. `None` when node is not installed (outside CI).
pub fn shared_op() -> Option<&'static OpProcess> {
    static OP: OnceLock<Option<OpProcess>> = OnceLock::new();
    OP.get_or_init(|| OpProcess::start(&standard_users(), &[OIDC_CALLBACK, OTHER_CALLBACK]))
        .as_ref()
}

// ---------------------------------------------------------------------------------------------
// The GitHub stand-in
// ---------------------------------------------------------------------------------------------

pub const GITHUB_CLIENT_ID: &str = "gh-test-client-id";
pub const GITHUB_CLIENT_SECRET: &str = "gh-test-client-secret";

/// The GitHub account the stand-in signs in.
#[derive(Debug, Clone)]
pub struct GithubUser {
    /// The stable subject (GitHub's integer `id`).
    pub id: u64,
    pub login: String,
    /// `/user`'s `email`: the public address, or null.
    pub public_email: Option<String>,
    /// `/user/emails`: `(email, primary, verified)`.
    pub emails: Vec<(String, bool, bool)>,
    /// The user refuses: the authorization answers `error=access_denied`.
    pub deny: bool,
}

impl GithubUser {
    /// A user with one primary, verified, private address.
    pub fn new(id: u64, login: &str, email: &str) -> Self {
        Self {
            id,
            login: login.to_owned(),
            public_email: None,
            emails: vec![(email.to_owned(), true, true)],
            deny: false,
        }
    }
}

#[derive(Debug)]
struct GhCode {
    redirect_uri: String,
    challenge: String,
}

#[derive(Debug)]
struct GhState {
    user: GithubUser,
    codes: Mutex<HashMap<String, GhCode>>,
    tokens: Mutex<HashSet<String>>,
    token_requests: AtomicUsize,
    api_requests: AtomicUsize,
    /// Why token requests failed (the stand-in's own words; not sent to the client).
    token_failures: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// GitHub's OAuth app endpoints on `127.0.0.1:<port>`: `GET /login/oauth/authorize`,
/// `POST /login/oauth/access_token`, `GET /user`, `GET /user/emails`. Runs on the current tokio
/// runtime until dropped.
#[derive(Debug)]
pub struct GithubStandIn {
    base: String,
    state: Arc<GhState>,
    task: tokio::task::JoinHandle<()>,
}

impl GithubStandIn {
    /// Starts it on an ephemeral loopback port (call from inside a tokio runtime).
    pub fn start(user: GithubUser) -> Self {
        let state = Arc::new(GhState {
            user,
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashSet::new()),
            token_requests: AtomicUsize::new(0),
            api_requests: AtomicUsize::new(0),
            token_failures: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/login/oauth/authorize", get(gh_authorize))
            .route("/login/oauth/access_token", post(gh_token))
            .route("/user", get(gh_user))
            .route("/user/emails", get(gh_emails))
            .with_state(Arc::clone(&state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            state,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: the API base; the web endpoints are below it too.
    pub fn base_url(&self) -> String {
        self.base.clone()
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/login/oauth/authorize", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/login/oauth/access_token", self.base)
    }

    pub fn client_id(&self) -> &'static str {
        GITHUB_CLIENT_ID
    }

    pub fn client_secret(&self) -> &'static str {
        GITHUB_CLIENT_SECRET
    }

    /// How many requests reached the token endpoint (successful or not).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// How many requests reached `/user` or `/user/emails`.
    pub fn api_requests(&self) -> usize {
        self.state.api_requests.load(Ordering::SeqCst)
    }

    /// Why each failed token request failed (for assertion messages).
    pub fn token_failures(&self) -> Vec<String> {
        lock(&self.state.token_failures).clone()
    }
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(base).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.into()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn gh_authorize(
    State(st): State<Arc<GhState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let p = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if p("client_id") != Some(GITHUB_CLIENT_ID) {
        return (StatusCode::NOT_FOUND, "Not Found (unknown client_id)").into_response();
    }
    // An OAuth app's redirect_uri must lie below its registered callback URL: the app's origin.
    let Some(redirect_uri) = p("redirect_uri")
        .filter(|r| r.starts_with(&format!("{ORIGIN}/")) && url::Url::parse(r).is_ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch: The redirect_uri is missing or not below the registered callback URL.",
        )
            .into_response();
    };
    let Some(state) = p("state") else {
        return (StatusCode::BAD_REQUEST, "stand-in: state is required").into_response();
    };
    let challenge = match (p("code_challenge_method"), p("code_challenge")) {
        (Some("S256"), Some(c)) => c.to_owned(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "stand-in: code_challenge and code_challenge_method=S256 are required",
            )
                .into_response();
        }
    };
    if st.user.deny {
        return redirect(with_query(
            redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied",
                ),
                ("state", state),
            ],
        ));
    }
    let code = random_hex(10); // GitHub's codes are 20 hex digits
    lock(&st.codes).insert(
        code.clone(),
        GhCode {
            redirect_uri: redirect_uri.to_owned(),
            challenge,
        },
    );
    redirect(with_query(
        redirect_uri,
        &[("code", &code), ("state", state)],
    ))
}

/// GitHub answers token requests with HTTP 200 whatever happened, as JSON when asked for
/// (`Accept: application/json`), form-encoded otherwise.
fn gh_token_answer(json_wanted: bool, pairs: &[(&str, &str)]) -> Response {
    if json_wanted {
        let map: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            Value::Object(map).to_string(),
        )
            .into_response()
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body,
        )
            .into_response()
    }
}

async fn gh_token(State(st): State<Arc<GhState>>, headers: HeaderMap, body: Bytes) -> Response {
    st.token_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let json_wanted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let fail = |error: &str, description: &str, why: String| {
        lock(&st.token_failures).push(why);
        gh_token_answer(
            json_wanted,
            &[
                ("error", error),
                ("error_description", description),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
                ),
            ],
        )
    };
    // A code is good for one request, whatever its outcome.
    let code = form.get("code").and_then(|c| lock(&st.codes).remove(c));
    let bad_code = "The code passed is incorrect or expired.";
    if headers.contains_key(header::AUTHORIZATION) {
        return fail(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "client authentication in an Authorization header: GitHub wants client_secret in the body".into(),
        );
    }
    if form.get("client_id").map(String::as_str) != Some(GITHUB_CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(GITHUB_CLIENT_SECRET)
    {
        return fail(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            format!(
                "wrong or missing client_id/client_secret in the body (client_id {:?})",
                form.get("client_id")
            ),
        );
    }
    let Some(code) = code else {
        return fail(
            "bad_verification_code",
            bad_code,
            format!("unknown or used code {:?}", form.get("code")),
        );
    };
    if let Some(r) = form.get("redirect_uri")
        && *r != code.redirect_uri
    {
        return fail(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
            format!(
                "redirect_uri {r:?} is not the authorization's {:?}",
                code.redirect_uri
            ),
        );
    }
    match form.get("code_verifier") {
        None => {
            return fail(
                "bad_verification_code",
                bad_code,
                "no code_verifier for a code with a PKCE challenge".into(),
            );
        }
        Some(v) if pkce_challenge(v) != code.challenge => {
            return fail(
                "bad_verification_code",
                bad_code,
                "code_verifier does not match the code_challenge".into(),
            );
        }
        Some(_) => {}
    }
    let token = format!("gho_{}", random_hex(18));
    lock(&st.tokens).insert(token.clone());
    gh_token_answer(
        json_wanted,
        &[
            ("access_token", &token),
            ("scope", "read:user,user:email"),
            ("token_type", "bearer"),
        ],
    )
}

const GH_NO_USER_AGENT: &str = "Request forbidden by administrative rules. Please make sure your \
    request has a User-Agent header \
    (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
    Check https://developer.github.com for other possible causes.\n";

/// GitHub's API checks: a `User-Agent` (403 without) and a token it issued (401 otherwise).
/// `Some(refusal)` when a check fails.
fn gh_api_refusal(st: &GhState, headers: &HeaderMap) -> Option<Response> {
    st.api_requests.fetch_add(1, Ordering::SeqCst);
    let has_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !has_agent {
        return Some(
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                GH_NO_USER_AGENT,
            )
                .into_response(),
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
        })
        .map(|(_, t)| t.trim().to_owned());
    if token.is_some_and(|t| lock(&st.tokens).contains(&t)) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                json!({
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                    "status": "401"
                })
                .to_string(),
            )
                .into_response(),
        )
    }
}

fn gh_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

async fn gh_user(State(st): State<Arc<GhState>>, headers: HeaderMap) -> Response {
    if let Some(r) = gh_api_refusal(&st, &headers) {
        return r;
    }
    let u = &st.user;
    gh_json(json!({
        "login": u.login,
        "id": u.id,
        "node_id": URL_SAFE_NO_PAD.encode(format!("04:User{}", u.id)),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", u.id),
        "html_url": format!("https://github.com/{}", u.login),
        "type": "User",
        "site_admin": false,
        "name": u.login,
        "email": u.public_email,
    }))
}

async fn gh_emails(State(st): State<Arc<GhState>>, headers: HeaderMap) -> Response {
    if let Some(r) = gh_api_refusal(&st, &headers) {
        return r;
    }
    let list: Vec<Value> = st
        .user
        .emails
        .iter()
        .map(|(email, primary, verified)| {
            let visibility = if st.user.public_email.as_deref() == Some(email.as_str()) {
                json!("public")
            } else if *primary {
                json!("private")
            } else {
                Value::Null
            };
            json!({"email": email, "primary": primary, "verified": verified, "visibility": visibility})
        })
        .collect();
    gh_json(Value::Array(list))
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/// One request of a [`Browser`] and its answer.
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: Method,
    /// Absolute (app requests as `http://localhost:8080/...`).
    pub url: String,
    pub status: StatusCode,
    /// The `Location` header as sent (possibly relative).
    pub location: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Hop {
    pub fn is_redirect(&self) -> bool {
        matches!(self.status.as_u16(), 301 | 302 | 303 | 307 | 308) && self.location.is_some()
    }

    /// The `Location` resolved against the request URL.
    pub fn next_url(&self) -> Option<String> {
        let location = self.location.as_deref()?;
        let base = url::Url::parse(&self.url).ok()?;
        Some(base.join(location).ok()?.into())
    }

    /// The `Set-Cookie` headers of the answer.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Whether `url` is on the app (a path, or below [`ORIGIN`]).
pub fn is_app_url(url: &str) -> bool {
    url.starts_with('/')
        || url == ORIGIN
        || url
            .strip_prefix(ORIGIN)
            .is_some_and(|rest| rest.starts_with(['/', '?', '#']))
}

/// The path and query of an app URL.
fn app_path(url: &str) -> String {
    let rest = url.strip_prefix(ORIGIN).unwrap_or(url);
    let rest = rest.split('#').next().unwrap_or_default();
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    }
}

/// Seconds since the epoch of an HTTP date (`Thu, 01 Jan 1970 00:00:00 GMT`).
fn http_date_unix(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let (day, month, year, time) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| month.eq_ignore_ascii_case(m))? as i64
        + 1;
    let mut hms = time.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// A cookie of the app jar; `expires` in Unix seconds (none: a session cookie).
#[derive(Debug, Clone)]
struct JarCookie {
    value: String,
    expires: Option<i64>,
}

/// Applies one `Set-Cookie` to `jar` at time `now`: `Max-Age<=0` or a past `Expires` deletes.
fn apply_set_cookie(jar: &mut BTreeMap<String, JarCookie>, line: &str, now: i64) {
    let mut parts = line.split(';');
    let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
        return;
    };
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return;
    }
    let mut max_age = None;
    let mut expires = None;
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        let k = k.trim();
        if k.eq_ignore_ascii_case("max-age") {
            max_age = v.trim().parse::<i64>().ok();
        } else if k.eq_ignore_ascii_case("expires") {
            expires = http_date_unix(v.trim());
        }
    }
    // Max-Age wins over Expires (RFC 6265 §5.3).
    let expires = max_age.map_or(expires, |n| Some(now.saturating_add(n)));
    if expires.is_some_and(|t| t <= now) {
        jar.remove(name);
    } else {
        jar.insert(
            name.to_owned(),
            JarCookie {
                value: value.to_owned(),
                expires,
            },
        );
    }
}

/// A browser for one test: follows redirects across hosts, keeping cookies. App URLs (paths, or
/// below [`ORIGIN`]) are sent in-process through [`TestApp::send`] with every live cookie of the
/// app jar (expiry is judged by the app's manual clock: the browser lives in the test's time);
/// other URLs go over HTTP with a client that keeps its own cookies (with their paths).
pub struct Browser<'a> {
    app: &'a TestApp,
    jar: Mutex<BTreeMap<String, JarCookie>>,
    client: Mutex<reqwest::Client>,
}

impl std::fmt::Debug for Browser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("app_cookies", &self.app_cookies())
            .finish_non_exhaustive()
    }
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            jar: Mutex::new(BTreeMap::new()),
            client: Mutex::new(external_client()),
        }
    }

    /// The HTTP client used for non-app URLs (it shares this browser's cookies there).
    pub fn external(&self) -> reqwest::Client {
        lock(&self.client).clone()
    }

    /// Forgets every non-app cookie, e.g. the test OP's login, so that the next sign-in there
    /// can pick another user with `login_hint` (the app's cookies stay).
    pub fn forget_provider_login(&self) {
        *lock(&self.client) = external_client();
    }

    /// One GET, no redirects followed.
    pub async fn get(&self, url: &str) -> Hop {
        if is_app_url(url) {
            let path = app_path(url);
            let resp = self.app_request(Req::get(&path)).await;
            let location = resp.header("location").map(str::to_owned);
            Hop {
                method: Method::GET,
                url: format!("{ORIGIN}{path}"),
                status: resp.status,
                location,
                body: resp.text(),
                headers: resp.headers,
            }
        } else {
            let resp = self
                .external()
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let status = resp.status();
            let headers = resp.headers().clone();
            let location = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.text().await.unwrap_or_default();
            Hop {
                method: Method::GET,
                url: url.to_owned(),
                status,
                location,
                headers,
                body,
            }
        }
    }

    /// GETs `url` and follows redirects (any host), at most `max_hops` requests in all.
    pub async fn follow(&self, url: &str, max_hops: usize) -> Vec<Hop> {
        self.follow_while(url, max_hops, |_| true).await
    }

    /// Like [`follow`](Self::follow), but stops before requesting an app URL: the last hop's
    /// `Location` is then the app URL (e.g. the callback, to replay or tamper with it).
    pub async fn follow_to_app(&self, url: &str, max_hops: usize) -> Vec<Hop> {
        self.follow_while(url, max_hops, |next| !is_app_url(next))
            .await
    }

    /// Follows redirects while `go(next_url)` holds.
    pub async fn follow_while(
        &self,
        url: &str,
        max_hops: usize,
        go: impl Fn(&str) -> bool,
    ) -> Vec<Hop> {
        let mut hops: Vec<Hop> = Vec::new();
        let mut next = url.to_owned();
        while hops.len() < max_hops {
            let hop = self.get(&next).await;
            let follow = hop.is_redirect().then(|| hop.next_url()).flatten();
            hops.push(hop);
            match follow {
                Some(n) if go(&n) => next = n,
                _ => break,
            }
        }
        hops
    }

    /// The app's time, in Unix seconds.
    fn now(&self) -> i64 {
        use authkit::clock::Clock as _;
        self.app.clock.now().unix_seconds()
    }

    /// The live app cookies (expired ones are dropped).
    fn live_jar(&self) -> MutexGuard<'_, BTreeMap<String, JarCookie>> {
        let now = self.now();
        let mut jar = lock(&self.jar);
        jar.retain(|_, c| c.expires.is_none_or(|t| t > now));
        jar
    }

    /// The app cookie `name`, if the jar has it (and it has not expired).
    pub fn app_cookie(&self, name: &str) -> Option<String> {
        self.live_jar().get(name).map(|c| c.value.clone())
    }

    /// Every live app cookie, name → value.
    pub fn app_cookies(&self) -> BTreeMap<String, String> {
        self.live_jar()
            .iter()
            .map(|(k, c)| (k.clone(), c.value.clone()))
            .collect()
    }

    /// Puts a (session) cookie into the app jar, e.g. a stolen or replayed one.
    pub fn set_app_cookie(&self, name: &str, value: &str) {
        lock(&self.jar).insert(
            name.to_owned(),
            JarCookie {
                value: value.to_owned(),
                expires: None,
            },
        );
    }

    pub fn clear_app_cookie(&self, name: &str) {
        lock(&self.jar).remove(name);
    }

    /// Stores the app's `Set-Cookie` headers of `headers`.
    pub fn store_app_cookies(&self, headers: &HeaderMap) {
        let now = self.now();
        let mut jar = lock(&self.jar);
        for v in headers.get_all(header::SET_COOKIE) {
            if let Ok(line) = v.to_str() {
                apply_set_cookie(&mut jar, line, now);
            }
        }
    }

    /// Sends `req` to the app with the jar's cookies (added to any it carries) and keeps the
    /// cookies of the answer.
    pub async fn app_request(&self, mut req: Req) -> Resp {
        let cookies: Vec<String> = self
            .live_jar()
            .iter()
            .map(|(k, c)| format!("{k}={}", c.value))
            .collect();
        req.extra_cookies.extend(cookies);
        let resp = self.app.send(req).await;
        self.store_app_cookies(&resp.headers);
        resp
    }

    /// A CSRF token for the current session (`GET /api/v1/auth/csrf`); `None` without one.
    pub async fn csrf_token(&self) -> Option<String> {
        let r = self.app_request(Req::get("/api/v1/auth/csrf")).await;
        if r.status != StatusCode::OK {
            return None;
        }
        r.json()["token"].as_str().map(str::to_owned)
    }

    /// POSTs JSON to the app like the frontend does: same-origin `Origin` and, when there is a
    /// session, its `X-CSRF-Token`.
    pub async fn csrf_post(&self, path: &str, body: Value) -> Resp {
        let token = self.csrf_token().await;
        let mut req = Req::post(path).json(body).header("origin", ORIGIN);
        if let Some(t) = token {
            req = req.header("x-csrf-token", &t);
        }
        self.app_request(req).await
    }
}

// ---------------------------------------------------------------------------------------------
// The harness's own tests (they need no OAuth support in the library)
// ---------------------------------------------------------------------------------------------

/// Runs the authorization request for `login_hint` in a fresh browser up to the callback (not
/// calling the app); returns the callback URL and the PKCE verifier.
async fn op_authorize(
    op: &OpProcess,
    browser: &Browser<'_>,
    login_hint: &str,
    state: &str,
    nonce: &str,
) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let auth = with_query(
        &format!("{}/auth", op.issuer()),
        &[
            ("response_type", "code"),
            ("client_id", op.client_id()),
            ("redirect_uri", OIDC_CALLBACK),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", login_hint),
        ],
    );
    let hops = browser.follow_to_app(&auth, 10).await;
    let last = hops.last().unwrap();
    let callback = last.next_url().unwrap_or_else(|| {
        panic!(
            "no redirect to the app: {:?}\nOP stderr:\n{}",
            hops.iter()
                .map(|h| (h.status, &h.url, &h.location, &h.body))
                .collect::<Vec<_>>(),
            op.stderr_log()
        )
    });
    assert!(is_app_url(&callback), "{callback}");
    (callback, verifier)
}

/// Exchanges `code` at the OP's token endpoint (client_secret_basic); returns the JSON.
async fn op_token(op: &OpProcess, code: &str, verifier: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/token", op.issuer()))
        .basic_auth(op.client_id(), Some(op.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", OIDC_CALLBACK),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("token answer ({e}): {text}")),
    )
}

#[tokio::test]
async fn harness_op_runs_code_flow() {
    let Some(op) = shared_op() else { return };
    let app = TestApp::new(crate::support::Backend::Memory).await.unwrap();

    // alice: a full code flow by hand, the app not called.
    let browser = Browser::new(&app);
    let (state, nonce) = (random_token(16), random_token(16));
    let (callback, verifier) = op_authorize(op, &browser, "alice", &state, &nonce).await;
    assert!(callback.starts_with(OIDC_CALLBACK), "{callback}");
    assert_eq!(query_param(&callback, "state").as_deref(), Some(&*state));
    assert_eq!(query_param(&callback, "iss"), Some(op.issuer()));
    assert!(browser.app_cookies().is_empty(), "the app was not called");
    let code = query_param(&callback, "code").unwrap();
    let (status, token) = op_token(op, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let id_token = token["id_token"].as_str().unwrap();
    assert_eq!(jwt_header(id_token)["kid"], "k1");
    let claims = jwt_payload(id_token);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["email"], "alice@example.test", "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(claims["nonce"], nonce.as_str(), "{claims}");
    assert_eq!(claims["aud"], OP_CLIENT_ID, "{claims}");
    assert_eq!(claims["iss"], op.issuer().as_str(), "{claims}");
    assert!(claims.get("amr").is_none(), "{claims}");
    // The code is single use.
    let (status, again) = op_token(op, &code, &verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    assert_eq!(again["error"], "invalid_grant");

    // carol: amr/acr reach the ID token (a fresh browser: the OP keeps one login per jar).
    let browser = Browser::new(&app);
    let (callback, verifier) = op_authorize(op, &browser, "carol", "s-carol", "n-carol").await;
    let (_, token) = op_token(op, &query_param(&callback, "code").unwrap(), &verifier).await;
    let claims = jwt_payload(token["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "carol", "{claims}");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims}");
    assert_eq!(claims["acr"], "mfa", "{claims}");

    // noemail: no email claim at all; bob: unverified.
    for (user, verified) in [("noemail", Value::Null), ("bob", json!(false))] {
        let browser = Browser::new(&app);
        let (callback, verifier) = op_authorize(op, &browser, user, "s", "n").await;
        let (_, token) = op_token(op, &query_param(&callback, "code").unwrap(), &verifier).await;
        let claims = jwt_payload(token["id_token"].as_str().unwrap());
        assert_eq!(claims["sub"], user, "{claims}");
        assert_eq!(claims["email_verified"], verified, "{claims}");
        if user == "noemail" {
            assert!(claims.get("email").is_none(), "{claims}");
        }
    }

    // mallory refuses: error=access_denied with the state, no code.
    let browser = Browser::new(&app);
    let (callback, _) = op_authorize(op, &browser, "mallory", "s-mallory", "n").await;
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some("s-mallory")
    );
    assert_eq!(query_param(&callback, "code"), None);

    // A forge mode rewrites the ID token of the token response.
    let browser = Browser::new(&app);
    let (callback, verifier) = op_authorize(op, &browser, "f_wrong_aud", "s", "n").await;
    let (_, token) = op_token(op, &query_param(&callback, "code").unwrap(), &verifier).await;
    let claims = jwt_payload(token["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "someone-else", "{claims}");
    assert_eq!(claims["sub"], "f_wrong_aud", "{claims}");
    app.finish().await;
}

#[tokio::test]
async fn harness_github_stand_in() {
    let mut user = GithubUser::new(4242, "octo", "octo@example.test");
    user.emails.push(("old@example.test".into(), false, false));
    let gh = GithubStandIn::start(user);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("authkit-harness-test")
        .build()
        .unwrap();
    let redirect_uri = "http://localhost:8080/api/v1/auth/oauth/github/callback";
    let authorize = |challenge: &str, state: &str| {
        with_query(
            &gh.authorize_url(),
            &[
                ("client_id", GITHUB_CLIENT_ID),
                ("redirect_uri", redirect_uri),
                ("scope", "read:user user:email"),
                ("state", state),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ],
        )
    };
    let get_code = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FOUND);
            let location = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
            assert!(location.starts_with(redirect_uri), "{location}");
            location
        }
    };
    let token_request = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = gh.token_url();
        async move {
            let r = http
                .post(url)
                .header(header::ACCEPT, "application/json")
                .form(&form)
                .send()
                .await
                .unwrap();
            // GitHub answers token requests with 200, errors included.
            assert_eq!(r.status(), StatusCode::OK);
            serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
        }
    };
    let form = |code: &str, verifier: &str| {
        vec![
            ("client_id", GITHUB_CLIENT_ID.to_owned()),
            ("client_secret", GITHUB_CLIENT_SECRET.to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };

    // Authorization without PKCE is refused by the stand-in.
    let r = http
        .get(with_query(
            &gh.authorize_url(),
            &[
                ("client_id", GITHUB_CLIENT_ID),
                ("redirect_uri", redirect_uri),
                ("state", "s"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // authorize → code → token.
    let (verifier, challenge) = pkce_pair();
    let location = get_code(authorize(&challenge, "st-1")).await;
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-1"));
    let code = query_param(&location, "code").unwrap();
    let token = token_request(form(&code, &verifier)).await;
    let access = token["access_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("gho_"), "{token}");
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["scope"], "read:user,user:email");

    // The code is single use: the replay gets GitHub's 200 with an error.
    let again = token_request(form(&code, &verifier)).await;
    assert_eq!(again["error"], "bad_verification_code", "{again}");
    assert_eq!(
        again["error_description"],
        "The code passed is incorrect or expired."
    );

    // A wrong verifier, and a secret in Basic auth, fail (and burn the code).
    let (verifier2, challenge2) = pkce_pair();
    let code2 = query_param(&get_code(authorize(&challenge2, "st-2")).await, "code").unwrap();
    let wrong = token_request(form(&code2, &random_token(32))).await;
    assert_eq!(wrong["error"], "bad_verification_code", "{wrong}");
    assert_eq!(
        token_request(form(&code2, &verifier2)).await["error"],
        "bad_verification_code"
    );
    let (verifier3, challenge3) = pkce_pair();
    let code3 = query_param(&get_code(authorize(&challenge3, "st-3")).await, "code").unwrap();
    let basic = http
        .post(gh.token_url())
        .header(header::ACCEPT, "application/json")
        .basic_auth(GITHUB_CLIENT_ID, Some(GITHUB_CLIENT_SECRET))
        .form(&[
            ("client_id", GITHUB_CLIENT_ID),
            ("code", &code3),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier3),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    let basic: Value = serde_json::from_str(&basic.text().await.unwrap()).unwrap();
    assert_eq!(basic["error"], "incorrect_client_credentials", "{basic}");
    assert_eq!(gh.token_requests(), 5);
    assert_eq!(gh.token_failures().len(), 4, "{:?}", gh.token_failures());

    // The API: /user and /user/emails with the token and a User-Agent.
    let user = http
        .get(format!("{}/user", gh.base_url()))
        .bearer_auth(&access)
        .header(header::ACCEPT, "application/vnd.github+json")
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), StatusCode::OK);
    let user: Value = serde_json::from_str(&user.text().await.unwrap()).unwrap();
    assert_eq!(user["id"], 4242);
    assert_eq!(user["login"], "octo");
    assert_eq!(user["email"], Value::Null);
    let emails = http
        .get(format!("{}/user/emails", gh.base_url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(emails.status(), StatusCode::OK);
    let emails: Value = serde_json::from_str(&emails.text().await.unwrap()).unwrap();
    assert_eq!(
        emails,
        json!([
            {"email": "octo@example.test", "primary": true, "verified": true, "visibility": "private"},
            {"email": "old@example.test", "primary": false, "verified": false, "visibility": null},
        ])
    );
    // No User-Agent: 403. A token it did not issue: 401.
    let no_agent = reqwest::Client::new()
        .get(format!("{}/user", gh.base_url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(no_agent.status(), StatusCode::FORBIDDEN);
    let bad = http
        .get(format!("{}/user/emails", gh.base_url()))
        .bearer_auth("gho_not-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let bad: Value = serde_json::from_str(&bad.text().await.unwrap()).unwrap();
    assert_eq!(bad["message"], "Bad credentials");

    // A user who refuses: error=access_denied with the state, and no token request.
    let mut refuser = GithubUser::new(7, "nope", "nope@example.test");
    refuser.deny = true;
    let gh2 = GithubStandIn::start(refuser);
    let (_, challenge) = pkce_pair();
    let r = http
        .get(with_query(
            &gh2.authorize_url(),
            &[
                ("client_id", GITHUB_CLIENT_ID),
                ("redirect_uri", redirect_uri),
                ("state", "st-deny"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()[header::LOCATION].to_str().unwrap();
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(location, "state").as_deref(), Some("st-deny"));
    assert_eq!(gh2.token_requests(), 0);
}

#[tokio::test]
async fn harness_browser_keeps_app_cookies_across_hosts() {
    let app = TestApp::new(crate::support::Backend::Memory).await.unwrap();
    let browser = Browser::new(&app);
    // The app side: the jar keeps the session cookie, sends it, and honours its deletion.
    let addr = crate::support::email("browser");
    let r = browser
        .app_request(
            Req::post("/api/v1/auth/register")
                .json(crate::support::creds(&addr, crate::support::PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(browser.app_cookie("authkit_session").is_some());
    let me = browser.get("/api/v1/auth/session").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.json()["user"]["email"], addr.as_str());
    let others = browser
        .csrf_post("/api/v1/auth/sessions/revoke-others", json!({}))
        .await;
    assert_eq!(others.status, StatusCode::NO_CONTENT, "{}", others.text());
    let out = browser.csrf_post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    assert_eq!(browser.app_cookie("authkit_session"), None);
    assert_eq!(
        browser.get("/api/v1/auth/session").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Across hosts: a redirect from another server to the app is followed in-process.
    let gh = GithubStandIn::start(GithubUser::new(1, "hop", "hop@example.test"));
    let callback = "http://localhost:8080/api/v1/auth/oauth/github/callback";
    let (_, challenge) = pkce_pair();
    let start = with_query(
        &gh.authorize_url(),
        &[
            ("client_id", GITHUB_CLIENT_ID),
            ("redirect_uri", callback),
            ("state", "st"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let hops = browser.follow(&start, 5).await;
    assert!(hops.len() >= 2, "{hops:?}");
    assert_eq!(hops[0].status, StatusCode::FOUND);
    assert!(hops[1].url.starts_with(callback), "{:?}", hops[1]);
    assert_eq!(query_param(&hops[1].url, "state").as_deref(), Some("st"));
    let stopped = browser.follow_to_app(&start, 5).await;
    assert_eq!(stopped.len(), 1);
    assert!(stopped[0].next_url().unwrap().starts_with(callback));
    app.finish().await;
}

#[test]
fn set_cookie_parsing() {
    let now = 1_800_000_000;
    let mut jar = BTreeMap::new();
    apply_set_cookie(
        &mut jar,
        "authkit_session=abc; HttpOnly; SameSite=Lax; Path=/",
        now,
    );
    apply_set_cookie(&mut jar, "authkit_oauth=xyz; Max-Age=600; Path=/", now);
    assert_eq!(jar["authkit_session"].value, "abc");
    assert_eq!(jar["authkit_session"].expires, None);
    assert_eq!(jar["authkit_oauth"].expires, Some(now + 600));
    apply_set_cookie(
        &mut jar,
        "authkit_oauth=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 2099 00:00:00 GMT",
        now,
    );
    assert!(!jar.contains_key("authkit_oauth"));
    apply_set_cookie(
        &mut jar,
        "authkit_session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        now,
    );
    assert!(jar.is_empty());
    assert_eq!(
        http_date_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert!(is_app_url("/api/v1/auth/session"));
    assert!(is_app_url("http://localhost:8080/x?y"));
    assert!(!is_app_url("http://localhost:80800/x"));
    assert!(!is_app_url("http://127.0.0.1:8080/x"));
    assert_eq!(
        app_path("http://localhost:8080/a/b?c=d#frag"),
        "/a/b?c=d".to_owned()
    );
    assert_eq!(
        query_param("/cb?code=a%2Bb&state=s", "code").as_deref(),
        Some("a+b")
    );
}

fn external_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .user_agent("Mozilla/5.0 (authkit integration tests)")
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}
