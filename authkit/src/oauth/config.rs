//! Provider settings: which provider, its client credentials and what authkit may trust.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::csrf::Origin;

/// The protocol family and defaults of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Google: OpenID Connect at `https://accounts.google.com`.
    Google,
    /// GitHub: OAuth 2 plus its REST API for the user and verified primary e-mail.
    Github,
    /// Any OpenID Connect issuer, found by discovery.
    Oidc,
    /// LinkedIn: OpenID Connect (it refuses PKCE for confidential web clients).
    Linkedin,
    /// X (Twitter): OAuth 2 with PKCE and its `users/me` API; reports no verified e-mail.
    Twitter,
}

impl ProviderKind {
    /// The configuration name (`google`, `github`, `oidc`, `linkedin`, `twitter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Github => "github",
            Self::Oidc => "oidc",
            Self::Linkedin => "linkedin",
            Self::Twitter => "twitter",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "google" => Self::Google,
            "github" => Self::Github,
            "oidc" => Self::Oidc,
            "linkedin" => Self::Linkedin,
            "twitter" | "x" => Self::Twitter,
            _ => return None,
        })
    }

    /// Whether the provider speaks OpenID Connect (ID tokens, discovery, nonce).
    pub fn is_oidc(self) -> bool {
        matches!(self, Self::Google | Self::Oidc | Self::Linkedin)
    }
}

/// Where a client secret comes from.
#[derive(Clone)]
pub enum ClientSecretSource {
    /// Read from the secret provider given to the builder, by this name (production).
    Named(String),
    /// The value itself (development and tests).
    Value(SecretString),
}

impl std::fmt::Debug for ClientSecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => f.debug_tuple("Named").field(name).finish(),
            Self::Value(_) => f.write_str("Value([REDACTED])"),
        }
    }
}

/// A secret by name in the builder's secret provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef(String);

impl SecretRef {
    /// Names the secret (e.g. `oauth_google_client_secret`).
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl From<SecretRef> for ClientSecretSource {
    fn from(r: SecretRef) -> Self {
        Self::Named(r.0)
    }
}

impl From<SecretString> for ClientSecretSource {
    fn from(s: SecretString) -> Self {
        Self::Value(s)
    }
}

/// One configured provider. Build it with a preset ([`Provider::google`], …) and adjust.
#[derive(Debug, Clone)]
#[must_use]
pub struct Provider {
    /// The name in paths (`/oauth/{name}`) and in the accounts list: lower-case ASCII letters,
    /// digits and `-`.
    pub name: String,
    /// The protocol family.
    pub kind: ProviderKind,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: ClientSecretSource,
    /// The OIDC issuer exactly as the provider writes it in `iss` (discovery at
    /// `{issuer}/.well-known/openid-configuration`).
    pub issuer: Option<String>,
    /// The scopes requested (`openid` is added for OIDC providers).
    pub scopes: Vec<String>,
    /// OAuth 2 endpoints for the non-OIDC kinds (GitHub, X), overridable for stand-ins.
    pub authorization_url: Option<Url>,
    /// Token endpoint for the non-OIDC kinds.
    pub token_url: Option<Url>,
    /// API base for the user lookups of the non-OIDC kinds (`https://api.github.com`).
    pub api_url: Option<Url>,
    /// Send a PKCE challenge (always, except for LinkedIn, which refuses it).
    pub pkce: bool,
    /// Sign a user in to an existing local account with the same address when the provider
    /// asserts the address is verified *and* the local account's address is verified. Off by
    /// default (SECURITY.md #34): then any existing address answers `account_exists`.
    pub auto_link_verified_email: bool,
    /// Whether a first sign-in with an unknown account of this provider creates a user (with a
    /// verified address from the provider; default on).
    pub allow_sign_up: bool,
    /// Count the provider's `amr`/`acr` claims showing multi-factor authentication as this
    /// sign-in's second factor (users with MFA then skip authkit's code). Off by default.
    pub trust_mfa_claims: bool,
}

impl Provider {
    fn preset(
        name: &str,
        kind: ProviderKind,
        client_id: impl Into<String>,
        secret: impl Into<ClientSecretSource>,
    ) -> Self {
        let scopes: &[&str] = match kind {
            ProviderKind::Google | ProviderKind::Oidc | ProviderKind::Linkedin => {
                &["openid", "email", "profile"]
            }
            ProviderKind::Github => &["read:user", "user:email"],
            ProviderKind::Twitter => &["users.read", "tweet.read", "offline.access"],
        };
        let url = |s: &str| Url::parse(s).ok();
        let (issuer, auth, token, api) = match kind {
            ProviderKind::Google => (
                Some("https://accounts.google.com".to_owned()),
                None,
                None,
                None,
            ),
            ProviderKind::Linkedin => (
                Some("https://www.linkedin.com/oauth".to_owned()),
                None,
                None,
                None,
            ),
            ProviderKind::Oidc => (None, None, None, None),
            ProviderKind::Github => (
                None,
                url("https://github.com/login/oauth/authorize"),
                url("https://github.com/login/oauth/access_token"),
                url("https://api.github.com"),
            ),
            ProviderKind::Twitter => (
                None,
                url("https://x.com/i/oauth2/authorize"),
                url("https://api.x.com/2/oauth2/token"),
                url("https://api.x.com"),
            ),
        };
        Self {
            name: name.to_owned(),
            kind,
            client_id: client_id.into(),
            client_secret: secret.into(),
            issuer,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            authorization_url: auth,
            token_url: token,
            api_url: api,
            pkce: kind != ProviderKind::Linkedin,
            auto_link_verified_email: false,
            allow_sign_up: true,
            trust_mfa_claims: false,
        }
    }

