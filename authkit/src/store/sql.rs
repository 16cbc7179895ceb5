use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions as _, Row as _};

use super::{
    AccountToken, AuditStore, NewAccountToken, NewUser, Redeemed, Rotation, RotationGuard,
    SessionStore, Store, StoreError, TokenEffect, TokenPurpose, TokenStore, UserStore,
};
use crate::audit::{AuditEvent, AuditEventType, NewAuditEvent};
use crate::clock::Timestamp;
use crate::session::{Aal, SessionIdHash, SessionKind, SessionRecord};
use crate::user::{Email, UserId, UserRecord};

mod mfa;
mod oauth;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `sqlite:` URLs: the embedded default.
    Sqlite,
    /// `postgres:` / `postgresql:` URLs.
    Postgres,
}

impl DatabaseKind {
    /// The kind of `url`, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(StoreError::UnsupportedUrl),
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    /// Largest number of open connections.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long a request waits for a connection before failing with 503.
    pub acquire_timeout: Duration,
    /// How many times to retry the first connection at start-up (database still booting).
    pub connect_retries: u32,
    /// Statements slower than this are logged at `warn`.
    pub slow_statement_threshold: Duration,
    /// Run migrations when connecting.
    pub migrate: bool,
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            connect_retries: 5,
            slow_statement_threshold: Duration::from_millis(100),
            migrate: true,
        }
    }
}

/// Users and sessions in SQLite or PostgreSQL (one schema, embedded migrations).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    kind: DatabaseKind,
}

impl SqlStore {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and, unless disabled, migrates.
    pub async fn connect(url: &str, options: SqlStoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let kind = DatabaseKind::from_url(url)?;
        let connect = AnyConnectOptions::from_str(url)?
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Warn, options.slow_statement_threshold);
        // An in-memory SQLite database lives and dies with its one connection.
        let in_memory = kind == DatabaseKind::Sqlite
            && (url.contains(":memory:") || url.contains("mode=memory"));
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(if in_memory {
                1
            } else {
                options.max_connections.max(1)
            })
            .min_connections(if in_memory {
                1
            } else {
                options.min_connections
            })
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DatabaseKind::Sqlite {
                        for pragma in [
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            });
        if in_memory {
            pool_options = pool_options.idle_timeout(None).max_lifetime(None);
        }

        let mut attempt = 0u32;
        let pool = loop {
            match pool_options.clone().connect_with(connect.clone()).await {
                Ok(pool) => break pool,
                Err(e) if attempt < options.connect_retries && is_transient(&e) => {
                    attempt += 1;
                    let wait = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5)));
                    tracing::warn!(attempt, ?wait, error = %e, "database not reachable yet; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let store = Self { pool, kind };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.kind {
            DatabaseKind::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(StoreError::Migration)
    }

