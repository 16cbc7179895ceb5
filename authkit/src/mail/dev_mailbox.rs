//! The development mailbox: every message becomes an `.eml` file (and a log line) instead of
//! leaving the machine.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lettre::message::Mailbox;

use super::build::{parse_from, prepare};
use super::{MailConfigError, MailError, MailKind, MailMessage, Mailer};
use crate::clock::Clock;
use crate::rng::{OsRandom, RandomSource};

/// The sender written into development mails unless [`DevMailbox::with_from`] says otherwise.
const DEFAULT_FROM: &str = "authkit <no-reply@localhost>";
/// How many names to try before giving up (each collision means another writer got there).
const MAX_NAME_ATTEMPTS: u32 = 64;

/// A [`Mailer`] for development: writes each message as a complete RFC 5322 `.eml` file in a
/// directory (default `./.authkit/mail`, `AUTHKIT_DEV_MAILBOX_DIR`) and logs where it went.
///
/// Files are named `<unix seconds>-<counter>-<kind>.eml`, both numbers zero-padded so that a
/// plain name sort is a time sort. A file appears under its final name only once complete
/// (written under a hidden temporary name, then linked), and an existing file is never
/// replaced: a name taken by another process moves on to the next counter value.
///
/// The log line names the kind, the recipient and the file, never the body: verification and
/// reset mails carry single-use links. Open the file to follow them.
pub struct DevMailbox {
    dir: PathBuf,
    from: Mailbox,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
    counter: Arc<AtomicU64>,
}

impl fmt::Debug for DevMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevMailbox")
            .field("dir", &self.dir)
            .field("from", &self.from.email.to_string())
            .finish_non_exhaustive()
    }
}

