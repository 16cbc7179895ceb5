//! Choosing and reading the secret provider.

use std::sync::Arc;

use authkit::rng::RandomSource;
use authkit::secrets::{EnvSecrets, LocalSecrets, SecretError, SecretKeys, SecretProvider};

use crate::config::{SecretsProviderKind, Validated};

/// The configured secret provider (also asked for OAuth client secrets by name).
pub fn provider(config: &Validated, rng: Arc<dyn RandomSource>) -> Arc<dyn SecretProvider> {
    match config.secrets_provider {
        SecretsProviderKind::Env => Arc::new(EnvSecrets::new()),
        SecretsProviderKind::Local => {
            Arc::new(LocalSecrets::new(&config.config.secrets.local_dir).with_rng(rng))
        }
    }
}

/// Loads the key rings from the configured provider.
pub async fn load_keys(
    config: &Validated,
    rng: Arc<dyn RandomSource>,
) -> Result<SecretKeys, SecretError> {
    match config.secrets_provider {
        SecretsProviderKind::Env => SecretKeys::load(&EnvSecrets::new()).await,
        SecretsProviderKind::Local => {
            let dir = &config.config.secrets.local_dir;
            tracing::warn!(
                dir = %dir.display(),
                "USING DEVELOPMENT SECRETS from the `local` provider: keys are generated and stored in plain files. \
                 Set AUTHKIT_SECRETS_PROVIDER=env (and AUTHKIT_SECRET_*) for anything but local development."
            );
            SecretKeys::load(&LocalSecrets::new(dir).with_rng(rng)).await
        }
    }
}
