//! [`OAuthStore`] in memory: the same single-use and conditional semantics as SQL, under the
//! store's lock.

use async_trait::async_trait;

use super::{Inner, MemoryStore};
use crate::audit::NewAuditEvent;
use crate::clock::Timestamp;
use crate::store::{
    NewUser, OAuthAccount, OAuthStore, OAuthTransaction, SealedTokens, StoreError, Unlink,
};
use crate::user::{UserId, UserRecord};

impl Inner {
    /// Whether an account with this public id or this `(issuer, subject)` exists: the two
    /// unique keys of the SQL table.
    fn oauth_account_taken(&self, account: &OAuthAccount) -> bool {
        self.oauth_accounts.contains_key(&account.id)
            || self
                .oauth_accounts
                .values()
                .any(|a| a.issuer == account.issuer && a.subject == account.subject)
    }
}

#[async_trait]
impl OAuthStore for MemoryStore {
    async fn insert_oauth_transaction(&self, tx: &OAuthTransaction) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.oauth_transactions.contains_key(&tx.state_hash) {
            return Err(StoreError::Conflict);
        }
        inner.oauth_transactions.insert(tx.state_hash, tx.clone());
        Ok(())
    }

    async fn take_oauth_transaction(
        &self,
        state_hash: &[u8; 32],
        browser_hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<OAuthTransaction>, StoreError> {
        let mut inner = self.lock();
        // An expired transaction stays for the cleanup job, as in SQL.
        if inner
            .oauth_transactions
            .get(state_hash)
            .is_none_or(|t| now >= t.expires_at || t.browser_hash != *browser_hash)
        {
            return Ok(None);
        }
        Ok(inner.oauth_transactions.remove(state_hash))
    }

    async fn delete_expired_oauth_transactions(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.oauth_transactions.len();
        inner.oauth_transactions.retain(|_, t| now < t.expires_at);
        Ok(u64::try_from(before - inner.oauth_transactions.len()).unwrap_or(u64::MAX))
    }

    async fn oauth_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthAccount>, StoreError> {
        Ok(self
            .lock()
            .oauth_accounts
            .values()
            .find(|a| a.issuer == issuer && a.subject == subject)
            .cloned())
    }

    async fn oauth_account_by_id(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<OAuthAccount>, StoreError> {
        Ok(self
            .lock()
            .oauth_accounts
            .get(id)
            .filter(|a| &a.user_id == user)
            .cloned())
    }

    async fn oauth_accounts_not_under(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OAuthAccount>, StoreError> {
        let after = after.unwrap_or("");
        let stale = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.starts_with(prefix));
        let mut list: Vec<OAuthAccount> = self
            .lock()
            .oauth_accounts
            .values()
            .filter(|a| a.id.as_str() > after)
            .filter(|a| stale(&a.tokens.access_token) || stale(&a.tokens.refresh_token))
            .cloned()
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(list)
    }

    async fn oauth_accounts_for_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<OAuthAccount>, StoreError> {
        let mut list: Vec<OAuthAccount> = self
            .lock()
            .oauth_accounts
            .values()
            .filter(|a| &a.user_id == user)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(list)
    }

    async fn create_user_with_oauth_account(
        &self,
        user: NewUser,
        account: &OAuthAccount,
        audit: &[NewAuditEvent],
    ) -> Result<UserRecord, StoreError> {
        let mut inner = self.lock();
        if inner.oauth_account_taken(account) {
            return Err(StoreError::Conflict);
        }
        let record = inner.insert_user(user)?;
        let mut account = account.clone();
        account.user_id = record.id.clone();
        inner.oauth_accounts.insert(account.id.clone(), account);
        for e in audit {
            inner.append_audit(e);
        }
        Ok(record)
    }

    async fn link_oauth_account(
        &self,
        account: &OAuthAccount,
        audit: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // A missing user is a foreign-key failure in SQL; here, like the MFA store, a refusal.
        if inner.oauth_account_taken(account) || !inner.users.contains_key(&account.user_id) {
            return Err(StoreError::Conflict);
        }
        inner
            .oauth_accounts
            .insert(account.id.clone(), account.clone());
        for e in audit {
            inner.append_audit(e);
        }
        Ok(())
    }

    async fn record_oauth_login(
        &self,
        id: &str,
        email: Option<&str>,
        tokens: &SealedTokens,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(a) = self.lock().oauth_accounts.get_mut(id) {
            a.email = email.map(str::to_owned);
            a.tokens = tokens.clone();
            a.last_used_at = Some(now);
        }
        Ok(())
    }

    async fn replace_oauth_tokens(
        &self,
        id: &str,
        expected: &SealedTokens,
        tokens: &SealedTokens,
    ) -> Result<bool, StoreError> {
        match self.lock().oauth_accounts.get_mut(id) {
            Some(a) if a.tokens == *expected => {
                a.tokens = tokens.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn unlink_oauth_account(
        &self,
        user: &UserId,
        id: &str,
        audit: &NewAuditEvent,
    ) -> Result<Unlink, StoreError> {
        let mut inner = self.lock();
        let Some(has_password) = inner.users.get(user).map(|u| u.password_hash.is_some()) else {
            return Ok(Unlink::NotFound);
        };
        if inner
            .oauth_accounts
            .get(id)
            .is_none_or(|a| &a.user_id != user)
        {
            return Ok(Unlink::NotFound);
        }
        let linked = inner
            .oauth_accounts
            .values()
            .filter(|a| &a.user_id == user)
            .count();
        if !has_password && linked < 2 {
            return Ok(Unlink::LastSignInMethod);
        }
        inner.oauth_accounts.remove(id);
        inner.append_audit(audit);
        Ok(Unlink::Done)
    }
}
