//! Step 3 of a pass: snapshot -> findings. Pure functions, one file per
//! concern. Root causes only: an instance without a usable SLR is not also
//! judged on what depends on the role, and an unusable key is not also a
//! missing grant.

mod exposure;
pub mod incomplete;
mod kms;
mod remedy;
mod role;

use std::collections::BTreeSet;

use crate::finding::Finding;
use crate::model::{Instance, Observed, Role, Snapshot, Unverified};

/// What the rules need besides the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSettings {
    /// KMS operations a Customer Profiles grant must allow the SLR.
    pub required_grant_operations: Vec<String>,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            required_grant_operations: vec!["Decrypt".to_owned(), "GenerateDataKey".to_owned()],
        }
    }
}

/// Every finding for the snapshot, one per distinct drift, in a stable order.
pub fn evaluate(snapshot: &Snapshot, settings: &RuleSettings) -> Vec<Finding> {
    let mut findings: Vec<Finding> = snapshot
        .incomplete
        .iter()
        .map(incomplete::finding)
        .collect();
    for instance in snapshot
        .instances
        .iter()
        .filter(|i| i.checked && i.is_active())
    {
        findings.extend(instance_findings(snapshot, settings, instance));
    }
    findings.extend(exposure::cross_domain(snapshot));
    let mut seen = BTreeSet::new();
    findings.retain(|f| seen.insert((f.rule, f.instance_arn.clone(), f.resource_arn.clone())));
    findings
}

fn instance_findings(
    snapshot: &Snapshot,
    settings: &RuleSettings,
    instance: &Instance,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = incomplete::instance_reads(snapshot, instance)
        .into_iter()
        .collect();
    let role = usable_role(snapshot, instance, &mut findings);
    if let Some(role) = role {
        findings.extend(role::judge(snapshot, instance, role));
    }
    findings.extend(kms::judge(snapshot, settings, instance, role));
    incomplete::fold_deadline(instance, findings)
}

/// The instance's SLR; when there is none to judge, the finding that says
/// why goes into `findings` instead.
fn usable_role<'a>(
    snapshot: &'a Snapshot,
    instance: &Instance,
    findings: &mut Vec<Finding>,
) -> Option<&'a Role> {
    let Some(role_arn) = instance.service_role.as_deref() else {
        findings.push(role::not_configured(instance));
        return None;
    };
    let reason = match snapshot.roles.get(role_arn) {
        // A role that is not Connect's SLR is the root cause; what depends
        // on the role would only echo it.
        Some(Observed::Found(role)) => {
            let unusable = role::being_deleted(snapshot, instance, role_arn)
                .or_else(|| role::not_service_linked(instance, role));
            match unusable {
                Some(finding) => {
                    findings.push(finding);
                    return None;
                }
                None => return Some(role),
            }
        }
        Some(Observed::Absent) => {
            findings.push(role::missing(instance, role_arn));
            return None;
        }
        Some(Observed::Unverified(reason)) => reason,
        None => &Unverified::NotRead,
    };
    findings.push(incomplete::of_instance(
        instance,
        role_arn,
        "service-linked role",
        reason,
    ));
    None
}
