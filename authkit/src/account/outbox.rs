//! The outbox authkit ships: mails sealed into the durable job queue.

use std::sync::Arc;

use async_trait::async_trait;

use super::{MailOutbox, OutboxError};
use crate::crypto::Sealer;
use crate::jobs::JobQueue;
use crate::mail::MailMessage;
use crate::rng::RandomSource;

/// Queues mails in a [`JobQueue`], sealed with the encryption key ring so that the queue
/// table never holds a single-use link in clear text; the job workers deliver them.
#[derive(Debug, Clone)]
pub struct QueuedOutbox {
    queue: JobQueue,
    sealer: Sealer,
    rng: Arc<dyn RandomSource>,
}

impl QueuedOutbox {
    /// An outbox over `queue`, sealing with `sealer` (workers must open with the same ring).
    pub fn new(queue: JobQueue, sealer: Sealer, rng: Arc<dyn RandomSource>) -> Self {
        Self { queue, sealer, rng }
    }
}

#[async_trait]
impl MailOutbox for QueuedOutbox {
    async fn enqueue(&self, message: MailMessage) -> Result<(), OutboxError> {
        self.queue
            .enqueue_mail(&message, &self.sealer, self.rng.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| OutboxError(e.to_string()))
    }
}
