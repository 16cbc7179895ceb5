//! The periodic jobs: cleanup of expired rows, audit retention with archival, and re-sealing
//! after an encryption key rotation.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::queue::JobQueue;
use super::worker::{Failure, JobContext};

/// Audit events read, archived and deleted per round trip.
const AUDIT_PAGE: u32 = 500;
/// Rows read and re-sealed per round trip.
const RESEAL_PAGE: u32 = 200;

/// Re-seals, under the encryption ring's newest key, the TOTP secrets and OAuth provider
/// tokens still sealed under an older key, page by page, each row with a compare-and-swap (a
/// row changed meanwhile, e.g. by a refresh or a re-enrolment, is left to its new value). A
/// row that no longer opens (its key was retired) is counted and skipped: it stays unreadable,
/// which is what retiring a key means. Once nothing is left under an old key, the old key can
/// be retired without ending anything.
pub(super) async fn reseal(ctx: &JobContext) -> Result<(), Failure> {
    let Some(kid) = ctx.sealer.current_key_id() else {
        return Ok(());
    };
    let prefix = format!("v1.{kid}.");
    let retry = |what: &str, e: crate::store::StoreError| Failure::Retry(format!("{what}: {e}"));
    let (mut totp, mut oauth, mut unreadable) = (0u64, 0u64, 0u64);

    let mut after: Option<crate::user::UserId> = None;
    loop {
        let page = ctx
            .store
            .totp_secrets_not_under(&prefix, after.as_ref(), RESEAL_PAGE)
            .await
            .map_err(|e| retry("reading TOTP secrets to re-seal failed", e))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (user, sealed) in &page {
            let resealed = crate::mfa::TotpSecret::open(&ctx.sealer, sealed, user)
                .and_then(|secret| secret.seal(&ctx.sealer, user, ctx.rng.as_ref()));
            match resealed {
                Ok(new) => {
                    if ctx
                        .store
                        .reseal_totp(user, sealed, &new)
                        .await
                        .map_err(|e| retry("re-sealing a TOTP secret failed", e))?
                    {
                        totp += 1;
                    }
                }
                Err(_) => unreadable += 1,
            }
        }
    }

    let tokens = crate::oauth::TokenSealer::new(ctx.sealer.clone());
    let mut after: Option<String> = None;
    loop {
        let page = ctx
            .store
            .oauth_accounts_not_under(&prefix, after.as_deref(), RESEAL_PAGE)
            .await
            .map_err(|e| retry("reading OAuth tokens to re-seal failed", e))?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for account in &page {
            match tokens.reseal(account, ctx.rng.as_ref()) {
                Ok(Some(new)) => {
                    if ctx
                        .store
                        .replace_oauth_tokens(&account.id, &account.tokens, &new)
                        .await
                        .map_err(|e| retry("re-sealing OAuth tokens failed", e))?
                    {
                        oauth += 1;
                    }
                }
                Ok(None) => {}
                Err(_) => unreadable += 1,
            }
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            key_id = %kid,
            "re-sealing skipped rows that no longer open: their key was retired"
        );
    }
    tracing::info!(totp, oauth, key_id = %kid, "re-sealed rows under the newest encryption key");
    Ok(())
}

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

#[cfg(test)]
mod reseal_tests {
    use std::sync::Arc;

