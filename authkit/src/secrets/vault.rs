//! HashiCorp Vault / OpenBao KV v2 secret provider.
//!
//! [`VaultSecrets`] reads secret `name` from the KV v2 entry `<mount>/<prefix><name>` and
//! returns the string in its field `field` (default: mount `secret`, prefix `authkit/`, field
//! `value`). The KV version number of the value read is the [`SecretValue`] version label.
//!
//! # Logging in
//! - [`VaultAuth::Token`]: a token made for the application. It is renewed in the background
//!   while it is renewable; once it cannot be renewed any more (not renewable, or its max TTL
//!   reached) the provider logs a warning and keeps using it until it expires. Use a
//!   periodic token, or AppRole, for long-running servers.
//! - [`VaultAuth::AppRole`]: the provider logs in on [`VaultSecrets::connect`] and renews the
//!   token at about 2/3 of its lease. When renewing fails or the token reaches its max TTL,
//!   the background renewer logs in again with the role id and secret id. A read refused with
//!   403 while the token itself is dead (Vault answers an expired token with 403) also logs in
//!   again once and retries.
//!
//! # Policy
//! The token (or the AppRole's `token_policies`) needs read access to the data path of the
//! KV v2 mount, which is `<mount>/data/…`, not `<mount>/…`:
//! ```hcl
//! path "secret/data/authkit/*" { capabilities = ["read"] }
//! ```
//! Token renewal and look-up use `auth/token/renew-self` and `auth/token/lookup-self`, which
//! Vault's `default` policy grants.
//!
//! # Rotation
//! Writing a new value to the KV entry creates a new KV version. The provider reads the latest
//! version on every [`SecretProvider::get`], so a caller that refreshes its cached values sees
//! the new version label and value at its next refresh; nothing needs a restart.
//!
//! # What is never shown
//! Tokens, secret ids and values never appear in `Debug` output, errors or logs. Errors carry
//! the HTTP status and Vault's error list (which names paths, not data), or the transport
//! failure.
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::task::AbortHandle;
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::api::kv2::responses::ReadSecretResponse;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::{SecretError, SecretProvider, SecretValue};

/// The provider's name in errors.
const PROVIDER: &str = "vault";
/// The name errors use for a failed AppRole login.
const LOGIN: &str = "approle login";
/// The name errors use for an unusable configuration.
const CONFIG: &str = "vault configuration";
/// The longest the renewer sleeps between two looks at the token.
const MAX_SLEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest wait between two attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How [`VaultSecrets`] logs in.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token (renewed while it is renewable).
    Token(SecretString),
    /// AppRole login (logs in again when the token cannot be renewed any more).
    AppRole {
        /// Where the AppRole auth method is mounted (usually `approle`).
        mount: String,
        /// The role id (not secret on its own).
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
}

impl VaultAuth {
    fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "approle",
        }
    }
}

/// Settings of [`VaultSecrets`].
#[derive(Debug, Clone)]
pub struct VaultSecretsConfig {
    /// The server, e.g. `https://vault.internal:8200`.
    pub address: String,
    /// The KV v2 mount (default `secret`).
    pub mount: String,
    /// Secret `name` is read from `<prefix><name>` (default `authkit/`).
    pub prefix: String,
    /// The field of the KV entry that holds the value (default `value`).
    pub field: String,
    /// How to log in.
    pub auth: VaultAuth,
    /// Time limit of one request (default 5 s).
    pub timeout: Duration,
}

impl VaultSecretsConfig {
    /// Defaults for everything but the address and the login.
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            mount: "secret".into(),
            prefix: "authkit/".into(),
            field: "value".into(),
            auth,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Secrets from a HashiCorp Vault or OpenBao KV v2 mount (feature `vault`).
///
/// See the [module documentation](self) for the policy it needs, how it logs in and how
/// rotation shows up. A background task renews the token; it holds no strong reference to
/// the provider and stops when the provider is dropped.
///
/// `Debug` shows the address, mount, prefix, field and the kind of login, never a token,
/// secret id or value.
pub struct VaultSecrets {
    inner: Arc<Inner>,
    renewer: AbortHandle,
}

impl fmt::Debug for VaultSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner.config;
        f.debug_struct("VaultSecrets")
            .field("address", &config.address)
            .field("mount", &config.mount)
            .field("prefix", &config.prefix)
            .field("field", &config.field)
            .field("auth", &config.auth.kind())
            .finish_non_exhaustive()
    }
}

