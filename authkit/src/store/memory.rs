mod mfa;
mod oauth;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    AccountToken, AuditStore, NewAccountToken, NewUser, Redeemed, Rotation, RotationGuard,
    SessionStore, Store, StoreError, TokenEffect, TokenPurpose, TokenStore, UserStore,
};
use crate::audit::{AuditEvent, NewAuditEvent};
use crate::clock::Timestamp;
use crate::session::{SessionIdHash, SessionRecord};
use crate::user::{Email, UserId, UserRecord};

/// Everything in process memory: for tests, examples and demos. Nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<UserId, UserRecord>,
    by_email: HashMap<Email, UserId>,
    sessions: HashMap<SessionIdHash, SessionRecord>,
    by_user: HashMap<UserId, HashSet<SessionIdHash>>,
    tokens: HashMap<[u8; 32], StoredToken>,
    audit: Vec<AuditEvent>,
    next_audit_id: i64,
    totp: HashMap<UserId, super::TotpRecord>,
    backup_codes: HashMap<UserId, Vec<super::StoredBackupCode>>,
    oauth_transactions: HashMap<[u8; 32], super::OAuthTransaction>,
    oauth_accounts: HashMap<String, super::OAuthAccount>,
}

/// A token row; `Debug` comes from [`AccountToken`]'s, which leaves the password hash out.
#[derive(Debug, Clone)]
struct StoredToken {
    row: AccountToken,
    expires_at: Timestamp,
}

impl Inner {
    /// Inserts a new user (no MFA yet); [`StoreError::Conflict`] when the address or id is
    /// taken.
    fn insert_user(&mut self, user: NewUser) -> Result<UserRecord, StoreError> {
        if self.by_email.contains_key(&user.email) || self.users.contains_key(&user.id) {
            return Err(StoreError::Conflict);
        }
        let record = UserRecord {
            id: user.id.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            password_hash: user.password_hash,
            mfa_enabled: false,
            created_at: user.now,
            updated_at: user.now,
        };
        self.by_email.insert(user.email, user.id.clone());
        self.users.insert(user.id, record.clone());
        Ok(record)
    }

    fn append_audit(&mut self, e: &NewAuditEvent) {
        self.next_audit_id += 1;
        self.audit.push(AuditEvent {
            id: self.next_audit_id,
            event_type: e.event_type,
            user_id: e.user_id.clone(),
            at: e.at,
            ip: e.actor.ip.clone(),
            user_agent: e.actor.user_agent.clone(),
            details: e.details.clone(),
        });
    }

    fn insert_session(&mut self, s: &SessionRecord) -> Result<(), StoreError> {
        if self.sessions.contains_key(&s.id_hash) {
            return Err(StoreError::Conflict);
        }
        self.by_user
            .entry(s.user_id.clone())
            .or_default()
            .insert(s.id_hash);
        self.sessions.insert(s.id_hash, s.clone());
        Ok(())
    }

    fn remove_session(&mut self, id: &SessionIdHash) -> Option<SessionRecord> {
        let removed = self.sessions.remove(id)?;
        if let Some(set) = self.by_user.get_mut(&removed.user_id) {
            set.remove(id);
        }
        Some(removed)
    }

