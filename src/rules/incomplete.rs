//! `CHECK_INCOMPLETE`: what a pass could not verify. Never a silent pass.

use serde_json::json;

use super::remedy::sh;
use crate::finding::{Finding, RuleId};
use crate::model::{Incomplete, Instance, Observed, Snapshot, Unverified};

/// What a central-mode pass could not assume (`Incomplete::what`).
pub const MEMBER_ROLE: &str = "the member account's role";

pub fn finding(record: &Incomplete) -> Finding {
    let Incomplete {
        instance_arn,
        resource_arn,
        what,
        reason,
    } = record;
    let remediation = if what == MEMBER_ROLE {
        format!(
            "deploy deploy/member.yaml in this account (the StackSet, or by hand in the management account) and check that {} trusts the guard's FunctionRoleArn with its external id; the next sweep reads the account again",
            sh(resource_arn)
        )
    } else {
        "fix the cause above (the guard's read permissions, throttling or network), then re-run: connect-slr-guard audit".to_owned()
    };
    let mut finding = Finding::new(
        RuleId::CheckIncomplete,
        instance_arn.as_deref(),
        resource_arn,
    )
    .summary(format!("Could not verify {what} {resource_arn}: {reason}"))
    .details(json!({ "what": what, "reason": reason.to_string() }))
    .remediation(remediation);
    finding.unverified = Some(reason.clone());
    finding
}

/// An instance's read of `resource` that could not finish.
pub fn of_instance(
    instance: &Instance,
    resource: &str,
    what: &str,
    reason: &Unverified,
) -> Finding {
    finding(&Incomplete {
        instance_arn: Some(instance.arn.clone()),
        resource_arn: resource.to_owned(),
        what: what.to_owned(),
        reason: reason.clone(),
    })
}

/// The instance's own reads (storage configs, domain link, its domain)
/// that failed, as one finding: one thing for on-call to fix, the guard's
/// access.
pub fn instance_reads(snapshot: &Snapshot, instance: &Instance) -> Option<Finding> {
    let domain = match &instance.domain {
        Observed::Found(Some(name)) => snapshot.domains.get(name).and_then(|d| d.unverified()),
        _ => None,
    };
    let stream = unread_stream(snapshot, instance);
    let failed: Vec<(&str, &Unverified)> = [
        ("storage configs", instance.storage.unverified()),
        (
            "Customer Profiles domain link",
            instance.domain.unverified(),
        ),
        ("Customer Profiles domain", domain),
        ("stream encryption", stream),
    ]
    .into_iter()
    .filter_map(|(what, reason)| Some((what, reason?)))
    .collect();
    let (first_what, first_reason) = *failed.first()?;
    Some(merged(instance, first_what, first_reason, &failed))
}

/// Why the encryption of one of the instance's streams could not be read.
fn unread_stream<'a>(snapshot: &'a Snapshot, instance: &Instance) -> Option<&'a Unverified> {
    let configs = instance.storage.found()?;
    configs
        .iter()
        .flat_map(|c| [&c.stream_arn, &c.firehose_arn])
        .flatten()
        .find_map(|arn| snapshot.streams.get(arn)?.unverified())
}

/// A pass that ran out of time is one thing to page about per instance, not
/// one per read it did not reach: folds the instance's deadline findings.
pub fn fold_deadline(instance: &Instance, findings: Vec<Finding>) -> Vec<Finding> {
    let (late, mut kept): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| f.unverified == Some(Unverified::Deadline));
    if late.is_empty() {
        return kept;
    }
    let reached: Vec<(&str, &Unverified)> = late
        .iter()
        .map(|f| {
            (
                f.details["what"].as_str().unwrap_or("a check"),
                &Unverified::Deadline,
            )
        })
        .collect();
    kept.push(merged(
        instance,
        "the instance's checks",
        &Unverified::Deadline,
        &reached,
    ));
    kept
}

fn merged(
    instance: &Instance,
    what: &str,
    reason: &Unverified,
    failed: &[(&str, &Unverified)],
) -> Finding {
    let names: Vec<&str> = failed.iter().map(|(w, _)| *w).collect();
    of_instance(instance, &instance.arn, what, reason).details(json!({
        "what": names.join(", "),
        "reason": reason.to_string(),
        "reasons": failed
            .iter()
            .map(|(w, r)| json!({"what": w, "reason": r.to_string()}))
            .collect::<Vec<_>>(),
    }))
}
