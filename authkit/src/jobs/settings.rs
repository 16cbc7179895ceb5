use std::path::PathBuf;
use std::time::Duration;

use super::JobError;

/// Highest retry count accepted for mail; also written to each job row as apalis's own
/// ceiling, in case a job ever fails outside authkit's handler.
pub(crate) const MAX_ATTEMPTS_CEILING: u32 = 100;

/// How workers run jobs: retry policy, timing, periodic jobs. The defaults suit production;
/// tests shorten the delays (no timed assertions: poll the queue for the state instead).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSettings {
    /// Deliveries tried before a mail becomes a dead letter (default 8, at most 100).
    pub mail_max_attempts: u32,
    /// Delay before the first retry; doubled per attempt, with jitter (default 30 s).
    pub backoff_base: Duration,
    /// Longest delay between two attempts (default 1 h).
    pub backoff_cap: Duration,
    /// A send that takes longer counts as a transient failure (default 60 s). It also bounds
    /// how long a graceful shutdown waits for a mail in progress.
    pub mail_send_timeout: Duration,
    /// Mails sent at once by one instance (default 4).
    pub mail_concurrency: usize,
    /// How often an idle worker looks for due jobs (default 1 s).
    pub poll_interval: Duration,
    /// How often a worker proves it is alive (default 15 s, at least 1 s).
    pub heartbeat_interval: Duration,
    /// Heartbeats a worker may miss before its jobs are given to others (default 4, so a
    /// crashed instance's jobs run again after about a minute).
    pub missed_heartbeats: u32,
    /// How often expired sessions and tokens are deleted (default 10 min).
    pub cleanup_interval: Duration,
    /// How often rows sealed under an older encryption key are re-sealed under the newest
    /// (default 1 h; [`JobQueue::enqueue_maintenance`](super::JobQueue::enqueue_maintenance)
    /// with [`MaintenanceTask::Reseal`](super::MaintenanceTask::Reseal) runs it at once).
    pub reseal_interval: Duration,
    /// How often audit retention runs when [`audit_retention`](Self::audit_retention) is set
    /// (default 1 h).
    pub retention_interval: Duration,
    /// Audit events older than this are archived and deleted; `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// Where audit archives are written (default `./.authkit/audit-archive`).
    pub archive_dir: PathBuf,
    /// Attempts of a cleanup or retention run before it is a dead letter (default 3).
    pub maintenance_max_attempts: u32,
    /// Finished jobs are deleted from the queue after this long (default 7 days).
    pub finished_job_retention: Duration,
    /// Dead letters are deleted from the queue after this long (default 30 days).
    pub dead_letter_retention: Duration,
    /// Pause before a worker that stopped on a database error is started again (default 5 s).
    pub restart_delay: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            mail_max_attempts: 8,
            backoff_base: Duration::from_secs(30),
            backoff_cap: Duration::from_secs(3600),
            mail_send_timeout: Duration::from_secs(60),
            mail_concurrency: 4,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            missed_heartbeats: 4,
            cleanup_interval: Duration::from_secs(600),
            retention_interval: Duration::from_secs(3600),
            reseal_interval: Duration::from_secs(3600),
            audit_retention: None,
            archive_dir: PathBuf::from("./.authkit/audit-archive"),
            maintenance_max_attempts: 3,
            finished_job_retention: Duration::from_secs(7 * 86_400),
            dead_letter_retention: Duration::from_secs(30 * 86_400),
            restart_delay: Duration::from_secs(5),
        }
    }
}

impl JobSettings {
    /// Checks the ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), JobError> {
        let checks: [(bool, &'static str); 11] = [
            (
                (1..=MAX_ATTEMPTS_CEILING).contains(&self.mail_max_attempts),
                "mail_max_attempts must be between 1 and 100",
            ),
            (
                (1..=MAX_ATTEMPTS_CEILING).contains(&self.maintenance_max_attempts),
                "maintenance_max_attempts must be between 1 and 100",
            ),
            (
                self.mail_concurrency >= 1,
                "mail_concurrency must be at least 1",
            ),
            (
                !self.poll_interval.is_zero(),
                "poll_interval must not be zero",
            ),
            (
                self.heartbeat_interval >= Duration::from_secs(1),
                "heartbeat_interval must be at least 1s (apalis stores whole seconds)",
            ),
            (
                self.missed_heartbeats >= 1,
                "missed_heartbeats must be at least 1",
            ),
            (
                self.cleanup_interval >= Duration::from_secs(1),
                "cleanup_interval must be at least 1s",
            ),
            (
                self.retention_interval >= Duration::from_secs(1),
                "retention_interval must be at least 1s",
            ),
            (
                self.reseal_interval >= Duration::from_secs(1),
                "reseal_interval must be at least 1s",
            ),
            (
                self.audit_retention.is_none_or(|d| !d.is_zero()),
                "audit_retention must not be zero (unset it to keep events)",
            ),
            (
                !self.mail_send_timeout.is_zero(),
                "mail_send_timeout must not be zero",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(JobError::InvalidSettings(message)),
            None => Ok(()),
        }
    }

    /// How long a silent worker keeps its jobs.
    pub(crate) fn orphan_timeout(&self) -> Duration {
        self.heartbeat_interval
            .saturating_mul(self.missed_heartbeats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        JobSettings::default().validate().unwrap();
        assert_eq!(
            JobSettings::default().orphan_timeout(),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let s = JobSettings {
            mail_max_attempts: 0,
            ..JobSettings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("mail_max_attempts"), "{err}");

        let s = JobSettings {
            heartbeat_interval: Duration::from_millis(500),
            ..JobSettings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("heartbeat_interval"), "{err}");

        let s = JobSettings {
            audit_retention: Some(Duration::ZERO),
            ..JobSettings::default()
        };
        assert!(s.validate().is_err());
    }
}
