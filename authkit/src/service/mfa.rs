//! The MFA endpoints: TOTP enrolment, the second step of a sign-in, step-up, disabling MFA and
//! regenerating backup codes (MISSION.md §3, SECURITY.md #9, #23–28).
//!
//! Every code is checked under the account's own MFA budget (a per-account quota and the
//! progressive lockout, counted before the check, see [`crate::ratelimit`]): a six-digit code
//! space is small, so the budget, not the client address, is what stops guessing. A TOTP step
//! is accepted once per user (a conditional update in the store), a backup code once (a
//! conditional delete): of any number of concurrent requests with one code, on any number of
//! instances sharing the database, exactly one succeeds.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use secrecy::ExposeSecret as _;
use tower_cookies::Cookies;

use super::AuthState;
use super::account::{Jar, after_sign_in, known_device};
use super::dto::{BackupCodesView, MfaEnrolment, MfaStatus, SecondFactor};
use super::error::ApiError;
use super::handlers::{FullSession, user_session};
use super::json::JsonBody;
use crate::audit::{AuditActor, AuditEventType, NewAuditEvent};
use crate::error::{ErrorCode, Problem};
use crate::mail::MfaChange;
use crate::mfa::{
    BackupCode, TotpCheck, TotpCode, TotpConfig, TotpSecret, generate_backup_codes,
    qr_png_data_uri, qr_svg,
};
use crate::ratelimit::{AttemptDecision, Flow, RateKey};
use crate::session::{AuthenticatedSession, PendingSession, Session, SessionState};
use crate::store::{NewTotp, StoredBackupCode, TotpRecord};
use crate::user::{UserId, UserRecord};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The second factor a request presents.
enum Factor {
    Totp(TotpCode),
    Backup(BackupCode),
}

impl Factor {
    /// Exactly one of `code` or `backup_code`, well-formed for the user's authenticator.
    fn parse(body: &SecondFactor, digits: u8) -> ApiResult<Self> {
        match (&body.code, &body.backup_code) {
            (Some(code), None) => TotpCode::parse(code.expose_secret(), digits)
                .map(Self::Totp)
                .map_err(|_| ApiError::validation(format!("`code` must be {digits} digits"))),
            (None, Some(code)) => BackupCode::parse(code.expose_secret())
                .map(Self::Backup)
                .map_err(|_| ApiError::validation("`backup_code` is not a backup code")),
            _ => Err(ApiError::validation(
                "send exactly one of `code` or `backup_code`",
            )),
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::Backup(_) => "backup_code",
        }
    }
}

/// Every refused code gets this answer, whether wrong, reused, or over the account's budget: the
/// title of `invalid_credentials` speaks of passwords, so the detail says which credential.
fn invalid_code() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials)
        .with_detail("the code is not valid: wrong, already used, or tried too often")
}

/// The TOTP parameters of a stored authenticator: its own algorithm, digits and period, with
/// the configured acceptance window.
fn totp_config(state: &AuthState, record: &TotpRecord) -> TotpConfig {
    TotpConfig {
        algorithm: record.algorithm,
        digits: record.digits,
        step: std::time::Duration::from_secs(record.period),
        ..state.mfa.totp.clone()
    }
}

fn open_secret(state: &AuthState, user: &UserId, record: &TotpRecord) -> ApiResult<TotpSecret> {
    TotpSecret::open(&state.sealer, &record.secret, user).map_err(ApiError::internal)
}

fn event(
    state: &AuthState,
    kind: AuditEventType,
    user: &UserId,
    actor: &AuditActor,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent::new(kind, Some(user.clone()), state.clock.now(), actor.clone())
        .with_details(details)
}

