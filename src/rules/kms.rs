//! The customer managed keys an instance depends on: usable, and granted to
//! its SLR (the Customer Profiles domain key since 31 Jan 2025, and the keys
//! of its storage configs).

use serde_json::json;

use super::RuleSettings;
use super::incomplete;
use super::remedy::{create_grant, sh};
use crate::finding::{Finding, RuleId};
use crate::model::{
    Grant, Instance, Key, KeyState, KeyUse, Observed, Role, Snapshot, Unverified, arn_account,
    key_uses,
};
use crate::policy::{KeyPolicyDenial, SlrPrincipal, key_policy_allows, key_policy_denials};

/// Key findings for one instance; grant rules only when its role is usable.
pub fn judge(
    snapshot: &Snapshot,
    settings: &RuleSettings,
    instance: &Instance,
    role: Option<&Role>,
) -> Vec<Finding> {
    uses_by_key(snapshot, instance)
        .into_iter()
        .filter_map(|(reference, uses)| {
            let finding = judge_key(snapshot, settings, instance, role, reference, &uses)?;
            Some(naming_every_use(finding, &uses))
        })
        .collect()
}

/// The instance's key uses, one entry per key whatever name each use gives
/// it, the domain's use first: a key is one thing to fix, however many
/// features use it.
fn uses_by_key<'a>(
    snapshot: &'a Snapshot,
    instance: &'a Instance,
) -> Vec<(&'a str, Vec<KeyUse<'a>>)> {
    let identity = |reference: &'a str| match snapshot.keys.get(reference) {
        Some(Observed::Found(key)) => key.arn.as_str(),
        _ => reference,
    };
    let mut grouped: Vec<(&str, Vec<KeyUse>)> = Vec::new();
    for (reference, key_use) in key_uses(snapshot, instance) {
        match grouped
            .iter_mut()
            .find(|(seen, _)| identity(seen) == identity(reference))
        {
            Some((_, uses)) => uses.push(key_use),
            None => grouped.push((reference, vec![key_use])),
        }
    }
    grouped
}

/// A finding about a key several features use lists them all.
fn naming_every_use(mut finding: Finding, uses: &[KeyUse]) -> Finding {
    if uses.len() > 1
        && let Some(details) = finding.details.as_object_mut()
    {
        let all: Vec<String> = uses.iter().map(|u| describe(*u)).collect();
        details.insert("uses".to_owned(), json!(all));
    }
    finding
}

fn judge_key(
    snapshot: &Snapshot,
    settings: &RuleSettings,
    instance: &Instance,
    role: Option<&Role>,
    reference: &str,
    uses: &[KeyUse],
) -> Option<Finding> {
    let key_use = uses[0];
    match snapshot.keys.get(reference) {
        None => Some(incomplete::of_instance(
            instance,
            reference,
            "KMS key",
            &Unverified::NotRead,
        )),
        Some(Observed::Unverified(reason)) => Some(incomplete::of_instance(
            instance, reference, "KMS key", reason,
        )),
        Some(Observed::Absent) => Some(unusable(instance, reference, None, None, key_use)),
        Some(Observed::Found(key)) if !key.is_usable() => Some(unusable(
            instance,
            &key.arn,
            Some(key.state),
            key.custom_key_store.as_deref(),
            key_use,
        )),
        Some(Observed::Found(key)) if key.customer_managed => {
            role.and_then(|role| access_drift(settings, instance, role, key, uses))
        }
        Some(Observed::Found(_)) => None,
    }
}

/// A key the instance cannot use; `state` is `None` when the key is gone.
fn unusable(
    instance: &Instance,
    key: &str,
    state: Option<KeyState>,
    custom_key_store: Option<&str>,
    key_use: KeyUse,
) -> Finding {
    let remediation = match state {
        Some(KeyState::Disabled) => format!("aws kms enable-key --key-id {}", sh(key)),
        Some(KeyState::PendingDeletion) => format!(
            "aws kms cancel-key-deletion --key-id {0} && aws kms enable-key --key-id {0}",
            sh(key)
        ),
        Some(KeyState::PendingImport) => format!(
            "re-import the key material: aws kms get-parameters-for-import --key-id {0} \
             --wrapping-algorithm RSAES_OAEP_SHA_256 --wrapping-key-spec RSA_2048, wrap it, then \
             aws kms import-key-material --key-id {0} --encrypted-key-material fileb://<wrapped> \
             --import-token fileb://<token> --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE",
            sh(key)
        ),
        Some(KeyState::Unavailable) => format!(
            "reconnect the key's custom key store: aws kms connect-custom-key-store --custom-key-store-id {}",
            custom_key_store.map_or("<id from aws kms describe-key>".to_owned(), sh)
        ),
        _ => match key_use {
            KeyUse::Domain(domain) => format!(
                "aws customer-profiles update-domain --domain-name {} --default-encryption-key <usable-key-arn>",
                sh(domain)
            ),
            KeyUse::Storage(resource_type) => format!(
                "aws connect update-instance-storage-config --instance-id {} --resource-type {} --association-id <id> --storage-config <config-with-usable-key>",
                sh(&instance.id),
                sh(resource_type)
            ),
            KeyUse::Stream { arn, .. } => format!(
                "aws kinesis start-stream-encryption --stream-arn {} --encryption-type KMS --key-id <usable-key-arn>",
                sh(arn)
            ),
            KeyUse::Firehose { arn, .. } => format!(
                "aws firehose start-delivery-stream-encryption --delivery-stream-name {} \
                 --delivery-stream-encryption-configuration-input KeyType=CUSTOMER_MANAGED_CMK,KeyARN=<usable-key-arn>",
                sh(arn.rsplit('/').next().unwrap_or(arn))
            ),
        },
    };
    let state = state.map_or("gone", KeyState::as_str);
    Finding::new(RuleId::KmsKeyUnusable, Some(&instance.arn), key)
        .summary(format!(
            "KMS key {key} used by instance {} ({}) is {state}",
            instance.label(),
            describe(key_use)
        ))
        .details(json!({ "key_state": state, "used_for": describe(key_use) }))
        .remediation(remediation)
}

