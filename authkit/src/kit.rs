//! [`AuthKit`]: everything assembled, and its builder.

use std::collections::HashSet;
use std::sync::Arc;

use crate::account::{AccountConfig, MailOutbox, QueuedOutbox, RegistrationMode};
use crate::clock::{Clock, SystemClock};
use crate::crypto::Sealer;
use crate::csrf::{CsrfConfig, CsrfTokens, Origin};
use crate::jobs::{
    JobContext, JobError, JobQueue, JobQueueOptions, JobSettings, JobWorkers, JobsHandle,
};
use crate::layer::AuthLayer;
use crate::mail::Mailer;
use crate::mail::{LinkBase, Templates};
use crate::mfa::{BackupCodeHasher, MfaConfig};
use crate::password::{HashParams, PasswordError, PasswordHasher, PasswordPolicy};
use crate::ratelimit::{
    DeviceCookieConfig, DeviceCookies, MemoryRateLimiter, RateLimitConfig, RateLimiter,
};
use crate::rng::{OsRandom, RandomSource};
use crate::secrets::{RefreshReport, SecretCache, SecretError, SecretKeys, SecretProvider};
use crate::service::{AuthApi, AuthService, AuthState, AuthStateInner};
use crate::session::{SessionConfig, SessionManager};
use crate::store::{SqlStore, SqlStoreOptions, Store, StoreError};

