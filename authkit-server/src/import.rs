//! `import-users`: creates accounts from a JSON Lines file, keeping their existing password
//! hashes (argon2id, bcrypt, PBKDF2-SHA256, Django), which are replaced with argon2id at each
//! user's next login. The format is described in `docs/migrating-users.md`.
//!
//! Reports never contain an address or a hash: a failed line is reported by its number and a
//! reason only, since the file holds personal data and password hashes.

use std::collections::HashSet;
use std::fmt;
use std::io::BufRead;

use authkit::clock::Timestamp;
use authkit::password::HashKind;
use authkit::rng::{RandomError, RandomSource};
use authkit::store::{NewUser, Store, StoreError};
use authkit::user::{Email, UserId};
use serde::Deserialize;
use serde_json::Value;

/// Longest accepted line, in bytes: a user record is a few hundred bytes; anything much longer
/// is not one, and is not read into memory whole.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// One line as written: every field as raw JSON, so that type errors are reported by field
/// name without echoing the value (an address or a hash) the way serde's messages would.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    email: Option<Value>,
    password_hash: Option<Value>,
    email_verified: Option<Value>,
    created_at: Option<Value>,
}

/// Why one line was not imported. The messages name fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// Not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// Malformed JSON.
    #[error("invalid JSON at column {column}")]
    InvalidJson {
        /// Where the parser stopped.
        column: usize,
    },
    /// A field other than `email`, `password_hash`, `email_verified`, `created_at`.
    #[error("unknown field (allowed: email, password_hash, email_verified, created_at)")]
    UnknownField,
    /// The same field twice.
    #[error("a field appears twice")]
    DuplicateField,
    /// `email` is absent or null.
    #[error("email is missing")]
    MissingEmail,
    /// A field has the wrong JSON type.
    #[error("{field} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `email` is not a valid address.
    #[error("email is not a valid address")]
    InvalidEmail,
    /// `password_hash` is not a supported format, or asks for more work than allowed.
    #[error(
        "password_hash is not a supported hash (argon2id, bcrypt $2a$/$2b$/$2y$, pbkdf2-sha256, Django pbkdf2_sha256) or exceeds the cost limits"
    )]
    UnsupportedHash,
    /// `created_at` is fractional, negative or in the future.
    #[error("created_at must be whole Unix seconds, not negative and not in the future")]
    InvalidCreatedAt,
}

/// A line that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFailure {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub error: LineError,
}

impl fmt::Display for LineFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

/// What an import did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// Accounts created (for a dry run: that would be created).
    pub imported: usize,
    /// Lines whose address already has an account, in the store or earlier in the file.
    pub skipped_existing: usize,
    /// Lines refused, in file order.
    pub failed: Vec<LineFailure>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "dry run: would import"
        } else {
            "imported"
        };
        write!(
            f,
            "{verb} {}, skipped {} (already exist), failed {}",
            self.imported,
            self.skipped_existing,
            self.failed.len()
        )
    }
}