fn describe(key_use: KeyUse) -> String {
    match key_use {
        KeyUse::Domain(domain) => format!("Customer Profiles domain {domain}"),
        KeyUse::Storage(resource_type) => format!("{resource_type} storage"),
        KeyUse::Stream { resource_type, arn } => format!("{resource_type} Kinesis stream {arn}"),
        KeyUse::Firehose { resource_type, arn } => {
            format!("{resource_type} Firehose delivery stream {arn}")
        }
    }
}

/// Grants name the role by ARN; accept it with or without its path.
fn grants_to<'a>(grants: &'a [Grant], role: &Role) -> Vec<&'a Grant> {
    let account_prefix = role.arn.split(":role/").next().unwrap_or_default();
    grants
        .iter()
        .filter(|g| {
            g.grantee == role.arn
                || (g.grantee.starts_with(account_prefix)
                    && g.grantee.contains(":role/")
                    && g.grantee.rsplit('/').next() == Some(role.name.as_str()))
        })
        .collect()
}

/// The key's grants, or why they are not known.
fn grants_of(key: &Key) -> Result<&[Grant], &Unverified> {
    match &key.grants {
        Some(Observed::Found(grants)) => Ok(grants),
        Some(Observed::Unverified(reason)) => Err(reason),
        Some(Observed::Absent) | None => Err(&Unverified::NotRead),
    }
}

