//! The report as SARIF 2.1.0, for CI pipelines that gate on findings:
//! `rules` is the catalogue, `results` the findings, each with its fix.
//! A result's location is the AWS resource's ARN: there is no source file.

use serde_json::{Value, json};

use super::PassReport;
use crate::finding::{RuleId, Severity};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

pub fn sarif(report: &PassReport) -> Value {
    let rules: Vec<Value> = RuleId::ALL
        .iter()
        .map(|rule| rule_descriptor(*rule))
        .collect();
    let results: Vec<Value> = report
        .alerts()
        .iter()
        .map(|alert| {
            json!({
                "ruleId": alert.rule.as_str(),
                "ruleIndex": rule_index(alert.rule),
                "level": level(alert.severity),
                "message": { "text": format!("{}\nFix: {}", alert.summary, alert.remediation) },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": alert.resource_arn } },
                    "logicalLocations": [{
                        "fullyQualifiedName": alert.resource_arn,
                        "kind": "resource",
                    }],
                }],
                "partialFingerprints": { "connectSlrGuard/v1": alert.fingerprint },
                "properties": {
                    "severity": alert.severity.as_str(),
                    "account": alert.account,
                    "region": alert.region,
                    "instance_arn": alert.instance_arn,
                    "fix": alert.remediation,
                    "details": alert.details,
                },
            })
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "connect-slr-guard",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            } },
            "results": results,
        }],
    })
}

fn rule_descriptor(rule: RuleId) -> Value {
    let spec = rule.spec();
    json!({
        "id": spec.rule,
        "shortDescription": { "text": spec.rule },
        "fullDescription": { "text": spec.description },
        "help": { "text": format!("{} ({}). Each result carries the command that fixes it.", spec.description, spec.severity) },
        "defaultConfiguration": { "level": level(spec.severity) },
        "properties": {
            "security-severity": security_severity(spec.severity),
            "tags": ["security", "amazon-connect"],
        },
    })
}

fn rule_index(rule: RuleId) -> usize {
    RuleId::ALL
        .iter()
        .position(|r| *r == rule)
        .unwrap_or_default()
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub code scanning's scale: 9.0+ critical, 7.0+ high, 4.0+ medium.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
    }
}