/// Why the import stopped (per-line problems are in the report instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the input failed.
    #[error("reading the input failed after line {line}")]
    Read {
        /// The last line read completely.
        line: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed (other than an existing address). Lines before `line` are imported;
    /// running the import again skips them.
    #[error("the store failed at line {line}")]
    Store {
        /// The line being imported.
        line: usize,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The random source failed while making a user id.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Imports users from JSON Lines `input`, one user per line (blank lines are ignored):
///
/// `{"email": "…", "password_hash": "…" | null, "email_verified": bool, "created_at": secs}`
///
/// Only `email` is required. `created_at` defaults to `now`; `email_verified` to false; a null
/// or absent `password_hash` creates an account without a password. Addresses that already
/// have an account are skipped, so an interrupted import can simply be run again. With
/// `dry_run`, everything is checked (including existing addresses) and nothing is written.
///
/// Reading `input` blocks: this is meant for a command-line run, not a request handler.
pub async fn import_users(
    store: &dyn Store,
    mut input: impl BufRead,
    now: Timestamp,
    rng: &dyn RandomSource,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        dry_run,
        ..ImportReport::default()
    };
    // Addresses seen in this file, for a dry run: nothing is written, so the store cannot
    // refuse the second occurrence as a real import does.
    let mut seen = HashSet::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let read =
            read_line(&mut input, &mut buf).map_err(|source| ImportError::Read { line, source })?;
        let Some(complete) = read else {
            break;
        };
        line += 1;
        let user = if complete {
            parse_line(&buf, now)
        } else {
            Err(LineError::TooLong)
        };
        let user = match user {
            Ok(Some(user)) => user,
            Ok(None) => continue,
            Err(error) => {
                report.failed.push(LineFailure { line, error });
                continue;
            }
        };
        if dry_run {
            if !seen.insert(user.email.clone()) {
                report.skipped_existing += 1;
                continue;
            }
            match store.user_by_email(&user.email).await {
                Ok(Some(_)) => report.skipped_existing += 1,
                Ok(None) => report.imported += 1,
                Err(source) => return Err(ImportError::Store { line, source }),
            }
            continue;
        }
        let new = NewUser {
            id: UserId::generate(rng)?,
            email: user.email,
            password_hash: user.password_hash,
            email_verified: user.email_verified,
            now: user.created_at,
        };
        match store.create_user(new).await {
            Ok(_) => report.imported += 1,
            Err(StoreError::Conflict) => report.skipped_existing += 1,
            Err(source) => return Err(ImportError::Store { line, source }),
        }
    }
    Ok(report)
}

/// A validated line.
struct ImportUser {
    email: Email,
    password_hash: Option<String>,
    email_verified: bool,
    created_at: Timestamp,
}

/// Reads one line (without its `\n`) into `buf`, at most [`MAX_LINE_BYTES`] of it: `None` at
/// the end of input, `Some(false)` when the line was longer (the rest is skipped unread into
/// memory).
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    let mut any = false;
    let mut complete = true;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(complete));
        }
        any = true;
        let (part, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (chunk.get(..i).unwrap_or_default(), true),
            None => (chunk, false),
        };
        if complete && buf.len() + part.len() <= MAX_LINE_BYTES {
            buf.extend_from_slice(part);
        } else {
            complete = false;
            buf.clear();
        }
        let consumed = part.len() + usize::from(newline);
        input.consume(consumed);
        if newline {
            return Ok(Some(complete));
        }
    }
}

/// `Ok(None)` for a blank line.
fn parse_line(bytes: &[u8], now: Timestamp) -> Result<Option<ImportUser>, LineError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LineError::NotUtf8)?;
    // A trailing `\r` (CRLF files) is white space to JSON as well.
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // Checked first: serde's message for a non-object top level echoes the value.
    if !text.starts_with('{') {
        return Err(LineError::NotAnObject);
    }
    let raw: RawLine = serde_json::from_str(text).map_err(|e| match e.classify() {
        // With every field typed `Value`, the only data errors left are field names: an
        // unknown one (whose name is not echoed: it could be anything) or a repeated one.
        serde_json::error::Category::Data if e.to_string().starts_with("duplicate field") => {
            LineError::DuplicateField
        }
        serde_json::error::Category::Data => LineError::UnknownField,
        _ => LineError::InvalidJson { column: e.column() },
    })?;
    let email = match raw.email {
        Some(Value::String(s)) => Email::parse(&s).map_err(|_| LineError::InvalidEmail)?,
        None | Some(Value::Null) => return Err(LineError::MissingEmail),
        Some(_) => return Err(wrong_type("email", "a string")),
    };
    let password_hash = match raw.password_hash {
        Some(Value::String(s)) => {
            HashKind::identify(&s).ok_or(LineError::UnsupportedHash)?;
            Some(s)
        }
        None | Some(Value::Null) => None,
        Some(_) => return Err(wrong_type("password_hash", "a string or null")),
    };
    let email_verified = match raw.email_verified {
        Some(Value::Bool(b)) => b,
        None | Some(Value::Null) => false,
        Some(_) => return Err(wrong_type("email_verified", "true or false")),
    };
    let created_at = match raw.created_at {
        Some(Value::Number(n)) => {
            let secs = n.as_i64().ok_or(LineError::InvalidCreatedAt)?;
            if secs < 0 || secs > now.unix_seconds() {
                return Err(LineError::InvalidCreatedAt);
            }
            Timestamp::from_unix_seconds(secs)
        }
        None | Some(Value::Null) => now,
        Some(_) => return Err(wrong_type("created_at", "an integer (Unix seconds)")),
    };
    Ok(Some(ImportUser {
        email,
        password_hash,
        email_verified,
        created_at,
    }))
}

