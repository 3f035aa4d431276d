//! What every integration test shares: the healthy account as a snapshot
//! fixture and as `aws-smithy-mocks` rules per service (strict: a call no
//! rule matches fails the test), and helpers to drift it.

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
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryOutput;
use aws_sdk_kinesis::types::{
    EncryptionType as StreamEncryptionType, StreamDescriptionSummary, StreamStatus,
};
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::operation::get_key_policy::GetKeyPolicyOutput;
use aws_sdk_kms::operation::list_grants::ListGrantsOutput;
use aws_sdk_kms::types::{GrantListEntry, GrantOperation, KeyManagerType, KeyMetadata, KeyState};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use connect_slr_guard::aws::{Aws, ConnectPace, ConnectRates};
use connect_slr_guard::config::Settings;
use connect_slr_guard::finding::{Finding, RuleId};
use connect_slr_guard::guard::{Delivery, Guard};
use connect_slr_guard::inventory::Options;
use connect_slr_guard::model::{Snapshot, Unverified};
use connect_slr_guard::report::PassReport;
use connect_slr_guard::trigger::{Scope, Trigger};
use serde_json::json;

pub const ACCOUNT: &str = "111122223333";
pub const TOPIC_ARN: &str = "arn:aws:sns:eu-west-2:111122223333:connect-slr-guard";
pub const INSTANCE_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const INSTANCE_ARN: &str =
    "arn:aws:connect:eu-west-2:111122223333:instance/11111111-2222-3333-4444-555555555555";
pub const ROLE_NAME: &str = "AWSServiceRoleForAmazonConnect_AbCdEf123456";
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_AbCdEf123456";
pub const DOMAIN: &str = "amazon-connect-acme";
/// The domain key's id, as events name it.
pub const DOMAIN_KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
pub const DOMAIN_KEY: &str =
    "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
pub const STORAGE_KEY: &str =
    "arn:aws:kms:eu-west-2:111122223333:key/22222222-aaaa-bbbb-cccc-222222222222";
pub const STREAM_ARN: &str = "arn:aws:kinesis:eu-west-2:111122223333:stream/acme-ctr";
/// The deletion task `events/iam-delete-service-linked-role.json` records.
pub const DELETION_TASK: &str = "task/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_AbCdEf123456/7d3f9a1e-4b2c-4e8f-9a6d-2c5b8e1f0a3d";
/// The key policy KMS gives a key by default: the account may delegate
/// through IAM; nobody is named.
pub const DEFAULT_KEY_POLICY: &str = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
/// As IAM sends it: URL-encoded.
pub const TRUST_POLICY: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22connect.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D";

/// The healthy account as the rules see it: `tests/fixtures/healthy-snapshot.json`.
/// `inventory::the_mocked_healthy_account_reads_as_the_fixture` ties it to [`Account::healthy`].
pub fn healthy_snapshot() -> Snapshot {
    serde_json::from_str(include_str!("../fixtures/healthy-snapshot.json")).expect("fixture parses")
}

/// The guard's settings with an alert topic, as the Lambda runs them.
pub fn settings_with_topic() -> Settings {
    let mut settings = Settings::parse(Default::default()).expect("defaults parse");
    settings.alert_topic_arn = Some(TOPIC_ARN.into());
    settings
}

/// The domain key's missing grant, as the rules report it.
pub fn grant_missing() -> Finding {
    Finding::new(
        RuleId::ProfilesKmsGrantMissing,
        Some(INSTANCE_ARN),
        DOMAIN_KEY,
    )
    .summary("KMS key has no grant for the SLR")
    .details(json!({"used_for": "Customer Profiles domain amazon-connect-acme"}))
    .remediation("aws kms create-grant ...")
}

/// A sweep of the mocked account through `guard`, sent as `delivery`.
pub async fn sweep(guard: &Guard, delivery: Delivery) -> PassReport {
    guard
        .run(
            Scope::Everything,
            Trigger::audit(),
            &Options::default(),
            delivery,
        )
        .await
        .expect("the pass runs")
}

/// A read that failed for `reason`.
pub fn failed(reason: &str) -> Unverified {
    Unverified::Failed(reason.to_owned())
}

