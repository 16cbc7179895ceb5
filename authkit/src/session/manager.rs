use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::future::Cache;

use super::config::SessionConfig;
use super::record::{Aal, SessionKind, SessionRecord};
use super::token::{SessionIdHash, SessionToken};
use crate::audit::{AuditActor, AuditEventType, NewAuditEvent};
use crate::clock::{Clock, Timestamp};
use crate::rng::{RandomSource, random_array};
use crate::store::{Rotation, RotationGuard, Store, StoreError};
use crate::user::UserId;

/// Where a request came from, recorded on the sessions it creates. Kept raw (an address and
/// a shared header value) so that requests that create no session pay nothing to format it.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// Client address.
    pub ip: Option<std::net::IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<http::HeaderValue>,
}

/// Longest user agent stored, in characters.
const MAX_USER_AGENT: usize = 256;

impl ClientMeta {
    fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }

    /// The actor recorded with audit events.
    pub fn actor(&self) -> AuditActor {
        AuditActor::new(
            self.ip,
            self.user_agent.as_ref().and_then(|v| v.to_str().ok()),
        )
    }

    fn user_agent_text(&self) -> Option<String> {
        self.user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|ua| crate::util::truncate_chars(ua, MAX_USER_AGENT))
    }
}

/// A session in the in-process cache: the stored record plus activity not yet written back.
#[derive(Debug)]
pub(crate) struct CachedSession {
    pub(crate) record: SessionRecord,
    last_seen: AtomicI64,
    persisted_seen: AtomicI64,
}

impl CachedSession {
    fn new(record: SessionRecord) -> Self {
        let seen = record.last_seen_at.unix_seconds();
        Self {
            record,
            last_seen: AtomicI64::new(seen),
            persisted_seen: AtomicI64::new(seen),
        }
    }

    pub(crate) fn last_seen(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.last_seen.load(Ordering::Relaxed))
    }
}

/// Creates, loads, rotates and revokes sessions: the store, the cache and the clock together.
///
/// The layer and the auth service share one; an app may use it directly, e.g. to revoke every
/// session of a user from an admin tool.
///
/// Cloning is one reference-count increment: layers clone it for every request.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<ManagerInner>,
}

struct ManagerInner {
    store: Arc<dyn Store>,
    cache: Cache<SessionIdHash, Arc<CachedSession>>,
    /// Sessions revoked through this instance, kept twice as long as a cache entry lives.
    revoked: Cache<SessionIdHash, ()>,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Outcome of checking a loaded session against the clock.
pub(crate) enum Liveness {
    Live,
    Expired,
}

/// Errors while creating sessions.
pub(crate) type ManagerResult<T> = Result<T, super::SessionError>;

impl SessionManager {
    /// A manager over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        config: SessionConfig,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn RandomSource>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(config.cache_ttl)
            .build();
        let revoked = Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(
                config
                    .cache_ttl
                    .saturating_mul(2)
                    .max(std::time::Duration::from_secs(1)),
            )
            .build();
        Self {
            inner: Arc::new(ManagerInner {
                store,
                cache,
                revoked,
                config,
                clock,
                rng,
            }),
        }
    }

    /// The injected clock's current time.
    pub(crate) fn now(&self) -> crate::clock::Timestamp {
        self.inner.clock.now()
    }

