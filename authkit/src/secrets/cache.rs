//! [`SecretCache`]: a provider's secrets held in memory, refreshed on an interval and on
//! demand, with the last good value kept while the provider is briefly unreachable.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use subtle::ConstantTimeEq as _;
use tokio::sync::watch;

use super::{ENCRYPTION_KEY, PEPPER, SESSION_KEY, SecretError, SecretKeys, SecretProvider};
use super::{SecretValue, parse_ring};

/// A cached view of a [`SecretProvider`].
///
/// - [`get`](Self::get) reads a secret from the provider the first time and from memory
///   afterwards: requests never wait for the provider.
/// - [`refresh`](Self::refresh) / [`refresh_all`](Self::refresh_all) read again; the
///   refresher started by [`spawn_refresher`](Self::spawn_refresher) does so on an interval.
///   A value that changed (new version or new content) replaces the cached one and bumps the
///   [`changes`](Self::changes) counter, which is how key rings and the database password
///   rotate without a restart.
/// - A failed refresh keeps serving the last good value, logs a warning naming the secret and
///   the provider (never the value) and counts the failure ([`status`](Self::status),
///   [`refresh_failures_total`](Self::refresh_failures_total)); a secret read for the first
///   time has no last good value, so that error is returned (start-up fails on it).
///
/// Values live in a `moka` cache without expiry or eviction: a time-to-live would throw away
/// exactly the last good value this cache exists to keep.
pub struct SecretCache {
    provider: Arc<dyn SecretProvider>,
    values: moka::future::Cache<String, Arc<SecretValue>>,
    health: Mutex<HashMap<String, Health>>,
    failures_total: std::sync::atomic::AtomicU64,
    changes: watch::Sender<u64>,
    /// Optional secrets read again at each refresh even while the provider has none, so one
    /// added later is picked up.
    watched: Mutex<std::collections::BTreeSet<String>>,
}

#[derive(Debug, Clone, Default)]
struct Health {
    consecutive_failures: u64,
    total_failures: u64,
    last_error: Option<String>,
}

/// What a refresh of one secret found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refresh {
    /// The provider answered with the value already cached.
    Unchanged,
    /// The provider answered with a new value, now cached.
    Changed,
    /// The provider failed; the last good value is still served.
    KeptLastGood,
}

/// The outcome of [`SecretCache::refresh_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshReport {
    /// Secrets whose value changed.
    pub changed: Vec<String>,
    /// Secrets the provider failed to read (their last good value is still served).
    pub failed: Vec<String>,
}

impl RefreshReport {
    /// Whether `name` changed.
    pub fn changed(&self, name: &str) -> bool {
        self.changed.iter().any(|n| n == name)
    }

    /// Whether any of the key rings changed.
    pub fn keys_changed(&self) -> bool {
        [SESSION_KEY, ENCRYPTION_KEY, PEPPER]
            .iter()
            .any(|n| self.changed(n))
    }
}

/// One cached secret, for `secrets check` and health checks. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretStatus {
    /// The secret's name.
    pub name: String,
    /// The provider's version label of the cached value.
    pub version: Option<String>,
    /// Refreshes that failed in a row (0: the last one worked).
    pub consecutive_failures: u64,
    /// Refreshes that failed since start.
    pub total_failures: u64,
    /// The last failure, as the error's message (names the secret and provider only).
    pub last_error: Option<String>,
}

impl SecretStatus {
    /// Whether the cached value may be out of date (the last refresh failed).
    pub fn is_stale(&self) -> bool {
        self.consecutive_failures > 0
    }
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("provider", &self.provider.name())
            .field("cached", &self.values.entry_count())
            .finish_non_exhaustive()
    }
}