impl Drop for VaultSecrets {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl VaultSecrets {
    /// Checks the configuration, logs in (AppRole) and starts the token renewer.
    ///
    /// Every client setting is set explicitly, so `VAULT_ADDR`, `VAULT_TOKEN`,
    /// `VAULT_CACERT`, `VAULT_SKIP_VERIFY` and friends in the environment change nothing. TLS
    /// certificates are always verified (against the built-in web PKI roots). With a token no
    /// request is made here; the first [`get`](SecretProvider::get) shows whether it works.
    ///
    /// # Errors
    /// - [`SecretError::Unavailable`] named `vault configuration` when the address is not an
    ///   `http`/`https` URL (or holds credentials), the mount, prefix or AppRole mount holds
    ///   characters other than `A-Z a-z 0-9 _ - . /` (or a `..` segment), or the token is
    ///   empty or not printable ASCII;
    /// - [`SecretError::Denied`] named `approle login` when Vault refuses the AppRole login
    ///   (HTTP 400 or 403: wrong role id or secret id);
    /// - [`SecretError::Unavailable`] named `approle login` when Vault cannot be reached or
    ///   the login fails otherwise.
    ///
    /// Must be called within a Tokio runtime (the renewer is spawned on it).
    pub async fn connect(config: VaultSecretsConfig) -> Result<Self, SecretError> {
        check_config(&config).map_err(|e| unavailable(CONFIG, e))?;
        let session = match &config.auth {
            VaultAuth::Token(token) => {
                let token = token.expose_secret().trim();
                if !header_safe(token) {
                    return Err(unavailable(
                        CONFIG,
                        Failure::new(
                            "the Vault token is empty or holds characters that cannot be sent in an HTTP header",
                        ),
                    ));
                }
                Session {
                    client: new_client(&config, token).map_err(|e| unavailable(CONFIG, e))?,
                    generation: 0,
                    lease: None,
                }
            }
            VaultAuth::AppRole { .. } => match login(&config, 0).await {
                Ok(session) => session,
                Err(e) => {
                    tracing::warn!(address = %config.address, error = %e, "Vault AppRole login failed");
                    return Err(if e.refused() {
                        SecretError::Denied {
                            name: LOGIN.to_owned(),
                            provider: PROVIDER,
                        }
                    } else {
                        unavailable(LOGIN, e)
                    });
                }
            },
        };
        let inner = Arc::new(Inner {
            config,
            session: RwLock::new(Arc::new(session)),
            login_lock: tokio::sync::Mutex::new(()),
        });
        let renewer = tokio::spawn(renew_loop(Arc::downgrade(&inner))).abort_handle();
        Ok(Self { inner, renewer })
    }

    /// The KV path (below the mount) that holds secret `name`: `<prefix><name>`.
    pub fn path(&self, name: &str) -> String {
        format!("{}{name}", self.inner.config.prefix)
    }

    fn not_found(name: &str) -> SecretError {
        SecretError::NotFound {
            name: name.to_owned(),
            provider: PROVIDER,
        }
    }

    fn denied(name: &str) -> SecretError {
        SecretError::Denied {
            name: name.to_owned(),
            provider: PROVIDER,
        }
    }

    /// Maps a failed read: 404 is not found, 403 (after any new login) is denied.
    fn read_error(name: &str, e: Failure) -> SecretError {
        match e.status {
            Some(404) => Self::not_found(name),
            Some(403) => Self::denied(name),
            _ => unavailable(name, e),
        }
    }