/// Why [`AuthKitBuilder::build`] (or a step of it) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No store: call `.database(url)` or `.store(…)`.
    #[error("no store configured: call .database(url) or .store(store)")]
    NoStore,
    /// No keys: call `.secrets(provider)` or `.keys(…)`.
    #[error("no keys configured: call .secrets(provider) or .keys(keys)")]
    NoKeys,
    /// The database could not be opened or migrated.
    #[error("could not open the database")]
    Store(#[from] StoreError),
    /// A secret could not be loaded.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The password hasher could not start.
    #[error("invalid password hashing settings")]
    Password(#[from] PasswordError),
    /// The job queue could not be opened or its workers started.
    #[error("could not start the job queue")]
    Jobs(#[from] JobError),
    /// An OAuth provider is configured wrongly.
    #[error("OAuth provider `{provider}`: {reason}")]
    OAuth {
        /// The provider's name.
        provider: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid setting `{setting}`: {reason}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Builds an [`AuthKit`].
#[must_use]
pub struct AuthKitBuilder {
    store: Option<Arc<dyn Store>>,
    keys: Option<SecretKeys>,
    session: SessionConfig,
    allowed_origins: HashSet<Origin>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
    hash_params: HashParams,
    max_concurrent_hashes: Option<usize>,
    policy: PasswordPolicy,
    max_body_bytes: usize,
    accounts: AccountConfig,
    registration: Option<RegistrationMode>,
    outbox: Option<Arc<dyn MailOutbox>>,
    link_base: Option<LinkBase>,
    product_name: Option<String>,
    limiter: Option<Arc<dyn RateLimiter>>,
    limits: RateLimitConfig,
    database_url: Option<String>,
    mailer: Option<Arc<dyn Mailer>>,
    job_settings: JobSettings,
    mfa: MfaConfig,
    totp_issuer: Option<String>,
    oauth: Option<crate::oauth::OAuthConfig>,
    secret_provider: Option<Arc<dyn SecretProvider>>,
    secret_cache: Option<Arc<SecretCache>>,
    secret_refresh: Option<std::time::Duration>,
}

impl std::fmt::Debug for AuthKitBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKitBuilder")
            .field("session", &self.session)
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl Default for AuthKitBuilder {
    fn default() -> Self {
        Self {
            store: None,
            keys: None,
            session: SessionConfig::default(),
            allowed_origins: HashSet::new(),
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
            hash_params: HashParams::default(),
            max_concurrent_hashes: None,
            policy: PasswordPolicy::default(),
            max_body_bytes: 16 * 1024,
            accounts: AccountConfig::default(),
            registration: None,
            outbox: None,
            link_base: None,
            product_name: None,
            limiter: None,
            limits: RateLimitConfig::default(),
            database_url: None,
            mailer: None,
            job_settings: JobSettings::default(),
            mfa: MfaConfig::default(),
            totp_issuer: None,
            oauth: None,
            secret_provider: None,
            secret_cache: None,
            secret_refresh: Some(DEFAULT_SECRET_REFRESH),
        }
    }
}

impl AuthKitBuilder {
    /// Opens `sqlite://…` or `postgres://…` and runs migrations.
    pub async fn database(self, url: &str) -> Result<Self, BuildError> {
        self.database_with(url, SqlStoreOptions::default()).await
    }

    /// Opens a database with pool options.
    pub async fn database_with(
        mut self,
        url: &str,
        options: SqlStoreOptions,
    ) -> Result<Self, BuildError> {
        self.store = Some(Arc::new(SqlStore::connect(url, options).await?));
        self.database_url = Some(url.to_owned());
        Ok(self)
    }

    /// Uses `store` (e.g. [`MemoryStore`](crate::store::MemoryStore) in tests).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Loads the key rings from `provider` through a [`SecretCache`]; OAuth client secrets
    /// given by name ([`SecretRef`](crate::oauth::SecretRef)) are read from it too. The built
    /// kit re-reads the rings every [`secret_refresh_interval`](Self::secret_refresh_interval)
    /// and switches to changed ones without a restart ([`AuthKit::rotate_keys`]).
    pub async fn secrets(
        self,
        provider: impl SecretProvider + 'static,
    ) -> Result<Self, BuildError> {
        self.secret_cache(Arc::new(SecretCache::new(Arc::new(provider))))
            .await
    }

    /// Like [`secrets`](Self::secrets), with a cache the app shares (e.g. to read its own
    /// secrets through it).
    pub async fn secret_cache(mut self, cache: Arc<SecretCache>) -> Result<Self, BuildError> {
        self.keys = Some(cache.keys().await?);
        self.secret_provider = Some(Arc::clone(cache.provider()));
        self.secret_cache = Some(cache);
        Ok(self)
    }

    /// How often the rings given with [`secrets`](Self::secrets) are read again (default 5
    /// min; `None`: never, the app calls [`AuthKit::refresh_secrets`] itself).
    pub fn secret_refresh_interval(mut self, interval: Option<std::time::Duration>) -> Self {
        self.secret_refresh = interval;
        self
    }

    /// The provider OAuth client secrets given by name are read from, when the key rings
    /// come from [`keys`](Self::keys).
    pub fn secret_provider(mut self, provider: Arc<dyn SecretProvider>) -> Self {
        self.secret_provider = Some(provider);
        self
    }

    /// OAuth / OpenID Connect sign-in with these providers.
    pub fn oauth(mut self, config: crate::oauth::OAuthConfig) -> Self {
        self.oauth = Some(config);
        self
    }

    /// Adds one OAuth provider (the redirect URIs start with `public_url`).
    pub fn oauth_provider(
        mut self,
        public_url: url::Url,
        provider: crate::oauth::Provider,
    ) -> Self {
        let config = self
            .oauth
            .take()
            .unwrap_or_else(|| crate::oauth::OAuthConfig::new(public_url));
        self.oauth = Some(config.provider(provider));
        self
    }

    /// Uses key rings loaded elsewhere.
    pub fn keys(mut self, keys: SecretKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Session lifetimes and cookie.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session = config;
        self
    }

    /// Origins allowed to send unsafe requests (the public URL's origin and the frontends).
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        self.allowed_origins.extend(origins);
        self
    }

    /// The clock (tests inject a [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The random source.
    pub fn rng(mut self, rng: Arc<dyn RandomSource>) -> Self {
        self.rng = rng;
        self
    }

    /// argon2id parameters (refused below OWASP's minimum).
    pub fn hash_params(mut self, params: HashParams) -> Self {
        self.hash_params = params;
        self
    }

    /// Most password hashes computed at once (default: one per core).
    pub fn max_concurrent_hashes(mut self, n: usize) -> Self {
        self.max_concurrent_hashes = Some(n);
        self
    }

    /// The password policy for new passwords.
    pub fn password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Largest accepted request body of the auth endpoints, in bytes (default 16 KiB).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Mail delivery: where mails are queued (e.g. a [`JobQueue`](crate::jobs::JobQueue)) and
    /// the public URL their links start with (from configuration, never from a request).
    pub fn mail(mut self, outbox: Arc<dyn MailOutbox>, links: LinkBase) -> Self {
        self.outbox = Some(outbox);
        self.link_base = Some(links);
        self
    }

    /// Mail delivery the simple way: authkit queues mails durably in the database given to
    /// [`database`](Self::database) (in memory with [`store`](Self::store)) and runs the job
    /// workers that deliver them with retries, plus the cleanup and retention jobs; stop them
    /// with [`AuthKit::shutdown`]. `links` is the public URL mails link to.
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>, links: LinkBase) -> Self {
        self.mailer = Some(mailer);
        self.link_base = Some(links);
        self
    }

    /// Retry policy and periodic jobs of the workers started by [`mailer`](Self::mailer).
    pub fn job_settings(mut self, settings: JobSettings) -> Self {
        self.job_settings = settings;
        self
    }

    /// The product name used in mails (default `authkit`).
    pub fn product_name(mut self, name: impl Into<String>) -> Self {
        self.product_name = Some(name.into());
        self
    }

    /// How `register` works. Default: `verify-first` when mail delivery is configured,
    /// `instant` otherwise.
    pub fn registration_mode(mut self, mode: RegistrationMode) -> Self {
        self.registration = Some(mode);
        self
    }

    /// Token lifetimes and security notices (the registration mode is set with
    /// [`registration_mode`](Self::registration_mode)).
    pub fn account_config(mut self, config: AccountConfig) -> Self {
        self.accounts = config;
        self
    }

    /// Where quotas and lockout counters live (default: in process).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Quotas per flow and the lockout policy.
    pub fn rate_limits(mut self, limits: RateLimitConfig) -> Self {
        self.limits = limits;
        self
    }

    /// TOTP parameters, enrolment lifetime and whether every user must use MFA.
    pub fn mfa(mut self, config: MfaConfig) -> Self {
        self.mfa = config;
        self
    }

    /// The issuer authenticator apps show next to the account (default: the product name,
    /// else `authkit`).
    pub fn totp_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.totp_issuer = Some(issuer.into());
        self
    }

    /// Assembles everything; computes one password hash (the dummy for unknown users).
    pub async fn build(mut self) -> Result<AuthKit, BuildError> {
        let store = self.store.ok_or(BuildError::NoStore)?;
        let keys = self.keys.ok_or(BuildError::NoKeys)?;
        let s = &self.session;
        if s.idle_timeout.as_secs() == 0 || s.absolute_timeout < s.idle_timeout {
            return Err(BuildError::Setting {
                setting: "session timeouts",
                reason: "idle must be at least 1s and not longer than absolute",
            });
        }
        if self.policy.min_chars == 0 || self.policy.max_chars < self.policy.min_chars {
            return Err(BuildError::Setting {
                setting: "password policy",
                reason: "need 1 <= min_chars <= max_chars",
            });
        }
        let mut mfa = self.mfa.clone();
        // The issuer: `.totp_issuer(…)`, else one set in `.mfa(…)`, else the product name.
        let default_issuer = crate::mfa::TotpConfig::default().issuer;
        let issuer = self.totp_issuer.clone().or_else(|| {
            (mfa.totp.issuer == default_issuer)
                .then(|| self.product_name.clone())
                .flatten()
        });
        if let Some(issuer) = issuer {
            mfa.totp.issuer = issuer;
        }
        if let Err(crate::mfa::MfaError::Config(reason)) = mfa.totp.validate() {
            return Err(BuildError::Setting {
                setting: "totp",
                reason,
            });
        }
        // Either switch turns the requirement on; neither can turn the other off.
        mfa.required |= self.session.require_mfa;
        self.session.require_mfa = mfa.required;
        // One sealer for everything: its clones share the keys, so a rotation reaches all.
        let sealer = Sealer::new(&keys.encryption);
        let mut workers = None;
        let mut own_queue = None;
        if let (Some(mailer), None) = (self.mailer.take(), &self.outbox) {
            let queue = match &self.database_url {
                Some(url) => JobQueue::connect(url, JobQueueOptions::default()).await?,
                None => JobQueue::in_memory().await?,
            };
            workers = Some(JobWorkers::start(
                queue.clone(),
                JobContext {
                    mailer,
                    sealer: sealer.clone(),
                    store: Arc::clone(&store),
                    clock: Arc::clone(&self.clock),
                    rng: Arc::clone(&self.rng),
                    settings: self.job_settings.clone(),
                },
            )?);
            own_queue = Some(queue.clone());
            self.outbox = Some(Arc::new(QueuedOutbox::new(
                queue,
                sealer.clone(),
                Arc::clone(&self.rng),
            )));
        }
        let registration = match (self.registration, self.outbox.is_some()) {
            (Some(RegistrationMode::VerifyFirst), false) => {
                return Err(BuildError::Setting {
                    setting: "registration mode",
                    reason: "verify-first needs mail delivery: call .mail(outbox, links) or use instant",
                });
            }
            (Some(mode), _) => mode,
            (None, true) => RegistrationMode::VerifyFirst,
            (None, false) => RegistrationMode::Instant,
        };
        if self.outbox.is_none() {
            tracing::warn!(
                "authkit: no mail delivery configured; verification and reset mails are dropped"
            );
        }
        let mut accounts = self.accounts;
        accounts.registration = registration;
        let templates = self.link_base.map(|base| {
            let t = Templates::new(base);
            match &self.product_name {
                Some(name) => t.with_product_name(name),
                None => t,
            }
        });
        let devices = DeviceCookies::new(
            keys.session.clone(),
            DeviceCookieConfig {
                secure: self.session.cookie.secure,
                ..DeviceCookieConfig::default()
            },
        );
        let hasher = PasswordHasher::new(
            self.hash_params,
            self.max_concurrent_hashes,
            Arc::clone(&self.rng),
        )
        .await?;
        let sessions = SessionManager::new(
            Arc::clone(&store),
            self.session.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.rng),
        );
        let oauth = match self.oauth.take() {
            Some(config) => Some(Arc::new(
                build_oauth(
                    config,
                    self.secret_provider.as_deref(),
                    sealer.clone(),
                    Arc::clone(&self.clock),
                )
                .await?,
            )),
            None => None,
        };
        let csrf = CsrfTokens::new(keys.session.clone());
        let csrf_config = CsrfConfig {
            allowed_origins: self.allowed_origins,
            session_cookie: self.session.cookie.full_name(),
        };
        let state = AuthState::new(AuthStateInner {
            store,
            sessions: sessions.clone(),
            hasher,
            policy: Arc::new(self.policy),
            csrf: csrf.clone(),
            clock: self.clock,
            rng: self.rng,
            users: moka::future::Cache::builder()
                .max_capacity(self.session.cache_capacity)
                .time_to_live(self.session.cache_ttl)
                .build(),
            attempt_gates: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(300))
                .build(),
            accounts,
            outbox: self.outbox,
            templates,
            limiter: self
                .limiter
                .unwrap_or_else(|| Arc::new(MemoryRateLimiter::new())),
            limits: Arc::new(self.limits),
            devices,
            mfa,
            sealer,
            backup_codes: BackupCodeHasher::new(&keys.pepper),
            oauth,
        });
        let kit = AuthKit {
            inner: Arc::new(KitInner {
                layer: AuthLayer::new(sessions, csrf_config, csrf),
                service: AuthService::new(state.clone(), self.max_body_bytes),
                state,
                keys: std::sync::RwLock::new(keys),
                workers: std::sync::Mutex::new(workers),
                queue: own_queue,
                secrets: self.secret_cache.clone(),
                refresher: std::sync::Mutex::new(None),
                apply_lock: tokio::sync::Mutex::new(()),
            }),
        };
        if let (Some(cache), Some(interval)) = (self.secret_cache, self.secret_refresh) {
            let weak = Arc::downgrade(&kit.inner);
            let task = cache.spawn_refresher(interval, move |cache, _report| {
                let kit = weak.upgrade().map(|inner| AuthKit { inner });
                async move {
                    if let Some(kit) = kit {
                        kit.apply_refresh(&cache).await;
                    }
                }
            });
            *kit.inner
                .refresher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        }
        Ok(kit)
    }
}

