//! `CHECK_INCOMPLETE`: what a pass could not verify. Never a silent pass.

use serde_json::json;

use crate::finding::{Finding, RuleId};
use crate::model::{DEADLINE_REASON, Incomplete, Instance, Observed, Snapshot};

pub fn finding(instance_arn: Option<&str>, resource: &str, what: &str, reason: &str) -> Finding {
    Finding::new(RuleId::CheckIncomplete, instance_arn, resource)
        .summary(format!("Could not verify {what} {resource}: {reason}"))
        .details(json!({ "what": what, "reason": reason }))
        .remediation(
            "fix the cause above (the guard's read permissions, throttling or network), then re-run: connect-slr-guard audit",
        )
}

pub fn from_record(record: &Incomplete) -> Finding {
    finding(
        record.instance_arn.as_deref(),
        &record.resource_arn,
        &record.what,
        &record.reason,
    )
}

/// The instance's own reads (storage configs, domain link, its domain)
/// that failed, as one finding: one thing for on-call to fix, the guard's
/// access.
pub fn instance_reads(snapshot: &Snapshot, instance: &Instance) -> Option<Finding> {
    let domain = match &instance.domain {
        Observed::Found(Some(name)) => snapshot
            .domains
            .get(name)
            .and_then(|d| d.unverified_reason()),
        _ => None,
    };
    let failed: Vec<(&str, &str)> = [
        ("storage configs", instance.storage.unverified_reason()),
        (
            "Customer Profiles domain link",
            instance.domain.unverified_reason(),
        ),
        ("Customer Profiles domain", domain),
    ]
    .into_iter()
    .filter_map(|(what, reason)| Some((what, reason?)))
    .collect();
    let (first_what, first_reason) = *failed.first()?;
    Some(merged(instance, first_what, first_reason, &failed))
}

/// A pass that ran out of time is one thing to page about per instance, not
/// one per read it did not reach: folds the instance's deadline findings.
pub fn fold_deadline(instance: &Instance, findings: Vec<Finding>) -> Vec<Finding> {
    let (late, mut kept): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| f.rule == RuleId::CheckIncomplete && f.details["reason"] == DEADLINE_REASON);
    if late.is_empty() {
        return kept;
    }
    let reached: Vec<(&str, &str)> = late
        .iter()
        .map(|f| {
            (
                f.details["what"].as_str().unwrap_or("a check"),
                DEADLINE_REASON,
            )
        })
        .collect();
    kept.push(merged(
        instance,
        "the instance's checks",
        DEADLINE_REASON,
        &reached,
    ));
    kept
}

fn merged(instance: &Instance, what: &str, reason: &str, failed: &[(&str, &str)]) -> Finding {
    let names: Vec<&str> = failed.iter().map(|(w, _)| *w).collect();
    finding(Some(&instance.arn), &instance.arn, what, reason).details(json!({
        "what": names.join(", "),
        "reason": reason,
        "reasons": failed.iter().map(|(w, r)| json!({"what": w, "reason": r})).collect::<Vec<_>>(),
    }))
}
