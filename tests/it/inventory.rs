//! Inventory against `aws-smithy-mocks`: what a scope reads, how many calls
//! it makes, and how absence, denial and throttling land in the snapshot.

use aws_sdk_connect::operation::list_instances::ListInstancesOutput;
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::types::KeyState;
use aws_smithy_mocks::mock;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::ErrorMetadata;
use connect_slr_guard::finding::RuleId;
use connect_slr_guard::inventory::{Options, Progress, collect};
use connect_slr_guard::model::{Observed, Unverified};
use connect_slr_guard::rules::{RuleSettings, evaluate};
use connect_slr_guard::trigger::{RoleRef, Scope};

use super::support::*;

/// Storage types a healthy instance's reads cover, one `ListInstanceStorageConfigs`
/// each: the 10 that give the SLR work and the 3 real-time contact analysis
/// segment stream types.
const STORAGE_TYPES_READ: usize = 13;

fn rules_of(snapshot: &connect_slr_guard::model::Snapshot) -> Vec<RuleId> {
    evaluate(snapshot, &RuleSettings::default())
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

fn http(status: u16, body: &str) -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(body.to_owned()),
    )
}

#[tokio::test]
async fn instance_event_reads_only_that_instance_and_its_dependencies() {
    let account = Account::healthy();
    let snapshot = collect(
        &account.aws(),
        &Scope::Instance(INSTANCE_ID.into()),
        &Options::default(),
    )
    .await;

    assert_eq!(rules_of(&snapshot), vec![], "healthy account, no findings");
    let expected = [
        ("DescribeInstance", 1),
        ("ListInstances", 0),
        ("ListInstanceStorageConfigs", STORAGE_TYPES_READ),
        ("ListAccountIntegrations", 1),
        ("GetDomain", 1),
        ("ListDomains", 0),
        ("GetRole", 1),
        ("ListAttachedRolePolicies", 1),
        ("ListRolePolicies", 1),
        ("GetRolePolicy", 1),
        // The domain key and the storage key.
        ("DescribeKey", 2),
        ("ListGrants", 2),
        ("GetKeyPolicy", 2),
        // The CTR stream's encryption.
        ("DescribeStreamSummary", 1),
    ];
    for (operation, calls) in expected {
        assert_eq!(account.calls(operation), calls, "{operation}");
    }
    assert_eq!(account.total_calls(), 27);

    let instance = &snapshot.instances[0];
    assert!(instance.checked);
    assert_eq!(instance.domain, Observed::Found(Some(DOMAIN.into())));
    let storage = instance.storage.found().unwrap();
    assert_eq!(storage.len(), 2);
    assert_eq!(storage[0].stream_arn.as_deref(), Some(STREAM_ARN));
    assert_eq!(storage[1].kms_key.as_deref(), Some(STORAGE_KEY));
    let role = snapshot.roles[ROLE_ARN].found().unwrap();
    assert_eq!(
        role.trust_policy["Statement"][0]["Principal"]["Service"],
        "connect.amazonaws.com"
    );
    assert_eq!(
        role.inline_policies[0].document["Statement"][0]["Resource"],
        STREAM_ARN
    );
}

#[tokio::test]
async fn the_mocked_healthy_account_reads_as_the_fixture() {
    let account = Account::healthy();
    let snapshot = collect(&account.aws(), &Scope::Everything, &Options::default()).await;
    assert_eq!(
        serde_json::to_value(&snapshot).unwrap(),
        serde_json::to_value(healthy_snapshot()).unwrap(),
        "the mocks and tests/fixtures/healthy-snapshot.json describe one account"
    );
}

