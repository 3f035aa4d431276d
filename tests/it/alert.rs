//! Alerts: the v1 document, the readable text, stable fingerprints, and
//! publishing through the guard (one SNS message per finding, failures
//! surfaced so Lambda retries).

use std::sync::{Arc, Mutex};

use aws_sdk_sns::operation::publish::{PublishError, PublishOutput};
use aws_smithy_mocks::mock;
use aws_smithy_types::error::ErrorMetadata;
use connect_slr_guard::alert::{Alert, PassContext, SCHEMA, sns_message, subject, text};
use connect_slr_guard::finding::{Finding, RuleId};
use connect_slr_guard::guard::{Delivery, Guard, GuardError};
use connect_slr_guard::inventory::Options;
use connect_slr_guard::report::PassReport;
use connect_slr_guard::trigger::{Scope, Trigger, TriggerKind};
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

use super::support::*;

fn context() -> PassContext {
    PassContext {
        account: "111122223333".into(),
        region: "eu-west-2".into(),
        trigger: Trigger {
            kind: TriggerKind::Event,
            event_name: Some("RevokeGrant".into()),
            actor: Some("arn:aws:sts::111122223333:assumed-role/Admin/alice".into()),
            event_time: Some("2026-11-20T10:15:30Z".into()),
            event_id: Some("6f2c8a7e-1b3d-4c5e-9f60-1a2b3c4d5e6f".into()),
            settles: true,
        },
        observed_at: "2026-11-20T10:16:02Z".into(),
    }
}

#[test]
fn document_matches_the_v1_schema() {
    let ctx = context();
    let finding = grant_missing();
    let doc: Value = serde_json::to_value(Alert::open(&finding, &ctx)).unwrap();
    let expected_keys = [
        "schema",
        "status",
        "rule",
        "severity",
        "account",
        "region",
        "instance_arn",
        "resource_arn",
        "fingerprint",
        "summary",
        "details",
        "remediation",
        "trigger",
        "observed_at",
    ];
    let mut keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut want = expected_keys.to_vec();
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(doc["schema"], SCHEMA);
    assert_eq!(doc["status"], "OPEN");
    assert_eq!(doc["rule"], "PROFILES_KMS_GRANT_MISSING");
    assert_eq!(doc["severity"], "HIGH");
    assert_eq!(doc["instance_arn"], INSTANCE_ARN);
    assert_eq!(doc["resource_arn"], DOMAIN_KEY);
    assert_eq!(
        doc["trigger"],
        json!({"kind": "event", "event_name": "RevokeGrant",
               "actor": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
               "event_time": "2026-11-20T10:15:30Z", "event_id": "6f2c8a7e-1b3d-4c5e-9f60-1a2b3c4d5e6f"})
    );
    assert!(doc["fingerprint"].as_str().unwrap().len() == 32);
}

#[test]
fn fingerprint_is_stable_and_distinguishes_resources() {
    let a = grant_missing();
    assert_eq!(
        a.fingerprint("1", "r"),
        grant_missing().fingerprint("1", "r")
    );
    let reworded = grant_missing()
        .summary("other words")
        .remediation("other fix");
    assert_eq!(a.fingerprint("1", "r"), reworded.fingerprint("1", "r"));
    let other_key = Finding::new(
        RuleId::ProfilesKmsGrantMissing,
        Some(INSTANCE_ARN),
        STORAGE_KEY,
    );
    let other_rule = Finding::new(RuleId::KmsKeyUnusable, Some(INSTANCE_ARN), DOMAIN_KEY);
    let other_instance = Finding::new(RuleId::ProfilesKmsGrantMissing, None, DOMAIN_KEY);
    for other in [other_key, other_rule, other_instance] {
        assert_ne!(a.fingerprint("1", "r"), other.fingerprint("1", "r"));
    }
    assert_ne!(a.fingerprint("1", "r"), a.fingerprint("2", "r"));
}

#[test]
fn sns_message_carries_text_for_people_and_json_for_machines() {
    let ctx = context();
    let finding = grant_missing();
    let alert = Alert::open(&finding, &ctx);
    let message: Value = serde_json::from_str(&sns_message(&alert)).unwrap();
    for protocol in ["default", "email"] {
        let body = message[protocol].as_str().unwrap();
        assert!(
            body.contains("PROFILES_KMS_GRANT_MISSING") && body.contains("aws kms create-grant")
        );
        assert!(body.contains("RevokeGrant by arn:aws:sts::111122223333:assumed-role/Admin/alice"));
    }
    for protocol in ["sqs", "lambda", "https"] {
        let doc: Value = serde_json::from_str(message[protocol].as_str().unwrap()).unwrap();
        assert_eq!(doc["schema"], SCHEMA, "{protocol}");
    }
    assert_eq!(text(&alert), message["email"].as_str().unwrap());
}

#[test]
fn subject_is_short_printable_ascii() {
    let ctx = context();
    let finding = Finding::new(
        RuleId::ConnectSlrMissing,
        Some(&format!("{INSTANCE_ARN}{}", "é\n".repeat(200))),
        "x",
    );
    let s = subject(&Alert::open(&finding, &ctx));
    assert!(s.len() < 100, "{}", s.len());
    assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s}");
    assert!(s.starts_with("[CRITICAL] CONNECT_SLR_MISSING: "));
}

