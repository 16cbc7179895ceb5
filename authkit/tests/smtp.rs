//! `SmtpMailer` against a real SMTP server: `tests/smtp/smtp_sink.py` (Python's `aiosmtpd`),
//! started per test as a child process and killed when the test ends.
//!
//! Without `python3` + `aiosmtpd` these tests print a notice and pass, except under `CI=true`,
//! where `.ci/run` installs aiosmtpd and a missing server is a failure.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use authkit::clock::{ManualClock, Timestamp};
use authkit::mail::{LinkBase, MailError, MailKind, MailMessage, Mailer, SmtpMailer, Templates};
use authkit::user::Email;

const FROM: &str = "Acme <no-reply@acme.test>";
const TOKEN: &str = "dGhpcy1pcy1hLXRlc3QtdG9rZW4_AB-cd";

/// A running `smtp_sink.py`; killed (and reaped) on drop.
struct Sink {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// Starts the sink with extra arguments (`--mode …`), or returns `None` when the test should
    /// be skipped because python3/aiosmtpd are missing outside CI.
    fn start(args: &[&str]) -> Option<Self> {
        if !sink_available() {
            return None;
        }
        let out = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--out")
            .arg(out.path())
            .args(args)
            // The sink exits when its stdin closes, i.e. when this process goes away.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp_sink.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut sink = Self {
            child,
            port: 0,
            out,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("smtp_sink.py did not report its port within 30 s");
        sink.port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from smtp_sink.py: {line:?}"));
        Some(sink)
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Accepted messages, in arrival order.
    fn received(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
    }
}

fn sink_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but python3 with aiosmtpd is missing: the SMTP tests need it \
             (.ci/run installs it with `python3 -m pip install aiosmtpd`)"
        );
    }
    eprintln!(
        "notice: skipping SMTP tests: python3 with aiosmtpd is not available \
         (python3 -m pip install aiosmtpd)"
    );
    false
}

fn mailer(url: &str) -> SmtpMailer {
    let clock = ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000));
    SmtpMailer::from_url(url, FROM)
        .unwrap()
        .with_clock(Arc::new(clock))
        .with_timeout(Duration::from_secs(5))
        .unwrap()
}

fn verification() -> MailMessage {
    let templates = Templates::new(LinkBase::parse("https://app.example.com").unwrap());
    templates
        .verification(
            &Email::parse("Alice@Example.com").unwrap(),
            TOKEN,
            Duration::from_secs(86_400),
        )
        .unwrap()
}

fn header_value<'a>(raw: &'a str, name: &str) -> &'a str {
    let head = raw.split_once("\r\n\r\n").unwrap().0;
    let prefix = format!("{name}: ");
    let values: Vec<&str> = head
        .split("\r\n")
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(values.len(), 1, "exactly one {name} header in\n{head}");
    values[0]
}

#[tokio::test]
async fn delivers_a_message_with_the_right_headers_and_body() {
    let Some(sink) = Sink::start(&["--mode", "accept"]) else {
        return;
    };
    let m = mailer(&sink.url());
    assert!(m.is_plaintext() && m.host_is_loopback());
    m.send(&verification()).await.unwrap();

    let files = sink.received();
    assert_eq!(files.len(), 1);
    let raw = fs::read_to_string(&files[0]).unwrap();
    assert_eq!(header_value(&raw, "From"), "Acme <no-reply@acme.test>");
    assert_eq!(header_value(&raw, "To"), "alice@example.com");
    assert_eq!(
        header_value(&raw, "Subject"),
        "Confirm your e-mail address for authkit"
    );
    assert_eq!(
        header_value(&raw, "Date"),
        "Fri, 15 Jan 2027 08:00:00 +0000"
    );
    assert!(header_value(&raw, "Message-ID").ends_with("@acme.test>"));
    assert_eq!(
        header_value(&raw, "Content-Type"),
        "text/plain; charset=utf-8"
    );
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body.contains(&format!(
            "\r\nhttps://app.example.com/verify-email#token={TOKEN}\r\n"
        )),
        "{body}"
    );

    let envelope = fs::read_to_string(files[0].with_extension("envelope")).unwrap();
    assert_eq!(
        envelope,
        "MAIL FROM:no-reply@acme.test\nRCPT TO:alice@example.com\n"
    );
}

