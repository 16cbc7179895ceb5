//! Layered configuration: defaults → TOML file (`AUTHKIT_CONFIG_FILE`) → environment
//! (`AUTHKIT_<SECTION>__<KEY>` or a short alias) → secret provider. Validated at start with
//! errors that name the setting; production refuses insecure settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use authkit::csrf::Origin;
use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// Deployment profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development (the default): plain http on localhost, generated secrets.
    #[default]
    Development,
    /// A production-like environment.
    Staging,
    /// Production: HTTPS, real secrets, strict settings.
    Production,
}

/// How accounts are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationMode {
    /// 201 with a session; 409 `account_exists` when the address is taken (reveals which
    /// addresses have accounts).
    Instant,
    /// 202 whether or not the address is taken; the mailed link creates the account. The
    /// default in every profile (development mail lands in the dev mailbox).
    #[default]
    VerifyFirst,
}

impl RegistrationMode {
    /// The library's mode.
    pub fn to_library(self) -> authkit::account::RegistrationMode {
        match self {
            Self::Instant => authkit::account::RegistrationMode::Instant,
            Self::VerifyFirst => authkit::account::RegistrationMode::VerifyFirst,
        }
    }
}

/// Where secrets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsProviderKind {
    /// Generated once and kept under `./.authkit/secrets` (development only).
    Local,
    /// `AUTHKIT_SECRET_<NAME>` environment variables.
    Env,
    /// One file per secret in a directory (Kubernetes/Docker mounted secrets).
    File,
    /// AWS Secrets Manager (needs the `aws` feature, on by default).
    Aws,
    /// HashiCorp Vault / OpenBao KV v2 (needs the `vault` feature, on by default).
    Vault,
}

impl SecretsProviderKind {
    /// The name used in settings and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Env => "env",
            Self::File => "file",
            Self::Aws => "aws",
            Self::Vault => "vault",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Every setting. Field docs name the environment variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `AUTHKIT_PROFILE`.
    pub profile: Profile,
    /// `AUTHKIT_SERVER__*`.
    pub server: ServerConfig,
    /// `AUTHKIT_DATABASE__*`.
    pub database: DatabaseConfig,
    /// `AUTHKIT_REDIS__*`.
    pub redis: RedisConfig,
    /// `AUTHKIT_SESSION__*`.
    pub session: SessionSettings,
    /// `AUTHKIT_SECRETS__*`.
    pub secrets: SecretsConfig,
    /// `AUTHKIT_REGISTRATION__*`.
    pub registration: RegistrationConfig,
    /// `AUTHKIT_SMTP__*`.
    pub smtp: SmtpConfig,
    /// `AUTHKIT_MAIL__*`.
    pub mail: MailConfig,
    /// `AUTHKIT_PASSWORD__*`.
    pub password: PasswordSettings,
    /// `AUTHKIT_JOBS__*`.
    pub jobs: JobsConfig,
    /// `AUTHKIT_AUDIT__*`.
    pub audit: AuditConfig,
    /// `AUTHKIT_RATELIMIT__*`.
    pub ratelimit: RateLimitSettings,
    /// `AUTHKIT_MFA__*`.
    pub mfa: MfaSettings,
    /// `AUTHKIT_OAUTH__<NAME>__*`: one OAuth provider per name.
    pub oauth: BTreeMap<String, OAuthProviderSettings>,
    /// `AUTHKIT_LOG__*`.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Development,
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            session: SessionSettings::default(),
            secrets: SecretsConfig::default(),
            registration: RegistrationConfig::default(),
            smtp: SmtpConfig::default(),
            mail: MailConfig::default(),
            password: PasswordSettings::default(),
            jobs: JobsConfig::default(),
            audit: AuditConfig::default(),
            ratelimit: RateLimitSettings::default(),
            mfa: MfaSettings::default(),
            oauth: BTreeMap::new(),
            log: LogConfig::default(),
        }
    }
}

/// Listeners and HTTP behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener (`AUTHKIT_LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// Internal listener for metrics and detailed health (`AUTHKIT_INTERNAL_ADDR`).
    pub internal_addr: SocketAddr,
    /// Origin used to build links and redirect URIs, never the `Host` header
    /// (`AUTHKIT_PUBLIC_URL`).
    pub public_url: String,
    /// Origins of the frontends, comma separated (`AUTHKIT_ALLOWED_ORIGINS`); empty means the
    /// public URL's origin.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Vec<String>,
    /// CIDRs whose `X-Forwarded-For` is believed (`AUTHKIT_TRUSTED_PROXIES`).
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Longest time a request may take.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for in-flight requests at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Serve `GET /api/v1/bench/bare` (outside the session layer) for `scripts/loadtest.sh`.
    /// Refused in production.
    pub bench_routes: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            public_url: "http://localhost:8080".into(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(20),
            bench_routes: false,
        }
    }
}

/// The database.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…` (`AUTHKIT_DATABASE_URL`). May hold a password: never
    /// logged.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// Connections kept open.
    pub min_connections: u32,
    /// Longest wait for a pooled connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Statements slower than this are logged.
    #[serde(with = "humantime_serde")]
    pub slow_statement_threshold: Duration,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://authkit.db?mode=rwc".into(),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            slow_statement_threshold: Duration::from_millis(100),
        }
    }
}

/// A URL with any password replaced, for logs and `check-config`.
pub fn redact_url(url: &str) -> String {
    // A password may also travel as a query parameter (`?password=…`, sqlx and libpq accept it).
    let (url, query) = match url.split_once('?') {
        Some((base, query)) => {
            let redacted: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if ["password", "pass", "pwd", "sslpassword", "secret"]
                            .contains(&key.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            (base, format!("?{}", redacted.join("&")))
        }
        None => (url, String::new()),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url}{query}");
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{query}")
        }
        None => format!("{url}{query}"),
    }
}

/// Redis (sessions cache, limits and fan-out across instances; used from a later version).
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `AUTHKIT_REDIS_URL`.
    pub url: Option<String>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .finish()
    }
}

