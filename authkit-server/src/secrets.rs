//! The server's secrets: choosing the provider, reading every secret through one
//! [`SecretCache`], and applying rotations (key rings, database password) while running.
//!
//! Secrets the server reads, by name (the same names in every provider):
//!
//! | name | required | used for |
//! |---|---|---|
//! | `session_key`, `encryption_key`, `pepper` | yes | key rings (`kid:base64key,…`, newest first) |
//! | `database_url` | no | replaces `AUTHKIT_DATABASE_URL` (user and password); rotates live, e.g. between two users |
//! | `database_password` | no | replaces the password of `AUTHKIT_DATABASE_URL`; rotates live |
//! | `smtp_password` | no | replaces the password of `AUTHKIT_SMTP_URL` (read at start) |
//! | `oauth_<name>_client_secret` | per provider | OAuth client secrets (read at start) |

use std::sync::Arc;

use authkit::rng::RandomSource;
use authkit::secrets::{
    EnvSecrets, FileSecrets, LocalSecrets, REQUIRED_KEY_RINGS, SecretCache, SecretError,
    SecretProvider, SecretValue,
};
use secrecy::SecretString;

use crate::config::{SecretsProviderKind, Validated};

/// The optional secret holding the whole database URL (credentials included).
pub const DATABASE_URL: &str = "database_url";
/// The optional secret holding the database password.
pub const DATABASE_PASSWORD: &str = "database_password";
/// The optional secret holding the SMTP password.
pub const SMTP_PASSWORD: &str = "smtp_password";

/// The configured secret provider. `aws` and `vault` are created here (Vault logs in).
pub async fn provider(
    config: &Validated,
    rng: Arc<dyn RandomSource>,
) -> Result<Arc<dyn SecretProvider>, SecretError> {
    let s = &config.config.secrets;
    Ok(match config.secrets_provider {
        SecretsProviderKind::Env => Arc::new(EnvSecrets::new()),
        SecretsProviderKind::File => Arc::new(FileSecrets::new(&s.file_dir)),
        SecretsProviderKind::Local => {
            tracing::warn!(
                dir = %s.local_dir.display(),
                "USING DEVELOPMENT SECRETS from the `local` provider: keys are generated and stored in plain files. \
                 Set AUTHKIT_SECRETS_PROVIDER (env, file, aws, vault) for anything but local development."
            );
            Arc::new(LocalSecrets::new(&s.local_dir).with_rng(rng))
        }
        #[cfg(feature = "aws")]
        SecretsProviderKind::Aws => {
            let aws = authkit::secrets::AwsSecretsConfig {
                region: s.aws_region.clone(),
                endpoint_url: s.aws_endpoint.clone(),
                prefix: s.prefix.clone(),
                ..authkit::secrets::AwsSecretsConfig::default()
            };
            Arc::new(authkit::secrets::AwsSecrets::connect(aws).await?)
        }
        #[cfg(feature = "vault")]
        SecretsProviderKind::Vault => {
            use authkit::secrets::{VaultAuth, VaultSecrets, VaultSecretsConfig};
            let auth = match (&s.vault_token, &s.vault_role_id, &s.vault_secret_id) {
                (Some(token), _, _) => VaultAuth::Token(SecretString::from(token.clone())),
                (None, Some(role_id), Some(secret_id)) => VaultAuth::AppRole {
                    mount: s.vault_approle_mount.clone(),
                    role_id: role_id.clone(),
                    secret_id: SecretString::from(secret_id.clone()),
                },
                // `validate` refuses this; answer like a refused login rather than panic.
                _ => {
                    return Err(SecretError::Denied {
                        name: "vault login".into(),
                        provider: "vault",
                    });
                }
            };
            let mut vault = VaultSecretsConfig::new(s.vault_addr.clone().unwrap_or_default(), auth);
            vault.mount = s.vault_mount.clone();
            vault.prefix = s.prefix.clone();
            Arc::new(VaultSecrets::connect(vault).await?)
        }
        #[allow(unreachable_patterns)] // reached only in builds without a provider's feature
        other => {
            return Err(SecretError::Unavailable {
                name: "secrets.provider".into(),
                provider: other.as_str(),
                source: "this build does not include the provider".into(),
            });
        }
    })
}

/// A cache over the configured provider, with the required key rings read (start-up fails
/// when one is missing or invalid, naming it).
pub async fn cache(
    config: &Validated,
    rng: Arc<dyn RandomSource>,
) -> Result<Arc<SecretCache>, SecretError> {
    let cache = Arc::new(SecretCache::new(provider(config, rng).await?));
    cache.keys().await?;
    Ok(cache)
}