    fn remove_user_sessions_except(
        &mut self,
        user: &UserId,
        keep: Option<&SessionIdHash>,
    ) -> Vec<SessionIdHash> {
        let ids: Vec<SessionIdHash> = self
            .by_user
            .get(user)
            .map(|set| set.iter().filter(|id| Some(*id) != keep).copied().collect())
            .unwrap_or_default();
        for id in &ids {
            self.remove_session(id);
        }
        ids
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written in a way that
        // matters more than refusing every later request would.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        self.lock().insert_user(user)
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .by_email
            .get(email)
            .and_then(|id| inner.users.get(id))
            .cloned())
    }

    async fn user_by_id(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &str,
        phc: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match self.lock().users.get_mut(id) {
            Some(u) if u.password_hash.as_deref() == Some(expected) => {
                u.password_hash = Some(phc.to_owned());
                u.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.lock().insert_session(session)
    }

    async fn rotate_session(
        &self,
        new: &SessionRecord,
        guard: RotationGuard<'_>,
    ) -> Result<Rotation, StoreError> {
        let mut inner = self.lock();
        if inner.sessions.contains_key(&new.id_hash) {
            return Err(StoreError::Conflict);
        }
        if guard.require_replaced
            && !guard
                .replace
                .is_some_and(|old| inner.sessions.contains_key(old))
        {
            return Ok(Rotation::Revoked);
        }
        if let Some(expected) = guard.password_hash {
            let current = inner
                .users
                .get(&new.user_id)
                .and_then(|u| u.password_hash.as_deref());
            if current != Some(expected) {
                return Ok(Rotation::CredentialsChanged);
            }
        }
        if let Some(old) = guard.replace {
            inner.remove_session(old);
        }
        inner.insert_session(new)?;
        for e in guard.audit {
            inner.append_audit(e);
        }
        Ok(Rotation::Done)
    }

    async fn session(&self, id: &SessionIdHash) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.lock().sessions.get(id).cloned())
    }

    async fn touch_session(&self, id: &SessionIdHash, seen: Timestamp) -> Result<(), StoreError> {
        if let Some(s) = self.lock().sessions.get_mut(id) {
            s.last_seen_at = s.last_seen_at.max(seen);
        }
        Ok(())
    }

    async fn delete_session(
        &self,
        id: &SessionIdHash,
        audit: Option<&NewAuditEvent>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let removed = inner.remove_session(id).is_some();
        if let (true, Some(e)) = (removed, audit) {
            inner.append_audit(e);
        }
        Ok(removed)
    }

    async fn sessions_for_user(&self, user: &UserId) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = self.lock();
        let mut list: Vec<SessionRecord> = inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.sessions.get(id).cloned())
            .collect();
        list.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.handle.cmp(&b.handle))
        });
        Ok(list)
    }

    async fn delete_session_by_handle(
        &self,
        user: &UserId,
        handle: &str,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Option<SessionIdHash>, StoreError> {
        let mut inner = self.lock();
        let found = inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .find(|id| inner.sessions.get(*id).is_some_and(|s| s.handle == handle))
            .copied();
        if let Some(id) = &found {
            inner.remove_session(id);
            if let Some(e) = audit {
                inner.append_audit(e);
            }
        }
        Ok(found)
    }

    async fn delete_user_sessions_except(
        &self,
        user: &UserId,
        keep: Option<&SessionIdHash>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Vec<SessionIdHash>, StoreError> {
        let mut inner = self.lock();
        let ended = inner.remove_user_sessions_except(user, keep);
        if let (false, Some(e)) = (ended.is_empty(), audit) {
            inner.append_audit(e);
        }
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
        let mut inner = self.lock();
        match inner.users.get_mut(user) {
            Some(u) if u.password_hash.as_deref() == Some(expected) => {
                u.password_hash = Some(phc.to_owned());
                u.updated_at = now;
            }
            _ => return Ok(None),
        }
        let ended = inner.remove_user_sessions_except(user, None);
        inner.tokens.retain(|_, t| {
            !(t.row.purpose == TokenPurpose::ResetPassword && t.row.user_id.as_ref() == Some(user))
        });
        if let Some(session) = session {
            inner.insert_session(session)?;
        }
        if let Some(e) = audit {
            inner.append_audit(e);
        }
        Ok(Some(ended))
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let expired: Vec<SessionIdHash> = inner
            .sessions
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.id_hash)
            .collect();
        for id in &expired {
            inner.remove_session(id);
        }
        Ok(u64::try_from(expired.len()).unwrap_or(u64::MAX))
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert_token(&self, t: &NewAccountToken) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.tokens.contains_key(&t.token_hash) {
            return Err(StoreError::Conflict);
        }
        inner.tokens.insert(
            t.token_hash,
            StoredToken {
                row: AccountToken {
                    purpose: t.purpose,
                    user_id: t.user_id.clone(),
                    email: t.email.clone(),
                    password_hash: t.password_hash.clone(),
                    created_at: t.created_at,
                },
                expires_at: t.expires_at,
            },
        );
        Ok(())
    }

    async fn peek_token(
        &self,
        token_hash: &[u8; 32],
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<Option<AccountToken>, StoreError> {
        Ok(self
            .lock()
            .tokens
            .get(token_hash)
            .filter(|t| t.row.purpose == purpose && now < t.expires_at)
            .map(|t| t.row.clone()))
    }

    async fn redeem_token(
        &self,
        token_hash: &[u8; 32],
        purpose: TokenPurpose,
        now: Timestamp,
        effect: TokenEffect,
        mut audit: NewAuditEvent,
    ) -> Result<Option<Redeemed>, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner
            .tokens
            .get(token_hash)
            .filter(|t| t.row.purpose == purpose && now < t.expires_at)
            .cloned()
        else {
            return Ok(None);
        };
        let token = stored.row;
        let mut revoked_sessions = Vec::new();
        let user = match effect {
            TokenEffect::CreateUser(new) => {
                let email = new.email.clone();
                let record = inner.insert_user(new)?;
                inner.tokens.retain(|_, t| {
                    !(t.row.purpose == TokenPurpose::Registration && t.row.email == email)
                });
                record
            }
            TokenEffect::VerifyEmail | TokenEffect::ResetPassword { .. } => {
                let Some(id) = token.user_id.clone() else {
                    return Ok(None);
                };
                let Some(user) = inner.users.get_mut(&id) else {
                    return Ok(None);
                };
                let first_proof = !user.email_verified;
                user.email_verified = true;
                user.updated_at = now;
                if let TokenEffect::ResetPassword { password_hash } = effect {
                    if first_proof {
                        // See `SqlStore`: the address's owner claims an account someone else
                        // may have set up; the provider accounts they linked go.
                        inner.oauth_accounts.retain(|_, a| a.user_id != id);
                        inner
                            .oauth_transactions
                            .retain(|_, t| t.link.as_ref().is_none_or(|l| l.user_id != id));
                    }
                    let Some(user) = inner.users.get_mut(&id) else {
                        return Ok(None);
                    };
                    user.password_hash = Some(password_hash);
                    let user = user.clone();
                    revoked_sessions = inner.remove_user_sessions_except(&id, None);
                    inner.tokens.retain(|_, t| {
                        !(t.row.purpose == TokenPurpose::ResetPassword
                            && t.row.user_id.as_ref() == Some(&id))
                    });
                    user
                } else {
                    user.clone()
                }
            }
        };
        inner.tokens.remove(token_hash);
        audit.user_id = Some(user.id.clone());
        inner.append_audit(&audit);
        Ok(Some(Redeemed {
            token,
            user,
            revoked_sessions,
        }))
    }

    async fn delete_expired_tokens(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|_, t| now < t.expires_at);
        Ok(u64::try_from(before - inner.tokens.len()).unwrap_or(u64::MAX))
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        self.lock().append_audit(event);
        Ok(())
    }

    async fn audit_for_user(
        &self,
        user: &UserId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .audit
            .iter()
            .rev()
            .filter(|e| e.user_id.as_ref() == Some(user) && before.is_none_or(|b| e.id < b))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn audit_older_than(
        &self,
        cutoff: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .audit
            .iter()
            .filter(|e| e.at < cutoff && e.id > after)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn delete_audit_up_to(&self, cutoff: Timestamp, up_to: i64) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.audit.len();
        inner.audit.retain(|e| !(e.at < cutoff && e.id <= up_to));
        Ok(u64::try_from(before - inner.audit.len()).unwrap_or(u64::MAX))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
