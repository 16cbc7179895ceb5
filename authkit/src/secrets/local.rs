use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{REQUIRED_KEY_RINGS, SecretError, SecretProvider, SecretValue};
use crate::rng::{OsRandom, RandomSource};
use crate::secret::{KeyId, KeyRing};

/// Development secrets: each key ring is generated on first use and persisted as a file under
/// a directory (default `./.authkit/secrets`), so that sessions survive a restart.
///
/// Refused in production by the reference server; generating a key logs a warning (the
/// reference server also warns at every start).
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    dir: PathBuf,
    rng: Arc<dyn RandomSource>,
}

impl LocalSecrets {
    /// Keeps secrets in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            rng: Arc::new(OsRandom),
        }
    }

    /// Uses `rng` to generate keys.
    pub fn with_rng(mut self, rng: Arc<dyn RandomSource>) -> Self {
        self.rng = rng;
        self
    }

    /// The directory that holds the secrets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        let safe = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        safe.then(|| self.dir.join(name))
    }

    fn generate(&self, name: &str) -> Result<Zeroizing<String>, SecretError> {
        let mut key = Zeroizing::new([0u8; 32]);
        self.rng
            .try_fill(key.as_mut())
            .map_err(|e| self.unavailable(name, e))?;
        Ok(Zeroizing::new(format!(
            "dev1:{}",
            STANDARD.encode(key.as_ref())
        )))
    }

    fn unavailable(
        &self,
        name: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> SecretError {
        SecretError::Unavailable {
            name: name.to_owned(),
            provider: "local",
            source: Box::new(e),
        }
    }

    fn read_or_create(&self, name: &str, path: &Path) -> Result<Zeroizing<String>, SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => return Ok(Zeroizing::new(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.unavailable(name, e)),
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| self.unavailable(name, e))?;
        let value = self.generate(name)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(value.as_bytes())
                    .map_err(|e| self.unavailable(name, e))?;
                tracing::warn!(
                    secret = name,
                    dir = %self.dir.display(),
                    "generated a DEVELOPMENT secret with the `local` provider; never use it in production"
                );
                Ok(value)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read_to_string(path)
                    .map(|t| Zeroizing::new(t.trim().to_owned()))
                    .map_err(|e| self.unavailable(name, e))
            }
            Err(e) => Err(self.unavailable(name, e)),
        }
    }
}

impl LocalSecrets {
    /// Adds a new newest key to the key ring `name` (id `dev<N+1>`; older keys stay, so what
    /// they made still verifies) and returns its id. A running server picks the ring up at its
    /// next secret refresh. The file is replaced atomically (written beside it, then renamed).
    pub async fn rotate(&self, name: &str) -> Result<KeyId, SecretError> {
        if !REQUIRED_KEY_RINGS.contains(&name) {
            return Err(SecretError::NotFound {
                name: name.to_owned(),
                provider: "local",
            });
        }
        let this = self.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || this.rotate_blocking(&owned))
            .await
            .map_err(|e| self.unavailable(name, e))?
    }

    fn rotate_blocking(&self, name: &str) -> Result<KeyId, SecretError> {
        let path = self.path(name).ok_or_else(|| SecretError::NotFound {
            name: name.to_owned(),
            provider: "local",
        })?;
        let current = self.read_or_create(name, &path)?;
        let ring = KeyRing::parse(&current).map_err(|source| SecretError::InvalidKeyRing {
            name: name.to_owned(),
            provider: "local",
            source,
        })?;
        let next = ring
            .ids()
            .filter_map(|id| id.as_str().strip_prefix("dev")?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let id =
            KeyId::new(format!("dev{next}")).map_err(|source| SecretError::InvalidKeyRing {
                name: name.to_owned(),
                provider: "local",
                source,
            })?;
        let mut key = Zeroizing::new([0u8; 32]);
        self.rng
            .try_fill(key.as_mut())
            .map_err(|e| self.unavailable(name, e))?;
        let text = Zeroizing::new(format!(
            "{id}:{},{}",
            STANDARD.encode(key.as_ref()),
            current.as_str()
        ));
        let staging = self.dir.join(format!(".{name}.rotating"));
        let _ = std::fs::remove_file(&staging);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&staging)
            .map_err(|e| self.unavailable(name, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| self.unavailable(name, e))?;
        std::fs::rename(&staging, &path).map_err(|e| self.unavailable(name, e))?;
        tracing::warn!(
            secret = name,
            key_id = %id,
            "rotated a DEVELOPMENT key ring with the `local` provider"
        );
        Ok(id)
    }
}

#[async_trait]
impl SecretProvider for LocalSecrets {
    fn name(&self) -> &'static str {
        "local"
    }

    fn is_production_grade(&self) -> bool {
        false
    }

    async fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
        let not_found = || SecretError::NotFound {
            name: name.to_owned(),
            provider: "local",
        };
        let path = self.path(name).ok_or_else(not_found)?;
        if !path.exists() && !REQUIRED_KEY_RINGS.contains(&name) {
            return Err(not_found());
        }
        let this = self.clone();
        let owned = name.to_owned();
        let value = tokio::task::spawn_blocking(move || this.read_or_create(&owned, &path))
            .await
            .map_err(|e| self.unavailable(name, e))??;
        Ok(SecretValue::new(
            SecretString::from(value.as_str()),
            Some("local".into()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{SESSION_KEY, SecretKeys};

    #[tokio::test]
    async fn generates_once_and_reuses_after_restart() {
        let dir = std::env::temp_dir().join(format!("authkit-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = LocalSecrets::new(&dir).get(SESSION_KEY).await.unwrap();
        let again = LocalSecrets::new(&dir).get(SESSION_KEY).await.unwrap();
        assert_eq!(first.expose(), again.expose());
        assert!(SecretKeys::load(&LocalSecrets::new(&dir)).await.is_ok());
        assert!(matches!(
            LocalSecrets::new(&dir).get("../etc/passwd").await,
            Err(SecretError::NotFound { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(SESSION_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "secret files must not be readable by others"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // SECURITY.md #36: a rotation adds a newest key and keeps the older ones.
    #[tokio::test]
    async fn rotate_prepends_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalSecrets::new(dir.path());
        let before = KeyRing::parse(local.get(SESSION_KEY).await.unwrap().expose()).unwrap();
        let id = local.rotate(SESSION_KEY).await.unwrap();
        assert_eq!(id.as_str(), "dev2");
        let after = KeyRing::parse(local.get(SESSION_KEY).await.unwrap().expose()).unwrap();
        assert_eq!(after.current().0.as_str(), "dev2");
        let old = after.get("dev1").unwrap();
        assert_eq!(old.expose(), before.get("dev1").unwrap().expose());
        assert_eq!(local.rotate(SESSION_KEY).await.unwrap().as_str(), "dev3");
        assert!(matches!(
            local.rotate("database_password").await,
            Err(SecretError::NotFound { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SESSION_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
    }
}
