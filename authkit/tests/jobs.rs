//! The job queue end to end: durable mail delivery, retries, dead letters, sealed payloads,
//! kill-safety, cleanup and audit retention.
//!
//! Mail tests run against a SQLite file in a temporary directory and, when
//! `AUTHKIT_TEST_DATABASE_URL` is set (always in CI), PostgreSQL. On PostgreSQL apalis's tables
//! (schema `apalis`) are shared by every test, so each test uses its own queue prefix. Nothing
//! here sleeps for a fixed time to assert: tests poll the queue for a state, with a deadline.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use authkit::audit::{AuditActor, AuditEventType, NewAuditEvent};
use authkit::clock::{Clock, ManualClock, Timestamp};
use authkit::crypto::Sealer;
use authkit::jobs::{
    JobContext, JobKind, JobQueue, JobQueueOptions, JobSettings, JobStats, JobWorkers, JobsHandle,
    MaintenanceTask,
};
use authkit::mail::{MailError, MailKind, MailMessage, Mailer};
use authkit::rng::OsRandom;
use authkit::secret::{KeyId, KeyRing, SecretKey};
use authkit::session::{Aal, SessionIdHash, SessionKind, SessionRecord};
use authkit::store::{
    MemoryStore, NewAccountToken, NewUser, SqlStore, SqlStoreOptions, Store, TokenPurpose,
};
use authkit::user::{Email, UserId};
use support::{postgres_url, random_hex};

