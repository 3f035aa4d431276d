//! IAM reads: the SLR, its trust policy, managed and inline policies.

use futures_util::future::try_join;

use crate::aws::{Aws, ReadError};
use crate::model::{DeletionStatus, InlinePolicy, Role};
use crate::policy::decode_document;

#[tracing::instrument(skip(aws))]
pub async fn read_role(aws: &Aws, role_name: &str) -> Result<Role, ReadError> {
    let output = aws.iam.get_role().role_name(role_name).send().await?;
    let role = output.role().ok_or(ReadError::NotFound)?;
    let trust_policy = role
        .assume_role_policy_document()
        .map(decode_document)
        .transpose()
        .map_err(|e| ReadError::Failed(format!("trust policy of {role_name}: {e}")))?
        .unwrap_or_default();
    let (attached_policies, inline_policies) = try_join(
        attached_policies(aws, role_name),
        inline_policies(aws, role_name),
    )
    .await?;
    Ok(Role {
        arn: role.arn().to_owned(),
        name: role.role_name().to_owned(),
        path: role.path().to_owned(),
        trust_policy,
        attached_policies,
        inline_policies,
    })
}

async fn attached_policies(aws: &Aws, role_name: &str) -> Result<Vec<String>, ReadError> {
    let attached = aws
        .iam
        .list_attached_role_policies()
        .role_name(role_name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await?;
    Ok(attached.into_iter().filter_map(|p| p.policy_arn).collect())
}

async fn inline_policies(aws: &Aws, role_name: &str) -> Result<Vec<InlinePolicy>, ReadError> {
    let names = aws
        .iam
        .list_role_policies()
        .role_name(role_name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await?;
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let output = aws
            .iam
            .get_role_policy()
            .role_name(role_name)
            .policy_name(&name)
            .send()
            .await?;
        let document = decode_document(output.policy_document())
            .map_err(|e| ReadError::Failed(format!("inline policy {name}: {e}")))?;
        policies.push(InlinePolicy { name, document });
    }
    Ok(policies)
}

/// How far a service-linked role deletion task got.
#[tracing::instrument(skip(aws))]
pub async fn deletion_status(aws: &Aws, task_id: &str) -> Result<DeletionStatus, ReadError> {
    use aws_sdk_iam::types::DeletionTaskStatusType as Status;
    let output = aws
        .iam
        .get_service_linked_role_deletion_status()
        .deletion_task_id(task_id)
        .send()
        .await?;
    match output.status() {
        Status::NotStarted => Ok(DeletionStatus::NotStarted),
        Status::InProgress => Ok(DeletionStatus::InProgress),
        Status::Succeeded => Ok(DeletionStatus::Succeeded),
        Status::Failed => Ok(DeletionStatus::Failed),
        other => Err(ReadError::Failed(format!(
            "unknown deletion status {}",
            other.as_str()
        ))),
    }
}