    use secrecy::{ExposeSecret as _, SecretString};

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::crypto::Sealer;
    use crate::mfa::{TotpAlgorithm, TotpSecret};
    use crate::oauth::{ProviderTokens, TokenSealer};
    use crate::rng::OsRandom;
    use crate::secret::KeyRing;
    use crate::store::{
        MemoryStore, MfaStore as _, NewTotp, NewUser, OAuthAccount, OAuthStore as _, Store,
        UserStore as _,
    };
    use crate::user::{Email, UserId};

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        crate::secret::test_ring(keys)
    }

    async fn user(store: &MemoryStore, name: &str) -> UserId {
        let id = UserId::from_stored(format!("00000000-0000-4000-8000-00000000000{name}"));
        store
            .create_user(NewUser {
                id: id.clone(),
                email: Email::from_stored(format!("{name}@example.com")),
                password_hash: None,
                email_verified: true,
                now: Timestamp::from_unix_seconds(1_800_000_000),
            })
            .await
            .unwrap();
        id
    }

    async fn totp(store: &MemoryStore, user: &UserId, sealer: &Sealer) -> TotpSecret {
        let secret = TotpSecret::generate(&OsRandom, 20).unwrap();
        let sealed = secret.seal(sealer, user, &OsRandom).unwrap();
        let new = NewTotp {
            secret: sealed,
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period: 30,
            created_at: Timestamp::from_unix_seconds(1_800_000_000),
        };
        let sealed = new.secret.clone();
        assert!(store.begin_totp_enrolment(user, &new).await.unwrap());
        let enabled = crate::audit::NewAuditEvent::new(
            crate::audit::AuditEventType::MfaEnabled,
            Some(user.clone()),
            Timestamp::from_unix_seconds(1_800_000_000),
            crate::audit::AuditActor::system(),
        );
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        assert!(
            store
                .confirm_totp(user, &sealed, 1, &[], now, &enabled)
                .await
                .unwrap()
        );
        secret
    }

    // SECURITY.md #36: after a rotation, the job moves TOTP secrets and provider tokens to the
    // newest key; what only a retired key opens is left alone and counted.
    #[tokio::test]
    async fn reseal_moves_sealed_rows_to_the_newest_key() {
        let store = Arc::new(MemoryStore::new());
        let k1 = Sealer::new(&ring(&[("k1", 1)]));
        let k0 = Sealer::new(&ring(&[("k0", 9)]));
        let (alice, bob, carol) = (
            user(&store, "1").await,
            user(&store, "2").await,
            user(&store, "3").await,
        );
        let alice_secret = totp(&store, &alice, &k1).await;
        let _carol_secret = totp(&store, &carol, &k0).await;
        let tokens = ProviderTokens {
            access_token: SecretString::from("access-token-of-bob"),
            refresh_token: Some(SecretString::from("refresh-token-of-bob")),
            expires_at: None,
            scopes: None,
        };
        let account = OAuthAccount {
            id: "acct-bob".into(),
            user_id: bob.clone(),
            provider: "oidc".into(),
            issuer: "https://op.example".into(),
            subject: "sub-bob".into(),
            email: None,
            tokens: TokenSealer::new(k1.clone())
                .seal(&tokens, &bob, "https://op.example", "sub-bob", &OsRandom)
                .unwrap(),
            created_at: Timestamp::from_unix_seconds(1_800_000_000),
            last_used_at: None,
        };
        store.link_oauth_account(&account, &[]).await.unwrap();

        let rotated = Sealer::new(&ring(&[("k2", 2), ("k1", 1)]));
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(
            1_800_000_000,
        )));
        let ctx = JobContext {
            mailer: Arc::new(crate::mail::DevMailbox::new(dir.path(), clock.clone()).unwrap()),
            sealer: rotated.clone(),
            store: Arc::clone(&store) as Arc<dyn Store>,
            clock,
            rng: Arc::new(OsRandom),
            settings: crate::jobs::JobSettings::default(),
        };
        reseal(&ctx).await.unwrap();

        let a = store.totp(&alice).await.unwrap().unwrap();
        assert!(a.secret.starts_with("v1.k2."));
        let opened = TotpSecret::open(&rotated, &a.secret, &alice).unwrap();
        assert_eq!(opened.expose(), alice_secret.expose());
        let c = store.totp(&carol).await.unwrap().unwrap();
        assert!(
            c.secret.starts_with("v1.k0."),
            "a row under a retired key stays"
        );

        let b = store
            .oauth_account_by_id(&bob, "acct-bob")
            .await
            .unwrap()
            .unwrap();
        let access = b.tokens.access_token.clone().unwrap();
        let refresh = b.tokens.refresh_token.clone().unwrap();
        assert!(access.starts_with("v1.k2.") && refresh.starts_with("v1.k2."));
        // Only the newest key is needed now: retiring k1 loses nothing.
        let k2_only = TokenSealer::new(Sealer::new(&ring(&[("k2", 2)])));
        assert!(k2_only.reseal(&b, &OsRandom).unwrap().is_none());
        let plain = k2_only.open(&access, "access", &b).unwrap();
        assert_eq!(plain.expose_secret(), "access-token-of-bob");

        // Nothing left to do: a second run changes nothing.
        reseal(&ctx).await.unwrap();
        assert_eq!(store.totp(&alice).await.unwrap().unwrap().secret, a.secret);
    }
}
