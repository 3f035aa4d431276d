//! An alert as an Amazon Q Developer in chat applications custom
//! notification (`CHAT_TOPIC_ARN`): the SNS message a Slack or Microsoft
//! Teams channel configuration renders. A drift's OPEN, REMINDERs and
//! RESOLVED share a `threadId` (the fingerprint), so they form one thread.

use std::collections::BTreeMap;

use serde::Serialize;

use super::render::{Alert, Status};
use crate::aws::ReadError;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatNotification {
    pub version: &'static str,
    pub source: &'static str,
    /// Unique per message: the fingerprint, the status and the pass's time.
    pub id: String,
    pub content: ChatContent,
    pub metadata: ChatMetadata,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatContent {
    pub text_type: &'static str,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMetadata {
    pub thread_id: String,
    pub summary: String,
    pub event_type: &'static str,
    pub related_resources: Vec<String>,
    pub additional_context: BTreeMap<&'static str, String>,
}

impl ChatNotification {
    pub fn from_alert(alert: &Alert) -> Self {
        let resolved = alert.status == Status::Resolved.as_str();
        let icon = match (resolved, alert.severity.as_str()) {
            (true, _) => ":white_check_mark:",
            (false, "CRITICAL") => ":rotating_light:",
            _ => ":warning:",
        };
        let title = format!(
            "{icon} [{}] {} ({})",
            alert.severity, alert.rule, alert.status
        );
        let place = format!(
            "Account `{}` ({}), instance `{}`, resource `{}`",
            alert.account,
            alert.region,
            alert.instance_arn.unwrap_or("-"),
            alert.resource_arn
        );
        let next_steps = if resolved {
            Vec::new()
        } else {
            vec![format!("Fix: `{}`", alert.remediation)]
        };
        let mut related_resources = vec![alert.resource_arn.to_owned()];
        related_resources.extend(alert.instance_arn.map(str::to_owned));
        ChatNotification {
            version: "1.0",
            source: "custom",
            id: format!(
                "{}-{}-{}",
                alert.fingerprint, alert.status, alert.observed_at
            ),
            content: ChatContent {
                text_type: "client-markdown",
                title,
                description: format!("{}\n{place}", alert.summary),
                next_steps,
                keywords: vec![
                    alert.rule.as_str().to_owned(),
                    alert.severity.as_str().to_owned(),
                    alert.account.to_owned(),
                ],
            },
            metadata: ChatMetadata {
                thread_id: alert.fingerprint.clone(),
                summary: format!("[{}] {} {}", alert.severity, alert.rule, alert.status),
                event_type: alert.status,
                related_resources,
                additional_context: additional_context(alert),
            },
        }
    }
}

fn additional_context(alert: &Alert) -> BTreeMap<&'static str, String> {
    let mut context = BTreeMap::from([
        ("account", alert.account.to_owned()),
        ("region", alert.region.to_owned()),
        ("fingerprint", alert.fingerprint.clone()),
        ("observed_at", alert.observed_at.to_owned()),
    ]);
    if let Some(first_seen) = &alert.first_seen {
        context.insert("first_seen", first_seen.clone());
    }
    if let Some(reason) = alert.resolved_reason {
        context.insert("resolved_reason", reason.to_owned());
    }
    context
}

/// Publishes `notification` to the chat topic; the error is why it was not sent.
pub async fn publish(
    sns: &aws_sdk_sns::Client,
    topic: &str,
    notification: &ChatNotification,
) -> Result<(), String> {
    let message = serde_json::to_string(notification).map_err(|e| e.to_string())?;
    sns.publish()
        .topic_arn(topic)
        .message(message)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ReadError::from(e).reason())
}
