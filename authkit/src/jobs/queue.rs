//! The queue: apalis storages over a typed pool, and the few statements authkit runs on
//! apalis's tables itself (back-off, statistics, dead letters, purging). apalis's table layout
//! is pinned by the `apalis-sqlite`/`apalis-postgres` 1.0 versions; every such statement is in
//! this file.

use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink as _};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, Row as _};
use zeroize::Zeroizing;

use super::JobError;
use super::payload::{MAIL_PAYLOAD_VERSION, MailPayload, MaintenanceTask, mail_aad, new_job_id};
use super::settings::MAX_ATTEMPTS_CEILING;
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::mail::MailMessage;
use crate::rng::RandomSource;

/// Where apalis-sqlite's migrations are recorded: not `_sqlx_migrations`, which the store's
/// migrator owns.
const SQLITE_MIGRATIONS_TABLE: &str = "_apalis_migrations";
/// Where apalis-postgres's migrations are recorded, in its own schema.
const POSTGRES_MIGRATIONS_TABLE: &str = "apalis._sqlx_migrations";
/// Serialises the PostgreSQL bootstrap (schema and extension) of concurrent starts.
const POSTGRES_BOOTSTRAP_LOCK: i64 = 0x6175_7468_6b69_7401;
/// Workers silent for this long, holding no job, are deleted by the cleanup job.
const STALE_WORKER_SECS: i64 = 86_400;

/// Connection settings of the queue's own pool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobQueueOptions {
    /// Prepended to the queue names (`<prefix>mail`, `<prefix>maintenance`); default
    /// `authkit.`. Instances that share a database and a prefix share the work.
    pub queue_prefix: String,
    /// Largest number of open connections (default 4; an in-memory queue uses one).
    pub max_connections: u32,
    /// How long an operation waits for a connection (default 5 s).
    pub acquire_timeout: Duration,
    /// How many times to retry the first connection at start-up (default 5).
    pub connect_retries: u32,
}

impl Default for JobQueueOptions {
    fn default() -> Self {
        Self {
            queue_prefix: "authkit.".to_owned(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            connect_retries: 5,
        }
    }
}

impl JobQueueOptions {
    /// The same options with another queue prefix (1–64 characters of `[A-Za-z0-9._-]`).
    #[must_use]
    pub fn with_queue_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.queue_prefix = prefix.into();
        self
    }
}

/// The queues authkit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Mail delivery.
    Mail,
    /// Cleanup and audit retention.
    Maintenance,
}

/// A job's id (a ULID): safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id as shown by [`JobQueue::dead_letters`] or logs.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Jobs of one queue by state (for health checks, metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Waiting for a worker (never tried, or handed back by a stopped or dead worker).
    pub pending: u64,
    /// Failed at least once, waiting for the next attempt.
    pub retrying: u64,
    /// Fetched by a worker or running.
    pub running: u64,
    /// Finished successfully.
    pub done: u64,
    /// Dead letters: given up (permanent failure, retries exhausted, unreadable payload).
    pub dead: u64,
}

/// A job in the dead-letter state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The job's id.
    pub id: JobId,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, as recorded (never the body or the recipient of a mail).
    pub error: Option<String>,
    /// When it was given up (database clock).
    pub failed_at: Option<Timestamp>,
}

/// The durable job queue. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    mail_queue: String,
    maintenance_queue: String,
    /// Keeps an in-memory database alive (never used for queries).
    _anchor: Option<std::sync::Mutex<sqlx::SqliteConnection>>,
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobQueue")
            .field(
                "database",
                &match self.inner.db {
                    Db::Sqlite(_) => "sqlite",
                    Db::Postgres(_) => "postgres",
                },
            )
            .field("mail_queue", &self.inner.mail_queue)
            .field("maintenance_queue", &self.inner.maintenance_queue)
            .finish()
    }
}

