//! Background jobs: durable mail delivery with retries and a dead-letter state, cleanup of
//! expired sessions and tokens, and audit retention, on one database-backed queue.
//!
//! ```no_run
//! # async fn run(
//! #     mailer: std::sync::Arc<dyn authkit::mail::Mailer>,
//! #     store: std::sync::Arc<dyn authkit::store::Store>,
//! #     keys: authkit::secrets::SecretKeys,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use authkit::clock::SystemClock;
//! use authkit::crypto::Sealer;
//! use authkit::jobs::{JobContext, JobQueue, JobQueueOptions, JobSettings, JobWorkers};
//! use authkit::rng::OsRandom;
//!
//! let queue = JobQueue::connect("sqlite://authkit.db?mode=rwc", JobQueueOptions::default()).await?;
//! let sealer = Sealer::new(&keys.encryption);
//! let workers = JobWorkers::start(queue.clone(), JobContext {
//!     mailer, sealer: sealer.clone(), store,
//!     clock: Arc::new(SystemClock), rng: Arc::new(OsRandom),
//!     settings: JobSettings::default(),
//! })?;
//! // … request handlers call `queue.enqueue_mail(&message, &sealer, &OsRandom)` …
//! workers.shutdown().await; // finishes the jobs in progress
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! **Why apalis.** Jobs run on [apalis] 1.0 with its SQL storages (`apalis-sqlite`,
//! `apalis-postgres`) in the *same database* as the [`Store`](crate::store::Store): SQLite on
//! one node, PostgreSQL for many. It brings what a home-made queue would get wrong: atomic
//! claiming of jobs (`FOR UPDATE SKIP LOCKED` on PostgreSQL), status tracking per job
//! (`Pending → Queued → Running → Done / Failed / Killed`), worker registration with heartbeats,
//! and graceful shutdown that finishes work in progress and hands back what was fetched but not
//! started. The queue is a separate typed pool (`SqlitePool`/`PgPool`, as apalis requires)
//! opened from the store's URL.
//!
//! **Migrations.** apalis's migrations are run by authkit, never through `SqliteStorage::setup`
//! (which turns `PRAGMA synchronous` off). They keep their own bookkeeping table, so that they
//! and the store's migrator do not each fail on the other's versions ("previously applied but
//! missing"): `_apalis_migrations` on SQLite, `apalis._sqlx_migrations` on PostgreSQL (where
//! apalis lives in its own schema `apalis`). sqlx's migration lock serialises concurrent
//! starts. On PostgreSQL the `hstore` extension apalis needs is created in schema `apalis` (if
//! not installed already) and the queue's connections use `search_path = apalis, <hstore's
//! schema>`, so the queue does not depend on the application's `search_path`. SQLite
//! connections keep WAL, `synchronous = NORMAL` and a busy timeout, like the store's.
//!
//! **Payload sealing.** A queued mail holds a single-use link, so its payload is
//! `{"v":1,"kind":"verification","sealed":"v1.<kid>.…"}`: the whole [`MailMessage`] (recipient,
//! subject, body) sealed with the encryption key ring through [`Sealer`](crate::crypto::Sealer),
//! with the kind bound as associated data. The database never holds a link or an address in
//! clear text. A worker that does not hold the sealing key yet (rotation rolling out) retries.
//!
//! **Retries and dead letters.** Delivery is at least once: a [`MailError::Transient`] (or a
//! send that exceeds [`JobSettings::mail_send_timeout`]) is retried after an exponential
//! back-off with jitter (`backoff_base × 2^(attempt-1)`, capped at `backoff_cap`, the job's
//! `run_at` moved forward), up to [`JobSettings::mail_max_attempts`]. A
//! [`MailError::Permanent`], an exhausted job, or a payload that cannot be opened is moved to
//! the **dead-letter state** at once (apalis status `Killed`): it stays in the table with its
//! last error, which names the failure but never the body or the recipient, and is logged at
//! `error` with its kind and job id only. [`JobQueue::dead_letters`] lists them and
//! [`JobQueue::requeue_dead_letter`] sends one again.
//!
//! **Orphan recovery.** Every worker registers under a unique name and heart-beats
//! ([`JobSettings::heartbeat_interval`]). A job fetched by a process that died (`kill -9`,
//! power loss) stays `Queued`/`Running`, locked by a worker that stopped heart-beating; apalis
//! puts such jobs back to `Pending` once their worker has been silent for `heartbeat_interval ×
//! missed_heartbeats` — checked by every live worker of the queue at each heartbeat (and, on
//! PostgreSQL, at registration). So after a restart the job runs again within about that
//! time. authkit does not requeue *every* locked job at start-up: during a rolling restart
//! another live process may hold them, and taking them over would send mails twice. A mail
//! that was handed to the SMTP server just before the crash may be sent twice; none is lost.
//!
//! **Shutdown.** [`JobsHandle::shutdown`] stops fetching, lets a mail send in progress finish
//! (bounded by [`JobSettings::mail_send_timeout`]) and records its outcome. A cleanup or
//! retention run in progress is interrupted instead and runs again at the next start: while
//! apalis drains the jobs in progress it no longer drives its own transactions, so database
//! work started by a job at that point could wait on their locks. For the same reason a worker
//! fetches one job at a time, only when it can start it: apalis skips heartbeats while fetched
//! jobs wait for a free slot, and a worker that stays silent loses its jobs to others.
//!
//! **Periodic jobs.** Cleanup (expired sessions and tokens, old finished jobs) and audit
//! retention are jobs on the same database queue (queue `<prefix>maintenance`). Each instance
//! runs a timer that enqueues them with an idempotency key naming the time slot (from the
//! injected [`Clock`](crate::clock::Clock)), so with many instances one job per slot is queued
//! and one worker runs it. Audit retention appends events older than the retention to
//! `<archive_dir>/audit-<YYYY-MM-DD>.jsonl` (directory `0700`, file `0600`), fsyncs, and only
//! then deletes them, page by page; a crash between the two archives a page twice, never loses
//! one.
//!
//! **Time.** apalis schedules with the database's clock (`run_at`, heartbeats); authkit's
//! cut-offs and archive dates use the injected clock. Back-off delays, the poll interval and the
//! heartbeat are settings, so tests run with zero delays and no sleeps.
//!
//! [apalis]: https://docs.rs/apalis
//! [`MailMessage`]: crate::mail::MailMessage
//! [`MailError::Transient`]: crate::mail::MailError::Transient
//! [`MailError::Permanent`]: crate::mail::MailError::Permanent

mod backoff;
mod maintenance;
mod payload;
mod queue;
mod settings;
mod worker;

pub use payload::MaintenanceTask;
pub use queue::{DeadLetter, JobId, JobKind, JobQueue, JobQueueOptions, JobStats};
pub use settings::JobSettings;
pub use worker::{JobContext, JobWorkers, JobsHandle};

use crate::crypto::CryptoError;

/// Why a queue operation failed. Never carries a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The database URL is not `sqlite:` or `postgres:`.
    #[error("unsupported database URL scheme for the job queue (expected sqlite: or postgres:)")]
    UnsupportedUrl,
    /// The options or settings are out of range.
    #[error("invalid job settings: {0}")]
    InvalidSettings(&'static str),
    /// The queue database failed.
    #[error("job queue database error")]
    Database(#[source] sqlx::Error),
    /// apalis's migrations failed.
    #[error("job queue migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The payload could not be sealed.
    #[error("could not seal the job payload")]
    Seal(#[source] CryptoError),
    /// The payload could not be encoded.
    #[error("could not encode the job payload")]
    Encode(#[source] serde_json::Error),
    /// apalis refused the job.
    #[error("could not queue the job")]
    Push(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The random source failed.
    #[error("the random number generator failed")]
    Random,
    /// Workers must be started inside a tokio runtime.
    #[error("job workers must be started inside a tokio runtime")]
    NoRuntime,
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}
