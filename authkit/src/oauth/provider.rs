//! One configured provider at run time: authorization URLs, the code exchange, ID-token
//! verification (OIDC) or the user API (GitHub, X), and token refresh.
//!
//! Protocol work is done by `oauth2` and `openidconnect`; this module chooses what to trust.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse as _,
    TokenUrl,
};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AccessTokenHash, ClaimsVerificationError, IssuerUrl, JsonWebKeySet, JsonWebKeySetUrl, Nonce,
    SignatureVerificationError, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::config::{Provider, ProviderKind};
use super::http::ProviderHttp;
use super::{OAuthError, ProviderTokens};
use crate::clock::{Clock, Timestamp};

/// How long a discovery document is trusted before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long a failed discovery is remembered before the next attempt.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `exp` and `iat`.
const SKEW: Duration = Duration::from_secs(60);
/// Oldest `iat` accepted: an ID token is used straight after the code exchange.
const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(600);

/// What the provider says about the person who signed in, after every check passed.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    /// The address, if the provider gave one.
    pub(crate) email: Option<String>,
    /// Whether the provider asserts the address is verified (missing counts as no).
    pub(crate) email_verified: bool,
    /// Whether `amr`/`acr` show a multi-factor sign-in at the provider.
    pub(crate) mfa_asserted: bool,
    pub(crate) tokens: ProviderTokens,
}

#[derive(Clone)]
struct Discovered {
    issuer: IssuerUrl,
    auth_url: AuthUrl,
    token_url: TokenUrl,
    jwks_uri: JsonWebKeySetUrl,
    jwks: CoreJsonWebKeySet,
    fetched_at: Timestamp,
    last_jwks_refetch: Option<Timestamp>,
}