impl JobQueue {
    /// Connects to `url` (`sqlite:…` or `postgres:…`, normally the store's URL) and runs
    /// apalis's migrations (see the [module docs](super) for how they are kept apart from the
    /// store's).
    pub async fn connect(url: &str, options: JobQueueOptions) -> Result<Self, JobError> {
        validate_prefix(&options.queue_prefix)?;
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        let (db, anchor) = match scheme.as_str() {
            "sqlite" => {
                let connect = SqliteConnectOptions::from_str(url)?;
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let sqlite = connect_sqlite(connect, in_memory, &options).await?;
                (Db::Sqlite(sqlite.pool), sqlite.anchor)
            }
            "postgres" | "postgresql" => {
                let connect = PgConnectOptions::from_str(url)?;
                (
                    Db::Postgres(connect_postgres(connect, &options).await?),
                    None,
                )
            }
            _ => return Err(JobError::UnsupportedUrl),
        };
        Ok(Self::from_db(db, anchor, &options.queue_prefix))
    }

    /// Opens new connections with `password` from now on (a rotated database password; see
    /// [`SqlStore::set_password`](crate::store::SqlStore::set_password)). SQLite: a no-op.
    pub fn set_password(&self, password: &secrecy::SecretString) {
        use secrecy::ExposeSecret as _;
        if let Db::Postgres(pool) = &self.inner.db {
            let options = (*pool.connect_options())
                .clone()
                .password(password.expose_secret());
            pool.set_connect_options(options);
        }
    }

    /// Opens new connections to `url` from now on (rotated credentials; see
    /// [`SqlStore::set_url`](crate::store::SqlStore::set_url)). SQLite: a no-op.
    pub fn set_url(&self, url: &str) -> Result<(), JobError> {
        if let Db::Postgres(pool) = &self.inner.db {
            pool.set_connect_options(PgConnectOptions::from_str(url)?);
        }
        Ok(())
    }

    /// A queue in an in-memory SQLite database: the same behaviour as a SQLite file (states,
    /// retries, dead letters) without durability. For apps on
    /// [`MemoryStore`](crate::store::MemoryStore) and for tests.
    pub async fn in_memory() -> Result<Self, JobError> {
        let options = JobQueueOptions::default();
        let connect = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let sqlite = connect_sqlite(connect, true, &options).await?;
        Ok(Self::from_db(
            Db::Sqlite(sqlite.pool),
            sqlite.anchor,
            &options.queue_prefix,
        ))
    }

