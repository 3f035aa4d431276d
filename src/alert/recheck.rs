//! The guard's own queues. A re-check waits on the standard re-check queue
//! for its delay (FIFO queues have no per-message delay); once due, it joins
//! the FIFO work queue, where it takes its turn with the account's events
//! and sweeps.

use crate::aws::ReadError;
use crate::trigger::work::Recheck;

/// SQS refuses longer delays.
pub const MAX_DELAY_SECS: i64 = 900;

#[derive(Debug, thiserror::Error)]
#[error("message not sent to {queue}: {reason}")]
pub struct NotSent {
    pub queue: String,
    pub reason: String,
}

/// Sends `recheck` to the re-check queue, due `delay_secs` from now
/// (clamped to what SQS allows).
pub async fn schedule(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    recheck: &Recheck,
    delay_secs: i64,
) -> Result<(), NotSent> {
    sqs.send_message()
        .queue_url(queue)
        .delay_seconds(delay_secs.clamp(0, MAX_DELAY_SECS) as i32)
        .message_body(recheck.body())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| not_sent(queue, e))
}

/// Puts a message on the FIFO work queue in `group`. `dedup_id` makes a
/// repeated send (a redelivered re-check) a no-op for SQS's 5-minute
/// deduplication window.
pub async fn enqueue_work(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    group: &str,
    dedup_id: &str,
    body: String,
) -> Result<(), NotSent> {
    sqs.send_message()
        .queue_url(queue)
        .message_group_id(group)
        .message_deduplication_id(dedup_id)
        .message_body(body)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| not_sent(queue, e))
}

fn not_sent<E>(queue: &str, err: E) -> NotSent
where
    ReadError: From<E>,
{
    NotSent {
        queue: queue.to_owned(),
        reason: ReadError::from(err).reason(),
    }
}