    /// A read was refused with 403: the token may be dead (expired, revoked) or the policy
    /// may not allow the path. With AppRole and a dead token, log in again once and retry.
    async fn after_forbidden(
        &self,
        name: &str,
        path: &str,
        session: &Session,
    ) -> Result<SecretValue, SecretError> {
        if !matches!(self.inner.config.auth, VaultAuth::AppRole { .. }) {
            return Err(Self::denied(name));
        }
        // A token that can still look itself up is alive: the policy forbids the path, and a
        // new login would not change that (and would hammer the server on every read).
        if vaultrs::token::lookup_self(&session.client).await.is_ok() {
            return Err(Self::denied(name));
        }
        let fresh = match self.inner.relogin(session.generation).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(secret = name, error = %e, "logging in to Vault again failed");
                return Err(unavailable(
                    name,
                    Failure {
                        message: format!("the token was refused and logging in again failed: {e}"),
                        status: e.status,
                    },
                ));
            }
        };
        tracing::debug!(
            secret = name,
            "logged in to Vault again after a refused read"
        );
        match self.inner.read(&fresh, path).await {
            Ok(response) => self.value(name, path, response),
            Err(e) => Err(Self::read_error(name, e)),
        }
    }

    /// Takes the configured field out of a KV v2 response.
    fn value(
        &self,
        name: &str,
        path: &str,
        response: ReadSecretResponse,
    ) -> Result<SecretValue, SecretError> {
        let config = &self.inner.config;
        let version = response.metadata.version.to_string();
        let field = match response.data {
            serde_json::Value::Object(mut data) => data.remove(&config.field),
            _ => None,
        };
        match field {
            Some(serde_json::Value::String(value)) => {
                Ok(SecretValue::new(SecretString::from(value), Some(version)))
            }
            Some(_) => Err(unavailable(
                name,
                Failure::new(format!(
                    "field `{}` of the KV entry `{}/{path}` (version {version}) is not a string",
                    config.field, config.mount
                )),
            )),
            None => {
                tracing::warn!(
                    secret = name,
                    mount = %config.mount,
                    path,
                    field = %config.field,
                    version = %version,
                    "the Vault KV entry has no such field"
                );
                Err(Self::not_found(name))
            }
        }
    }
}

#[async_trait]
impl SecretProvider for VaultSecrets {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
        if !valid_name(name) {
            return Err(Self::not_found(name));
        }
        let path = self.path(name);
        let session = self.inner.current();
        match self.inner.read(&session, &path).await {
            Ok(response) => self.value(name, &path, response),
            Err(e) if e.status == Some(403) => self.after_forbidden(name, &path, &session).await,
            Err(e) => Err(Self::read_error(name, e)),
        }
    }
}

/// State shared by the provider and its renewer.
struct Inner {
    config: VaultSecretsConfig,
    /// The client with the current token. Swapped as a whole on a new login, so readers
    /// clone the `Arc` and never hold the lock across a request.
    session: RwLock<Arc<Session>>,
    /// One login at a time.
    login_lock: tokio::sync::Mutex<()>,
}

/// A client with one token.
struct Session {
    client: VaultClient,
    /// Counts logins, so that a stale 403 does not log in twice.
    generation: u64,
    /// The lease granted at login (AppRole); `None` for a configured token.
    lease: Option<Lease>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Seconds left (Vault rounds down, so 0 can mean "less than a second").
    ttl: u64,
    renewable: bool,
    /// The token has no TTL at all (a root token, say).
    never_expires: bool,
}

