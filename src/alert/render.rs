//! Rendering: the JSON document machines subscribe to, the text people
//! read, and the SNS envelope that carries both (`MessageStructure=json`).

use serde::Serialize;
use serde_json::json;

use super::PassContext;
use crate::finding::{Finding, RuleId, Severity};
use crate::trigger::Trigger;

pub const SCHEMA: &str = "connect-slr-guard/alert/v1";
/// SNS subjects must be under 100 ASCII characters.
const MAX_SUBJECT_CHARS: usize = 99;

/// One alert, in the `connect-slr-guard/alert/v1` shape.
#[derive(Debug, Clone, Serialize)]
pub struct Alert<'a> {
    pub schema: &'static str,
    pub status: &'static str,
    pub rule: RuleId,
    pub severity: Severity,
    pub account: &'a str,
    pub region: &'a str,
    pub instance_arn: Option<&'a str>,
    pub resource_arn: &'a str,
    pub fingerprint: String,
    pub summary: &'a str,
    pub details: &'a serde_json::Value,
    pub remediation: &'a str,
    pub trigger: &'a Trigger,
    pub observed_at: &'a str,
    /// Under a ledger: when the drift was first seen (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// On a RESOLVED: `no longer found` or `instance deleted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_reason: Option<&'static str>,
}

/// An alert's place in the drift's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Reminder,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::Reminder => "REMINDER",
            Status::Resolved => "RESOLVED",
        }
    }
}

impl<'a> Alert<'a> {
    pub fn open(finding: &'a Finding, ctx: &'a PassContext) -> Self {
        Alert {
            schema: SCHEMA,
            status: Status::Open.as_str(),
            rule: finding.rule,
            severity: finding.severity,
            account: &ctx.account,
            region: &ctx.region,
            instance_arn: finding.instance_arn.as_deref(),
            resource_arn: &finding.resource_arn,
            fingerprint: finding.fingerprint(&ctx.account, &ctx.region),
            summary: &finding.summary,
            details: &finding.details,
            remediation: &finding.remediation,
            trigger: &ctx.trigger,
            observed_at: &ctx.observed_at,
            first_seen: None,
            resolved_reason: None,
        }
    }

    /// The same alert at another point of its lifecycle, under a ledger.
    pub fn lifecycle(
        mut self,
        status: Status,
        first_seen: String,
        resolved_reason: Option<&'static str>,
    ) -> Self {
        self.status = status.as_str();
        self.first_seen = Some(first_seen);
        self.resolved_reason = resolved_reason;
        self
    }
}

/// `[SEVERITY] RULE: what`, printable ASCII, under 100 characters.
pub fn subject(alert: &Alert) -> String {
    let target = alert
        .instance_arn
        .unwrap_or(alert.resource_arn)
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let full = format!("[{}] {}: {}", alert.severity, alert.rule, target);
    full.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SUBJECT_CHARS)
        .collect()
}

/// The text on-call reads in email.
pub fn text(alert: &Alert) -> String {
    let trigger = describe_trigger(alert.trigger);
    let details = serde_json::to_string_pretty(alert.details).unwrap_or_default();
    format!(
        "[{severity}] {rule} ({status})\n\
         {summary}\n\n\
         Account:   {account} ({region})\n\
         Instance:  {instance}\n\
         Resource:  {resource}\n\
         Triggered: {trigger}\n\
         Observed:  {observed}{since}{resolved}\n\n\
         Fix:\n  {fix}\n\n\
         Details:\n{details}\n\n\
         Fingerprint: {fingerprint}\n",
        severity = alert.severity,
        rule = alert.rule,
        status = alert.status,
        summary = alert.summary,
        account = alert.account,
        region = alert.region,
        instance = alert.instance_arn.unwrap_or("-"),
        resource = alert.resource_arn,
        observed = alert.observed_at,
        since = alert
            .first_seen
            .as_deref()
            .map(|t| format!("\nFirst seen: {t}"))
            .unwrap_or_default(),
        resolved = alert
            .resolved_reason
            .map(|r| format!("\nResolved:  {r}"))
            .unwrap_or_default(),
        fix = alert.remediation,
        fingerprint = alert.fingerprint,
    )
}

fn describe_trigger(trigger: &Trigger) -> String {
    let mut parts = vec![trigger.kind.as_str().to_owned()];
    if let Some(name) = &trigger.event_name {
        parts.push(name.clone());
    }
    if let Some(actor) = &trigger.actor {
        parts.push(format!("by {actor}"));
    }
    if let Some(time) = &trigger.event_time {
        parts.push(format!("at {time}"));
    }
    if let Some(id) = &trigger.event_id {
        parts.push(format!("(event {id})"));
    }
    parts.join(" ")
}

/// The SNS `Message` for `MessageStructure=json`: text for people, the
/// JSON document for machine subscribers.
pub fn sns_message(alert: &Alert) -> String {
    let readable = text(alert);
    let document = serde_json::to_string(alert).unwrap_or_default();
    json!({
        "default": readable,
        "email": readable,
        "email-json": document,
        "sqs": document,
        "lambda": document,
        "https": document,
        "http": document,
    })
    .to_string()
}
