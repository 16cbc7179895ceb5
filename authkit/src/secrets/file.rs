//! Secrets mounted as files: one file per secret, as Kubernetes and Docker mount them.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{SecretError, SecretProvider, SecretValue};

/// Files larger than this are refused: a secret is a key or a URL, not a document.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Bytes of the SHA-256 of the value that make up the version label (12 hex digits).
const VERSION_BYTES: usize = 6;

/// Reads secret `name` from the file `<dir>/<name>`: Kubernetes secret volumes and Docker
/// secrets (`/run/secrets`) mount one file per key.
///
/// * Names are limited to `[A-Za-z0-9_]`; any other name (`../x`, `..data`, `a/b`) is
///   [`SecretError::NotFound`] and never touches the file system, so a name cannot escape `dir`.
/// * The file is read again on every [`get`](SecretProvider::get). The caller caches values
///   and refreshes them on an interval, so a rotated mount is picked up: Kubernetes replaces
///   all files at once by re-pointing the `..data` symlink, and the next read follows the new
///   link.
/// * Surrounding whitespace (the trailing newline of `echo value > file`) is trimmed. An empty
///   or missing file is [`SecretError::NotFound`]; any other read failure (permissions, not
///   UTF-8, larger than 64 KiB) is [`SecretError::Unavailable`] with an error naming the path,
///   never the contents.
///
/// # Version label
/// The version is the first 12 hex digits (48 bits) of the SHA-256 of the trimmed value, so
/// a cache can tell that a value changed without keeping or comparing the value itself. The
/// label is derived from the secret, but it is not a leak risk for what this provider is meant
/// to hold: key rings carry at least 256 bits of random key material, and 48 bits of a hash
/// of such a value give no practical way back to it. Do not store low-entropy secrets (short
/// passwords) here if the version label is shown to people who must not learn them: a hash
/// prefix of a guessable value can confirm a guess.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    /// Reads secrets from files in `dir` (e.g. the mount path of a Kubernetes secret volume).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory that holds the secret files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of secret `name`, if `name` is a valid secret name.
    fn path(&self, name: &str) -> Option<PathBuf> {
        let safe = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        safe.then(|| self.dir.join(name))
    }
}

/// Why a secret file could not be read. Names the path, never the contents.
#[derive(Debug, thiserror::Error)]
enum FileReadError {
    #[error("cannot read the secret file {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret file {} is larger than {MAX_FILE_LEN} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("the secret file {} is not valid UTF-8", path.display())]
    NotUtf8 {
        path: PathBuf,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("the secret file reader task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Reads and trims the file at `path`. `Ok(None)` means missing or empty.
fn read_value(path: &Path) -> Result<Option<Zeroizing<String>>, FileReadError> {
    let io = |source: std::io::Error| FileReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    // Size the buffer up front so that reading does not reallocate and leave copies behind.
    let hint = file
        .metadata()
        .map(|m| m.len().min(MAX_FILE_LEN))
        .unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(hint).unwrap_or(0).saturating_add(1),
    ));
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_LEN {
        return Err(FileReadError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|source| FileReadError::NotUtf8 {
        path: path.to_owned(),
        source,
    })?;
    let trimmed = text.trim();
    Ok((!trimmed.is_empty()).then(|| Zeroizing::new(trimmed.to_owned())))
}

/// The version label: the first [`VERSION_BYTES`] bytes of an HMAC-SHA256 of the value under
/// a key drawn once per process. It tells a changed value from an unchanged one within this
/// process, and, unlike a plain hash, cannot be used offline to confirm a guessed password
/// (labels are logged and printed by `secrets check`).
fn version_label(value: &str) -> String {
    use hmac::Mac as _;
    static LABEL_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = LABEL_KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        // Without randomness the label falls back to a plain hash of a fixed key: still a
        // change detector, only not a secret one.
        let _ = crate::rng::RandomSource::try_fill(&crate::rng::OsRandom, &mut key);
        key
    });
    let digest = match <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(value.as_bytes());
            mac.finalize().into_bytes()
        }
        Err(_) => Sha256::digest(value.as_bytes()),
    };
    digest
        .iter()
        .take(VERSION_BYTES)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[async_trait]