/// One service's mock rules, each under the operation it answers. The first
/// rule that matches a request answers it, so overrides go in front.
#[derive(Default)]
pub struct Mocks(Vec<(&'static str, Rule)>);

impl Mocks {
    fn new(rules: Vec<(&'static str, Rule)>) -> Self {
        Mocks(rules)
    }

    /// Answers `operation` with `rule` before any rule already there.
    pub fn first(&mut self, operation: &'static str, rule: Rule) {
        self.0.insert(0, (operation, rule));
    }

    /// Requests `operation` received, over all its rules.
    pub fn calls(&self, operation: &str) -> usize {
        self.0
            .iter()
            .filter(|(op, _)| *op == operation)
            .map(|(_, rule)| rule.num_calls())
            .sum()
    }

    pub fn total(&self) -> usize {
        self.0.iter().map(|(_, rule)| rule.num_calls()).sum()
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.0.iter().map(|(_, rule)| rule)
    }
}

/// One account's mocks, per service.
pub struct Account {
    pub connect: Mocks,
    pub profiles: Mocks,
    pub iam: Mocks,
    pub kms: Mocks,
    pub kinesis: Mocks,
    pub firehose: Mocks,
    pub sns: Mocks,
    pub dynamodb: Mocks,
    pub securityhub: Mocks,
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

/// The SLR's grant on each key, as in the fixture.
fn grant_on(key_id: &str) -> GrantListEntry {
    if key_id.contains("22222222") {
        grant(
            "9f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100",
            &[
                GrantOperation::Encrypt,
                GrantOperation::Decrypt,
                GrantOperation::GenerateDataKey,
            ],
        )
    } else {
        grant(
            "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a1a",
            &[
                GrantOperation::Decrypt,
                GrantOperation::GenerateDataKey,
                GrantOperation::DescribeKey,
            ],
        )
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

/// A `DescribeKey` rule for one more customer managed key, named by its ARN
/// or by its id.
pub fn describe_key_as(arn: &'static str, state: KeyState) -> Rule {
    let id = arn.rsplit('/').next().unwrap();
    mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(move |r| r.key_id() == Some(arn) || r.key_id() == Some(id))
        .then_output(move || {
            DescribeKeyOutput::builder()
                .key_metadata(key_metadata(arn, state.clone()))
                .build()
        })
}

impl Account {
    /// One ACTIVE instance with a healthy SLR, a Kinesis CTR stream, KMS
    /// encrypted recordings and an `amazon-connect-` domain on a CMK.
    pub fn healthy() -> Self {
        let connect = vec![
            (
                "DescribeInstance",
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
            ),
            (
                "ListInstances",
                mock!(aws_sdk_connect::Client::list_instances).then_output(|| {
                    ListInstancesOutput::builder()
                        .instance_summary_list(summary(INSTANCE_ID))
                        .build()
                }),
            ),
            (
                "ListInstanceStorageConfigs",
                mock!(aws_sdk_connect::Client::list_instance_storage_configs).then_compute_output(
                    |req| {
                        ListInstanceStorageConfigsOutput::builder()
                            .set_storage_configs(Some(storage_for(req.resource_type().unwrap())))
                            .build()
                    },
                ),
            ),
        ];
        let profiles = vec![
            (
                "ListAccountIntegrations",
                mock!(aws_sdk_customerprofiles::Client::list_account_integrations)
                    .then_compute_output(|req| {
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
                    }),
            ),
            (
                "GetDomain",
                mock!(aws_sdk_customerprofiles::Client::get_domain).then_output(|| {
                    GetDomainOutput::builder()
                        .domain_name(DOMAIN)
                        .default_encryption_key(DOMAIN_KEY)
                        .created_at(DateTime::from_secs(1_700_000_000))
                        .last_updated_at(DateTime::from_secs(1_700_000_000))
                        .build()
                        .unwrap()
                }),
            ),
            (
                "ListDomains",
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
            ),
        ];
        let iam = vec![
            ("GetRole", mock!(aws_sdk_iam::Client::get_role).then_output(|| {
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
            })),
            ("ListAttachedRolePolicies", mock!(aws_sdk_iam::Client::list_attached_role_policies).then_output(|| {
                ListAttachedRolePoliciesOutput::builder()
                    .attached_policies(
                        AttachedPolicy::builder()
                            .policy_name("AmazonConnectServiceLinkedRolePolicy")
                            .policy_arn("arn:aws:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy")
                            .build(),
                    )
                    .build()
            })),
            ("ListRolePolicies", mock!(aws_sdk_iam::Client::list_role_policies).then_output(|| {
                ListRolePoliciesOutput::builder()
                    .policy_names("ConnectKinesisStream")
                    .build()
                    .unwrap()
            })),
            ("GetRolePolicy", mock!(aws_sdk_iam::Client::get_role_policy).then_output(|| {
                let doc = format!(
                    r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["kinesis:PutRecord","kinesis:PutRecords","kinesis:DescribeStream"],"Resource":"{STREAM_ARN}"}}]}}"#
                );
                GetRolePolicyOutput::builder()
                    .role_name(ROLE_NAME)
                    .policy_name("ConnectKinesisStream")
                    .policy_document(percent_encode(&doc))
                    .build()
                    .unwrap()
            })),
        ];
        let kms = vec![
            (
                "DescribeKey",
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
            ),
            (
                "GetKeyPolicy",
                mock!(aws_sdk_kms::Client::get_key_policy).then_output(|| {
                    GetKeyPolicyOutput::builder()
                        .policy_name("default")
                        .policy(DEFAULT_KEY_POLICY)
                        .build()
                }),
            ),
            (
                "ListGrants",
                mock!(aws_sdk_kms::Client::list_grants).then_compute_output(|req| {
                    ListGrantsOutput::builder()
                        .grants(grant_on(req.key_id().unwrap()))
                        .truncated(false)
                        .build()
                }),
            ),
        ];
        Account {
            connect: Mocks::new(connect),
            profiles: Mocks::new(profiles),
            iam: Mocks::new(iam),
            kms: Mocks::new(kms),
            kinesis: Mocks::new(vec![(
                "DescribeStreamSummary",
                mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| {
                    DescribeStreamSummaryOutput::builder()
                        .stream_description_summary(unencrypted_stream())
                        .build()
                }),
            )]),
            firehose: Mocks::default(),
            sns: Mocks::default(),
            dynamodb: Mocks::default(),
            securityhub: Mocks::default(),
        }
    }

    /// The healthy account with the SLR's managed policy detached: one finding.
    pub fn with_detached_policy() -> Account {
        let mut account = Account::healthy();
        account.iam.first(
            "ListAttachedRolePolicies",
            mock!(aws_sdk_iam::Client::list_attached_role_policies)
                .then_output(|| ListAttachedRolePoliciesOutput::builder().build()),
        );
        account
    }

    pub fn aws(&self) -> Aws {
        Aws {
            connect: mock_client!(aws_sdk_connect, RuleMode::MatchAny, self.connect.rules()),
            profiles: mock_client!(
                aws_sdk_customerprofiles,
                RuleMode::MatchAny,
                self.profiles.rules()
            ),
            iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, self.iam.rules()),
            kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, self.kms.rules()),
            kinesis: mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, self.kinesis.rules()),
            firehose: mock_client!(aws_sdk_firehose, RuleMode::MatchAny, self.firehose.rules()),
            sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, self.sns.rules()),
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, self.dynamodb.rules()),
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, Vec::<Rule>::new().iter()),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, Vec::<Rule>::new().iter()),
            securityhub: mock_client!(
                aws_sdk_securityhub,
                RuleMode::MatchAny,
                self.securityhub.rules()
            ),
            calls: std::sync::Arc::default(),
            connect_pace: std::sync::Arc::new(ConnectPace::new(&ConnectRates::all(1000.0), 1000)),
            region: "eu-west-2".to_owned(),
            config: aws_config::SdkConfig::builder().build(),
        }
    }

    /// Requests `operation` received, whichever service serves it.
    pub fn calls(&self, operation: &str) -> usize {
        self.services().map(|m| m.calls(operation)).sum()
    }

    /// Requests made, over every service.
    pub fn total_calls(&self) -> usize {
        self.services().map(Mocks::total).sum()
    }

    fn services(&self) -> impl Iterator<Item = &Mocks> {
        [
            &self.connect,
            &self.profiles,
            &self.iam,
            &self.kms,
            &self.kinesis,
            &self.firehose,
            &self.sns,
            &self.dynamodb,
            &self.securityhub,
        ]
        .into_iter()
    }
}

/// The CTR stream, as Kinesis describes it: no server-side encryption.
pub fn unencrypted_stream() -> StreamDescriptionSummary {
    StreamDescriptionSummary::builder()
        .stream_name("acme-ctr")
        .stream_arn(STREAM_ARN)
        .stream_status(StreamStatus::Active)
        .retention_period_hours(24)
        .stream_creation_timestamp(DateTime::from_secs(0))
        .set_enhanced_monitoring(Some(Vec::new()))
        .open_shard_count(1)
        .encryption_type(StreamEncryptionType::None)
        .build()
        .unwrap()
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
