//! The authkit reference server: the library assembled with health checks, OpenAPI and the
//! HTTP hardening a browser-facing deployment needs. `main.rs` is only the CLI around it.
//!
//! [`App::build`] turns a validated configuration into a running state; [`App::router`] is the
//! `axum::Router` that tests drive with `oneshot` and `serve` binds to a socket.

#![deny(unsafe_code)]

pub mod config;
mod http_layers;
mod openapi;
mod routes;
pub mod secrets;

use std::sync::Arc;

use authkit::clock::{Clock, SystemClock};
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
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
            store: None,
            keys: None,
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
        let pw = &config.config.password;
        let mut builder = AuthKit::builder()
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
        let auth = builder.build().await?;
        Ok(Self {
            inner: Arc::new(AppInner {
                config,
                auth,
                store,
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
}