/// The secret `name`, or `None` when the provider does not have it; watched from now on, so
/// that one added later is read at the next refresh.
pub async fn optional(
    cache: &SecretCache,
    name: &str,
) -> Result<Option<Arc<SecretValue>>, SecretError> {
    cache.watch(name);
    match cache.get(name).await {
        Ok(value) => Ok(Some(value)),
        Err(SecretError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every secret this configuration reads, with whether it is required.
pub fn names(config: &Validated) -> Vec<(String, bool)> {
    let mut names: Vec<(String, bool)> = REQUIRED_KEY_RINGS
        .iter()
        .map(|n| ((*n).to_owned(), true))
        .collect();
    names.push((DATABASE_URL.to_owned(), false));
    names.push((DATABASE_PASSWORD.to_owned(), false));
    names.push((SMTP_PASSWORD.to_owned(), false));
    if let Some(oauth) = &config.oauth {
        for p in &oauth.providers {
            if let authkit::oauth::ClientSecretSource::Named(name) = &p.client_secret {
                names.push((name.clone(), true));
            }
        }
    }
    names
}

/// Where the database credentials come from: the `database_url` secret, else the
/// `database_password` secret put into `database.url`, else `database.url` as it is.
#[derive(Debug, Clone, Default)]
pub struct DatabaseSecrets {
    /// The `database_url` secret.
    pub url: Option<Arc<SecretValue>>,
    /// The `database_password` secret.
    pub password: Option<Arc<SecretValue>>,
}

impl DatabaseSecrets {
    /// Reads both from `cache` (neither is required).
    pub async fn read(cache: &SecretCache) -> Result<Self, SecretError> {
        Ok(Self {
            url: optional(cache, DATABASE_URL).await?,
            password: optional(cache, DATABASE_PASSWORD).await?,
        })
    }

    /// The URL to connect with.
    pub fn url(&self, configured: &str) -> Result<zeroize::Zeroizing<String>, &'static str> {
        match &self.url {
            Some(url) => {
                let text = url.expose();
                if authkit::store::DatabaseKind::from_url(text).ok()
                    != authkit::store::DatabaseKind::from_url(configured).ok()
                {
                    return Err(
                        "the `database_url` secret names another kind of database than AUTHKIT_DATABASE_URL",
                    );
                }
                Ok(zeroize::Zeroizing::new(text.to_owned()))
            }
            None => url_with_password(configured, self.password.as_deref()),
        }
    }
}

/// Whether two database URLs differ at most in user and password (what may change while
/// running).
pub fn same_database(a: &str, b: &str) -> bool {
    let port = |u: &url::Url| {
        u.port()
            .or_else(|| matches!(u.scheme(), "postgres" | "postgresql").then_some(5432))
    };
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host() == b.host()
                && port(&a) == port(&b)
                && a.path() == b.path()
                && a.query() == b.query()
        }
        _ => false,
    }
}

/// `url` with the password from `secret`, if there is one (percent-encoded).
pub fn url_with_password(
    url: &str,
    secret: Option<&SecretValue>,
) -> Result<zeroize::Zeroizing<String>, &'static str> {
    let Some(secret) = secret else {
        return Ok(zeroize::Zeroizing::new(url.to_owned()));
    };
    let mut parsed = url::Url::parse(url).map_err(|_| "not a URL")?;
    authkit::store::set_url_password(&mut parsed, &SecretString::from(secret.expose()))
        .map_err(|_| "this URL cannot carry a password")?;
    Ok(zeroize::Zeroizing::new(parsed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credentials_may_change_while_running() {
        let a = "postgres://app_a:pass-a@db:5432/auth?sslmode=require";
        assert!(same_database(
            a,
            "postgres://app_b:pass-b@db:5432/auth?sslmode=require"
        ));
        assert!(same_database(
            a,
            "postgres://app_a:pass-a@db/auth?sslmode=require"
        ));
        assert!(!same_database(
            a,
            "postgres://app_a:pass-a@other:5432/auth?sslmode=require"
        ));
        assert!(!same_database(
            a,
            "postgres://app_a:pass-a@db:5433/auth?sslmode=require"
        ));
        assert!(!same_database(
            a,
            "postgres://app_a:pass-a@db:5432/other?sslmode=require"
        ));
        assert!(!same_database(a, "postgres://app_a:pass-a@db:5432/auth"));
        assert!(!same_database(a, "sqlite://auth.db"));
    }

    // The password is percent-encoded: `%41` must arrive as `%41`, not `A`.
    #[test]
    fn passwords_are_percent_encoded_into_urls() {
        let secret = SecretValue::new(SecretString::from("p@ss/w:rd%41?#"), None);
        let url = url_with_password("postgres://app@db:5432/auth", Some(&secret)).unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.username(), "app");
        let decoded = percent_encoding::percent_decode_str(parsed.password().unwrap())
            .decode_utf8()
            .unwrap();
        assert_eq!(decoded, "p@ss/w:rd%41?#");
        assert_eq!(parsed.path(), "/auth");
        assert_eq!(
            url_with_password("sqlite://authkit.db?mode=rwc", None)
                .unwrap()
                .as_str(),
            "sqlite://authkit.db?mode=rwc"
        );
    }
}