impl Inner {
    fn current(&self) -> Arc<Session> {
        Arc::clone(&self.session.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn is_approle(&self) -> bool {
        matches!(self.config.auth, VaultAuth::AppRole { .. })
    }

    /// Reads the latest version of a KV v2 entry with its metadata, in one request.
    async fn read(&self, session: &Session, path: &str) -> Result<ReadSecretResponse, Failure> {
        let request = ReadSecretRequest::builder()
            .mount(self.config.mount.as_str())
            .path(path)
            .build()
            .map_err(|e| Failure::new(format!("could not build the read request: {e}")))?;
        vaultrs::api::exec_with_result(&session.client, request)
            .await
            .map_err(|e| Failure::from_client(&e))
    }

    /// Logs in again unless someone already did since `stale` was current.
    async fn relogin(&self, stale: u64) -> Result<Arc<Session>, Failure> {
        let _one_at_a_time = self.login_lock.lock().await;
        let current = self.current();
        if current.generation != stale {
            return Ok(current);
        }
        let fresh = Arc::new(login(&self.config, stale.wrapping_add(1)).await?);
        *self.session.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        Ok(fresh)
    }

    /// One step of the renewer: does `step` and says what to do next, and when.
    async fn renew_step(&self, step: Step, state: &mut RenewState) -> Option<(Step, Duration)> {
        let session = self.current();
        let step = if session.generation == state.generation {
            step
        } else {
            // A read logged in again since the last step: start over with the new token.
            state.generation = session.generation;
            Step::Start
        };
        match step {
            Step::Start => match session.lease {
                Some(lease) => {
                    state.base = lease.ttl;
                    self.plan(lease, state.base)
                }
                None => self.look_up(&session, state).await,
            },
            Step::Renew => self.renew(&session, state).await,
            Step::Login => self.login_again(&session, state).await,
        }
    }

    /// Reads the configured token's lease (token auth, first step).
    async fn look_up(&self, session: &Session, state: &mut RenewState) -> Option<(Step, Duration)> {
        match vaultrs::token::lookup_self(&session.client).await {
            Ok(info) => {
                state.failures = 0;
                state.base = info.creation_ttl;
                // The TTL left is below the creation TTL only because time has passed.
                self.plan(
                    Lease {
                        ttl: info.ttl,
                        renewable: info.renewable,
                        never_expires: info.ttl == 0
                            && info.expire_time.as_deref().is_none_or(str::is_empty),
                    },
                    0,
                )
            }
            Err(e) => {
                let e = Failure::from_client(&e);
                if e.status == Some(403) {
                    tracing::warn!(error = %e, "Vault refused the configured token (expired, revoked or wrong); it will not be renewed");
                    return None;
                }
                tracing::warn!(error = %e, "looking up the Vault token failed; trying again");
                Some((Step::Start, state.backoff()))
            }
        }
    }

    async fn renew(&self, session: &Session, state: &mut RenewState) -> Option<(Step, Duration)> {
        match vaultrs::token::renew_self(&session.client, None).await {
            Ok(auth) => {
                state.failures = 0;
                tracing::debug!(ttl_secs = auth.lease_duration, "renewed the Vault token");
                self.plan(
                    Lease {
                        ttl: auth.lease_duration,
                        renewable: auth.renewable,
                        never_expires: false,
                    },
                    state.base,
                )
            }
            Err(e) => {
                let e = Failure::from_client(&e);
                if self.is_approle() {
                    tracing::warn!(error = %e, "renewing the Vault token failed; logging in again");
                    return self.login_again(session, state).await;
                }
                if e.status == Some(403) {
                    tracing::warn!(error = %e, "Vault refused to renew the configured token (expired or revoked); it will not be renewed");
                    return None;
                }
                tracing::warn!(error = %e, "renewing the Vault token failed; trying again");
                Some((Step::Renew, state.backoff()))
            }
        }
    }

    async fn login_again(
        &self,
        session: &Session,
        state: &mut RenewState,
    ) -> Option<(Step, Duration)> {
        match self.relogin(session.generation).await {
            Ok(fresh) => {
                state.failures = 0;
                state.generation = fresh.generation;
                tracing::debug!("logged in to Vault again");
                let lease = fresh.lease.unwrap_or(Lease {
                    ttl: 0,
                    renewable: false,
                    never_expires: true,
                });
                state.base = lease.ttl;
                self.plan(lease, state.base)
            }
            Err(e) => {
                tracing::warn!(error = %e, "logging in to Vault again failed; trying again");
                Some((Step::Login, state.backoff()))
            }
        }
    }

    /// What to do with a token of lease `lease`, given that a full renewal grants `base`
    /// seconds: a shorter lease means the max TTL caps it (`base` 0: not known, do not judge).
    fn plan(&self, lease: Lease, base: u64) -> Option<(Step, Duration)> {
        if lease.never_expires {
            tracing::debug!("the Vault token does not expire; nothing to renew");
            return None;
        }
        let at = renew_after(lease.ttl);
        if lease.renewable && (base == 0 || (lease.ttl > 0 && lease.ttl >= base)) {
            return Some((Step::Renew, at));
        }
        if self.is_approle() {
            tracing::debug!(
                ttl_secs = lease.ttl,
                "the Vault token cannot be renewed past its max TTL; logging in again before it expires"
            );
            return Some((Step::Login, at));
        }
        tracing::warn!(
            ttl_secs = lease.ttl,
            renewable = lease.renewable,
            "the Vault token cannot be renewed any more (max TTL reached or not renewable); reads fail once it expires"
        );
        None
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Find out the lease (the login's, or a look-up of the configured token).
    Start,
    Renew,
    Login,
}

#[derive(Debug, Default)]
struct RenewState {
    /// The login the plan was made for.
    generation: u64,
    /// Seconds a full renewal grants.
    base: u64,
    /// Failures in a row.
    failures: u32,
}

impl RenewState {
    fn backoff(&mut self) -> Duration {
        let delay = Duration::from_secs(1u64 << self.failures.min(5)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// 2/3 of a lease, at least 100 ms and at most a day.
fn renew_after(ttl_secs: u64) -> Duration {
    Duration::from_millis(ttl_secs.saturating_mul(2000) / 3)
        .clamp(Duration::from_millis(100), MAX_SLEEP)
}

/// Renews (or logs in again) until the provider is dropped. Holds the state only while working.
async fn renew_loop(inner: Weak<Inner>) {
    let mut state = RenewState::default();
    let mut step = Step::Start;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let next = strong.renew_step(step, &mut state).await;
        drop(strong);
        let Some((next, delay)) = next else {
            return;
        };
        step = next;
        tokio::time::sleep(delay).await;
    }
}

/// Logs in with AppRole and returns a client holding the new token.
async fn login(config: &VaultSecretsConfig, generation: u64) -> Result<Session, Failure> {
    let VaultAuth::AppRole {
        mount,
        role_id,
        secret_id,
    } = &config.auth
    else {
        return Err(Failure::new("no AppRole credentials are configured"));
    };
    let mut client = new_client(config, "")?;
    let auth = vaultrs::auth::approle::login(&client, mount, role_id, secret_id.expose_secret())
        .await
        .map_err(|e| Failure::from_client(&e))?;
    let token = Zeroizing::new(auth.client_token);
    if !header_safe(&token) {
        return Err(Failure::new(
            "the login returned a token that cannot be sent in an HTTP header",
        ));
    }
    client.set_token(&token);
    Ok(Session {
        client,
        generation,
        lease: Some(Lease {
            ttl: auth.lease_duration,
            renewable: auth.renewable,
            // A login lease of 0 means the token has no TTL.
            never_expires: auth.lease_duration == 0,
        }),
    })
}

/// A client with every setting given, so that no `VAULT_*` variable is read.
fn new_client(config: &VaultSecretsConfig, token: &str) -> Result<VaultClient, Failure> {
    // `check_config` validated the address, so the (panicking) setter accepts it.
    let settings = VaultClientSettingsBuilder::default()
        .address(&config.address)
        .ca_certs(Vec::new())
        .identity(None)
        .timeout(Some(config.timeout))
        .token(token)
        .verify(true)
        .version(1)
        .wrapping(false)
        .namespace(None)
        .build()
        .map_err(|e| Failure::new(format!("invalid Vault client settings: {e}")))?;
    VaultClient::new(settings).map_err(|e| Failure::from_client(&e))
}

fn check_config(config: &VaultSecretsConfig) -> Result<(), Failure> {
    let url = url::Url::parse(&config.address)
        .map_err(|e| Failure::new(format!("the address is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::new("the address must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Failure::new(
            "the address must not hold credentials; configure a token or AppRole instead",
        ));
    }
    if config.mount.is_empty() || !safe_path(&config.mount) {
        return Err(Failure::new(format!(
            "the KV mount `{}` is empty or not a plain path",
            config.mount
        )));
    }
    if !safe_path(&config.prefix) {
        return Err(Failure::new(format!(
            "the prefix `{}` is not a plain path",
            config.prefix
        )));
    }
    if config.field.is_empty() {
        return Err(Failure::new("the field name is empty"));
    }
    if let VaultAuth::AppRole { mount, .. } = &config.auth
        && (mount.is_empty() || !safe_path(mount))
    {
        return Err(Failure::new(format!(
            "the AppRole mount `{mount}` is empty or not a plain path"
        )));
    }
    Ok(())
}

/// `A-Z a-z 0-9 _ - . /`, no leading `/`, no `.`/`..` segment.
fn safe_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|segment| segment != "." && segment != "..")
}

/// Secret names are `[A-Za-z0-9_]+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// vaultrs puts the token in a header and panics on bytes a header cannot hold.
fn header_safe(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

fn unavailable(name: &str, source: Failure) -> SecretError {
    SecretError::Unavailable {
        name: name.to_owned(),
        provider: PROVIDER,
        source: Box::new(source),
    }
}

/// A sanitized Vault failure: the HTTP status and Vault's error list, or the transport error.
///
/// vaultrs errors keep response bodies (which may hold values) and `anyhow` sources (whose
/// `Debug` prints backtraces), so they are never passed on as they are.
#[derive(Debug)]
struct Failure {
    message: String,
    status: Option<u16>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
        }
    }

    /// Vault said no to the credentials (a login answers 400 for a wrong secret id).
    fn refused(&self) -> bool {
        matches!(self.status, Some(400 | 403))
    }

    fn from_client(e: &ClientError) -> Self {
        match e {
            ClientError::APIError { code, errors } => {
                let errors = errors
                    .iter()
                    .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|e| !e.is_empty())
                    .collect::<Vec<_>>();
                let message = if errors.is_empty() {
                    format!("Vault answered HTTP {code}")
                } else {
                    format!("Vault answered HTTP {code}: {}", errors.join("; "))
                };
                Self {
                    message,
                    status: Some(*code),
                }
            }
            ClientError::RestClientError { source } => Self::from_rest(source),
            // The JSON error may quote the data it failed on.
            ClientError::JsonParseError { .. } => {
                Self::new("the Vault response could not be parsed")
            }
            other => Self::new(other.to_string()),
        }
    }

    /// rustify's error. vaultrs does not re-export its type, so its variants are told apart
    /// by their `Display` text (fixed strings in rustify 0.6).
    fn from_rest(e: &(dyn std::error::Error + 'static)) -> Self {
        let top = e.to_string();
        match top.as_str() {
            // A status without Vault's `{"errors": [...]}` body (e.g. the 404 of a deleted
            // KV version, or a proxy's error page).
            "Server returned error" => {
                let status = server_status(e);
                Self {
                    message: match status {
                        Some(code) => format!("Vault answered HTTP {code}"),
                        None => "Vault answered with an error status".to_owned(),
                    },
                    status,
                }
            }
            // Transport failures: the chain names the URL (address and path) and the cause.
            "Error sending HTTP request" | "Error retrieving HTTP response" => {
                let mut message = top;
                let mut source = e.source();
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                Self::new(message)
            }
            // Parse errors keep the body and may quote it: the top line only.
            _ => Self::new(top),
        }
    }
}

/// The status of rustify's `ServerResponseError { code, content }`, read from its `Debug`
/// text because the type cannot be named here. The text (which holds the response body) is
/// wiped and never shown.
fn server_status(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let text = Zeroizing::new(format!("{e:?}"));
    let rest = text.strip_prefix("ServerResponseError { code: ")?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_checked() {
        assert!(valid_name("session_key"));
        for bad in ["", "a/b", "..", "a-b", "a b", "ä"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(safe_path("authkit/"));
        assert!(safe_path(""));
        assert!(safe_path("kv-v2/team.a"));
        for bad in ["/abs", "a/../b", "./a", "a?b", "a#b", "a b", "a%2e"] {
            assert!(!safe_path(bad), "{bad}");
        }
        assert!(header_safe("t.abc-_"));
        assert!(!header_safe(""));
        assert!(!header_safe("a\nb"));
        assert!(!header_safe("a b"));
    }

    #[test]
    fn renewal_happens_at_two_thirds_of_the_lease() {
        assert_eq!(renew_after(3), Duration::from_secs(2));
        assert_eq!(renew_after(0), Duration::from_millis(100));
        assert_eq!(renew_after(u64::MAX), MAX_SLEEP);
        let mut state = RenewState::default();
        let delays: Vec<_> = (0..8).map(|_| state.backoff().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn api_errors_keep_status_and_messages_only() {
        let e = Failure::from_client(&ClientError::APIError {
            code: 403,
            errors: vec!["1 error occurred:\n\t* permission denied\n\n".into()],
        });
        assert_eq!(e.status, Some(403));
        assert_eq!(
            e.to_string(),
            "Vault answered HTTP 403: 1 error occurred: * permission denied"
        );
        let e = Failure::from_client(&ClientError::APIError {
            code: 404,
            errors: vec![],
        });
        assert_eq!(
            (e.status, e.to_string().as_str()),
            (Some(404), "Vault answered HTTP 404")
        );
    }

    #[tokio::test]
    async fn the_renewer_stops_with_the_provider() {
        let config = VaultSecretsConfig::new(
            "http://127.0.0.1:9",
            VaultAuth::Token(SecretString::from("t-unused")),
        );
        let vault = VaultSecrets::connect(config).await.unwrap();
        let weak = Arc::downgrade(&vault.inner);
        // Let the renewer try (and fail) its first look-up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(vault);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(weak.upgrade().is_none(), "the renewer kept the state alive");
    }
}