#[tokio::test]
async fn sweep_follows_every_page_and_judges_cross_domain_exposure() {
    let mut account = Account::healthy();
    let second = "99999999-2222-3333-4444-555555555555";
    account.connect.first(
        "ListInstances",
        mock!(aws_sdk_connect::Client::list_instances)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                ListInstancesOutput::builder()
                    .instance_summary_list(summary(INSTANCE_ID))
                    .next_token("page-2")
                    .build()
            }),
    );
    account.connect.first(
        "ListInstances",
        mock!(aws_sdk_connect::Client::list_instances)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(move || {
                ListInstancesOutput::builder()
                    .instance_summary_list(summary(second))
                    .build()
            }),
    );
    let reported = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = reported.clone();
    let opts = Options {
        progress: Some(Progress(std::sync::Arc::new(move |done, total| {
            log.lock().unwrap().push((done, total))
        }))),
        ..Options::default()
    };
    let snapshot = collect(&account.aws(), &Scope::Everything, &opts).await;

    assert_eq!(snapshot.instances.len(), 2, "both pages read");
    assert_eq!(*reported.lock().unwrap(), vec![(1, 2), (2, 2)], "progress");
    assert_eq!(account.calls("ListInstances"), 2);
    // The second instance has no domain, so the managed policy lets it
    // reach amazon-connect-acme: exposure.
    assert_eq!(
        rules_of(&snapshot),
        vec![RuleId::ProfilesCrossDomainExposure]
    );
    // The shared role is read once although two instances use it.
    assert_eq!(account.calls("GetRole"), 1);
}

#[tokio::test]
async fn deleted_role_is_a_confirmed_absence() {
    let mut account = Account::healthy();
    let no_such_entity = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role with name AWSServiceRoleForAmazonConnect_AbCdEf123456 cannot be found.</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
    account.iam.first(
        "GetRole",
        mock!(aws_sdk_iam::Client::get_role).then_http_response(move || http(404, no_such_entity)),
    );
    let snapshot = collect(
        &account.aws(),
        &Scope::Role(ROLE_NAME.into()),
        &Options::default(),
    )
    .await;

    assert_eq!(snapshot.roles[ROLE_ARN], Observed::Absent);
    assert_eq!(rules_of(&snapshot), vec![RuleId::ConnectSlrMissing]);
    assert_eq!(account.iam.total(), 1, "no reads of a role that is gone");
}

#[tokio::test]
async fn access_denied_on_one_read_is_incomplete_and_the_rest_goes_on() {
    let mut account = Account::healthy();
    account.connect.first(
        "ListInstanceStorageConfigs",
        mock!(aws_sdk_connect::Client::list_instance_storage_configs).then_http_response(|| {
            let mut r = http(403, r#"{"message":"User is not authorized to perform connect:ListInstanceStorageConfigs"}"#);
            r.headers_mut().insert("x-amzn-errortype", "AccessDeniedException");
            r
        }),
    );
    account.kms.first(
        "ListGrants",
        mock!(aws_sdk_kms::Client::list_grants).then_error(|| {
            aws_sdk_kms::operation::list_grants::ListGrantsError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .build(),
            )
        }),
    );
    let snapshot = collect(
        &account.aws(),
        &Scope::Instance(INSTANCE_ID.into()),
        &Options::default(),
    )
    .await;

    let Some(Unverified::Failed(reason)) = snapshot.instances[0].storage.unverified() else {
        panic!(
            "storage should be unverified: {:?}",
            snapshot.instances[0].storage
        );
    };
    assert!(reason.starts_with("AccessDeniedException"), "{reason}");
    let findings = evaluate(&snapshot, &RuleSettings::default());
    let rules: Vec<RuleId> = findings.iter().map(|f| f.rule).collect();
    // Storage unreadable (one), domain key grants throttled (one); the role
    // and the domain were still verified.
    assert_eq!(
        rules,
        vec![RuleId::CheckIncomplete, RuleId::CheckIncomplete]
    );
    assert!(
        findings[1].summary.contains("ThrottlingException"),
        "{}",
        findings[1].summary
    );
    assert_eq!(account.calls("GetRole"), 1);
}