    /// Which database this store talks to.
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The connection pool (for metrics, or an app's own tables).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Opens new connections with `password` from now on: how a rotated database password
    /// is picked up without a restart. Connections already open stay (PostgreSQL does not end
    /// sessions when a password changes) and are replaced as the pool recycles them. SQLite
    /// has no password: a no-op.
    pub fn set_password(&self, password: &secrecy::SecretString) -> Result<(), StoreError> {
        if self.kind == DatabaseKind::Sqlite {
            return Ok(());
        }
        let mut options = (*self.pool.connect_options()).clone();
        set_url_password(&mut options.database_url, password)?;
        self.pool.set_connect_options(options);
        Ok(())
    }
}

impl SqlStore {
    /// Opens new connections to `url` from now on (e.g. rotated credentials of another
    /// database user: the "alternating users" rotation, which has no moment where the old
    /// password is gone and the new one not yet known). Connections already open stay until
    /// the pool recycles them. Refused when `url` names another kind of database.
    pub fn set_url(&self, url: &str) -> Result<(), StoreError> {
        if DatabaseKind::from_url(url)? != self.kind {
            return Err(StoreError::UnsupportedUrl);
        }
        let mut options = (*self.pool.connect_options()).clone();
        options.database_url = url::Url::parse(url).map_err(|_| StoreError::UnsupportedUrl)?;
        self.pool.set_connect_options(options);
        Ok(())
    }
}

/// Puts `password` into `url`, percent-encoded (`Url::set_password` leaves `%` as it is, and
/// sqlx decodes it: `p%41ss` would arrive as `pAss`).
pub fn set_url_password(
    url: &mut url::Url,
    password: &secrecy::SecretString,
) -> Result<(), StoreError> {
    use secrecy::ExposeSecret as _;
    let encoded = zeroize::Zeroizing::new(
        percent_encoding::utf8_percent_encode(
            password.expose_secret(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string(),
    );
    url.set_password(Some(&encoded))
        .map_err(|()| StoreError::UnsupportedUrl)
}

fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    )
}

const USER_COLUMNS: &str =
    "id, email, email_verified, password_hash, mfa_enabled, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId::from_stored(row.try_get("id")?),
        email: Email::from_stored(row.try_get("email")?),
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        password_hash: row.try_get("password_hash")?,
        mfa_enabled: row.try_get::<i64, _>("mfa_enabled")? != 0,
        created_at: Timestamp::from_unix_seconds(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_seconds(row.try_get("updated_at")?),
    })
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let hash: Vec<u8> = row.try_get("id_hash")?;
    let kind: String = row.try_get("kind")?;
    Ok(SessionRecord {
        id_hash: SessionIdHash::from_slice(&hash).ok_or(StoreError::Corrupt("session id hash"))?,
        handle: row.try_get("handle")?,
        user_id: UserId::from_stored(row.try_get("user_id")?),
        kind: SessionKind::parse(&kind).ok_or(StoreError::Corrupt("session kind"))?,
        aal: Aal::from_i64(row.try_get("aal")?).ok_or(StoreError::Corrupt("session aal"))?,
        created_at: Timestamp::from_unix_seconds(row.try_get("created_at")?),
        last_seen_at: Timestamp::from_unix_seconds(row.try_get("last_seen_at")?),
        authenticated_at: Timestamp::from_unix_seconds(row.try_get("authenticated_at")?),
        password_verified_at: row
            .try_get::<Option<i64>, _>("password_verified_at")?
            .map(Timestamp::from_unix_seconds),
        expires_at: Timestamp::from_unix_seconds(row.try_get("expires_at")?),
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

fn hashes_from_rows(rows: &[AnyRow]) -> Result<Vec<SessionIdHash>, StoreError> {
    rows.iter()
        .map(|r| {
            let bytes: Vec<u8> = r.try_get("id_hash")?;
            SessionIdHash::from_slice(&bytes).ok_or(StoreError::Corrupt("session id hash"))
        })
        .collect()
}

const INSERT_SESSION: &str = "INSERT INTO sessions (id_hash, handle, user_id, kind, aal, \
     created_at, last_seen_at, authenticated_at, expires_at, ip, user_agent, \
     password_verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

fn insert_session_query(
    s: &SessionRecord,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(INSERT_SESSION)
        .bind(s.id_hash.as_bytes().to_vec())
        .bind(s.handle.as_str())
        .bind(s.user_id.as_str())
        .bind(s.kind.as_str())
        .bind(s.aal.as_i64())
        .bind(s.created_at.unix_seconds())
        .bind(s.last_seen_at.unix_seconds())
        .bind(s.authenticated_at.unix_seconds())
        .bind(s.expires_at.unix_seconds())
        .bind(s.ip.as_deref())
        .bind(s.user_agent.as_deref())
        .bind(s.password_verified_at.map(Timestamp::unix_seconds))
}

const SESSION_COLUMNS: &str = "id_hash, handle, user_id, kind, aal, created_at, last_seen_at, \
     authenticated_at, expires_at, ip, user_agent, password_verified_at";

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        insert_user_query(&user).execute(&self.pool).await?;
        Ok(new_user_record(user))
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"));
        let row = sqlx::query(sql)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
        let row = sqlx::query(sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &str,
        phc: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 \
             WHERE id = $3 AND password_hash = $4",
        )
        .bind(phc)
        .bind(now.unix_seconds())
        .bind(id.as_str())
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        insert_session_query(session).execute(&self.pool).await?;
        Ok(())
    }

    async fn rotate_session(
        &self,
        new: &SessionRecord,
        guard: RotationGuard<'_>,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Write first: on SQLite the first write takes the database's write lock, so nothing
        // can commit between the checks below and this transaction's commit.
        if let Some(old) = guard.replace {
            let gone = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(old.as_bytes().to_vec())
                .execute(&mut *tx)
                .await?;
            if guard.require_replaced && gone.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(Rotation::Revoked);
            }
        } else if guard.require_replaced {
            tx.rollback().await?;
            return Ok(Rotation::Revoked);
        }
        insert_session_query(new).execute(&mut *tx).await?;
        for e in guard.audit {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        if let Some(expected) = guard.password_hash {
            // On PostgreSQL, FOR SHARE waits for a concurrent password change to commit and
            // then sees its new hash; a later change waits for this commit and then deletes
            // the session inserted here with the user's other sessions. Not FOR UPDATE: the
            // session insert above already holds a KEY SHARE lock on the user row (its foreign
            // key), so two sign-ins of one user each waiting to upgrade to FOR UPDATE would
            // deadlock; SHARE locks do not conflict with each other.
            let check = match self.kind {
                DatabaseKind::Postgres => {
                    "SELECT id FROM users WHERE id = $1 AND password_hash = $2 FOR SHARE"
                }
                DatabaseKind::Sqlite => "SELECT id FROM users WHERE id = $1 AND password_hash = $2",
            };
            let still = sqlx::query(check)
                .bind(new.user_id.as_str())
                .bind(expected)
                .fetch_optional(&mut *tx)
                .await?;
            if still.is_none() {
                tx.rollback().await?;
                return Ok(Rotation::CredentialsChanged);
            }
        }
        tx.commit().await?;
        Ok(Rotation::Done)
    }

    async fn session(&self, id: &SessionIdHash) -> Result<Option<SessionRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1"
        ));
        let row = sqlx::query(sql)
            .bind(id.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id: &SessionIdHash, seen: Timestamp) -> Result<(), StoreError> {
        // Never move last_seen_at backwards when two instances touch concurrently.
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $1",
        )
        .bind(seen.unix_seconds())
        .bind(id.as_bytes().to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_session(
        &self,
        id: &SessionIdHash,
        audit: Option<&NewAuditEvent>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id.as_bytes().to_vec())
            .execute(&mut *tx)
            .await?;
        let deleted = done.rows_affected() > 0;
        if let (true, Some(e)) = (deleted, audit) {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn sessions_for_user(&self, user: &UserId) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 \
             ORDER BY created_at DESC, handle"
        ));
        let rows = sqlx::query(sql)
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn delete_session_by_handle(
        &self,
        user: &UserId,
        handle: &str,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Option<SessionIdHash>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 AND handle = $2 RETURNING id_hash",
        )
        .bind(user.as_str())
        .bind(handle)
        .fetch_all(&mut *tx)
        .await?;
        let found = hashes_from_rows(&rows)?.into_iter().next();
        if let (Some(_), Some(e)) = (&found, audit) {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    async fn delete_user_sessions_except(
        &self,
        user: &UserId,
        keep: Option<&SessionIdHash>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Vec<SessionIdHash>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = delete_others(user, keep).fetch_all(&mut *tx).await?;
        let ended = hashes_from_rows(&rows)?;
        if let (false, Some(e)) = (ended.is_empty(), audit) {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn change_password(
        &self,
        user: &UserId,
        expected: &str,
        phc: &str,
        now: Timestamp,
        session: Option<&SessionRecord>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Option<Vec<SessionIdHash>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 \
             WHERE id = $3 AND password_hash = $4",
        )
        .bind(phc)
        .bind(now.unix_seconds())
        .bind(user.as_str())
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let rows = delete_others(user, None).fetch_all(&mut *tx).await?;
        // A reset link mailed before the change must not undo it.
        sqlx::query("DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2")
            .bind(user.as_str())
            .bind(TokenPurpose::ResetPassword.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(session) = session {
            insert_session_query(session).execute(&mut *tx).await?;
        }
        if let Some(e) = audit {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        hashes_from_rows(&rows).map(Some)
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.unix_seconds())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn delete_others<'a>(
    user: &'a UserId,
    keep: Option<&SessionIdHash>,
) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments> {
    // An all-zero hash never matches a real session, so one statement covers "keep none".
    let keep = keep.map_or_else(|| vec![0u8; 32], |k| k.as_bytes().to_vec());
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2 RETURNING id_hash")
        .bind(user.as_str())
        .bind(keep)
}

/// Inserts a new user (no MFA yet).
pub(super) fn insert_user_query(
    user: &NewUser,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO users (id, email, email_verified, password_hash, mfa_enabled, \
         created_at, updated_at) VALUES ($1, $2, $5, $3, 0, $4, $4)",
    )
    .bind(user.id.as_str())
    .bind(user.email.as_str())
    .bind(user.password_hash.as_deref())
    .bind(user.now.unix_seconds())
    .bind(i64::from(user.email_verified))
}

/// The record of a user just inserted from `user`.
pub(super) fn new_user_record(user: NewUser) -> UserRecord {
    UserRecord {
        id: user.id,
        email: user.email,
        email_verified: user.email_verified,
        password_hash: user.password_hash,
        mfa_enabled: false,
        created_at: user.now,
        updated_at: user.now,
    }
}

fn insert_audit_query(
    e: &NewAuditEvent,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO audit_events (user_id, event_type, at, ip, user_agent, details) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.user_id.as_ref().map(UserId::as_str))
    .bind(e.event_type.as_str())
    .bind(e.at.unix_seconds())
    .bind(e.actor.ip.as_deref())
    .bind(e.actor.user_agent.as_deref())
    .bind(e.details.to_string())
}

const AUDIT_COLUMNS: &str = "id, user_id, event_type, at, ip, user_agent, details";

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let event_type: String = row.try_get("event_type")?;
    let details: String = row.try_get("details")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        event_type: AuditEventType::parse(&event_type)
            .ok_or(StoreError::Corrupt("audit event type"))?,
        user_id: row
            .try_get::<Option<String>, _>("user_id")?
            .map(UserId::from_stored),
        at: Timestamp::from_unix_seconds(row.try_get("at")?),
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        details: serde_json::from_str(&details)
            .map_err(|_| StoreError::Corrupt("audit event details"))?,
    })
}

