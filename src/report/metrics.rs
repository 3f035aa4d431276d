//! The pass's metrics as one CloudWatch Embedded Metric Format document,
//! written to stdout as its own line: CloudWatch Logs turns it into
//! metrics in the `ConnectSlrGuard` namespace. No dimensions, so the cost
//! is a fixed number of custom metrics (README).
//!
//! Written with serde rather than `metrics_cloudwatch_embedded`: that crate
//! installs a process-wide `metrics` recorder and flushes per invocation,
//! while a pass's figures are already in its report.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::PassReport;
use crate::aws::Service;
use crate::finding::Severity;
use crate::trigger::TriggerKind;

pub const NAMESPACE: &str = "ConnectSlrGuard";

/// The document for `report`, stamped `timestamp_ms`.
pub fn emf(report: &PassReport, timestamp_ms: i64) -> Value {
    let mut values: Vec<(&str, f64, &str)> = Vec::new();
    for severity in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ] {
        let count = report
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .count();
        values.push((findings_metric(severity), count as f64, "Count"));
    }
    let ledger = report.ledger.unwrap_or_default();
    let incomplete = report.checks_incomplete() as f64;
    values.extend([
        ("NewFindings", report.opened as f64, "Count"),
        ("ResolvedFindings", ledger.resolved as f64, "Count"),
        ("MutedFindings", ledger.muted as f64, "Count"),
        ("ChecksIncomplete", incomplete, "Count"),
        ("InstancesChecked", report.instances_checked as f64, "Count"),
        ("AlertsPublished", report.alerts_published as f64, "Count"),
        ("ThrottledRetries", report.calls.throttled as f64, "Count"),
        (
            "PassDuration",
            report.duration.as_secs_f64() * 1000.0,
            "Milliseconds",
        ),
    ]);
    if report.context.trigger.kind == TriggerKind::Schedule {
        values.push(("SweepChecksIncomplete", incomplete, "Count"));
    }
    for service in Service::ALL {
        values.push((service.metric(), report.calls.of(service) as f64, "Count"));
    }
    let mut document = Map::new();
    let definitions: Vec<Value> = values
        .iter()
        .map(|(name, _, unit)| json!({ "Name": name, "Unit": unit }))
        .collect();
    document.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value, _) in values {
        document.insert(name.to_owned(), json!(value));
    }
    // Context for Logs Insights, not dimensions: they cost nothing.
    document.insert(
        "trigger".to_owned(),
        json!(report.context.trigger.kind.as_str()),
    );
    document.insert("account".to_owned(), json!(report.context.account));
    document.insert("region".to_owned(), json!(report.context.region));
    Value::Object(document)
}

fn findings_metric(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "FindingsCritical",
        Severity::High => "FindingsHigh",
        Severity::Medium => "FindingsMedium",
        Severity::Low => "FindingsLow",
    }
}

/// Writes the document as one line on stdout, apart from the log
/// formatter (which would wrap it and hide it from CloudWatch).
pub fn write_emf(report: &PassReport, timestamp_ms: i64) {
    let mut line = emf(report, timestamp_ms).to_string();
    line.push('\n');
    // A closed stdout loses metrics, never the pass.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}
