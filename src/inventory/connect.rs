//! Amazon Connect reads: instances and their storage configs. Every call is
//! paced to the account's Connect quota.

use aws_sdk_connect::types::{
    InstanceStatus as SdkInstanceStatus, InstanceStorageConfig, InstanceStorageResourceType,
    InstanceSummary,
};

use crate::aws::{Aws, ConnectApi, ReadError};
use crate::model::{Instance, InstanceStatus, Observed, StorageConfig, Unverified};

/// The storage types that give the SLR work (AWS-FACTS: Connect storage),
/// and the real-time contact analysis segment streams, whose customer
/// managed key AWS tells users to grant to the SLR
/// (enable-contact-analysis-segment-streams page).
const STORAGE_TYPES: [InstanceStorageResourceType; 13] = [
    InstanceStorageResourceType::ContactTraceRecords,
    InstanceStorageResourceType::AgentEvents,
    InstanceStorageResourceType::CallRecordings,
    InstanceStorageResourceType::ChatTranscripts,
    InstanceStorageResourceType::ScheduledReports,
    InstanceStorageResourceType::ScreenRecordings,
    InstanceStorageResourceType::EmailMessages,
    InstanceStorageResourceType::Attachments,
    InstanceStorageResourceType::ContactEvaluations,
    InstanceStorageResourceType::MediaStreams,
    InstanceStorageResourceType::RealTimeContactAnalysisChatSegments,
    InstanceStorageResourceType::RealTimeContactAnalysisVoiceSegments,
    // Deprecated by AWS for VOICE_SEGMENTS, but still listed on older instances.
    InstanceStorageResourceType::RealTimeContactAnalysisSegments,
];

/// `ListInstanceStorageConfigs` calls per instance (one per storage type).
pub const STORAGE_CALLS_PER_INSTANCE: usize = STORAGE_TYPES.len();

/// Every instance, page by page. The loops follow `NextToken` themselves
/// (not the SDK paginator) so that each request, and only a request, takes
/// a slot from the Connect pace.
#[tracing::instrument(skip(aws))]
pub async fn list_instances(aws: &Aws) -> Result<Vec<Instance>, ReadError> {
    let mut instances = Vec::new();
    let mut next_token = None;
    loop {
        aws.connect_pace.wait(ConnectApi::ListInstances).await;
        let page = aws
            .connect
            .list_instances()
            .set_next_token(next_token)
            .send()
            .await?;
        instances.extend(page.instance_summary_list().iter().map(from_summary));
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(instances);
        }
    }
}

#[tracing::instrument(skip(aws))]
pub async fn describe_instance(aws: &Aws, instance_id: &str) -> Result<Instance, ReadError> {
    aws.connect_pace.wait(ConnectApi::DescribeInstance).await;
    let output = aws
        .connect
        .describe_instance()
        .instance_id(instance_id)
        .send()
        .await?;
    let found = output.instance().ok_or(ReadError::NotFound)?;
    Ok(Listed {
        id: found.id(),
        arn: found.arn(),
        alias: found.instance_alias(),
        status: found.instance_status(),
        service_role: found.service_role(),
    }
    .into_instance())
}

fn from_summary(summary: &InstanceSummary) -> Instance {
    Listed {
        id: summary.id(),
        arn: summary.arn(),
        alias: summary.instance_alias(),
        status: summary.instance_status(),
        service_role: summary.service_role(),
    }
    .into_instance()
}

/// The fields `DescribeInstance` and `ListInstances` share.
struct Listed<'a> {
    id: Option<&'a str>,
    arn: Option<&'a str>,
    alias: Option<&'a str>,
    status: Option<&'a SdkInstanceStatus>,
    service_role: Option<&'a str>,
}

impl Listed<'_> {
    fn into_instance(self) -> Instance {
        Instance {
            id: self.id.unwrap_or_default().to_owned(),
            arn: self.arn.unwrap_or_default().to_owned(),
            alias: self.alias.map(str::to_owned),
            status: self.status.map_or(InstanceStatus::Unknown, status),
            service_role: self
                .service_role
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            checked: false,
            storage: Observed::Unverified(Unverified::NotRead),
            domain: Observed::Unverified(Unverified::NotRead),
        }
    }
}

fn status(status: &SdkInstanceStatus) -> InstanceStatus {
    match status {
        SdkInstanceStatus::Active => InstanceStatus::Active,
        SdkInstanceStatus::CreationInProgress => InstanceStatus::CreationInProgress,
        SdkInstanceStatus::CreationFailed => InstanceStatus::CreationFailed,
        _ => InstanceStatus::Unknown,
    }
}

/// All storage configs of the types in [`STORAGE_TYPES`]: one paginated
/// call per type, as the API requires.
#[tracing::instrument(skip(aws))]
pub async fn storage_configs(
    aws: &Aws,
    instance_id: &str,
) -> Result<Vec<StorageConfig>, ReadError> {
    let mut configs = Vec::new();
    for resource_type in STORAGE_TYPES {
        let mut next_token = None;
        loop {
            aws.connect_pace
                .wait(ConnectApi::ListInstanceStorageConfigs)
                .await;
            let page = aws
                .connect
                .list_instance_storage_configs()
                .instance_id(instance_id)
                .resource_type(resource_type.clone())
                .set_next_token(next_token)
                .send()
                .await?;
            configs.extend(
                page.storage_configs()
                    .iter()
                    .map(|c| from_storage_config(resource_type.as_str(), c)),
            );
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
    }
    Ok(configs)
}

fn from_storage_config(resource_type: &str, config: &InstanceStorageConfig) -> StorageConfig {
    let key = config
        .s3_config()
        .and_then(|s3| s3.encryption_config())
        .or_else(|| config.kinesis_video_stream_config()?.encryption_config())
        .map(|e| e.key_id())
        .filter(|k| !k.is_empty());
    StorageConfig {
        resource_type: resource_type.to_owned(),
        association_id: config.association_id().unwrap_or_default().to_owned(),
        storage_type: config.storage_type().as_str().to_owned(),
        stream_arn: config
            .kinesis_stream_config()
            .map(|k| k.stream_arn().to_owned()),
        firehose_arn: config
            .kinesis_firehose_config()
            .map(|f| f.firehose_arn().to_owned()),
        kms_key: key.map(str::to_owned),
    }
}
