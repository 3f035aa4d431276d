//! KMS reads: key state and owner, and the grants on a key.

use aws_sdk_kms::types::{KeyManagerType, KeyState as SdkKeyState};

use crate::aws::{Aws, ReadError};
use crate::model::{Grant, Key, KeyState};
use crate::policy::decode_document;

#[tracing::instrument(skip(aws))]
pub async fn describe_key(aws: &Aws, key: &str) -> Result<Key, ReadError> {
    let output = aws.kms.describe_key().key_id(key).send().await?;
    let metadata = output.key_metadata().ok_or(ReadError::NotFound)?;
    Ok(Key {
        arn: metadata.arn().unwrap_or(key).to_owned(),
        state: metadata.key_state().map_or(KeyState::Unknown, key_state),
        customer_managed: metadata.key_manager() == Some(&KeyManagerType::Customer),
        custom_key_store: metadata.custom_key_store_id().map(str::to_owned),
        grants: None,
        policy: None,
    })
}

fn key_state(state: &SdkKeyState) -> KeyState {
    match state {
        SdkKeyState::Creating => KeyState::Creating,
        SdkKeyState::Enabled => KeyState::Enabled,
        SdkKeyState::Disabled => KeyState::Disabled,
        SdkKeyState::PendingDeletion => KeyState::PendingDeletion,
        SdkKeyState::PendingImport => KeyState::PendingImport,
        SdkKeyState::PendingReplicaDeletion => KeyState::PendingReplicaDeletion,
        SdkKeyState::Unavailable => KeyState::Unavailable,
        SdkKeyState::Updating => KeyState::Updating,
        _ => KeyState::Unknown,
    }
}

#[tracing::instrument(skip(aws))]
pub async fn list_grants(aws: &Aws, key_arn: &str) -> Result<Vec<Grant>, ReadError> {
    let entries = aws
        .kms
        .list_grants()
        .key_id(key_arn)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await?;
    Ok(entries
        .into_iter()
        .map(|g| Grant {
            id: g.grant_id.unwrap_or_default(),
            grantee: g.grantee_principal.unwrap_or_default(),
            operations: g
                .operations
                .unwrap_or_default()
                .iter()
                .map(|o| o.as_str().to_owned())
                .collect(),
        })
        .collect())
}

/// The key's `default` policy, parsed.
#[tracing::instrument(skip(aws))]
pub async fn key_policy(aws: &Aws, key_arn: &str) -> Result<serde_json::Value, ReadError> {
    let output = aws
        .kms
        .get_key_policy()
        .key_id(key_arn)
        .policy_name("default")
        .send()
        .await?;
    let text = output.policy().ok_or(ReadError::NotFound)?;
    decode_document(text).map_err(|e| ReadError::Failed(format!("key policy of {key_arn}: {e}")))
}
