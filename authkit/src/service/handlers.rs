//! The auth endpoints. Each handler documents its OpenAPI contract.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use secrecy::{ExposeSecret as _, SecretString};

use super::AuthState;
use super::account::{
    Jar, after_instant_registration, after_sign_in, issue_device_cookie, notify_password_changed,
    password_attempt, register_verify_first, verify_first,
};
use super::dto::{
    ChangePassword, Credentials, CsrfTokenView, MfaRequired, Reauthenticate, SessionList,
    SessionView, UserSession, UserView,
};
use super::error::ApiError;
use super::json::JsonBody;
use crate::error::{ErrorCode, Problem};
use crate::password::{PolicyViolation, Verification};
use crate::session::{Aal, AuthenticatedSession, Session, SessionKind};
use crate::store::NewUser;
use crate::user::{Email, UserId, UserRecord};

type ApiResult<T = Response> = Result<T, ApiError>;

/// A fully authenticated session, checked before the body is read: an anonymous or pending
/// request is refused with 401 whatever its body holds.
pub(crate) struct FullSession {
    pub(crate) session: Session,
    pub(crate) current: AuthenticatedSession,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FullSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let session = parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            ApiError::new(ErrorCode::Internal)
                .with_detail("the authkit layer is not installed in front of the auth service")
        })?;
        let current = session.signed_in()?;
        Ok(Self { session, current })
    }
}

pub(crate) fn parse_email(raw: &str) -> ApiResult<Email> {
    Email::parse(raw).map_err(|_| ApiError::validation("`email` is not a valid e-mail address"))
}