/// Session lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// `AUTHKIT_SESSION_IDLE_TIMEOUT` (default 30m).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// `AUTHKIT_SESSION_ABSOLUTE_TIMEOUT` (default 12h).
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// `AUTHKIT_SESSION_REAUTH_WINDOW` (default 5m).
    #[serde(with = "humantime_serde")]
    pub reauth_window: Duration,
    /// How long the in-process cache trusts a session before re-reading it.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        let d = authkit::session::SessionConfig::default();
        Self {
            idle_timeout: d.idle_timeout,
            absolute_timeout: d.absolute_timeout,
            reauth_window: d.reauth_window,
            cache_ttl: d.cache_ttl,
        }
    }
}

/// Secret provider settings (`AUTHKIT_SECRETS__<KEY>`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// `AUTHKIT_SECRETS_PROVIDER`: `local` (default in development), `env` (default
    /// elsewhere), `file`, `aws` or `vault`.
    pub provider: Option<SecretsProviderKind>,
    /// Where the `local` provider keeps its files.
    pub local_dir: PathBuf,
    /// How often every secret is read again (rotation without a restart; default 5m).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// `file`: the directory with one file per secret (default `/run/secrets`).
    pub file_dir: PathBuf,
    /// `aws`: the region (default: from the standard AWS chain).
    pub aws_region: Option<String>,
    /// `aws`: a custom endpoint (VPC endpoint, LocalStack, moto).
    pub aws_endpoint: Option<String>,
    /// `aws` and `vault`: secret `name` is read from `<prefix><name>` (default `authkit/`).
    pub prefix: String,
    /// `vault`: the server address.
    pub vault_addr: Option<String>,
    /// `vault`: the KV v2 mount (default `secret`).
    pub vault_mount: String,
    /// `vault`: the token (token auth). Bootstrap credential: from the environment or a
    /// file, never the secret provider itself.
    pub vault_token: Option<String>,
    /// `vault`: AppRole role id (AppRole auth, with `vault_secret_id`).
    pub vault_role_id: Option<String>,
    /// `vault`: AppRole secret id.
    pub vault_secret_id: Option<String>,
    /// `vault`: where AppRole is mounted (default `approle`).
    pub vault_approle_mount: String,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            provider: None,
            local_dir: PathBuf::from(".authkit/secrets"),
            refresh_interval: Duration::from_secs(300),
            file_dir: PathBuf::from("/run/secrets"),
            aws_region: None,
            aws_endpoint: None,
            prefix: "authkit/".into(),
            vault_addr: None,
            vault_mount: "secret".into(),
            vault_token: None,
            vault_role_id: None,
            vault_secret_id: None,
            vault_approle_mount: "approle".into(),
        }
    }
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("provider", &self.provider)
            .field("local_dir", &self.local_dir)
            .field("refresh_interval", &self.refresh_interval)
            .field("file_dir", &self.file_dir)
            .field("aws_region", &self.aws_region)
            .field("aws_endpoint", &self.aws_endpoint)
            .field("prefix", &self.prefix)
            .field("vault_addr", &self.vault_addr)
            .field("vault_mount", &self.vault_mount)
            .field("has_vault_token", &self.vault_token.is_some())
            .field("vault_role_id", &self.vault_role_id)
            .field("has_vault_secret_id", &self.vault_secret_id.is_some())
            .field("vault_approle_mount", &self.vault_approle_mount)
            .finish()
    }
}

/// Registration settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// `AUTHKIT_REGISTRATION_MODE`.
    pub mode: RegistrationMode,
}

/// Outgoing mail.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// `AUTHKIT_SMTP_URL`.
    pub url: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .finish()
    }
}

/// Mail content and the development mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// `AUTHKIT_DEV_MAILBOX_DIR`: where mails go as `.eml` files when no SMTP URL is set
    /// (development only).
    pub dev_mailbox_dir: PathBuf,
    /// `AUTHKIT_MAIL__FROM`: the sender, e.g. `Acme <no-reply@acme.example>`.
    pub from: String,
    /// `AUTHKIT_MAIL__PRODUCT_NAME`: the name mails sign with.
    pub product_name: String,
    /// `AUTHKIT_MAIL__NOTIFY_NEW_SIGN_IN`: mail a notice on a sign-in from a new browser.
    pub notify_new_sign_in: bool,
    /// `AUTHKIT_MAIL__NOTIFY_PASSWORD_CHANGED`: mail a notice when the password changes.
    pub notify_password_changed: bool,
    /// `AUTHKIT_MAIL__VERIFICATION_TTL`: lifetime of verification links.
    #[serde(with = "humantime_serde")]
    pub verification_ttl: Duration,
    /// `AUTHKIT_MAIL__RESET_TTL`: lifetime of password-reset links.
    #[serde(with = "humantime_serde")]
    pub reset_ttl: Duration,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            dev_mailbox_dir: PathBuf::from(".authkit/mail"),
            from: "authkit <no-reply@localhost>".into(),
            product_name: "authkit".into(),
            notify_new_sign_in: true,
            notify_password_changed: true,
            verification_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// Background jobs (mail delivery, cleanup, audit retention).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// `AUTHKIT_JOBS__ENABLED`: run the workers in this instance. Off on API-only instances:
    /// jobs are still queued and another instance delivers them.
    pub enabled: bool,
    /// `AUTHKIT_JOBS__MAIL_MAX_ATTEMPTS`: attempts before a mail goes to the dead letters.
    pub mail_max_attempts: u32,
    /// `AUTHKIT_JOBS__MAIL_RETRY_BASE`: the first retry delay, doubled per attempt.
    #[serde(with = "humantime_serde")]
    pub mail_retry_base: Duration,
    /// `AUTHKIT_JOBS__MAIL_RETRY_MAX`: the longest retry delay.
    #[serde(with = "humantime_serde")]
    pub mail_retry_max: Duration,
    /// `AUTHKIT_JOBS__CLEANUP_INTERVAL`: how often expired sessions and tokens are deleted.
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// `AUTHKIT_JOBS__POLL_INTERVAL`: how often an idle worker looks for due jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mail_max_attempts: 8,
            mail_retry_base: Duration::from_secs(30),
            mail_retry_max: Duration::from_secs(3600),
            cleanup_interval: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Rate limits. The per-account lockout is always on; only the request quotas can be turned
