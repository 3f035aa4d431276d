//! `PROFILES_CROSS_DOMAIN_EXPOSURE`: the managed SLR policy reaches every
//! `amazon-connect-*` domain in the account and Region, so such a domain is
//! readable by instances it is not associated with.

use serde_json::json;

use super::incomplete;
use super::remedy::sh;
use super::role::managed_policy_arn_attached;
use crate::finding::{Finding, RuleId};
use crate::model::{
    Incomplete, Instance, Observed, PROFILES_MANAGED_PREFIX, Snapshot, Unverified, arn_partition,
    profiles_domain_arn,
};

pub fn cross_domain(snapshot: &Snapshot) -> Vec<Finding> {
    let domains = match &snapshot.connect_domains {
        Observed::Found(domains) => domains,
        Observed::Absent => return Vec::new(),
        Observed::Unverified(reason) => return vec![domains_unread(snapshot, reason)],
    };
    domains
        .iter()
        .filter(|d| d.starts_with(PROFILES_MANAGED_PREFIX))
        .filter_map(|domain| {
            let outsiders: Vec<&Instance> = snapshot
                .instances
                .iter()
                .filter(|i| reaches_other_domain(snapshot, i, domain))
                .collect();
            (!outsiders.is_empty()).then(|| finding(snapshot, domain, &outsiders))
        })
        .collect()
}

/// The account's domains could not be listed: exposure was not judged.
fn domains_unread(snapshot: &Snapshot, reason: &Unverified) -> Finding {
    let partition = snapshot
        .instances
        .first()
        .map_or("aws", |i| arn_partition(&i.arn));
    let account = snapshot.account.as_deref().unwrap_or("*");
    incomplete::finding(&Incomplete {
        instance_arn: None,
        resource_arn: format!(
            "arn:{partition}:profile:{}:{account}:domains/*",
            snapshot.region
        ),
        what: "Customer Profiles domains".to_owned(),
        reason: reason.clone(),
    })
}

/// An active instance whose SLR (as far as this pass knows) carries the
/// managed policy, and whose own domain is known to be another one.
fn reaches_other_domain(snapshot: &Snapshot, instance: &Instance, domain: &str) -> bool {
    let Some(role_arn) = &instance.service_role else {
        return false;
    };
    let role_reaches = match snapshot.roles.get(role_arn) {
        Some(Observed::Found(role)) => managed_policy_arn_attached(role),
        Some(Observed::Absent) => false,
        _ => true,
    };
    let linked_elsewhere = match &instance.domain {
        Observed::Found(own) => own.as_deref() != Some(domain),
        _ => false,
    };
    instance.is_active() && role_reaches && linked_elsewhere
}

fn finding(snapshot: &Snapshot, domain: &str, outsiders: &[&Instance]) -> Finding {
    let domain_arn = profiles_domain_arn(&outsiders[0].arn, &snapshot.region, domain);
    let arns: Vec<&str> = outsiders.iter().map(|i| i.arn.as_str()).collect();
    Finding::new(RuleId::ProfilesCrossDomainExposure, None, &domain_arn)
        .summary(format!(
            "Domain {domain} is reachable by {} instance(s) it is not associated with",
            arns.len()
        ))
        .details(json!({ "domain": domain, "instances": arns }))
        .remediation(format!(
            "if the domain is unused: aws customer-profiles delete-domain --domain-name {}; \
             otherwise rename the domain without the amazon-connect- prefix and grant it to its instance's SLR",
            sh(domain)
        ))
}
