use std::sync::{Arc, Mutex, PoisonError};

use cookie::{Cookie, SameSite};
use tower_cookies::Cookies;

use super::manager::{CachedSession, ClientMeta, SessionManager};
use super::record::{Aal, SessionKind};
use super::token::{SessionIdHash, SessionToken};
use crate::clock::Timestamp;
use crate::error::ErrorCode;
use crate::store::StoreError;
use crate::user::UserId;

/// Why a session could not be created or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] crate::rng::RandomError),
    /// The session was revoked while the request was being handled.
    #[error("the session was revoked meanwhile")]
    Revoked,
    /// The password changed after it was verified for this request.
    #[error("the credentials changed meanwhile")]
    CredentialsChanged,
}

/// Why a request is refused by a route that needs a signed-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRejection {
    /// No valid session.
    #[error("no valid session")]
    Unauthenticated,
    /// The session still needs its second factor.
    #[error("the session still needs its second factor")]
    MfaRequired,
}

impl SessionRejection {
    /// The API error code.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::MfaRequired => ErrorCode::MfaRequired,
        }
    }
}

/// A fully authenticated session.
#[derive(Debug, Clone)]
pub struct AuthenticatedSession {
    inner: Arc<CachedSession>,
    idle_expires_at: Timestamp,
}

impl AuthenticatedSession {
    /// The signed-in user.
    pub fn user_id(&self) -> &UserId {
        &self.inner.record.user_id
    }
    /// The session's public handle (never the cookie value).
    pub fn handle(&self) -> &str {
        &self.inner.record.handle
    }
    /// Assurance level.
    pub fn aal(&self) -> Aal {
        self.inner.record.aal
    }
    /// When the session began.
    pub fn created_at(&self) -> Timestamp {
        self.inner.record.created_at
    }
    /// Last activity.
    pub fn last_seen_at(&self) -> Timestamp {
        self.inner.last_seen()
    }
    /// When the user last proved a factor.
    pub fn authenticated_at(&self) -> Timestamp {
        self.inner.record.authenticated_at
    }
    /// Absolute expiry.
    pub fn expires_at(&self) -> Timestamp {
        self.inner.record.expires_at
    }
    /// Expiry if no further request arrives.
    pub fn idle_expires_at(&self) -> Timestamp {
        self.idle_expires_at
    }
    /// Client address at creation.
    pub fn ip(&self) -> Option<&str> {
        self.inner.record.ip.as_deref()
    }
    /// User agent at creation.
    pub fn user_agent(&self) -> Option<&str> {
        self.inner.record.user_agent.as_deref()
    }
    /// Whether the user authenticated within `window` of `now`.
    pub fn authenticated_within(&self, window: std::time::Duration, now: Timestamp) -> bool {
        now.seconds_since(self.authenticated_at()) <= window.as_secs()
    }
    /// When the user last proved the password in this session, if ever.
    pub fn password_verified_at(&self) -> Option<Timestamp> {
        self.inner.record.password_verified_at
    }
    /// Whether the user proved the password within `window` of `now`.
    pub fn password_verified_within(&self, window: std::time::Duration, now: Timestamp) -> bool {
        self.password_verified_at()
            .is_some_and(|at| now.seconds_since(at) <= window.as_secs())
    }
    pub(crate) fn id_hash(&self) -> &SessionIdHash {
        &self.inner.record.id_hash
    }
}

/// A session between the password and the second factor. Accepted by no protected route;
/// only the MFA verification step can turn it into an [`AuthenticatedSession`].
#[derive(Debug, Clone)]
pub struct PendingSession {
    inner: Arc<CachedSession>,
}

impl PendingSession {
    /// The user who passed the first factor.
    pub fn user_id(&self) -> &UserId {
        &self.inner.record.user_id
    }
    /// When the pending session ends.
    pub fn expires_at(&self) -> Timestamp {
        self.inner.record.expires_at
    }
}

/// What the request's cookie resolved to.
#[derive(Debug, Clone)]
pub enum SessionState {
    /// No cookie, or one that is unknown, revoked or expired.
    Anonymous,
    /// Password done, second factor missing.
    Pending(PendingSession),
    /// Fully signed in.
    Authenticated(AuthenticatedSession),
}

#[derive(Debug)]
enum Current {
    Anonymous,
    Active(Arc<CachedSession>),
}