/// off, for load tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// `AUTHKIT_RATELIMIT__ENABLED`: the per-address and per-account request quotas (refused
    /// off in production).
    pub enabled: bool,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Two-factor authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaSettings {
    /// `AUTHKIT_MFA__REQUIRED`: every user must use a second factor; users without one can
    /// use only the auth endpoints (to enrol) until they do.
    pub required: bool,
    /// `AUTHKIT_MFA__ISSUER`: the name authenticator apps show (default: `mail.product_name`).
    pub issuer: Option<String>,
    /// `AUTHKIT_MFA__ALGORITHM`: `sha1` (default, what every authenticator app supports),
    /// `sha256` or `sha512`, for new enrolments.
    pub algorithm: String,
    /// `AUTHKIT_MFA__DIGITS`: code length of new enrolments, 6 (default) to 8.
    pub digits: u8,
    /// `AUTHKIT_MFA__ENROLMENT_TTL`: how long a started enrolment can be confirmed.
    #[serde(with = "humantime_serde")]
    pub enrolment_ttl: Duration,
}

/// One OAuth provider (`AUTHKIT_OAUTH__<NAME>__*`; `<NAME>` in lower case is its path
/// segment: `/api/v1/auth/oauth/<name>`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthProviderSettings {
    /// `__KIND`: `google`, `github`, `oidc`, `linkedin` or `twitter`.
    pub kind: String,
    /// `__ISSUER`: the issuer URL (required for `oidc`; overrides the preset's otherwise).
    pub issuer: Option<String>,
    /// `__CLIENT_ID`.
    #[serde(deserialize_with = "text_or_number")]
    pub client_id: String,
    /// `__CLIENT_SECRET`: development only. Elsewhere the secret is read from the secret
    /// provider as `oauth_<name>_client_secret` (e.g. `AUTHKIT_SECRET_OAUTH_GOOGLE_CLIENT_SECRET`
    /// with the `env` provider).
    pub client_secret: Option<String>,
    /// `__SCOPES`: space-separated; default: the preset's.
    pub scopes: Option<String>,
    /// `__AUTO_LINK`: sign in to an existing account with the same address when the provider
    /// and the account both verified it (default off; see docs/security.md).
    pub auto_link: bool,
    /// `__SIGN_UP`: a first sign-in with an unknown provider account creates a user (with the
    /// provider's verified address; default on).
    pub sign_up: Option<bool>,
    /// `__TRUST_MFA_CLAIMS`: the provider's `amr`/`acr` showing MFA replace authkit's second
    /// factor for users with MFA (default off).
    pub trust_mfa_claims: bool,
    /// `__AUTHORIZATION_URL`, `__TOKEN_URL`, `__API_URL`: endpoints of `github`/`twitter`
    /// (GitHub Enterprise, test stand-ins).
    pub authorization_url: Option<String>,
    /// See `authorization_url`.
    pub token_url: Option<String>,
    /// See `authorization_url`.
    pub api_url: Option<String>,
}

/// A string setting whose value may look like a number in the environment (client ids such as
/// `12345`): the loader parses values, so take numbers back as their text.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Text(s) => s,
        Raw::Unsigned(n) => n.to_string(),
        Raw::Signed(n) => n.to_string(),
    })
}

impl std::fmt::Debug for OAuthProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProviderSettings")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("has_client_secret", &self.client_secret.is_some())
            .field("scopes", &self.scopes)
            .field("auto_link", &self.auto_link)
            .field("sign_up", &self.sign_up)
            .field("trust_mfa_claims", &self.trust_mfa_claims)
            .finish_non_exhaustive()
    }
}