/// 2027-01-15T08:00:00Z.
const START: i64 = 1_800_000_000;
const RECIPIENT: &str = "carol.jones@example.com";
const LINK: &str = "https://app.example/reset#token=SINGLE-USE-SECRET-TOKEN";
/// How long a test waits for a state before failing.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test: a SQLite file in a temporary directory, or PostgreSQL with a
/// queue prefix of its own.
struct TestDb {
    backend: Backend,
    url: String,
    prefix: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` (with a notice) when PostgreSQL is not configured outside CI.
    fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("authkit.db").display()
                );
                Some(Self {
                    backend,
                    url,
                    prefix: "authkit.".to_owned(),
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => Some(Self {
                backend,
                url: postgres_url()?,
                prefix: format!("test-{}.", random_hex(8)),
                _dir: None,
            }),
        }
    }

    async fn queue(&self) -> JobQueue {
        JobQueue::connect(
            &self.url,
            JobQueueOptions::default().with_queue_prefix(self.prefix.clone()),
        )
        .await
        .unwrap()
    }

    /// The raw `job` column of every mail job, as stored.
    async fn raw_mail_payloads(&self, queue: &JobQueue) -> Vec<String> {
        let name = queue.queue_name(JobKind::Mail);
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                let rows: Vec<Vec<u8>> =
                    sqlx::query_scalar("SELECT job FROM Jobs WHERE job_type = ?1")
                        .bind(name)
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                pool.close().await;
                rows.into_iter()
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let rows: Vec<Vec<u8>> =
                    sqlx::query_scalar("SELECT job FROM apalis.jobs WHERE job_type = $1")
                        .bind(name)
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                pool.close().await;
                rows.into_iter()
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect()
            }
        }
    }
}

fn sealer() -> Sealer {
    Sealer::new(
        &KeyRing::new(vec![(
            KeyId::new("t1").unwrap(),
            SecretKey::new(vec![7; 32]).unwrap(),
        )])
        .unwrap(),
    )
}

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_seconds(START))
}

fn message() -> MailMessage {
    MailMessage {
        to: RECIPIENT.to_owned(),
        subject: "Reset your password".to_owned(),
        text: format!("Open {LINK} to choose a new password."),
        kind: MailKind::PasswordReset,
    }
}

/// Delays shortened for tests; the hanging mailer must never time out.
fn fast_settings() -> JobSettings {
    let mut s = JobSettings::default();
    s.backoff_base = Duration::ZERO;
    s.backoff_cap = Duration::ZERO;
    s.poll_interval = Duration::from_millis(25);
    s.heartbeat_interval = Duration::from_secs(1);
    s.missed_heartbeats = 1;
    s.mail_max_attempts = 4;
    s.mail_send_timeout = Duration::from_secs(3600);
    s.restart_delay = Duration::from_millis(100);
    s
}

fn context(
    mailer: Arc<FakeMailer>,
    store: Arc<dyn Store>,
    clock: ManualClock,
    settings: JobSettings,
) -> JobContext {
    JobContext {
        mailer,
        sealer: sealer(),
        store,
        clock: Arc::new(clock),
        rng: Arc::new(OsRandom),
        settings,
    }
}

fn start(queue: &JobQueue, mailer: Arc<FakeMailer>, settings: JobSettings) -> JobsHandle {
    JobWorkers::start(
        queue.clone(),
        context(mailer, Arc::new(MemoryStore::new()), clock(), settings),
    )
    .unwrap()
}

/// Polls `check` until it yields a value; fails the test after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let wait = async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn stats_until(
    queue: &JobQueue,
    kind: JobKind,
    what: &str,
    done: impl Fn(&JobStats) -> bool,
) -> JobStats {
    eventually(what, || async {
        let stats = queue.stats(kind).await.unwrap();
        done(&stats).then_some(stats)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// A fake mailer
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Behaviour {
    Deliver,
    /// Fails transiently this many more times, then delivers.
    FailTransient(u32),
    AlwaysTransient,
    Permanent,
    /// Never returns; tells the test it started.
    Hang(Option<std::sync::mpsc::Sender<()>>),
    /// Tells the test it started, then waits for `release` and delivers.
    Gate {
        started: Option<tokio::sync::oneshot::Sender<()>>,
        release: Arc<tokio::sync::Notify>,
    },
}

#[derive(Debug)]
struct FakeMailer {
    behaviour: Mutex<Behaviour>,
    calls: AtomicU32,
    /// (recipient, subject, body) of every delivered message.
    delivered: Mutex<Vec<(String, String, String)>>,
}

impl FakeMailer {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour: Mutex::new(behaviour),
            calls: AtomicU32::new(0),
            delivered: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn delivered(&self) -> Vec<(String, String, String)> {
        self.delivered.lock().unwrap().clone()
    }
}

enum Action {
    Deliver,
    Transient,
    Permanent,
    Hang,
    Wait(Arc<tokio::sync::Notify>),
}

#[async_trait]
impl Mailer for FakeMailer {
    async fn send(&self, m: &MailMessage) -> Result<(), MailError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let action = {
            let mut behaviour = self.behaviour.lock().unwrap();
            match &mut *behaviour {
                Behaviour::Deliver => Action::Deliver,
                Behaviour::FailTransient(0) => Action::Deliver,
                Behaviour::FailTransient(n) => {
                    *n -= 1;
                    Action::Transient
                }
                Behaviour::AlwaysTransient => Action::Transient,
                Behaviour::Permanent => Action::Permanent,
                Behaviour::Hang(started) => {
                    if let Some(tx) = started.take() {
                        tx.send(()).unwrap();
                    }
                    Action::Hang
                }
                Behaviour::Gate { started, release } => {
                    if let Some(tx) = started.take() {
                        tx.send(()).unwrap();
                    }
                    Action::Wait(release.clone())
                }
            }
        };
        if let Action::Wait(release) = &action {
            release.notified().await;
        }
        match action {
            Action::Deliver | Action::Wait(_) => {
                self.delivered.lock().unwrap().push((
                    m.to.clone(),
                    m.subject.clone(),
                    m.text.clone(),
                ));
                Ok(())
            }
            // Real servers echo the recipient: the queue must not store it.
            Action::Transient => Err(MailError::Transient(format!(
                "451 4.7.1 <{}>: try again later",
                m.to
            ))),
            Action::Permanent => Err(MailError::Permanent(format!(
                "550 5.1.1 <{}>: mailbox carol.jones unknown",
                m.to
            ))),
            Action::Hang => std::future::pending().await,
        }
    }
}

/// Runs a test body for one backend (skipping PostgreSQL when it is not configured).
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::TestDb::new(super::Backend::Sqlite) {
                        super::$name(db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::TestDb::new(super::Backend::Postgres) {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

backend_tests!(
    a_queued_mail_is_delivered_once,
    transient_failures_are_retried_then_delivered,
    a_permanent_failure_is_a_dead_letter_at_once,
    exhausted_retries_become_a_dead_letter,
    the_stored_payload_is_sealed,
    a_dead_letter_can_be_requeued,
    shutdown_finishes_the_mail_in_progress,
    a_job_whose_runs_keep_dying_is_given_up,
    a_maintenance_slot_is_queued_once_across_instances,
);

// ---------------------------------------------------------------------------------------------
// Mail delivery
// ---------------------------------------------------------------------------------------------

async fn a_queued_mail_is_delivered_once(db: TestDb) {
    let queue = db.queue().await;
    let mailer = FakeMailer::new(Behaviour::Deliver);
    let id = queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    assert_eq!(queue.stats(JobKind::Mail).await.unwrap().pending, 1);

    let workers = start(&queue, mailer.clone(), fast_settings());
    let stats = stats_until(&queue, JobKind::Mail, "delivery", |s| s.done == 1).await;
    workers.shutdown().await;

    assert_eq!(
        stats,
        JobStats {
            done: 1,
            ..JobStats::default()
        },
        "job {id}"
    );
    assert_eq!(mailer.calls(), 1);
    let m = message();
    assert_eq!(
        mailer.delivered(),
        vec![(m.to.clone(), m.subject.clone(), m.text.clone())]
    );
}

async fn transient_failures_are_retried_then_delivered(db: TestDb) {
    let queue = db.queue().await;
    let mailer = FakeMailer::new(Behaviour::FailTransient(2));
    queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();

    let workers = start(&queue, mailer.clone(), fast_settings());
    let stats = stats_until(&queue, JobKind::Mail, "delivery after retries", |s| {
        s.done == 1
    })
    .await;
    workers.shutdown().await;

    assert_eq!(stats.dead, 0);
    assert_eq!(mailer.calls(), 3, "two transient failures, then delivered");
    assert_eq!(mailer.delivered().len(), 1);
}

async fn a_permanent_failure_is_a_dead_letter_at_once(db: TestDb) {
    let queue = db.queue().await;
    let mailer = FakeMailer::new(Behaviour::Permanent);
    let id = queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();

    let workers = start(&queue, mailer.clone(), fast_settings());
    let stats = stats_until(&queue, JobKind::Mail, "a dead letter", |s| s.dead == 1).await;
    workers.shutdown().await;

    assert_eq!(
        stats,
        JobStats {
            dead: 1,
            ..JobStats::default()
        }
    );
    assert_eq!(mailer.calls(), 1, "a permanent failure is not retried");
    let dead = queue.dead_letters(JobKind::Mail, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].attempts, 1);
    let error = dead[0].error.clone().unwrap();
    assert!(error.contains("550 5.1.1"), "{error}");
    assert_no_secrets(&error);
}

async fn exhausted_retries_become_a_dead_letter(db: TestDb) {
    let queue = db.queue().await;
    let mailer = FakeMailer::new(Behaviour::AlwaysTransient);
    queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    let mut settings = fast_settings();
    settings.mail_max_attempts = 3;

    let workers = start(&queue, mailer.clone(), settings);
    let stats = stats_until(&queue, JobKind::Mail, "a dead letter", |s| s.dead == 1).await;
    workers.shutdown().await;

    assert_eq!(
        stats,
        JobStats {
            dead: 1,
            ..JobStats::default()
        }
    );
    assert_eq!(mailer.calls(), 3);
    let dead = queue.dead_letters(JobKind::Mail, 10).await.unwrap();
    assert_eq!(dead[0].attempts, 3);
    let error = dead[0].error.clone().unwrap();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert!(error.contains("451 4.7.1"), "{error}");
    assert_no_secrets(&error);
}

// SECURITY.md #3 and #35: the single-use link (and the address) never sit in the database in
// clear text; the payload is an AEAD envelope with a key id.
async fn the_stored_payload_is_sealed(db: TestDb) {
    let queue = db.queue().await;
    queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();

    let rows = db.raw_mail_payloads(&queue).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_no_secrets(row);
    assert!(!row.contains("Reset your password"), "{row}");
    let json: serde_json::Value = serde_json::from_str(row).unwrap();
    assert_eq!(json["kind"], "password_reset");
    assert!(
        json["sealed"].as_str().unwrap().starts_with("v1.t1."),
        "{row}"
    );
}

async fn a_dead_letter_can_be_requeued(db: TestDb) {
    let queue = db.queue().await;
    let mailer = FakeMailer::new(Behaviour::Permanent);
    let id = queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    let workers = start(&queue, mailer.clone(), fast_settings());
    stats_until(&queue, JobKind::Mail, "a dead letter", |s| s.dead == 1).await;

    // The operator fixes the mail server, then sends it again.
    *mailer.behaviour.lock().unwrap() = Behaviour::Deliver;
    assert!(queue.requeue_dead_letter(&id).await.unwrap());
    stats_until(&queue, JobKind::Mail, "delivery", |s| s.done == 1).await;
    workers.shutdown().await;
    assert_eq!(mailer.delivered().len(), 1);
    assert!(
        !queue.requeue_dead_letter(&id).await.unwrap(),
        "no longer a dead letter"
    );
}

async fn shutdown_finishes_the_mail_in_progress(db: TestDb) {
    let queue = db.queue().await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let mailer = FakeMailer::new(Behaviour::Gate {
        started: Some(started_tx),
        release: release.clone(),
    });
    queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    let workers = start(&queue, mailer.clone(), fast_settings());
    started_rx.await.unwrap();

    // Shut down while the send is in progress; it completes only once the send does.
    let shutdown = tokio::spawn(workers.shutdown());
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the mail in progress"
    );
    release.notify_one();
    shutdown.await.unwrap();

    assert_eq!(mailer.delivered().len(), 1);
    let stats = queue.stats(JobKind::Mail).await.unwrap();
    assert_eq!(
        stats,
        JobStats {
            done: 1,
            ..JobStats::default()
        }
    );
}

/// A job whose runs never finish (each one takes its process down) must not loop forever:
/// the attempts apalis counts when handing it back exhaust its budget.
async fn a_job_whose_runs_keep_dying_is_given_up(db: TestDb) {
    let queue = db.queue().await;
    let id = queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    let settings = fast_settings();
    // As if four runs had died mid-send and been handed back by heartbeat timeouts.
    let attempts = i64::from(settings.mail_max_attempts);
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE Jobs SET attempts = ?1 WHERE id = ?2")
                .bind(attempts)
                .bind(id.as_str())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE apalis.jobs SET attempts = $1 WHERE id = $2")
                .bind(i32::try_from(attempts).unwrap())
                .bind(id.as_str())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
    let mailer = FakeMailer::new(Behaviour::Deliver);
    let workers = start(&queue, mailer.clone(), settings);
    stats_until(&queue, JobKind::Mail, "a dead letter", |s| s.dead == 1).await;
    workers.shutdown().await;
    assert_eq!(mailer.calls(), 0);
    let dead = queue.dead_letters(JobKind::Mail, 1).await.unwrap();
    let error = dead[0].error.clone().unwrap();
    assert!(error.contains("interrupted attempts"), "{error}");
}

/// Two instances (two queues on one database) scheduling the same slot queue one job.
async fn a_maintenance_slot_is_queued_once_across_instances(db: TestDb) {
    let first = db.queue().await;
    let second = db.queue().await;
    for queue in [&first, &second, &first] {
        queue
            .enqueue_maintenance_once(MaintenanceTask::Cleanup, "cleanup:42", &OsRandom)
            .await
            .unwrap();
    }
    second
        .enqueue_maintenance_once(MaintenanceTask::Cleanup, "cleanup:43", &OsRandom)
        .await
        .unwrap();
    let stats = first.stats(JobKind::Maintenance).await.unwrap();
    assert_eq!(
        stats,
        JobStats {
            pending: 2,
            ..JobStats::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_sealed_with_a_key_this_worker_lacks_is_retried() {
    // A rotation rolling out: an updated instance sealed with k2; this one holds only t1.
    let queue = JobQueue::in_memory().await.unwrap();
    let newer = Sealer::new(
        &KeyRing::new(vec![(
            KeyId::new("k2").unwrap(),
            SecretKey::new(vec![9; 32]).unwrap(),
        )])
        .unwrap(),
    );
    queue
        .enqueue_mail(&message(), &newer, &OsRandom)
        .await
        .unwrap();
    let mut settings = fast_settings();
    settings.mail_max_attempts = 2;
    let mailer = FakeMailer::new(Behaviour::Deliver);
    let workers = start(&queue, mailer.clone(), settings);
    stats_until(&queue, JobKind::Mail, "a dead letter", |s| s.dead == 1).await;
    workers.shutdown().await;

    assert_eq!(mailer.calls(), 0);
    let dead = queue.dead_letters(JobKind::Mail, 1).await.unwrap();
    assert_eq!(dead[0].attempts, 2, "retried, not dropped at once");
    let error = dead[0].error.clone().unwrap();
    assert!(error.contains("`k2`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_payload_is_a_dead_letter_at_once() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let queue = db.queue().await;
    let id = queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    // Someone with database access swaps the kind: the associated data no longer matches.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let row = db.raw_mail_payloads(&queue).await.remove(0);
    let tampered = row.replace("password_reset", "verification");
    sqlx::query("UPDATE Jobs SET job = ?1 WHERE id = ?2")
        .bind(tampered.into_bytes())
        .bind(id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let mailer = FakeMailer::new(Behaviour::Deliver);
    let workers = start(&queue, mailer.clone(), fast_settings());
    stats_until(&queue, JobKind::Mail, "a dead letter", |s| s.dead == 1).await;
    workers.shutdown().await;
    assert_eq!(mailer.calls(), 0);
    let dead = queue.dead_letters(JobKind::Mail, 1).await.unwrap();
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0]
            .error
            .as_deref()
            .unwrap()
            .contains("does not authenticate")
    );
}

fn assert_no_secrets(text: &str) {
    let lower = text.to_lowercase();
    for secret in [
        "carol",
        "example.com",
        "single-use-secret-token",
        "app.example",
        "@",
    ] {
        assert!(!lower.contains(secret), "`{secret}` leaked into {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Kill-safety
// ---------------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Mail queued while no worker runs survives the process: a fresh runtime on the same
/// database delivers it.
fn queued_mail_survives_a_restart(db: TestDb) {
    let first = runtime();
    first.block_on(async {
        let queue = db.queue().await;
        queue
            .enqueue_mail(&message(), &sealer(), &OsRandom)
            .await
            .unwrap();
        // No close: everything is dropped as in a crash.
    });
    first.shutdown_background();

    let second = runtime();
    second.block_on(async {
        let queue = db.queue().await;
        let mailer = FakeMailer::new(Behaviour::Deliver);
        let workers = start(&queue, mailer.clone(), fast_settings());
        stats_until(&queue, JobKind::Mail, "delivery after restart", |s| {
            s.done == 1
        })
        .await;
        workers.shutdown().await;
        assert_eq!(mailer.delivered().len(), 1);
    });
}

/// A job fetched by a worker that then dies (its runtime aborted mid-send, as with `kill -9`)
/// is handed out again once that worker's heartbeat is overdue, and delivered.
fn a_job_held_by_a_crashed_worker_runs_after_restart(db: TestDb) {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let first = runtime();
    let first_workers = first.block_on(async {
        let queue = db.queue().await;
        queue
            .enqueue_mail(&message(), &sealer(), &OsRandom)
            .await
            .unwrap();
        start(
            &queue,
            FakeMailer::new(Behaviour::Hang(Some(started_tx))),
            fast_settings(),
        )
    });
    started_rx
        .recv_timeout(DEADLINE)
        .expect("the first worker fetched the job");
    // The crash: no graceful shutdown, the runtime and its connections just go away.
    std::mem::forget(first_workers);
    first.shutdown_background();

    let second = runtime();
    second.block_on(async {
        let queue = db.queue().await;
        let stuck = queue.stats(JobKind::Mail).await.unwrap();
        assert_eq!(
            stuck.running, 1,
            "the dead worker still holds the job: {stuck:?}"
        );
        let mailer = FakeMailer::new(Behaviour::Deliver);
        let workers = start(&queue, mailer.clone(), fast_settings());
        stats_until(&queue, JobKind::Mail, "delivery after the crash", |s| {
            s.done == 1
        })
        .await;
        workers.shutdown().await;
        assert_eq!(mailer.delivered().len(), 1);
    });
}

#[test]
fn sqlite_queued_mail_survives_a_restart() {
    queued_mail_survives_a_restart(TestDb::new(Backend::Sqlite).unwrap());
}

#[test]
fn postgres_queued_mail_survives_a_restart() {
    if let Some(db) = TestDb::new(Backend::Postgres) {
        queued_mail_survives_a_restart(db);
    }
}

#[test]
fn sqlite_a_job_held_by_a_crashed_worker_runs_after_restart() {
    a_job_held_by_a_crashed_worker_runs_after_restart(TestDb::new(Backend::Sqlite).unwrap());
}

#[test]
fn postgres_a_job_held_by_a_crashed_worker_runs_after_restart() {
    if let Some(db) = TestDb::new(Backend::Postgres) {
        a_job_held_by_a_crashed_worker_runs_after_restart(db);
    }
}

// ---------------------------------------------------------------------------------------------
// Cleanup and audit retention (MemoryStore with an in-memory queue; SqlStore on a SQLite file
// with the queue in the same file)
// ---------------------------------------------------------------------------------------------

struct StoreCase {
    store: Arc<dyn Store>,
    queue: JobQueue,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

async fn store_case(sql: bool) -> StoreCase {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    if sql {
        let url = format!("sqlite://{}?mode=rwc", path.join("authkit.db").display());
        let store = SqlStore::connect(&url, SqlStoreOptions::default())
            .await
            .unwrap();
        let queue = JobQueue::connect(&url, JobQueueOptions::default())
            .await
            .unwrap();
        StoreCase {
            store: Arc::new(store),
            queue,
            _dir: dir,
            dir: path,
        }
    } else {
        StoreCase {
            store: Arc::new(MemoryStore::new()),
            queue: JobQueue::in_memory().await.unwrap(),
            _dir: dir,
            dir: path,
        }
    }
}

fn session(user: &UserId, n: u8, expires_at: Timestamp) -> SessionRecord {
    let created = Timestamp::from_unix_seconds(START - 7200);
    SessionRecord {
        id_hash: SessionIdHash::from_bytes([n; 32]),
        handle: format!("handle-{n}"),
        user_id: user.clone(),
        kind: SessionKind::Full,
        aal: Aal::Aal1,
        created_at: created,
        last_seen_at: created,
        authenticated_at: created,
        password_verified_at: Some(created),
        expires_at,
        ip: None,
        user_agent: None,
    }
}

fn token(user: &UserId, n: u8, expires_at: Timestamp) -> NewAccountToken {
    NewAccountToken {
        token_hash: [n; 32],
        purpose: TokenPurpose::ResetPassword,
        user_id: Some(user.clone()),
        email: Email::parse("dave@example.com").unwrap(),
        password_hash: None,
        created_at: Timestamp::from_unix_seconds(START - 7200),
        expires_at,
    }
}

async fn cleanup_deletes_expired_sessions_and_tokens(sql: bool) {
    let case = store_case(sql).await;
    let clock = clock();
    let now = clock.now();
    let user = UserId::generate(&OsRandom).unwrap();
    case.store
        .create_user(NewUser {
            id: user.clone(),
            email: Email::parse("dave@example.com").unwrap(),
            password_hash: None,
            email_verified: true,
            now,
        })
        .await
        .unwrap();
    let expired = session(&user, 1, Timestamp::from_unix_seconds(START - 1));
    let live = session(&user, 2, Timestamp::from_unix_seconds(START + 3600));
    case.store.insert_session(&expired).await.unwrap();
    case.store.insert_session(&live).await.unwrap();
    case.store
        .insert_token(&token(&user, 3, Timestamp::from_unix_seconds(START - 1)))
        .await
        .unwrap();
    case.store
        .insert_token(&token(&user, 4, Timestamp::from_unix_seconds(START + 3600)))
        .await
        .unwrap();

    // The scheduler queues a cleanup as soon as the workers start.
    let workers = JobWorkers::start(
        case.queue.clone(),
        context(
            FakeMailer::new(Behaviour::Deliver),
            case.store.clone(),
            clock,
            fast_settings(),
        ),
    )
    .unwrap();
    stats_until(&case.queue, JobKind::Maintenance, "a cleanup run", |s| {
        s.done >= 1
    })
    .await;
    workers.shutdown().await;

    assert!(
        case.store
            .session(&expired.id_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(case.store.session(&live.id_hash).await.unwrap().is_some());
    // Looked up as if it were still valid: gone from the store, not just filtered.
    let before_expiry = Timestamp::from_unix_seconds(START - 3600);
    assert!(
        case.store
            .peek_token(&[3; 32], TokenPurpose::ResetPassword, before_expiry)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        case.store
            .peek_token(&[4; 32], TokenPurpose::ResetPassword, before_expiry)
            .await
            .unwrap()
            .is_some()
    );
}

async fn audit_retention_archives_then_deletes_old_events(sql: bool) {
    const OLD: i64 = 1_103; // more than two pages of 500
    let case = store_case(sql).await;
    let clock = clock();
    let day = 86_400;
    for i in 0..OLD {
        let at = Timestamp::from_unix_seconds(START - 40 * day + i);
        let event = NewAuditEvent::new(AuditEventType::LoginFailed, None, at, AuditActor::system())
            .with_details(serde_json::json!({ "n": i }));
        case.store.append_audit(&event).await.unwrap();
    }
    for at in [START - day, START] {
        let event = NewAuditEvent::new(
            AuditEventType::LoginFailed,
            None,
            Timestamp::from_unix_seconds(at),
            AuditActor::system(),
        );
        case.store.append_audit(&event).await.unwrap();
    }

    let archive = case.dir.join("archive");
    let mut settings = fast_settings();
    settings.audit_retention = Some(Duration::from_secs(30 * 86_400));
    settings.archive_dir = archive.clone();
    let workers = JobWorkers::start(
        case.queue.clone(),
        context(
            FakeMailer::new(Behaviour::Deliver),
            case.store.clone(),
            clock,
            settings,
        ),
    )
    .unwrap();
    let cutoff = Timestamp::from_unix_seconds(START - 30 * day);
    eventually("old events deleted", || async {
        let left = case.store.audit_older_than(cutoff, 0, 1).await.unwrap();
        left.is_empty().then_some(())
    })
    .await;
    workers.shutdown().await;

    // Archived to the file of the run's date (from the injected clock), one JSON per line.
    let file = archive.join("audit-2027-01-15.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), OLD as usize);
    let ns: Vec<i64> = lines
        .iter()
        .map(|e| e["details"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (0..OLD).collect::<Vec<_>>(),
        "each old event once, in order"
    );
    assert!(lines.iter().all(|e| e["type"] == "login.failed"));

    // The recent events stay.
    let future = Timestamp::from_unix_seconds(START + 1);
    assert_eq!(
        case.store
            .audit_older_than(future, 0, 100)
            .await
            .unwrap()
            .len(),
        2
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&archive).unwrap().permissions().mode() & 0o077,
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cleanup_deletes_expired_sessions_and_tokens() {
    cleanup_deletes_expired_sessions_and_tokens(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cleanup_deletes_expired_sessions_and_tokens() {
    cleanup_deletes_expired_sessions_and_tokens(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_audit_retention_archives_then_deletes_old_events() {
    audit_retention_archives_then_deletes_old_events(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_retention_archives_then_deletes_old_events() {
    audit_retention_archives_then_deletes_old_events(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_queue_delivers_too() {
    let queue = JobQueue::in_memory().await.unwrap();
    let mailer = FakeMailer::new(Behaviour::FailTransient(1));
    queue
        .enqueue_mail(&message(), &sealer(), &OsRandom)
        .await
        .unwrap();
    let workers = start(&queue, mailer.clone(), fast_settings());
    stats_until(&queue, JobKind::Mail, "delivery", |s| s.done == 1).await;
    workers.shutdown().await;
    assert_eq!(mailer.calls(), 2);
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    let queue = JobQueue::in_memory().await.unwrap();
    let mut settings = fast_settings();
    settings.mail_max_attempts = 0;
    let err = JobWorkers::start(
        queue,
        context(
            FakeMailer::new(Behaviour::Deliver),
            Arc::new(MemoryStore::new()),
            clock(),
            settings,
        ),
    )
    .unwrap_err();
    assert!(err.to_string().contains("mail_max_attempts"), "{err}");
}
