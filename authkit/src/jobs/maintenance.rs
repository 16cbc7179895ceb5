//! The periodic jobs: cleanup of expired rows, and audit retention with archival.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::queue::JobQueue;
use super::worker::{Failure, JobContext};

/// Audit events read, archived and deleted per round trip.
const AUDIT_PAGE: u32 = 500;

/// Deletes expired sessions, account tokens and OAuth transactions (at the injected clock's
/// now), and finished jobs past their retention.
pub(super) async fn cleanup(queue: &JobQueue, ctx: &JobContext) -> Result<(), Failure> {
    let now = ctx.clock.now();
    let sessions = ctx
        .store
        .delete_expired_sessions(now)
        .await
        .map_err(|e| Failure::Retry(format!("deleting expired sessions failed: {e}")))?;
    let tokens = ctx
        .store
        .delete_expired_tokens(now)
        .await
        .map_err(|e| Failure::Retry(format!("deleting expired tokens failed: {e}")))?;
    let oauth_transactions = ctx
        .store
        .delete_expired_oauth_transactions(now)
        .await
        .map_err(|e| Failure::Retry(format!("deleting expired OAuth transactions failed: {e}")))?;
    let jobs = queue
        .purge_finished(
            ctx.settings.finished_job_retention,
            ctx.settings.dead_letter_retention,
        )
        .await
        .map_err(|e| Failure::Retry(format!("purging finished jobs failed: {e}")))?;
    tracing::info!(
        sessions,
        tokens,
        oauth_transactions,
        jobs,
        "cleanup deleted expired rows"
    );
    Ok(())
}

/// Archives audit events older than the retention to `<archive_dir>/audit-<date>.jsonl` and
/// deletes them, page by page: each page is appended and fsynced before it is deleted, so a
/// crash may archive a page twice but never loses one.
pub(super) async fn audit_retention(ctx: &JobContext) -> Result<(), Failure> {
    let Some(retention) = ctx.settings.audit_retention else {
        // Queued by an instance with retention on; this one has it off: keep the events.
        tracing::warn!("audit retention job skipped: audit_retention is not set here");
        return Ok(());
    };
    let now = ctx.clock.now();
    let cutoff = now.saturating_sub(retention);
    let date = now.to_rfc3339().get(..10).unwrap_or("unknown").to_owned();
    let dir = ctx.settings.archive_dir.clone();
    let file = dir.join(format!("audit-{date}.jsonl"));

    let mut after = 0i64;
    let mut archived = 0u64;
    let mut deleted = 0u64;
    loop {
        let page = ctx
            .store
            .audit_older_than(cutoff, after, AUDIT_PAGE)
            .await
            .map_err(|e| Failure::Retry(format!("reading audit events failed: {e}")))?;
        let Some(last_id) = page.last().map(|event| event.id) else {
            break;
        };
        let mut lines = Vec::with_capacity(page.len() * 256);
        for event in &page {
            serde_json::to_writer(&mut lines, event)
                .map_err(|_| Failure::Dead("an audit event cannot be encoded".to_owned()))?;
            lines.push(b'\n');
        }
        append_durably(dir.clone(), file.clone(), lines)
            .await
            .map_err(|e| {
                Failure::Retry(format!("writing the audit archive failed: {}", e.kind()))
            })?;
        archived += page.len() as u64;
        deleted += ctx
            .store
            .delete_audit_up_to(cutoff, last_id)
            .await
            .map_err(|e| Failure::Retry(format!("deleting archived audit events failed: {e}")))?;
        if page.len() < AUDIT_PAGE as usize {
            break;
        }
        after = last_id;
    }
    tracing::info!(
        archived,
        deleted,
        cutoff = %cutoff,
        file = %file.display(),
        "audit retention archived old events"
    );
    Ok(())
}

/// Appends `data` to `file` and fsyncs it, off the async executor.
async fn append_durably(dir: PathBuf, file: PathBuf, data: Vec<u8>) -> io::Result<()> {
    tokio::task::spawn_blocking(move || append_blocking(&dir, &file, &data))
        .await
        .map_err(io::Error::other)?
}

fn append_blocking(dir: &Path, file: &Path, data: &[u8]) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        // The archive holds addresses and user agents: owner only.
        builder.mode(0o700);
    }
    builder.create(dir)?;

    let existed = std::fs::symlink_metadata(file).is_ok();
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options.open(file)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // A file created by someone else (or an older version) is narrowed, not trusted.
        let mode = out.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    out.write_all(data)?;
    out.sync_all()?;
    if !existed {
        // Make the new directory entry durable too before the events are deleted.
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("archive/nested");
        let file = dir.join("audit-2027-01-15.jsonl");
        append_blocking(&dir, &file, b"{\"id\":1}\n").unwrap();
        append_blocking(&dir, &file, b"{\"id\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "{\"id\":1}\n{\"id\":2}\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let file_mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(file_mode, 0o600);
            assert_eq!(dir_mode & 0o077, 0, "{dir_mode:o}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn narrows_an_existing_world_readable_archive() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("audit.jsonl");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_blocking(tmp.path(), &file, b"x\n").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
