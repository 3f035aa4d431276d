//! Publishing: one SNS message per finding, with the attributes that
//! subscription filter policies use. A message that could not be sent is
//! an error for the whole pass, so Lambda retries it and no alert is lost.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use futures_util::{StreamExt, stream};

use super::deliver::{Channel, Delivered, Outcome};
use super::render::{Alert, sns_message, subject};
use crate::aws::ReadError;
use crate::finding::Finding;

const PUBLISH_CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} alerts could not be published to {topic}: {first_reason}")]
pub struct PublishError {
    pub topic: String,
    pub failed: usize,
    pub total: usize,
    pub first_reason: String,
}

/// Sends every finding as an OPEN page (and to chat), without a ledger.
pub async fn publish(channel: &Channel<'_>, findings: &[Finding]) -> Delivered {
    let outcomes: Vec<Outcome> = stream::iter(findings)
        .map(|finding| async { channel.send(&Alert::open(finding, channel.ctx)).await })
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .collect()
        .await;
    let mut delivered = Delivered::default();
    for outcome in outcomes {
        if let Err(reason) = delivered.count(outcome) {
            delivered.failures.push(reason);
        }
    }
    delivered.opened = delivered.published;
    delivered
}

/// Publishes one alert; the error is the reason it could not be sent.
pub async fn publish_alert(sns: &Client, topic: &str, alert: &Alert<'_>) -> Result<(), String> {
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| e.to_string())
    };
    sns.publish()
        .topic_arn(topic)
        .message_structure("json")
        .subject(subject(alert))
        .message(sns_message(alert))
        .message_attributes("severity", attribute(alert.severity.as_str())?)
        .message_attributes("rule", attribute(alert.rule.as_str())?)
        .message_attributes("status", attribute(alert.status)?)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ReadError::from(e).reason())
}