fn wrong_type(field: &'static str, expected: &'static str) -> LineError {
    LineError::WrongType { field, expected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authkit::rng::OsRandom;
    use authkit::store::{MemoryStore, UserStore as _};

    const NOW: i64 = 1_800_000_000;
    const BCRYPT: &str = "$2b$05$P9UdwfeZwAmSwLFXtORG7O/QGRHg0yAgzwSY/18kDBctcvXweqti6";
    const DJANGO: &str = "pbkdf2_sha256$1000$seasalt$JgZryXe2Ga8ysg6XbzkLpTdyPQrHqsinbL9BnnhgX4A=";
    const PHC: &str =
        "$pbkdf2-sha256$i=1000$AAECAwQFBgcICQoLDA0ODw$ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4";
    const ARGON2: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

    async fn run(store: &MemoryStore, input: &str, dry_run: bool) -> ImportReport {
        import_users(
            store,
            input.as_bytes(),
            Timestamp::from_unix_seconds(NOW),
            &OsRandom,
            dry_run,
        )
        .await
        .unwrap()
    }

    async fn stored(store: &MemoryStore, email: &str) -> Option<authkit::user::UserRecord> {
        store
            .user_by_email(&Email::parse(email).unwrap())
            .await
            .unwrap()
    }

    fn line(v: serde_json::Value) -> String {
        format!("{v}\n")
    }

    #[tokio::test]
    async fn imports_every_supported_hash_and_keeps_it_verbatim() {
        let store = MemoryStore::new();
        let input = [
            line(
                serde_json::json!({"email": "Alice@Example.com", "password_hash": BCRYPT, "email_verified": true, "created_at": 1_600_000_000}),
            ),
            line(serde_json::json!({"email": "bob@example.com", "password_hash": DJANGO})),
            line(serde_json::json!({"email": "carol@example.com", "password_hash": PHC})),
            line(serde_json::json!({"email": "dan@example.com", "password_hash": ARGON2})),
            "\n   \n".to_owned(),
            line(serde_json::json!({"email": "erin@example.com", "password_hash": null})),
            line(serde_json::json!({"email": "frank@example.com"})),
        ]
        .concat();
        let report = run(&store, &input, false).await;
        assert_eq!(
            report,
            ImportReport {
                dry_run: false,
                imported: 6,
                skipped_existing: 0,
                failed: vec![]
            }
        );
        assert_eq!(
            report.to_string(),
            "imported 6, skipped 0 (already exist), failed 0"
        );
        let alice = stored(&store, "alice@example.com").await.unwrap();
        assert_eq!(alice.password_hash.as_deref(), Some(BCRYPT));
        assert!(alice.email_verified);
        let bob = stored(&store, "bob@example.com").await.unwrap();
        assert_eq!(bob.password_hash.as_deref(), Some(DJANGO));
        assert!(!bob.email_verified);
        assert_eq!(
            stored(&store, "carol@example.com")
                .await
                .unwrap()
                .password_hash
                .as_deref(),
            Some(PHC)
        );
        for oauth_only in ["erin@example.com", "frank@example.com"] {
            assert_eq!(
                stored(&store, oauth_only).await.unwrap().password_hash,
                None
            );
        }
    }

    #[tokio::test]
    async fn existing_and_repeated_addresses_are_skipped_and_a_rerun_is_harmless() {
        let store = MemoryStore::new();
        let input = [
            line(serde_json::json!({"email": "alice@example.com", "password_hash": BCRYPT})),
            line(serde_json::json!({"email": "ALICE@example.com", "password_hash": DJANGO})),
            line(serde_json::json!({"email": "bob@example.com"})),
        ]
        .concat();
        let first = run(&store, &input, false).await;
        assert_eq!((first.imported, first.skipped_existing), (2, 1));
        // The first line wins; the repeat did not overwrite it.
        assert_eq!(
            stored(&store, "alice@example.com")
                .await
                .unwrap()
                .password_hash
                .as_deref(),
            Some(BCRYPT)
        );
        let again = run(&store, &input, false).await;
        assert_eq!((again.imported, again.skipped_existing), (0, 3));
        assert!(again.failed.is_empty());
    }

    #[tokio::test]
    async fn dry_run_checks_everything_and_writes_nothing() {
        let store = MemoryStore::new();
        run(
            &store,
            &line(serde_json::json!({"email": "old@example.com"})),
            false,
        )
        .await;
        let input = [
            line(serde_json::json!({"email": "old@example.com"})),
            line(serde_json::json!({"email": "new@example.com", "password_hash": BCRYPT})),
            line(serde_json::json!({"email": "new@example.com"})),
            line(serde_json::json!({"email": "bad", "password_hash": BCRYPT})),
        ]
        .concat();
        let report = run(&store, &input, true).await;
        assert!(report.dry_run);
        assert_eq!((report.imported, report.skipped_existing), (1, 2));
        assert_eq!(
            report.failed,
            vec![LineFailure {
                line: 4,
                error: LineError::InvalidEmail
            }]
        );
        assert_eq!(
            report.to_string(),
            "dry run: would import 1, skipped 2 (already exist), failed 1"
        );
        assert!(stored(&store, "new@example.com").await.is_none());
    }

    #[tokio::test]
    async fn bad_lines_are_reported_by_number_and_reason_only() {
        let store = MemoryStore::new();
        let secret_email = "victim@example.com";
        let over_cost = BCRYPT.replacen("$05$", "$17$", 1);
        let lines = [
            // 1: fine
            line(serde_json::json!({"email": "ok@example.com"})),
            // 2: unknown field, named after an address
            line(serde_json::json!({"email": "x@example.com", secret_email: 1})),
            // 3: unknown field
            line(serde_json::json!({"email": "x@example.com", "password": "hunter2hunter2"})),
            // 4: invalid address
            line(serde_json::json!({"email": "victim at example.com"})),
            // 5: unsupported hash
            line(serde_json::json!({"email": secret_email, "password_hash": "md5$abc$def"})),
            // 6: bcrypt cost over the limit
            line(serde_json::json!({"email": secret_email, "password_hash": over_cost})),
            // 7: wrong type, carrying an address
            line(serde_json::json!({"email": "y@example.com", "email_verified": secret_email})),
            // 8: wrong type for the hash
            line(serde_json::json!({"email": "y@example.com", "password_hash": 12})),
            // 9: not an object, which is an address
            format!("\"{secret_email}\"\n"),
            // 10: malformed JSON
            format!("{{\"email\": \"{secret_email}\",\n"),
            // 11: missing email
            line(serde_json::json!({"password_hash": BCRYPT})),
            // 12: duplicate field
            format!("{{\"email\": \"a@example.com\", \"email\": \"{secret_email}\"}}\n"),
            // 13: created_at in the future
            line(serde_json::json!({"email": "z@example.com", "created_at": NOW + 1})),
            // 14: created_at negative
            line(serde_json::json!({"email": "z@example.com", "created_at": -1})),
            // 15: created_at fractional
            line(serde_json::json!({"email": "z@example.com", "created_at": 1.5})),
            // 16: empty hash string
            line(serde_json::json!({"email": "z@example.com", "password_hash": ""})),
        ]
        .concat();
        let report = run(&store, &lines, false).await;
        assert_eq!(report.imported, 1);
        let got: Vec<(usize, LineError)> = report
            .failed
            .iter()
            .map(|f| (f.line, f.error.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, LineError::UnknownField),
                (3, LineError::UnknownField),
                (4, LineError::InvalidEmail),
                (5, LineError::UnsupportedHash),
                (6, LineError::UnsupportedHash),
                (7, wrong_type("email_verified", "true or false")),
                (8, wrong_type("password_hash", "a string or null")),
                (9, LineError::NotAnObject),
                (10, LineError::InvalidJson { column: 31 }),
                (11, LineError::MissingEmail),
                (12, LineError::DuplicateField),
                (13, LineError::InvalidCreatedAt),
                (14, LineError::InvalidCreatedAt),
                (15, LineError::InvalidCreatedAt),
                (16, LineError::UnsupportedHash),
            ]
        );
        // Nothing of the input reaches the messages.
        for failure in &report.failed {
            let shown = failure.to_string();
            assert!(shown.starts_with(&format!("line {}: ", failure.line)));
            for secret in ["victim", "example.com", "P9Udwfe", "md5$abc", "hunter2"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[tokio::test]
    async fn over_long_lines_fail_alone_and_crlf_is_accepted() {
        let store = MemoryStore::new();
        let long = format!(
            "{{\"email\": \"long@example.com\", \"password_hash\": \"{}\"}}\n",
            "a".repeat(MAX_LINE_BYTES)
        );
        let input = format!(
            "{long}{{\"email\": \"after@example.com\"}}\r\n{{\"email\": \"last@example.com\"}}"
        );
        // A tiny buffer forces every line to be read in pieces.
        let reader = std::io::BufReader::with_capacity(7, input.as_bytes());
        let report = import_users(
            &store,
            reader,
            Timestamp::from_unix_seconds(NOW),
            &OsRandom,
            false,
        )
        .await
        .unwrap();
        assert_eq!(report.imported, 2);
        assert_eq!(
            report.failed,
            vec![LineFailure {
                line: 1,
                error: LineError::TooLong
            }]
        );
        assert!(stored(&store, "after@example.com").await.is_some());
        assert!(stored(&store, "last@example.com").await.is_some());
    }

    #[tokio::test]
    async fn invalid_utf8_is_a_line_error() {
        let store = MemoryStore::new();
        let mut input = b"{\"email\": \"a\xff@example.com\"}\n".to_vec();
        input.extend_from_slice(b"{\"email\": \"b@example.com\"}\n");
        let report = import_users(
            &store,
            input.as_slice(),
            Timestamp::from_unix_seconds(NOW),
            &OsRandom,
            false,
        )
        .await
        .unwrap();
        assert_eq!(report.imported, 1);
        assert_eq!(report.failed[0].error, LineError::NotUtf8);
    }

    #[tokio::test]
    async fn created_at_becomes_the_creation_time() {
        let store = MemoryStore::new();
        let input = [
            line(serde_json::json!({"email": "then@example.com", "created_at": 1_500_000_000})),
            line(serde_json::json!({"email": "now@example.com"})),
        ]
        .concat();
        run(&store, &input, false).await;
        let then = stored(&store, "then@example.com").await.unwrap();
        let now = stored(&store, "now@example.com").await.unwrap();
        assert_eq!(then.created_at, Timestamp::from_unix_seconds(1_500_000_000));
        assert_eq!(now.created_at, Timestamp::from_unix_seconds(NOW));
    }
}
