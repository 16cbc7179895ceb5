//! Account lifecycle endpoints: verify-first sign-up, e-mail verification, password reset,
//! and the user's audit trail. Also the password-attempt logic shared by `login`,
//! `reauthenticate` and `password/change` (lockout with device cookies) and the notices mailed
//! on the way.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use tower_cookies::Cookies;

use super::AuthState;
use super::dto::{
    AuditEventView, AuditPage, AuditQuery, EmailOnly, ResendBody, ResetPassword, StatusView,
    TokenBody, UserSession,
};
use super::error::ApiError;
use super::handlers::{FullSession, PendingRehash, parse_email, user_session, verify_password};
use super::json::{JsonBody, MaybeJsonBody};
use crate::account::{OneTimeToken, RegistrationMode};
use crate::audit::{AuditActor, AuditEventType, NewAuditEvent};
use crate::error::ErrorCode;
use crate::mail::MailMessage;
use crate::ratelimit::{AttemptDecision, Flow, LockoutKey, RateKey};
use crate::session::{Aal, Session};
use crate::store::{NewAccountToken, NewUser, StoreError, TokenEffect, TokenPurpose};
use crate::user::{Email, UserId, UserRecord};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The request's cookie jar (installed by the authkit layer).
pub(crate) struct Jar(pub(crate) Cookies);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Jar {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Cookies>()
            .cloned()
            .map(Jar)
            .ok_or_else(|| {
                ApiError::new(ErrorCode::Internal)
                    .with_detail("the authkit layer is not installed in front of the auth service")
            })
    }
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(StatusView {
            status: "accepted".into(),
        }),
    )
        .into_response()
}

impl super::AuthStateInner {
    /// Queues a mail; failures are logged (without the body) and never reach the client:
    /// whether a mail was sent must not show in the response.
    pub(crate) async fn send_mail(&self, message: MailMessage) {
        let Some(outbox) = &self.outbox else {
            tracing::warn!(
                kind = message.kind.as_str(),
                "no mail delivery configured; mail dropped"
            );
            return;
        };
        let kind = message.kind;
        if let Err(error) = outbox.enqueue(message).await {
            tracing::error!(kind = kind.as_str(), %error, "could not queue a mail");
        }
    }

    /// Counts one mail to `email` against the flow's per-account quota; `false` when spent.
    /// These quotas end silently (MISSION.md: "the per-account limit silently sends nothing").
    pub(crate) async fn account_quota_allows(&self, flow: Flow, email: &Email) -> bool {
        let Some(quota) = self.limits.flow(flow).per_account else {
            return true;
        };
        match self
            .limiter
            .hit(&RateKey::account(flow, email), quota, self.clock.now())
            .await
        {
            Ok(decision) => decision.is_allowed(),
            Err(error) => {
                // Better one mail too many than a reset that never arrives.
                tracing::error!(%error, flow = flow.as_str(), "rate limiter failed; allowing");
                true
            }
        }
    }

    /// Writes a stand-alone audit event; a failure is logged, not fatal (the action it
    /// records did not change stored state, e.g. a refused sign-in).
    pub(crate) async fn audit(&self, event: NewAuditEvent) {
        if let Err(error) = self.store.append_audit(&event).await {
            tracing::error!(%error, event = event.event_type.as_str(), "could not write an audit event");
        }
    }
}

/// The outcome of [`password_attempt`].
pub(crate) struct Attempt {
    /// The password was right and the account not locked for this client.
    pub(crate) ok: bool,
    /// The client held a valid device cookie for the account.
    pub(crate) known_device: bool,
    /// An upgrade of the stored hash, to start after the caller's session write.
    pub(crate) rehash: Option<PendingRehash>,
}