/// One attempt under the account's MFA budget, holding the account's turn on this instance
/// until it ends.
struct Budget {
    locks_now: bool,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// Starts an MFA attempt for `user`: the per-account quota of this instance, then the durable
/// lockout kept on the authenticator's row (counted before the check, shared by every
/// instance; see [`MfaStore::begin_mfa_attempt`](crate::store::MfaStore::begin_mfa_attempt)).
/// Over budget the answer is that of a wrong code (MISSION.md: a locked account answers
/// `invalid_credentials`); the lock is audited.
async fn begin_attempt(
    state: &AuthState,
    user: &UserRecord,
    actor: &AuditActor,
    purpose: &str,
) -> ApiResult<Budget> {
    let now = state.clock.now();
    let refused = |reason: &'static str| async move {
        state
            .audit(event(
                state,
                AuditEventType::MfaFailed,
                &user.id,
                actor,
                serde_json::json!({ "purpose": purpose, "reason": reason }),
            ))
            .await;
        invalid_code()
    };
    if let Some(quota) = state.limits.flow(Flow::Mfa).per_account {
        let decision = state
            .limiter
            .hit(&RateKey::account(Flow::Mfa, &user.email), quota, now)
            .await
            .map_err(|e| ApiError::new(ErrorCode::ServiceUnavailable).with_source(e))?;
        if !decision.is_allowed() {
            return Err(refused("rate_limited").await);
        }
    }
    // Attempts of one account take turns on this instance, as password attempts do: counting
    // before the check must not lock out parallel correct attempts.
    let gate = state
        .attempt_gates
        .get_with(format!("mfa:{}", user.id), async {
            Arc::new(tokio::sync::Mutex::new(()))
        })
        .await;
    let turn = gate.lock_owned().await;
    match state
        .store
        .begin_mfa_attempt(&user.id, &state.limits.lockout, now)
        .await?
    {
        AttemptDecision::Locked { .. } => Err(refused("locked").await),
        AttemptDecision::Proceed { locks_now } => Ok(Budget {
            locks_now,
            _turn: turn,
        }),
    }
}

impl Budget {
    /// Audits the failure (and a lock it starts) and returns the client's error.
    async fn failed(
        self,
        state: &AuthState,
        user: &UserRecord,
        actor: &AuditActor,
        method: &str,
        purpose: &str,
    ) -> ApiError {
        state
            .audit(event(
                state,
                AuditEventType::MfaFailed,
                &user.id,
                actor,
                serde_json::json!({ "method": method, "purpose": purpose }),
            ))
            .await;
        if self.locks_now {
            state
                .audit(event(
                    state,
                    AuditEventType::AccountLocked,
                    &user.id,
                    actor,
                    serde_json::json!({ "scope": "mfa" }),
                ))
                .await;
        }
        invalid_code()
    }
}

/// Checks `factor` against the user's confirmed authenticator or backup codes, under the
/// budget. `Ok(())` when proven (the step or code is used up, the failure count reset);
/// `invalid_credentials` when not. The request's session must still exist when its turn
/// comes: a double-submitted form must not spend a second code on a session already replaced.
async fn prove(
    state: &AuthState,
    session: &Session,
    user: &UserRecord,
    record: &TotpRecord,
    factor: &Factor,
    purpose: &str,
) -> ApiResult<()> {
    let actor = session.actor();
    let budget = begin_attempt(state, user, &actor, purpose).await?;
    let live = match session.current_hash() {
        Some(hash) => state.store.session(&hash).await?.is_some(),
        None => false,
    };
    if !live {
        return Err(ApiError::new(ErrorCode::Unauthenticated));
    }
    let proven = match factor {
        Factor::Totp(code) => prove_totp(state, user, record, code, &actor).await?,
        Factor::Backup(code) => {
            let candidates = state.backup_codes.candidates(&user.id, code);
            let used = event(
                state,
                AuditEventType::BackupCodeUsed,
                &user.id,
                &actor,
                serde_json::json!({ "purpose": purpose }),
            );
            state
                .store
                .consume_backup_code(&user.id, &candidates, &used)
                .await?
        }
    };
    if proven {
        Ok(())
    } else {
        Err(budget
            .failed(state, user, &actor, factor.method(), purpose)
            .await)
    }
}

