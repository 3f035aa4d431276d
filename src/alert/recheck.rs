//! Delayed re-checks through SQS: the guard sends itself the event that
//! triggered a pass, to run it again once what it saw has had time to
//! settle (a KMS grant change) or to finish (an SLR deletion task).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::ReadError;

pub const SCHEMA: &str = "connect-slr-guard/recheck/v1";
/// SQS refuses longer delays.
pub const MAX_DELAY_SECS: i64 = 900;
/// Re-checks of one event, after which the next sweep takes over.
pub const MAX_ATTEMPTS: u32 = 3;

/// The message body: the original EventBridge event and how many re-checks
/// came before this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recheck {
    pub schema: String,
    pub attempt: u32,
    pub event: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum RecheckError {
    #[error("not a re-check message: {0}")]
    Malformed(String),
    #[error("re-check not scheduled on {queue}: {reason}")]
    NotSent { queue: String, reason: String },
}

impl Recheck {
    pub fn new(event: Value, attempt: u32) -> Self {
        Recheck {
            schema: SCHEMA.to_owned(),
            attempt,
            event,
        }
    }

    pub fn parse(body: &str) -> Result<Self, RecheckError> {
        let recheck: Recheck =
            serde_json::from_str(body).map_err(|e| RecheckError::Malformed(e.to_string()))?;
        if recheck.schema != SCHEMA {
            return Err(RecheckError::Malformed(format!(
                "schema {:?}, expected {SCHEMA}",
                recheck.schema
            )));
        }
        Ok(recheck)
    }

    /// Sends the next attempt, `delay_secs` from now (clamped to what SQS
    /// allows).
    pub async fn schedule(
        &self,
        sqs: &aws_sdk_sqs::Client,
        queue: &str,
        delay_secs: i64,
    ) -> Result<(), RecheckError> {
        let body =
            serde_json::to_string(self).map_err(|e| RecheckError::Malformed(e.to_string()))?;
        sqs.send_message()
            .queue_url(queue)
            .delay_seconds(delay_secs.clamp(0, MAX_DELAY_SECS) as i32)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| RecheckError::NotSent {
                queue: queue.to_owned(),
                reason: ReadError::from(e).reason(),
            })
    }
}