#[tokio::test]
async fn a_deferred_recipient_is_transient_and_a_retry_succeeds() {
    let Some(sink) = Sink::start(&["--mode", "refuse-then-accept", "--refuse-count", "1"]) else {
        return;
    };
    let m = mailer(&sink.url());
    let message = verification();
    let err = m.send(&message).await.unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert!(err.to_string().contains("451"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(sink.received().is_empty());

    m.send(&message).await.unwrap();
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn a_deferred_data_command_is_transient_and_a_retry_succeeds() {
    let Some(sink) = Sink::start(&[
        "--mode",
        "refuse-then-accept",
        "--refuse-count",
        "2",
        "--stage",
        "data",
    ]) else {
        return;
    };
    let m = mailer(&sink.url());
    let message = verification();
    for _ in 0..2 {
        let err = m.send(&message).await.unwrap_err();
        assert!(matches!(err, MailError::Transient(_)), "{err}");
    }
    assert!(sink.received().is_empty());
    m.send(&message).await.unwrap();
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn a_refused_mailbox_is_permanent() {
    let Some(sink) = Sink::start(&["--mode", "always-refuse"]) else {
        return;
    };
    let m = mailer(&sink.url());
    let err = m.send(&verification()).await.unwrap_err();
    assert!(matches!(err, MailError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("550"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    // Reserve a free port, then close it so that connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = mailer(&format!("smtp://127.0.0.1:{port}"));
    let err = m.send(&verification()).await.unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

// Required STARTTLS must never fall back to plain text when the server does not offer it.
#[tokio::test]
async fn required_starttls_is_not_downgraded() {
    let Some(sink) = Sink::start(&["--mode", "accept"]) else {
        return;
    };
    let m = mailer(&format!("{}?tls=starttls", sink.url()));
    assert!(!m.is_plaintext());
    let err = m.send(&verification()).await.unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert!(sink.received().is_empty());

    let m = mailer(&format!("smtps://127.0.0.1:{}", sink.port));
    let err = m.send(&verification()).await.unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert!(sink.received().is_empty());
}

// SECURITY.md: no header injection through the subject or the recipient.
#[tokio::test]
async fn header_injection_is_refused_before_anything_is_sent() {
    let Some(sink) = Sink::start(&["--mode", "accept"]) else {
        return;
    };
    let m = mailer(&sink.url());
    let mut subject = verification();
    subject.subject = "Hello\r\nBcc: eve@evil.test".into();
    let mut recipient = verification();
    recipient.to = "alice@example.com\r\nBcc: eve@evil.test".into();
    for message in [subject, recipient] {
        let err = m.send(&message).await.unwrap_err();
        assert!(matches!(err, MailError::Permanent(_)), "{err}");
    }
    assert!(sink.received().is_empty());

    // A well-formed message still goes through the same mailer.
    let notice = MailMessage {
        to: "bob@example.com".into(),
        subject: "Grüße".into(),
        text: "Ünïcode body\n".into(),
        kind: MailKind::PasswordChanged,
    };
    m.send(&notice).await.unwrap();
    let raw = fs::read_to_string(&sink.received()[0]).unwrap();
    assert!(!raw.contains("eve@evil.test"));
    assert!(
        header_value(&raw, "Subject").starts_with("=?utf-8?"),
        "{raw}"
    );
}

/// The whole delivery path against the real server: a mail queued durably is sent by the job
/// worker through `SmtpMailer`; the server defers it twice (451) and the queue retries until
/// it accepts. Exactly one copy arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_retries_a_deferring_server_until_it_accepts() {
    use authkit::crypto::Sealer;
    use authkit::jobs::{JobContext, JobKind, JobQueue, JobSettings, JobWorkers};
    use authkit::rng::OsRandom;
    use authkit::secret::KeyRing;
    use authkit::store::MemoryStore;

    let Some(sink) = Sink::start(&["--mode", "refuse-then-accept", "--refuse-count", "2"]) else {
        return;
    };
    let ring = KeyRing::parse("m1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    let sealer = Sealer::new(&ring);
    let queue = JobQueue::in_memory().await.unwrap();
    queue
        .enqueue_mail(&verification(), &sealer, &OsRandom)
        .await
        .unwrap();
    let mut settings = JobSettings::default();
    settings.backoff_base = Duration::ZERO;
    settings.backoff_cap = Duration::ZERO;
    settings.poll_interval = Duration::from_millis(20);
    let workers = JobWorkers::start(
        queue.clone(),
        JobContext {
            mailer: Arc::new(mailer(&sink.url())),
            sealer,
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(ManualClock::new(Timestamp::from_unix_seconds(
                1_800_000_000,
            ))),
            rng: Arc::new(OsRandom),
            settings,
        },
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered: {:?}",
            queue.stats(JobKind::Mail).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workers.shutdown().await;
    let stats = queue.stats(JobKind::Mail).await.unwrap();
    assert_eq!(stats.done, 1, "{stats:?}");
    assert_eq!(stats.dead, 0, "{stats:?}");
    assert_eq!(sink.received().len(), 1);
    let raw = fs::read_to_string(&sink.received()[0]).unwrap();
    assert!(raw.contains(TOKEN));
}