/// A provider ready for requests. Cheap to share (`Arc`).
pub(crate) struct ProviderClient {
    pub(crate) config: Provider,
    secret: SecretString,
    redirect_uri: RedirectUrl,
    http: ProviderHttp,
    clock: Arc<dyn Clock>,
    jwks_refetch_interval: Duration,
    discovered: tokio::sync::RwLock<Option<Discovered>>,
    /// When discovery last failed: for a few seconds after, requests fail at once instead of
    /// queueing behind another fetch of an unreachable provider.
    discovery_failed_at: std::sync::Mutex<Option<Timestamp>>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("name", &self.config.name)
            .field("kind", &self.config.kind)
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    pub(crate) fn new(
        config: Provider,
        secret: SecretString,
        redirect_uri: &str,
        http: ProviderHttp,
        clock: Arc<dyn Clock>,
        jwks_refetch_interval: Duration,
    ) -> Result<Self, &'static str> {
        let redirect_uri =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| "invalid redirect URI")?;
        Ok(Self {
            config,
            secret,
            redirect_uri,
            http,
            clock,
            jwks_refetch_interval,
            discovered: tokio::sync::RwLock::new(None),
            discovery_failed_at: std::sync::Mutex::new(None),
        })
    }

    /// The issuer accounts of this provider are keyed by: the OIDC issuer, or for OAuth 2
    /// providers a fixed name per kind (a configured `issuer` overrides it, e.g. for GitHub
    /// Enterprise). Never derived from an endpoint URL, so that moving an endpoint does not
    /// orphan every linked account.
    pub(crate) fn issuer(&self) -> String {
        if let Some(issuer) = &self.config.issuer {
            return issuer.clone();
        }
        match self.config.kind {
            ProviderKind::Github => "https://github.com".to_owned(),
            ProviderKind::Twitter => "https://x.com".to_owned(),
            _ => self.config.name.clone(),
        }
    }

    /// The URL the browser is sent to.
    pub(crate) async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        pkce: &PkceCodeVerifier,
    ) -> Result<Url, OAuthError> {
        let state = CsrfToken::new(state.to_owned());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(pkce);
        if self.config.kind.is_oidc() {
            let d = self.discovery().await?;
            let client = self.oidc_client(&d);
            let nonce = Nonce::new(nonce.to_owned());
            let mut request = client.authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || state,
                move || nonce,
            );
            for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
                request = request.add_scope(Scope::new(scope.clone()));
            }
            if self.config.pkce {
                request = request.set_pkce_challenge(challenge);
            }
            Ok(request.url().0)
        } else {
            let client = self.oauth2_client()?;
            let mut request = client.authorize_url(move || state);
            for scope in &self.config.scopes {
                request = request.add_scope(Scope::new(scope.clone()));
            }
            Ok(request.set_pkce_challenge(challenge).url().0)
        }
    }

    /// Exchanges `code` and establishes who signed in. No claim is read before the ID token's
    /// signature, issuer, audience, times and nonce are checked.
    pub(crate) async fn exchange(
        &self,
        code: &str,
        pkce: PkceCodeVerifier,
        nonce: &str,
    ) -> Result<Identity, OAuthError> {
        let code = AuthorizationCode::new(code.to_owned());
        match self.config.kind {
            ProviderKind::Google | ProviderKind::Oidc | ProviderKind::Linkedin => {
                let d = self.discovery().await?;
                let client = self.oidc_client(&d);
                let mut request = client.exchange_code(code);
                if self.config.pkce {
                    request = request.set_pkce_verifier(pkce);
                }
                let response: CoreTokenResponse = request
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                self.verify_id_token(&response, d, nonce).await
            }
            ProviderKind::Github | ProviderKind::Twitter => {
                let client = self.oauth2_client()?;
                let response: BasicTokenResponse = client
                    .exchange_code(code)
                    .set_pkce_verifier(pkce)
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let tokens = self.tokens_of(&response);
                if self.config.kind == ProviderKind::Github {
                    self.github_identity(tokens).await
                } else {
                    self.twitter_identity(tokens).await
                }
            }
        }
    }

    /// New tokens for a refresh token.
    pub(crate) async fn refresh(&self, refresh: &str) -> Result<ProviderTokens, OAuthError> {
        let token = RefreshToken::new(refresh.to_owned());
        let mut tokens = if self.config.kind.is_oidc() {
            let d = self.discovery().await?;
            let response: CoreTokenResponse = self
                .oidc_client(&d)
                .exchange_refresh_token(&token)
                .request_async(&self.http)
                .await
                .map_err(token_error)?;
            self.tokens_of(&response)
        } else {
            let response: BasicTokenResponse = self
                .oauth2_client()?
                .exchange_refresh_token(&token)
                .request_async(&self.http)
                .await
                .map_err(token_error)?;
            self.tokens_of(&response)
        };
        // A provider may keep the refresh token the same and not send it again.
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(SecretString::from(refresh.to_owned()));
        }
        Ok(tokens)
    }

    fn tokens_of<R: oauth2::TokenResponse>(&self, response: &R) -> ProviderTokens {
        let now = self.clock.now();
        ProviderTokens {
            access_token: SecretString::from(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
            expires_at: response.expires_in().map(|d| now.saturating_add(d)),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        }
    }

    fn oauth2_client(
        &self,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        OAuthError,
    > {
        let (Some(auth), Some(token)) = (&self.config.authorization_url, &self.config.token_url)
        else {
            return Err(OAuthError::Misconfigured);
        };
        let auth_type = match self.config.kind {
            // GitHub reads the secret from the body; X requires HTTP Basic.
            ProviderKind::Github => AuthType::RequestBody,
            _ => AuthType::BasicAuth,
        };
        Ok(
            BasicClient::new(ClientId::new(self.config.client_id.clone()))
                .set_client_secret(ClientSecret::new(self.secret.expose_secret().to_owned()))
                .set_auth_uri(AuthUrl::from_url(auth.clone()))
                .set_token_uri(TokenUrl::from_url(token.clone()))
                .set_redirect_uri(self.redirect_uri.clone())
                .set_auth_type(auth_type),
        )
    }

    fn oidc_client(
        &self,
        d: &Discovered,
    ) -> CoreClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
    > {
        let auth_type = match self.config.kind {
            // LinkedIn reads the secret from the body only.
            ProviderKind::Linkedin => AuthType::RequestBody,
            _ => AuthType::BasicAuth,
        };
        CoreClient::new(
            ClientId::new(self.config.client_id.clone()),
            d.issuer.clone(),
            d.jwks.clone(),
        )
        .set_client_secret(ClientSecret::new(self.secret.expose_secret().to_owned()))
        .set_auth_uri(d.auth_url.clone())
        .set_token_uri(d.token_url.clone())
        .set_redirect_uri(self.redirect_uri.clone())
        .set_auth_type(auth_type)
    }

    /// The provider's discovery document and keys, fetched once and kept for an hour.
    async fn discovery(&self) -> Result<Discovered, OAuthError> {
        let now = self.clock.now();
        if let Some(d) = self.discovered.read().await.as_ref()
            && now.seconds_since(d.fetched_at) < DISCOVERY_TTL.as_secs()
        {
            return Ok(d.clone());
        }
        let recently_failed = || {
            self.discovery_failed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|at| now.seconds_since(at) < DISCOVERY_RETRY.as_secs())
        };
        if recently_failed() {
            return Err(OAuthError::ProviderUnavailable);
        }
        let mut slot = self.discovered.write().await;
        if let Some(d) = slot.as_ref()
            && now.seconds_since(d.fetched_at) < DISCOVERY_TTL.as_secs()
        {
            return Ok(d.clone());
        }
        if recently_failed() {
            return Err(OAuthError::ProviderUnavailable);
        }
        let issuer = IssuerUrl::new(self.issuer()).map_err(|_| OAuthError::Misconfigured)?;
        let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %self.config.name, error = %crate::util::error_chain(&e), "OIDC discovery failed");
                *self
                    .discovery_failed_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
                OAuthError::ProviderUnavailable
            })?;
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or(OAuthError::Misconfigured)?;
        let d = Discovered {
            issuer,
            auth_url: metadata.authorization_endpoint().clone(),
            token_url,
            jwks_uri: metadata.jwks_uri().clone(),
            jwks: metadata.jwks().clone(),
            fetched_at: now,
            last_jwks_refetch: slot.as_ref().and_then(|d| d.last_jwks_refetch),
        };
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Fetches the key set again after an unknown key id, at most once per interval (a
    /// forged `kid` must not make us hammer the provider). `None` when it may not yet.
    async fn refetch_jwks(&self) -> Option<CoreJsonWebKeySet> {
        let now = self.clock.now();
        let mut slot = self.discovered.write().await;
        let d = slot.as_mut()?;
        if d.last_jwks_refetch
            .is_some_and(|at| now.seconds_since(at) < self.jwks_refetch_interval.as_secs())
        {
            return None;
        }
        d.last_jwks_refetch = Some(now);
        match JsonWebKeySet::fetch_async(&d.jwks_uri, &self.http).await {
            Ok(jwks) => {
                d.jwks = jwks;
                Some(d.jwks.clone())
            }
            Err(e) => {
                tracing::warn!(provider = %self.config.name, error = %crate::util::error_chain(&e), "JWKS refetch failed");
                None
            }
        }
    }

    fn verifier(
        &self,
        issuer: &IssuerUrl,
        jwks: CoreJsonWebKeySet,
    ) -> CoreIdTokenVerifier<'static> {
        let now = to_chrono(self.clock.now());
        let skew = chrono::Duration::seconds(SKEW.as_secs().try_into().unwrap_or(60));
        let max_age =
            chrono::Duration::seconds(MAX_ID_TOKEN_AGE.as_secs().try_into().unwrap_or(600));
        // A public-client verifier: no HS* tokens MAC'd with our client secret are accepted.
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            issuer.clone(),
            jwks,
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha384,
            CoreJwsSigningAlgorithm::RsaSsaPssSha512,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        ])
        .set_time_fn(move || now - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > now + skew {
                Err("issued in the future".to_owned())
            } else if iat < now - max_age {
                Err("issued too long ago".to_owned())
            } else {
                Ok(())
            }
        })
    }

    async fn verify_id_token(
        &self,
        response: &CoreTokenResponse,
        d: Discovered,
        nonce: &str,
    ) -> Result<Identity, OAuthError> {
        let id_token = response.id_token().ok_or(OAuthError::InvalidIdToken)?;
        let nonce = Nonce::new(nonce.to_owned());
        let mut jwks = d.jwks;
        let mut result = id_token
            .claims(&self.verifier(&d.issuer, jwks.clone()), &nonce)
            .cloned();
        if let Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) = result
            && let Some(fresh) = self.refetch_jwks().await
        {
            jwks = fresh;
            result = id_token
                .claims(&self.verifier(&d.issuer, jwks.clone()), &nonce)
                .cloned();
        }
        let claims = result.map_err(|e| {
            tracing::warn!(provider = %self.config.name, error = %e, "ID token refused");
            OAuthError::InvalidIdToken
        })?;
        // When the token binds the access token (`at_hash`), the binding must hold.
        if let Some(expected) = claims.access_token_hash() {
            let verifier = self.verifier(&d.issuer, jwks);
            let alg = id_token
                .signing_alg()
                .map_err(|_| OAuthError::InvalidIdToken)?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|_| OAuthError::InvalidIdToken)?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|_| OAuthError::InvalidIdToken)?;
            if actual != *expected {
                tracing::warn!(provider = %self.config.name, "ID token at_hash does not match the access token");
                return Err(OAuthError::InvalidIdToken);
            }
        }
        let amr: Vec<String> = claims
            .auth_method_refs()
            .map(|v| v.iter().map(|m| m.as_str().to_owned()).collect())
            .unwrap_or_default();
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned());
        Ok(Identity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified() == Some(true),
            mfa_asserted: mfa_asserted(&amr, acr.as_deref()),
            tokens: self.tokens_of(response),
        })
    }

    async fn github_identity(&self, tokens: ProviderTokens) -> Result<Identity, OAuthError> {
        #[derive(serde::Deserialize)]
        struct User {
            id: u64,
        }
        #[derive(serde::Deserialize)]
        struct Address {
            email: String,
            primary: bool,
            verified: bool,
        }
        const ACCEPT: &str = "application/vnd.github+json";
        let user: User = self
            .api_get(&["user"], tokens.access_token.expose_secret(), ACCEPT)
            .await?;
        let addresses: Vec<Address> = self
            .api_get_query(
                &["user", "emails"],
                Some("per_page=100"),
                tokens.access_token.expose_secret(),
                ACCEPT,
            )
            .await?;
        // Only the verified primary address counts; the public `email` of `/user` is
        // whatever the user typed into their profile. One page of 100 addresses (GitHub's
        // maximum) is read: an account with more whose primary is beyond it signs up with
        // `email_required`, never with another address.
        let primary = addresses.into_iter().find(|a| a.primary && a.verified);
        Ok(Identity {
            issuer: self.issuer(),
            subject: user.id.to_string(),
            email_verified: primary.is_some(),
            email: primary.map(|a| a.email),
            mfa_asserted: false,
            tokens,
        })
    }

    async fn twitter_identity(&self, tokens: ProviderTokens) -> Result<Identity, OAuthError> {
        #[derive(serde::Deserialize)]
        struct Me {
            data: MeData,
        }
        #[derive(serde::Deserialize)]
        struct MeData {
            id: String,
        }
        let me: Me = self
            .api_get(
                &["2", "users", "me"],
                tokens.access_token.expose_secret(),
                "application/json",
            )
            .await?;
        // X reports no verified address: such accounts sign in only once linked.
        Ok(Identity {
            issuer: self.issuer(),
            subject: me.data.id,
            email: None,
            email_verified: false,
            mfa_asserted: false,
            tokens,
        })
    }

    async fn api_get<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        bearer: &str,
        accept: &'static str,
    ) -> Result<T, OAuthError> {
        self.api_get_query(segments, None, bearer, accept).await
    }

    async fn api_get_query<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: Option<&str>,
        bearer: &str,
        accept: &'static str,
    ) -> Result<T, OAuthError> {
        let mut url = self
            .config
            .api_url
            .clone()
            .ok_or(OAuthError::Misconfigured)?;
        url.path_segments_mut()
            .map_err(|()| OAuthError::Misconfigured)?
            .pop_if_empty()
            .extend(segments);
        url.set_query(query);
        let (status, body) = self.http.get_json(url, bearer, accept).await.map_err(|e| {
            tracing::warn!(provider = %self.config.name, error = %crate::util::error_chain(&e), "provider API request failed");
            OAuthError::ProviderUnavailable
        })?;
        if !status.is_success() {
            tracing::warn!(provider = %self.config.name, %status, "provider API refused the request");
            return Err(OAuthError::ExchangeFailed);
        }
        serde_json::from_slice(&body).map_err(|e| {
            tracing::warn!(provider = %self.config.name, error = %e, "provider API answered an unexpected shape");
            OAuthError::ExchangeFailed
        })
    }
}