    /// The session settings.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The clock every expiry is measured with.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// A shared handle to the clock (for background jobs).
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.inner.clock)
    }

    /// Loads a session by hash: cache first, then the store.
    pub(crate) async fn load(
        &self,
        hash: &SessionIdHash,
    ) -> Result<Option<Arc<CachedSession>>, StoreError> {
        if let Some(hit) = self.inner.cache.get(hash).await {
            return Ok(Some(hit));
        }
        let Some(record) = self.inner.store.session(hash).await? else {
            return Ok(None);
        };
        let cached = Arc::new(CachedSession::new(record));
        self.inner.cache.insert(*hash, Arc::clone(&cached)).await;
        if self.inner.revoked.contains_key(hash) {
            // Revoked while this request was reading it: undo the insert.
            self.inner.cache.invalidate(hash).await;
            return Ok(None);
        }
        Ok(Some(cached))
    }

    /// The moment a session ends for inactivity.
    pub(crate) fn idle_deadline(&self, s: &CachedSession) -> Timestamp {
        match s.record.kind {
            // A pending session has only its short absolute deadline.
            SessionKind::Pending => s.record.expires_at,
            SessionKind::Full => s.last_seen().saturating_add(self.inner.config.idle_timeout),
        }
    }

    pub(crate) fn liveness(&self, s: &CachedSession, now: Timestamp) -> Liveness {
        if now >= s.record.expires_at || now >= self.idle_deadline(s) {
            Liveness::Expired
        } else {
            Liveness::Live
        }
    }

    /// Records activity: always in the cache, in the store at most once per touch interval.
    pub(crate) async fn touch(&self, s: &CachedSession, now: Timestamp) {
        let now_secs = now.unix_seconds();
        s.last_seen.fetch_max(now_secs, Ordering::Relaxed);
        let interval =
            i64::try_from(self.inner.config.effective_touch_interval().as_secs()).unwrap_or(60);
        let persisted = s.persisted_seen.load(Ordering::Relaxed);
        let due = now_secs.saturating_sub(persisted) >= interval
            && s.persisted_seen
                .compare_exchange(persisted, now_secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if !due {
            return;
        }
        if let Err(e) = self.inner.store.touch_session(&s.record.id_hash, now).await {
            // Losing one activity write only makes the idle timeout a little stricter.
            tracing::warn!(error = %e, "could not record session activity");
        }
    }

    /// Creates a session for `user`, replacing `replace` (the presented session, if any) in the
    /// same transaction: every sign-in gets a new token (SECURITY.md #9).
    pub(crate) async fn create(
        &self,
        replace: Option<&SessionIdHash>,
        user: &UserId,
        kind: SessionKind,
        aal: Aal,
        meta: &ClientMeta,
        verified_hash: Option<&str>,
    ) -> ManagerResult<(SessionToken, Arc<CachedSession>)> {
        let now = self.inner.clock.now();
        // `verified_hash` is the password hash this request just verified: a password proof.
        let password_verified_at = verified_hash.map(|_| now);
        // MISSION.md: `login.succeeded` is written when a full session is issued.
        let audit = (kind == SessionKind::Full).then(|| {
            NewAuditEvent::new(
                AuditEventType::LoginSucceeded,
                Some(user.clone()),
                now,
                meta.actor(),
            )
            .with_details(serde_json::json!({ "aal": aal.as_str() }))
        });
        let lifetime = match kind {
            SessionKind::Pending => self.inner.config.pending_timeout,
            SessionKind::Full => self.inner.config.absolute_timeout,
        };
        let handle: [u8; 16] = random_array(self.inner.rng.as_ref())?;
        let record = SessionRecord {
            id_hash: SessionIdHash::from_bytes([0; 32]),
            handle: URL_SAFE_NO_PAD.encode(handle),
            user_id: user.clone(),
            kind,
            aal,
            created_at: now,
            last_seen_at: now,
            authenticated_at: now,
            password_verified_at,
            expires_at: now.saturating_add(lifetime),
            ip: meta.ip_text(),
            user_agent: meta.user_agent_text(),
        };
        let guard = RotationGuard {
            replace,
            require_replaced: false,
            password_hash: verified_hash,
            audit: audit.as_slice(),
        };
        self.insert_rotated(guard, record).await
    }

    /// Turns a pending session into a full one at `aal2` after its second factor: a new token,
    /// a new handle and the full lifetime from now (SECURITY.md #9). Fails with
    /// [`Revoked`](super::SessionError::Revoked) if the pending session is gone (expired, or
    /// ended by a password reset meanwhile). `events` are written in the same transaction.
    pub(crate) async fn promote(
        &self,
        pending: &CachedSession,
        events: &[NewAuditEvent],
    ) -> ManagerResult<(SessionToken, Arc<CachedSession>)> {
        let now = self.inner.clock.now();
        let handle: [u8; 16] = random_array(self.inner.rng.as_ref())?;
        let record = SessionRecord {
            id_hash: SessionIdHash::from_bytes([0; 32]),
            handle: URL_SAFE_NO_PAD.encode(handle),
            user_id: pending.record.user_id.clone(),
            kind: SessionKind::Full,
            aal: Aal::Aal2,
            created_at: now,
            last_seen_at: now,
            authenticated_at: now,
            password_verified_at: pending.record.password_verified_at,
            expires_at: now.saturating_add(self.inner.config.absolute_timeout),
            ip: pending.record.ip.clone(),
            user_agent: pending.record.user_agent.clone(),
        };
        let guard = RotationGuard {
            replace: Some(&pending.record.id_hash),
            require_replaced: true,
            password_hash: None,
            audit: events,
        };
        self.insert_rotated(guard, record).await
    }

    /// `current` as just re-proved: `authenticated_at = last_seen_at = now`, `aal` raised to
    /// `aal`; handle, creation time and absolute expiry unchanged. The caller sets the new
    /// id hash.
    fn refreshed(&self, current: &CachedSession, aal: Aal) -> SessionRecord {
        let now = self.inner.clock.now();
        let mut record = current.record.clone();
        record.authenticated_at = now;
        record.last_seen_at = now;
        record.aal = record.aal.max(aal);
        record
    }

    /// Gives the session a new token with `authenticated_at = now`, keeping its handle,
    /// creation time and absolute expiry (re-authentication never extends a session).
    ///
    /// `verified_hash` is the password hash this request verified (a password proof, also
    /// checked to be still current), `None` for a second factor. `events` are written in the
    /// same transaction.
    pub(crate) async fn rotate(
        &self,
        current: &CachedSession,
        aal: Aal,
        verified_hash: Option<&str>,
        events: &[NewAuditEvent],
    ) -> ManagerResult<(SessionToken, Arc<CachedSession>)> {
        let mut record = self.refreshed(current, aal);
        if verified_hash.is_some() {
            record.password_verified_at = Some(record.authenticated_at);
        }
        let guard = RotationGuard {
            replace: Some(&current.record.id_hash),
            require_replaced: true,
            password_hash: verified_hash,
            audit: events,
        };
        self.insert_rotated(guard, record).await
    }

    /// The `login.succeeded` event of a re-authentication of `current` to `aal` (SECURITY.md
    /// #40: a re-authentication is an authentication success).
    pub(crate) fn reauthentication_event(
        &self,
        current: &CachedSession,
        aal: Aal,
        actor: AuditActor,
        method: &str,
    ) -> NewAuditEvent {
        NewAuditEvent::new(
            AuditEventType::LoginSucceeded,
            Some(current.record.user_id.clone()),
            self.inner.clock.now(),
            actor,
        )
        .with_details(serde_json::json!({
            "aal": current.record.aal.max(aal).as_str(),
            "reauthentication": true,
            "method": method,
        }))
    }

    async fn insert_rotated(
        &self,
        guard: RotationGuard<'_>,
        mut record: SessionRecord,
    ) -> ManagerResult<(SessionToken, Arc<CachedSession>)> {
        let token = SessionToken::generate(self.inner.rng.as_ref())?;
        record.id_hash = token.hash();
        match self.inner.store.rotate_session(&record, guard).await? {
            Rotation::Done => {}
            Rotation::Revoked => return Err(super::SessionError::Revoked),
            Rotation::CredentialsChanged => return Err(super::SessionError::CredentialsChanged),
        }
        if let Some(old) = guard.replace {
            self.forget(old).await;
        }
        let cached = Arc::new(CachedSession::new(record));
        self.inner
            .cache
            .insert(cached.record.id_hash, Arc::clone(&cached))
            .await;
        Ok((token, cached))
    }

    /// Changes the user's password (if the hash is still `expected`), ends every session of
    /// the user and gives `current` a new token, all in one transaction. `None` when the
    /// password changed meanwhile.
    pub(crate) async fn change_password(
        &self,
        current: &CachedSession,
        expected: &str,
        phc: &str,
        actor: AuditActor,
    ) -> ManagerResult<Option<(SessionToken, Arc<CachedSession>)>> {
        let now = self.inner.clock.now();
        let token = SessionToken::generate(self.inner.rng.as_ref())?;
        let mut record = self.refreshed(current, current.record.aal);
        record.id_hash = token.hash();
        record.password_verified_at = Some(now);
        let Some(ended) = self
            .inner
            .store
            .change_password(
                &record.user_id,
                expected,
                phc,
                now,
                Some(&record),
                Some(&NewAuditEvent::new(
                    AuditEventType::PasswordChanged,
                    Some(record.user_id.clone()),
                    now,
                    actor,
                )),
            )
            .await?
        else {
            return Ok(None);
        };
        for hash in &ended {
            self.forget(hash).await;
        }
        let cached = Arc::new(CachedSession::new(record));
        self.inner
            .cache
            .insert(cached.record.id_hash, Arc::clone(&cached))
            .await;
        Ok(Some((token, cached)))
    }

    /// Drops a session from the cache and remembers, for longer than a cache entry lives,
    /// that it is gone: a request that read the row just before the deletion must not put it
    /// back into the cache.
    async fn forget(&self, hash: &SessionIdHash) {
        self.inner.revoked.insert(*hash, ()).await;
        self.inner.cache.invalidate(hash).await;
    }

    /// Ends one session (an expired one found on a request); no audit event.
    pub async fn revoke(&self, hash: &SessionIdHash) -> Result<bool, StoreError> {
        self.revoke_audited(hash, None).await
    }

    /// Ends one session, writing `audit` in the same transaction if it existed (logout).
    pub(crate) async fn revoke_audited(
        &self,
        hash: &SessionIdHash,
        audit: Option<&NewAuditEvent>,
    ) -> Result<bool, StoreError> {
        let existed = self.inner.store.delete_session(hash, audit).await?;
        self.forget(hash).await;
        Ok(existed)
    }

    fn revoked_event(&self, user: &UserId, actor: &AuditActor, scope: &str) -> NewAuditEvent {
        NewAuditEvent::new(
            AuditEventType::SessionRevoked,
            Some(user.clone()),
            self.inner.clock.now(),
            actor.clone(),
        )
        .with_details(serde_json::json!({ "scope": scope }))
    }

    /// Ends the user's session with public handle `handle`; whether it existed. Writes a
    /// `session.revoked` event by `actor` (use [`AuditActor::system`] from app code).
    pub async fn revoke_by_handle(
        &self,
        user: &UserId,
        handle: &str,
        actor: &AuditActor,
    ) -> Result<bool, StoreError> {
        let event = self.revoked_event(user, actor, "one");
        match self
            .inner
            .store
            .delete_session_by_handle(user, handle, Some(&event))
            .await?
        {
            Some(hash) => {
                self.forget(&hash).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Ends every session of `user` except `keep`; how many ended. Writes a
    /// `session.revoked` event by `actor` if any did.
    pub async fn revoke_all_except(
        &self,
        user: &UserId,
        keep: Option<&SessionIdHash>,
        actor: &AuditActor,
    ) -> Result<usize, StoreError> {
        let scope = if keep.is_some() { "others" } else { "all" };
        let event = self.revoked_event(user, actor, scope);
        let ended = self
            .inner
            .store
            .delete_user_sessions_except(user, keep, Some(&event))
            .await?;
        self.evict(&ended).await;
        Ok(ended.len())
    }

    /// Drops cache entries of sessions ended elsewhere (e.g. by a password change).
    pub(crate) async fn evict(&self, hashes: &[SessionIdHash]) {
        for h in hashes {
            self.forget(h).await;
        }
    }

    /// The user's sessions (from the store, so that other instances' sessions show).
    pub async fn list(&self, user: &UserId) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.store.sessions_for_user(user).await
    }
}
