//! The authkit reference server: the library assembled with health checks, OpenAPI and the
//! HTTP hardening a browser-facing deployment needs. `main.rs` is only the CLI around it.
//!
//! [`App::build`] turns a validated configuration into a running state; [`App::router`] is the
//! `axum::Router` that tests drive with `oneshot` and `serve` binds to a socket.

#![deny(unsafe_code)]

pub mod config;
mod http_layers;
pub mod import;
mod openapi;
mod routes;
pub mod secrets;

use std::sync::{Arc, Mutex, PoisonError};

use authkit::account::{AccountConfig, QueuedOutbox};
use authkit::clock::{Clock, SystemClock};
use authkit::crypto::Sealer;
use authkit::jobs::{JobContext, JobQueue, JobQueueOptions, JobSettings, JobWorkers, JobsHandle};
use authkit::mail::{DevMailbox, LinkBase, Mailer, SmtpMailer};
use authkit::ratelimit::RateLimitConfig;
use authkit::rng::{OsRandom, RandomSource};
use authkit::store::{SqlStore, SqlStoreOptions, Store};
use authkit::{AuthKit, BuildError};
use axum::Router;

pub use config::{Config, ConfigError, Profile, Validated};
pub use openapi::openapi;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    /// The database could not be opened or migrated.
    #[error("database")]
    Store(#[from] authkit::store::StoreError),
    /// A secret could not be loaded.
    #[error(transparent)]
    Secrets(#[from] authkit::secrets::SecretError),
    /// The library refused its settings.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The job queue could not be opened or its workers started.
    #[error("job queue")]
    Jobs(#[from] authkit::jobs::JobError),
    /// Mail delivery is misconfigured.
    #[error("mail delivery: {0}")]
    Mail(String),
}

use authkit::error::error_chain;

/// Parts a test (or an embedding binary) may replace.
#[derive(Debug, Clone)]
pub struct Overrides {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The random source.
    pub rng: Arc<dyn RandomSource>,
    /// A store to use instead of opening `database.url`.
    pub store: Option<Arc<dyn Store>>,
    /// Key rings to use instead of reading the secret provider (nothing rotates then).
    pub keys: Option<authkit::secrets::SecretKeys>,
    /// How often secrets are read again, instead of `secrets.refresh_interval` (`None`:
    /// never; tests refresh with [`App::refresh_secrets`]).
    pub secret_refresh: Option<Option<std::time::Duration>>,
    /// A job queue to use instead of opening one on `database.url` (required with `store`).
    pub jobs: Option<JobQueue>,
    /// A mailer to use instead of SMTP or the development mailbox.
    pub mailer: Option<Arc<dyn Mailer>>,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
            store: None,
            keys: None,
            secret_refresh: None,
            jobs: None,
            mailer: None,
        }
    }
}

/// A built server: configuration, library and store. Cloning is one reference-count
/// increment (axum clones the state for every request).
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    config: Validated,
    auth: AuthKit,
    store: Arc<dyn Store>,
    /// The SQL store behind `store` when the server opened it (its password can rotate).
    sql: Option<SqlStore>,
    jobs: JobQueue,
    /// The sealer of the outbox and the job workers (rotated with the library's).
    sealer: Sealer,
    secrets: Option<Arc<authkit::secrets::SecretCache>>,
    workers: Mutex<Option<JobsHandle>>,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Serialises refresh-and-apply, so that an older read is never applied after a newer one.
    apply_lock: tokio::sync::Mutex<()>,
    /// The database URL the pools open new connections with.
    applied_db_url: Mutex<zeroize::Zeroizing<String>>,
    /// Whether the provider holds a change this instance refused (readiness: `degraded`).
    refused_change: std::sync::atomic::AtomicBool,
    /// When a refused database login last triggered a refresh.
    last_triggered: Mutex<Option<tokio::time::Instant>>,
}

