//! `/oauth/…`: sign-in and linking through OAuth 2 / OpenID Connect providers.
//!
//! The browser-facing routes (`GET /oauth/{provider}` and its callback) answer with redirects,
//! also on failure: the callback sends the browser back to its target with `oauth_error=<code>`
//! (see [`OAuthError::code`]), never a problem+json page and never a 500.
//!
//! Order at the callback (SECURITY.md #29–#31): read the query → take the transaction by the
//! state's hash (single use) → check the browser binding and the provider → the provider's
//! own error, if any → exchange the code with the PKCE verifier → verify the ID token (or ask
//! the user API) → only then look at who signed in.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use http::{HeaderValue, StatusCode, header};
use oauth2::PkceCodeVerifier;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tower_cookies::Cookies;
use utoipa::ToSchema;

use super::account::{Jar, after_sign_in, known_device};
use super::handlers::{FullSession, load_user, require_full_assurance, require_recent_auth};
use super::{ApiError, AuthState};
use crate::audit::{AuditActor, AuditEventType, NewAuditEvent};
use crate::csrf::Origin;
use crate::error::ErrorCode;
use crate::mail::OAuthChange;
use crate::oauth::{
    BrowserBinding, CallbackParams, FlowSecrets, Identity, OAuthConfig, OAuthError, ProviderClient,
    ProviderErrorCode, RedirectTarget, StateToken, TokenSealer,
};
use crate::session::{Aal, Session};
use crate::store::{LinkIntent, NewUser, OAuthAccount, OAuthTransaction, StoreError, Unlink};
use crate::user::{Email, UserId, UserRecord};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The transaction cookie's base name (`__Host-` is prepended when cookies are secure).
const COOKIE: &str = "authkit_oauth";

/// The OAuth part of the auth state.
pub(crate) struct OAuthRuntime {
    pub(crate) config: OAuthConfig,
    pub(crate) providers: Arc<HashMap<String, Arc<ProviderClient>>>,
    pub(crate) tokens: TokenSealer,
    pub(crate) public_origin: Origin,
    pub(crate) refresh_gates: crate::oauth::RefreshGates,
}

impl OAuthRuntime {
    fn provider(&self, name: &str) -> ApiResult<&Arc<ProviderClient>> {
        self.providers
            .get(name)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound).with_detail("unknown provider"))
    }

    fn target(&self, raw: Option<&str>) -> RedirectTarget {
        RedirectTarget::sanitize(
            raw.unwrap_or("/"),
            &self.public_origin,
            &self.config.redirect_origins,
        )
    }
}

fn runtime(state: &AuthState) -> ApiResult<&OAuthRuntime> {
    state
        .oauth
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).with_detail("no OAuth providers"))
}

fn cookie_name(state: &AuthState) -> String {
    if state.sessions.config().cookie.secure {
        format!("__Host-{COOKIE}")
    } else {
        COOKIE.to_owned()
    }
}

/// `?redirect_to=` of `GET /oauth/{provider}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StartQuery {
    /// Where to go afterwards: a same-origin path or an allowed origin (anything else
    /// becomes `/`).
    pub redirect_to: Option<String>,
}

/// Body of `POST /oauth/{provider}/link`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LinkRequest {
    /// Where to go afterwards (as for sign-in).
    pub redirect_to: Option<String>,
}

/// Answer of `POST /oauth/{provider}/link`: navigate the browser there.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStarted {
    /// The provider's authorization URL.
    pub authorization_url: String,
}

/// A linked provider account.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedAccountView {
    /// Public id (for `DELETE /oauth/accounts/{id}`).
    pub id: String,
    /// The provider's configured name.
    pub provider: String,
    /// The address the provider reported, if any.
    pub email: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Last sign-in through it, RFC 3339 UTC.
    pub last_used_at: Option<String>,
}

/// `GET /oauth/accounts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedAccountList {
    /// Oldest first.
    pub accounts: Vec<LinkedAccountView>,
}

