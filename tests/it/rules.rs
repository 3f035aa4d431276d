//! Rules, table-driven: each case starts from the healthy snapshot fixture,
//! applies one drift, and names exactly the findings it must produce.

use connect_slr_guard::finding::RuleId::{self, *};
use connect_slr_guard::model::{
    DeletionStatus, Grant, InstanceStatus, KeyState, Observed, SlrDeletion, Snapshot,
    StreamEncryption, Unverified,
};
use connect_slr_guard::rules::{RuleSettings, evaluate};
use serde_json::json;

use super::support::{
    DELETION_TASK, DOMAIN_KEY, INSTANCE_ARN, ROLE_ARN, STORAGE_KEY, STREAM_ARN, failed,
    healthy_snapshot as healthy,
};

fn rules_of(snapshot: &Snapshot) -> Vec<RuleId> {
    let mut rules: Vec<RuleId> = evaluate(snapshot, &RuleSettings::default())
        .into_iter()
        .map(|f| f.rule)
        .collect();
    rules.sort();
    rules
}

fn role(s: &mut Snapshot) -> &mut connect_slr_guard::model::Role {
    match s.roles.get_mut(ROLE_ARN) {
        Some(Observed::Found(role)) => role,
        _ => panic!("fixture has the role"),
    }
}

fn key<'a>(s: &'a mut Snapshot, arn: &str) -> &'a mut connect_slr_guard::model::Key {
    match s.keys.get_mut(arn) {
        Some(Observed::Found(key)) => key,
        _ => panic!("fixture has the key"),
    }
}

fn grants<'a>(s: &'a mut Snapshot, arn: &str) -> &'a mut Vec<Grant> {
    match &mut key(s, arn).grants {
        Some(Observed::Found(grants)) => grants,
        _ => panic!("fixture has grants"),
    }
}

/// Points the call recordings' storage config at `arn`.
fn recordings_key(s: &mut Snapshot, arn: &str) {
    let Observed::Found(configs) = &mut s.instances[0].storage else {
        panic!("fixture has storage configs")
    };
    let recordings = configs
        .iter_mut()
        .find(|c| c.resource_type == "CALL_RECORDINGS")
        .expect("fixture records calls");
    recordings.kms_key = Some(arn.into());
}

const STREAM_KEY: &str =
    "arn:aws:kms:eu-west-2:111122223333:key/33333333-aaaa-bbbb-cccc-333333333333";

/// A customer managed key at `state`, with a grant of `operations` to the SLR.
fn add_key(s: &mut Snapshot, state: KeyState, operations: &[&str]) {
    let mut key = key(s, STORAGE_KEY).clone();
    key.arn = STREAM_KEY.into();
    key.state = state;
    key.grants = Some(Observed::Found(if operations.is_empty() {
        vec![]
    } else {
        vec![Grant {
            id: "g-stream".into(),
            grantee: ROLE_ARN.into(),
            operations: operations.iter().map(|o| o.to_string()).collect(),
        }]
    }));
    s.keys.insert(STREAM_KEY.into(), Observed::Found(key));
}

/// Encrypts the CTR stream with a customer managed key.
fn encrypt_ctr_stream(s: &mut Snapshot, state: KeyState, operations: &[&str]) {
    add_key(s, state, operations);
    s.streams.insert(
        STREAM_ARN.into(),
        Observed::Found(StreamEncryption {
            key: Some(STREAM_KEY.into()),
        }),
    );
}

