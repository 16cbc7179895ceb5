//! Workers, their supervision, and the scheduler of periodic jobs.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{
    AbortError, BackendExt as _, BoxDynError, Task, WorkerBuilder, WorkerBuilderExt as _,
    WorkerContext, WorkerError,
};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backoff::retry_delay;
use super::maintenance;
use super::payload::{MAIL_PAYLOAD_VERSION, MailPayload, MaintenanceTask, mail_aad};
use super::queue::{Db, JobKind, JobQueue};
use super::{JobError, JobSettings};
use crate::clock::Clock;
use crate::crypto::{CryptoError, Sealer};
use crate::mail::{MailKind, MailMessage, Mailer};
use crate::rng::RandomSource;
use crate::store::Store;

/// What the workers need.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Delivers mail.
    pub mailer: Arc<dyn Mailer>,
    /// Opens sealed mail payloads (the encryption key ring, as used to enqueue).
    pub sealer: Sealer,
    /// Where cleanup and retention delete.
    pub store: Arc<dyn Store>,
    /// Time for cut-offs and archive dates.
    pub clock: Arc<dyn Clock>,
    /// Jitter of back-off delays and worker names.
    pub rng: Arc<dyn RandomSource>,
    /// Retry policy and timing.
    pub settings: JobSettings,
}

/// Starts the background workers.
#[derive(Debug, Clone, Copy)]
pub struct JobWorkers;

impl JobWorkers {
    /// Starts, on the current tokio runtime: a mail worker, a maintenance worker, and the
    /// timers that queue cleanup (and, if [`JobSettings::audit_retention`] is set, audit
    /// retention). Workers that stop on a database error are restarted after
    /// [`JobSettings::restart_delay`].
    pub fn start(queue: JobQueue, context: JobContext) -> Result<JobsHandle, JobError> {
        context.settings.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| JobError::NoRuntime)?;
        let mut bytes = [0u8; 6];
        context
            .rng
            .try_fill(&mut bytes)
            .map_err(|_| JobError::Random)?;
        // Unique per start: apalis refuses a worker name that heart-beated recently, which
        // is exactly what a restart after a crash would reuse.
        let instance: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            queue,
            context,
            stopped: stopped.clone(),
        });
        let settings = &shared.context.settings;

        let mut tasks = vec![
            runtime.spawn(supervise(
                shared.clone(),
                JobKind::Mail,
                instance.clone(),
                stopped.clone(),
            )),
            runtime.spawn(supervise(
                shared.clone(),
                JobKind::Maintenance,
                instance,
                stopped.clone(),
            )),
            runtime.spawn(schedule(
                shared.clone(),
                MaintenanceTask::Cleanup,
                settings.cleanup_interval,
                stopped.clone(),
            )),
            runtime.spawn(schedule(
                shared.clone(),
                MaintenanceTask::Reseal,
                settings.reseal_interval,
                stopped.clone(),
            )),
        ];
        if settings.audit_retention.is_some() {
            tasks.push(runtime.spawn(schedule(
                shared.clone(),
                MaintenanceTask::AuditRetention,
                settings.retention_interval,
                stopped,
            )));
        }
        tracing::info!(
            mail_queue = shared.queue.queue_name(JobKind::Mail),
            orphan_timeout = ?settings.orphan_timeout(),
            audit_retention = ?settings.audit_retention,
            "job workers started"
        );
        Ok(JobsHandle { stop, tasks })
    }
}

/// Running workers. Dropping it asks them to stop without waiting; [`JobsHandle::shutdown`]
/// waits.
#[derive(Debug)]
pub struct JobsHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl JobsHandle {
    /// Stops taking new jobs, lets a mail send in progress finish (bounded by
    /// [`JobSettings::mail_send_timeout`]) and records its outcome, interrupts a cleanup or
    /// retention run (it runs again at the next start), and returns when every worker has
    /// stopped.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                tracing::error!(panicked = e.is_panic(), "a job task ended abnormally");
            }
        }
    }
}

impl Drop for JobsHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

struct Shared {
    queue: JobQueue,
    context: JobContext,
    /// Turns `true` when the workers are asked to stop.
    stopped: watch::Receiver<bool>,
}

impl Shared {
    /// Resolves when the workers are asked to stop.
    async fn draining(&self) {
        wait_for_stop(&mut self.stopped.clone()).await;
    }
}

/// How a job attempt failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Worth another attempt after a back-off.
    Retry(String),
    /// Will never succeed: straight to the dead-letter state.
    Dead(String),
    /// Stopped by a shutdown; runs again at once on the next start.
    Interrupted,
}

/// Bound on moving a retry back (it is one indexed update).
const RESCHEDULE_TIMEOUT: Duration = Duration::from_secs(10);