/// Maps a token-endpoint failure without ever formatting the response body (it may hold
/// tokens).
fn token_error<E: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: RequestTokenError<E, T>,
) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            // The code only: `error_description` and `error_uri` are the provider's free text.
            let code = serde_json::to_value(&r)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or_default();
            tracing::warn!(error = %code, "provider refused the token request");
            OAuthError::ExchangeFailed
        }
        RequestTokenError::Request(e) => {
            tracing::warn!(error = %crate::util::error_chain(&e), "code exchange request failed");
            OAuthError::ProviderUnavailable
        }
        RequestTokenError::Parse(e, _body) => {
            tracing::warn!(path = %e.path(), "provider token response could not be read");
            OAuthError::ExchangeFailed
        }
        RequestTokenError::Other(_) => OAuthError::ExchangeFailed,
    }
}

/// RFC 8176 methods: `mfa` outright, or a knowledge factor together with a possession or
/// inherence one; or the PAPE multi-factor policy as `acr`.
pub(crate) fn mfa_asserted(amr: &[String], acr: Option<&str>) -> bool {
    const SECOND: [&str; 10] = [
        "otp", "hwk", "swk", "sc", "sms", "tel", "fpt", "face", "iris", "retina",
    ];
    let has = |m: &str| amr.iter().any(|a| a == m);
    has("mfa")
        || (["pwd", "pin", "kba"].iter().any(|m| has(m)) && SECOND.iter().any(|m| has(m)))
        || acr == Some("http://schemas.openid.net/pape/policies/2007/06/multi-factor")
}

pub(crate) fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_seconds(), 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfa_is_read_from_amr_and_acr() {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(mfa_asserted(&v(&["mfa"]), None));
        assert!(mfa_asserted(&v(&["pwd", "otp"]), None));
        assert!(mfa_asserted(&v(&["pin", "hwk"]), None));
        assert!(!mfa_asserted(&v(&["pwd"]), None));
        assert!(!mfa_asserted(&v(&["otp"]), None));
        assert!(!mfa_asserted(&v(&[]), Some("urn:mace:incommon:iap:silver")));
        assert!(mfa_asserted(
            &v(&[]),
            Some("http://schemas.openid.net/pape/policies/2007/06/multi-factor")
        ));
    }
}