/// authkit, assembled: the layer, the service and the parts behind them. Cloning is cheap.
#[derive(Clone)]
pub struct AuthKit {
    inner: Arc<KitInner>,
}

struct KitInner {
    layer: AuthLayer,
    service: AuthService,
    state: AuthState,
    keys: std::sync::RwLock<SecretKeys>,
    workers: std::sync::Mutex<Option<JobsHandle>>,
    /// The queue of the workers started by `.mailer(…)` (re-sealing is queued on it).
    queue: Option<JobQueue>,
    /// The secrets given with `.secrets(…)`.
    secrets: Option<Arc<SecretCache>>,
    /// The task that refreshes them.
    refresher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Serialises applying refreshed rings.
    apply_lock: tokio::sync::Mutex<()>,
}

impl Drop for KitInner {
    fn drop(&mut self) {
        if let Some(task) = self
            .refresher
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// How often [`AuthKitBuilder::secrets`] re-reads the key rings by default.
pub(crate) const DEFAULT_SECRET_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

impl std::fmt::Debug for AuthKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKit").finish_non_exhaustive()
    }
}

impl AuthKit {
    /// Starts a builder.
    pub fn builder() -> AuthKitBuilder {
        AuthKitBuilder::default()
    }

    /// The session and CSRF layer: put it in front of every route (`.layer(auth.layer())`).
    pub fn layer(&self) -> AuthLayer {
        self.inner.layer.clone()
    }

