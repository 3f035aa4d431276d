//! `CHECK_INCOMPLETE`: what a pass could not verify. Never a silent pass.

use serde_json::json;

use crate::finding::{Finding, RuleId};
use crate::model::{Incomplete, Instance};

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

/// The instance's own reads (storage configs, domain link) that failed,
/// as one finding: one thing for on-call to fix, the guard's access.
pub fn instance_reads(instance: &Instance) -> Option<Finding> {
    let failed: Vec<(&str, &str)> = [
        ("storage configs", instance.storage.unverified_reason()),
        (
            "Customer Profiles domain link",
            instance.domain.unverified_reason(),
        ),
    ]
    .into_iter()
    .filter_map(|(what, reason)| Some((what, reason?)))
    .collect();
    let (first_what, first_reason) = *failed.first()?;
    let what: Vec<&str> = failed.iter().map(|(w, _)| *w).collect();
    Some(
        finding(Some(&instance.arn), &instance.arn, first_what, first_reason).details(json!({
            "what": what.join(", "),
            "reason": first_reason,
            "reasons": failed.iter().map(|(w, r)| json!({"what": w, "reason": r})).collect::<Vec<_>>(),
        })),
    )
}