/// The error recorded as the job's last result. Its text never holds a body or an address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct JobFailed(String);

fn stopping(stopped: &watch::Receiver<bool>) -> bool {
    *stopped.borrow() || stopped.has_changed().is_err()
}

async fn wait_for_stop(stopped: &mut watch::Receiver<bool>) {
    // An error means the handle is gone: stop as well.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Runs one queue's worker until asked to stop, restarting it if it dies.
async fn supervise(
    shared: Arc<Shared>,
    kind: JobKind,
    instance: String,
    mut stopped: watch::Receiver<bool>,
) {
    let queue = shared.queue.queue_name(kind).to_owned();
    let mut generation = 0u32;
    while !stopping(&stopped) {
        generation = generation.saturating_add(1);
        let worker = WorkerContext::new(&format!("{queue}-{instance}-{generation}"));
        let run = build_worker(&shared, kind, worker.clone());
        let result = run_until_stopped(run, &worker, &mut stopped).await;
        if stopping(&stopped) {
            break;
        }
        match result {
            Ok(()) => tracing::warn!(queue = %queue, "job worker stopped; restarting it"),
            Err(e) => {
                tracing::error!(queue = %queue, error = %e, "job worker failed; restarting it")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(shared.context.settings.restart_delay) => {}
            () = wait_for_stop(&mut stopped) => {}
        }
    }
    tracing::debug!(queue = %queue, "job worker stopped");
}

async fn run_until_stopped(
    mut run: BoxFuture<'static, Result<(), WorkerError>>,
    worker: &WorkerContext,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    tokio::select! {
        result = &mut run => return result,
        () = wait_for_stop(stopped) => {}
    }
    // Graceful stop: apalis refuses `stop` until the worker has started, so retry until it
    // takes (or the worker ends by itself); then let it finish the jobs in progress.
    while worker.stop().is_err() {
        tokio::select! {
            result = &mut run => return result,
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    run.await
}

/// An apalis worker for `kind` on the queue's database.
fn build_worker(
    shared: &Arc<Shared>,
    kind: JobKind,
    worker: WorkerContext,
) -> BoxFuture<'static, Result<(), WorkerError>> {
    let settings = &shared.context.settings;
    let concurrency = match kind {
        JobKind::Mail => settings.mail_concurrency.max(1),
        // One run at a time per instance: cleanup and retention are not worth parallelising.
        JobKind::Maintenance => 1,
    };
    let queue = shared.queue.queue_name(kind);
    let missed = usize::try_from(settings.missed_heartbeats).unwrap_or(usize::MAX);
    let service = JobService {
        shared: shared.clone(),
        kind,
    };
    match shared.queue.db() {
        Db::Sqlite(pool) => {
            let config = apalis_sqlite::Config::default()
                .queue(queue)
                // One job per fetch, fetched only when it can start: apalis skips heartbeats
                // while fetched jobs wait for a free slot, and a silent worker loses its jobs.
                .batch_size(1)
                .heartbeat_interval(settings.heartbeat_interval)
                .missed_heartbeats(missed);
            let backend = SqliteStorage::<Value>::new(pool)
                .with_config(config)
                .poll_with_interval(settings.poll_interval);
            let worker = WorkerBuilder::new(worker)
                .backend(backend)
                .concurrency(concurrency)
                .build(service);
            worker.run().boxed()
        }
        Db::Postgres(pool) => {
            let config = apalis_postgres::Config::default()
                .queue(queue)
                .batch_size(1)
                .heartbeat_interval(settings.heartbeat_interval)
                .missed_heartbeats(missed);
            let backend = PostgresStorage::<Value>::new(pool)
                .with_config(config)
                .poll_with_interval(settings.poll_interval);
            let worker = WorkerBuilder::new(worker)
                .backend(backend)
                .concurrency(concurrency)
                .build(service);
            worker.run().boxed()
        }
    }
}

/// The tower service apalis calls with each job. Arguments arrive as JSON values (not typed)
/// so that an unreadable payload becomes a dead letter instead of stopping the worker.
#[derive(Clone)]
struct JobService {
    shared: Arc<Shared>,
    kind: JobKind,
}

impl tower::Service<Task<Value>> for JobService {
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Value>) -> Self::Future {
        let shared = self.shared.clone();
        let kind = self.kind;
        async move { shared.handle(kind, task).await }.boxed()
    }
}

impl Shared {
    async fn handle(&self, kind: JobKind, task: Task<Value>) -> Result<(), BoxDynError> {
        let job_id = task.task_id().map(ToString::to_string).unwrap_or_default();
        // apalis counts this attempt before calling us.
        let attempt = u32::try_from(task.attempt()).unwrap_or(u32::MAX).max(1);
        let (args, _) = task.take();
        let settings = &self.context.settings;
        let max_attempts = match kind {
            JobKind::Mail => settings.mail_max_attempts,
            JobKind::Maintenance => settings.maintenance_max_attempts,
        };
        if attempt > max_attempts {
            // Attempts spent by runs that never finished (their process died mid-job, and
            // apalis counted each hand-back): stop a job that takes its worker down with it.
            let reason = format!("gave up after {} interrupted attempts", attempt - 1);
            return self
                .settle(
                    kind,
                    label_of(kind, &args),
                    &job_id,
                    attempt,
                    max_attempts,
                    Err(Failure::Dead(reason)),
                )
                .await;
        }
        let work = match kind {
            // A send in progress is finished on shutdown (it is bounded by the send timeout).
            JobKind::Mail => self.deliver(args).boxed(),
            // Cleanup and retention are interrupted instead: while apalis drains the jobs in
            // progress it stops driving its own transactions, so database work started now
            // could wait on their locks. Both jobs are idempotent and run again at next start.
            JobKind::Maintenance => {
                let label = label_of(kind, &args);
                async move {
                    tokio::select! {
                        done = self.maintain(args) => done,
                        () = self.draining() => (label, Err(Failure::Interrupted)),
                    }
                }
                .boxed()
            }
        };
        // A panic must settle the job here: outside this service apalis would record it as
        // still running and never hand it out again.
        let (label, outcome) = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(done) => done,
            Err(_) => (
                "unknown",
                Err(Failure::Dead("the job handler panicked".to_owned())),
            ),
        };
        self.settle(kind, label, &job_id, attempt, max_attempts, outcome)
            .await
    }

    /// Opens and sends one queued mail.
    async fn deliver(&self, args: Value) -> (&'static str, Result<(), Failure>) {
        let Ok(payload) = serde_json::from_value::<MailPayload>(args) else {
            return (
                "unknown",
                Err(Failure::Dead("unreadable mail payload".to_owned())),
            );
        };
        let label = payload.kind.as_str();
        if payload.v != MAIL_PAYLOAD_VERSION {
            let reason = format!("unsupported mail payload version {}", payload.v);
            return (label, Err(Failure::Dead(reason)));
        }
        let plain = match self
            .context
            .sealer
            .open(&payload.sealed, &mail_aad(payload.kind))
        {
            Ok(plain) => plain,
            // A newer key this instance does not hold yet (a rotation rolling out): another
            // attempt, here or on an updated instance, will open it.
            Err(e @ CryptoError::UnknownKey(_)) => {
                return (label, Err(Failure::Retry(e.to_string())));
            }
            Err(e) => {
                let reason = format!("the mail payload cannot be opened: {e}");
                return (label, Err(Failure::Dead(reason)));
            }
        };
        let Ok(message) = serde_json::from_slice::<MailMessage>(&plain) else {
            return (
                label,
                Err(Failure::Dead("the sealed mail is not a message".to_owned())),
            );
        };
        drop(plain);
        let settings = &self.context.settings;
        let sent = tokio::time::timeout(
            settings.mail_send_timeout,
            self.context.mailer.send(&message),
        )
        .await;
        let outcome = match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let reason = redact(&e.to_string(), &message.to);
                if e.is_transient() {
                    Err(Failure::Retry(reason))
                } else {
                    Err(Failure::Dead(reason))
                }
            }
            Err(_) => Err(Failure::Retry(format!(
                "delivery took longer than {:?}",
                settings.mail_send_timeout
            ))),
        };
        (label, outcome)
    }

    /// Runs one maintenance job.
    async fn maintain(&self, args: Value) -> (&'static str, Result<(), Failure>) {
        let Ok(task) = serde_json::from_value::<MaintenanceTask>(args) else {
            return (
                "unknown",
                Err(Failure::Dead("unreadable maintenance payload".to_owned())),
            );
        };
        let outcome = match task {
            MaintenanceTask::Cleanup => maintenance::cleanup(&self.queue, &self.context).await,
            MaintenanceTask::AuditRetention => maintenance::audit_retention(&self.context).await,
            MaintenanceTask::Reseal => maintenance::reseal(&self.context).await,
        };
        (task.as_str(), outcome)
    }

    /// Turns an attempt's outcome into what apalis records: `Done`; `Failed` with the next
    /// attempt moved back; or `Killed` (the dead-letter state) through [`AbortError`].
    async fn settle(
        &self,
        kind: JobKind,
        label: &'static str,
        job_id: &str,
        attempt: u32,
        max_attempts: u32,
        outcome: Result<(), Failure>,
    ) -> Result<(), BoxDynError> {
        match outcome {
            Ok(()) => {
                tracing::debug!(job_id, kind = label, attempt, "job done");
                Ok(())
            }
            Err(Failure::Dead(reason)) => {
                tracing::error!(
                    job_id,
                    kind = label,
                    attempt,
                    "job moved to the dead-letter state"
                );
                Err(Box::new(AbortError::new(JobFailed(reason))))
            }
            Err(Failure::Interrupted) => {
                tracing::info!(
                    job_id,
                    kind = label,
                    "job interrupted by shutdown; it runs again at the next start"
                );
                Err(Box::new(JobFailed("interrupted by shutdown".to_owned())))
            }
            Err(Failure::Retry(reason)) if attempt >= max_attempts => {
                tracing::error!(
                    job_id,
                    kind = label,
                    attempt,
                    "job retries exhausted; moved to the dead-letter state"
                );
                Err(Box::new(AbortError::new(JobFailed(format!(
                    "gave up after {attempt} attempts; last failure: {reason}"
                )))))
            }
            Err(Failure::Retry(reason)) => {
                let settings = &self.context.settings;
                let delay = retry_delay(
                    settings.backoff_base,
                    settings.backoff_cap,
                    attempt,
                    &*self.context.rng,
                );
                // Not while draining (see `handle`): the retry then comes at once, at next start.
                let rescheduled = tokio::select! {
                    done = tokio::time::timeout(
                        RESCHEDULE_TIMEOUT,
                        self.queue.reschedule(kind, job_id, delay),
                    ) => done.map_err(|_| "timed out".to_owned()).and_then(|r| r.map_err(|e| e.to_string())),
                    () = self.draining() => Err("shutting down".to_owned()),
                };
                if let Err(error) = rescheduled {
                    // The retry then comes at once instead of after the back-off.
                    tracing::warn!(job_id, kind = label, error, "could not delay the retry");
                }
                tracing::warn!(
                    job_id,
                    kind = label,
                    attempt,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "job failed; will retry"
                );
                Err(Box::new(JobFailed(format!(
                    "attempt {attempt} failed: {reason}"
                ))))
            }
        }
    }
}