/// The session of one request, put into the request extensions by [`SessionLayer`](super::SessionLayer).
///
/// Cloning is cheap; clones share state, so a sign-in made through one clone is seen by all.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    manager: SessionManager,
    cookies: Cookies,
    meta: ClientMeta,
    current: Mutex<Current>,
    /// Set when the response must carry a new or cleared cookie.
    changed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        manager: SessionManager,
        cookies: Cookies,
        meta: ClientMeta,
        loaded: Option<Arc<CachedSession>>,
    ) -> Self {
        let current = loaded.map_or(Current::Anonymous, Current::Active);
        Self {
            inner: Arc::new(Inner {
                manager,
                cookies,
                meta,
                current: Mutex::new(current),
                changed: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn current(&self) -> Option<Arc<CachedSession>> {
        match &*self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Current::Anonymous => None,
            Current::Active(s) => Some(Arc::clone(s)),
        }
    }

    fn set_current(&self, next: Current) {
        *self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next;
        self.inner
            .changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn changed(&self) -> bool {
        self.inner
            .changed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        match self.current() {
            None => SessionState::Anonymous,
            Some(s) => match s.record.kind {
                SessionKind::Pending => SessionState::Pending(PendingSession { inner: s }),
                SessionKind::Full => {
                    let idle_expires_at = self.inner.manager.idle_deadline(&s);
                    SessionState::Authenticated(AuthenticatedSession {
                        inner: s,
                        idle_expires_at,
                    })
                }
            },
        }
    }

    /// The fully authenticated session, or why there is none. With
    /// [`SessionConfig::require_mfa`](super::SessionConfig::require_mfa), an `aal1` session is
    /// refused too ([`SessionRejection::MfaRequired`]).
    pub fn authenticated(&self) -> Result<AuthenticatedSession, SessionRejection> {
        let s = self.signed_in()?;
        if self.inner.manager.config().require_mfa && s.aal() < Aal::Aal2 {
            return Err(SessionRejection::MfaRequired);
        }
        Ok(s)
    }

    /// The fully authenticated session at any assurance level: what the auth service's own
    /// routes accept (an `aal1` user must be able to enrol when MFA is required).
    pub(crate) fn signed_in(&self) -> Result<AuthenticatedSession, SessionRejection> {
        match self.state() {
            SessionState::Authenticated(s) => Ok(s),
            SessionState::Pending(_) => Err(SessionRejection::MfaRequired),
            SessionState::Anonymous => Err(SessionRejection::Unauthenticated),
        }
    }

    /// The pending session, if that is the state.
    pub fn pending(&self) -> Option<PendingSession> {
        match self.state() {
            SessionState::Pending(p) => Some(p),
            _ => None,
        }
    }

    /// The manager behind this session.
    pub fn manager(&self) -> &SessionManager {
        &self.inner.manager
    }

    /// Where the request came from.
    pub fn client(&self) -> &ClientMeta {
        &self.inner.meta
    }

    pub(crate) fn current_hash(&self) -> Option<SessionIdHash> {
        self.current().map(|s| s.record.id_hash)
    }

    /// Signs `user` in with a new token, replacing whatever session the request carried.
    ///
    /// `verified_hash` is the password hash the request just verified, if any: the session is
    /// created only if it is still the user's hash ([`SessionError::CredentialsChanged`]
    /// otherwise), so that a sign-in racing a password change cannot outlive it.
    pub async fn login(
        &self,
        user: &UserId,
        aal: Aal,
        verified_hash: Option<&str>,
    ) -> Result<AuthenticatedSession, SessionError> {
        let (token, cached) = self
            .inner
            .manager
            .create(
                self.current_hash().as_ref(),
                user,
                SessionKind::Full,
                aal,
                &self.inner.meta,
                verified_hash,
            )
            .await?;
        Ok(self.activate(&token, cached))
    }

    /// Starts a pending session for `user` (password verified, second factor to come).
    ///
    /// `verified_hash` works as in [`Session::login`].
    pub async fn begin_pending(
        &self,
        user: &UserId,
        verified_hash: Option<&str>,
    ) -> Result<PendingSession, SessionError> {
        let (token, cached) = self
            .inner
            .manager
            .create(
                self.current_hash().as_ref(),
                user,
                SessionKind::Pending,
                Aal::Aal1,
                &self.inner.meta,
                verified_hash,
            )
            .await?;
        self.issue(&token, Current::Active(Arc::clone(&cached)));
        Ok(PendingSession { inner: cached })
    }

    /// Marks a fresh proof of a factor: new token, `authenticated_at = now`.
    ///
    /// Fails with [`SessionError::Revoked`] if the session was revoked meanwhile (it is never
    /// resurrected), and with [`SessionError::CredentialsChanged`] if `verified_hash` is given
    /// and is no longer the user's password hash.
    pub async fn reauthenticated(
        &self,
        session: &AuthenticatedSession,
        aal: Aal,
        verified_hash: Option<&str>,
    ) -> Result<AuthenticatedSession, SessionError> {
        let method = if verified_hash.is_some() {
            "password"
        } else {
            "other"
        };
        let event = self.inner.manager.reauthentication_event(
            &session.inner,
            aal,
            self.inner.meta.actor(),
            method,
        );
        let (token, cached) = self
            .inner
            .manager
            .rotate(
                &session.inner,
                aal,
                verified_hash,
                std::slice::from_ref(&event),
            )
            .await?;
        Ok(self.activate(&token, cached))
    }

    /// A second factor was proven on a full session (step-up, enrolment, re-authentication
    /// with a code): new token, `aal2`, `authenticated_at = now`; `events` are written in the
    /// same transaction. [`SessionError::Revoked`] if the session ended meanwhile.
    pub(crate) async fn second_factor_proven(
        &self,
        session: &AuthenticatedSession,
        events: &[crate::audit::NewAuditEvent],
    ) -> Result<AuthenticatedSession, SessionError> {
        let (token, cached) = self
            .inner
            .manager
            .rotate(&session.inner, Aal::Aal2, None, events)
            .await?;
        Ok(self.activate(&token, cached))
    }

    /// Completes a pending sign-in after its second factor: a new full session at `aal2`
    /// replaces the pending one (new token and handle, SECURITY.md #9); `events` are written in
    /// the same transaction. [`SessionError::Revoked`] if the pending session ended meanwhile.
    pub(crate) async fn complete_pending(
        &self,
        pending: &PendingSession,
        events: &[crate::audit::NewAuditEvent],
    ) -> Result<AuthenticatedSession, SessionError> {
        let (token, cached) = self.inner.manager.promote(&pending.inner, events).await?;
        Ok(self.activate(&token, cached))
    }

    /// The request's client as an audit actor.
    pub(crate) fn actor(&self) -> crate::audit::AuditActor {
        self.inner.meta.actor()
    }

    /// Replaces the user's password hash `expected` (the one this request verified) with
    /// `phc`, ends every other session and gives this one a new token, in one transaction
    /// (SECURITY.md #9, #19). [`SessionError::CredentialsChanged`] if the password changed
    /// meanwhile.
    pub async fn password_changed(
        &self,
        session: &AuthenticatedSession,
        expected: &str,
        phc: &str,
    ) -> Result<AuthenticatedSession, SessionError> {
        let (token, cached) = self
            .inner
            .manager
            .change_password(&session.inner, expected, phc, self.inner.meta.actor())
            .await?
            .ok_or(SessionError::CredentialsChanged)?;
        Ok(self.activate(&token, cached))
    }

    /// Ends the session server-side and clears the cookie.
    pub async fn logout(&self) -> Result<(), SessionError> {
        if let Some(current) = self.current() {
            let event = crate::audit::NewAuditEvent::new(
                crate::audit::AuditEventType::Logout,
                Some(current.record.user_id.clone()),
                self.inner.manager.now(),
                self.inner.meta.actor(),
            );
            // A pending session never signed in, so its end is no logout.
            let audit = (current.record.kind == SessionKind::Full).then_some(&event);
            self.inner
                .manager
                .revoke_audited(&current.record.id_hash, audit)
                .await?;
        }
        self.clear();
        Ok(())
    }

    /// Forgets the session in this request and clears the cookie (it was revoked elsewhere).
    pub(crate) fn clear(&self) {
        self.inner
            .cookies
            .remove(removal_cookie(&self.inner.manager));
        self.set_current(Current::Anonymous);
    }

    /// Sends `token` as the cookie and makes `cached` this request's authenticated session.
    fn activate(&self, token: &SessionToken, cached: Arc<CachedSession>) -> AuthenticatedSession {
        self.issue(token, Current::Active(Arc::clone(&cached)));
        let idle_expires_at = self.inner.manager.idle_deadline(&cached);
        AuthenticatedSession {
            inner: cached,
            idle_expires_at,
        }
    }

    fn issue(&self, token: &SessionToken, next: Current) {
        self.inner
            .cookies
            .add(session_cookie(&self.inner.manager, token.to_cookie_value()));
        self.set_current(next);
    }
}

fn session_cookie(manager: &SessionManager, value: String) -> Cookie<'static> {
    let cfg = &manager.config().cookie;
    // No Max-Age/Expires: a browser-session cookie; the server enforces every timeout
    // (SECURITY.md #4).
    Cookie::build((cfg.full_name(), value))
        .http_only(true)
        .secure(cfg.secure)
        .same_site(SameSite::Lax)
        .path("/")
        .build()
}

pub(crate) fn removal_cookie(manager: &SessionManager) -> Cookie<'static> {
    session_cookie(manager, String::new())
}