impl Drop for AppInner {
    fn drop(&mut self) {
        if let Some(task) = self
            .refresher
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// The mailer of the configuration: SMTP when `smtp.url` is set, else the development
/// mailbox (production refuses to start without SMTP).
fn mailer(
    config: &Validated,
    password: Option<&authkit::secrets::SecretValue>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
) -> Result<Arc<dyn Mailer>, StartError> {
    let mail = &config.config.mail;
    match &config.config.smtp.url {
        Some(url) => {
            let url = secrets::url_with_password(url, password)
                .map_err(|e| StartError::Mail(format!("smtp.url with `smtp_password`: {e}")))?;
            let smtp = SmtpMailer::from_url(&url, &mail.from)
                .map_err(|e| StartError::Mail(format!("smtp.url: {e}")))?
                .with_clock(clock)
                .with_random(rng);
            Ok(Arc::new(smtp))
        }
        None => {
            let dev = DevMailbox::new(&mail.dev_mailbox_dir, clock)
                .map_err(|e| StartError::Mail(format!("mail.dev_mailbox_dir: {e}")))?
                .with_from(&mail.from)
                .map_err(|e| StartError::Mail(format!("mail.from: {e}")))?
                .with_random(rng);
            tracing::warn!(
                dir = %mail.dev_mailbox_dir.display(),
                "no AUTHKIT_SMTP_URL: mails are written to the development mailbox"
            );
            Ok(Arc::new(dev))
        }
    }
}

fn job_settings(config: &Validated) -> JobSettings {
    let jobs = &config.config.jobs;
    let audit = &config.config.audit;
    let mut s = JobSettings::default();
    s.mail_max_attempts = jobs.mail_max_attempts;
    s.backoff_base = jobs.mail_retry_base;
    s.backoff_cap = jobs.mail_retry_max;
    s.cleanup_interval = jobs.cleanup_interval;
    s.poll_interval = jobs.poll_interval;
    s.retention_interval = audit.retention_interval;
    s.audit_retention = (!audit.retention.is_zero()).then_some(audit.retention);
    s.archive_dir = audit.archive_dir.clone();
    s
}

/// Opens the configured database (with migrations) as the library's SQL store, with the
/// credentials of the database secrets.
pub async fn open_store(
    config: &Validated,
    secrets: &secrets::DatabaseSecrets,
) -> Result<SqlStore, StartError> {
    let db = &config.config.database;
    let url = database_url(config, secrets)?;
    Ok(SqlStore::connect(
        &url,
        SqlStoreOptions {
            max_connections: db.max_connections,
            min_connections: db.min_connections,
            acquire_timeout: db.acquire_timeout,
            slow_statement_threshold: db.slow_statement_threshold,
            ..SqlStoreOptions::default()
        },
    )
    .await?)
}

/// The URL to connect with: `database.url` with the database secrets applied.
pub fn database_url(
    config: &Validated,
    secrets: &secrets::DatabaseSecrets,
) -> Result<zeroize::Zeroizing<String>, StartError> {
    secrets.url(&config.config.database.url).map_err(|reason| {
        StartError::Config(vec![ConfigError::Invalid {
            setting: "database.url",
            reason: format!("with the database secrets: {reason}"),
        }])
    })
}

impl App {
    /// Opens the store, loads the secrets and builds the library.
    pub async fn build(config: Validated, overrides: Overrides) -> Result<Self, StartError> {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let (cache, keys) = match overrides.keys {
            Some(keys) => (None, keys),
            None => {
                let cache = secrets::cache(&config, Arc::clone(&overrides.rng)).await?;
                let keys = cache.keys().await?;
                (Some(cache), keys)
            }
        };
        let secret = |name: &'static str| {
            let cache = cache.clone();
            async move {
                match cache {
                    Some(cache) => secrets::optional(&cache, name).await,
                    None => Ok(None),
                }
            }
        };
        let db_secrets = match &cache {
            Some(cache) => secrets::DatabaseSecrets::read(cache).await?,
            None => secrets::DatabaseSecrets::default(),
        };
        let (store, sql): (Arc<dyn Store>, _) = match overrides.store {
            Some(store) => (store, None),
            None => {
                let sql = open_store(&config, &db_secrets).await?;
                (Arc::new(sql.clone()), Some(sql))
            }
        };
        let applied_db_url = database_url(&config, &db_secrets)?;
        let jobs = match overrides.jobs {
            Some(queue) => queue,
            None => JobQueue::connect(&applied_db_url, JobQueueOptions::default()).await?,
        };
        let mailer = match overrides.mailer {
            Some(m) => m,
            None => mailer(
                &config,
                secret(secrets::SMTP_PASSWORD).await?.as_deref(),
                Arc::clone(&overrides.clock),
                Arc::clone(&overrides.rng),
            )?,
        };
        let sealer = Sealer::new(&keys.encryption);
        let outbox = QueuedOutbox::new(jobs.clone(), sealer.clone(), Arc::clone(&overrides.rng));
        let links = LinkBase::parse(&config.config.server.public_url)
            .map_err(|e| StartError::Mail(format!("server.public_url: {e}")))?;
        let mail = &config.config.mail;
        let accounts = AccountConfig {
            verification_ttl: mail.verification_ttl,
            reset_ttl: mail.reset_ttl,
            notify_new_sign_in: mail.notify_new_sign_in,
            notify_password_changed: mail.notify_password_changed,
            ..AccountConfig::default()
        };
        let workers = if config.config.jobs.enabled {
            Some(JobWorkers::start(
                jobs.clone(),
                JobContext {
                    mailer,
                    sealer: sealer.clone(),
                    store: Arc::clone(&store),
                    clock: Arc::clone(&overrides.clock),
                    rng: Arc::clone(&overrides.rng),
                    settings: job_settings(&config),
                },
            )?)
        } else {
            tracing::info!("jobs.enabled is off: this instance queues jobs but runs none");
            None
        };
        let pw = &config.config.password;
        let mut builder = AuthKit::builder()
            .mail(Arc::new(outbox), links)
            .product_name(mail.product_name.clone())
            .mfa(config.mfa.clone())
            .totp_issuer(config.mfa.totp.issuer.clone())
            .registration_mode(config.config.registration.mode.to_library())
            .account_config(accounts)
            .rate_limits(if config.config.ratelimit.enabled {
                RateLimitConfig::default()
            } else {
                tracing::warn!("ratelimit.enabled is off: no request quotas (lockout stays on)");
                RateLimitConfig::without_quotas()
            })
            .store(Arc::clone(&store))
            .keys(keys)
            .session_config(config.session_config())
            .allowed_origins(config.allowed_origins.iter().cloned())
            .clock(overrides.clock)
            .rng(overrides.rng)
            .hash_params(config.hash_params)
            .password_policy(config.password_policy());
        if pw.max_concurrent > 0 {
            builder = builder.max_concurrent_hashes(pw.max_concurrent);
        }
        if let Some(oauth) = &config.oauth {
            let mut oauth = oauth.clone();
            // A `redirect_to` may point at the frontends the server already trusts.
            oauth.redirect_origins = config.allowed_origins.clone();
            if let Some(cache) = &cache {
                builder = builder.secret_provider(Arc::clone(cache.provider()));
            }
            builder = builder.oauth(oauth);
        }
        let auth = builder.build().await?;
        let refresh = overrides
            .secret_refresh
            .unwrap_or(Some(config.config.secrets.refresh_interval));
        let app = Self {
            inner: Arc::new(AppInner {
                config,
                auth,
                store,
                sql,
                jobs,
                sealer,
                secrets: cache.clone(),
                workers: Mutex::new(workers),
                refresher: Mutex::new(None),
                apply_lock: tokio::sync::Mutex::new(()),
                applied_db_url: Mutex::new(applied_db_url),
                refused_change: std::sync::atomic::AtomicBool::new(false),
                last_triggered: Mutex::new(None),
            }),
        };
        if let (Some(cache), Some(interval)) = (cache, refresh) {
            let weak = Arc::downgrade(&app.inner);
            let task = cache.spawn_refresher(interval, move |cache, _report| {
                let app = weak.upgrade().map(|inner| App { inner });
                async move {
                    if let Some(app) = app {
                        app.apply_secrets(&cache).await;
                    }
                }
            });
            *app.inner
                .refresher
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        Ok(app)
    }

    /// Reads every secret again now and applies what changed (what the interval refresher
    /// does); `None` when the key rings were given as an override.
    pub async fn refresh_secrets(&self) -> Option<authkit::secrets::RefreshReport> {
        let cache = self.inner.secrets.clone()?;
        let _one_at_a_time = self.inner.apply_lock.lock().await;
        let report = cache.refresh_all().await;
        self.apply_locked(&cache).await;
        Some(report)
    }

    /// [`refresh_secrets`](Self::refresh_secrets) after the database refused a login (the
    /// password may have rotated before the refresher saw it): at most one at a time and one
    /// every 10 s, so that a probe hammering `/ready` cannot hammer the provider.
    pub(crate) fn refresh_secrets_soon(&self) {
        const GAP: std::time::Duration = std::time::Duration::from_secs(10);
        {
            let mut last = self
                .inner
                .last_triggered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < GAP) {
                return;
            }
            *last = Some(now);
        }
        let app = self.clone();
        tokio::spawn(async move { app.refresh_secrets().await });
    }

    /// Whether the provider holds a change this instance refused or could not apply.
    pub fn secrets_refused(&self) -> bool {
        self.inner
            .refused_change
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The secret cache (`None` when the key rings were given as an override).
    pub fn secrets(&self) -> Option<&Arc<authkit::secrets::SecretCache>> {
        self.inner.secrets.as_ref()
    }

    async fn apply_secrets(&self, cache: &authkit::secrets::SecretCache) {
        let _one_at_a_time = self.inner.apply_lock.lock().await;
        self.apply_locked(cache).await;
    }

    /// Brings what is in use in line with the cache (compared at every refresh, so a change
    /// refused once is retried until it is fixed): key rings to the library and the job
    /// workers' sealer (re-sealing is queued when the encryption ring changed), database
    /// credentials to both pools. A change that cannot be applied is logged, flagged for
    /// readiness, and the old value stays in use. The caller holds `apply_lock`.
    async fn apply_locked(&self, cache: &authkit::secrets::SecretCache) {
        let inner = &self.inner;
        let mut refused = false;
        match cache.keys().await {
            Ok(keys) => match inner.auth.rotate_keys(keys.clone()) {
                Ok(changes) => {
                    if !changes.is_empty() {
                        inner.sealer.set_keys(&keys.encryption);
                    }
                    if changes.encryption
                        && let Err(e) = inner
                            .jobs
                            .enqueue_maintenance(authkit::jobs::MaintenanceTask::Reseal, &OsRandom)
                            .await
                    {
                        tracing::warn!(error = %e, "could not queue re-sealing; it runs at its interval");
                    }
                }
                Err(e) => {
                    refused = true;
                    tracing::error!(error = %e, "key rotation refused; keeping the current key rings");
                }
            },
            Err(e) => {
                refused = true;
                tracing::error!(
                    error = %error_chain(&e),
                    "the key rings in the provider are unusable; keeping the current ones"
                );
            }
        }
        if let Err(e) = self.apply_database(cache).await {
            refused = true;
            tracing::error!(
                error = %e,
                "could not apply the database credentials; new connections use the old ones"
            );
        }
        inner
            .refused_change
            .store(refused, std::sync::atomic::Ordering::Relaxed);
    }

    /// Points both pools' new connections at the credentials of the database secrets, if
    /// they changed. Only the user and password may change while running: another host,
    /// port, database or kind would split the data between two databases.
    async fn apply_database(&self, cache: &authkit::secrets::SecretCache) -> Result<(), String> {
        let inner = &self.inner;
        if inner.sql.is_none() {
            return Ok(());
        }
        let db = secrets::DatabaseSecrets::read(cache)
            .await
            .map_err(|e| error_chain(&e))?;
        let url = database_url(&inner.config, &db).map_err(|e| error_chain(&e))?;
        let current = inner
            .applied_db_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if *url == *current {
            return Ok(());
        }
        if !secrets::same_database(&current, &url) {
            return Err("the database secret now names another host, port, database or kind: that needs a restart".into());
        }
        inner.jobs.set_url(&url).map_err(|e| error_chain(&e))?;
        if let Some(sql) = &inner.sql {
            sql.set_url(&url).map_err(|e| error_chain(&e))?;
        }
        *inner
            .applied_db_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = url;
        tracing::info!("new database connections use the rotated credentials");
        Ok(())
    }

    /// The HTTP application.
    pub fn router(&self) -> Router {
        routes::router(self)
    }

    /// The settings in effect.
    pub fn config(&self) -> &Validated {
        &self.inner.config
    }

    /// The library instance.
    pub fn auth(&self) -> &AuthKit {
        &self.inner.auth
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The job queue (mail, cleanup, retention).
    pub fn jobs(&self) -> &JobQueue {
        &self.inner.jobs
    }

    /// Stops the job workers, letting the jobs in progress finish (graceful shutdown).
    pub async fn shutdown_jobs(&self) {
        let handle = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            handle.shutdown().await;
        }
    }
}