/// The kind of a job for logs, read without opening anything.
fn label_of(kind: JobKind, args: &Value) -> &'static str {
    let parsed = match kind {
        JobKind::Mail => args
            .get("kind")
            .and_then(|k| serde_json::from_value::<MailKind>(k.clone()).ok())
            .map(MailKind::as_str),
        JobKind::Maintenance => serde_json::from_value::<MaintenanceTask>(args.clone())
            .ok()
            .map(MaintenanceTask::as_str),
    };
    parsed.unwrap_or("unknown")
}

/// Queues the periodic `task` every `interval`, keyed by the time slot so that instances
/// sharing the database queue one job per slot.
async fn schedule(
    shared: Arc<Shared>,
    task: MaintenanceTask,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slot_secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = wait_for_stop(&mut stopped) => break,
        }
        let slot = shared
            .context
            .clock
            .now()
            .unix_seconds()
            .div_euclid(slot_secs);
        let key = format!("{}:{slot}", task.as_str());
        if let Err(e) = shared
            .queue
            .enqueue_maintenance_once(task, &key, &*shared.context.rng)
            .await
        {
            tracing::warn!(task = task.as_str(), error = %e, "could not schedule a maintenance job");
        }
    }
}

/// A mail error fit to store and log: no address (the recipient's or any other), no control
/// characters, at most 200 characters.
fn redact(reason: &str, recipient: &str) -> String {
    let recipient = recipient.to_lowercase();
    let local = recipient
        .split_once('@')
        .map_or(recipient.as_str(), |(local, _)| local);
    let mut out = String::new();
    for word in reason.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let lower = word.to_lowercase();
        let names_recipient = !recipient.is_empty() && lower.contains(&recipient)
            || local.chars().count() >= 3 && lower.contains(local);
        if word.contains('@') || names_recipient {
            out.push_str("[address]");
        } else {
            out.extend(
                word.chars()
                    .map(|c| if c.is_control() { '\u{fffd}' } else { c }),
            );
        }
        if out.chars().count() >= 200 {
            break;
        }
    }
    out.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_addresses_and_controls() {
        let text = "550 5.1.1 <Bob.Smith@Example.com>: mailbox bob.smith unknown\r\nInjected: line";
        let out = redact(text, "bob.smith@example.com");
        assert!(!out.to_lowercase().contains("bob"), "{out}");
        assert!(
            !out.contains('@') && !out.contains('\n') && !out.contains('\r'),
            "{out}"
        );
        assert!(out.starts_with("550 5.1.1 [address]"), "{out}");
        assert!(out.contains("Injected: line"), "{out}");

        let long = "x ".repeat(500);
        assert!(redact(&long, "a@b").chars().count() <= 200);
    }
}
