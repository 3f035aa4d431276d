//! Making a planned fix: one `kms:CreateGrant`, the only write remediation
//! does. The grant's name makes it recognisable (and KMS treats a repeated
//! CreateGrant with the same name and parameters as the same grant).

use aws_sdk_kms::types::GrantOperation;
use serde::Serialize;
use tracing::{info, warn};

use super::Fix;
use crate::aws::ReadError;

/// What one fix did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Applied { grant_id: String },
    Failed { reason: String },
}

pub async fn apply(kms: &aws_sdk_kms::Client, fix: &Fix) -> Outcome {
    let operations = fix
        .operations
        .iter()
        .map(|op| GrantOperation::from(op.as_str()))
        .collect();
    let result = kms
        .create_grant()
        .key_id(&fix.key_arn)
        .grantee_principal(&fix.grantee)
        .set_operations(Some(operations))
        .name(&fix.grant_name)
        .send()
        .await;
    match result {
        Ok(output) => {
            let grant_id = output.grant_id().unwrap_or_default().to_owned();
            info!(fix = %fix.describe(), %grant_id, "remediation: grant created");
            Outcome::Applied { grant_id }
        }
        Err(err) => {
            let reason = ReadError::from(err).reason();
            warn!(fix = %fix.describe(), %reason, "remediation: grant not created");
            Outcome::Failed { reason }
        }
    }
}