/// Start a sign-in: 302 to the provider with state, PKCE (S256) and nonce.
#[utoipa::path(
    get, path = "/oauth/{provider}", tag = "oauth",
    params(("provider" = String, Path, description = "configured provider name"), StartQuery),
    responses(
        (status = 302, description = "To the provider's authorization endpoint; sets the `__Host-authkit_oauth` transaction cookie"),
        (status = 404, description = "`not_found`: no such provider", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AuthState>,
    Jar(jar): Jar,
    provider: Result<Path<String>, PathRejection>,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> ApiResult {
    let rt = runtime(&state)?;
    let client = rt.provider(&path_name(provider)?)?;
    let Query(query) = query.map_err(|_| {
        ApiError::new(ErrorCode::ValidationFailed)
            .with_detail("the query must hold at most one `redirect_to`")
    })?;
    let target = rt.target(query.redirect_to.as_deref());
    match begin(&state, rt, &jar, client, target.clone(), None).await {
        Ok(url) => Ok(found(url.as_str())),
        Err(e) => Ok(failure_redirect(e, Some(&target))),
    }
}

/// Start linking a provider account to the signed-in user: needs a full session that proved
/// a factor within the re-authentication window. Answers the URL to navigate to.
#[utoipa::path(
    post, path = "/oauth/{provider}/link", tag = "oauth",
    params(("provider" = String, Path, description = "configured provider name")),
    request_body(content = LinkRequest, content_type = "application/json"),
    responses(
        (status = 200, body = LinkStarted, description = "Navigate the browser to `authorization_url`; sets the transaction cookie"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauth_required`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`service_unavailable`: the provider cannot be reached", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn link(
    State(state): State<AuthState>,
    Jar(jar): Jar,
    FullSession { session, current }: FullSession,
    provider: Result<Path<String>, PathRejection>,
    super::json::JsonBody(body): super::json::JsonBody<LinkRequest>,
) -> ApiResult {
    let rt = runtime(&state)?;
    let client = rt.provider(&path_name(provider)?)?;
    require_full_assurance(&state, &session, &current, None).await?;
    require_recent_auth(&state, &current)?;
    let target = rt.target(body.redirect_to.as_deref());
    let intent = LinkIntent {
        user_id: current.user_id().clone(),
        session_hash: *current.id_hash().as_bytes(),
    };
    let url = begin(&state, rt, &jar, client, target, Some(intent))
        .await
        .map_err(|e| match e {
            OAuthError::ProviderUnavailable | OAuthError::Misconfigured => {
                ApiError::new(ErrorCode::ServiceUnavailable)
            }
            _ => ApiError::new(ErrorCode::Internal),
        })?;
    Ok(Json(LinkStarted {
        authorization_url: url.into(),
    })
    .into_response())
}

/// Stores a transaction, sets the cookie and builds the provider URL.
async fn begin(
    state: &AuthState,
    rt: &OAuthRuntime,
    jar: &Cookies,
    client: &ProviderClient,
    target: RedirectTarget,
    link: Option<LinkIntent>,
) -> Result<url::Url, OAuthError> {
    let rng = state.rng.as_ref();
    let random = |e| {
        tracing::error!(error = %e, "random source failed");
        OAuthError::Internal
    };
    let state_token = StateToken::generate(rng).map_err(random)?;
    // One binding per browser: a second sign-in started in another tab does not invalidate the
    // first (until either finishes: the callback deletes the cookie).
    let binding = match jar
        .get(&cookie_name(state))
        .and_then(|c| BrowserBinding::parse(c.value()))
    {
        Some(existing) => existing,
        None => BrowserBinding::generate(rng).map_err(random)?,
    };
    let secrets = FlowSecrets::generate(rng).map_err(random)?;
    let state_hash = state_token.hash();
    let url = client
        .authorize_url(
            state_token.as_str(),
            &secrets.nonce,
            &PkceCodeVerifier::new(secrets.pkce_verifier.to_string()),
        )
        .await?;
    let now = state.clock.now();
    let tx = OAuthTransaction {
        state_hash,
        provider: client.config.name.clone(),
        browser_hash: binding.hash(),
        sealed: secrets
            .seal(&state.sealer, &state_hash, rng)
            .map_err(|_| OAuthError::Internal)?,
        redirect_to: target.as_str().to_owned(),
        link,
        created_at: now,
        expires_at: now.saturating_add(rt.config.transaction_ttl),
    };
    state
        .store
        .insert_oauth_transaction(&tx)
        .await
        .map_err(store_failed)?;
    jar.add(transaction_cookie(state, binding.as_str().to_owned(), rt));
    Ok(url)
}

fn transaction_cookie(state: &AuthState, value: String, rt: &OAuthRuntime) -> Cookie<'static> {
    // Lax, not Strict: the provider's redirect back is a cross-site top-level GET
    // (SECURITY.md #2).
    let max_age = i64::try_from(rt.config.transaction_ttl.as_secs()).unwrap_or(600);
    Cookie::build((cookie_name(state), value))
        .path("/")
        .http_only(true)
        .secure(state.sessions.config().cookie.secure)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
}

fn remove_transaction_cookie(state: &AuthState, jar: &Cookies) {
    let mut cookie = Cookie::build((cookie_name(state), ""))
        .path("/")
        .http_only(true)
        .secure(state.sessions.config().cookie.secure)
        .same_site(SameSite::Lax)
        .build();
    cookie.make_removal();
    jar.add(cookie);
}

/// Finish a sign-in or a link: 302 to the target (with `oauth_error=<code>` on failure, or
/// `oauth=mfa_required` when the user's second factor is still due).
#[utoipa::path(
    get, path = "/oauth/{provider}/callback", tag = "oauth",
    params(
        ("provider" = String, Path, description = "configured provider name"),
        ("code" = Option<String>, Query, description = "authorization code"),
        ("state" = Option<String>, Query, description = "the state sent to the provider"),
        ("error" = Option<String>, Query, description = "the provider's error code"),
    ),
    responses(
        (status = 302, description = "To the redirect target. Failures add `oauth_error` (`access_denied`, `provider_error`, `invalid_state`, `token_exchange_failed`, `invalid_id_token`, `provider_unavailable`, `account_exists`, `sign_up_disabled`, `email_required`, `already_linked`, `reauth_required`, `internal`); a pending second factor adds `oauth=mfa_required`; a link adds `oauth=linked`"),
    )
)]
pub(crate) async fn callback(
    State(state): State<AuthState>,
    Jar(jar): Jar,
    session: Session,
    provider: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(rt) = state.oauth.as_deref() else {
        return ApiError::new(ErrorCode::NotFound).into_response();
    };
    // An undecodable path segment names no provider: the state check below refuses it.
    let provider = provider.map(|Path(p)| p).unwrap_or_default();
    // Whatever happens, this transaction is over for this browser (SECURITY.md #2).
    let binding = jar.get(&cookie_name(&state)).map(|c| c.value().to_owned());
    remove_transaction_cookie(&state, &jar);
    let mut target = None;
    let result = finish(
        &state,
        rt,
        &jar,
        &session,
        &provider,
        query.as_deref().unwrap_or(""),
        binding.as_deref(),
        &mut target,
    )
    .await;
    match result {
        Ok(outcome) => {
            let target = target.unwrap_or_else(RedirectTarget::root);
            match outcome {
                Finished::SignedIn => found(target.as_str()),
                Finished::MfaRequired => {
                    found(&with_param(target.as_str(), "oauth", "mfa_required"))
                }
                Finished::Linked => found(&with_param(target.as_str(), "oauth", "linked")),
            }
        }
        Err(e) => failure_redirect(e, target.as_ref()),
    }
}

enum Finished {
    SignedIn,
    MfaRequired,
    Linked,
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    state: &AuthState,
    rt: &OAuthRuntime,
    jar: &Cookies,
    session: &Session,
    provider: &str,
    query: &str,
    binding: Option<&str>,
    target: &mut Option<RedirectTarget>,
) -> Result<Finished, OAuthError> {
    let params = CallbackParams::parse(query).map_err(|_| OAuthError::InvalidState)?;
    let state_token = params
        .state
        .as_deref()
        .and_then(StateToken::parse)
        .ok_or(OAuthError::InvalidState)?;
    let state_hash = state_token.hash();
    // Bound to this browser: the take matches the binding too, so a callback presented by
    // another browser (login CSRF, a leaked URL) neither succeeds nor spends the transaction.
    let Some(binding) = binding.and_then(BrowserBinding::parse) else {
        tracing::info!(provider, "OAuth callback refused: no transaction cookie");
        return Err(OAuthError::InvalidState);
    };
    let tx = state
        .store
        .take_oauth_transaction(&state_hash, &binding.hash(), state.clock.now())
        .await
        .map_err(store_failed)?
        .ok_or(OAuthError::InvalidState)?;
    *target = Some(rt.target(Some(&tx.redirect_to)));
    // …and to the provider it was minted for (a state from provider A is refused at B).
    if tx.provider != provider {
        tracing::info!(
            provider,
            "OAuth callback refused: the state was minted for another provider"
        );
        return Err(OAuthError::InvalidState);
    }
    let client = rt.providers.get(provider).ok_or(OAuthError::InvalidState)?;
    let code = match params.outcome {
        Ok(code) => code,
        Err(ProviderErrorCode::AccessDenied) => return Err(OAuthError::AccessDenied),
        Err(ProviderErrorCode::Other(code)) => {
            tracing::info!(
                provider,
                code = code.as_deref().unwrap_or("?"),
                "provider answered with an error"
            );
            return Err(OAuthError::ProviderError);
        }
    };
    // RFC 9207: an authorization response naming another issuer is a mix-up attempt.
    if let Some(iss) = &params.issuer
        && client.config.kind.is_oidc()
        && *iss != client.issuer()
    {
        tracing::warn!(
            provider,
            "callback `iss` does not match the provider's issuer"
        );
        return Err(OAuthError::ProviderError);
    }
    let secrets = FlowSecrets::open(&state.sealer, &tx.sealed, &state_hash).ok_or_else(|| {
        tracing::error!(provider, "an OAuth transaction's secrets do not open");
        OAuthError::Internal
    })?;
    let identity = client
        .exchange(
            &code,
            PkceCodeVerifier::new(secrets.pkce_verifier.to_string()),
            &secrets.nonce,
        )
        .await?;
    match tx.link {
        Some(intent) => link_account(state, rt, session, client, intent, identity).await,
        None => sign_in(state, rt, jar, session, client, identity).await,
    }
}

/// The callback of an explicit link: the browser must still carry the session that started it.
async fn link_account(
    state: &AuthState,
    rt: &OAuthRuntime,
    session: &Session,
    client: &ProviderClient,
    intent: LinkIntent,
    identity: Identity,
) -> Result<Finished, OAuthError> {
    let current = session
        .signed_in()
        .map_err(|_| OAuthError::ReauthRequired)?;
    let same_session = bool::from(current.id_hash().as_bytes().ct_eq(&intent.session_hash));
    if !same_session || *current.user_id() != intent.user_id {
        return Err(OAuthError::ReauthRequired);
    }
    let user = state
        .store
        .user_by_id(&intent.user_id)
        .await
        .map_err(store_failed)?
        .ok_or(OAuthError::ReauthRequired)?;
    if let Some(existing) = state
        .store
        .oauth_account(&identity.issuer, &identity.subject)
        .await
        .map_err(store_failed)?
    {
        if existing.user_id != user.id {
            return Err(OAuthError::AlreadyLinked);
        }
        record_login(state, rt, &existing, &identity).await?;
        return Ok(Finished::Linked);
    }
    link_new_account(
        state,
        rt,
        &user,
        client,
        &identity,
        session.actor(),
        "explicit",
    )
    .await?;
    Ok(Finished::Linked)
}

/// The callback of a sign-in: an account known by `(issuer, subject)` signs its user in;
/// otherwise a new user is created, or an existing address is linked only when both sides
/// verified it and the provider is trusted to (SECURITY.md #34).
async fn sign_in(
    state: &AuthState,
    rt: &OAuthRuntime,
    jar: &Cookies,
    session: &Session,
    client: &ProviderClient,
    identity: Identity,
) -> Result<Finished, OAuthError> {
    let actor = session.actor();
    let known = state
        .store
        .oauth_account(&identity.issuer, &identity.subject)
        .await
        .map_err(store_failed)?;
    let (user, known) = match known {
        Some(account) => {
            let user = state
                .store
                .user_by_id(&account.user_id)
                .await
                .map_err(store_failed)?
                .ok_or(OAuthError::Internal)?;
            (user, Some(account))
        }
        None => (
            first_sign_in(state, rt, client, &identity, &actor).await?,
            None,
        ),
    };
    let first_time = known.is_none();
    let trusted_mfa = client.config.trust_mfa_claims && identity.mfa_asserted;
    let event = |pending: bool| {
        NewAuditEvent::new(
            AuditEventType::OauthLogin,
            Some(user.id.clone()),
            state.clock.now(),
            actor.clone(),
        )
        .with_details(serde_json::json!({
            "provider": client.config.name,
            "new_account": first_time,
            "provider_mfa": trusted_mfa,
            "second_factor_pending": pending,
        }))
    };
    if user.mfa_enabled && !trusted_mfa {
        session
            .begin_pending(&user.id, None)
            .await
            .map_err(|e| session_failed(&e))?;
        // The provider's fresh tokens are not stored for a sign-in that is not complete:
        // the account keeps its earlier ones.
        audit(state, &event(true)).await;
        return Ok(Finished::MfaRequired);
    }
    let aal = if user.mfa_enabled {
        Aal::Aal2
    } else {
        Aal::Aal1
    };
    session
        .login(&user.id, aal, None)
        .await
        .map_err(|e| session_failed(&e))?;
    if let Some(account) = &known {
        record_login(state, rt, account, &identity).await?;
    }
    audit(state, &event(false)).await;
    let new_device = known_device(state, jar, &user).is_none();
    after_sign_in(state, jar, &actor, &user, new_device && !first_time).await;
    Ok(Finished::SignedIn)
}

async fn first_sign_in(
    state: &AuthState,
    rt: &OAuthRuntime,
    client: &ProviderClient,
    identity: &Identity,
    actor: &AuditActor,
) -> Result<UserRecord, OAuthError> {
    // The provider's address, normalised like every address (NFKC, case folding). It counts
    // as proven only if the provider verified it *and* normalising changed nothing but case:
    // a verified `ｖｉｃｔｉｍ@corp` (another mailbox) must not stand for `victim@corp`.
    let raw = identity.email.as_deref().map(str::trim);
    let email = raw.and_then(|e| Email::parse(e).ok());
    let proven = identity.email_verified
        && matches!((raw, &email), (Some(raw), Some(e)) if e.as_str() == raw.to_lowercase());
    let Some(email) = email else {
        return Err(if client.config.allow_sign_up {
            OAuthError::EmailRequired
        } else {
            OAuthError::SignUpDisabled
        });
    };
    if let Some(local) = state
        .store
        .user_by_email(&email)
        .await
        .map_err(store_failed)?
    {
        // Both sides must have proven the address, and the provider must be trusted to say
        // so: otherwise whoever registered the address first (or controls the provider
        // account) would be handed the other's account.
        if !(client.config.auto_link_verified_email && proven && local.email_verified) {
            tracing::info!(provider = %client.config.name, "OAuth sign-in refused: the address belongs to an existing account");
            return Err(OAuthError::AccountExists);
        }
        link_new_account(
            state,
            rt,
            &local,
            client,
            identity,
            actor.clone(),
            "verified_email",
        )
        .await?;
        return Ok(local);
    }
    if !client.config.allow_sign_up {
        return Err(OAuthError::SignUpDisabled);
    }
    // A new account needs an address the provider proved. An unproven one would let anyone
    // create an account for someone else's address and keep a way into it after the owner
    // claims it with a password reset (pre-hijacking, SECURITY.md #34). Such users register
    // with a password and link the provider afterwards.
    if !proven {
        tracing::info!(provider = %client.config.name, "OAuth sign-up refused: no verified address");
        return Err(OAuthError::EmailRequired);
    }
    let id = UserId::generate(state.rng.as_ref()).map_err(|_| OAuthError::Internal)?;
    let account = new_account(state, rt, &id, client, identity)?;
    let now = state.clock.now();
    let user = NewUser {
        id: id.clone(),
        email,
        password_hash: None,
        email_verified: true,
        now,
    };
    let event = linked_event(state, actor.clone(), &id, client, "sign_up");
    match state
        .store
        .create_user_with_oauth_account(user, &account, &[event])
        .await
    {
        Ok(user) => Ok(user),
        // The address was registered or the account linked meanwhile.
        Err(StoreError::Conflict) => Err(OAuthError::AccountExists),
        Err(e) => Err(store_failed(e)),
    }
}

async fn audit(state: &AuthState, event: &NewAuditEvent) {
    if let Err(e) = state.store.append_audit(event).await {
        tracing::error!(error = %crate::util::error_chain(&e), "could not write an audit event");
    }
}

/// Links the provider account of `identity` to `user` (with `oauth.linked`, `how` it came
/// about) and mails the owner.
async fn link_new_account(
    state: &AuthState,
    rt: &OAuthRuntime,
    user: &UserRecord,
    client: &ProviderClient,
    identity: &Identity,
    actor: AuditActor,
    how: &str,
) -> Result<(), OAuthError> {
    let account = new_account(state, rt, &user.id, client, identity)?;
    let event = linked_event(state, actor.clone(), &user.id, client, how);
    match state.store.link_oauth_account(&account, &[event]).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(OAuthError::AlreadyLinked),
        Err(e) => return Err(store_failed(e)),
    }
    notify(state, &user.email, OAuthChange::Linked, client, actor).await;
    Ok(())
}

fn new_account(
    state: &AuthState,
    rt: &OAuthRuntime,
    user: &UserId,
    client: &ProviderClient,
    identity: &Identity,
) -> Result<OAuthAccount, OAuthError> {
    let id = UserId::generate(state.rng.as_ref()).map_err(|_| OAuthError::Internal)?;
    let tokens = rt.tokens.seal(
        &identity.tokens,
        user,
        &identity.issuer,
        &identity.subject,
        state.rng.as_ref(),
    )?;
    let now = state.clock.now();
    Ok(OAuthAccount {
        id: id.as_str().to_owned(),
        user_id: user.clone(),
        provider: client.config.name.clone(),
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        tokens,
        created_at: now,
        last_used_at: Some(now),
    })
}

async fn record_login(
    state: &AuthState,
    rt: &OAuthRuntime,
    account: &OAuthAccount,
    identity: &Identity,
) -> Result<(), OAuthError> {
    let mut tokens = rt.tokens.seal(
        &identity.tokens,
        &account.user_id,
        &account.issuer,
        &account.subject,
        state.rng.as_ref(),
    )?;
    // Providers often send a refresh token only at the first consent: keep the stored one
    // (sealed for the same user and account, so it still opens).
    if tokens.refresh_token.is_none() {
        tokens
            .refresh_token
            .clone_from(&account.tokens.refresh_token);
    }
    state
        .store
        .record_oauth_login(
            &account.id,
            identity.email.as_deref().or(account.email.as_deref()),
            &tokens,
            state.clock.now(),
        )
        .await
        .map_err(store_failed)
}

fn linked_event(
    state: &AuthState,
    actor: AuditActor,
    user: &UserId,
    client: &ProviderClient,
    how: &str,
) -> NewAuditEvent {
    NewAuditEvent::new(
        AuditEventType::OauthLinked,
        Some(user.clone()),
        state.clock.now(),
        actor,
    )
    .with_details(serde_json::json!({ "provider": client.config.name, "how": how }))
}

async fn notify(
    state: &AuthState,
    to: &Email,
    change: OAuthChange,
    client: &ProviderClient,
    actor: AuditActor,
) {
    if let Some(templates) = &state.templates {
        let message =
            templates.oauth_changed(to, change, &client.config.name, state.clock.now(), actor.ip);
        state.send_mail(message).await;
    }
}

/// The user's linked provider accounts.
#[utoipa::path(
    get, path = "/oauth/accounts", tag = "oauth",
    responses(
        (status = 200, body = LinkedAccountList),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn accounts(
    State(state): State<AuthState>,
    FullSession { current, .. }: FullSession,
) -> ApiResult {
    let accounts = state
        .store
        .oauth_accounts_for_user(current.user_id())
        .await?
        .into_iter()
        .map(|a| LinkedAccountView {
            id: a.id,
            provider: a.provider,
            email: a.email,
            created_at: a.created_at.to_rfc3339(),
            last_used_at: a.last_used_at.map(crate::clock::Timestamp::to_rfc3339),
        })
        .collect();
    Ok(Json(LinkedAccountList { accounts }).into_response())
}

/// Unlink a provider account and delete its tokens. Refused (409 `last_sign_in_method`) when
/// it is the only way left to sign in.
#[utoipa::path(
    delete, path = "/oauth/accounts/{id}", tag = "oauth",
    params(("id" = String, Path, description = "the linked account's id")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_sign_in_method`", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub(crate) async fn unlink(
    State(state): State<AuthState>,
    FullSession { session, current }: FullSession,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path_name(id)?;
    let user = load_user(&state, &session, current.user_id()).await?;
    require_full_assurance(&state, &session, &current, Some(&user)).await?;
    let Some(account) = state.store.oauth_account_by_id(&user.id, &id).await? else {
        return Err(ApiError::new(ErrorCode::NotFound));
    };
    let event = NewAuditEvent::new(
        AuditEventType::OauthUnlinked,
        Some(user.id.clone()),
        state.clock.now(),
        session.actor(),
    )
    .with_details(serde_json::json!({ "provider": account.provider }));
    match state
        .store
        .unlink_oauth_account(&user.id, &id, &event)
        .await?
    {
        Unlink::Done => {}
        Unlink::NotFound => return Err(ApiError::new(ErrorCode::NotFound)),
        Unlink::LastSignInMethod => {
            return Err(ApiError::new(ErrorCode::LastSignInMethod).with_detail(
                "this is the only way to sign in: set a password or link another provider first",
            ));
        }
    }
    if let Some(templates) = &state.templates {
        let message = templates.oauth_changed(
            &user.email,
            OAuthChange::Unlinked,
            &account.provider,
            state.clock.now(),
            session.actor().ip,
        );
        state.send_mail(message).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A path segment, or 404 when it does not decode (e.g. `%FF`).
fn path_name(segment: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    segment
        .map(|Path(name)| name)
        .map_err(|_| ApiError::new(ErrorCode::NotFound))
}

fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        // A checked target is always a valid header value; fall back to the root anyway.
        Err(_) => (
            StatusCode::FOUND,
            [(header::LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response(),
    }
}

fn failure_redirect(e: OAuthError, target: Option<&RedirectTarget>) -> Response {
    if e == OAuthError::Internal || e == OAuthError::Misconfigured {
        tracing::error!(code = e.code(), "OAuth flow failed");
    }
    let target = target.map_or("/", RedirectTarget::as_str);
    found(&with_param(target, "oauth_error", e.code()))
}

/// Appends `key=value` to the query of `target` (before any fragment).
fn with_param(target: &str, key: &str, value: &str) -> String {
    let (base, fragment) = match target.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (target, None),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{separator}{key}={value}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn store_failed(e: StoreError) -> OAuthError {
    tracing::error!(error = %crate::util::error_chain(&e), "OAuth store operation failed");
    OAuthError::Internal
}

fn session_failed(e: &crate::session::SessionError) -> OAuthError {
    tracing::error!(error = %e, "could not start the session after an OAuth sign-in");
    OAuthError::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_go_before_the_fragment() {
        assert_eq!(with_param("/", "oauth_error", "x"), "/?oauth_error=x");
        assert_eq!(
            with_param("/a?b=1", "oauth", "linked"),
            "/a?b=1&oauth=linked"
        );
        assert_eq!(
            with_param("/a#top", "oauth", "linked"),
            "/a?oauth=linked#top"
        );
        assert_eq!(
            with_param("https://app.example.com/x?y#z", "k", "v"),
            "https://app.example.com/x?y&k=v#z"
        );
    }
}