impl SecretCache {
    /// An empty cache in front of `provider`.
    pub fn new(provider: Arc<dyn SecretProvider>) -> Self {
        Self {
            provider,
            values: moka::future::Cache::builder().build(),
            health: Mutex::new(HashMap::new()),
            failures_total: std::sync::atomic::AtomicU64::new(0),
            changes: watch::channel(0).0,
            watched: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    fn is_watched(&self, name: &str) -> bool {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    /// Reads `name` at every [`refresh_all`](Self::refresh_all) even when the provider does
    /// not have it (yet): for optional secrets that may be added while running.
    pub fn watch(&self, name: &str) {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned());
    }

    /// The provider behind the cache.
    pub fn provider(&self) -> &Arc<dyn SecretProvider> {
        &self.provider
    }

    /// The secret `name`: from memory when it was read before, else from the provider.
    pub async fn get(&self, name: &str) -> Result<Arc<SecretValue>, SecretError> {
        if let Some(value) = self.values.get(name).await {
            return Ok(value);
        }
        let value = Arc::new(self.provider.get(name).await?);
        // Two first reads may race; either value is the provider's current one.
        self.values
            .insert(name.to_owned(), Arc::clone(&value))
            .await;
        self.health().entry(name.to_owned()).or_default();
        Ok(value)
    }

    /// The three key rings, from the cache (read from the provider the first time).
    pub async fn keys(&self) -> Result<SecretKeys, SecretError> {
        let provider = self.provider.name();
        Ok(SecretKeys {
            session: parse_ring(&*self.get(SESSION_KEY).await?, SESSION_KEY, provider)?,
            encryption: parse_ring(&*self.get(ENCRYPTION_KEY).await?, ENCRYPTION_KEY, provider)?,
            pepper: parse_ring(&*self.get(PEPPER).await?, PEPPER, provider)?,
        })
    }

    /// Reads `name` from the provider again. A secret never read before is read and cached
    /// (`Changed`); a failure with a value cached keeps it (`KeptLastGood`, with a warning and
    /// a counted failure); a failure without one is returned.
    pub async fn refresh(&self, name: &str) -> Result<Refresh, SecretError> {
        let cached = self.values.get(name).await;
        match self.provider.get(name).await {
            Ok(fresh) => {
                self.health()
                    .entry(name.to_owned())
                    .or_default()
                    .consecutive_failures = 0;
                let changed = cached.as_deref().is_none_or(|old| differs(old, &fresh));
                if changed {
                    let version = fresh.version().map(str::to_owned);
                    self.values.insert(name.to_owned(), Arc::new(fresh)).await;
                    if cached.is_some() {
                        tracing::info!(
                            secret = name,
                            provider = self.provider.name(),
                            version = version.as_deref().unwrap_or("-"),
                            "secret changed in the provider; using the new value"
                        );
                    }
                    self.changes.send_modify(|n| *n = n.wrapping_add(1));
                    Ok(Refresh::Changed)
                } else {
                    Ok(Refresh::Unchanged)
                }
            }
            // A watched (optional) secret deleted in the provider is gone, not stale: the
            // app falls back to running without it (e.g. `database_url` → the configured URL).
            Err(SecretError::NotFound { .. }) if cached.is_some() && self.is_watched(name) => {
                self.values.invalidate(name).await;
                self.health().remove(name);
                tracing::info!(
                    secret = name,
                    provider = self.provider.name(),
                    "optional secret removed from the provider; no longer used"
                );
                self.changes.send_modify(|n| *n = n.wrapping_add(1));
                Ok(Refresh::Changed)
            }
            Err(e) => {
                let Some(_) = cached else { return Err(e) };
                self.failures_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let message = crate::util::error_chain(&e);
                let consecutive = {
                    let mut health = self.health();
                    let h = health.entry(name.to_owned()).or_default();
                    h.consecutive_failures += 1;
                    h.total_failures += 1;
                    h.last_error = Some(e.to_string());
                    h.consecutive_failures
                };
                tracing::warn!(
                    secret = name,
                    provider = self.provider.name(),
                    consecutive_failures = consecutive,
                    error = %message,
                    "could not refresh a secret; still using the last good value"
                );
                Ok(Refresh::KeptLastGood)
            }
        }
    }

    /// Refreshes every secret read so far and every [watched](Self::watch) one. A watched
    /// secret the provider still does not have is neither changed nor failed.
    pub async fn refresh_all(&self) -> RefreshReport {
        let mut names: std::collections::BTreeSet<String> =
            self.values.iter().map(|(k, _)| (*k).clone()).collect();
        names.extend(
            self.watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        let mut report = RefreshReport::default();
        for name in names {
            match self.refresh(&name).await {
                Ok(Refresh::Changed) => report.changed.push(name),
                Ok(Refresh::Unchanged) | Err(SecretError::NotFound { .. }) => {}
                Ok(Refresh::KeptLastGood) | Err(_) => report.failed.push(name),
            }
        }
        report
    }

    /// A counter bumped whenever a cached value changes: `changed().await` on it to react to a
    /// rotation.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every cached secret with its version and refresh health, by name.
    pub fn status(&self) -> Vec<SecretStatus> {
        let health = self.health().clone();
        let mut list: Vec<SecretStatus> = self
            .values
            .iter()
            .map(|(name, value)| {
                let h = health.get(name.as_str()).cloned().unwrap_or_default();
                SecretStatus {
                    name: (*name).clone(),
                    version: value.version().map(str::to_owned),
                    consecutive_failures: h.consecutive_failures,
                    total_failures: h.total_failures,
                    last_error: h.last_error,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Failed refreshes since start, over all secrets (a counter for metrics).
    pub fn refresh_failures_total(&self) -> u64 {
        self.failures_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refreshes every cached secret every `interval` until the cache is dropped; `on_refresh`
    /// sees each report (e.g. to apply changed key rings). The task holds only a weak
    /// reference, so it never keeps the cache alive.
    pub fn spawn_refresher<F, Fut>(
        self: &Arc<Self>,
        interval: Duration,
        on_refresh: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Arc<Self>, RefreshReport) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(self);
        let interval = interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; the values are fresh
            loop {
                ticks.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                let report = cache.refresh_all().await;
                on_refresh(cache, report).await;
            }
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether two values differ: a new version label or new content (compared in constant time,
/// for providers without versions).
fn differs(old: &SecretValue, new: &SecretValue) -> bool {
    old.version() != new.version()
        || !bool::from(old.expose().as_bytes().ct_eq(new.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use secrecy::SecretString;

    /// A provider whose values and availability the test sets.
    #[derive(Debug, Default)]
    struct Scripted {
        values: Mutex<HashMap<String, (String, u32)>>,
        down: std::sync::atomic::AtomicBool,
        reads: std::sync::atomic::AtomicU32,
    }

    impl Scripted {
        fn set(&self, name: &str, value: &str) {
            let mut v = self.values.lock().unwrap();
            let version = v.get(name).map_or(1, |(_, n)| n + 1);
            v.insert(name.into(), (value.into(), version));
        }
    }

    #[async_trait]
    impl SecretProvider for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SecretError::Unavailable {
                    name: name.into(),
                    provider: "scripted",
                    source: "connection refused".into(),
                });
            }
            let v = self.values.lock().unwrap();
            let (value, version) = v.get(name).ok_or_else(|| SecretError::NotFound {
                name: name.into(),
                provider: "scripted",
            })?;
            Ok(SecretValue::new(
                SecretString::from(value.clone()),
                Some(version.to_string()),
            ))
        }
    }

    fn cache() -> (Arc<Scripted>, SecretCache) {
        let provider = Arc::new(Scripted::default());
        let cache = SecretCache::new(Arc::clone(&provider) as Arc<dyn SecretProvider>);
        (provider, cache)
    }

    #[tokio::test]
    async fn serves_from_memory_after_the_first_read() {
        let (p, cache) = cache();
        p.set("smtp_password", "one");
        assert_eq!(cache.get("smtp_password").await.unwrap().expose(), "one");
        p.set("smtp_password", "two");
        assert_eq!(cache.get("smtp_password").await.unwrap().expose(), "one");
        assert_eq!(p.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refresh_picks_up_a_rotation_and_signals_it() {
        let (p, cache) = cache();
        p.set("db", "one");
        cache.get("db").await.unwrap();
        let changes = cache.changes();
        assert_eq!(cache.refresh("db").await.unwrap(), Refresh::Unchanged);
        assert!(!changes.has_changed().unwrap());
        p.set("db", "two");
        let report = cache.refresh_all().await;
        assert_eq!(report.changed, vec!["db".to_owned()]);
        assert!(changes.has_changed().unwrap());
        let now = cache.get("db").await.unwrap();
        assert_eq!((now.expose(), now.version()), ("two", Some("2")));
    }

    // An outage keeps the last good value, counts and reports it, and recovers.
    #[tokio::test]
    async fn an_outage_keeps_the_last_good_value() {
        let (p, cache) = cache();
        p.set("db", "one");
        cache.get("db").await.unwrap();
        p.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(cache.refresh("db").await.unwrap(), Refresh::KeptLastGood);
        let report = cache.refresh_all().await;
        assert_eq!(report.failed, vec!["db".to_owned()]);
        assert_eq!(cache.get("db").await.unwrap().expose(), "one");
        assert_eq!(cache.refresh_failures_total(), 2);
        let status = cache.status();
        assert_eq!(status.len(), 1);
        assert!(status[0].is_stale());
        assert_eq!(status[0].consecutive_failures, 2);
        let error = status[0].last_error.clone().unwrap();
        assert!(error.contains("db") && error.contains("scripted") && !error.contains("one"));
        assert!(!format!("{cache:?}{status:?}").contains("one\""));

        p.down.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(cache.refresh("db").await.unwrap(), Refresh::Unchanged);
        assert!(!cache.status()[0].is_stale());
        assert_eq!(cache.status()[0].total_failures, 2);
    }

    // Nothing cached yet: the error is returned (start-up fails on a missing secret).
    #[tokio::test]
    async fn a_first_read_failure_is_an_error() {
        let (p, cache) = cache();
        assert!(matches!(
            cache.get("pepper").await,
            Err(SecretError::NotFound { .. })
        ));
        p.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            cache.refresh("pepper").await,
            Err(SecretError::Unavailable { .. })
        ));
        assert!(cache.status().is_empty());
    }

    // An optional secret added while running is picked up once watched.
    #[tokio::test]
    async fn watched_secrets_appear_when_added() {
        let (p, cache) = cache();
        cache.watch("database_password");
        assert_eq!(cache.refresh_all().await, RefreshReport::default());
        p.set("database_password", "one");
        let report = cache.refresh_all().await;
        assert_eq!(report.changed, vec!["database_password".to_owned()]);
        assert_eq!(
            cache.get("database_password").await.unwrap().expose(),
            "one"
        );
    }

    // Providers without version labels: a new value is still noticed.
    #[tokio::test]
    async fn content_changes_count_without_versions() {
        let a = SecretValue::new(SecretString::from("x"), None);
        let b = SecretValue::new(SecretString::from("y"), None);
        assert!(differs(&a, &b));
        assert!(!differs(
            &a,
            &SecretValue::new(SecretString::from("x"), None)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresher_runs_on_its_interval_and_stops_with_the_cache() {
        let (p, cache) = cache();
        p.set("db", "one");
        let cache = Arc::new(cache);
        cache.get("db").await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = cache.spawn_refresher(Duration::from_secs(60), move |_, report| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(report);
            }
        });
        p.set("db", "two");
        let report = rx.recv().await.unwrap();
        assert_eq!(report.changed, vec!["db".to_owned()]);
        assert_eq!(rx.recv().await.unwrap(), RefreshReport::default());
        drop(cache);
        tokio::time::timeout(Duration::from_secs(3600), task)
            .await
            .unwrap()
            .unwrap();
    }
}