/// Subject, message and attributes of one SNS publish.
type Sent = (String, String, Vec<(String, String)>);

#[tokio::test]
async fn guard_publishes_one_message_per_finding_with_filter_attributes() {
    let mut account = Account::healthy();
    account.kms.first(
        "ListGrants",
        mock!(aws_sdk_kms::Client::list_grants).then_output(|| {
            aws_sdk_kms::operation::list_grants::ListGrantsOutput::builder()
                .truncated(false)
                .build()
        }),
    );
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let log = sent.clone();
    account.sns.first(
        "Publish",
        mock!(aws_sdk_sns::Client::publish).then_compute_output(move |req| {
            let mut attrs: Vec<(String, String)> = req
                .message_attributes()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.string_value().unwrap().to_owned()))
                .collect();
            attrs.sort();
            assert_eq!(req.message_structure(), Some("json"));
            log.lock().unwrap().push((
                req.subject().unwrap().into(),
                req.message().unwrap().into(),
                attrs,
            ));
            PublishOutput::builder().message_id("m-1").build()
        }),
    );
    let guard = Guard::new(account.aws(), settings_with_topic(), None);
    let report = guard
        .run(
            Scope::Instance(INSTANCE_ID.into()),
            context().trigger,
            &Options::default(),
            Delivery::Publish,
        )
        .await
        .unwrap();

    // Both the domain key and the storage key lost their grants.
    let rules: Vec<RuleId> = report.findings.iter().map(|f| f.rule).collect();
    assert_eq!(
        rules,
        vec![
            RuleId::ProfilesKmsGrantMissing,
            RuleId::StorageKmsGrantMissing
        ]
    );
    assert_eq!(report.alerts_published, 2);
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 2);
    let (_, message, attrs) = sent
        .iter()
        .find(|(s, _, _)| s.contains("PROFILES"))
        .unwrap();
    assert_eq!(
        attrs,
        &vec![
            ("rule".into(), "PROFILES_KMS_GRANT_MISSING".into()),
            ("severity".into(), "HIGH".into()),
            ("status".into(), "OPEN".into()),
        ]
    );
    let doc: Value = serde_json::from_str(
        serde_json::from_str::<Value>(message).unwrap()["sqs"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["account"], "111122223333");
    assert_eq!(doc["trigger"]["event_name"], "RevokeGrant");
}

/// An instance event's pass through the guard, on the mocked account.
async fn check_instance(account: &Account, delivery: Delivery) -> Result<PassReport, GuardError> {
    let guard = Guard::new(account.aws(), settings_with_topic(), None);
    guard
        .run(
            Scope::Instance(INSTANCE_ID.into()),
            Trigger::audit(),
            &Options::default(),
            delivery,
        )
        .await
}

#[tokio::test]
async fn failed_publish_fails_the_pass() {
    let mut account = Account::with_detached_policy();
    account.sns.first(
        "Publish",
        mock!(aws_sdk_sns::Client::publish).then_error(|| {
            PublishError::generic(
                ErrorMetadata::builder()
                    .code("InternalError")
                    .message("SNS is down")
                    .build(),
            )
        }),
    );
    let err = check_instance(&account, Delivery::Publish)
        .await
        .unwrap_err();
    assert!(
        matches!(err, GuardError::Publish(ref e) if e.failed == 1 && e.total == 1),
        "{err}"
    );
    assert!(err.to_string().contains("SNS is down"), "{err}");
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "AlertDeliveryFailed");
}

#[test]
fn each_guard_failure_has_its_own_error_type() {
    let types: Vec<String> = [GuardError::NoTopic, GuardError::NoRegion]
        .into_iter()
        .map(|e| Diagnostic::from(e).error_type)
        .collect();
    assert_eq!(types, ["NoAlertTopic", "NoRegion"]);
}

#[tokio::test]
async fn report_only_never_calls_sns() {
    let account = Account::with_detached_policy();
    let report = check_instance(&account, Delivery::ReportOnly)
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.alerts_published, 0);
    assert_eq!(account.sns.total(), 0);
}

#[tokio::test]
async fn the_report_document_is_the_lambda_response_and_the_cli_json() {
    let account = Account::with_detached_policy();
    let report = check_instance(&account, Delivery::ReportOnly)
        .await
        .unwrap();
    let doc = serde_json::to_value(&report).unwrap();
    assert_eq!(
        doc["scope"],
        json!({"kind": "instance", "target": INSTANCE_ID})
    );
    assert_eq!(doc["account"], ACCOUNT);
    assert_eq!(doc["region"], "eu-west-2");
    assert_eq!(doc["trigger"]["kind"], "audit");
    assert_eq!(doc["instances_checked"], 1);
    assert_eq!(doc["checks_incomplete"], 0);
    assert_eq!(doc["alerts_published"], 0);
    let alert = &doc["findings"][0];
    assert_eq!(alert["schema"], SCHEMA);
    assert_eq!(alert["rule"], "CONNECT_SLR_POLICY_DETACHED");
    assert_eq!(alert["status"], "OPEN");
}