/// Checks `password` for `email`/`user` under the account lockout (SECURITY.md #20, #22).
///
/// The lockout key is the account's, or this browser's own when it carries a valid device
/// cookie for the account (so an attacker's failures cannot lock the owner out). A locked key
/// answers like a wrong password after the same argon2 work. Failures and new locks are
/// audited; a success resets the counters.
pub(crate) async fn password_attempt(
    state: &AuthState,
    jar: &Cookies,
    actor: &AuditActor,
    email: &Email,
    user: Option<&UserRecord>,
    password: &SecretString,
) -> ApiResult<Attempt> {
    let device = user.and_then(|u| known_device(state, jar, u));
    let key = match &device {
        Some(d) => LockoutKey::device(Flow::Login, email, d),
        None => LockoutKey::account(Flow::Login, email),
    };
    // Attempts on one key run one at a time on this instance (see `attempt_gates`): each sees
    // the count its predecessors left. Counting before the check still bounds what parallel
    // requests on other instances can overrun.
    let gate = state
        .attempt_gates
        .get_with(key.as_str().to_owned(), async {
            std::sync::Arc::new(tokio::sync::Mutex::new(()))
        })
        .await;
    let turn = gate.lock().await;
    let decision = state
        .limiter
        .begin_attempt(&key, &state.limits.lockout, state.clock.now())
        .await
        .map_err(|e| ApiError::new(ErrorCode::ServiceUnavailable).with_source(e))?;
    let user_id = user.map(|u| u.id.clone());
    let failed = |reason: &str| {
        NewAuditEvent::new(
            AuditEventType::LoginFailed,
            user_id.clone(),
            state.clock.now(),
            actor.clone(),
        )
        .with_details(serde_json::json!({ "reason": reason }))
    };
    let locks_now = match decision {
        AttemptDecision::Locked { .. } => {
            // Nothing more to count: let the next attempt in while this one does its dummy work.
            drop(turn);
            // The same argon2 work as a real check: the lock must not show in the timing.
            let _ = state.hasher.verify(password, None).await?;
            state.audit(failed("locked")).await;
            return Ok(Attempt {
                ok: false,
                known_device: device.is_some(),
                rehash: None,
            });
        }
        AttemptDecision::Proceed { locks_now } => locks_now,
    };
    let checked = verify_password(state, user, password).await?;
    if !checked.ok {
        state.audit(failed("invalid_credentials")).await;
        // Also for unknown addresses (without a user): the same writes whether or not the
        // account exists (SECURITY.md #20).
        if locks_now {
            let scope = if device.is_some() {
                "device"
            } else {
                "account"
            };
            state
                .audit(
                    NewAuditEvent::new(
                        AuditEventType::AccountLocked,
                        user_id.clone(),
                        state.clock.now(),
                        actor.clone(),
                    )
                    .with_details(serde_json::json!({ "scope": scope })),
                )
                .await;
        }
        return Ok(Attempt {
            ok: false,
            known_device: device.is_some(),
            rehash: None,
        });
    }
    // A proven password ends the run of consecutive failures of the counter it was counted
    // on. A known browser's success leaves the account's counter alone: otherwise each of the
    // owner's routine sign-ins would hand an attacker a fresh set of free guesses.
    if let Err(error) = state.limiter.attempt_succeeded(&key).await {
        tracing::error!(%error, "could not reset the lockout counter");
    }
    Ok(Attempt {
        ok: user.is_some(),
        known_device: device.is_some(),
        rehash: checked.rehash,
    })
}

/// The browser's device id if it carries a device cookie for `user`: one counts only for the
/// account it was issued to, under its current password, within its maximum age.
pub(crate) fn known_device(
    state: &AuthState,
    jar: &Cookies,
    user: &UserRecord,
) -> Option<crate::ratelimit::DeviceId> {
    let value = jar.get(&state.devices.cookie_name())?;
    state.devices.verify(
        value.value(),
        &user.id,
        user.password_hash.as_deref().unwrap_or(""),
        state.clock.now(),
    )
}

