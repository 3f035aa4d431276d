//! The SLR itself: present, service-linked, trusted only by Connect, with
//! its managed policy and the inline permissions its features need.

use serde_json::{Value, json};

use super::incomplete;
use super::remedy::{SLR_RECREATION_NOTE, create_slr, managed_policy_arn, sh};
use crate::finding::{Finding, RuleId};
use crate::model::{
    Instance, Observed, PROFILES_MANAGED_PREFIX, Role, SLR_PATH, Snapshot, StorageConfig,
    has_slr_prefix, profiles_domain_arn, role_name,
};
use crate::policy;

pub fn not_configured(instance: &Instance) -> Finding {
    Finding::new(
        RuleId::ConnectSlrNotConfigured,
        Some(&instance.arn),
        &instance.arn,
    )
    .summary(format!(
        "Instance {} has no service-linked role (created before October 2018?)",
        instance.label()
    ))
    .details(json!({ "instance_id": instance.id }))
    .remediation(
        "aws iam create-service-linked-role --aws-service-name connect.amazonaws.com \
             (then ask AWS Support to migrate the instance to its service-linked role)",
    )
}

pub fn missing(instance: &Instance, role_arn: &str) -> Finding {
    Finding::new(RuleId::ConnectSlrMissing, Some(&instance.arn), role_arn)
        .summary(format!(
            "Service-linked role {} of instance {} does not exist",
            role_name(role_arn),
            instance.label()
        ))
        .details(json!({
            "instance_id": instance.id,
            "role_arn": role_arn,
            "note": SLR_RECREATION_NOTE,
        }))
        .remediation(create_slr(role_arn))
}

/// A role an event started deleting is as good as gone: IAM deletes it
/// asynchronously, so it may still be read. A task whose status could not
/// be read is `CHECK_INCOMPLETE`; a failed task leaves the role in place.
pub fn being_deleted(snapshot: &Snapshot, instance: &Instance, role_arn: &str) -> Option<Finding> {
    let deletion = snapshot
        .slr_deletions
        .iter()
        .find(|d| d.role_name.eq_ignore_ascii_case(role_name(role_arn)))?;
    match &deletion.status {
        Observed::Found(status) if status.removes_the_role() => Some(
            missing(instance, role_arn)
                .summary(format!(
                    "Service-linked role {} of instance {} is being deleted ({})",
                    role_name(role_arn),
                    instance.label(),
                    status.as_str()
                ))
                .details(json!({
                    "instance_id": instance.id,
                    "role_arn": role_arn,
                    "deletion_task": deletion.task_id,
                    "deletion_status": status.as_str(),
                    "note": SLR_RECREATION_NOTE,
                })),
        ),
        Observed::Found(_) | Observed::Absent => None,
        Observed::Unverified(reason) => Some(incomplete::of_instance(
            instance,
            role_arn,
            "service-linked role deletion task",
            reason,
        )),
    }
}

/// The rules that need the role to exist and be Connect's SLR.
pub fn judge(snapshot: &Snapshot, instance: &Instance, role: &Role) -> Vec<Finding> {
    let mut findings: Vec<Finding> = [
        trust_drift(instance, role),
        policy_detached(instance, role),
        domain_access_missing(snapshot, instance, role),
    ]
    .into_iter()
    .flatten()
    .collect();
    findings.extend(feature_permissions_missing(instance, role));
    findings
}

pub fn not_service_linked(instance: &Instance, role: &Role) -> Option<Finding> {
    if role.path == SLR_PATH && has_slr_prefix(&role.name) {
        return None;
    }
    Some(
        Finding::new(
            RuleId::ConnectSlrNotServiceLinked,
            Some(&instance.arn),
            &role.arn,
        )
        .summary(format!(
            "Role {} of instance {} is not an Amazon Connect service-linked role",
            role.name,
            instance.label()
        ))
        .details(json!({ "path": role.path, "expected_path": SLR_PATH }))
        .remediation(format!(
            "aws iam delete-role --role-name {} (after detaching its policies) && {}",
            sh(&role.name),
            create_slr(&role.arn)
        )),
    )
}

fn trust_drift(instance: &Instance, role: &Role) -> Option<Finding> {
    let problems = policy::trust_problems(&role.trust_policy);
    if problems.is_empty() {
        return None;
    }
    Some(
        Finding::new(RuleId::ConnectSlrTrustDrift, Some(&instance.arn), &role.arn)
            .summary(format!(
                "Trust policy of {} does not admit exactly connect.amazonaws.com",
                role.name
            ))
            .details(json!({ "problems": problems }))
            .remediation(format!(
                "aws iam update-assume-role-policy --role-name {} --policy-document \
                 '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"connect.amazonaws.com\"}},\"Action\":\"sts:AssumeRole\"}}]}}' \
                 (IAM refuses edits to a genuine SLR: then open an AWS Support case)",
                sh(&role.name)
            )),
    )
}

