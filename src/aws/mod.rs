//! The AWS clients of one process, built once at start-up from the standard
//! AWS settings, and how their errors are judged. Shared by the inventory
//! (reads) and the alerts (SNS).

mod calls;
mod error;
mod fleet;
mod https;
mod pace;

use std::sync::Arc;
use std::time::Duration;

pub use calls::{CallCounts, CallTotals, Service, is_throttling};
pub use error::ReadError;
pub use fleet::{Fleet, Place, Reads};
pub use pace::{ConnectApi, ConnectPace, ConnectRates, Pace};

#[derive(Debug, Clone)]
pub struct Aws {
    pub connect: aws_sdk_connect::Client,
    pub profiles: aws_sdk_customerprofiles::Client,
    pub iam: aws_sdk_iam::Client,
    pub kms: aws_sdk_kms::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub sns: aws_sdk_sns::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sts: aws_sdk_sts::Client,
    pub securityhub: aws_sdk_securityhub::Client,
    /// Every request each client sent, for the pass's metrics.
    pub calls: Arc<CallCounts>,
    /// Every Amazon Connect request waits for a slot of its API here first.
    pub connect_pace: Arc<ConnectPace>,
    pub region: String,
    /// What the clients were built from: member accounts' clients derive
    /// from it (central mode).
    pub config: aws_config::SdkConfig,
}

/// Where the clients come from: the SDK's defaults (credentials,
/// `AWS_REGION`, `AWS_ENDPOINT_URL*`), optionally overridden.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub region: Option<String>,
    pub profile: Option<String>,
}

impl Aws {
    pub fn new(config: &aws_config::SdkConfig, connect_pace: ConnectPace) -> Self {
        Aws::counted(config, connect_pace, Arc::new(CallCounts::default()))
    }

    /// Clients whose requests add to `calls`.
    pub fn counted(
        config: &aws_config::SdkConfig,
        connect_pace: ConnectPace,
        calls: Arc<CallCounts>,
    ) -> Self {
        // Each client counts its requests through the same interceptor.
        macro_rules! client {
            ($sdk:ident, $service:ident) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(config)
                        .interceptor(calls.interceptor(Service::$service))
                        .build(),
                )
            };
        }
        Aws {
            connect: client!(aws_sdk_connect, Connect),
            profiles: client!(aws_sdk_customerprofiles, CustomerProfiles),
            iam: client!(aws_sdk_iam, Iam),
            kms: client!(aws_sdk_kms, Kms),
            kinesis: client!(aws_sdk_kinesis, Kinesis),
            firehose: client!(aws_sdk_firehose, Firehose),
            sns: client!(aws_sdk_sns, Sns),
            dynamodb: client!(aws_sdk_dynamodb, DynamoDb),
            sqs: client!(aws_sdk_sqs, Sqs),
            sts: client!(aws_sdk_sts, Sts),
            securityhub: client!(aws_sdk_securityhub, SecurityHub),
            calls,
            connect_pace: Arc::new(connect_pace),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            config: config.clone(),
        }
    }

    /// Loads the SDK configuration once; `None` when no Region is set.
    pub async fn load(source: Source, connect_pace: ConnectPace) -> Option<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts())
            .http_client(https::lazy_https_client());
        if let Some(profile) = source.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = source.region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let config = loader.load().await;
        config.region()?;
        Some(Aws::new(&config, connect_pace))
    }
}

impl Aws {
    /// The caller's ARN, to record who set a mute.
    pub async fn caller_arn(&self) -> Result<String, ReadError> {
        let identity = self.sts.get_caller_identity().send().await?;
        identity.arn().map(str::to_owned).ok_or(ReadError::NotFound)
    }
}

/// Timeouts so that no read can outlive a Lambda invocation; retries stay
/// the SDK's standard ones.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}