    /// The auth endpoints: mount under `/api/v1/auth` (`.nest_service("/api/v1/auth", …)`).
    pub fn service(&self) -> AuthService {
        self.inner.service.clone()
    }

    /// The OpenAPI document of the auth endpoints mounted at `/api/v1/auth`.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        use utoipa::OpenApi as _;
        utoipa::openapi::OpenApi::default().nest("/api/v1/auth", AuthApi::openapi())
    }

    /// Sessions: list or revoke a user's sessions from app code.
    pub fn sessions(&self) -> &SessionManager {
        &self.inner.state.sessions
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.state.store
    }

    /// The password hasher (shares the concurrency bound with the endpoints).
    pub fn hasher(&self) -> &PasswordHasher {
        &self.inner.state.hasher
    }

    /// The users' linked OAuth accounts: a valid provider access token for a user, refreshed
    /// when needed. `None` without OAuth providers.
    pub fn linked_accounts(&self) -> Option<crate::oauth::LinkedAccounts> {
        let state = &self.inner.state;
        let rt = state.oauth.as_ref()?;
        Some(crate::oauth::LinkedAccounts {
            store: Arc::clone(&state.store),
            sealer: rt.tokens.clone(),
            rng: Arc::clone(&state.rng),
            clock: Arc::clone(&state.clock),
            providers: Arc::clone(&rt.providers),
            refresh_gates: rt.refresh_gates.clone(),
        })
    }

    /// The key rings in use.
    pub fn keys(&self) -> SecretKeys {
        self.inner
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Switches to new key rings without a restart (SECURITY.md #36): new cookies, CSRF
    /// tokens, sealed values and backup-code hashes use each ring's newest key from the next
    /// request on, and whatever an older key in the new rings made still verifies and opens,
    /// so adding a key logs nobody out and fails no request. Whatever depends on a key the new
    /// rings no longer hold stops working: that is how a key is retired.
    ///
    /// Refused (nothing changes) when a key id stays but its key changed (everything made
    /// under that id would silently stop verifying: a new key needs a new id), and when the
    /// new ring drops the key currently in use (everything sealed under it would become
    /// unreadable at once: make another key the newest first, then retire it).
    ///
    /// Re-sealing the rows sealed under older keys is the job queue's
    /// [`MaintenanceTask::Reseal`](crate::jobs::MaintenanceTask::Reseal).
    pub fn rotate_keys(&self, keys: SecretKeys) -> Result<KeyChanges, KeyRotationError> {
        let mut current = self
            .inner
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changes = KeyChanges::between(&current, &keys)?;
        if changes.is_empty() {
            return Ok(changes);
        }
        let state = &self.inner.state;
        if changes.session {
            state.csrf.set_keys(keys.session.clone());
            state.devices.set_keys(keys.session.clone());
        }
        if changes.encryption {
            state.sealer.set_keys(&keys.encryption);
        }
        if changes.pepper {
            state.backup_codes.set_keys(&keys.pepper);
        }
        tracing::info!(
            session = %keys.session.current().0,
            encryption = %keys.encryption.current().0,
            pepper = %keys.pepper.current().0,
            "key rings replaced; newest key ids in use"
        );
        *current = keys;
        Ok(changes)
    }

    /// Reads the secrets given with [`AuthKitBuilder::secrets`] again now (rather than at the
    /// next interval) and applies changed key rings; `None` without them.
    pub async fn refresh_secrets(&self) -> Option<RefreshReport> {
        let cache = self.inner.secrets.clone()?;
        let report = cache.refresh_all().await;
        self.apply_refresh(&cache).await;
        Some(report)
    }

    /// Applies changed key rings from `cache` after a refresh; a refused rotation is logged
    /// and the old rings stay in use.
    async fn apply_refresh(&self, cache: &SecretCache) {
        // Compared with the rings in use at every refresh, not only when the cache saw a
        // change: a change refused once is retried (and logged) until it is fixed. One at a
        // time, so that an older read cannot be applied after a newer one.
        let _one_at_a_time = self.inner.apply_lock.lock().await;
        let keys = match cache.keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!(error = %crate::util::error_chain(&e), "the changed key rings are unusable; keeping the current ones");
                return;
            }
        };
        match self.rotate_keys(keys) {
            Ok(changes) if changes.encryption => {
                if let Some(queue) = &self.inner.queue
                    && let Err(e) = queue
                        .enqueue_maintenance(
                            crate::jobs::MaintenanceTask::Reseal,
                            self.inner.state.rng.as_ref(),
                        )
                        .await
                {
                    tracing::warn!(error = %e, "could not queue re-sealing; it runs at its interval");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "key rotation refused; keeping the current key rings")
            }
        }
    }

    /// Stops the job workers started by [`AuthKitBuilder::mailer`], letting jobs in progress
    /// finish; queued jobs stay in the database for the next start.
    pub async fn shutdown(&self) {
        let handle = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            handle.shutdown().await;
        }
    }
}