pub fn managed_policy_arn_attached(role: &Role) -> bool {
    let expected = managed_policy_arn(&role.arn);
    role.attached_policies.contains(&expected)
}

fn policy_detached(instance: &Instance, role: &Role) -> Option<Finding> {
    if managed_policy_arn_attached(role) {
        return None;
    }
    let expected = managed_policy_arn(&role.arn);
    Some(
        Finding::new(
            RuleId::ConnectSlrPolicyDetached,
            Some(&instance.arn),
            &role.arn,
        )
        .summary(format!(
            "AmazonConnectServiceLinkedRolePolicy is not attached to {}",
            role.name
        ))
        .details(json!({ "attached_policies": role.attached_policies }))
        .remediation(format!(
            "aws iam attach-role-policy --role-name {} --policy-arn {}",
            sh(&role.name),
            sh(&expected)
        )),
    )
}

fn inline_documents(role: &Role) -> Vec<&Value> {
    role.inline_policies.iter().map(|p| &p.document).collect()
}

/// The storage types whose streams Connect documents adding inline
/// permissions for ("for the stream specified for Agent event streams and
/// CTRs", connect-slr page). [U] Real-time contact analysis segment streams
/// are not listed there, so no inline permission is expected for them.
const INLINE_PERMISSION_TYPES: [&str; 2] = ["CONTACT_TRACE_RECORDS", "AGENT_EVENTS"];

/// The actions Connect's inline policy grants for a streaming destination.
fn stream_target(config: &StorageConfig) -> Option<(&str, [&'static str; 2])> {
    if !INLINE_PERMISSION_TYPES.contains(&config.resource_type.as_str()) {
        return None;
    }
    if let Some(arn) = &config.stream_arn {
        Some((arn, ["kinesis:PutRecord", "kinesis:PutRecords"]))
    } else {
        config
            .firehose_arn
            .as_deref()
            .map(|arn| (arn, ["firehose:PutRecord", "firehose:PutRecordBatch"]))
    }
}

fn feature_permissions_missing(instance: &Instance, role: &Role) -> Vec<Finding> {
    let Observed::Found(configs) = &instance.storage else {
        return Vec::new();
    };
    let documents = inline_documents(role);
    configs
        .iter()
        .filter_map(|config| {
            let (target, actions) = stream_target(config)?;
            let missing: Vec<&str> = actions
                .into_iter()
                .filter(|action| !policy::allows(&documents, action, target))
                .collect();
            (!missing.is_empty()).then(|| feature_finding(instance, role, config, target, &missing))
        })
        .collect()
}

fn feature_finding(
    instance: &Instance,
    role: &Role,
    config: &StorageConfig,
    target: &str,
    missing: &[&str],
) -> Finding {
    let storage = if config.stream_arn.is_some() {
        json!({"StorageType": "KINESIS_STREAM", "KinesisStreamConfig": {"StreamArn": target}})
    } else {
        json!({"StorageType": "KINESIS_FIREHOSE", "KinesisFirehoseConfig": {"FirehoseArn": target}})
    };
    Finding::new(RuleId::ConnectSlrFeaturePermissionMissing, Some(&instance.arn), target)
        .summary(format!(
            "{} cannot write {} to {}: its inline policies lack {}",
            role.name,
            config.resource_type,
            target,
            missing.join(", ")
        ))
        .details(json!({
            "resource_type": config.resource_type,
            "association_id": config.association_id,
            "missing_actions": missing,
        }))
        .remediation(format!(
            "aws connect update-instance-storage-config --instance-id {} --association-id {} --resource-type {} --storage-config {}",
            sh(&instance.id),
            sh(&config.association_id),
            sh(&config.resource_type),
            sh(&storage.to_string())
        ))
}

fn domain_access_missing(snapshot: &Snapshot, instance: &Instance, role: &Role) -> Option<Finding> {
    let Observed::Found(Some(domain)) = &instance.domain else {
        return None;
    };
    if domain.starts_with(PROFILES_MANAGED_PREFIX) {
        return None;
    }
    let domain_arn = profiles_domain_arn(&instance.arn, &snapshot.region, domain);
    if policy::allows_any_action_of(&inline_documents(role), "profile", &domain_arn) {
        return None;
    }
    Some(
        Finding::new(RuleId::ProfilesDomainAccessMissing, Some(&instance.arn), &domain_arn)
            .summary(format!(
                "Domain {domain} lacks the amazon-connect- prefix and no inline policy of {} grants it",
                role.name
            ))
            .details(json!({ "domain": domain, "role": role.arn }))
            .remediation(format!(
                "aws customer-profiles put-integration --domain-name {} --uri {} --object-type-name CTR \
                 (re-enabling Customer Profiles on the instance restores the inline policy)",
                sh(domain),
                sh(&instance.arn)
            )),
    )
}
