//! What job rows hold.

use serde::{Deserialize, Serialize};

use crate::mail::MailKind;
use crate::rng::RandomSource;

/// Version of [`MailPayload`].
pub(crate) const MAIL_PAYLOAD_VERSION: u8 = 1;

/// A queued mail: the whole message sealed, plus its non-secret kind (for logs and metrics
/// without opening it).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MailPayload {
    /// Format version.
    pub(crate) v: u8,
    /// What the mail is about.
    pub(crate) kind: MailKind,
    /// `Sealer` envelope of the JSON-encoded `MailMessage`.
    pub(crate) sealed: String,
}

/// Associated data of a sealed mail: the purpose, versioned, and the kind, so that neither
/// a payload from another purpose nor a relabelled kind opens.
pub(crate) fn mail_aad(kind: MailKind) -> Vec<u8> {
    format!("authkit-mail-v1:{}", kind.as_str()).into_bytes()
}

/// A periodic maintenance job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MaintenanceTask {
    /// Deletes expired sessions and account tokens, and old finished jobs.
    Cleanup,
    /// Archives and deletes audit events older than the retention.
    AuditRetention,
    /// Re-seals TOTP secrets and OAuth tokens sealed under an older key of the encryption ring.
    Reseal,
}

impl MaintenanceTask {
    /// The stable name (logs, idempotency keys).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cleanup => "cleanup",
            Self::AuditRetention => "audit_retention",
            Self::Reseal => "reseal",
        }
    }
}

/// A fresh job id: 128 random bits written as a ULID, the id form apalis's storages parse.
/// (No time component: ids only break ties after priority and due time.)
pub(crate) fn new_job_id(rng: &dyn RandomSource) -> Option<String> {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut bytes = [0u8; 16];
    rng.try_fill(&mut bytes).ok()?;
    let value = u128::from_be_bytes(bytes);
    // 26 characters of 5 bits = 130 bits: the first character carries the top 3 bits.
    Some(
        (0..26u32)
            .map(|i| {
                let shift = 125 - 5 * i;
                let index = usize::try_from((value >> shift) & 31).unwrap_or(0);
                char::from(CROCKFORD.get(index).copied().unwrap_or(b'0'))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;
    use crate::rng::SeededRandom;

    #[test]
    fn job_ids_are_ulids_that_apalis_accepts() {
        let rng = SeededRandom::new(5);
        for _ in 0..100 {
            let id = new_job_id(&rng).unwrap();
            assert_eq!(id.len(), 26);
            let parsed = apalis::prelude::TaskId::from_str(&id).unwrap();
            assert_eq!(parsed.to_string(), id);
        }
        assert_ne!(new_job_id(&rng), new_job_id(&rng));
    }

    #[test]
    fn maintenance_tasks_have_stable_json() {
        assert_eq!(
            serde_json::to_string(&MaintenanceTask::Cleanup).unwrap(),
            r#"{"task":"cleanup"}"#
        );
        assert_eq!(
            serde_json::from_str::<MaintenanceTask>(r#"{"task":"audit_retention"}"#).unwrap(),
            MaintenanceTask::AuditRetention
        );
    }
}
