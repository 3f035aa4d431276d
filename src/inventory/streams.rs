//! Kinesis and Firehose reads: how the streams that storage configs write
//! to are encrypted. A customer managed key there is a key the instance
//! depends on.

use aws_sdk_firehose::types::{DeliveryStreamEncryptionStatus, KeyType};
use aws_sdk_kinesis::types::EncryptionType;

use crate::aws::{Aws, ReadError};
use crate::model::StreamEncryption;

/// `DescribeStreamSummary`: the stream's KMS key, as the stream names it.
#[tracing::instrument(skip(aws))]
pub async fn kinesis_stream(aws: &Aws, stream_arn: &str) -> Result<StreamEncryption, ReadError> {
    let output = aws
        .kinesis
        .describe_stream_summary()
        .stream_arn(stream_arn)
        .send()
        .await?;
    let summary = output
        .stream_description_summary()
        .ok_or(ReadError::NotFound)?;
    let key = (summary.encryption_type() == Some(&EncryptionType::Kms))
        .then(|| summary.key_id())
        .flatten()
        .filter(|k| !k.is_empty());
    Ok(StreamEncryption {
        key: key.map(str::to_owned),
    })
}

/// `DescribeDeliveryStream`: the customer managed key of a Firehose stream
/// whose server-side encryption is on (or being turned on).
#[tracing::instrument(skip(aws))]
pub async fn firehose_stream(aws: &Aws, stream_arn: &str) -> Result<StreamEncryption, ReadError> {
    let name = stream_arn.rsplit('/').next().unwrap_or(stream_arn);
    let output = aws
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await?;
    let encryption = output
        .delivery_stream_description()
        .and_then(|d| d.delivery_stream_encryption_configuration());
    let key = encryption
        .filter(|e| e.key_type() == Some(&KeyType::CustomerManagedCmk))
        .filter(|e| {
            matches!(
                e.status(),
                Some(
                    DeliveryStreamEncryptionStatus::Enabled
                        | DeliveryStreamEncryptionStatus::Enabling
                )
            )
        })
        .and_then(|e| e.key_arn());
    Ok(StreamEncryption {
        key: key.map(str::to_owned),
    })
}