/// Which key rings a [`AuthKit::rotate_keys`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyChanges {
    /// The session ring (CSRF tokens, device cookies).
    pub session: bool,
    /// The encryption ring (TOTP secrets, OAuth tokens, queued mail).
    pub encryption: bool,
    /// The pepper ring (backup codes).
    pub pepper: bool,
}

impl KeyChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !(self.session || self.encryption || self.pepper)
    }

    /// Compares two sets of rings; refuses a key id whose key changed.
    pub fn between(old: &SecretKeys, new: &SecretKeys) -> Result<Self, KeyRotationError> {
        let ring = |name: &'static str,
                    old: &crate::secret::KeyRing,
                    new: &crate::secret::KeyRing|
         -> Result<bool, KeyRotationError> {
            // Dropping the key everything is sealed and signed under right now would make all
            // of it unreadable at once: it must be demoted (another key first) before it goes.
            let (newest, _) = old.current();
            if new.get(newest.as_str()).is_none() {
                return Err(KeyRotationError::NewestKeyDropped {
                    ring: name,
                    key_id: newest.to_string(),
                });
            }
            let mut changed = old.ids().count() != new.ids().count();
            for (id, new_key) in new.ids().filter_map(|id| Some((id, new.get(id.as_str())?))) {
                match old.get(id.as_str()) {
                    Some(old_key) => {
                        use subtle::ConstantTimeEq as _;
                        if !bool::from(old_key.expose().ct_eq(new_key.expose())) {
                            return Err(KeyRotationError::KeyIdReused {
                                ring: name,
                                key_id: id.to_string(),
                            });
                        }
                    }
                    None => changed = true,
                }
            }
            // Same ids, same keys: the order (which key is newest) may still have changed.
            let order = |r: &crate::secret::KeyRing| r.ids().cloned().collect::<Vec<_>>();
            Ok(changed || order(old) != order(new))
        };
        Ok(Self {
            session: ring(crate::secrets::SESSION_KEY, &old.session, &new.session)?,
            encryption: ring(
                crate::secrets::ENCRYPTION_KEY,
                &old.encryption,
                &new.encryption,
            )?,
            pepper: ring(crate::secrets::PEPPER, &old.pepper, &new.pepper)?,
        })
    }
}