/// Sets a fresh device cookie for `user`, bound to the user's current password hash.
pub(crate) fn issue_device_cookie(state: &AuthState, jar: &Cookies, user: &UserRecord) {
    let credentials = user.password_hash.as_deref().unwrap_or("");
    match state
        .devices
        .issue(&user.id, credentials, state.clock.now(), state.rng.as_ref())
    {
        Ok(value) => jar.add(state.devices.cookie(value)),
        Err(error) => tracing::error!(%error, "could not issue a device cookie"),
    }
}

/// After a full session was issued: a fresh device cookie, and a notice if this browser was
/// new. Never before the session exists (a login that fails after the password check, or
/// stops at the second factor, earns neither).
pub(crate) async fn after_sign_in(
    state: &AuthState,
    jar: &Cookies,
    actor: &AuditActor,
    user: &UserRecord,
    notify_new_device: bool,
) {
    issue_device_cookie(state, jar, user);
    if notify_new_device
        && state.accounts.notify_new_sign_in
        && let Some(templates) = &state.templates
    {
        let message = templates.new_sign_in(
            &user.email,
            state.clock.now(),
            actor.ip.clone(),
            actor.user_agent.clone(),
        );
        state.send_mail(message).await;
    }
}

/// Mails the "your password changed" notice, if enabled (SECURITY.md #19).
pub(crate) async fn notify_password_changed(state: &AuthState, to: &Email, ip: Option<String>) {
    if state.accounts.notify_password_changed
        && let Some(templates) = &state.templates
    {
        let message = templates.password_changed(to, state.clock.now(), ip);
        state.send_mail(message).await;
    }
}

/// Creates a single-use token for `purpose`, stores its hash (valid for `ttl`) and returns it
/// for the mail.
async fn store_new_token(
    state: &AuthState,
    purpose: TokenPurpose,
    user_id: Option<UserId>,
    email: &Email,
    password_hash: Option<String>,
    ttl: std::time::Duration,
) -> Result<OneTimeToken, ApiError> {
    let token = OneTimeToken::generate(state.rng.as_ref()).map_err(ApiError::internal)?;
    let now = state.clock.now();
    state
        .store
        .insert_token(&NewAccountToken {
            token_hash: token.hash(),
            purpose,
            user_id,
            email: email.clone(),
            password_hash,
            created_at: now,
            expires_at: now.saturating_add(ttl),
        })
        .await?;
    Ok(token)
}

/// Mails a fresh verification link for `purpose` (an existing user's address, or a pending
/// registration carrying its password hash).
async fn send_verification(
    state: &AuthState,
    purpose: TokenPurpose,
    user_id: Option<UserId>,
    email: &Email,
    password_hash: Option<String>,
) -> Result<(), ApiError> {
    let Some(templates) = &state.templates else {
        tracing::warn!("no mail delivery configured; verification link not sent");
        return Ok(());
    };
    let ttl = state.accounts.verification_ttl;
    let token = store_new_token(state, purpose, user_id, email, password_hash, ttl).await?;
    let message = templates
        .verification(email, token.text(), ttl)
        .map_err(ApiError::internal)?;
    state.send_mail(message).await;
    Ok(())
}

/// Runs `work` after the response: used where the response must not depend, even in its
/// timing, on whether an account exists (SECURITY.md #20). Errors are logged.
///
/// The work starts after a short random pause (10–30 ms), so that it never competes with the
/// response for the CPU: measured without it, the account-dependent database work following a
/// known address delayed the 202 itself by about 60 µs on a busy two-core machine.
fn in_background<F>(state: &AuthState, work: F)
where
    F: std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
{
    let jitter = crate::rng::random_array::<2>(state.rng.as_ref())
        .map(|b| u64::from(u16::from_le_bytes(b)) % 20)
        .unwrap_or(0);
    let pause = std::time::Duration::from_millis(10 + jitter);
    tokio::spawn(async move {
        tokio::time::sleep(pause).await;
        if let Err(error) = work.await {
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            tracing::error!(code = %error.code(), cause, "background account work failed");
        }
    });
}