/// The SLR's access to a usable customer managed key: the key policy
/// first (an explicit Deny is the root cause), then grants, where what the
/// policy itself allows the SLR needs no grant.
fn access_drift(
    settings: &RuleSettings,
    instance: &Instance,
    role: &Role,
    key: &Key,
    uses: &[KeyUse],
) -> Option<Finding> {
    let needed = needed_operations(settings, uses);
    if needed.is_empty() {
        return None;
    }
    let slr = SlrPrincipal {
        role_arn: &role.arn,
        role_name: &role.name,
        account: arn_account(&role.arn).unwrap_or_default(),
    };
    let allowed_by_policy = match &key.policy {
        Some(Observed::Found(policy)) => {
            let denials = key_policy_denials(policy, &slr, &needed);
            if !denials.is_empty() {
                return Some(policy_denies(instance, role, key, uses[0], &denials));
            }
            key_policy_allows(policy, &slr, &needed)
        }
        Some(Observed::Unverified(reason)) => {
            return Some(incomplete::of_instance(
                instance,
                &key.arn,
                "KMS key policy",
                reason,
            ));
        }
        // Not read: a key in another account (GetKeyPolicy is not
        // available across accounts).
        Some(Observed::Absent) | None => Vec::new(),
    };
    let grants = match grants_of(key) {
        Ok(grants) => grants,
        Err(reason) => {
            return Some(incomplete::of_instance(
                instance,
                &key.arn,
                "KMS grants",
                reason,
            ));
        }
    };
    let granted = grants_to(grants, role);
    let missing: Vec<&str> = needed
        .iter()
        .filter(|op| !allowed_by_policy.contains(op))
        .filter(|op| !granted.iter().any(|g| g.operations.contains(op)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return None;
    }
    let fix = fix_operations(settings, &needed);
    let finding = match uses[0] {
        _ if granted.is_empty() => grant_missing(instance, role, key, uses[0], &fix),
        KeyUse::Domain(_) => {
            operations_missing(instance, role, key, uses[0], &granted, &missing, &fix)
        }
        _ => grant_missing(instance, role, key, uses[0], &fix).details(json!({
            "used_for": describe(uses[0]),
            "grantee": role.arn,
            "missing_operations": missing,
            "grant_ids": granted.iter().map(|g| &g.id).collect::<Vec<_>>(),
        })),
    };
    Some(with_grant_operations(finding, &fix))
}

/// Names the operations the fix grants, for remediation to grant exactly
/// those.
fn with_grant_operations(mut finding: Finding, operations: &[String]) -> Finding {
    if let serde_json::Value::Object(details) = &mut finding.details {
        details.insert("grant_operations".to_owned(), json!(operations));
    }
    finding
}

/// What Connect needs of a key: the configured operations for a Customer
/// Profiles domain; `GenerateDataKey` to write storage and Kinesis streams
/// (AWS: "Amazon Connect cannot publish to the stream because it does not
/// have permission to call kms:GenerateDataKey"); nothing of a Firehose
/// key, which Firehose uses through its own grant.
fn needed_operations(settings: &RuleSettings, uses: &[KeyUse]) -> Vec<String> {
    let mut needed = Vec::new();
    if uses.iter().any(|u| matches!(u, KeyUse::Domain(_))) {
        needed.extend(settings.required_grant_operations.iter().cloned());
    }
    if uses
        .iter()
        .any(|u| matches!(u, KeyUse::Storage(_) | KeyUse::Stream { .. }))
    {
        needed.push(STORAGE_OPERATION.to_owned());
    }
    needed.dedup();
    needed.sort_by_key(|op| !settings.required_grant_operations.contains(op));
    needed
}

/// The operations a fix grants: the configured ones and whatever else is needed.
fn fix_operations(settings: &RuleSettings, needed: &[String]) -> Vec<String> {
    let mut ops = settings.required_grant_operations.clone();
    ops.extend(
        needed
            .iter()
            .filter(|op| !ops.contains(op))
            .cloned()
            .collect::<Vec<_>>(),
    );
    ops
}

const STORAGE_OPERATION: &str = "GenerateDataKey";

fn policy_denies(
    instance: &Instance,
    role: &Role,
    key: &Key,
    key_use: KeyUse,
    denials: &[KeyPolicyDenial],
) -> Finding {
    let statements: Vec<&str> = denials.iter().map(|d| d.statement.as_str()).collect();
    let mut operations: Vec<&str> = denials
        .iter()
        .flat_map(|d| d.operations.iter().map(String::as_str))
        .collect();
    operations.sort();
    operations.dedup();
    let unjudged = denials.iter().any(|d| d.unjudged_condition.is_some());
    Finding::new(RuleId::KmsKeyPolicyDenies, Some(&instance.arn), &key.arn)
        .summary(format!(
            "Key policy of {} ({}) denies {} kms:{}{}",
            key.arn,
            describe(key_use),
            role.name,
            operations.join(", kms:"),
            if unjudged {
                " (under a condition the guard could not judge)"
            } else {
                ""
            }
        ))
        .details(json!({
            "used_for": describe(key_use),
            "grantee": role.arn,
            "denying_statements": denials,
        }))
        .remediation(format!(
            "aws kms get-key-policy --key-id {0} --policy-name default --query Policy --output text > key-policy.json; \
             remove or narrow statement {1} (it denies kms:{2} to {3}); \
             aws kms put-key-policy --key-id {0} --policy-name default --policy file://key-policy.json",
            sh(&key.arn),
            statements.join(", "),
            operations.join(", kms:"),
            sh(&role.arn)
        ))
}

fn grant_missing(
    instance: &Instance,
    role: &Role,
    key: &Key,
    key_use: KeyUse,
    required: &[String],
) -> Finding {
    let rule = match key_use {
        KeyUse::Domain(_) => RuleId::ProfilesKmsGrantMissing,
        KeyUse::Storage(_) | KeyUse::Stream { .. } | KeyUse::Firehose { .. } => {
            RuleId::StorageKmsGrantMissing
        }
    };
    Finding::new(rule, Some(&instance.arn), &key.arn)
        .summary(format!(
            "KMS key {} ({}) has no grant for {}",
            key.arn,
            describe(key_use),
            role.name
        ))
        .details(json!({ "used_for": describe(key_use), "grantee": role.arn }))
        .remediation(create_grant(&key.arn, &role.arn, required))
}

/// The SLR's grants on a domain key, taken together (with what the key
/// policy allows it), lack a required operation.
fn operations_missing(
    instance: &Instance,
    role: &Role,
    key: &Key,
    key_use: KeyUse,
    granted: &[&Grant],
    missing: &[&str],
    fix: &[String],
) -> Finding {
    Finding::new(
        RuleId::ProfilesKmsGrantIncomplete,
        Some(&instance.arn),
        &key.arn,
    )
    .summary(format!(
        "Grant on {} for {} lacks {}",
        key.arn,
        role.name,
        missing.join(", ")
    ))
    .details(json!({
        "used_for": describe(key_use),
        "missing_operations": missing,
        "grant_ids": granted.iter().map(|g| &g.id).collect::<Vec<_>>(),
    }))
    .remediation(create_grant(&key.arn, &role.arn, fix))
}
