//! Shared by the integration tests of this crate that talk to PostgreSQL: where it is, and a
//! throw-away schema per test. Each test binary uses part of it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

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