    fn from_db(db: Db, anchor: Option<sqlx::SqliteConnection>, prefix: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                mail_queue: format!("{prefix}mail"),
                maintenance_queue: format!("{prefix}maintenance"),
                _anchor: anchor.map(std::sync::Mutex::new),
            }),
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The apalis queue name (`job_type` column) of `kind`.
    pub fn queue_name(&self, kind: JobKind) -> &str {
        match kind {
            JobKind::Mail => &self.inner.mail_queue,
            JobKind::Maintenance => &self.inner.maintenance_queue,
        }
    }

    /// Queues `message` for delivery. The row holds the message sealed with `sealer` (the
    /// encryption key ring) and its kind; nothing of the recipient or body in clear text.
    pub async fn enqueue_mail(
        &self,
        message: &MailMessage,
        sealer: &Sealer,
        rng: &dyn RandomSource,
    ) -> Result<JobId, JobError> {
        let plaintext = Zeroizing::new(serde_json::to_vec(message).map_err(JobError::Encode)?);
        let sealed = sealer
            .seal(&plaintext, &mail_aad(message.kind), rng)
            .map_err(JobError::Seal)?;
        let payload = MailPayload {
            v: MAIL_PAYLOAD_VERSION,
            kind: message.kind,
            sealed,
        };
        let id = new_job_id(rng).ok_or(JobError::Random)?;
        self.push(JobKind::Mail, payload, &id, None).await?;
        Ok(JobId(id))
    }

    /// Queues a maintenance run now (e.g. from an operator command).
    pub async fn enqueue_maintenance(
        &self,
        task: MaintenanceTask,
        rng: &dyn RandomSource,
    ) -> Result<JobId, JobError> {
        let id = new_job_id(rng).ok_or(JobError::Random)?;
        self.push(JobKind::Maintenance, task, &id, None).await?;
        Ok(JobId(id))
    }

    /// Queues a maintenance run for a time slot: instances that schedule the same `slot_key`
    /// queue one job between them (apalis's idempotency key), so one of them does the work.
    /// The workers' timers call it with `<task>:<slot number>`.
    pub async fn enqueue_maintenance_once(
        &self,
        task: MaintenanceTask,
        slot_key: &str,
        rng: &dyn RandomSource,
    ) -> Result<(), JobError> {
        let id = new_job_id(rng).ok_or(JobError::Random)?;
        match self
            .push(JobKind::Maintenance, task, &id, Some(slot_key))
            .await
        {
            // SQLite ignores a duplicate key; PostgreSQL refuses it: already scheduled.
            Err(JobError::Push(e)) if is_unique_violation(e.as_ref()) => Ok(()),
            other => other,
        }
    }

    async fn push<T>(
        &self,
        kind: JobKind,
        args: T,
        id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<(), JobError>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + Send + Sync + Unpin + 'static,
    {
        let task_id = TaskId::from_str(id).map_err(|e| JobError::Push(Box::new(e)))?;
        let mut builder = TaskBuilder::new(args)
            .task_id(task_id)
            .max_attempts(MAX_ATTEMPTS_CEILING as usize);
        if let Some(key) = idempotency_key {
            builder = builder.idempotency_key(key);
        }
        let task = builder.build();
        let queue = self.queue_name(kind);
        match &self.inner.db {
            Db::Sqlite(pool) => {
                let mut storage = SqliteStorage::<T>::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(queue));
                storage
                    .push_task(task)
                    .await
                    .map_err(|e| JobError::Push(Box::new(e)))
            }
            Db::Postgres(pool) => {
                let mut storage = PostgresStorage::<T>::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(queue));
                storage
                    .push_task(task)
                    .await
                    .map_err(|e| JobError::Push(Box::new(e)))
            }
        }
    }

    /// Jobs of `kind` by state.
    pub async fn stats(&self, kind: JobKind) -> Result<JobStats, JobError> {
        const COLUMNS: &str = "
            COALESCE(SUM(CASE WHEN status = 'Pending' THEN 1 ELSE 0 END), 0) AS pending,
            COALESCE(SUM(CASE WHEN status = 'Failed' AND attempts < max_attempts
                THEN 1 ELSE 0 END), 0) AS retrying,
            COALESCE(SUM(CASE WHEN status IN ('Queued', 'Running') THEN 1 ELSE 0 END), 0)
                AS running,
            COALESCE(SUM(CASE WHEN status = 'Done' THEN 1 ELSE 0 END), 0) AS done,
            COALESCE(SUM(CASE WHEN status = 'Killed'
                OR (status = 'Failed' AND attempts >= max_attempts) THEN 1 ELSE 0 END), 0)
                AS dead";
        let queue = self.queue_name(kind);
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        match &self.inner.db {
            Db::Sqlite(pool) => {
                let sql = format!("SELECT {COLUMNS} FROM Jobs WHERE job_type = ?1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(queue)
                    .fetch_one(pool)
                    .await?;
                Ok(JobStats {
                    pending: count(row.try_get("pending")?),
                    retrying: count(row.try_get("retrying")?),
                    running: count(row.try_get("running")?),
                    done: count(row.try_get("done")?),
                    dead: count(row.try_get("dead")?),
                })
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "SELECT {} FROM apalis.jobs WHERE job_type = $1",
                    COLUMNS.replace("), 0)", ")::BIGINT, 0)")
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(queue)
                    .fetch_one(pool)
                    .await?;
                Ok(JobStats {
                    pending: count(row.try_get("pending")?),
                    retrying: count(row.try_get("retrying")?),
                    running: count(row.try_get("running")?),
                    done: count(row.try_get("done")?),
                    dead: count(row.try_get("dead")?),
                })
            }
        }
    }

    /// The newest dead letters of `kind`, at most `limit`.
    pub async fn dead_letters(
        &self,
        kind: JobKind,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, JobError> {
        let queue = self.queue_name(kind);
        let rows = match &self.inner.db {
            Db::Sqlite(pool) => sqlx::query(
                "SELECT id, attempts, last_result, done_at FROM Jobs
                 WHERE job_type = ?1
                   AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
                 ORDER BY done_at DESC, id DESC LIMIT ?2",
            )
            .bind(queue)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| -> Result<_, sqlx::Error> {
                Ok((
                    row.try_get::<String, _>("id")?,
                    row.try_get::<i64, _>("attempts")?,
                    row.try_get::<Option<String>, _>("last_result")?,
                    row.try_get::<Option<i64>, _>("done_at")?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?,
            Db::Postgres(pool) => sqlx::query(
                "SELECT id, attempts::BIGINT AS attempts, last_result::TEXT AS last_result,
                        EXTRACT(EPOCH FROM done_at)::BIGINT AS done_at
                 FROM apalis.jobs
                 WHERE job_type = $1
                   AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
                 ORDER BY done_at DESC NULLS LAST, id DESC LIMIT $2",
            )
            .bind(queue)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| -> Result<_, sqlx::Error> {
                Ok((
                    row.try_get::<String, _>("id")?,
                    row.try_get::<i64, _>("attempts")?,
                    row.try_get::<Option<String>, _>("last_result")?,
                    row.try_get::<Option<i64>, _>("done_at")?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows
            .into_iter()
            .map(|(id, attempts, last_result, done_at)| DeadLetter {
                id: JobId(id),
                attempts: u32::try_from(attempts).unwrap_or(0),
                error: last_result.as_deref().map(recorded_error),
                failed_at: done_at.map(Timestamp::from_unix_seconds),
            })
            .collect())
    }

    /// Puts a dead letter back in the queue with a fresh attempt budget (e.g. once the SMTP
    /// settings are fixed). Whether it was a dead letter of this queue.
    pub async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, JobError> {
        let (mail, maintenance) = (&self.inner.mail_queue, &self.inner.maintenance_queue);
        let done = match &self.inner.db {
            Db::Sqlite(pool) => sqlx::query(
                "UPDATE Jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
                        lock_at = NULL, done_at = NULL, last_result = NULL,
                        run_at = CAST(strftime('%s', 'now') AS INTEGER)
                 WHERE id = ?1 AND job_type IN (?2, ?3)
                   AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
            )
            .bind(id.as_str())
            .bind(mail)
            .bind(maintenance)
            .execute(pool)
            .await?
            .rows_affected(),
            Db::Postgres(pool) => sqlx::query(
                "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
                        lock_at = NULL, done_at = NULL, last_result = NULL, run_at = now()
                 WHERE id = $1 AND job_type IN ($2, $3)
                   AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
            )
            .bind(id.as_str())
            .bind(mail)
            .bind(maintenance)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done == 1)
    }

    /// Moves the next attempt of a failed job `delay` into the future (database clock, like
    /// apalis's own scheduling). Called by the worker before it reports the failure.
    pub(crate) async fn reschedule(
        &self,
        kind: JobKind,
        id: &str,
        delay: Duration,
    ) -> Result<(), JobError> {
        let queue = self.queue_name(kind);
        match &self.inner.db {
            Db::Sqlite(pool) => {
                // Whole seconds: apalis-sqlite stores `run_at` as Unix seconds.
                let secs = i64::try_from(
                    delay
                        .as_secs()
                        .saturating_add(u64::from(delay.subsec_nanos() > 0)),
                )
                .unwrap_or(i64::MAX);
                sqlx::query(
                    "UPDATE Jobs SET run_at = CAST(strftime('%s', 'now') AS INTEGER) + ?1
                     WHERE id = ?2 AND job_type = ?3",
                )
                .bind(secs)
                .bind(id)
                .bind(queue)
                .execute(pool)
                .await?;
            }
            Db::Postgres(pool) => {
                sqlx::query(
                    "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $1)
                     WHERE id = $2 AND job_type = $3",
                )
                .bind(delay.as_secs_f64())
                .bind(id)
                .bind(queue)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Deletes jobs finished longer ago than `done` (dead letters: `dead`) and workers silent
    /// for a day that hold no job. How many jobs were deleted.
    pub(crate) async fn purge_finished(
        &self,
        done: Duration,
        dead: Duration,
    ) -> Result<u64, JobError> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let (mail, maintenance) = (&self.inner.mail_queue, &self.inner.maintenance_queue);
        match &self.inner.db {
            Db::Sqlite(pool) => {
                let jobs = sqlx::query(
                    "DELETE FROM Jobs WHERE job_type IN (?1, ?2) AND done_at IS NOT NULL AND (
                        (status = 'Done'
                            AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?3)
                     OR ((status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
                            AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?4))",
                )
                .bind(mail)
                .bind(maintenance)
                .bind(secs(done))
                .bind(secs(dead))
                .execute(pool)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM Workers WHERE worker_type IN (?1, ?2)
                       AND last_seen < CAST(strftime('%s', 'now') AS INTEGER) - ?3
                       AND NOT EXISTS (SELECT 1 FROM Jobs WHERE Jobs.lock_by = Workers.id)",
                )
                .bind(mail)
                .bind(maintenance)
                .bind(STALE_WORKER_SECS)
                .execute(pool)
                .await?;
                Ok(jobs)
            }
            Db::Postgres(pool) => {
                let jobs = sqlx::query(
                    "DELETE FROM apalis.jobs WHERE job_type IN ($1, $2) AND done_at IS NOT NULL
                       AND ((status = 'Done' AND done_at < now() - make_interval(secs => $3))
                        OR ((status = 'Killed' OR (status = 'Failed'
                                AND attempts >= max_attempts))
                            AND done_at < now() - make_interval(secs => $4)))",
                )
                .bind(mail)
                .bind(maintenance)
                .bind(secs(done) as f64)
                .bind(secs(dead) as f64)
                .execute(pool)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM apalis.workers w WHERE w.worker_type IN ($1, $2)
                       AND w.last_seen < now() - make_interval(secs => $3)
                       AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
                )
                .bind(mail)
                .bind(maintenance)
                .bind(STALE_WORKER_SECS as f64)
                .execute(pool)
                .await?;
                Ok(jobs)
            }
        }
    }

    /// Checks that the queue's database answers (readiness probes).
    pub async fn ping(&self) -> Result<(), JobError> {
        match &self.inner.db {
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Closes the queue's connections.
    pub async fn close(&self) {
        match &self.inner.db {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

fn validate_prefix(prefix: &str) -> Result<(), JobError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JobError::InvalidSettings(
            "queue_prefix must be 1-64 characters from [A-Za-z0-9._-]",
        ))
    }
}

/// The error text of apalis's `last_result` (`{"Err":"…"}`).
fn recorded_error(last_result: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(last_result) {
        Ok(serde_json::Value::Object(map)) => match map.get("Err") {
            Some(serde_json::Value::String(e)) => e.clone(),
            _ => last_result.to_owned(),
        },
        _ => last_result.to_owned(),
    }
}

fn is_unique_violation(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(sqlx::Error::Database(db)) = err.downcast_ref::<sqlx::Error>() {
            return db.is_unique_violation();
        }
        if let Some(apalis_postgres::Error::Database(sqlx::Error::Database(db))) =
            err.downcast_ref::<apalis_postgres::Error>()
        {
            return db.is_unique_violation();
        }
        current = err.source();
    }
    false
}

/// An open SQLite queue: the pool, and for an in-memory database the connection that keeps
/// it alive.
struct SqliteQueue {
    pool: SqlitePool,
    anchor: Option<sqlx::SqliteConnection>,
}

async fn connect_sqlite(
    connect: SqliteConnectOptions,
    in_memory: bool,
    options: &JobQueueOptions,
) -> Result<SqliteQueue, JobError> {
    // The store's settings, and not apalis's `setup` (which sets `synchronous = OFF`): a
    // queued mail must survive a crash.
    let mut connect = connect
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    if !in_memory {
        connect = connect.journal_mode(SqliteJournalMode::Wal);
    }
    let mut pool = SqlitePoolOptions::new().acquire_timeout(options.acquire_timeout);
    let anchor = if in_memory {
        // An in-memory database lives as long as one connection to it is open. The pool
        // closes a connection whose query was cancelled (apalis drops an in-flight fetch when
        // a worker stops), so a connection outside the pool holds the database.
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
        Some(sqlx::ConnectOptions::connect(&connect).await?)
    } else {
        pool = pool.max_connections(options.max_connections.max(1));
        None
    };
    let pool = with_retries(options.connect_retries, || {
        pool.clone().connect_with(connect.clone())
    })
    .await?;
    let mut migrator = SqliteStorage::<()>::migrations();
    migrator.dangerous_set_table_name(SQLITE_MIGRATIONS_TABLE);
    migrator.run(&pool).await.map_err(JobError::Migration)?;
    Ok(SqliteQueue { pool, anchor })
}

async fn connect_postgres(
    connect: PgConnectOptions,
    options: &JobQueueOptions,
) -> Result<PgPool, JobError> {
    let search_path = with_retries(options.connect_retries, || {
        bootstrap_postgres(connect.clone())
    })
    .await?;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .after_connect(move |conn, _meta| {
            let search_path = search_path.clone();
            Box::pin(async move {
                // The queue runs only apalis's statements (schema-qualified) and needs the
                // `hstore` type: it does not use the application's search path.
                sqlx::query("SELECT set_config('search_path', $1, false)")
                    .bind(search_path)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await?;
    let mut migrator = PostgresStorage::<()>::migrations();
    migrator.dangerous_set_table_name(POSTGRES_MIGRATIONS_TABLE);
    migrator.run(&pool).await.map_err(JobError::Migration)?;
    Ok(pool)
}

/// Creates schema `apalis` and the `hstore` extension (in `apalis`, unless installed
/// already) under an advisory lock, so that concurrent first starts do not race; returns the
/// search path for the queue's connections.
async fn bootstrap_postgres(connect: PgConnectOptions) -> Result<String, sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect_with(&connect).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(POSTGRES_BOOTSTRAP_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS apalis")
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA apalis")
        .execute(&mut *tx)
        .await?;
    let hstore_schema: String = sqlx::query_scalar(
        "SELECT n.nspname::TEXT FROM pg_extension e
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hstore'",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(if hstore_schema == "apalis" {
        "apalis".to_owned()
    } else {
        format!("apalis, {}", quote_ident(&hstore_schema))
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Retries a first connection while the database is still starting.
async fn with_retries<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, JobError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut tried = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tried < retries && is_transient(&e) => {
                tried += 1;
                let wait = Duration::from_millis(200u64.saturating_mul(1 << tried.min(5)));
                tracing::warn!(attempt = tried, ?wait, error = %e, "job queue database not reachable yet; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apalis_postgres_migrations_use_their_own_table() {
        // The brief's pitfall: both migrators must not share `_sqlx_migrations`.
        let migrator = PostgresStorage::<()>::migrations();
        assert_eq!(migrator.table_name, POSTGRES_MIGRATIONS_TABLE);
    }

    #[test]
    fn queue_prefixes_are_checked() {
        assert!(validate_prefix("authkit.").is_ok());
        assert!(validate_prefix("t_0123-abc.").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("bad prefix").is_err());
        assert!(validate_prefix(&"x".repeat(65)).is_err());
    }

    #[test]
    fn recorded_errors_are_unwrapped() {
        assert_eq!(
            recorded_error(r#"{"Err":"AbortError: boom"}"#),
            "AbortError: boom"
        );
        assert_eq!(recorded_error("plain"), "plain");
    }

    #[tokio::test]
    async fn in_memory_queue_migrates_and_counts() {
        let queue = JobQueue::in_memory().await.unwrap();
        queue.ping().await.unwrap();
        assert_eq!(
            queue.stats(JobKind::Mail).await.unwrap(),
            JobStats::default()
        );
        let rng = crate::rng::SeededRandom::new(1);
        queue
            .enqueue_maintenance(MaintenanceTask::Cleanup, &rng)
            .await
            .unwrap();
        queue
            .enqueue_maintenance_once(MaintenanceTask::Cleanup, "cleanup:1", &rng)
            .await
            .unwrap();
        // The same slot again queues nothing.
        queue
            .enqueue_maintenance_once(MaintenanceTask::Cleanup, "cleanup:1", &rng)
            .await
            .unwrap();
        let stats = queue.stats(JobKind::Maintenance).await.unwrap();
        assert_eq!(stats.pending, 2);
    }
}
