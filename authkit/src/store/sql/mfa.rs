//! [`MfaStore`] on SQL: the TOTP authenticator and backup codes.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{DatabaseKind, SqlStore, insert_audit_query};
use crate::audit::NewAuditEvent;
use crate::clock::Timestamp;
use crate::ratelimit::{AttemptDecision, LockoutPolicy};
use crate::store::{
    MfaStore, NewTotp, StoreError, StoredBackupCode, TotpRecord, mfa_attempt_decision,
};
use crate::user::UserId;

const TOTP_COLUMNS: &str = "secret, algorithm, digits, period, confirmed, last_step, \
     failed_attempts, last_failure_at, created_at, confirmed_at";

fn totp_from_row(row: &AnyRow) -> Result<TotpRecord, StoreError> {
    let algorithm: String = row.try_get("algorithm")?;
    let step =
        |v: Option<i64>| v.map(|s| u64::try_from(s).map_err(|_| StoreError::Corrupt("totp step")));
    Ok(TotpRecord {
        secret: row.try_get("secret")?,
        algorithm: algorithm
            .parse()
            .map_err(|_| StoreError::Corrupt("totp algorithm"))?,
        digits: u8::try_from(row.try_get::<i64, _>("digits")?)
            .map_err(|_| StoreError::Corrupt("totp digits"))?,
        period: u64::try_from(row.try_get::<i64, _>("period")?)
            .map_err(|_| StoreError::Corrupt("totp period"))?,
        confirmed: row.try_get::<i64, _>("confirmed")? != 0,
        last_step: step(row.try_get("last_step")?).transpose()?,
        failed_attempts: u32::try_from(row.try_get::<i64, _>("failed_attempts")?)
            .map_err(|_| StoreError::Corrupt("mfa failures"))?,
        last_failure_at: row
            .try_get::<Option<i64>, _>("last_failure_at")?
            .map(Timestamp::from_unix_seconds),
        created_at: Timestamp::from_unix_seconds(row.try_get("created_at")?),
        confirmed_at: row
            .try_get::<Option<i64>, _>("confirmed_at")?
            .map(Timestamp::from_unix_seconds),
    })
}

fn step_i64(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::Corrupt("totp step out of range"))
}