impl SecretProvider for FileSecrets {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
        let not_found = || SecretError::NotFound {
            name: name.to_owned(),
            provider: "file",
        };
        let unavailable = |e: FileReadError| SecretError::Unavailable {
            name: name.to_owned(),
            provider: "file",
            source: Box::new(e),
        };
        let path = self.path(name).ok_or_else(not_found)?;
        let value = tokio::task::spawn_blocking(move || read_value(&path))
            .await
            .map_err(|e| unavailable(FileReadError::Task(e)))?
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        let version = version_label(&value);
        Ok(SecretValue::new(
            SecretString::from(value.as_str()),
            Some(version),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_text(e: &SecretError) -> String {
        crate::error::error_chain(e)
    }

    #[tokio::test]
    async fn reads_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db_url"), "  value-one\n").unwrap();
        let provider = FileSecrets::new(dir.path());
        assert_eq!(provider.dir(), dir.path());
        assert_eq!(provider.name(), "file");
        let got = provider.get("db_url").await.unwrap();
        assert_eq!(got.expose(), "value-one");
        let version = got.version().unwrap();
        assert_eq!(version.len(), 12);
        assert!(version.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(version, version_label("value-one"));
        // Only trailing whitespace differs: same value, same version.
        std::fs::write(dir.path().join("db_url"), "value-one").unwrap();
        let again = provider.get("db_url").await.unwrap();
        assert_eq!(again.version(), Some(version));
    }

    #[tokio::test]
    async fn picks_up_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pepper");
        std::fs::write(&file, "first\n").unwrap();
        let provider = FileSecrets::new(dir.path());
        let first = provider.get("pepper").await.unwrap();
        std::fs::write(&file, "second\n").unwrap();
        let second = provider.get("pepper").await.unwrap();
        assert_eq!(first.expose(), "first");
        assert_eq!(second.expose(), "second");
        assert_ne!(first.version(), second.version());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn follows_a_kubernetes_symlink_swap() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (version, value) in [("v1", "old-value\n"), ("v2", "new-value\n")] {
            std::fs::create_dir(root.join(version)).unwrap();
            std::fs::write(root.join(version).join("session_key"), value).unwrap();
        }
        symlink("v1", root.join("..data")).unwrap();
        symlink("..data/session_key", root.join("session_key")).unwrap();

        let provider = FileSecrets::new(root);
        let before = provider.get("session_key").await.unwrap();
        assert_eq!(before.expose(), "old-value");

        // What the kubelet does: a new link, renamed over `..data` in one step.
        symlink("v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();

        let after = provider.get("session_key").await.unwrap();
        assert_eq!(after.expose(), "new-value");
        assert_ne!(before.version(), after.version());
    }

    #[tokio::test]
    async fn refuses_names_outside_the_directory() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("mount");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(outer.path().join("outside"), "do-not-read").unwrap();
        std::fs::write(dir.join("..data"), "do-not-read").unwrap();
        let provider = FileSecrets::new(&dir);
        for name in [
            "../outside",
            "..",
            ".",
            "..data",
            "a/b",
            "/etc/passwd",
            "",
            "x\0y",
            "na me",
        ] {
            match provider.get(name).await {
                Err(SecretError::NotFound {
                    name: reported,
                    provider,
                }) => {
                    assert_eq!(reported, name);
                    assert_eq!(provider, "file");
                }
                other => panic!("{name:?}: expected NotFound, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn missing_and_empty_files_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        std::fs::write(dir.path().join("blank"), " \n\t\n").unwrap();
        let provider = FileSecrets::new(dir.path());
        for name in ["missing", "empty", "blank"] {
            let err = provider.get(name).await.unwrap_err();
            assert!(
                matches!(err, SecretError::NotFound { .. }),
                "{name}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(name) && text.contains("`file`"), "{text}");
        }
        // A directory that does not exist: every secret is missing.
        let gone = FileSecrets::new(dir.path().join("no-such-dir"));
        assert!(matches!(
            gone.get("pepper").await,
            Err(SecretError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn unreadable_files_are_unavailable_without_contents() {
        let dir = tempfile::tempdir().unwrap();
        // Not UTF-8: the bytes around the bad one must not show up in the error.
        let mut bytes = b"marker-contents-".to_vec();
        bytes.push(0xff);
        std::fs::write(dir.path().join("binary"), &bytes).unwrap();
        // A directory where a file is expected.
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        // Too large.
        let big = "marker-contents-".repeat(5000);
        std::fs::write(dir.path().join("big"), &big).unwrap();

        let provider = FileSecrets::new(dir.path());
        for name in ["binary", "nested", "big"] {
            let err = provider.get(name).await.unwrap_err();
            assert!(
                matches!(err, SecretError::Unavailable { .. }),
                "{name}: {err:?}"
            );
            let text = chain_text(&err);
            assert!(text.contains(name), "{text}");
            assert!(!text.contains("marker-contents"), "{text}");
            assert!(!format!("{err:?}").contains("marker-contents"));
        }
    }

    #[tokio::test]
    async fn debug_never_shows_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pepper"), "marker-value-7\n").unwrap();
        let provider = FileSecrets::new(dir.path());
        let value = provider.get("pepper").await.unwrap();
        assert_eq!(value.expose(), "marker-value-7");
        let debug = format!("{provider:?} {value:?}");
        assert!(!debug.contains("marker-value"), "{debug}");
        assert!(debug.contains(value.version().unwrap()), "{debug}");
    }
}