/// Refuses over-long passwords before any hashing: a 1 MB "password" is a client mistake
/// (400), not work for argon2 (SECURITY.md #16).
fn check_max_length(state: &AuthState, password: &SecretString, field: &str) -> ApiResult<()> {
    match state.policy.check_length(password.expose_secret()) {
        Err(PolicyViolation::TooLong { max }) => Err(ApiError::validation(format!(
            "`{field}` must have at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

pub(crate) async fn load_user(
    state: &AuthState,
    session: &Session,
    id: &UserId,
) -> ApiResult<UserRecord> {
    match state.store.user_by_id(id).await? {
        Some(user) => Ok(user),
        None => {
            // The account is gone: its sessions must end with it.
            session.logout().await?;
            Err(ApiError::new(ErrorCode::Unauthenticated))
        }
    }
}

pub(crate) fn user_session(user: &UserRecord, session: &AuthenticatedSession) -> UserSession {
    UserSession {
        user: UserView::from(user),
        session: SessionView::current(session),
    }
}

/// The result of [`verify_password`].
pub(crate) struct Checked {
    /// The password matched.
    pub(crate) ok: bool,
    /// The stored hash is outdated: upgrade it once the request's own writes are done.
    pub(crate) rehash: Option<PendingRehash>,
}

/// A rehash to run in the background after the sign-in it came from: started earlier, its
/// write could land between the password check and the session's creation, which insists
/// that the verified hash is still current (and would refuse a correct first login).
pub(crate) struct PendingRehash {
    state: AuthState,
    id: UserId,
    password: SecretString,
    old: String,
}

impl PendingRehash {
    /// Hashes with the current parameters off the request path, and replaces the stored hash
    /// only if it is still the verified one, so it can never undo a password change.
    pub(crate) fn start(self) {
        tokio::spawn(async move {
            let Self {
                state,
                id,
                password,
                old,
            } = self;
            let result = match state.hasher.hash(&password).await {
                Ok(phc) => state
                    .store
                    .upgrade_password_hash(&id, &old, &phc, state.clock.now())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(user_id = %id, %error, "password rehash failed; will retry at next login");
            }
        });
    }
}

/// Verifies `password` for `user` (or the dummy hash when there is no such user). A match
/// with outdated parameters or a legacy scheme returns a [`PendingRehash`] for the caller to
/// start after its own writes, so that the upgrade's cost does not show in this response
/// (Django CVE-2016-2513); the hasher pads the verification of weaker hashes to the current
/// cost.
pub(crate) async fn verify_password(
    state: &AuthState,
    user: Option<&UserRecord>,
    password: &SecretString,
) -> ApiResult<Checked> {
    let stored = user.and_then(|u| u.password_hash.as_deref());
    match state.hasher.verify(password, stored).await? {
        Verification::Mismatch => Ok(Checked {
            ok: false,
            rehash: None,
        }),
        Verification::Match { needs_rehash } => {
            let rehash = match (needs_rehash, user, stored) {
                (true, Some(user), Some(old)) => Some(PendingRehash {
                    state: state.clone(),
                    id: user.id.clone(),
                    password: password.clone(),
                    old: old.to_owned(),
                }),
                _ => None,
            };
            Ok(Checked { ok: true, rehash })
        }
    }
}

/// Create an account. Mode `verify-first` (the default): 202 whether or not the address is
/// taken, and the mailed link creates the account. Mode `instant`: 201 with a session, 409
/// when taken.
#[utoipa::path(
    post, path = "/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Mode `instant`: account created and signed in; session cookie set", body = UserSession),
        (status = 202, description = "Mode `verify-first`: `{\"status\":\"verification_sent\"}` whether or not the address is taken; no cookie", body = super::dto::StatusView),
        (status = 400, description = "`validation_failed` or `password_too_weak`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Mode `instant`: `account_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register(
    State(state): State<AuthState>,
    session: Session,
    Jar(jar): Jar,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult {
    let email = parse_email(&body.email)?;
    state
        .policy
        .check(body.password.expose_secret(), Some(&email))?;
    if verify_first(&state) {
        return register_verify_first(state, email, &body.password).await;
    }
    let phc = state.hasher.hash(&body.password).await?;
    let id = UserId::generate(state.rng.as_ref()).map_err(ApiError::internal)?;
    let created = state
        .store
        .create_user(NewUser {
            id,
            email,
            password_hash: Some(phc),
            email_verified: false,
            now: state.clock.now(),
        })
        .await;
    let user = match created {
        Ok(user) => user,
        Err(crate::store::StoreError::Conflict) => {
            return Err(ApiError::new(ErrorCode::AccountExists));
        }
        Err(e) => return Err(e.into()),
    };
    let s = session.login(&user.id, Aal::Aal1, None).await?;
    // The account's first browser: a device cookie, but no "new sign-in" notice.
    after_sign_in(&state, &jar, &session.client().actor(), &user, false).await;
    after_instant_registration(&state, &user).await;
    Ok((StatusCode::CREATED, Json(user_session(&user, &s))).into_response())
}

/// Sign in with e-mail and password.
#[utoipa::path(
    post, path = "/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in (session cookie set), or `{mfa_required}` with a pending-session cookie", body = UserSession),
        (status = 400, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: an unknown address, a wrong password and a locked account answer identically", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many attempts from this client address", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login(
    State(state): State<AuthState>,
    session: Session,
    Jar(jar): Jar,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult {
    let email = parse_email(&body.email)?;
    check_max_length(&state, &body.password, "password")?;
    let user = state.store.user_by_email(&email).await?;
    let actor = session.client().actor();
    let attempt =
        password_attempt(&state, &jar, &actor, &email, user.as_ref(), &body.password).await?;
    let (true, Some(user)) = (attempt.ok, user) else {
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    };
    let rehash = attempt.rehash;
    if user.mfa_enabled {
        session
            .begin_pending(&user.id, user.password_hash.as_deref())
            .await?;
        // The device cookie and the new-sign-in notice wait for the second factor.
        if let Some(r) = rehash {
            r.start();
        }
        let body = MfaRequired {
            mfa_required: true,
            methods: vec!["totp".into(), "backup_code".into()],
        };
        return Ok(Json(body).into_response());
    }
    let s = session
        .login(&user.id, Aal::Aal1, user.password_hash.as_deref())
        .await?;
    after_sign_in(&state, &jar, &actor, &user, !attempt.known_device).await;
    if let Some(r) = rehash {
        r.start();
    }
    Ok(Json(user_session(&user, &s)).into_response())
}

/// End the session server-side and clear the cookie.
#[utoipa::path(
    post, path = "/logout", tag = "auth",
    responses((status = 204, description = "Signed out (also when there was no session)"))
)]
pub(crate) async fn logout(session: Session) -> ApiResult {
    session.logout().await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    // "cache", not "cookies": wiping cookies would also drop the device cookie of the
    // lockout protection (MISSION.md contract details).
    response
        .headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    Ok(response)
}

/// The current user and session.
#[utoipa::path(
    get, path = "/session", tag = "auth",
    responses(
        (status = 200, body = UserSession),
        (status = 401, description = "`unauthenticated`, or `mfa_required` for a pending session", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn current_session(
    State(state): State<AuthState>,
    FullSession {
        session,
        current: s,
    }: FullSession,
) -> ApiResult {
    let user = match state.users.get(s.user_id()).await {
        Some(user) => user,
        None => {
            let user = std::sync::Arc::new(load_user(&state, &session, s.user_id()).await?);
            state
                .users
                .insert(s.user_id().clone(), std::sync::Arc::clone(&user))
                .await;
            user
        }
    };
    Ok(Json(user_session(&user, &s)).into_response())
}

/// The user's live sessions.
#[utoipa::path(
    get, path = "/sessions", tag = "sessions",
    responses(
        (status = 200, body = SessionList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn list_sessions(
    State(state): State<AuthState>,
    FullSession { current, .. }: FullSession,
) -> ApiResult {
    let now = state.clock.now();
    let config = state.sessions.config();
    let sessions = state
        .sessions
        .list(current.user_id())
        .await?
        .iter()
        .filter_map(|record| {
            if record.handle == current.handle() {
                return Some(SessionView::current(&current));
            }
            let idle = match record.kind {
                SessionKind::Pending => record.expires_at,
                SessionKind::Full => record.last_seen_at.saturating_add(config.idle_timeout),
            };
            (now < record.expires_at && now < idle)
                .then(|| SessionView::stored(record, idle, false))
        })
        .collect();
    Ok(Json(SessionList { sessions }).into_response())
}

/// Account changes need the account's full assurance: a user with MFA (or any user, when MFA
/// is required) must have passed the second factor in this session, so that a password-only
/// session from before enrolment cannot change the password or end the owner's sessions.
pub(crate) async fn require_full_assurance(
    state: &AuthState,
    session: &Session,
    current: &AuthenticatedSession,
    user: Option<&UserRecord>,
) -> ApiResult<()> {
    if current.aal() >= Aal::Aal2 {
        return Ok(());
    }
    let needs_mfa = state.mfa.required
        || match user {
            Some(user) => user.mfa_enabled,
            None => {
                load_user(state, session, current.user_id())
                    .await?
                    .mfa_enabled
            }
        };
    if needs_mfa {
        return Err(ApiError::new(ErrorCode::MfaRequired)
            .with_detail("pass the second factor first: POST /api/v1/auth/mfa/verify"));
    }
    Ok(())
}

pub(crate) fn require_recent_auth(state: &AuthState, s: &AuthenticatedSession) -> ApiResult<()> {
    if s.authenticated_within(state.sessions.config().reauth_window, state.clock.now()) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::ReauthRequired))
    }
}

/// Revoke one of the user's sessions (the current one signs out).
#[utoipa::path(
    delete, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's public id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauth_required`: revoking another session needs a recent sign-in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn revoke_session(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
    handle: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult {
    let Path(handle) = handle.map_err(|_| ApiError::validation("malformed session id"))?;
    if handle == current.handle() {
        return logout(session).await;
    }
    require_recent_auth(&state, &current)?;
    require_full_assurance(&state, &session, &current, None).await?;
    if state
        .sessions
        .revoke_by_handle(current.user_id(), &handle, &session.client().actor())
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(ErrorCode::NotFound))
    }
}

/// Revoke every session of the user except the current one.
#[utoipa::path(
    post, path = "/sessions/revoke-others", tag = "sessions",
    responses(
        (status = 204, description = "Other sessions revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauth_required`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn revoke_other_sessions(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
) -> ApiResult {
    require_recent_auth(&state, &current)?;
    require_full_assurance(&state, &session, &current, None).await?;
    state
        .sessions
        .revoke_all_except(
            current.user_id(),
            Some(current.id_hash()),
            &session.client().actor(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Prove the password again: refreshes the time of last authentication and rotates the
/// session id.
#[utoipa::path(
    post, path = "/reauthenticate", tag = "auth", request_body = Reauthenticate,
    responses(
        (status = 200, body = UserSession),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`, `unauthenticated` or `mfa_required`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn reauthenticate(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
    Jar(jar): Jar,
    JsonBody(body): JsonBody<Reauthenticate>,
) -> ApiResult {
    let password = match (body.password, body.code) {
        (Some(p), None) => p,
        (None, Some(code)) => {
            let user = load_user(&state, &session, current.user_id()).await?;
            return super::mfa::reauthenticate_with_code(&state, &session, &current, &user, &code)
                .await;
        }
        _ => {
            return Err(ApiError::validation(
                "send exactly one of `password` or `code`",
            ));
        }
    };
    check_max_length(&state, &password, "password")?;
    let user = load_user(&state, &session, current.user_id()).await?;
    // The same lockout as sign-in: a stolen session must not become a password oracle.
    let actor = session.client().actor();
    let attempt =
        password_attempt(&state, &jar, &actor, &user.email, Some(&user), &password).await?;
    if !attempt.ok {
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    }
    let s = session
        .reauthenticated(&current, Aal::Aal1, user.password_hash.as_deref())
        .await?;
    if let Some(r) = attempt.rehash {
        r.start();
    }
    Ok(Json(user_session(&user, &s)).into_response())
}

/// Change the password; every other session is revoked.
#[utoipa::path(
    post, path = "/password/change", tag = "auth", request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; other sessions revoked; this session gets a new id"),
        (status = 400, description = "`validation_failed` or `password_too_weak`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials` (wrong current password), `unauthenticated`, `mfa_required`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn change_password(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
    Jar(jar): Jar,
    JsonBody(body): JsonBody<ChangePassword>,
) -> ApiResult {
    check_max_length(&state, &body.current_password, "current_password")?;
    let user = load_user(&state, &session, current.user_id()).await?;
    require_full_assurance(&state, &session, &current, Some(&user)).await?;
    // Under the sign-in lockout, like `reauthenticate`. No rehash: the hash is replaced below.
    let actor = session.client().actor();
    let attempt = password_attempt(
        &state,
        &jar,
        &actor,
        &user.email,
        Some(&user),
        &body.current_password,
    )
    .await?;
    if !attempt.ok {
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    }
    state
        .policy
        .check(body.new_password.expose_secret(), Some(&user.email))?;
    let phc = state.hasher.hash(&body.new_password).await?;
    let verified = user
        .password_hash
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidCredentials))?;
    // One transaction: new hash (only if the verified one is still current), every other
    // session ended, and this one under a new id (a privilege change, SECURITY.md #9).
    session.password_changed(&current, verified, &phc).await?;
    state.users.invalidate(&user.id).await;
    // The browser that proved the old password and chose the new one stays a known device
    // (device cookies are bound to the password hash, so all others end here).
    issue_device_cookie(
        &state,
        &jar,
        &UserRecord {
            password_hash: Some(phc),
            ..user.clone()
        },
    );
    notify_password_changed(&state, &user.email, actor.ip.clone()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A CSRF token bound to the current session, for clients that send no browser headers.
#[utoipa::path(
    get, path = "/csrf", tag = "auth",
    responses(
        (status = 200, body = CsrfTokenView),
        (status = 401, description = "`unauthenticated`: there is no session to bind a token to", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn csrf_token(State(state): State<AuthState>, session: Session) -> ApiResult {
    let hash = session
        .current_hash()
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
    let token = state
        .csrf
        .issue(&hash)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal))?;
    let mut response = Json(CsrfTokenView { token }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
