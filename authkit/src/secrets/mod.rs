//! Secret providers: where keys and other secrets come from.
//!
//! A [`SecretProvider`] returns a versioned, redacted value by name. authkit asks for three key
//! rings ([`SESSION_KEY`], [`ENCRYPTION_KEY`], [`PEPPER`]) and loads them into [`SecretKeys`].
//! Two providers ship now: [`EnvSecrets`] (`AUTHKIT_SECRET_<NAME>` variables) and
//! [`LocalSecrets`] (development only: generated once and persisted on disk).
//!
//! # Deployment caveats
//! [`LocalSecrets`] writes keys in plain files under `./.authkit/secrets/`. It exists so that a
//! developer can start the server with no set-up; production deployments must use a real
//! provider (the reference server refuses `local` in the `production` profile).

#[cfg(feature = "aws")]
mod aws;
mod cache;
mod env;
mod file;
mod local;
#[cfg(feature = "vault")]
mod vault;

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

#[cfg(feature = "aws")]
pub use aws::{AwsSecrets, AwsSecretsConfig};
pub use cache::{Refresh, RefreshReport, SecretCache, SecretStatus};
pub use env::EnvSecrets;
pub use file::FileSecrets;
pub use local::LocalSecrets;
#[cfg(feature = "vault")]
pub use vault::{VaultAuth, VaultSecrets, VaultSecretsConfig};

use crate::secret::{KeyRing, KeyRingError};

/// Key ring that signs session-bound values (CSRF tokens, and later device cookies).
pub const SESSION_KEY: &str = "session_key";
/// Key ring for AEAD encryption of stored secrets (TOTP secrets, OAuth tokens).
pub const ENCRYPTION_KEY: &str = "encryption_key";
/// Key ring for the HMAC pepper of stored tokens and backup codes.
pub const PEPPER: &str = "pepper";

/// The key rings every authkit deployment needs.
pub const REQUIRED_KEY_RINGS: [&str; 3] = [SESSION_KEY, ENCRYPTION_KEY, PEPPER];

/// A secret value with the provider's version label. `Debug` shows the version, never the value.
pub struct SecretValue {
    value: SecretString,
    version: Option<String>,
}

impl SecretValue {
    /// A value with an optional provider version label.
    pub fn new(value: SecretString, version: Option<String>) -> Self {
        Self { value, version }
    }

    /// The secret. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// The provider's version label, if it has one.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("value", &"[REDACTED]")
            .field("version", &self.version)
            .finish()
    }
}

/// Why a secret could not be read. Names the secret and the provider, never the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The provider has no secret of that name.
    #[error("secret `{name}` is not set in the `{provider}` secret provider")]
    NotFound {
        /// The secret's name.
        name: String,
        /// The provider's name.
        provider: &'static str,
    },
    /// The provider could not be reached or read.
    #[error("the `{provider}` secret provider could not read `{name}`")]
    Unavailable {
        /// The secret's name.
        name: String,
        /// The provider's name.
        provider: &'static str,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The provider refused access (credentials or policy). Vault answers an expired token
    /// and a missing permission alike, so this does not say which.
    #[error("the `{provider}` secret provider refused access to `{name}`")]
    Denied {
        /// The secret's name.
        name: String,
        /// The provider's name.
        provider: &'static str,
    },
    /// The value is present but not a valid key ring.
    #[error("secret `{name}` from the `{provider}` secret provider is not a valid key ring")]
    InvalidKeyRing {
        /// The secret's name.
        name: String,
        /// The provider's name.
        provider: &'static str,
        /// What is wrong with it.
        #[source]
        source: KeyRingError,
    },
}

/// A source of secrets.
#[async_trait]
pub trait SecretProvider: Send + Sync + fmt::Debug {
    /// A short name for messages (`env`, `local`, …).
    fn name(&self) -> &'static str;

    /// Reads the secret called `name`.
    async fn get(&self, name: &str) -> Result<SecretValue, SecretError>;

    /// Whether values from this provider are fit for production.
    fn is_production_grade(&self) -> bool {
        true
    }
}

/// The key rings authkit uses, loaded from a provider.
#[derive(Debug, Clone)]
pub struct SecretKeys {
    /// Signs CSRF tokens.
    pub session: KeyRing,
    /// Encrypts secrets at rest.
    pub encryption: KeyRing,
    /// Peppers hashed tokens.
    pub pepper: KeyRing,
}

impl SecretKeys {
    /// Loads every required key ring from `provider`.
    pub async fn load(provider: &dyn SecretProvider) -> Result<Self, SecretError> {
        Ok(Self {
            session: load_ring(provider, SESSION_KEY).await?,
            encryption: load_ring(provider, ENCRYPTION_KEY).await?,
            pepper: load_ring(provider, PEPPER).await?,
        })
    }
}

impl SecretKeys {
    /// Fresh random key rings (key id `gen1`), for tests and throw-away instances. Anything
    /// signed with them dies with the process.
    pub fn generate(rng: &dyn crate::rng::RandomSource) -> Result<Self, crate::rng::RandomError> {
        let ring = || -> Result<KeyRing, crate::rng::RandomError> {
            let mut bytes = vec![0u8; crate::secret::MIN_KEY_LEN];
            rng.try_fill(&mut bytes)?;
            let key = crate::secret::SecretKey::new(bytes).map_err(|_| crate::rng::RandomError)?;
            let id = crate::secret::KeyId::new("gen1").map_err(|_| crate::rng::RandomError)?;
            KeyRing::new(vec![(id, key)]).map_err(|_| crate::rng::RandomError)
        };
        Ok(Self {
            session: ring()?,
            encryption: ring()?,
            pepper: ring()?,
        })
    }
}

async fn load_ring(provider: &dyn SecretProvider, name: &str) -> Result<KeyRing, SecretError> {
    parse_ring(&provider.get(name).await?, name, provider.name())
}

fn parse_ring(
    value: &SecretValue,
    name: &str,
    provider: &'static str,
) -> Result<KeyRing, SecretError> {
    KeyRing::parse(value.expose()).map_err(|source| SecretError::InvalidKeyRing {
        name: name.to_owned(),
        provider,
        source,
    })
}