/// Inserts `codes` for `user` in one statement.
async fn insert_codes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &UserId,
    codes: &[StoredBackupCode],
    now: Timestamp,
) -> Result<(), StoreError> {
    if codes.is_empty() {
        return Ok(());
    }
    let values = (0..codes.len())
        .map(|i| {
            let base = i * 2;
            format!("($1, ${}, ${}, $2)", base + 3, base + 4)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = sqlx::AssertSqlSafe(format!(
        "INSERT INTO mfa_backup_codes (user_id, code_hash, key_id, created_at) VALUES {values}"
    ));
    let mut query = sqlx::query(sql)
        .bind(user.as_str())
        .bind(now.unix_seconds());
    for code in codes {
        query = query
            .bind(code.hash.to_vec())
            .bind(code.key_id.as_str().to_owned());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

#[async_trait]
impl MfaStore for SqlStore {
    async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOTP_COLUMNS} FROM mfa_totp WHERE user_id = $1"
        ));
        let row = sqlx::query(sql)
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(totp_from_row).transpose()
    }

    async fn begin_totp_enrolment(&self, user: &UserId, new: &NewTotp) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1 AND confirmed = 0")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        // A confirmed authenticator keeps its row: the insert then violates the primary key.
        let inserted = sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, algorithm, digits, period, confirmed, \
             created_at) VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(user.as_str())
        .bind(new.secret.as_str())
        .bind(new.algorithm.as_str())
        .bind(i64::from(new.digits))
        .bind(i64::try_from(new.period).map_err(|_| StoreError::Corrupt("totp period"))?)
        .bind(new.created_at.unix_seconds())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(e) => match StoreError::from(e) {
                StoreError::Conflict => {
                    tx.rollback().await?;
                    Ok(false)
                }
                other => Err(other),
            },
        }
    }

    async fn confirm_totp(
        &self,
        user: &UserId,
        secret: &str,
        step: u64,
        codes: &[StoredBackupCode],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE mfa_totp SET confirmed = 1, confirmed_at = $1, last_step = $2, \
             failed_attempts = 0 WHERE user_id = $3 AND confirmed = 0 AND secret = $4",
        )
        .bind(now.unix_seconds())
        .bind(step_i64(step)?)
        .bind(user.as_str())
        .bind(secret)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE users SET mfa_enabled = 1, updated_at = $1 WHERE id = $2")
            .bind(now.unix_seconds())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        insert_codes(&mut tx, user, codes, now).await?;
        insert_audit_query(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn accept_totp_step(
        &self,
        user: &UserId,
        secret: &str,
        step: u64,
    ) -> Result<bool, StoreError> {
        // One conditional update: the database serialises concurrent writers on the row, and
        // the loser re-evaluates `last_step < $1` against the winner's value. The secret ties
        // the step to the authenticator that was checked (not one enrolled meanwhile).
        let done = sqlx::query(
            "UPDATE mfa_totp SET last_step = $1, failed_attempts = 0 \
             WHERE user_id = $2 AND secret = $3 AND confirmed = 1 \
             AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step_i64(step)?)
        .bind(user.as_str())
        .bind(secret)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn begin_mfa_attempt(
        &self,
        user: &UserId,
        policy: &LockoutPolicy,
        now: Timestamp,
    ) -> Result<AttemptDecision, StoreError> {
        // Read, decide, then count with a compare-and-set on the count read: concurrent
        // attempts (on any instance) each count once, and each decides on the count it saw.
        for _ in 0..16 {
            let row = sqlx::query(
                "SELECT failed_attempts, last_failure_at FROM mfa_totp WHERE user_id = $1",
            )
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else {
                return Ok(AttemptDecision::Proceed { locks_now: false });
            };
            let failures: i64 = row.try_get("failed_attempts")?;
            let last = row
                .try_get::<Option<i64>, _>("last_failure_at")?
                .map(Timestamp::from_unix_seconds);
            let count = u32::try_from(failures).map_err(|_| StoreError::Corrupt("mfa failures"))?;
            let decision = mfa_attempt_decision(policy, count, last, now);
            if !decision.may_proceed() {
                return Ok(decision);
            }
            let counted = sqlx::query(
                "UPDATE mfa_totp SET failed_attempts = failed_attempts + 1, last_failure_at = $1 \
                 WHERE user_id = $2 AND failed_attempts = $3",
            )
            .bind(now.unix_seconds())
            .bind(user.as_str())
            .bind(failures)
            .execute(&self.pool)
            .await?;
            if counted.rows_affected() == 1 {
                return Ok(decision);
            }
        }
        // Sixteen lost races in a row: someone is hammering the account; refuse this one.
        Ok(AttemptDecision::Locked {
            retry_after: Some(std::time::Duration::from_secs(1)),
        })
    }

    async fn clear_mfa_failures(&self, user: &UserId) -> Result<(), StoreError> {
        sqlx::query("UPDATE mfa_totp SET failed_attempts = 0 WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reseal_totp(&self, user: &UserId, old: &str, new: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE mfa_totp SET secret = $1 WHERE user_id = $2 AND secret = $3")
                .bind(new)
                .bind(user.as_str())
                .bind(old)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp_secrets_not_under(
        &self,
        prefix: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<(UserId, String)>, StoreError> {
        // `substr`/`length` rather than LIKE: a key id may contain `_`, a LIKE wildcard.
        let rows = sqlx::query(
            "SELECT user_id, secret FROM mfa_totp \
             WHERE confirmed = 1 AND substr(secret, 1, length($1)) <> $1 AND user_id > $2 \
             ORDER BY user_id LIMIT $3",
        )
        .bind(prefix)
        .bind(after.map_or("", UserId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    UserId::from_stored(r.try_get("user_id")?),
                    r.try_get("secret")?,
                ))
            })
            .collect()
    }

    async fn consume_backup_code(
        &self,
        user: &UserId,
        candidates: &[[u8; 32]],
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        if candidates.is_empty() {
            return Ok(false);
        }
        let placeholders = (0..candidates.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = sqlx::AssertSqlSafe(format!(
            "DELETE FROM mfa_backup_codes WHERE user_id = $1 AND code_hash IN ({placeholders})"
        ));
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(sql).bind(user.as_str());
        for hash in candidates {
            query = query.bind(hash.to_vec());
        }
        // The DELETE is the claim: of concurrent requests with one code only one deletes it.
        let done = query.execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE mfa_totp SET failed_attempts = 0 WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit_query(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[StoredBackupCode],
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Write first (SQLite takes its write lock here); on PostgreSQL lock the authenticator
        // row so that a concurrent disable cannot leave codes behind.
        let lock = match self.kind {
            DatabaseKind::Postgres => {
                "SELECT user_id FROM mfa_totp WHERE user_id = $1 AND confirmed = 1 FOR UPDATE"
            }
            DatabaseKind::Sqlite => {
                "UPDATE mfa_totp SET confirmed = 1 WHERE user_id = $1 AND confirmed = 1 \
                 RETURNING user_id"
            }
        };
        let on = sqlx::query(lock)
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if on.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        insert_codes(&mut tx, user, codes, now).await?;
        insert_audit_query(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn backup_codes_remaining(&self, user: &UserId) -> Result<u32, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM mfa_backup_codes WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_one(&self.pool)
            .await?;
        u32::try_from(row.try_get::<i64, _>("n")?).map_err(|_| StoreError::Corrupt("code count"))
    }

    async fn disable_mfa(
        &self,
        user: &UserId,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1 AND confirmed = 1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET mfa_enabled = 0, updated_at = $1 WHERE id = $2")
            .bind(now.unix_seconds())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit_query(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}
