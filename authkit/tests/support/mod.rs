//! Shared by the integration tests of this crate that talk to PostgreSQL: where it is, and a
//! throw-away schema per test. Each test binary uses part of it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use authkit::store::{MemoryStore, SqlStore, SqlStoreOptions, Store};

use authkit::rng::{OsRandom, RandomSource as _};

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

/// `n` random bytes in hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRandom.try_fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh schema on the test server; `url` points at it (its `search_path`).
pub struct PgSchema {
    base: String,
    name: String,
    /// A database URL whose connections use only this schema.
    pub url: String,
}

impl PgSchema {
    /// A new schema named `<prefix>_<random>`; `None` when PostgreSQL is not configured
    /// (outside CI).
    pub async fn create(prefix: &str) -> Option<Self> {
        let base = postgres_url()?;
        sqlx::any::install_default_drivers();
        let name = format!("{prefix}_{}", random_hex(6));
        let pool = sqlx::AnyPool::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Some(Self { base, name, url })
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        let pool = sqlx::AnyPool::connect(&self.base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        )))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
}

/// Two stores on one database (two pools: two "instances"), or one memory store twice, for
/// races between instances; for SQL also a raw pool (for what the store cannot do, such as
/// deleting a user).
pub struct TwoStores {
    pub a: Arc<dyn Store>,
    pub b: Arc<dyn Store>,
    pub raw: Option<sqlx::AnyPool>,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgSchema>,
}

impl TwoStores {
    pub fn memory() -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        Self {
            a: Arc::clone(&store),
            b: store,
            raw: None,
            _dir: None,
            pg: None,
        }
    }

    /// A SQLite file `<name>.db` in a temporary folder.
    pub async fn sqlite(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/{name}.db?mode=rwc", dir.path().display());
        let (a, b) = Self::pair(&url).await;
        Self {
            raw: Some(a.pool().clone()),
            a: Arc::new(a),
            b: Arc::new(b),
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A throw-away PostgreSQL schema `authkit_<name>_…`; `None` when PostgreSQL is not
    /// configured (outside CI).
    pub async fn postgres(name: &str) -> Option<Self> {
        let schema = PgSchema::create(&format!("authkit_{name}")).await?;
        let (a, b) = Self::pair(&schema.url).await;
        Some(Self {
            raw: Some(a.pool().clone()),
            a: Arc::new(a),
            b: Arc::new(b),
            _dir: None,
            pg: Some(schema),
        })
    }

    async fn pair(url: &str) -> (SqlStore, SqlStore) {
        let a = SqlStore::connect(url, SqlStoreOptions::default())
            .await
            .unwrap();
        let b = SqlStore::connect(url, SqlStoreOptions::default())
            .await
            .unwrap();
        (a, b)
    }

    /// The two stores, alternating by `i`.
    pub fn pick(&self, i: usize) -> Arc<dyn Store> {
        if i.is_multiple_of(2) {
            Arc::clone(&self.a)
        } else {
            Arc::clone(&self.b)
        }
    }

    pub async fn finish(self) {
        if let Some(pool) = self.raw {
            pool.close().await;
        }
        if let Some(schema) = self.pg {
            schema.drop().await;
        }
    }
}

/// `per_backend!("name"; test_a, test_b)`: runs each `async fn test(TwoStores)` on memory,
/// SQLite and PostgreSQL (modules `memory`, `sqlite`, `postgres`).
#[macro_export]
macro_rules! per_backend {
    ($name:literal; $($test:ident),* $(,)?) => {
        mod memory { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test(super::TwoStores::memory()).await; }
        )* }
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test(super::TwoStores::sqlite($name).await).await; }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                if let Some(stores) = super::TwoStores::postgres($name).await {
                    super::$test(stores).await;
                }
            }
        )* }
    };
}