/// `register` in mode `verify-first`: the same 202 whatever the address; the link creates
/// the account.
///
/// Both paths do the same work before answering (one argon2 hash, one token row, one queued
/// mail), so neither the body nor the timing tells whether the address is taken
/// (SECURITY.md #20); when the 202 leaves, the mail is in the durable queue (a failure to queue
/// is logged and answered the same way, since an error only for free addresses would reveal
/// the taken ones). For a taken address the
/// owner gets a notice without a link, and the token row (which no mail carries) just
/// expires.
pub(crate) async fn register_verify_first(
    state: AuthState,
    email: Email,
    password: &SecretString,
) -> ApiResult {
    let phc = state.hasher.hash(password).await?;
    if state.account_quota_allows(Flow::Register, &email).await {
        let existing = state.store.user_by_email(&email).await?;
        let ttl = state.accounts.verification_ttl;
        let token = store_new_token(
            &state,
            TokenPurpose::Registration,
            None,
            &email,
            Some(phc),
            ttl,
        )
        .await?;
        if let Some(templates) = &state.templates {
            let message = match &existing {
                Some(user) => templates.account_exists(&user.email),
                None => templates
                    .verification(&email, token.text(), ttl)
                    .map_err(ApiError::internal)?,
            };
            state.send_mail(message).await;
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(StatusView {
            status: "verification_sent".into(),
        }),
    )
        .into_response())
}

/// Mails a verification link to a newly created (instant-mode) account.
pub(crate) async fn after_instant_registration(state: &AuthState, user: &UserRecord) {
    if state.templates.is_none() {
        return;
    }
    if let Err(error) = send_verification(
        state,
        TokenPurpose::VerifyEmail,
        Some(user.id.clone()),
        &user.email,
        None,
    )
    .await
    {
        tracing::error!(code = %error.code(), "could not send the verification mail");
    }
}

fn token_hash(raw: &str) -> ApiResult<[u8; 32]> {
    OneTimeToken::hash_of(raw).ok_or_else(|| ApiError::new(ErrorCode::InvalidToken))
}