#[tokio::test]
async fn listing_failure_is_reported_not_swallowed() {
    let mut account = Account::healthy();
    account.connect.first(
        "ListInstances",
        mock!(aws_sdk_connect::Client::list_instances).then_http_response(|| {
            let mut r = http(429, r#"{"message":"Rate exceeded"}"#);
            r.headers_mut()
                .insert("x-amzn-errortype", "ThrottlingException");
            r
        }),
    );
    let snapshot = collect(&account.aws(), &Scope::Everything, &Options::default()).await;
    assert_eq!(rules_of(&snapshot), vec![RuleId::CheckIncomplete]);
    assert!(
        snapshot.incomplete[0]
            .reason
            .to_string()
            .contains("ThrottlingException")
    );
}

#[tokio::test]
async fn key_event_checks_only_instances_that_use_the_key() {
    let mut account = Account::healthy();
    account.kms.first(
        "DescribeKey",
        mock!(aws_sdk_kms::Client::describe_key)
            .match_requests(|r| r.key_id() == Some(DOMAIN_KEY_ID))
            .then_output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(key_metadata(DOMAIN_KEY, KeyState::Disabled))
                    .build()
            }),
    );
    let by_arn = mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(|r| r.key_id() == Some(DOMAIN_KEY))
        .then_output(|| {
            DescribeKeyOutput::builder()
                .key_metadata(key_metadata(DOMAIN_KEY, KeyState::Disabled))
                .build()
        });
    account.kms.first("DescribeKey", by_arn.clone());
    let key_id = Scope::Key(DOMAIN_KEY_ID.into());
    let snapshot = collect(&account.aws(), &key_id, &Options::default()).await;
    assert!(
        snapshot.instances[0].checked,
        "the domain key resolves to the event's key id"
    );
    assert_eq!(rules_of(&snapshot), vec![RuleId::KmsKeyUnusable]);
    assert_eq!(
        (account.calls("DescribeKey"), by_arn.num_calls()),
        (2, 0),
        "the event's key (and the storage key) described once each, not again by its ARN"
    );

    let other = Scope::Key("arn:aws:kms:eu-west-2:111122223333:key/unrelated".into());
    let mut account = Account::healthy();
    account.kms.first(
        "DescribeKey",
        mock!(aws_sdk_kms::Client::describe_key)
            .match_requests(|r| r.key_id().is_some_and(|k| k.ends_with("unrelated")))
            .then_http_response(|| {
                http(
                    400,
                    r#"{"__type":"NotFoundException","message":"Key not found"}"#,
                )
            }),
    );
    let snapshot = collect(&account.aws(), &other, &Options::default()).await;
    assert!(!snapshot.instances[0].checked);
    assert_eq!(
        rules_of(&snapshot),
        vec![],
        "a key nobody uses is no finding"
    );
    assert_eq!(
        account.iam.total(),
        0,
        "no role reads for unrelated instances"
    );
}