impl DevMailbox {
    /// A mailbox writing into `dir`, which is created if missing (mode 0700 on Unix: the files
    /// hold live sign-in links). `clock` dates the messages and their file names.
    ///
    /// Meant for start-up: it touches the file system synchronously.
    pub fn new(dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> io::Result<Self> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        Ok(Self {
            dir,
            from: parse_from(DEFAULT_FROM).ok_or_else(|| io::Error::other("default sender"))?,
            clock,
            rng: Arc::new(OsRandom),
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sets the sender written into the messages.
    pub fn with_from(mut self, from: &str) -> Result<Self, MailConfigError> {
        self.from = parse_from(from).ok_or(MailConfigError::InvalidFrom)?;
        Ok(self)
    }

    /// Replaces the random source of `Message-ID`s.
    #[must_use]
    pub fn with_random(mut self, rng: Arc<dyn RandomSource>) -> Self {
        self.rng = rng;
        self
    }

    /// The directory the `.eml` files land in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Mailer for DevMailbox {
    async fn send(&self, message: &MailMessage) -> Result<(), MailError> {
        let now = self.clock.now();
        let prepared = prepare(message, &self.from, now, self.rng.as_ref())?;
        let dir = self.dir.clone();
        let counter = Arc::clone(&self.counter);
        let kind = message.kind;
        let secs = u64::try_from(now.unix_seconds()).unwrap_or(0);
        // Blocking file IO belongs on the blocking pool, not on an executor thread.
        let path = tokio::task::spawn_blocking(move || {
            write_eml(&dir, secs, &counter, kind, &prepared.bytes)
        })
        .await
        .map_err(|_| MailError::Transient("dev mailbox writer task failed".into()))?
        .map_err(|e| MailError::Transient(format!("cannot write to the dev mailbox: {e}")))?;
        tracing::info!(
            kind = kind.as_str(),
            to = %message.to,
            path = %path.display(),
            "development mail written to the dev mailbox (not sent)"
        );
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("dev mailbox path is not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // An existing directory keeps the mode its owner gave it; say so if others can read.
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                "dev mailbox directory is accessible to other users; its mails hold sign-in links"
            );
        }
    }
    Ok(())
}

/// Writes `bytes` under the first free name and returns the final path.
fn write_eml(
    dir: &Path,
    secs: u64,
    counter: &AtomicU64,
    kind: MailKind,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    for _ in 0..MAX_NAME_ATTEMPTS {
        let seq = counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{secs:011}-{seq:08}-{}.eml", kind.as_str());
        let final_path = dir.join(&name);
        // Hidden, and not ending in `.eml`, so that readers listing `*.eml` never see it.
        let tmp_path = dir.join(format!(".{name}.tmp"));
        match write_new(&tmp_path, bytes) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        // A hard link publishes the complete file atomically and, unlike `rename`, refuses to
        // replace an existing one (a previous run may have used this name in the same second).
        let linked = fs::hard_link(&tmp_path, &final_path);
        let removed = fs::remove_file(&tmp_path);
        match linked {
            Ok(()) => {
                if removed.is_err() {
                    // The mail is published; a stray hidden file is only clutter.
                    tracing::warn!(path = %tmp_path.display(), "could not remove a temporary dev mail file");
                }
                return Ok(final_path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free file name in the dev mailbox",
    ))
}

/// Creates `path` (it must not exist), readable by the owner only, and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{ManualClock, Timestamp};

    fn message(kind: MailKind, n: usize) -> MailMessage {
        MailMessage {
            to: format!("user{n}@example.com"),
            subject: format!("Message {n}"),
            text: format!("Open https://app.example/verify-email#token=tok{n}\n"),
            kind,
        }
    }

    fn eml_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// A minimal RFC 5322 reading: CRLF lines, `Name: value` headers (or folded continuations),
    /// an empty line, then the body.
    fn parse_eml(raw: &str) -> (Vec<(String, String)>, String) {
        let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
        assert!(
            !raw.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().expect("continuation first").1 += line;
            } else {
                let (name, value) = line.split_once(": ").expect("header line");
                assert!(name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        (headers, body.to_owned())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        let found: Vec<_> = headers.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "exactly one {name}");
        &found[0].1
    }

    #[tokio::test]
    async fn writes_a_parseable_eml() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        let clock = ManualClock::new(Timestamp::from_unix_seconds(1_700_000_000));
        let mailbox = DevMailbox::new(&dir, Arc::new(clock)).unwrap();
        mailbox
            .send(&message(MailKind::Verification, 1))
            .await
            .unwrap();

        let names = eml_names(&dir);
        assert_eq!(names, ["01700000000-00000000-verification.eml"]);
        let raw = fs::read_to_string(dir.join(&names[0])).unwrap();
        let (headers, body) = parse_eml(&raw);
        assert_eq!(header(&headers, "From"), "authkit <no-reply@localhost>");
        assert_eq!(header(&headers, "To"), "user1@example.com");
        assert_eq!(header(&headers, "Subject"), "Message 1");
        assert_eq!(header(&headers, "Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert!(header(&headers, "Message-ID").ends_with("@localhost>"));
        assert_eq!(
            header(&headers, "Content-Type"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            body,
            "Open https://app.example/verify-email#token=tok1\r\n\r\n"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn directory_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("mail");
        let clock = ManualClock::new(Timestamp::from_unix_seconds(5));
        let mailbox = DevMailbox::new(&dir, Arc::new(clock)).unwrap();
        mailbox
            .send(&message(MailKind::PasswordReset, 1))
            .await
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join(&eml_names(&dir)[0]);
        assert_eq!(mode(&file), 0o600);
    }

    #[tokio::test]
    async fn names_sort_in_sending_order() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(999));
        let mailbox = DevMailbox::new(tmp.path(), Arc::new(clock.clone())).unwrap();
        let mut sent = Vec::new();
        for n in 0..12 {
            // Several per second (the counter orders them) and across a digit boundary.
            if n % 4 == 0 {
                clock.advance(Duration::from_secs(1));
            }
            mailbox
                .send(&message(MailKind::NewSignIn, n))
                .await
                .unwrap();
            sent.push(format!("To: user{n}@example.com\r\n"));
        }
        let names = eml_names(tmp.path());
        assert_eq!(names.len(), 12);
        assert!(names[0].starts_with("00000001000-"), "{names:?}");
        for (name, to) in names.iter().zip(&sent) {
            let raw = fs::read_to_string(tmp.path().join(name)).unwrap();
            assert!(raw.contains(to.as_str()), "{name} should hold {to}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sends_never_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(42));
        let mailbox = Arc::new(DevMailbox::new(tmp.path(), Arc::new(clock)).unwrap());
        let tasks: Vec<_> = (0..40)
            .map(|n| {
                let mailbox = Arc::clone(&mailbox);
                tokio::spawn(
                    async move { mailbox.send(&message(MailKind::AccountExists, n)).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let names = eml_names(tmp.path());
        assert_eq!(names.len(), 40, "{names:?}");
        let mut recipients: Vec<String> = names
            .iter()
            .map(|n| {
                let raw = fs::read_to_string(tmp.path().join(n)).unwrap();
                header(&parse_eml(&raw).0, "To").to_owned()
            })
            .collect();
        recipients.sort();
        recipients.dedup();
        assert_eq!(recipients.len(), 40);
    }

    #[tokio::test]
    async fn never_replaces_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        // As if a previous run wrote its first mail in the same second.
        let taken = tmp.path().join("00000000077-00000000-verification.eml");
        fs::write(&taken, "earlier mail").unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(77));
        let mailbox = DevMailbox::new(tmp.path(), Arc::new(clock)).unwrap();
        mailbox
            .send(&message(MailKind::Verification, 1))
            .await
            .unwrap();
        assert_eq!(fs::read_to_string(&taken).unwrap(), "earlier mail");
        assert_eq!(
            eml_names(tmp.path()),
            [
                "00000000077-00000000-verification.eml",
                "00000000077-00000001-verification.eml"
            ]
        );
    }

    #[tokio::test]
    async fn refuses_malformed_messages_permanently() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(1));
        let mailbox = DevMailbox::new(tmp.path(), Arc::new(clock)).unwrap();
        let mut bad = message(MailKind::Verification, 1);
        bad.to = "user@example.com\r\nBcc: eve@evil.test".into();
        let err = mailbox.send(&bad).await.unwrap_err();
        assert!(matches!(err, MailError::Permanent(_)), "{err}");
        assert!(eml_names(tmp.path()).is_empty());
    }

    #[test]
    fn custom_sender() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_seconds(1));
        let mailbox = DevMailbox::new(tmp.path(), Arc::new(clock)).unwrap();
        assert!(mailbox.with_from("Acme <a@acme.test>").is_ok());
        let mailbox = DevMailbox::new(tmp.path(), Arc::new(ManualClock::new(Timestamp::EPOCH)));
        assert_eq!(
            mailbox.unwrap().with_from("bad\r\n").unwrap_err(),
            MailConfigError::InvalidFrom
        );
    }
}