/// Prove the e-mail address with the token from the verification mail.
#[utoipa::path(
    post, path = "/email/verify", tag = "account", request_body = TokenBody,
    responses(
        (status = 201, description = "A verify-first sign-up is complete: the account exists and is signed in (session cookie set)", body = UserSession),
        (status = 204, description = "The existing account's address is verified"),
        (status = 400, description = "`invalid_token` (unknown, used or expired) or `validation_failed`", body = crate::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = crate::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify_email(
    State(state): State<AuthState>,
    session: Session,
    Jar(jar): Jar,
    JsonBody(body): JsonBody<TokenBody>,
) -> ApiResult {
    let hash = token_hash(&body.token)?;
    let now = state.clock.now();
    let actor = session.client().actor();
    let event = NewAuditEvent::new(AuditEventType::EmailVerified, None, now, actor.clone());
    if let Some(pending) = state
        .store
        .peek_token(&hash, TokenPurpose::Registration, now)
        .await?
    {
        let id = UserId::generate(state.rng.as_ref()).map_err(ApiError::internal)?;
        let new = NewUser {
            id,
            email: pending.email.clone(),
            password_hash: pending.password_hash.clone(),
            email_verified: true,
            now,
        };
        let redeemed = match state
            .store
            .redeem_token(
                &hash,
                TokenPurpose::Registration,
                now,
                TokenEffect::CreateUser(new),
                event,
            )
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return Err(ApiError::new(ErrorCode::InvalidToken)),
            // Someone else finished signing up with this address first.
            Err(StoreError::Conflict) => return Err(ApiError::new(ErrorCode::InvalidToken)),
            Err(e) => return Err(e.into()),
        };
        let user = redeemed.user;
        // No password was proven by this request (the link was), so no verified hash: the
        // account was created in the same transaction that consumed the token.
        let s = session.login(&user.id, Aal::Aal1, None).await?;
        // The account's first browser: a device cookie, but no "new sign-in" notice.
        after_sign_in(&state, &jar, &actor, &user, false).await;
        return Ok((StatusCode::CREATED, Json(user_session(&user, &s))).into_response());
    }
    match state
        .store
        .redeem_token(
            &hash,
            TokenPurpose::VerifyEmail,
            now,
            TokenEffect::VerifyEmail,
            event,
        )
        .await?
    {
        Some(redeemed) => {
            state.users.invalidate(&redeemed.user.id).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(ApiError::new(ErrorCode::InvalidToken)),
    }
}

/// Send the verification link again: for the signed-in user's address, or (without a
/// session) for the account with `{email}` if it is not verified yet. A pending verify-first
/// sign-up gets no new link (it may be someone else's attempt): register again instead.
#[utoipa::path(
    post, path = "/email/resend", tag = "account", request_body(content = ResendBody, description = "`{email}` when not signed in; no body (or `{}`) when signed in"),
    responses(
        (status = 202, description = "Accepted (also when nothing was sent: the answer never says whether an address has an account)", body = StatusView),
        (status = 400, description = "`validation_failed`", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`mfa_required`: a pending session", body = crate::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = crate::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn resend_verification(
    State(state): State<AuthState>,
    session: Session,
    MaybeJsonBody(body): MaybeJsonBody<ResendBody>,
) -> ApiResult {
    if session.pending().is_some() {
        return Err(ApiError::new(ErrorCode::MfaRequired));
    }
    if let Ok(current) = session.signed_in() {
        let user = state
            .store
            .user_by_id(current.user_id())
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        if !user.email_verified
            && state
                .account_quota_allows(Flow::EmailVerification, &user.email)
                .await
        {
            send_verification(
                &state,
                TokenPurpose::VerifyEmail,
                Some(user.id.clone()),
                &user.email,
                None,
            )
            .await?;
        }
        return Ok(accepted());
    }
    let raw = body
        .and_then(|b| b.email)
        .ok_or_else(|| ApiError::validation("`email` is required when not signed in"))?;
    let email = parse_email(&raw)?;
    let st = state.clone();
    in_background(&state, async move {
        if !st
            .account_quota_allows(Flow::EmailVerification, &email)
            .await
        {
            return Ok(());
        }
        // Only an existing account's address gets a new link. A pending sign-up does not: the
        // newest one for an address may be someone else's, made with their password, and a
        // link to it would hand them the account (pre-hijacking). Its owner registers again.
        if let Some(user) = st.store.user_by_email(&email).await?
            && !user.email_verified
        {
            send_verification(
                &st,
                TokenPurpose::VerifyEmail,
                Some(user.id.clone()),
                &user.email,
                None,
            )
            .await?;
        }
        Ok(())
    });
    Ok(accepted())
}

/// Ask for a password-reset link.
#[utoipa::path(
    post, path = "/password/forgot", tag = "account", request_body = EmailOnly,
    responses(
        (status = 202, description = "Accepted, whether or not the address has an account (same body, same timing). The link goes to the address stored for the account, never to one taken from the request", body = StatusView),
        (status = 400, description = "`validation_failed` (e.g. `email` given as an array)", body = crate::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: per client address only; the per-account limit silently sends nothing", body = crate::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn forgot_password(
    State(state): State<AuthState>,
    JsonBody(body): JsonBody<EmailOnly>,
) -> ApiResult {
    let email = parse_email(&body.email)?;
    let st = state.clone();
    // Everything that depends on the account runs after the response (SECURITY.md #20, #21).
    in_background(&state, async move {
        if !st.account_quota_allows(Flow::PasswordReset, &email).await {
            return Ok(());
        }
        let Some(user) = st.store.user_by_email(&email).await? else {
            return Ok(());
        };
        let Some(templates) = &st.templates else {
            tracing::warn!("no mail delivery configured; reset link not sent");
            return Ok(());
        };
        let ttl = st.accounts.reset_ttl;
        let token = store_new_token(
            &st,
            TokenPurpose::ResetPassword,
            Some(user.id.clone()),
            &user.email,
            None,
            ttl,
        )
        .await?;
        // To the stored address (GitLab CVE-2023-7028): never to input.
        let message = templates
            .password_reset(&user.email, token.text(), ttl)
            .map_err(ApiError::internal)?;
        st.send_mail(message).await;
        Ok(())
    });
    Ok(accepted())
}

/// Set a new password with the token from the reset mail. Every session of the account ends;
/// this never signs anyone in (the user signs in next, with the second factor if enrolled).
#[utoipa::path(
    post, path = "/password/reset", tag = "account", request_body = ResetPassword,
    responses(
        (status = 204, description = "Password set; every session of the account revoked"),
        (status = 400, description = "`invalid_token`, `password_too_weak` or `validation_failed`", body = crate::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = crate::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reset_password(
    State(state): State<AuthState>,
    session: Session,
    JsonBody(body): JsonBody<ResetPassword>,
) -> ApiResult {
    let hash = token_hash(&body.token)?;
    let now = state.clock.now();
    let token = state
        .store
        .peek_token(&hash, TokenPurpose::ResetPassword, now)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken))?;
    state
        .policy
        .check(body.new_password.expose_secret(), Some(&token.email))?;
    let phc = state.hasher.hash(&body.new_password).await?;
    let actor = session.client().actor();
    let redeemed = state
        .store
        .redeem_token(
            &hash,
            TokenPurpose::ResetPassword,
            state.clock.now(),
            TokenEffect::ResetPassword { password_hash: phc },
            NewAuditEvent::new(AuditEventType::PasswordReset, None, now, actor.clone()),
        )
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken))?;
    let user = redeemed.user;
    state.sessions.evict(&redeemed.revoked_sessions).await;
    state.users.invalidate(&user.id).await;
    // The new password ends both locks: whoever spent the account's password or MFA budget
    // no longer knows the password.
    if let Err(error) = state
        .limiter
        .clear(&LockoutKey::account(Flow::Login, &user.email))
        .await
    {
        tracing::error!(%error, "could not clear the lockout after a reset");
    }
    if let Err(error) = state.store.clear_mfa_failures(&user.id).await {
        tracing::error!(%error, "could not clear the MFA lockout after a reset");
    }
    // If this browser was signed in to the same account, its session was among those just
    // deleted: drop the cookie too. Another account's session is none of this request's
    // business, and the reset is committed: a failure here is logged, not answered.
    let own = session
        .signed_in()
        .ok()
        .map(|s| s.user_id().clone())
        .or_else(|| session.pending().map(|p| p.user_id().clone()));
    if own.as_ref() == Some(&user.id)
        && let Err(error) = session.logout().await
    {
        tracing::warn!(%error, "could not clear the session cookie after a reset");
    }
    notify_password_changed(&state, &user.email, actor.ip.clone()).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// Most events per page of `GET /audit`.
const MAX_AUDIT_PAGE: u32 = 100;

/// The user's own security events, newest first.
#[utoipa::path(
    get, path = "/audit", tag = "account",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "`validation_failed` (bad cursor or limit)", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn audit_events(
    State(state): State<AuthState>,
    FullSession { current, .. }: FullSession,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|_| ApiError::validation("invalid `cursor` or `limit`"))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::validation(format!(
            "`limit` must be between 1 and {MAX_AUDIT_PAGE}"
        )));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::validation("invalid `cursor`"))?,
        ),
    };
    let mut events = state
        .store
        .audit_for_user(current.user_id(), before, limit + 1)
        .await?;
    let more = events.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        events.last().map(|e| e.id.to_string())
    } else {
        None
    };
    let events = events.into_iter().map(AuditEventView::from).collect();
    Ok(Json(AuditPage {
        events,
        next_cursor,
    })
    .into_response())
}

/// Whether `register` runs verify-first.
pub(crate) fn verify_first(state: &AuthState) -> bool {
    state.accounts.registration == RegistrationMode::VerifyFirst
}