#[tokio::test]
async fn deleted_instance_is_nothing_to_check() {
    let mut account = Account::healthy();
    account.connect.first(
        "DescribeInstance",
        mock!(aws_sdk_connect::Client::describe_instance).then_http_response(|| {
            let mut r = http(404, r#"{"message":"Instance not found"}"#);
            r.headers_mut()
                .insert("x-amzn-errortype", "ResourceNotFoundException");
            r
        }),
    );
    let snapshot = collect(
        &account.aws(),
        &Scope::Instance(INSTANCE_ID.into()),
        &Options::default(),
    )
    .await;
    assert!(snapshot.instances.is_empty());
    assert_eq!(rules_of(&snapshot), vec![]);
    assert_eq!(account.total_calls(), 1);
}

#[tokio::test]
async fn deadline_reached_reports_what_was_not_read() {
    let account = Account::healthy();
    let opts = Options {
        deadline: Some(tokio::time::Instant::now()),
        ..Options::default()
    };
    let snapshot = collect(&account.aws(), &Scope::Everything, &opts).await;
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert!(!findings.is_empty());
    assert!(
        findings.iter().all(|f| f.rule == RuleId::CheckIncomplete),
        "{findings:?}"
    );
    assert!(findings[0].summary.contains("deadline"));
}

#[tokio::test]
async fn key_event_on_an_aws_managed_key_costs_one_kms_read() {
    let mut account = Account::healthy();
    account.kms.first(
        "DescribeKey",
        mock!(aws_sdk_kms::Client::describe_key).then_output(|| {
            let mut metadata = key_metadata(
                "arn:aws:kms:eu-west-2:111122223333:key/aws-ebs",
                KeyState::Enabled,
            );
            metadata.key_manager = Some(aws_sdk_kms::types::KeyManagerType::Aws);
            DescribeKeyOutput::builder().key_metadata(metadata).build()
        }),
    );
    let scope = Scope::Key("arn:aws:kms:eu-west-2:111122223333:key/aws-ebs".into());
    let snapshot = collect(&account.aws(), &scope, &Options::default()).await;
    assert_eq!(rules_of(&snapshot), vec![]);
    assert_eq!(
        account.total_calls(),
        1,
        "no Connect sweep for a key no rule applies to"
    );
}

#[tokio::test]
async fn a_seed_shuffles_the_sweep_order_so_a_cut_off_tail_moves() {
    let mut account = Account::healthy();
    let ids: Vec<String> = (0..8)
        .map(|i| format!("{i:08}-2222-3333-4444-555555555555"))
        .collect();
    let listed = ids.clone();
    account.connect.first(
        "ListInstances",
        mock!(aws_sdk_connect::Client::list_instances).then_output(move || {
            ListInstancesOutput::builder()
                .set_instance_summary_list(Some(listed.iter().map(|id| summary(id)).collect()))
                .build()
        }),
    );
    let order = |seed| {
        let aws = account.aws();
        async move {
            let opts = Options {
                order_seed: seed,
                ..Options::default()
            };
            let snapshot = collect(&aws, &Scope::Everything, &opts).await;
            snapshot
                .instances
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(order(None).await, ids, "no seed: the API's order");
    let first = order(Some(1)).await;
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "a permutation");
    assert_eq!(order(Some(1)).await, first, "the same seed, the same order");
    assert_ne!(order(Some(2)).await, first, "another hour, another order");
}

fn throttled(body: &str) -> HttpResponse {
    let mut r = http(429, body);
    r.headers_mut()
        .insert("x-amzn-errortype", "ThrottlingException");
    r
}

#[tokio::test]
async fn key_event_reports_an_instance_whose_storage_could_not_be_read() {
    let mut account = Account::healthy();
    account.connect.first(
        "ListInstanceStorageConfigs",
        mock!(aws_sdk_connect::Client::list_instance_storage_configs)
            .then_http_response(|| throttled(r#"{"message":"Rate exceeded"}"#)),
    );
    let snapshot = collect(
        &account.aws(),
        &Scope::Key(STORAGE_KEY.into()),
        &Options::default(),
    )
    .await;
    assert!(
        snapshot.instances[0].checked,
        "its storage may use the key: it cannot be ruled out"
    );
    assert_eq!(rules_of(&snapshot), vec![RuleId::CheckIncomplete]);
}

#[tokio::test]
async fn domain_event_reports_an_instance_whose_link_could_not_be_read() {
    let mut account = Account::healthy();
    account.profiles.first(
        "ListAccountIntegrations",
        mock!(aws_sdk_customerprofiles::Client::list_account_integrations).then_http_response(
            || {
                let mut r = http(500, r#"{"message":"internal"}"#);
                r.headers_mut()
                    .insert("x-amzn-errortype", "InternalServerException");
                r
            },
        ),
    );
    let snapshot = collect(
        &account.aws(),
        &Scope::Domain(DOMAIN.into()),
        &Options::default(),
    )
    .await;
    assert_eq!(rules_of(&snapshot), vec![RuleId::CheckIncomplete]);
}

#[tokio::test]
async fn a_sweep_that_cannot_list_domains_says_so() {
    let mut account = Account::healthy();
    account.profiles.first(
        "ListDomains",
        mock!(aws_sdk_customerprofiles::Client::list_domains)
            .then_http_response(|| throttled(r#"{"message":"Rate exceeded"}"#)),
    );
    let snapshot = collect(&account.aws(), &Scope::Everything, &Options::default()).await;
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].rule, RuleId::CheckIncomplete);
    assert_eq!(
        findings[0].resource_arn,
        "arn:aws:profile:eu-west-2:111122223333:domains/*"
    );
}

#[tokio::test]
async fn a_role_event_finds_its_instance_whatever_the_case() {
    let account = Account::healthy();
    let scope = Scope::Role(ROLE_NAME.to_ascii_uppercase().as_str().into());
    let snapshot = collect(&account.aws(), &scope, &Options::default()).await;
    assert_eq!(
        snapshot.instances.len(),
        1,
        "IAM role names are case-insensitive"
    );
    assert!(snapshot.instances[0].checked);
}

#[tokio::test]
async fn a_role_being_deleted_is_missing_though_it_can_still_be_read() {
    let mut account = Account::healthy();
    account.iam.first(
        "GetServiceLinkedRoleDeletionStatus",
        mock!(aws_sdk_iam::Client::get_service_linked_role_deletion_status)
            .match_requests(|r| r.deletion_task_id() == Some(DELETION_TASK))
            .then_output(|| {
                aws_sdk_iam::operation::get_service_linked_role_deletion_status::GetServiceLinkedRoleDeletionStatusOutput::builder()
                    .status(aws_sdk_iam::types::DeletionTaskStatusType::InProgress)
                    .build()
                    .unwrap()
            }),
    );
    let scope = Scope::Role(RoleRef {
        name: ROLE_NAME.into(),
        deletion_task: Some(DELETION_TASK.into()),
    });
    let snapshot = collect(&account.aws(), &scope, &Options::default()).await;
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].rule, RuleId::ConnectSlrMissing);
    assert_eq!(findings[0].details["deletion_task"], DELETION_TASK);
    assert_eq!(account.calls("GetServiceLinkedRoleDeletionStatus"), 1);
    assert_eq!(account.calls("GetRole"), 1, "the role was still there");
}

#[tokio::test]
async fn a_key_event_on_a_stream_key_checks_the_instance_that_writes_to_it() {
    const STREAM_KEY: &str =
        "arn:aws:kms:eu-west-2:111122223333:key/33333333-aaaa-bbbb-cccc-333333333333";
    let mut account = Account::healthy();
    account.kinesis.first(
        "DescribeStreamSummary",
        mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| {
            let mut summary = unencrypted_stream();
            summary.encryption_type = Some(aws_sdk_kinesis::types::EncryptionType::Kms);
            summary.key_id = Some("33333333-aaaa-bbbb-cccc-333333333333".into());
            aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryOutput::builder()
                .stream_description_summary(summary)
                .build()
        }),
    );
    account.kms.first(
        "DescribeKey",
        describe_key_as(STREAM_KEY, KeyState::Enabled),
    );
    account.kms.first(
        "ListGrants",
        mock!(aws_sdk_kms::Client::list_grants)
            .match_requests(|r| r.key_id() == Some(STREAM_KEY))
            .then_output(|| {
                aws_sdk_kms::operation::list_grants::ListGrantsOutput::builder()
                    .truncated(false)
                    .build()
            }),
    );
    let snapshot = collect(
        &account.aws(),
        &Scope::Key(STREAM_KEY.into()),
        &Options::default(),
    )
    .await;
    assert!(
        snapshot.instances[0].checked,
        "it writes to a stream on the key"
    );
    assert_eq!(rules_of(&snapshot), vec![RuleId::StorageKmsGrantMissing]);
}

#[tokio::test]
async fn a_complete_key_index_spares_connect_a_key_event_about_an_unused_key() {
    use connect_slr_guard::model::KeyIndex;
    let index = |complete| KeyIndex {
        complete,
        users: std::collections::BTreeMap::from([(
            INSTANCE_ARN.to_owned(),
            std::collections::BTreeSet::from([DOMAIN_KEY.to_owned(), STORAGE_KEY.to_owned()]),
        )]),
    };
    let unused = "arn:aws:kms:eu-west-2:111122223333:key/44444444-aaaa-bbbb-cccc-444444444444";
    let mut account = Account::healthy();
    account
        .kms
        .first("DescribeKey", describe_key_as(unused, KeyState::Enabled));
    let opts = Options {
        key_index: Some(index(true)),
        ..Options::default()
    };
    let snapshot = collect(&account.aws(), &Scope::Key(unused.into()), &opts).await;
    assert!(snapshot.instances.is_empty());
    assert_eq!(account.total_calls(), 1, "one DescribeKey, no Connect call");

    let account = Account::healthy();
    let by_id = Scope::Key(DOMAIN_KEY_ID.into());
    let snapshot = collect(&account.aws(), &by_id, &opts).await;
    assert!(
        snapshot.instances[0].checked,
        "the index knows the key by its ARN"
    );

    let mut account = Account::healthy();
    account
        .kms
        .first("DescribeKey", describe_key_as(unused, KeyState::Enabled));
    let incomplete = Options {
        key_index: Some(index(false)),
        ..Options::default()
    };
    collect(&account.aws(), &Scope::Key(unused.into()), &incomplete).await;
    assert_eq!(
        account.calls("ListInstances"),
        1,
        "an incomplete index is not trusted"
    );
}
