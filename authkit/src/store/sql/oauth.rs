//! [`OAuthStore`] on SQL: single-use sign-in transactions and linked provider accounts.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{DatabaseKind, SqlStore, insert_audit_query, insert_user_query, new_user_record};
use crate::audit::NewAuditEvent;
use crate::clock::Timestamp;
use crate::store::{
    LinkIntent, NewUser, OAuthAccount, OAuthStore, OAuthTransaction, SealedTokens, StoreError,
    Unlink,
};
use crate::user::{UserId, UserRecord};

const TRANSACTION_COLUMNS: &str = "state_hash, provider, browser_hash, sealed, redirect_to, \
     link_user_id, link_session_hash, created_at, expires_at";

const ACCOUNT_COLUMNS: &str = "id, user_id, provider, issuer, subject, email, access_token, \
     refresh_token, token_expires_at, scopes, created_at, last_used_at";

fn hash32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt(what))
}

fn transaction_from_row(row: &AnyRow) -> Result<OAuthTransaction, StoreError> {
    let state: Vec<u8> = row.try_get("state_hash")?;
    let browser: Vec<u8> = row.try_get("browser_hash")?;
    let link_user: Option<String> = row.try_get("link_user_id")?;
    let link_session: Option<Vec<u8>> = row.try_get("link_session_hash")?;
    let link = match (link_user, link_session) {
        (Some(user), Some(session)) => Some(LinkIntent {
            user_id: UserId::from_stored(user),
            session_hash: hash32(&session, "oauth link session hash")?,
        }),
        (None, None) => None,
        _ => return Err(StoreError::Corrupt("oauth link intent")),
    };
    Ok(OAuthTransaction {
        state_hash: hash32(&state, "oauth state hash")?,
        provider: row.try_get("provider")?,
        browser_hash: hash32(&browser, "oauth browser hash")?,
        sealed: row.try_get("sealed")?,
        redirect_to: row.try_get("redirect_to")?,
        link,
        created_at: Timestamp::from_unix_seconds(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_seconds(row.try_get("expires_at")?),
    })
}

fn account_from_row(row: &AnyRow) -> Result<OAuthAccount, StoreError> {
    Ok(OAuthAccount {
        id: row.try_get("id")?,
        user_id: UserId::from_stored(row.try_get("user_id")?),
        provider: row.try_get("provider")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        tokens: SealedTokens {
            access_token: row.try_get("access_token")?,
            refresh_token: row.try_get("refresh_token")?,
            expires_at: row
                .try_get::<Option<i64>, _>("token_expires_at")?
                .map(Timestamp::from_unix_seconds),
            scopes: row.try_get("scopes")?,
        },
        created_at: Timestamp::from_unix_seconds(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp::from_unix_seconds),
    })
}

/// Inserts `account` as a link of `user` (the id the row gets, whatever `account.user_id`
/// says: the caller of [`OAuthStore::create_user_with_oauth_account`] names the user once).
fn insert_account_query<'a>(
    account: &'a OAuthAccount,
    user: &'a UserId,
) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO oauth_accounts (id, user_id, provider, issuer, subject, email, \
         access_token, refresh_token, token_expires_at, scopes, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(account.id.as_str())
    .bind(user.as_str())
    .bind(account.provider.as_str())
    .bind(account.issuer.as_str())
    .bind(account.subject.as_str())
    .bind(account.email.as_deref())
    .bind(account.tokens.access_token.as_deref())
    .bind(account.tokens.refresh_token.as_deref())
    .bind(account.tokens.expires_at.map(Timestamp::unix_seconds))
    .bind(account.tokens.scopes.as_deref())
    .bind(account.created_at.unix_seconds())
    .bind(account.last_used_at.map(Timestamp::unix_seconds))
}

