//! A healthy account as `aws-smithy-mocks` rules (strict: a call no rule
//! matches fails the test), and helpers to drift it. Shared by the
//! inventory and guard tests.
#![allow(dead_code)]

use aws_sdk_connect::operation::describe_instance::DescribeInstanceOutput;
use aws_sdk_connect::operation::list_instance_storage_configs::ListInstanceStorageConfigsOutput;
use aws_sdk_connect::operation::list_instances::ListInstancesOutput;
use aws_sdk_connect::types::{
    EncryptionConfig, EncryptionType, InstanceStatus, InstanceStorageConfig,
    InstanceStorageResourceType, InstanceSummary, KinesisStreamConfig, S3Config, StorageType,
};
use aws_sdk_customerprofiles::operation::get_domain::GetDomainOutput;
use aws_sdk_customerprofiles::operation::list_account_integrations::ListAccountIntegrationsOutput;
use aws_sdk_customerprofiles::operation::list_domains::ListDomainsOutput;
use aws_sdk_customerprofiles::types::{ListDomainItem, ListIntegrationItem};
use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::operation::get_role_policy::GetRolePolicyOutput;
use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
use aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput;
use aws_sdk_iam::types::AttachedPolicy;
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::operation::list_grants::ListGrantsOutput;
use aws_sdk_kms::types::{GrantListEntry, GrantOperation, KeyManagerType, KeyMetadata, KeyState};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use connect_slr_guard::inventory::{Aws, Pace};

pub const INSTANCE_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const INSTANCE_ARN: &str =
    "arn:aws:connect:eu-west-2:111122223333:instance/11111111-2222-3333-4444-555555555555";
pub const ROLE_NAME: &str = "AWSServiceRoleForAmazonConnect_AbCdEf123456";
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_AbCdEf123456";
pub const DOMAIN: &str = "amazon-connect-acme";
pub const DOMAIN_KEY: &str =
    "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
pub const STORAGE_KEY: &str =
    "arn:aws:kms:eu-west-2:111122223333:key/22222222-aaaa-bbbb-cccc-222222222222";
pub const STREAM_ARN: &str = "arn:aws:kinesis:eu-west-2:111122223333:stream/acme-ctr";
/// As IAM sends it: URL-encoded.
pub const TRUST_POLICY: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22connect.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D";

/// One account's rules per service; tests put overrides first (first match wins).
pub struct Account {
    pub connect: Vec<Rule>,
    pub profiles: Vec<Rule>,
    pub iam: Vec<Rule>,
    pub kms: Vec<Rule>,
    pub sns: Vec<Rule>,
}

pub fn summary(id: &str) -> InstanceSummary {
    InstanceSummary::builder()
        .id(id)
        .arn(format!(
            "arn:aws:connect:eu-west-2:111122223333:instance/{id}"
        ))
        .instance_alias("acme")
        .service_role(ROLE_ARN)
        .instance_status(InstanceStatus::Active)
        .build()
}

