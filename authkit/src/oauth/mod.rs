//! OAuth 2.0 / OpenID Connect sign-in and account linking.
//!
//! - [`Provider`] presets: Google, GitHub, LinkedIn, X and any OIDC issuer; [`OAuthConfig`]
//!   holds them with the public URL redirect URIs are built from.
//! - The flow (served by the auth service under `/oauth`): authorization code with PKCE
//!   (S256), a single-use `state` stored server-side by its hash and bound to a `__Host-`
//!   transaction cookie and to the provider, an OIDC `nonce`, and a hardened ID-token check
//!   (signature, `iss`, `aud`, `exp`, `iat`; JWKS refetched on an unknown key id).
//! - [`RedirectTarget`]: where a browser may be sent afterwards (SECURITY.md #33).
//! - [`LinkedAccounts`]: the embedding app's way to a valid provider access token; tokens
//!   are stored sealed (XChaCha20-Poly1305, key id, bound to user and account).

mod callback;
mod config;
mod http;
mod provider;
mod redirect;
mod tokens;
mod transaction;

pub use callback::{CallbackParams, ProviderErrorCode};
pub use config::{ClientSecretSource, OAuthConfig, Provider, ProviderKind, SecretRef};
pub use redirect::{MAX_REDIRECT_LEN, RedirectTarget};
pub use tokens::LinkedAccounts;

pub(crate) use http::ProviderHttp;
pub(crate) use provider::{Identity, ProviderClient};
pub(crate) use tokens::{RefreshGates, TokenSealer, refresh_gates};
pub(crate) use transaction::{BrowserBinding, FlowSecrets, StateToken};

use secrecy::SecretString;

use crate::clock::Timestamp;

/// Why an OAuth flow stopped. Each has a stable code that the callback puts in the
/// `oauth_error` query parameter of its redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The user refused at the provider (`error=access_denied`).
    #[error("the sign-in was cancelled at the provider")]
    AccessDenied,
    /// The provider answered the authorization request with another error.
    #[error("the provider reported an error")]
    ProviderError,
    /// The `state` is missing, unknown, used, expired, from another browser or for another
    /// provider.
    #[error("the sign-in request is invalid or expired")]
    InvalidState,
    /// The provider refused the code exchange or answered something unreadable.
    #[error("the provider refused the code exchange")]
    ExchangeFailed,
    /// The ID token failed a check (signature, issuer, audience, times, nonce).
    #[error("the provider's ID token is invalid")]
    InvalidIdToken,
    /// The provider could not be reached.
    #[error("the provider is unavailable")]
    ProviderUnavailable,
    /// The provider is configured wrongly.
    #[error("the provider is misconfigured")]
    Misconfigured,
    /// An account with the provider's address exists and may not be signed into this way.
    #[error(
        "an account with this e-mail address exists: sign in and link the provider from the settings"
    )]
    AccountExists,
    /// New accounts are not created from provider sign-ins.
    #[error("sign-up is disabled")]
    SignUpDisabled,
    /// The provider gave no verified address to create an account with.
    #[error("the provider did not share a verified e-mail address")]
    EmailRequired,
    /// The provider account is linked to another user.
    #[error("this provider account is linked to another user")]
    AlreadyLinked,
    /// Linking needs a full, recently authenticated session.
    #[error("re-authenticate before linking")]
    ReauthRequired,
    /// Something failed on our side.
    #[error("internal error")]
    Internal,
}

impl OAuthError {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::InvalidState => "invalid_state",
            Self::ExchangeFailed => "token_exchange_failed",
            Self::InvalidIdToken => "invalid_id_token",
            Self::ProviderUnavailable | Self::Misconfigured => "provider_unavailable",
            Self::AccountExists => "account_exists",
            Self::SignUpDisabled => "sign_up_disabled",
            Self::EmailRequired => "email_required",
            Self::AlreadyLinked => "already_linked",
            Self::ReauthRequired => "reauth_required",
            Self::Internal => "internal",
        }
    }
}

/// A provider's tokens in the clear, between the exchange and sealing.
pub(crate) struct ProviderTokens {
    pub(crate) access_token: SecretString,
    pub(crate) refresh_token: Option<SecretString>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) scopes: Option<String>,
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTokens")
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
