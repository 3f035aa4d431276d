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

/// One message for the FIFO work queue.
pub struct Queued {
    pub group: String,
    pub dedup_id: String,
    pub body: String,
}

/// Puts `messages` on the FIFO work queue, ten per call (SQS's batch
/// limit). Each batch entry SQS refuses is an error naming why.
pub async fn enqueue_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    messages: &[Queued],
) -> Result<(), NotSent> {
    for batch in messages.chunks(10) {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(n, m)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_group_id(&m.group)
                    .message_deduplication_id(&m.dedup_id)
                    .message_body(&m.body)
                    .build()
                    .map_err(|e| NotSent {
                        queue: queue.to_owned(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| not_sent(queue, e))?;
        if let Some(failed) = output.failed().first() {
            return Err(NotSent {
                queue: queue.to_owned(),
                reason: format!(
                    "{} of {} messages refused: {}: {}",
                    output.failed().len(),
                    batch.len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                ),
            });
        }
    }
    Ok(())
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