#[async_trait]
impl OAuthStore for SqlStore {
    async fn insert_oauth_transaction(&self, tx: &OAuthTransaction) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_transactions (state_hash, provider, browser_hash, sealed, \
             redirect_to, link_user_id, link_session_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(tx.state_hash.to_vec())
        .bind(tx.provider.as_str())
        .bind(tx.browser_hash.to_vec())
        .bind(tx.sealed.as_str())
        .bind(tx.redirect_to.as_str())
        .bind(tx.link.as_ref().map(|l| l.user_id.as_str()))
        .bind(tx.link.as_ref().map(|l| l.session_hash.to_vec()))
        .bind(tx.created_at.unix_seconds())
        .bind(tx.expires_at.unix_seconds())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_oauth_transaction(
        &self,
        state_hash: &[u8; 32],
        browser_hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<OAuthTransaction>, StoreError> {
        // The DELETE is the claim: of any number of concurrent callbacks with one state, only
        // one gets the row back. An expired row stays for the cleanup job.
        let sql = sqlx::AssertSqlSafe(format!(
            "DELETE FROM oauth_transactions WHERE state_hash = $1 AND browser_hash = $2 \
             AND expires_at > $3 RETURNING {TRANSACTION_COLUMNS}"
        ));
        let row = sqlx::query(sql)
            .bind(state_hash.to_vec())
            .bind(browser_hash.to_vec())
            .bind(now.unix_seconds())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(transaction_from_row).transpose()
    }

    async fn delete_expired_oauth_transactions(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_transactions WHERE expires_at <= $1")
            .bind(now.unix_seconds())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn oauth_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthAccount>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM oauth_accounts WHERE issuer = $1 AND subject = $2"
        ));
        let row = sqlx::query(sql)
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn oauth_account_by_id(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<OAuthAccount>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM oauth_accounts WHERE id = $1 AND user_id = $2"
        ));
        let row = sqlx::query(sql)
            .bind(id)
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn oauth_accounts_not_under(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OAuthAccount>, StoreError> {
        // `substr`/`length` rather than LIKE: a key id may contain `_`, a LIKE wildcard.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM oauth_accounts \
             WHERE ((access_token IS NOT NULL AND substr(access_token, 1, length($1)) <> $1) \
                 OR (refresh_token IS NOT NULL AND substr(refresh_token, 1, length($1)) <> $1)) \
               AND id > $2 ORDER BY id LIMIT $3"
        ));
        let rows = sqlx::query(sql)
            .bind(prefix)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn oauth_accounts_for_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<OAuthAccount>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM oauth_accounts WHERE user_id = $1 \
             ORDER BY created_at, id"
        ));
        let rows = sqlx::query(sql)
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn create_user_with_oauth_account(
        &self,
        user: NewUser,
        account: &OAuthAccount,
        audit: &[NewAuditEvent],
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A taken address or a linked (issuer, subject) fails its unique constraint: the `?`
        // drops the transaction, which rolls back, so nothing is written.
        insert_user_query(&user).execute(&mut *tx).await?;
        insert_account_query(account, &user.id)
            .execute(&mut *tx)
            .await?;
        for e in audit {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(new_user_record(user))
    }

    async fn link_oauth_account(
        &self,
        account: &OAuthAccount,
        audit: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_account_query(account, &account.user_id)
            .execute(&mut *tx)
            .await?;
        for e in audit {
            insert_audit_query(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_oauth_login(
        &self,
        id: &str,
        email: Option<&str>,
        tokens: &SealedTokens,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE oauth_accounts SET email = $1, access_token = $2, refresh_token = $3, \
             token_expires_at = $4, scopes = $5, last_used_at = $6 WHERE id = $7",
        )
        .bind(email)
        .bind(tokens.access_token.as_deref())
        .bind(tokens.refresh_token.as_deref())
        .bind(tokens.expires_at.map(Timestamp::unix_seconds))
        .bind(tokens.scopes.as_deref())
        .bind(now.unix_seconds())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn replace_oauth_tokens(
        &self,
        id: &str,
        expected: &SealedTokens,
        tokens: &SealedTokens,
    ) -> Result<bool, StoreError> {
        // One conditional update on all four token columns, NULL-safe (a missing refresh
        // token or expiry compares equal to a missing one). The sealed access token alone
        // would nearly do (each sealing has a random nonce), but not when it is absent.
        let sql = match self.kind {
            DatabaseKind::Postgres => {
                "UPDATE oauth_accounts SET access_token = $1, refresh_token = $2, \
                 token_expires_at = $3, scopes = $4 WHERE id = $5 \
                 AND access_token IS NOT DISTINCT FROM $6 \
                 AND refresh_token IS NOT DISTINCT FROM $7 \
                 AND token_expires_at IS NOT DISTINCT FROM $8 \
                 AND scopes IS NOT DISTINCT FROM $9"
            }
            DatabaseKind::Sqlite => {
                "UPDATE oauth_accounts SET access_token = $1, refresh_token = $2, \
                 token_expires_at = $3, scopes = $4 WHERE id = $5 \
                 AND access_token IS $6 AND refresh_token IS $7 \
                 AND token_expires_at IS $8 AND scopes IS $9"
            }
        };
        let done = sqlx::query(sql)
            .bind(tokens.access_token.as_deref())
            .bind(tokens.refresh_token.as_deref())
            .bind(tokens.expires_at.map(Timestamp::unix_seconds))
            .bind(tokens.scopes.as_deref())
            .bind(id)
            .bind(expected.access_token.as_deref())
            .bind(expected.refresh_token.as_deref())
            .bind(expected.expires_at.map(Timestamp::unix_seconds))
            .bind(expected.scopes.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unlink_oauth_account(
        &self,
        user: &UserId,
        id: &str,
        audit: &NewAuditEvent,
    ) -> Result<Unlink, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialise the user's unlinks on the user row before looking at its sign-in methods:
        // on PostgreSQL a row lock (a second unlink waits here, then sees the first one's
        // commit); on SQLite a write first, which takes the database's write lock.
        let lock = match self.kind {
            DatabaseKind::Postgres => {
                "SELECT password_hash FROM users WHERE id = $1 FOR NO KEY UPDATE"
            }
            DatabaseKind::Sqlite => {
                "UPDATE users SET updated_at = updated_at WHERE id = $1 RETURNING password_hash"
            }
        };
        let row = sqlx::query(lock)
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(Unlink::NotFound);
        };
        let has_password = row.try_get::<Option<String>, _>("password_hash")?.is_some();
        let ids: Vec<String> = sqlx::query("SELECT id FROM oauth_accounts WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        if !ids.iter().any(|a| a == id) {
            tx.rollback().await?;
            return Ok(Unlink::NotFound);
        }
        if !has_password && ids.len() < 2 {
            tx.rollback().await?;
            return Ok(Unlink::LastSignInMethod);
        }
        sqlx::query("DELETE FROM oauth_accounts WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit_query(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Unlink::Done)
    }
}