const TOKEN_COLUMNS: &str = "purpose, user_id, email, password_hash, created_at";

fn token_from_row(row: &AnyRow) -> Result<AccountToken, StoreError> {
    let purpose: String = row.try_get("purpose")?;
    Ok(AccountToken {
        purpose: TokenPurpose::parse(&purpose).ok_or(StoreError::Corrupt("token purpose"))?,
        user_id: row
            .try_get::<Option<String>, _>("user_id")?
            .map(UserId::from_stored),
        email: Email::from_stored(row.try_get("email")?),
        password_hash: row.try_get("password_hash")?,
        created_at: Timestamp::from_unix_seconds(row.try_get("created_at")?),
    })
}

impl SqlStore {
    /// Applies a redeemed token's effect inside `tx`; the user afterwards and the sessions
    /// it ended, or `None` when the token's user no longer exists.
    async fn apply_token_effect(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        token: &AccountToken,
        now: Timestamp,
        effect: TokenEffect,
    ) -> Result<Option<(UserRecord, Vec<SessionIdHash>)>, StoreError> {
        let user_id = match effect {
            TokenEffect::CreateUser(new) => {
                insert_user_query(&new).execute(&mut **tx).await?;
                // Other pending sign-ups for the address (someone else's attempt with their own
                // password) die with this one: the address now has its owner's account.
                sqlx::query("DELETE FROM account_tokens WHERE email = $1 AND purpose = $2")
                    .bind(new.email.as_str())
                    .bind(TokenPurpose::Registration.as_str())
                    .execute(&mut **tx)
                    .await?;
                new.id
            }
            TokenEffect::VerifyEmail => {
                let Some(id) = token.user_id.clone() else {
                    return Ok(None);
                };
                sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
                    .bind(now.unix_seconds())
                    .bind(id.as_str())
                    .execute(&mut **tx)
                    .await?;
                id
            }
            TokenEffect::ResetPassword { password_hash } => {
                let Some(id) = token.user_id.clone() else {
                    return Ok(None);
                };
                // A reset proves the address. If it had never been proven, the account may have
                // been set up by someone else (pre-hijacking: a sign-up with another's address);
                // the owner claiming it now must not keep their linked provider accounts, which
                // would still sign them in. (The second factor stays: a reset alone, i.e. a
                // mailbox, must never switch MFA off.)
                let verified: Option<i64> =
                    sqlx::query_scalar("SELECT email_verified FROM users WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                if verified == Some(0) {
                    for sql in [
                        "DELETE FROM oauth_accounts WHERE user_id = $1",
                        "DELETE FROM oauth_transactions WHERE link_user_id = $1",
                    ] {
                        sqlx::query(sql)
                            .bind(id.as_str())
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                sqlx::query(
                    "UPDATE users SET password_hash = $1, email_verified = 1, updated_at = $2 \
                     WHERE id = $3",
                )
                .bind(password_hash)
                .bind(now.unix_seconds())
                .bind(id.as_str())
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2")
                    .bind(id.as_str())
                    .bind(TokenPurpose::ResetPassword.as_str())
                    .execute(&mut **tx)
                    .await?;
                let rows = delete_others(&id, None).fetch_all(&mut **tx).await?;
                let sql =
                    sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
                let user = sqlx::query(sql)
                    .bind(id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some(user) = user.as_ref().map(user_from_row).transpose()? else {
                    return Ok(None);
                };
                return Ok(Some((user, hashes_from_rows(&rows)?)));
            }
        };
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
        let user = sqlx::query(sql)
            .bind(user_id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(user
            .as_ref()
            .map(user_from_row)
            .transpose()?
            .map(|u| (u, Vec::new())))
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_token(&self, t: &NewAccountToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, purpose, user_id, email, password_hash, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.token_hash.to_vec())
        .bind(t.purpose.as_str())
        .bind(t.user_id.as_ref().map(UserId::as_str))
        .bind(t.email.as_str())
        .bind(t.password_hash.as_deref())
        .bind(t.created_at.unix_seconds())
        .bind(t.expires_at.unix_seconds())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn peek_token(
        &self,
        token_hash: &[u8; 32],
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<Option<AccountToken>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM account_tokens \
             WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3"
        ));
        let row = sqlx::query(sql)
            .bind(token_hash.to_vec())
            .bind(purpose.as_str())
            .bind(now.unix_seconds())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn redeem_token(
        &self,
        token_hash: &[u8; 32],
        purpose: TokenPurpose,
        now: Timestamp,
        effect: TokenEffect,
        mut audit: NewAuditEvent,
    ) -> Result<Option<Redeemed>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The DELETE is the claim: of two concurrent redemptions only one gets the row back.
        let sql = sqlx::AssertSqlSafe(format!(
            "DELETE FROM account_tokens \
             WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3 \
             RETURNING {TOKEN_COLUMNS}"
        ));
        let row = sqlx::query(sql)
            .bind(token_hash.to_vec())
            .bind(purpose.as_str())
            .bind(now.unix_seconds())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(token) = row.as_ref().map(token_from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let Some((user, revoked_sessions)) = self
            .apply_token_effect(&mut tx, &token, now, effect)
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        audit.user_id = Some(user.id.clone());
        insert_audit_query(&audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(Redeemed {
            token,
            user,
            revoked_sessions,
        }))
    }

    async fn delete_expired_tokens(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM account_tokens WHERE expires_at <= $1")
            .bind(now.unix_seconds())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        insert_audit_query(event).execute(&self.pool).await?;
        Ok(())
    }

    async fn audit_for_user(
        &self,
        user: &UserId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE user_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        ));
        let rows = sqlx::query(sql)
            .bind(user.as_str())
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_older_than(
        &self,
        cutoff: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE at < $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        ));
        let rows = sqlx::query(sql)
            .bind(cutoff.unix_seconds())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn delete_audit_up_to(&self, cutoff: Timestamp, up_to: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < $1 AND id <= $2")
            .bind(cutoff.unix_seconds())
            .bind(up_to)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