/// Why [`AuthKit::rotate_keys`] refused new key rings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRotationError {
    /// The new ring lacks the key currently used for new material.
    #[error(
        "key ring `{ring}`: the new ring drops `{key_id}`, the key in use; put another key first and wait before retiring it"
    )]
    NewestKeyDropped {
        /// The ring.
        ring: &'static str,
        /// The id.
        key_id: String,
    },
    /// A key id stayed but its key changed.
    #[error(
        "key ring `{ring}`: key id `{key_id}` now holds a different key; give a new key a new id"
    )]
    KeyIdReused {
        /// The ring.
        ring: &'static str,
        /// The id.
        key_id: String,
    },
}

/// Resolves client secrets and prepares every provider (no network: OIDC discovery happens at
/// the first sign-in, so that a provider outage does not stop the server from starting).
async fn build_oauth(
    config: crate::oauth::OAuthConfig,
    secrets: Option<&dyn SecretProvider>,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
) -> Result<crate::service::OAuthRuntime, BuildError> {
    use crate::oauth::{ClientSecretSource, ProviderClient, ProviderHttp, TokenSealer};
    use secrecy::SecretString;

    let setting = |reason| BuildError::Setting {
        setting: "oauth",
        reason,
    };
    let public_origin = Origin::of_url(config.public_url.as_str())
        .ok_or(setting("the public URL has no origin"))?;
    let http = ProviderHttp::new(config.http_timeout)
        .map_err(|_| setting("the HTTP client could not start"))?;
    let mut providers = std::collections::HashMap::new();
    for provider in &config.providers {
        let fail = |reason| BuildError::OAuth {
            provider: provider.name.clone(),
            reason,
        };
        provider.check().map_err(fail)?;
        let secret = match &provider.client_secret {
            ClientSecretSource::Value(value) => value.clone(),
            ClientSecretSource::Named(name) => {
                let source = secrets.ok_or(fail(
                    "the client secret is named but no secret provider is configured",
                ))?;
                let value = source.get(name).await?;
                SecretString::from(value.expose().to_owned())
            }
        };
        let client = ProviderClient::new(
            provider.clone(),
            secret,
            &config.redirect_uri(&provider.name),
            http.clone(),
            Arc::clone(&clock),
            config.jwks_refetch_interval,
        )
        .map_err(fail)?;
        if providers
            .insert(provider.name.clone(), Arc::new(client))
            .is_some()
        {
            return Err(fail("two providers have this name"));
        }
    }
    Ok(crate::service::OAuthRuntime {
        config,
        providers: Arc::new(providers),
        tokens: TokenSealer::new(sealer),
        public_origin,
        refresh_gates: crate::oauth::refresh_gates(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::KeyRing;

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        crate::secret::test_ring(keys)
    }

    fn keys(session: &[(&str, u8)]) -> SecretKeys {
        SecretKeys {
            session: ring(session),
            encryption: ring(&[("e1", 9)]),
            pepper: ring(&[("p1", 8)]),
        }
    }

    // SECURITY.md #36: add, move first, retire; never reuse an id or drop the key in use.
    #[test]
    fn rotations_follow_add_use_retire() {
        let k1 = keys(&[("k1", 1)]);
        let added = keys(&[("k1", 1), ("k2", 2)]);
        let used = keys(&[("k2", 2), ("k1", 1)]);
        let retired = keys(&[("k2", 2)]);
        for (old, new) in [(&k1, &added), (&added, &used), (&used, &retired)] {
            let changes = KeyChanges::between(old, new).unwrap();
            assert!(changes.session && !changes.encryption && !changes.pepper);
        }
        assert!(KeyChanges::between(&used, &used).unwrap().is_empty());
        // The key in use cannot go in one step: what it sealed would be lost at once.
        assert_eq!(
            KeyChanges::between(&k1, &keys(&[("k2", 2)])),
            Err(KeyRotationError::NewestKeyDropped {
                ring: "session_key",
                key_id: "k1".into()
            })
        );
        assert!(KeyChanges::between(&used, &k1).is_err());
        // A reused id with another key is refused.
        assert_eq!(
            KeyChanges::between(&k1, &keys(&[("k1", 7)])),
            Err(KeyRotationError::KeyIdReused {
                ring: "session_key",
                key_id: "k1".into()
            })
        );
    }
}