/// The TOTP half of [`prove`]: `true` when the code's step was accepted now.
async fn prove_totp(
    state: &AuthState,
    user: &UserRecord,
    record: &TotpRecord,
    code: &TotpCode,
    actor: &AuditActor,
) -> ApiResult<bool> {
    let secret = match TotpSecret::open(&state.sealer, &record.secret, &user.id) {
        Ok(secret) => secret,
        Err(error) => {
            // E.g. the key that sealed it was retired: no code can be right, and the operator
            // must know (the user can still use a backup code, or disable and re-enrol).
            tracing::error!(user_id = %user.id, %error, "a TOTP secret could not be opened");
            return Ok(false);
        }
    };
    let step = match totp_config(state, record).check(
        &secret,
        code,
        state.clock.now(),
        record.last_step,
    ) {
        TotpCheck::Accepted { step } => step,
        TotpCheck::Reused { step } => {
            totp_reused(state, user, actor, step).await;
            return Ok(false);
        }
        TotpCheck::Rejected => return Ok(false),
    };
    // The store has the last word: a concurrent request (on any instance) may have taken the
    // step, or the authenticator may have been replaced meanwhile.
    if !state
        .store
        .accept_totp_step(&user.id, &record.secret, step)
        .await?
    {
        let now = state
            .store
            .totp(&user.id)
            .await?
            .filter(|now| now.confirmed);
        let Some(now) = now else { return Ok(false) };
        if now.secret == record.secret {
            totp_reused(state, user, actor, step).await;
            return Ok(false);
        }
        // Re-sealed meanwhile (a key rotation): the same secret under a newer key is the same
        // authenticator, so the code counts. Anything else is a new authenticator.
        let resealed = TotpSecret::open(&state.sealer, &now.secret, &user.id).is_ok_and(|s| {
            use subtle::ConstantTimeEq as _;
            bool::from(s.expose().ct_eq(secret.expose()))
        });
        if !resealed
            || !state
                .store
                .accept_totp_step(&user.id, &now.secret, step)
                .await?
        {
            return Ok(false);
        }
        return Ok(true);
    }
    // Rotation: a secret sealed under an older key moves to the newest one at its next use.
    if !state.sealer.is_current(&record.secret) {
        match secret.seal(&state.sealer, &user.id, state.rng.as_ref()) {
            Ok(resealed) => {
                if let Err(error) = state
                    .store
                    .reseal_totp(&user.id, &record.secret, &resealed)
                    .await
                {
                    tracing::warn!(%error, "could not re-seal a TOTP secret under the newest key");
                }
            }
            Err(error) => tracing::warn!(%error, "could not re-seal a TOTP secret"),
        }
    }
    Ok(true)
}

/// A code whose step was already accepted: audited and the user notified (SECURITY.md #24,
/// RFC 6238 §5.2). The client sees an ordinary wrong code.
async fn totp_reused(state: &AuthState, user: &UserRecord, actor: &AuditActor, step: u64) {
    state
        .audit(event(
            state,
            AuditEventType::TotpReuseRejected,
            &user.id,
            actor,
            serde_json::json!({ "step": step }),
        ))
        .await;
    notify(state, user, MfaChange::CodeReused, actor).await;
}

async fn notify(state: &AuthState, user: &UserRecord, change: MfaChange, actor: &AuditActor) {
    if let Some(templates) = &state.templates {
        let message =
            templates.mfa_changed(&user.email, change, state.clock.now(), actor.ip.clone());
        state.send_mail(message).await;
    }
}

/// The user behind a session; a deleted account ends the session.
async fn load_user(state: &AuthState, session: &Session, id: &UserId) -> ApiResult<UserRecord> {
    match state.store.user_by_id(id).await? {
        Some(user) => Ok(user),
        None => {
            session.logout().await?;
            Err(ApiError::new(ErrorCode::Unauthenticated))
        }
    }
}

