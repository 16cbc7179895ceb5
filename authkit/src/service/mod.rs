//! The auth endpoints as one tower [`Service`](tower::Service): mount it under
//! `/api/v1/auth` (axum: `Router::nest_service`).
//!
//! Inside, an axum router serves `register`, `login`, `logout`, `session`, `sessions`,
//! `reauthenticate`, `password/change` and `csrf`. Bodies are JSON only; every error is
//! problem+json with a stable code and the request id. Needs [`AuthLayer`](crate::AuthLayer)
//! in front (it provides the session).

mod account;
mod dto;
mod error;
mod handlers;
mod json;
mod mfa;
mod oauth;
mod openapi;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use http::request::Parts;

pub use dto::{
    AuditEventView, AuditPage, AuditQuery, BackupCodesView, ChangePassword, Credentials,
    CsrfTokenView, EmailOnly, MfaEnrolment, MfaRequired, MfaStatus, MfaVerified, Reauthenticate,
    ResendBody, ResetPassword, SecondFactor, SessionList, SessionView, StatusView, TokenBody,
    UserSession, UserView,
};
pub use error::ApiError;
pub(crate) use oauth::OAuthRuntime;
pub use oauth::{LinkRequest, LinkStarted, LinkedAccountList, LinkedAccountView, StartQuery};
pub use openapi::AuthApi;

use crate::clock::Clock;
use crate::csrf::CsrfTokens;
use crate::error::{ErrorCode, RequestId};
use crate::password::{PasswordHasher, PasswordPolicy};
use crate::rng::RandomSource;
use crate::session::{Session, SessionManager};
use crate::store::Store;
use error::PendingProblem;

/// Everything the handlers share. axum clones the state for every request, so it is one
/// `Arc`.
#[derive(Clone)]
pub(crate) struct AuthState(Arc<AuthStateInner>);

impl std::ops::Deref for AuthState {
    type Target = AuthStateInner;

    fn deref(&self) -> &AuthStateInner {
        &self.0
    }
}

impl AuthState {
    pub(crate) fn new(inner: AuthStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

pub(crate) struct AuthStateInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sessions: SessionManager,
    pub(crate) hasher: PasswordHasher,
    pub(crate) policy: Arc<PasswordPolicy>,
    pub(crate) csrf: CsrfTokens,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn RandomSource>,
    /// Users shown by `GET /session`, cached like sessions so that the frontend's most frequent
    /// call costs no query. Password checks always read the store.
    pub(crate) users: moka::future::Cache<crate::user::UserId, Arc<crate::user::UserRecord>>,
    /// One gate per lockout key: the password attempts of one account (or device) on this
    /// instance run one at a time, so that counting an attempt before its check neither lets
    /// parallel guesses overrun the count nor locks out parallel correct sign-ins.
    pub(crate) attempt_gates: moka::future::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Registration mode, token lifetimes, notices.
    pub(crate) accounts: crate::account::AccountConfig,
    /// Where mails go (none: mails are dropped with a warning).
    pub(crate) outbox: Option<Arc<dyn crate::account::MailOutbox>>,
    /// Mail texts and links (present whenever `outbox` is).
    pub(crate) templates: Option<crate::mail::Templates>,
    /// Quotas and lockout counters.
    pub(crate) limiter: Arc<dyn crate::ratelimit::RateLimiter>,
    /// Quotas per flow and the lockout policy.
    pub(crate) limits: Arc<crate::ratelimit::RateLimitConfig>,
    /// Device cookies that exempt a known browser from its account's lockout.
    pub(crate) devices: crate::ratelimit::DeviceCookies,
    /// TOTP parameters, enrolment lifetime, whether MFA is required.
    pub(crate) mfa: crate::mfa::MfaConfig,
    /// Seals TOTP secrets under the encryption key ring.
    pub(crate) sealer: crate::crypto::Sealer,
    /// Hashes backup codes under the pepper key ring.
    pub(crate) backup_codes: crate::mfa::BackupCodeHasher,
    /// OAuth providers (none configured: the `/oauth` routes answer 404).
    pub(crate) oauth: Option<Arc<OAuthRuntime>>,
}

/// The auth endpoints as a tower service. Cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    router: Router,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").finish_non_exhaustive()
    }
}

impl AuthService {
    pub(crate) fn new(state: AuthState, max_body_bytes: usize) -> Self {
        let router = Router::new()
            .route("/register", post(handlers::register))
            .route("/login", post(handlers::login))
            .route("/logout", post(handlers::logout))
            .route("/session", get(handlers::current_session))
            .route("/sessions", get(handlers::list_sessions))
            .route(
                "/sessions/revoke-others",
                post(handlers::revoke_other_sessions),
            )
            .route("/sessions/{id}", delete(handlers::revoke_session))
            .route("/reauthenticate", post(handlers::reauthenticate))
            .route("/password/change", post(handlers::change_password))
            .route("/csrf", get(handlers::csrf_token))
            .route("/email/verify", post(account::verify_email))
            .route("/email/resend", post(account::resend_verification))
            .route("/password/forgot", post(account::forgot_password))
            .route("/password/reset", post(account::reset_password))
            .route("/audit", get(account::audit_events))
            .route("/mfa/enable", post(mfa::enable))
            .route("/mfa/verify", post(mfa::verify))
            .route("/mfa/disable", post(mfa::disable))
            .route("/mfa/backup-codes", post(mfa::regenerate_backup_codes))
            .route("/mfa/status", get(mfa::status))
            .route("/oauth/accounts", get(oauth::accounts))
            .route("/oauth/accounts/{id}", delete(oauth::unlink))
            .route("/oauth/{provider}", get(oauth::start))
            .route("/oauth/{provider}/callback", get(oauth::callback))
            .route("/oauth/{provider}/link", post(oauth::link))
            .fallback(|| async { ApiError::new(ErrorCode::NotFound) })
            .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .layer(axum::middleware::from_fn(render_problems))
            // Outermost: a client over its address budget costs no body read and no hash.
            .layer(crate::ratelimit::RateLimitLayer::new(
                Arc::clone(&state.limiter),
                Arc::clone(&state.limits),
                Arc::clone(&state.clock),
            ))
            .with_state(state);
        Self { router }
    }
}

impl<B> tower::Service<http::Request<B>> for AuthService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as tower::Service<http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Router as tower::Service<http::Request<B>>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.router.call(req)
    }
}

/// Renders [`ApiError`]s as problem+json with the request id, logging internal causes, and
/// marks every auth response `no-store` (SECURITY.md #7).
async fn render_problems(req: Request, next: Next) -> Response {
    let request_id = RequestId::from_headers(req.headers());
    let mut response = next.run(req).await;
    if let Some(PendingProblem(error)) = response.extensions_mut().remove::<PendingProblem>() {
        if error.code() == ErrorCode::Internal || error.code() == ErrorCode::ServiceUnavailable {
            let cause = std::error::Error::source(error.as_ref()).map(crate::util::error_chain);
            tracing::error!(request_id = %request_id, code = %error.code(), cause, "request failed");
        }
        let mut rendered = error.to_problem(&request_id).into_response();
        // Keep what handlers set besides the body (e.g. Set-Cookie from a logout on error).
        for (name, value) in response.headers() {
            if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
                rendered.headers_mut().append(name.clone(), value.clone());
            }
        }
        return rendered;
    }
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            tracing::error!("no authkit Session in the request: is authkit::AuthLayer installed in front of this route?");
            let id = RequestId::from_headers(&parts.headers);
            crate::error::Problem::new(ErrorCode::Internal, &id).into_response()
        })
    }
}