fn storage_for(resource_type: &InstanceStorageResourceType) -> Vec<InstanceStorageConfig> {
    match resource_type {
        InstanceStorageResourceType::ContactTraceRecords => vec![
            InstanceStorageConfig::builder()
                .association_id("ctr-1")
                .storage_type(StorageType::KinesisStream)
                .kinesis_stream_config(
                    KinesisStreamConfig::builder()
                        .stream_arn(STREAM_ARN)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        ],
        InstanceStorageResourceType::CallRecordings => vec![
            InstanceStorageConfig::builder()
                .association_id("rec-1")
                .storage_type(StorageType::S3)
                .s3_config(
                    S3Config::builder()
                        .bucket_name("acme-recordings")
                        .bucket_prefix("connect")
                        .encryption_config(
                            EncryptionConfig::builder()
                                .encryption_type(EncryptionType::Kms)
                                .key_id(STORAGE_KEY)
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        ],
        _ => Vec::new(),
    }
}

fn grant(id: &str, ops: &[GrantOperation]) -> GrantListEntry {
    let mut g = GrantListEntry::builder()
        .grant_id(id)
        .grantee_principal(ROLE_ARN);
    for op in ops {
        g = g.operations(op.clone());
    }
    g.build()
}

pub fn key_metadata(arn: &str, state: KeyState) -> KeyMetadata {
    KeyMetadata::builder()
        .key_id(arn.rsplit('/').next().unwrap())
        .arn(arn)
        .key_state(state)
        .key_manager(KeyManagerType::Customer)
        .build()
        .unwrap()
}

impl Account {
    /// One ACTIVE instance with a healthy SLR, a Kinesis CTR stream, KMS
    /// encrypted recordings and an `amazon-connect-` domain on a CMK.
    pub fn healthy() -> Self {
        let connect = vec![
            mock!(aws_sdk_connect::Client::describe_instance).then_output(|| {
                let s = summary(INSTANCE_ID);
                DescribeInstanceOutput::builder()
                    .instance(
                        aws_sdk_connect::types::Instance::builder()
                            .id(s.id().unwrap())
                            .arn(s.arn().unwrap())
                            .instance_alias("acme")
                            .service_role(ROLE_ARN)
                            .instance_status(InstanceStatus::Active)
                            .build(),
                    )
                    .build()
            }),
            mock!(aws_sdk_connect::Client::list_instances).then_output(|| {
                ListInstancesOutput::builder()
                    .instance_summary_list(summary(INSTANCE_ID))
                    .build()
            }),
            mock!(aws_sdk_connect::Client::list_instance_storage_configs).then_compute_output(
                |req| {
                    ListInstanceStorageConfigsOutput::builder()
                        .set_storage_configs(Some(storage_for(req.resource_type().unwrap())))
                        .build()
                },
            ),
        ];
        let profiles = vec![
            mock!(aws_sdk_customerprofiles::Client::list_account_integrations).then_compute_output(
                |req| {
                    let uri = req.uri().unwrap().to_owned();
                    let items = (uri == INSTANCE_ARN).then(|| {
                        ListIntegrationItem::builder()
                            .domain_name(DOMAIN)
                            .uri(uri)
                            .created_at(DateTime::from_secs(0))
                            .last_updated_at(DateTime::from_secs(0))
                            .build()
                            .unwrap()
                    });
                    ListAccountIntegrationsOutput::builder()
                        .set_items(items.map(|i| vec![i]))
                        .build()
                },
            ),
            mock!(aws_sdk_customerprofiles::Client::get_domain).then_output(|| {
                GetDomainOutput::builder()
                    .domain_name(DOMAIN)
                    .default_encryption_key(DOMAIN_KEY)
                    .created_at(DateTime::from_secs(1_700_000_000))
                    .last_updated_at(DateTime::from_secs(1_700_000_000))
                    .build()
                    .unwrap()
            }),
            mock!(aws_sdk_customerprofiles::Client::list_domains).then_output(|| {
                ListDomainsOutput::builder()
                    .items(
                        ListDomainItem::builder()
                            .domain_name(DOMAIN)
                            .created_at(DateTime::from_secs(0))
                            .last_updated_at(DateTime::from_secs(0))
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
        ];
        let iam = vec![
            mock!(aws_sdk_iam::Client::get_role).then_output(|| {
                GetRoleOutput::builder()
                    .role(
                        aws_sdk_iam::types::Role::builder()
                            .path("/aws-service-role/connect.amazonaws.com/")
                            .role_name(ROLE_NAME)
                            .role_id("AROAEXAMPLE")
                            .arn(ROLE_ARN)
                            .create_date(DateTime::from_secs(0))
                            .assume_role_policy_document(TRUST_POLICY)
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
            mock!(aws_sdk_iam::Client::list_attached_role_policies).then_output(|| {
                ListAttachedRolePoliciesOutput::builder()
                    .attached_policies(
                        AttachedPolicy::builder()
                            .policy_name("AmazonConnectServiceLinkedRolePolicy")
                            .policy_arn("arn:aws:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy")
                            .build(),
                    )
                    .build()
            }),
            mock!(aws_sdk_iam::Client::list_role_policies).then_output(|| {
                ListRolePoliciesOutput::builder()
                    .policy_names("ConnectKinesisStream")
                    .build()
                    .unwrap()
            }),
            mock!(aws_sdk_iam::Client::get_role_policy).then_output(|| {
                let doc = format!(
                    r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["kinesis:PutRecord","kinesis:PutRecords"],"Resource":"{STREAM_ARN}"}}]}}"#
                );
                GetRolePolicyOutput::builder()
                    .role_name(ROLE_NAME)
                    .policy_name("ConnectKinesisStream")
                    .policy_document(percent_encode(&doc))
                    .build()
                    .unwrap()
            }),
        ];
        let kms = vec![
            mock!(aws_sdk_kms::Client::describe_key).then_compute_output(|req| {
                let arn = if req.key_id().unwrap().contains("22222222") {
                    STORAGE_KEY
                } else {
                    DOMAIN_KEY
                };
                DescribeKeyOutput::builder()
                    .key_metadata(key_metadata(arn, KeyState::Enabled))
                    .build()
            }),
            mock!(aws_sdk_kms::Client::list_grants).then_output(|| {
                ListGrantsOutput::builder()
                    .grants(grant(
                        "g-1",
                        &[GrantOperation::Decrypt, GrantOperation::GenerateDataKey],
                    ))
                    .truncated(false)
                    .build()
            }),
        ];
        Account {
            connect,
            profiles,
            iam,
            kms,
            sns: Vec::new(),
        }
    }

    pub fn aws(&self) -> Aws {
        Aws {
            connect: mock_client!(aws_sdk_connect, RuleMode::MatchAny, &self.connect),
            profiles: mock_client!(aws_sdk_customerprofiles, RuleMode::MatchAny, &self.profiles),
            iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &self.iam),
            kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, &self.kms),
            sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, &self.sns),
            connect_pace: std::sync::Arc::new(Pace::new(1000.0, 1000)),
            region: "eu-west-2".to_owned(),
        }
    }

    /// Calls made, over every rule of every service.
    pub fn calls(&self) -> usize {
        [
            &self.connect,
            &self.profiles,
            &self.iam,
            &self.kms,
            &self.sns,
        ]
        .iter()
        .flat_map(|rules| rules.iter())
        .map(Rule::num_calls)
        .sum()
    }
}

/// RFC 3986 encoding as IAM applies it to policy documents.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn calls_of(rules: &[Rule]) -> Vec<usize> {
    rules.iter().map(Rule::num_calls).collect()
}
