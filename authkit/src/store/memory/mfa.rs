//! [`MfaStore`] in memory: the same conditional semantics as SQL, under the store's lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::audit::NewAuditEvent;
use crate::clock::Timestamp;
use crate::ratelimit::{AttemptDecision, LockoutPolicy};
use crate::store::{
    MfaStore, NewTotp, StoreError, StoredBackupCode, TotpRecord, mfa_attempt_decision,
};
use crate::user::UserId;

#[async_trait]
impl MfaStore for MemoryStore {
    async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError> {
        Ok(self.lock().totp.get(user).cloned())
    }

    async fn begin_totp_enrolment(&self, user: &UserId, new: &NewTotp) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if !inner.users.contains_key(user) {
            return Err(StoreError::Conflict);
        }
        if inner.totp.get(user).is_some_and(|t| t.confirmed) {
            return Ok(false);
        }
        inner.totp.insert(
            user.clone(),
            TotpRecord {
                secret: new.secret.clone(),
                algorithm: new.algorithm,
                digits: new.digits,
                period: new.period,
                confirmed: false,
                last_step: None,
                failed_attempts: 0,
                last_failure_at: None,
                created_at: new.created_at,
                confirmed_at: None,
            },
        );
        Ok(true)
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
        let mut inner = self.lock();
        let Some(totp) = inner
            .totp
            .get_mut(user)
            .filter(|t| !t.confirmed && t.secret == secret)
        else {
            return Ok(false);
        };
        totp.confirmed = true;
        totp.confirmed_at = Some(now);
        totp.last_step = Some(step);
        totp.failed_attempts = 0;
        if let Some(u) = inner.users.get_mut(user) {
            u.mfa_enabled = true;
            u.updated_at = now;
        }
        inner.backup_codes.insert(user.clone(), codes.to_vec());
        inner.append_audit(audit);
        Ok(true)
    }

    async fn accept_totp_step(
        &self,
        user: &UserId,
        secret: &str,
        step: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.totp.get_mut(user) {
            Some(t)
                if t.confirmed && t.secret == secret && t.last_step.is_none_or(|l| l < step) =>
            {
                t.last_step = Some(step);
                t.failed_attempts = 0;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn begin_mfa_attempt(
        &self,
        user: &UserId,
        policy: &LockoutPolicy,
        now: Timestamp,
    ) -> Result<AttemptDecision, StoreError> {
        let mut inner = self.lock();
        let Some(t) = inner.totp.get_mut(user) else {
            return Ok(AttemptDecision::Proceed { locks_now: false });
        };
        let decision = mfa_attempt_decision(policy, t.failed_attempts, t.last_failure_at, now);
        if decision.may_proceed() {
            t.failed_attempts = t.failed_attempts.saturating_add(1);
            t.last_failure_at = Some(now);
        }
        Ok(decision)
    }

    async fn clear_mfa_failures(&self, user: &UserId) -> Result<(), StoreError> {
        if let Some(t) = self.lock().totp.get_mut(user) {
            t.failed_attempts = 0;
        }
        Ok(())
    }

    async fn reseal_totp(&self, user: &UserId, old: &str, new: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.totp.get_mut(user) {
            Some(t) if t.secret == old => {
                new.clone_into(&mut t.secret);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn totp_secrets_not_under(
        &self,
        prefix: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<(UserId, String)>, StoreError> {
        let after = after.map_or("", UserId::as_str);
        let inner = self.lock();
        let mut rows: Vec<(UserId, String)> = inner
            .totp
            .iter()
            .filter(|(user, t)| {
                t.confirmed && user.as_str() > after && !t.secret.starts_with(prefix)
            })
            .map(|(user, t)| (user.clone(), t.secret.clone()))
            .collect();
        rows.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows)
    }

    async fn consume_backup_code(
        &self,
        user: &UserId,
        candidates: &[[u8; 32]],
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(codes) = inner.backup_codes.get_mut(user) else {
            return Ok(false);
        };
        let Some(at) = codes.iter().position(|c| candidates.contains(&c.hash)) else {
            return Ok(false);
        };
        codes.swap_remove(at);
        if let Some(t) = inner.totp.get_mut(user) {
            t.failed_attempts = 0;
        }
        inner.append_audit(audit);
        Ok(true)
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[StoredBackupCode],
        _now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if !inner.totp.get(user).is_some_and(|t| t.confirmed) {
            return Ok(false);
        }
        inner.backup_codes.insert(user.clone(), codes.to_vec());
        inner.append_audit(audit);
        Ok(true)
    }

    async fn backup_codes_remaining(&self, user: &UserId) -> Result<u32, StoreError> {
        let n = self.lock().backup_codes.get(user).map_or(0, Vec::len);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn disable_mfa(
        &self,
        user: &UserId,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if !inner.totp.get(user).is_some_and(|t| t.confirmed) {
            return Ok(false);
        }
        inner.totp.remove(user);
        inner.backup_codes.remove(user);
        if let Some(u) = inner.users.get_mut(user) {
            u.mfa_enabled = false;
            u.updated_at = now;
        }
        inner.append_audit(audit);
        Ok(true)
    }
}