    /// Google (OpenID Connect), named `google`.
    pub fn google(client_id: impl Into<String>, secret: impl Into<ClientSecretSource>) -> Self {
        Self::preset("google", ProviderKind::Google, client_id, secret)
    }

    /// GitHub (OAuth 2 + REST API), named `github`.
    pub fn github(client_id: impl Into<String>, secret: impl Into<ClientSecretSource>) -> Self {
        Self::preset("github", ProviderKind::Github, client_id, secret)
    }

    /// LinkedIn (OpenID Connect, no PKCE), named `linkedin`.
    pub fn linkedin(client_id: impl Into<String>, secret: impl Into<ClientSecretSource>) -> Self {
        Self::preset("linkedin", ProviderKind::Linkedin, client_id, secret)
    }

    /// X / Twitter (OAuth 2 with PKCE), named `twitter`.
    pub fn twitter(client_id: impl Into<String>, secret: impl Into<ClientSecretSource>) -> Self {
        Self::preset("twitter", ProviderKind::Twitter, client_id, secret)
    }

    /// Any OpenID Connect issuer, named `name`.
    pub fn oidc(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<ClientSecretSource>,
    ) -> Self {
        let mut p = Self::preset("oidc", ProviderKind::Oidc, client_id, secret);
        p.name = name.into();
        p.issuer = Some(issuer.into());
        p
    }

    /// Renames the provider (its path segment).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the requested scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// See [`Provider::auto_link_verified_email`].
    pub fn auto_link_verified_email(mut self, on: bool) -> Self {
        self.auto_link_verified_email = on;
        self
    }

    /// See [`Provider::allow_sign_up`].
    pub fn allow_sign_up(mut self, on: bool) -> Self {
        self.allow_sign_up = on;
        self
    }

    /// See [`Provider::trust_mfa_claims`].
    pub fn trust_mfa_claims(mut self, on: bool) -> Self {
        self.trust_mfa_claims = on;
        self
    }

    /// Overrides the endpoints of a non-OIDC provider (for a GitHub Enterprise server or a
    /// stand-in in tests).
    pub fn endpoints(mut self, authorization: Url, token: Url, api: Url) -> Self {
        self.authorization_url = Some(authorization);
        self.token_url = Some(token);
        self.api_url = Some(api);
        self
    }

    /// Overrides the issuer of an OIDC provider.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Checks the settings (names, URLs, what each kind needs).
    pub fn check(&self) -> Result<(), &'static str> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err("provider names are 1-32 characters of a-z, 0-9 and -");
        }
        if self.name == "accounts" {
            return Err("`accounts` is a reserved path, not a provider name");
        }
        if self.client_id.is_empty() {
            return Err("the client id is empty");
        }
        let issuer = match &self.issuer {
            Some(issuer) => Some(Url::parse(issuer).map_err(|_| "the issuer is not a URL")?),
            None => None,
        };
        if self.kind.is_oidc() {
            if issuer.is_none() {
                return Err("an OIDC provider needs its issuer URL");
            }
        } else if self.authorization_url.is_none()
            || self.token_url.is_none()
            || self.api_url.is_none()
        {
            return Err("an OAuth 2 provider needs its authorization, token and API URLs");
        }
        let insecure = |u: &Option<Url>| {
            u.as_ref().is_some_and(|u| {
                u.scheme() != "https"
                    && !matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
            })
        };
        if insecure(&issuer)
            || insecure(&self.authorization_url)
            || insecure(&self.token_url)
            || insecure(&self.api_url)
        {
            return Err("provider URLs must be https (plain http only on loopback)");
        }
        Ok(())
    }
}

/// OAuth settings shared by every provider.
#[derive(Debug, Clone)]
#[must_use]
pub struct OAuthConfig {
    /// The public origin redirect URIs are built from (`AUTHKIT_PUBLIC_URL`), never a request's
    /// `Host`.
    pub public_url: Url,
    /// Where the auth service is mounted below `public_url` (default `/api/v1/auth`).
    pub mount_path: String,
    /// Absolute origins (besides `public_url`'s) a `redirect_to` may point at.
    pub redirect_origins: Vec<Origin>,
    /// How long a sign-in may take at the provider (default 10 minutes).
    pub transaction_ttl: Duration,
    /// Timeout of one request to a provider (default 10 s).
    pub http_timeout: Duration,
    /// How often a provider's JWKS may be refetched for an unknown key id (default 60 s).
    pub jwks_refetch_interval: Duration,
    /// The providers.
    pub providers: Vec<Provider>,
}

impl OAuthConfig {
    /// Settings for a server reachable at `public_url`.
    pub fn new(public_url: Url) -> Self {
        Self {
            public_url,
            mount_path: "/api/v1/auth".into(),
            redirect_origins: Vec::new(),
            transaction_ttl: Duration::from_secs(600),
            http_timeout: Duration::from_secs(10),
            jwks_refetch_interval: Duration::from_secs(60),
            providers: Vec::new(),
        }
    }

    /// Adds a provider.
    pub fn provider(mut self, provider: Provider) -> Self {
        self.providers.push(provider);
        self
    }

    /// The exact redirect URI registered for `provider`: `{public_url}{mount}/oauth/{name}/callback`.
    pub fn redirect_uri(&self, provider: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        let mount = self.mount_path.trim_end_matches('/');
        format!("{base}{mount}/oauth/{provider}/callback")
    }
}
