use async_trait::async_trait;
use secrecy::SecretString;

use super::{SecretError, SecretProvider, SecretValue};

/// Reads secret `name` from the environment variable `AUTHKIT_SECRET_<NAME>` (upper case).
///
/// Key rings are written `kid:base64key[,kid:base64key…]`, newest first, keys ≥ 32 bytes.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    prefix: String,
}

impl EnvSecrets {
    /// Reads `AUTHKIT_SECRET_<NAME>`.
    pub fn new() -> Self {
        Self {
            prefix: "AUTHKIT_SECRET_".into(),
        }
    }

    /// Reads `<prefix><NAME>` instead.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The variable that holds secret `name`.
    pub fn variable(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name.to_ascii_uppercase())
    }
}

#[async_trait]
impl SecretProvider for EnvSecrets {
    fn name(&self) -> &'static str {
        "env"
    }

    async fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
        match std::env::var(self.variable(name)) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretValue::new(SecretString::from(v), None)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Err(SecretError::NotFound {
                name: name.to_owned(),
                provider: "env",
            }),
            Err(e @ std::env::VarError::NotUnicode(_)) => Err(SecretError::Unavailable {
                name: name.to_owned(),
                provider: "env",
                source: Box::new(e),
            }),
        }
    }
}