/// The user's confirmed authenticator, or `validation_failed` when MFA is off.
async fn confirmed_totp(state: &AuthState, user: &UserRecord) -> ApiResult<TotpRecord> {
    match state.store.totp(&user.id).await? {
        Some(record) if record.confirmed => Ok(record),
        _ => Err(ApiError::validation(
            "two-factor authentication is not on for this account",
        )),
    }
}

/// Ten fresh backup codes and what to store of them.
fn new_backup_codes(
    state: &AuthState,
    user: &UserId,
) -> ApiResult<(Vec<BackupCode>, Vec<StoredBackupCode>)> {
    let codes = generate_backup_codes(state.rng.as_ref()).map_err(ApiError::internal)?;
    let stored = codes
        .iter()
        .map(|code| {
            let (key_id, hash) = state.backup_codes.hash(user, code);
            StoredBackupCode { hash, key_id }
        })
        .collect();
    Ok((codes, stored))
}

fn codes_view(codes: &[BackupCode]) -> BackupCodesView {
    BackupCodesView {
        backup_codes: codes.iter().map(|c| c.as_str().to_owned()).collect(),
    }
}

/// Sensitive MFA changes need the password proven in this session within the
/// re-authentication window (MISSION.md: "a recent password re-authentication").
fn require_recent_password(state: &AuthState, s: &AuthenticatedSession) -> ApiResult<()> {
    if s.password_verified_within(state.sessions.config().reauth_window, state.clock.now()) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::ReauthRequired))
    }
}

