//! Publishing: one SNS message per finding, with the attributes that
//! subscription filter policies use. A message that could not be sent is
//! an error for the whole pass, so Lambda retries it and no alert is lost.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use futures_util::{StreamExt, stream};

use super::PassContext;
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

/// Publishes every finding; returns how many were sent.
pub async fn publish(
    sns: &Client,
    topic: &str,
    findings: &[Finding],
    ctx: &PassContext,
) -> Result<usize, PublishError> {
    let results: Vec<Result<(), String>> = stream::iter(findings)
        .map(|finding| publish_one(sns, topic, finding, ctx))
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .collect()
        .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    match failures.first() {
        None => Ok(findings.len()),
        Some(first) => Err(PublishError {
            topic: topic.to_owned(),
            failed: failures.len(),
            total: findings.len(),
            first_reason: first.clone(),
        }),
    }
}

async fn publish_one(
    sns: &Client,
    topic: &str,
    finding: &Finding,
    ctx: &PassContext,
) -> Result<(), String> {
    publish_alert(sns, topic, &Alert::open(finding, ctx)).await
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