impl Default for MfaSettings {
    fn default() -> Self {
        Self {
            required: false,
            issuer: None,
            algorithm: "sha1".into(),
            digits: 6,
            enrolment_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Audit trail retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `AUTHKIT_AUDIT__RETENTION`: events older than this are archived and deleted (`0s`
    /// keeps them forever).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// `AUTHKIT_AUDIT__ARCHIVE_DIR`: where archived events go, one JSON Lines file per day.
    pub archive_dir: PathBuf,
    /// `AUTHKIT_AUDIT__RETENTION_INTERVAL`: how often the retention job runs.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(365 * 24 * 3600),
            archive_dir: PathBuf::from(".authkit/audit-archive"),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

/// Password hashing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// argon2id memory in KiB (≥ OWASP's 19456 at 2 iterations).
    pub memory_kib: u32,
    /// argon2id iterations.
    pub iterations: u32,
    /// argon2id lanes.
    pub parallelism: u32,
    /// Concurrent hashes (0: one per core).
    pub max_concurrent: usize,
    /// Fewest characters (code points) of a new password.
    pub min_length: usize,
    /// Most characters of any password (longer input is refused, never truncated).
    pub max_length: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        let p = authkit::password::HashParams::default();
        let policy = authkit::password::PasswordPolicy::default();
        Self {
            memory_kib: p.m_cost_kib,
            iterations: p.t_cost,
            parallelism: p.p_cost,
            max_concurrent: 0,
            min_length: policy.min_chars,
            max_length: policy.max_chars,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `AUTHKIT_LOG_FORMAT`: `pretty` or `json`.
    pub format: LogFormat,
    /// `AUTHKIT_LOG`: a tracing filter such as `info,authkit=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Short aliases of MISSION.md §3 → their `section.key`.
const ALIASES: &[(&str, &str)] = &[
    ("PROFILE", "profile"),
    ("LISTEN_ADDR", "server.listen_addr"),
    ("INTERNAL_ADDR", "server.internal_addr"),
    ("PUBLIC_URL", "server.public_url"),
    ("ALLOWED_ORIGINS", "server.allowed_origins"),
    ("TRUSTED_PROXIES", "server.trusted_proxies"),
    ("BENCH_ROUTES", "server.bench_routes"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SESSION_IDLE_TIMEOUT", "session.idle_timeout"),
    ("SESSION_ABSOLUTE_TIMEOUT", "session.absolute_timeout"),
    ("SESSION_REAUTH_WINDOW", "session.reauth_window"),
    ("SMTP_URL", "smtp.url"),
    ("DEV_MAILBOX_DIR", "mail.dev_mailbox_dir"),
    ("SECRETS_PROVIDER", "secrets.provider"),
    ("REGISTRATION_MODE", "registration.mode"),
    ("LOG", "log.filter"),
    ("LOG_FORMAT", "log.format"),
];

/// Every environment variable the server reads, with its meaning (for `--help`).
pub fn documented_variables() -> String {
    let mut out = String::from(
        "Every setting is AUTHKIT_<SECTION>__<KEY> (e.g. AUTHKIT_DATABASE__MAX_CONNECTIONS) or one of these aliases:\n",
    );
    for (alias, key) in ALIASES {
        out.push_str(&format!("  AUTHKIT_{alias:<26} {key}\n"));
    }
    out.push_str("  AUTHKIT_CONFIG_FILE          a TOML file with the same settings\n");
    out.push_str("  AUTHKIT_SECRET_<NAME>        secrets of the env provider: SESSION_KEY, ENCRYPTION_KEY, PEPPER (kid:base64key,…),\n");
    out.push_str("                               optional DATABASE_URL or DATABASE_PASSWORD, SMTP_PASSWORD, OAUTH_<NAME>_CLIENT_SECRET\n");
    out
}

/// Whether `url`'s host is `localhost` or a loopback address.
fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

/// Variables with the prefix that are not settings.
fn is_not_a_setting(rest: &str) -> bool {
    rest.starts_with("SECRET_") || rest == "CONFIG_FILE" || rest.starts_with("TEST_")
}

/// A configuration that failed to load or validate. Names the setting, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be merged or parsed.
    #[error("configuration error: {0}")]
    Load(#[from] Box<figment::Error>),
    /// An environment variable is not a known setting.
    #[error("unknown setting {0}: see `authkit-server --help` for the list")]
    UnknownVariable(String),
    /// A setting is invalid.
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        /// Dotted setting name.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

impl Config {
    /// Loads from the process environment (and the file it names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(std::env::vars())
    }

    /// Loads from the given variables (tests pass their own instead of mutating the process
    /// environment).
    pub fn load(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("AUTHKIT_"))
            .collect();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = vars.get("AUTHKIT_CONFIG_FILE") {
            figment = figment.merge(Toml::file_exact(file));
        }
        for (name, value) in &vars {
            let Some(rest) = name.strip_prefix("AUTHKIT_") else {
                continue;
            };
            if is_not_a_setting(rest) {
                continue;
            }
            let key = match rest.split_once("__") {
                Some(_) => rest.replace("__", ".").to_ascii_lowercase(),
                None => ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == rest)
                    .map(|(_, key)| (*key).to_owned())
                    .ok_or_else(|| ConfigError::UnknownVariable(name.clone()))?,
            };
            let parsed: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            // Keep strings that look like numbers or lists as written when the setting is a
            // string (e.g. a port-less host); figment converts where the target type needs it.
            figment = figment.merge(Serialized::global(&key, parsed));
        }
        figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks every rule and derives the settings the server runs with.
    pub fn validate(&self) -> Result<Validated, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let production = self.profile == Profile::Production;

        let public = match parse_public_url(&self.server.public_url) {
            Ok(origin) => Some(origin),
            Err(e) => {
                errors.push(invalid("server.public_url", e));
                None
            }
        };
        if production && public.as_ref().is_some_and(|o| !o.is_https()) {
            errors.push(invalid(
                "server.public_url",
                "production requires an https:// public URL",
            ));
        }

        let mut allowed = Vec::new();
        for raw in &self.server.allowed_origins {
            if raw.contains('*') {
                errors.push(invalid(
                    "server.allowed_origins",
                    "wildcards are refused: list each origin",
                ));
                continue;
            }
            match Origin::parse(raw) {
                Ok(o) if production && !o.is_https() => errors.push(invalid(
                    "server.allowed_origins",
                    format!("`{o}` is not https, refused in production"),
                )),
                Ok(o) => allowed.push(o),
                Err(e) => errors.push(invalid("server.allowed_origins", e.to_string())),
            }
        }
        if let Some(public) = public.as_ref().filter(|p| !allowed.contains(*p)) {
            allowed.push(public.clone());
        }

        let mut proxies = Vec::new();
        for raw in &self.server.trusted_proxies {
            match raw
                .parse::<IpNet>()
                .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
            {
                Ok(net) => proxies.push(net),
                Err(_) => errors.push(invalid(
                    "server.trusted_proxies",
                    format!("`{raw}` is not a CIDR"),
                )),
            }
        }

        if authkit::store::DatabaseKind::from_url(&self.database.url).is_err() {
            errors.push(invalid(
                "database.url",
                "expected a sqlite:// or postgres:// URL",
            ));
        }
        if self.database.max_connections == 0 {
            errors.push(invalid("database.max_connections", "must be at least 1"));
        }

        let s = &self.session;
        if s.idle_timeout < Duration::from_secs(1) {
            errors.push(invalid("session.idle_timeout", "must be at least 1s"));
        }
        if s.absolute_timeout < s.idle_timeout {
            errors.push(invalid(
                "session.absolute_timeout",
                "must not be shorter than the idle timeout",
            ));
        }
        if s.cache_ttl > Duration::from_secs(60) {
            errors.push(invalid(
                "session.cache_ttl",
                "at most 60s: it bounds how long another instance's revocation takes to apply here",
            ));
        }
        if s.reauth_window < Duration::from_secs(1) {
            errors.push(invalid("session.reauth_window", "must be at least 1s"));
        }

        let provider = self.secrets.provider.unwrap_or(match self.profile {
            Profile::Development => SecretsProviderKind::Local,
            Profile::Staging | Profile::Production => SecretsProviderKind::Env,
        });
        if production && provider == SecretsProviderKind::Local {
            errors.push(invalid(
                "secrets.provider",
                "the `local` provider generates development keys; production needs real secrets (e.g. `env`)",
            ));
        }
        if self.secrets.refresh_interval < Duration::from_secs(1) {
            errors.push(invalid("secrets.refresh_interval", "must be at least 1s"));
        }
        match provider {
            SecretsProviderKind::Aws if !cfg!(feature = "aws") => errors.push(invalid(
                "secrets.provider",
                "this build has no `aws` provider (built without the `aws` feature)",
            )),
            SecretsProviderKind::Vault if !cfg!(feature = "vault") => errors.push(invalid(
                "secrets.provider",
                "this build has no `vault` provider (built without the `vault` feature)",
            )),
            SecretsProviderKind::Vault => {
                let v = &self.secrets;
                if v.vault_addr.is_none() {
                    errors.push(invalid(
                        "secrets.vault_addr",
                        "the `vault` provider needs AUTHKIT_SECRETS__VAULT_ADDR",
                    ));
                }
                match (&v.vault_token, &v.vault_role_id, &v.vault_secret_id) {
                    (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                    _ => errors.push(invalid(
                        "secrets.vault_token",
                        "set either AUTHKIT_SECRETS__VAULT_TOKEN or both AUTHKIT_SECRETS__VAULT_ROLE_ID and AUTHKIT_SECRETS__VAULT_SECRET_ID",
                    )),
                }
                let scheme = v
                    .vault_addr
                    .as_deref()
                    .and_then(|a| url::Url::parse(a.trim()).ok())
                    .map(|u| u.scheme().to_owned());
                if production
                    && scheme.as_deref() != Some("https")
                    && !v.vault_addr.as_deref().is_some_and(is_loopback_url)
                {
                    errors.push(invalid(
                        "secrets.vault_addr",
                        "production needs an https:// Vault address (plain http only on loopback)",
                    ));
                }
            }
            _ => {}
        }

        let mfa = self.mfa_config();
        if let Err(e) = &mfa {
            errors.push(invalid("mfa", e.clone()));
        }
        if self.mfa.enrolment_ttl < Duration::from_secs(60) {
            errors.push(invalid("mfa.enrolment_ttl", "must be at least 1m"));
        }

        let oauth = self.oauth_config();
        if let Err((setting, reason)) = &oauth {
            errors.push(invalid("oauth", format!("`{setting}`: {reason}")));
        }

        if production && !self.ratelimit.enabled {
            errors.push(invalid(
                "ratelimit.enabled",
                "request quotas cannot be turned off in production",
            ));
        }
        if !(1..=100).contains(&self.jobs.mail_max_attempts) {
            errors.push(invalid(
                "jobs.mail_max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.jobs.mail_retry_max < self.jobs.mail_retry_base {
            errors.push(invalid(
                "jobs.mail_retry_max",
                "must not be below jobs.mail_retry_base",
            ));
        }
        if self.jobs.poll_interval < Duration::from_millis(10) {
            errors.push(invalid("jobs.poll_interval", "must be at least 10ms"));
        }
        if self.jobs.cleanup_interval.as_secs() == 0 {
            errors.push(invalid("jobs.cleanup_interval", "must be at least 1s"));
        }
        if self.audit.retention_interval.as_secs() == 0 {
            errors.push(invalid("audit.retention_interval", "must be at least 1s"));
        }
        if self.mail.verification_ttl.as_secs() == 0 {
            errors.push(invalid("mail.verification_ttl", "must be at least 1s"));
        }
        if self.mail.reset_ttl.as_secs() == 0 {
            errors.push(invalid("mail.reset_ttl", "must be at least 1s"));
        }
        if let Some(url) = &self.smtp.url
            && let Err(e) = authkit::mail::SmtpMailer::from_url(url, &self.mail.from)
        {
            errors.push(invalid("smtp.url", e.to_string()));
        }
        if self.mail.reset_ttl > Duration::from_secs(24 * 3600) {
            errors.push(invalid(
                "mail.reset_ttl",
                "a reset link must expire within a day (SECURITY.md #21)",
            ));
        }
        if production && self.smtp.url.is_none() {
            errors.push(invalid("smtp.url", "production requires AUTHKIT_SMTP_URL"));
        }
        if production && self.server.bench_routes {
            errors.push(invalid(
                "server.bench_routes",
                "benchmark routes are refused in production",
            ));
        }

        let hash = authkit::password::HashParams {
            m_cost_kib: self.password.memory_kib,
            t_cost: self.password.iterations,
            p_cost: self.password.parallelism,
        };
        if let Err(e) = hash.validate() {
            errors.push(invalid("password.memory_kib", e.to_string()));
        }

        if self.password.min_length < 8 {
            errors.push(invalid(
                "password.min_length",
                "must be at least 8 (NIST SP 800-63B)",
            ));
        }
        if self.password.max_length < 64 || self.password.max_length > 1024 {
            errors.push(invalid(
                "password.max_length",
                "must be between 64 and 1024",
            ));
        }
        if self.password.max_length < self.password.min_length {
            errors.push(invalid(
                "password.max_length",
                "must not be below password.min_length",
            ));
        }
        let mut warnings = Vec::new();
        // `?tls=starttls` / `?tls=required` make STARTTLS mandatory: only plain smtp:// without
        // it sends mail (reset links) readable on the network.
        let starttls = self
            .smtp
            .url
            .as_deref()
            .is_some_and(|u| u.contains("tls=starttls") || u.contains("tls=required"));
        if let Some(smtp) = self.smtp.url.as_ref().filter(|_| !starttls) {
            let host = smtp
                .strip_prefix("smtp://")
                .map(|rest| rest.rsplit('@').next().unwrap_or(rest))
                .map(|hostport| hostport.split(['/', '?']).next().unwrap_or(hostport));
            if let Some(host) = host {
                // `host`, `host:port`, `[v6]` or `[v6]:port`.
                let name = match host.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or(v6),
                    None => host.rsplit_once(':').map_or(host, |(h, _)| h),
                };
                let loopback = name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback && self.profile != Profile::Development {
                    warnings.push(format!(
                        "smtp.url uses plain smtp:// to `{name}`: mail (reset links) can be read on the network; prefer smtps:// or STARTTLS"
                    ));
                }
            }
        }

        let (Some(public), Ok(mfa), Ok(oauth)) = (public, mfa, oauth) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let secure_cookies = production || public.is_https();
        Ok(Validated {
            config: self.clone(),
            public_origin: public,
            allowed_origins: allowed,
            trusted_proxies: proxies,
            secrets_provider: provider,
            secure_cookies,
            hash_params: hash,
            mfa,
            oauth,
            warnings,
        })
    }
}

impl Config {
    /// The library's MFA settings from `mfa.*` (the issuer falls back to the product name).
    pub fn mfa_config(&self) -> Result<authkit::mfa::MfaConfig, String> {
        let mut config = authkit::mfa::MfaConfig::default();
        config.required = self.mfa.required;
        config.enrolment_ttl = self.mfa.enrolment_ttl;
        config.totp.algorithm = self
            .mfa
            .algorithm
            .parse()
            .map_err(|_| "`mfa.algorithm` must be sha1, sha256 or sha512".to_owned())?;
        config.totp.digits = self.mfa.digits;
        config.totp.issuer = self
            .mfa
            .issuer
            .clone()
            .unwrap_or_else(|| self.mail.product_name.clone());
        config
            .totp
            .validate()
            .map_err(|e| format!("invalid TOTP settings: {e}"))?;
        Ok(config)
    }
}

impl Config {
    /// The library's OAuth settings from `oauth.<name>.*`; `Err((setting, reason))`.
    pub fn oauth_config(&self) -> Result<Option<authkit::oauth::OAuthConfig>, (String, String)> {
        use authkit::oauth::{ClientSecretSource, OAuthConfig, Provider, ProviderKind};
        if self.oauth.is_empty() {
            return Ok(None);
        }
        let public = url::Url::parse(&self.server.public_url)
            .map_err(|_| ("server.public_url".to_owned(), "not a URL".to_owned()))?;
        let mut config = OAuthConfig::new(public);
        for (name, p) in &self.oauth {
            let key = |field: &str| format!("oauth.{name}.{field}");
            let kind = ProviderKind::parse(&p.kind).ok_or_else(|| {
                (
                    key("kind"),
                    "must be google, github, oidc, linkedin or twitter".to_owned(),
                )
            })?;
            let secret = match &p.client_secret {
                Some(_) if self.profile == Profile::Production => {
                    return Err((
                        key("client_secret"),
                        format!(
                            "not in production: store it in the secret provider as `oauth_{}_client_secret`",
                            name.replace('-', "_")
                        ),
                    ));
                }
                Some(value) => ClientSecretSource::Value(value.clone().into()),
                None => ClientSecretSource::Named(format!(
                    "oauth_{}_client_secret",
                    name.replace('-', "_")
                )),
            };
            let mut provider = match kind {
                ProviderKind::Google => Provider::google(p.client_id.clone(), secret),
                ProviderKind::Github => Provider::github(p.client_id.clone(), secret),
                ProviderKind::Linkedin => Provider::linkedin(p.client_id.clone(), secret),
                ProviderKind::Twitter => Provider::twitter(p.client_id.clone(), secret),
                _ => {
                    let issuer = p.issuer.clone().ok_or_else(|| {
                        (key("issuer"), "required for an oidc provider".to_owned())
                    })?;
                    Provider::oidc(name.clone(), issuer, p.client_id.clone(), secret)
                }
            }
            .named(name.clone())
            .auto_link_verified_email(p.auto_link)
            .allow_sign_up(p.sign_up.unwrap_or(true))
            .trust_mfa_claims(p.trust_mfa_claims);
            if let Some(issuer) = &p.issuer {
                provider = provider.issuer(issuer.clone());
            }
            if let Some(scopes) = &p.scopes {
                provider = provider.scopes(scopes.split_whitespace());
            }
            let endpoint = |field: &str,
                            value: &Option<String>|
             -> Result<Option<url::Url>, (String, String)> {
                value
                    .as_deref()
                    .map(|v| url::Url::parse(v).map_err(|_| (key(field), "not a URL".to_owned())))
                    .transpose()
            };
            if let Some(u) = endpoint("authorization_url", &p.authorization_url)? {
                provider.authorization_url = Some(u);
            }
            if let Some(u) = endpoint("token_url", &p.token_url)? {
                provider.token_url = Some(u);
            }
            if let Some(u) = endpoint("api_url", &p.api_url)? {
                provider.api_url = Some(u);
            }
            provider
                .check()
                .map_err(|reason| (format!("oauth.{name}"), reason.to_owned()))?;
            config = config.provider(provider);
        }
        Ok(Some(config))
    }
}

fn parse_public_url(url: &str) -> Result<Origin, String> {
    Origin::of_url(url).ok_or_else(|| format!("`{url}` is not an http(s):// URL"))
}

/// A configuration that passed validation, with derived values.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The raw settings.
    pub config: Config,
    /// Origin of `server.public_url`.
    pub public_origin: Origin,
    /// Allowed origins including the public one.
    pub allowed_origins: Vec<Origin>,
    /// Trusted proxy networks.
    pub trusted_proxies: Vec<IpNet>,
    /// The provider in effect.
    pub secrets_provider: SecretsProviderKind,
    /// `Secure` + `__Host-` cookies.
    pub secure_cookies: bool,
    /// argon2id parameters.
    pub hash_params: authkit::password::HashParams,
    /// MFA settings.
    pub mfa: authkit::mfa::MfaConfig,
    /// OAuth providers (none configured: `None`).
    pub oauth: Option<authkit::oauth::OAuthConfig>,
    /// Accepted but risky settings, logged at start.
    pub warnings: Vec<String>,
}

impl Validated {
    /// The library's password policy.
    pub fn password_policy(&self) -> authkit::password::PasswordPolicy {
        authkit::password::PasswordPolicy {
            min_chars: self.config.password.min_length,
            max_chars: self.config.password.max_length,
            ..authkit::password::PasswordPolicy::default()
        }
    }
}

impl Validated {
    /// The library's session settings.
    pub fn session_config(&self) -> authkit::session::SessionConfig {
        let s = &self.config.session;
        authkit::session::SessionConfig {
            idle_timeout: s.idle_timeout,
            absolute_timeout: s.absolute_timeout,
            reauth_window: s.reauth_window,
            cache_ttl: s.cache_ttl,
            cookie: authkit::session::CookieConfig {
                secure: self.secure_cookies,
                ..authkit::session::CookieConfig::default()
            },
            ..authkit::session::SessionConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_run_in_development_on_sqlite() {
        let c = Config::load(vars(&[])).unwrap();
        assert_eq!(c.profile, Profile::Development);
        assert_eq!(c.database.url, "sqlite://authkit.db?mode=rwc");
        let v = c.validate().unwrap();
        assert_eq!(v.secrets_provider, SecretsProviderKind::Local);
        assert!(!v.secure_cookies);
        assert_eq!(
            v.allowed_origins,
            vec![Origin::parse("http://localhost:8080").unwrap()]
        );
    }

    #[test]
    fn aliases_and_sections_both_work() {
        let c = Config::load(vars(&[
            ("AUTHKIT_SESSION_IDLE_TIMEOUT", "10m"),
            ("AUTHKIT_SESSION__ABSOLUTE_TIMEOUT", "2h"),
            (
                "AUTHKIT_ALLOWED_ORIGINS",
                "http://localhost:5173, https://app.example.org",
            ),
            ("AUTHKIT_DATABASE__MAX_CONNECTIONS", "3"),
            ("AUTHKIT_SECRET_SESSION_KEY", "ignored:here"),
        ]))
        .unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(7200));
        assert_eq!(c.server.allowed_origins.len(), 2);
        assert_eq!(c.database.max_connections, 3);
    }

    #[test]
    fn errors_name_the_setting() {
        let err = Config::load(vars(&[("AUTHKIT_SESSION_IDLE_TIMEOUT", "soon")])).unwrap_err();
        assert!(err.to_string().contains("idle_timeout"), "{err}");
        let err = Config::load(vars(&[("AUTHKIT_NOPE", "1")])).unwrap_err();
        assert!(err.to_string().contains("AUTHKIT_NOPE"), "{err}");
    }

    #[test]
    fn production_refuses_insecure_settings() {
        let c = Config::load(vars(&[
            ("AUTHKIT_PROFILE", "production"),
            ("AUTHKIT_PUBLIC_URL", "http://auth.example.org"),
            ("AUTHKIT_ALLOWED_ORIGINS", "*"),
            ("AUTHKIT_SECRETS_PROVIDER", "local"),
        ]))
        .unwrap();
        let errors: Vec<String> = c
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let all = errors.join("\n");
        for setting in [
            "server.public_url",
            "server.allowed_origins",
            "secrets.provider",
            "smtp.url",
        ] {
            assert!(all.contains(setting), "{setting} missing in:\n{all}");
        }
    }

    #[test]
    fn urls_are_logged_without_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db/auth?sslmode=require"),
            "postgres://app:***@db/auth?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/auth?user=app&password=s3cret&sslmode=require"),
            "postgres://db/auth?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite://authkit.db?mode=rwc"),
            "sqlite://authkit.db?mode=rwc"
        );
    }

    #[test]
    fn vault_settings_are_checked() {
        let errors = |extra: &[(&'static str, &'static str)]| {
            let mut v = vec![
                ("AUTHKIT_PROFILE", "production"),
                ("AUTHKIT_PUBLIC_URL", "https://auth.example.org"),
                ("AUTHKIT_SMTP_URL", "smtps://mail.example.org"),
                ("AUTHKIT_SECRETS_PROVIDER", "vault"),
            ];
            v.extend_from_slice(extra);
            match Config::load(vars(&v)).unwrap().validate() {
                Ok(_) => String::new(),
                Err(e) => e
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        };
        let token = ("AUTHKIT_SECRETS__VAULT_TOKEN", "t");
        assert!(errors(&[token]).contains("secrets.vault_addr"));
        for plain in ["http://vault.internal:8200", "HTTP://vault.internal:8200"] {
            let all = errors(&[token, ("AUTHKIT_SECRETS__VAULT_ADDR", plain)]);
            assert!(all.contains("https://"), "{plain}: {all}");
        }
        assert_eq!(
            errors(&[
                token,
                ("AUTHKIT_SECRETS__VAULT_ADDR", "http://127.0.0.1:8200")
            ]),
            ""
        );
        assert_eq!(
            errors(&[
                token,
                ("AUTHKIT_SECRETS__VAULT_ADDR", "https://vault.internal")
            ]),
            ""
        );
        // Exactly one way to log in.
        let addr = ("AUTHKIT_SECRETS__VAULT_ADDR", "https://vault.internal");
        assert!(errors(&[addr]).contains("secrets.vault_token"));
        assert!(
            errors(&[addr, token, ("AUTHKIT_SECRETS__VAULT_ROLE_ID", "r")])
                .contains("secrets.vault_token")
        );
        assert_eq!(
            errors(&[
                addr,
                ("AUTHKIT_SECRETS__VAULT_ROLE_ID", "r"),
                ("AUTHKIT_SECRETS__VAULT_SECRET_ID", "s"),
            ]),
            ""
        );
        // The bootstrap credentials never show in the configuration's Debug output.
        let c = Config::load(vars(&[
            ("AUTHKIT_SECRETS__VAULT_TOKEN", "hvs-do-not-print"),
            ("AUTHKIT_SECRETS__VAULT_SECRET_ID", "sid-do-not-print"),
        ]))
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("do-not-print"), "{debug}");
    }

    #[test]
    fn production_sets_secure_host_cookies() {
        let c = Config::load(vars(&[
            ("AUTHKIT_PROFILE", "production"),
            ("AUTHKIT_PUBLIC_URL", "https://auth.example.org"),
            ("AUTHKIT_SMTP_URL", "smtp://mail.example.org:587"),
        ]))
        .unwrap();
        let v = c.validate().unwrap();
        assert!(v.secure_cookies);
        assert_eq!(v.secrets_provider, SecretsProviderKind::Env);
        assert_eq!(
            v.session_config().cookie.full_name(),
            "__Host-authkit_session"
        );
    }

    #[test]
    fn plain_smtp_to_a_remote_host_is_a_warning() {
        let base = [
            ("AUTHKIT_PROFILE", "production"),
            ("AUTHKIT_PUBLIC_URL", "https://auth.example.org"),
        ];
        let with = |smtp: &'static str| {
            let mut v = vars(&base);
            v.push(("AUTHKIT_SMTP_URL".into(), smtp.into()));
            Config::load(v).unwrap().validate().unwrap().warnings
        };
        assert_eq!(with("smtp://mail.example.org:25").len(), 1);
        assert!(with("smtp://127.0.0.1:2525").is_empty());
        assert!(with("smtp://[::1]").is_empty());
        assert!(with("smtp://[::1]:25").is_empty());
        assert_eq!(with("smtp://[2001:db8::1]:25").len(), 1);
        assert!(with("smtps://mail.example.org:465").is_empty());
    }

    #[test]
    fn password_lengths_are_configurable_within_nist_bounds() {
        let v = Config::load(vars(&[("AUTHKIT_PASSWORD__MIN_LENGTH", "15")]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.password_policy().min_chars, 15);
        let bad = Config::load(vars(&[("AUTHKIT_PASSWORD__MIN_LENGTH", "6")]))
            .unwrap()
            .validate();
        assert!(bad.is_err());
    }

    #[test]
    fn oauth_providers_come_from_named_variables() {
        let v = Config::load(vars(&[
            ("AUTHKIT_OAUTH__CORP__KIND", "oidc"),
            ("AUTHKIT_OAUTH__CORP__ISSUER", "https://login.corp.example"),
            ("AUTHKIT_OAUTH__CORP__CLIENT_ID", "corp-client"),
            ("AUTHKIT_OAUTH__CORP__CLIENT_SECRET", "dev-secret"),
            ("AUTHKIT_OAUTH__CORP__SCOPES", "openid email"),
            ("AUTHKIT_OAUTH__CORP__AUTO_LINK", "true"),
            ("AUTHKIT_OAUTH__GITHUB__KIND", "github"),
            ("AUTHKIT_OAUTH__GITHUB__CLIENT_ID", "12345"),
        ]))
        .unwrap()
        .validate()
        .unwrap();
        let oauth = v.oauth.clone().unwrap();
        assert_eq!(
            oauth.redirect_uri("corp"),
            "http://localhost:8080/api/v1/auth/oauth/corp/callback"
        );
        let corp = oauth.providers.iter().find(|p| p.name == "corp").unwrap();
        assert_eq!(corp.kind, authkit::oauth::ProviderKind::Oidc);
        assert_eq!(corp.issuer.as_deref(), Some("https://login.corp.example"));
        assert_eq!(corp.scopes, ["openid", "email"]);
        assert!(corp.auto_link_verified_email && !corp.trust_mfa_claims);
        assert!(matches!(
            corp.client_secret,
            authkit::oauth::ClientSecretSource::Value(_)
        ));
        let gh = oauth.providers.iter().find(|p| p.name == "github").unwrap();
        assert_eq!(gh.client_id, "12345", "a numeric-looking id stays text");
        // Without a value, the secret is read from the secret provider by name.
        assert!(matches!(
            &gh.client_secret,
            authkit::oauth::ClientSecretSource::Named(n) if n == "oauth_github_client_secret"
        ));
        // The debug output never shows a client secret.
        assert!(!format!("{v:?}").contains("dev-secret"));
        assert!(!format!("{oauth:?}").contains("dev-secret"));

        for (pairs, needle) in [
            (vec![("AUTHKIT_OAUTH__X__KIND", "myspace")], "oauth.x.kind"),
            (
                vec![
                    ("AUTHKIT_OAUTH__X__KIND", "oidc"),
                    ("AUTHKIT_OAUTH__X__CLIENT_ID", "c"),
                ],
                "oauth.x.issuer",
            ),
            (
                vec![
                    ("AUTHKIT_OAUTH__X__KIND", "oidc"),
                    ("AUTHKIT_OAUTH__X__CLIENT_ID", "c"),
                    ("AUTHKIT_OAUTH__X__ISSUER", "http://idp.example.com"),
                ],
                "https",
            ),
            (
                vec![
                    ("AUTHKIT_PROFILE", "production"),
                    ("AUTHKIT_OAUTH__X__KIND", "google"),
                    ("AUTHKIT_OAUTH__X__CLIENT_ID", "c"),
                    ("AUTHKIT_OAUTH__X__CLIENT_SECRET", "s3cr3t-value"),
                ],
                "oauth_x_client_secret",
            ),
            (
                vec![
                    ("AUTHKIT_OAUTH__ACCOUNTS__KIND", "google"),
                    ("AUTHKIT_OAUTH__ACCOUNTS__CLIENT_ID", "c"),
                ],
                "reserved",
            ),
        ] {
            let errors = Config::load(vars(&pairs)).unwrap().validate().unwrap_err();
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            assert!(text.contains(needle), "{pairs:?}: {text}");
            assert!(!text.contains("s3cr3t-value"), "{text}");
        }
    }

    #[test]
    fn mfa_settings_reach_the_library_and_are_checked() {
        let v = Config::load(vars(&[
            ("AUTHKIT_MFA__REQUIRED", "true"),
            ("AUTHKIT_MFA__ALGORITHM", "SHA256"),
            ("AUTHKIT_MFA__DIGITS", "8"),
            ("AUTHKIT_MAIL__PRODUCT_NAME", "Acme"),
        ]))
        .unwrap()
        .validate()
        .unwrap();
        assert!(v.mfa.required);
        assert_eq!(v.mfa.totp.algorithm, authkit::mfa::TotpAlgorithm::Sha256);
        assert_eq!(v.mfa.totp.digits, 8);
        assert_eq!(
            v.mfa.totp.issuer, "Acme",
            "the issuer defaults to the product name"
        );
        for (key, value) in [
            ("AUTHKIT_MFA__ALGORITHM", "md5"),
            ("AUTHKIT_MFA__DIGITS", "9"),
            ("AUTHKIT_MFA__DIGITS", "5"),
            ("AUTHKIT_MFA__ISSUER", "Acme:Corp"),
            ("AUTHKIT_MFA__ENROLMENT_TTL", "10s"),
        ] {
            let errors = Config::load(vars(&[(key, value)]))
                .unwrap()
                .validate()
                .unwrap_err();
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            assert!(text.contains("mfa"), "{key}={value}: {text}");
        }
    }

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://authkit.db"), "sqlite://authkit.db");
        let c = Config::load(vars(&[(
            "AUTHKIT_DATABASE_URL",
            "postgres://u:hunter2@h/d",
        )]))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