/// Start TOTP enrolment: a new secret, its `otpauth://` URI and QR codes. MFA is on only after
/// `mfa/verify` confirms it with a first code; the secret is never shown again.
#[utoipa::path(
    post, path = "/mfa/enable", tag = "mfa",
    responses(
        (status = 200, body = MfaEnrolment),
        (status = 400, description = "`validation_failed`: MFA is already on", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated` or `mfa_required`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauth_required`: sign in again first (re-authentication window)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn enable(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
) -> ApiResult {
    if !current.authenticated_within(state.sessions.config().reauth_window, state.clock.now()) {
        return Err(ApiError::new(ErrorCode::ReauthRequired));
    }
    let user = load_user(&state, &session, current.user_id()).await?;
    let already = || {
        ApiError::validation(
            "two-factor authentication is already on; disable it first to enrol a new authenticator",
        )
    };
    if user.mfa_enabled {
        return Err(already());
    }
    let config = &state.mfa.totp;
    let secret = TotpSecret::generate(state.rng.as_ref(), config.secret_bytes)
        .map_err(ApiError::internal)?;
    let uri = config
        .otpauth_uri(&secret, user.email.as_str())
        .map_err(ApiError::internal)?;
    let enrolment = MfaEnrolment {
        secret: secret.to_base32().to_string(),
        otpauth_uri: uri.to_string(),
        qr_svg: qr_svg(&uri).map_err(ApiError::internal)?,
        qr_png: qr_png_data_uri(&uri).map_err(ApiError::internal)?,
    };
    let new = NewTotp {
        secret: secret
            .seal(&state.sealer, &user.id, state.rng.as_ref())
            .map_err(ApiError::internal)?,
        algorithm: config.algorithm,
        digits: config.digits,
        period: config.step.as_secs(),
        created_at: state.clock.now(),
    };
    if !state.store.begin_totp_enrolment(&user.id, &new).await? {
        return Err(already());
    }
    Ok(Json(enrolment).into_response())
}

/// Confirm enrolment with a first code (answers the backup codes, once), complete a pending
/// sign-in (a new full session at `aal2`), or step a full session up to `aal2`.
#[utoipa::path(
    post, path = "/mfa/verify", tag = "mfa", request_body = SecondFactor,
    responses(
        (status = 200, description = "Enrolment confirmed: `{backup_codes}`; or sign-in completed / stepped up: `{user, session}` with a new session cookie", body = super::dto::MfaVerified),
        (status = 400, description = "`validation_failed`: malformed code, no enrolment in progress, or the enrolment expired", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials` (wrong or reused code, or the account's MFA attempts are spent for now), `unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many attempts from this client address (a spent per-account budget answers 401 like a wrong code)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn verify(
    State(state): State<AuthState>,
    session: Session,
    Jar(jar): Jar,
    JsonBody(body): JsonBody<SecondFactor>,
) -> ApiResult {
    match session.state() {
        SessionState::Anonymous => Err(ApiError::new(ErrorCode::Unauthenticated)),
        SessionState::Pending(pending) => {
            complete_sign_in(&state, &session, &jar, &pending, &body).await
        }
        SessionState::Authenticated(current) => {
            let user = load_user(&state, &session, current.user_id()).await?;
            match state.store.totp(&user.id).await? {
                Some(record) if record.confirmed => {
                    step_up(&state, &session, &current, &user, &record, &body).await
                }
                Some(record) => {
                    confirm_enrolment(&state, &session, &current, &user, &record, &body).await
                }
                None => Err(ApiError::validation(
                    "no enrolment in progress: start with POST /mfa/enable",
                )),
            }
        }
    }
}

async fn complete_sign_in(
    state: &AuthState,
    session: &Session,
    jar: &Cookies,
    pending: &PendingSession,
    body: &SecondFactor,
) -> ApiResult {
    let user = load_user(state, session, pending.user_id()).await?;
    let record = match state.store.totp(&user.id).await? {
        Some(record) if record.confirmed => record,
        // MFA was turned off since the password step: the pending session proves too little.
        _ => return Err(invalid_code()),
    };
    let factor = Factor::parse(body, record.digits)?;
    let actor = session.actor();
    prove(state, session, &user, &record, &factor, "sign_in").await?;
    let method = factor.method();
    let events = [
        // MISSION.md: `login.succeeded` is written when the full session is issued.
        event(
            state,
            AuditEventType::LoginSucceeded,
            &user.id,
            &actor,
            serde_json::json!({ "aal": "aal2", "method": method }),
        ),
        event(
            state,
            AuditEventType::MfaSucceeded,
            &user.id,
            &actor,
            serde_json::json!({ "method": method, "purpose": "sign_in" }),
        ),
    ];
    let full = session.complete_pending(pending, &events).await?;
    let notify_new_device = known_device(state, jar, &user).is_none();
    after_sign_in(state, jar, &actor, &user, notify_new_device).await;
    Ok(Json(user_session(&user, &full)).into_response())
}

async fn step_up(
    state: &AuthState,
    session: &Session,
    current: &AuthenticatedSession,
    user: &UserRecord,
    record: &TotpRecord,
    body: &SecondFactor,
) -> ApiResult {
    let factor = Factor::parse(body, record.digits)?;
    let actor = session.actor();
    prove(state, session, user, record, &factor, "step_up").await?;
    let events = [event(
        state,
        AuditEventType::MfaSucceeded,
        &user.id,
        &actor,
        serde_json::json!({ "method": factor.method(), "purpose": "step_up" }),
    )];
    let s = session.second_factor_proven(current, &events).await?;
    Ok(Json(user_session(user, &s)).into_response())
}

async fn confirm_enrolment(
    state: &AuthState,
    session: &Session,
    current: &AuthenticatedSession,
    user: &UserRecord,
    record: &TotpRecord,
    body: &SecondFactor,
) -> ApiResult {
    let expires = record.created_at.saturating_add(state.mfa.enrolment_ttl);
    if state.clock.now() >= expires {
        return Err(ApiError::validation(
            "the enrolment expired: start again with POST /mfa/enable",
        ));
    }
    let code = match Factor::parse(body, record.digits)? {
        Factor::Totp(code) => code,
        Factor::Backup(_) => {
            return Err(ApiError::validation(
                "confirm the enrolment with a `code` from the authenticator app",
            ));
        }
    };
    let actor = session.actor();
    let budget = begin_attempt(state, user, &actor, "enrolment").await?;
    let secret = open_secret(state, &user.id, record)?;
    let step = match totp_config(state, record).check(&secret, &code, state.clock.now(), None) {
        TotpCheck::Accepted { step } => step,
        TotpCheck::Reused { .. } | TotpCheck::Rejected => {
            return Err(budget
                .failed(state, user, &actor, "totp", "enrolment")
                .await);
        }
    };
    let (codes, stored) = new_backup_codes(state, &user.id)?;
    let enabled = event(
        state,
        AuditEventType::MfaEnabled,
        &user.id,
        &actor,
        serde_json::json!({ "method": "totp" }),
    );
    let confirmed = state
        .store
        .confirm_totp(
            &user.id,
            &record.secret,
            step,
            &stored,
            state.clock.now(),
            &enabled,
        )
        .await?;
    if !confirmed {
        // A second `enable` replaced this secret meanwhile: its code proves the old one.
        return Err(ApiError::validation(
            "the enrolment was restarted meanwhile: use the newest QR code",
        ));
    }
    drop(budget);
    state.users.invalidate(&user.id).await;
    // The user just proved a second factor: this session is `aal2`, under a new id
    // (a privilege change, SECURITY.md #9).
    let s = session.second_factor_proven(current, &[]).await?;
    // The offer of SECURITY.md #27: a session stolen before enrolment need not outlive it.
    if body.revoke_other_sessions {
        state
            .sessions
            .revoke_all_except(&user.id, Some(s.id_hash()), &actor)
            .await?;
    }
    notify(state, user, MfaChange::Enabled, &actor).await;
    Ok(Json(codes_view(&codes)).into_response())
}

/// The checks `disable` and `backup-codes` share (SECURITY.md #27): the password proven in this
/// session within the window, MFA on, and a current factor proven under the budget. Answers
/// the user and the method of the factor used.
async fn prove_for_change(
    state: &AuthState,
    session: &Session,
    current: &AuthenticatedSession,
    body: &SecondFactor,
    purpose: &str,
) -> ApiResult<(UserRecord, &'static str)> {
    require_recent_password(state, current)?;
    let user = load_user(state, session, current.user_id()).await?;
    let record = confirmed_totp(state, &user).await?;
    let factor = Factor::parse(body, record.digits)?;
    prove(state, session, &user, &record, &factor, purpose).await?;
    Ok((user, factor.method()))
}

/// After `disable` or `backup-codes`: the optional end of every other session, and the notice.
async fn after_change(
    state: &AuthState,
    session: &Session,
    current: &AuthenticatedSession,
    user: &UserRecord,
    body: &SecondFactor,
    change: MfaChange,
) -> ApiResult<()> {
    let actor = session.actor();
    if body.revoke_other_sessions {
        state
            .sessions
            .revoke_all_except(&user.id, Some(current.id_hash()), &actor)
            .await?;
    }
    notify(state, user, change, &actor).await;
    Ok(())
}

/// Turn MFA off. Needs the password proven in this session within the re-authentication
/// window *and* a current second factor in the body.
#[utoipa::path(
    post, path = "/mfa/disable", tag = "mfa", request_body = SecondFactor,
    responses(
        (status = 204, description = "MFA is off; the authenticator and backup codes are deleted"),
        (status = 400, description = "`validation_failed`: malformed code, or MFA is not on", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials` (wrong or reused code), `unauthenticated`, `mfa_required`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauth_required`: re-authenticate with the password first", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn disable(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
    JsonBody(body): JsonBody<SecondFactor>,
) -> ApiResult {
    let (user, method) = prove_for_change(&state, &session, &current, &body, "disable").await?;
    let disabled = event(
        &state,
        AuditEventType::MfaDisabled,
        &user.id,
        &session.actor(),
        serde_json::json!({ "method": method }),
    );
    if !state
        .store
        .disable_mfa(&user.id, state.clock.now(), &disabled)
        .await?
    {
        return Err(ApiError::validation(
            "two-factor authentication is not on for this account",
        ));
    }
    state.users.invalidate(&user.id).await;
    after_change(
        &state,
        &session,
        &current,
        &user,
        &body,
        MfaChange::Disabled,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Replace the backup codes with ten new ones (answered once). Needs, like `disable`, a recent
/// password re-authentication and a current second factor.
#[utoipa::path(
    post, path = "/mfa/backup-codes", tag = "mfa", request_body = SecondFactor,
    responses(
        (status = 200, body = BackupCodesView),
        (status = 400, description = "`validation_failed`: malformed code, or MFA is not on", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`, `unauthenticated`, `mfa_required`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauth_required`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn regenerate_backup_codes(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
    JsonBody(body): JsonBody<SecondFactor>,
) -> ApiResult {
    let (user, method) =
        prove_for_change(&state, &session, &current, &body, "regenerate_backup_codes").await?;
    let (codes, stored) = new_backup_codes(&state, &user.id)?;
    let regenerated = event(
        &state,
        AuditEventType::BackupCodesRegenerated,
        &user.id,
        &session.actor(),
        serde_json::json!({ "method": method }),
    );
    if !state
        .store
        .replace_backup_codes(&user.id, &stored, state.clock.now(), &regenerated)
        .await?
    {
        return Err(ApiError::validation(
            "two-factor authentication is not on for this account",
        ));
    }
    after_change(
        &state,
        &session,
        &current,
        &user,
        &body,
        MfaChange::BackupCodesRegenerated,
    )
    .await?;
    Ok(Json(codes_view(&codes)).into_response())
}

/// Whether MFA is on and how many backup codes are left.
#[utoipa::path(
    get, path = "/mfa/status", tag = "mfa",
    responses(
        (status = 200, body = MfaStatus),
        (status = 401, description = "`unauthenticated` or `mfa_required`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn status(
    State(state): State<AuthState>,
    FullSession { current, .. }: FullSession,
) -> ApiResult {
    let user = current.user_id();
    let enabled = state
        .store
        .totp(user)
        .await?
        .is_some_and(|record| record.confirmed);
    let backup_codes_remaining = if enabled {
        state.store.backup_codes_remaining(user).await?
    } else {
        0
    };
    Ok(Json(MfaStatus {
        enabled,
        backup_codes_remaining,
    })
    .into_response())
}

/// `reauthenticate` with `{code}`: a current TOTP code refreshes the time of last
/// authentication (not the password proof that `disable` and `backup-codes` need).
pub(crate) async fn reauthenticate_with_code(
    state: &AuthState,
    session: &Session,
    current: &AuthenticatedSession,
    user: &UserRecord,
    code: &secrecy::SecretString,
) -> ApiResult {
    let Some(record) = state.store.totp(&user.id).await?.filter(|r| r.confirmed) else {
        return Err(ApiError::validation(
            "no second factor is enrolled; send `password`",
        ));
    };
    let code = TotpCode::parse(code.expose_secret(), record.digits)
        .map_err(|_| ApiError::validation(format!("`code` must be {} digits", record.digits)))?;
    let factor = Factor::Totp(code);
    let actor = session.actor();
    prove(state, session, user, &record, &factor, "reauthentication").await?;
    let events = [event(
        state,
        AuditEventType::LoginSucceeded,
        &user.id,
        &actor,
        serde_json::json!({ "aal": "aal2", "reauthentication": true, "method": "totp" }),
    )];
    let s = session.second_factor_proven(current, &events).await?;
    Ok(Json(user_session(user, &s)).into_response())
}