/// Agent events go to a Firehose encrypted with a customer managed key
/// that has no grant for the SLR.
fn firehose_on_key(s: &mut Snapshot, state: KeyState) {
    add_key(s, state, &[]);
    let firehose = "arn:aws:firehose:eu-west-2:111122223333:deliverystream/agent-events";
    let Observed::Found(configs) = &mut s.instances[0].storage else {
        panic!("fixture has storage configs")
    };
    let mut agent_events = configs[0].clone();
    agent_events.resource_type = "AGENT_EVENTS".into();
    agent_events.stream_arn = None;
    agent_events.firehose_arn = Some(firehose.into());
    configs.push(agent_events);
    role(s).inline_policies[0].document["Statement"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Effect": "Allow", "Action": ["firehose:PutRecord", "firehose:PutRecordBatch"], "Resource": firehose}));
    s.streams.insert(
        firehose.into(),
        Observed::Found(StreamEncryption {
            key: Some(STREAM_KEY.into()),
        }),
    );
}

/// Adds `statement` to the key's policy.
fn key_policy_statement(s: &mut Snapshot, arn: &str, statement: serde_json::Value) {
    let Some(Observed::Found(policy)) = &mut key(s, arn).policy else {
        panic!("fixture has the key policy")
    };
    policy["Statement"].as_array_mut().unwrap().push(statement);
}

/// An event started deleting the SLR; the task is at `status`.
fn deleting(s: &mut Snapshot, status: Observed<DeletionStatus>) {
    s.slr_deletions.push(SlrDeletion {
        role_name: "AWSServiceRoleForAmazonConnect_AbCdEf123456".into(),
        task_id: DELETION_TASK.into(),
        status,
    });
}

type Drift = fn(&mut Snapshot);

/// One drift applied to the healthy snapshot, and the rules it must fire.
type Case = (&'static str, Drift, &'static [RuleId]);

const CASES: &[Case] = &[
    ("healthy", |_| {}, &[]),
    (
        "pre-2018 instance without SLR",
        |s| s.instances[0].service_role = None,
        &[ConnectSlrNotConfigured],
    ),
    (
        "SLR deleted",
        |s| {
            s.roles.insert(ROLE_ARN.into(), Observed::Absent);
        },
        &[ConnectSlrMissing],
    ),
    (
        "role outside the SLR path",
        |s| role(s).path = "/".into(),
        &[ConnectSlrNotServiceLinked],
    ),
    (
        "role name prefix in another case is still Connect's",
        |s| role(s).name = "awsserviceroleforamazonconnect_AbCdEf123456".into(),
        &[],
    ),
    (
        "role without the SLR name prefix",
        |s| role(s).name = "ConnectRole".into(),
        &[ConnectSlrNotServiceLinked],
    ),
    (
        "trust admits another account",
        |s| {
            role(s).trust_policy = json!({"Statement": [
                {"Effect": "Allow", "Principal": {"Service": "connect.amazonaws.com", "AWS": "arn:aws:iam::444455556666:root"}, "Action": "sts:AssumeRole"}]});
        },
        &[ConnectSlrTrustDrift],
    ),
    (
        "trust admits *",
        |s| {
            role(s).trust_policy = json!({"Statement": [
                {"Effect": "Allow", "Principal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]});
        },
        &[ConnectSlrTrustDrift],
    ),
    (
        "trust lost connect",
        |s| {
            role(s).trust_policy = json!({"Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
        },
        &[ConnectSlrTrustDrift],
    ),
    (
        "trust reordered into lists",
        |s| {
            role(s).trust_policy = json!({"Version": "2012-10-17", "Statement": {"Action": ["sts:AssumeRole"], "Principal": {"Service": ["connect.amazonaws.com"]}, "Effect": "Allow"}});
        },
        &[],
    ),
    (
        "managed policy detached",
        |s| role(s).attached_policies.clear(),
        &[ConnectSlrPolicyDetached],
    ),
    (
        "CTR stream not covered",
        |s| role(s).inline_policies.clear(),
        &[ConnectSlrFeaturePermissionMissing],
    ),
    (
        "CTR stream explicitly denied",
        |s| {
            role(s).inline_policies[0].document["Statement"]
                .as_array_mut()
                .unwrap()
                .push(json!({"Effect": "Deny", "Action": "kinesis:PutRecords", "Resource": "*"}));
        },
        &[ConnectSlrFeaturePermissionMissing],
    ),
    (
        "domain without prefix, no inline access",
        rename_domain,
        &[ProfilesDomainAccessMissing],
    ),
    (
        "domain without prefix, inline access",
        |s| {
            rename_domain(s);
            role(s).inline_policies.push(connect_slr_guard::model::InlinePolicy {
                name: "ConnectCustomerProfiles".into(),
                document: json!({"Statement": [{"Effect": "Allow", "Action": ["profile:SearchProfiles", "profile:GetDomain"],
                    "Resource": ["arn:aws:profile:eu-west-2:111122223333:domains/acme-profiles"]}]}),
            });
        },
        &[],
    ),
    (
        "domain without prefix, inline access taken back by a Deny",
        |s| {
            rename_domain(s);
            role(s)
                .inline_policies
                .push(connect_slr_guard::model::InlinePolicy {
                    name: "ConnectCustomerProfiles".into(),
                    document: json!({"Statement": [
                    {"Effect": "Allow", "Action": "profile:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "profile:*",
                     "Resource": "arn:aws:profile:eu-west-2:111122223333:domains/acme-profiles"}]}),
                });
        },
        &[ProfilesDomainAccessMissing],
    ),
    (
        "trust admits a web identity federation",
        |s| {
            role(s).trust_policy = json!({"Statement": [
                {"Effect": "Allow", "Principal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:AssumeRoleWithWebIdentity"}]});
        },
        &[ConnectSlrTrustDrift],
    ),
    (
        "trust denies everyone but another account, Connect included",
        |s| {
            role(s).trust_policy["Statement"].as_array_mut().unwrap().push(json!(
                {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}));
        },
        &[ConnectSlrTrustDrift],
    ),
    (
        "domain key grant revoked",
        |s| grants(s, DOMAIN_KEY).clear(),
        &[ProfilesKmsGrantMissing],
    ),
    (
        "domain key grant lacks GenerateDataKey",
        |s| {
            grants(s, DOMAIN_KEY)[0].operations = vec!["Decrypt".into()];
        },
        &[ProfilesKmsGrantIncomplete],
    ),
    (
        "operations split over two grants",
        |s| {
            let g = grants(s, DOMAIN_KEY);
            g[0].operations = vec!["Decrypt".into()];
            g.push(Grant {
                id: "g2".into(),
                grantee: ROLE_ARN.into(),
                operations: vec!["GenerateDataKey".into()],
            });
        },
        &[],
    ),
    (
        "grant names the role without its path",
        |s| {
            grants(s, DOMAIN_KEY)[0].grantee =
                "arn:aws:iam::111122223333:role/AWSServiceRoleForAmazonConnect_AbCdEf123456".into();
        },
        &[],
    ),
    (
        "grant to someone else",
        |s| {
            grants(s, DOMAIN_KEY)[0].grantee = "arn:aws:iam::111122223333:role/Other".into();
        },
        &[ProfilesKmsGrantMissing],
    ),
    (
        "storage key grant revoked",
        |s| grants(s, STORAGE_KEY).clear(),
        &[StorageKmsGrantMissing],
    ),
    (
        "domain key disabled",
        |s| key(s, DOMAIN_KEY).state = KeyState::Disabled,
        &[KmsKeyUnusable],
    ),
    (
        "disabled key without grant reports the key only",
        |s| {
            key(s, DOMAIN_KEY).state = KeyState::Disabled;
            grants(s, DOMAIN_KEY).clear();
        },
        &[KmsKeyUnusable],
    ),
    (
        "storage key pending deletion",
        |s| key(s, STORAGE_KEY).state = KeyState::PendingDeletion,
        &[KmsKeyUnusable],
    ),
    (
        "domain key gone",
        |s| {
            s.keys.insert(DOMAIN_KEY.into(), Observed::Absent);
        },
        &[KmsKeyUnusable],
    ),
    (
        "AWS managed domain key needs no grant",
        |s| {
            let k = key(s, DOMAIN_KEY);
            k.customer_managed = false;
            k.grants = None;
        },
        &[],
    ),
    (
        "second amazon-connect- domain",
        |s| {
            s.connect_domains = Observed::Found(vec![
                "amazon-connect-acme".into(),
                "amazon-connect-other".into(),
            ]);
        },
        &[ProfilesCrossDomainExposure],
    ),
    (
        "storage configs unreadable",
        |s| {
            s.instances[0].storage = Observed::Unverified(failed("AccessDeniedException: denied"));
        },
        &[CheckIncomplete],
    ),
    (
        "role unreadable",
        |s| {
            s.roles.insert(
                ROLE_ARN.into(),
                Observed::Unverified(failed("AccessDenied: denied")),
            );
        },
        &[CheckIncomplete],
    ),
    (
        "grants unreadable",
        |s| {
            key(s, DOMAIN_KEY).grants = Some(Observed::Unverified(failed(
                "ThrottlingException: slow down",
            )));
        },
        &[CheckIncomplete],
    ),
    (
        "key unreadable",
        |s| {
            s.keys.insert(
                DOMAIN_KEY.into(),
                Observed::Unverified(failed("AccessDeniedException: denied")),
            );
        },
        &[CheckIncomplete],
    ),
    (
        "domain unreadable",
        |s| {
            let reason = Observed::Unverified(failed("ThrottlingException"));
            s.domains.insert("amazon-connect-acme".into(), reason);
        },
        &[CheckIncomplete],
    ),
    (
        "deadline before the role and a key: one page for the instance",
        |s| {
            s.roles
                .insert(ROLE_ARN.into(), Observed::Unverified(Unverified::Deadline));
            s.keys.insert(
                STORAGE_KEY.into(),
                Observed::Unverified(Unverified::Deadline),
            );
            s.instances[0].storage = Observed::Unverified(Unverified::Deadline);
        },
        &[CheckIncomplete],
    ),
    (
        "deadline does not hide a drift already read",
        |s| {
            s.roles
                .insert(ROLE_ARN.into(), Observed::Unverified(Unverified::Deadline));
            key(s, DOMAIN_KEY).state = KeyState::Disabled;
        },
        &[CheckIncomplete, KmsKeyUnusable],
    ),
    (
        "the account's domains could not be listed",
        |s| s.connect_domains = Observed::Unverified(failed("ThrottlingException")),
        &[CheckIncomplete],
    ),
    (
        "not service-linked hides what depends on the role",
        |s| {
            role(s).path = "/".into();
            role(s).attached_policies.clear();
            role(s).inline_policies.clear();
            grants(s, DOMAIN_KEY).clear();
            grants(s, STORAGE_KEY).clear();
        },
        &[ConnectSlrNotServiceLinked],
    ),
    (
        "one key for the domain and recordings, grant missing: one page",
        |s| {
            recordings_key(s, DOMAIN_KEY);
            grants(s, DOMAIN_KEY).clear();
        },
        &[ProfilesKmsGrantMissing],
    ),
    (
        "one key for the domain and recordings, disabled: one page",
        |s| {
            recordings_key(s, DOMAIN_KEY);
            key(s, DOMAIN_KEY).state = KeyState::Disabled;
        },
        &[KmsKeyUnusable],
    ),
    (
        "a multi-Region key changing its primary Region still serves",
        |s| key(s, DOMAIN_KEY).state = KeyState::Updating,
        &[],
    ),
    (
        "imported key material missing",
        |s| key(s, STORAGE_KEY).state = KeyState::PendingImport,
        &[KmsKeyUnusable],
    ),
    (
        "custom key store disconnected",
        |s| key(s, STORAGE_KEY).state = KeyState::Unavailable,
        &[KmsKeyUnusable],
    ),
    (
        "listing instances failed",
        |s| {
            s.incomplete.push(connect_slr_guard::model::Incomplete {
                instance_arn: None,
                resource_arn: "arn:aws:connect:eu-west-2:*:instance/*".into(),
                what: "Amazon Connect instances".into(),
                reason: failed("ThrottlingException"),
            });
        },
        &[CheckIncomplete],
    ),
    (
        "key policy denies the SLR Decrypt",
        |s| {
            key_policy_statement(
                s,
                DOMAIN_KEY,
                json!({"Sid": "NoDecrypt", "Effect": "Deny",
                "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}),
            );
        },
        &[KmsKeyPolicyDenies],
    ),
    (
        "key policy denies everyone but an admin, the SLR included",
        |s| {
            key_policy_statement(
                s,
                STORAGE_KEY,
                json!({"Effect": "Deny",
                "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:role/Admin"}, "Action": "kms:*", "Resource": "*"}),
            );
            grants(s, STORAGE_KEY).clear();
        },
        &[KmsKeyPolicyDenies],
    ),
    (
        "key policy allows the SLR itself: no grant needed",
        |s| {
            key_policy_statement(
                s,
                DOMAIN_KEY,
                json!({"Effect": "Allow",
                "Principal": {"AWS": ROLE_ARN}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}),
            );
            grants(s, DOMAIN_KEY).clear();
        },
        &[],
    ),
    (
        "key policy unreadable",
        |s| key(s, DOMAIN_KEY).policy = Some(Observed::Unverified(failed("AccessDeniedException"))),
        &[CheckIncomplete],
    ),
    (
        "storage grant without GenerateDataKey: Connect cannot write",
        |s| grants(s, STORAGE_KEY)[0].operations = vec!["DescribeKey".into()],
        &[StorageKmsGrantMissing],
    ),
    (
        "a grant to a service principal is not a grant to the SLR",
        |s| grants(s, STORAGE_KEY)[0].grantee = "connect.amazonaws.com".into(),
        &[StorageKmsGrantMissing],
    ),
    (
        "CTR stream on a customer key without a grant for the SLR",
        |s| encrypt_ctr_stream(s, KeyState::Enabled, &[]),
        &[StorageKmsGrantMissing],
    ),
    (
        "CTR stream on a customer key granted GenerateDataKey",
        |s| encrypt_ctr_stream(s, KeyState::Enabled, &["GenerateDataKey"]),
        &[],
    ),
    (
        "CTR stream key disabled",
        |s| encrypt_ctr_stream(s, KeyState::Disabled, &["GenerateDataKey"]),
        &[KmsKeyUnusable],
    ),
    (
        "CTR stream encryption unreadable",
        |s| {
            s.streams.insert(
                STREAM_ARN.into(),
                Observed::Unverified(failed("AccessDeniedException")),
            );
        },
        &[CheckIncomplete],
    ),
    (
        "Firehose on a customer key needs no grant for the SLR",
        |s| firehose_on_key(s, KeyState::Enabled),
        &[],
    ),
    (
        "Firehose key disabled",
        |s| firehose_on_key(s, KeyState::Disabled),
        &[KmsKeyUnusable],
    ),
    (
        "a contact analysis segment stream needs no inline permission",
        |s| {
            let Observed::Found(configs) = &mut s.instances[0].storage else {
                panic!("fixture has storage configs")
            };
            let mut segments = configs[0].clone();
            segments.resource_type = "REAL_TIME_CONTACT_ANALYSIS_VOICE_SEGMENTS".into();
            segments.stream_arn = Some("arn:aws:kinesis:eu-west-2:111122223333:stream/rtca".into());
            configs.push(segments);
        },
        &[],
    ),
    (
        "SLR deletion task still running: the role is as good as gone",
        |s| deleting(s, Observed::Found(DeletionStatus::InProgress)),
        &[ConnectSlrMissing],
    ),
    (
        "SLR deletion task failed: the role stays",
        |s| deleting(s, Observed::Found(DeletionStatus::Failed)),
        &[],
    ),
    (
        "SLR deletion status unreadable",
        |s| deleting(s, Observed::Unverified(failed("AccessDenied: no"))),
        &[CheckIncomplete],
    ),
    (
        "SLR deleted and key disabled: two root causes",
        |s| {
            s.roles.insert(ROLE_ARN.into(), Observed::Absent);
            key(s, STORAGE_KEY).state = KeyState::Disabled;
        },
        &[ConnectSlrMissing, KmsKeyUnusable],
    ),
    (
        "SLR deleted hides grant echoes",
        |s| {
            s.roles.insert(ROLE_ARN.into(), Observed::Absent);
            grants(s, DOMAIN_KEY).clear();
            grants(s, STORAGE_KEY).clear();
        },
        &[ConnectSlrMissing],
    ),
    (
        "instance not active is not checked",
        |s| {
            s.instances[0].status = InstanceStatus::CreationFailed;
            s.roles.insert(ROLE_ARN.into(), Observed::Absent);
        },
        &[],
    ),
    (
        "context-only instance is not checked",
        |s| {
            s.instances[0].checked = false;
            s.roles.clear();
        },
        &[],
    ),
];

#[test]
fn each_rule_fires_on_its_drift_and_only_there() {
    for (name, drift, expected) in CASES {
        let mut snapshot = healthy();
        drift(&mut snapshot);
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(rules_of(&snapshot), expected, "case: {name}");
    }
}

#[test]
fn every_rule_in_the_catalogue_has_a_case() {
    let missing: Vec<&str> = RuleId::ALL
        .iter()
        .filter(|rule| rule.judged_from_snapshot())
        .filter(|rule| !CASES.iter().any(|(_, _, fired)| fired.contains(rule)))
        .map(|rule| rule.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "no case in tests/it/rules.rs CASES fires {missing:?}: add one"
    );
}

fn rename_domain(s: &mut Snapshot) {
    let mut domain = s.domains.remove("amazon-connect-acme").unwrap();
    if let Observed::Found(d) = &mut domain {
        d.name = "acme-profiles".into();
    }
    s.domains.insert("acme-profiles".into(), domain);
    s.instances[0].domain = Observed::Found(Some("acme-profiles".into()));
    s.connect_domains = Observed::Found(vec![]);
}

/// The 31 Jan 2025 Customer Profiles change: a domain created before it with
/// a customer managed key works only once the SLR holds a grant on the key.
#[test]
fn pre_2025_cmk_domain_without_grant_pages_with_the_grant_command() {
    let mut snapshot = healthy();
    grants(&mut snapshot, DOMAIN_KEY).clear();
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.rule, ProfilesKmsGrantMissing);
    assert_eq!(f.severity.as_str(), "HIGH");
    assert_eq!(f.instance_arn.as_deref(), Some(INSTANCE_ARN));
    assert_eq!(f.resource_arn, DOMAIN_KEY);
    assert_eq!(
        f.remediation,
        format!(
            "aws kms create-grant --key-id {DOMAIN_KEY} --grantee-principal {ROLE_ARN} --operations Decrypt GenerateDataKey --name connect-slr-guard"
        )
    );
}

#[test]
fn required_operations_are_configurable() {
    let mut snapshot = healthy();
    grants(&mut snapshot, DOMAIN_KEY)[0].operations = vec!["Decrypt".into()];
    let only_decrypt = RuleSettings {
        required_grant_operations: vec!["Decrypt".into()],
    };
    assert!(evaluate(&snapshot, &only_decrypt).is_empty());
    assert_eq!(evaluate(&snapshot, &RuleSettings::default()).len(), 1);
}

#[test]
fn cross_domain_exposure_names_the_instances() {
    let mut snapshot = healthy();
    snapshot.connect_domains = Observed::Found(vec![
        "amazon-connect-acme".into(),
        "amazon-connect-other".into(),
    ]);
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].instance_arn, None);
    assert_eq!(
        findings[0].resource_arn,
        "arn:aws:profile:eu-west-2:111122223333:domains/amazon-connect-other"
    );
    assert_eq!(findings[0].details["instances"], json!([INSTANCE_ARN]));
}

#[test]
fn check_incomplete_carries_the_reason() {
    let mut snapshot = healthy();
    snapshot.instances[0].storage = Observed::Unverified(failed("AccessDeniedException: nope"));
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings[0].rule, CheckIncomplete);
    assert_eq!(findings[0].details["reason"], "AccessDeniedException: nope");
    assert!(findings[0].summary.contains("storage configs"));
}

#[test]
fn remediation_commands_quote_hostile_names() {
    let mut snapshot = healthy();
    role(&mut snapshot).attached_policies.clear();
    role(&mut snapshot).name = "AWSServiceRoleForAmazonConnect_x;rm -rf ~".into();
    let findings = evaluate(&snapshot, &RuleSettings::default());
    let detached = findings
        .iter()
        .find(|f| f.rule == ConnectSlrPolicyDetached)
        .unwrap();
    assert!(
        detached
            .remediation
            .contains("--role-name 'AWSServiceRoleForAmazonConnect_x;rm -rf ~'"),
        "{}",
        detached.remediation
    );
}

#[test]
fn one_key_for_several_features_names_every_use() {
    let mut snapshot = healthy();
    recordings_key(&mut snapshot, DOMAIN_KEY);
    grants(&mut snapshot, DOMAIN_KEY).clear();
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        findings[0].details["uses"],
        json!([
            "Customer Profiles domain amazon-connect-acme",
            "CALL_RECORDINGS storage"
        ])
    );
}

#[test]
fn each_unusable_state_gets_its_own_fix() {
    let fix = |state: KeyState, store: Option<&str>| {
        let mut snapshot = healthy();
        key(&mut snapshot, STORAGE_KEY).state = state;
        key(&mut snapshot, STORAGE_KEY).custom_key_store = store.map(str::to_owned);
        evaluate(&snapshot, &RuleSettings::default())[0]
            .remediation
            .clone()
    };
    assert!(fix(KeyState::Disabled, None).starts_with("aws kms enable-key"));
    assert!(fix(KeyState::PendingDeletion, None).starts_with("aws kms cancel-key-deletion"));
    let import = fix(KeyState::PendingImport, None);
    assert!(
        import.contains("aws kms import-key-material --key-id"),
        "{import}"
    );
    assert_eq!(
        fix(KeyState::Unavailable, Some("cks-1234567890abcdef0")),
        "reconnect the key's custom key store: aws kms connect-custom-key-store --custom-key-store-id cks-1234567890abcdef0"
    );
}

#[test]
fn a_denying_key_policy_names_the_statement_in_the_fix() {
    let mut snapshot = healthy();
    key_policy_statement(
        &mut snapshot,
        DOMAIN_KEY,
        json!({"Sid": "NoDecrypt", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}),
    );
    let findings = evaluate(&snapshot, &RuleSettings::default());
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert_eq!(f.severity.as_str(), "CRITICAL");
    assert!(
        f.remediation
            .contains("remove or narrow statement Sid NoDecrypt (it denies kms:Decrypt to "),
        "{}",
        f.remediation
    );
    assert_eq!(
        f.details["denying_statements"][0]["operations"],
        json!(["Decrypt"])
    );
}
