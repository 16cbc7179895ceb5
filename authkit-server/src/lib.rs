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

/// Parts a test (or an embedding binary) may replace.
#[derive(Debug, Clone)]
pub struct Overrides {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The random source.
    pub rng: Arc<dyn RandomSource>,
    /// A store to use instead of opening `database.url`.
    pub store: Option<Arc<dyn Store>>,
    /// Key rings to use instead of reading the secret provider.
    pub keys: Option<authkit::secrets::SecretKeys>,
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
    jobs: JobQueue,
    workers: Mutex<Option<JobsHandle>>,
}

/// The mailer of the configuration: SMTP when `smtp.url` is set, else the development
/// mailbox (production refuses to start without SMTP).
fn mailer(
    config: &Validated,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
) -> Result<Arc<dyn Mailer>, StartError> {
    let mail = &config.config.mail;
    match &config.config.smtp.url {
        Some(url) => {
            let smtp = SmtpMailer::from_url(url, &mail.from)
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

/// Opens the configured database (with migrations) as the library's SQL store.
pub async fn open_store(config: &Validated) -> Result<SqlStore, authkit::store::StoreError> {
    let db = &config.config.database;
    SqlStore::connect(
        &db.url,
        SqlStoreOptions {
            max_connections: db.max_connections,
            min_connections: db.min_connections,
            acquire_timeout: db.acquire_timeout,
            slow_statement_threshold: db.slow_statement_threshold,
            ..SqlStoreOptions::default()
        },
    )
    .await
}

impl App {
    /// Opens the store, loads the secrets and builds the library.
    pub async fn build(config: Validated, overrides: Overrides) -> Result<Self, StartError> {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let store: Arc<dyn Store> = match overrides.store {
            Some(store) => store,
            None => Arc::new(open_store(&config).await?),
        };
        let keys = match overrides.keys {
            Some(keys) => keys,
            None => secrets::load_keys(&config, Arc::clone(&overrides.rng)).await?,
        };
        let jobs = match overrides.jobs {
            Some(queue) => queue,
            None => {
                JobQueue::connect(&config.config.database.url, JobQueueOptions::default()).await?
            }
        };
        let mailer = match overrides.mailer {
            Some(m) => m,
            None => mailer(
                &config,
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
                    sealer,
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
        let secret_provider = secrets::provider(&config, Arc::clone(&overrides.rng));
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
            builder = builder.secret_provider(secret_provider).oauth(oauth);
        }
        let auth = builder.build().await?;
        Ok(Self {
            inner: Arc::new(AppInner {
                config,
                auth,
                store,
                jobs,
                workers: Mutex::new(workers),
            }),
        })
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
