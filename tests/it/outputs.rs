//! Outputs beyond e-mail: Security Hub (ASFF), chat notifications, EMF
//! metrics, SARIF, and saved snapshots re-evaluated offline.

use std::sync::{Arc, Mutex};

use aws_sdk_securityhub::operation::batch_import_findings::{
    BatchImportFindingsError, BatchImportFindingsOutput,
};
use aws_sdk_securityhub::types::ImportFindingsError;
use aws_sdk_sns::operation::publish::{PublishError, PublishOutput};
use aws_smithy_mocks::mock;
use aws_smithy_types::error::ErrorMetadata;
use connect_slr_guard::alert::asff::{AsffFinding, default_product_arn, finding_id};
use connect_slr_guard::alert::chat::ChatNotification;
use connect_slr_guard::alert::securityhub::{MAX_FINDINGS_PER_CALL, batches};
use connect_slr_guard::alert::{Alert, PassContext, Status};
use connect_slr_guard::config::Settings;
use connect_slr_guard::finding::{Finding, RuleId};
use connect_slr_guard::guard::{Delivery, Guard, GuardError};
use connect_slr_guard::inventory::Options;
use connect_slr_guard::report::metrics::emf;
use connect_slr_guard::report::{Format, PassReport, SavedPass};
use connect_slr_guard::rules::RuleSettings;
use connect_slr_guard::trigger::{Scope, Trigger, TriggerKind};
use lambda_runtime::Diagnostic;
use serde_json::Value;

use super::support::*;

const CHAT_TOPIC: &str = "arn:aws:sns:eu-west-2:111122223333:connect-slr-guard-chat";

fn context() -> PassContext {
    PassContext {
        account: ACCOUNT.into(),
        region: "eu-west-2".into(),
        trigger: Trigger::audit(),
        observed_at: "2026-11-20T10:16:02Z".into(),
    }
}

fn asff(finding: &Finding, status: Status) -> Value {
    let ctx = context();
    let alert = Alert::open(finding, &ctx).lifecycle(status, "2026-11-01T00:00:00Z".into(), None);
    serde_json::to_value(AsffFinding::from_alert(&alert)).unwrap()
}

#[test]
fn an_asff_finding_carries_every_required_field() {
    let doc = asff(&grant_missing(), Status::Open);
    for field in [
        "SchemaVersion",
        "Id",
        "ProductArn",
        "GeneratorId",
        "AwsAccountId",
        "Types",
        "CreatedAt",
        "UpdatedAt",
        "Severity",
        "Title",
        "Description",
        "Resources",
    ] {
        assert!(!doc[field].is_null(), "{field} missing: {doc}");
    }
    let fingerprint = grant_missing().fingerprint(ACCOUNT, "eu-west-2");
    assert_eq!(doc["SchemaVersion"], "2018-10-08");
    assert_eq!(doc["Id"], finding_id(&fingerprint));
    assert_eq!(
        doc["ProductArn"],
        "arn:aws:securityhub:eu-west-2:111122223333:product/111122223333/default"
    );
    assert_eq!(doc["GeneratorId"], "PROFILES_KMS_GRANT_MISSING");
    assert_eq!(doc["CreatedAt"], "2026-11-01T00:00:00Z");
    assert_eq!(doc["UpdatedAt"], "2026-11-20T10:16:02Z");
    assert_eq!(doc["Severity"]["Label"], "HIGH");
    assert_eq!(doc["FindingProviderFields"]["Severity"]["Label"], "HIGH");
    assert_eq!(doc["FindingProviderFields"]["Types"], doc["Types"]);
    assert_eq!(doc["Compliance"]["Status"], "FAILED");
    assert_eq!(doc["RecordState"], "ACTIVE");
    assert_eq!(doc["ProductFields"]["ProviderName"], "connect-slr-guard");
    assert_eq!(
        doc["Remediation"]["Recommendation"]["Text"],
        grant_missing().remediation
    );
    assert_eq!(doc["Resources"][0]["Type"], "AwsKmsKey");
    assert_eq!(doc["Resources"][0]["Id"], DOMAIN_KEY);
    assert_eq!(doc["Resources"][1]["Type"], "Other");
    assert_eq!(doc["Resources"][1]["Id"], INSTANCE_ARN);
}

#[test]
fn a_resolved_drift_is_archived_as_passed_and_an_incomplete_check_is_not_available() {
    let resolved = asff(&grant_missing(), Status::Resolved);
    assert_eq!(resolved["Compliance"]["Status"], "PASSED");
    assert_eq!(resolved["RecordState"], "ARCHIVED");
    let incomplete = Finding::new(RuleId::CheckIncomplete, None, "connect:ListInstances");
    let doc = asff(&incomplete, Status::Open);
    assert_eq!(doc["Compliance"]["Status"], "NOT_AVAILABLE");
    assert_eq!(doc["Resources"][0]["Type"], "Other");
}

#[test]
fn asff_text_fields_are_cut_to_their_documented_limits() {
    let long = "x".repeat(5000);
    let finding = grant_missing().summary(&long).remediation(&long);
    let doc = asff(&finding, Status::Open);
    let chars = |v: &Value| v.as_str().unwrap().chars().count();
    assert_eq!(chars(&doc["Description"]), 1024);
    assert_eq!(chars(&doc["Remediation"]["Recommendation"]["Text"]), 512);
    assert!(chars(&doc["Title"]) <= 256);
    assert!(doc["ProductFields"].as_object().unwrap().len() <= 50);
    for value in doc["ProductFields"].as_object().unwrap().values() {
        assert!(chars(value) <= 2048);
    }
}

#[test]
fn the_sdk_finding_is_the_printed_finding() {
    let ctx = context();
    let finding = grant_missing();
    let printed = AsffFinding::from_alert(&Alert::open(&finding, &ctx));
    let sent = printed.to_sdk();
    assert_eq!(sent.id(), Some(printed.id.as_str()));
    assert_eq!(sent.product_arn(), Some(printed.product_arn.as_str()));
    assert_eq!(sent.generator_id(), Some("PROFILES_KMS_GRANT_MISSING"));
    assert_eq!(sent.created_at(), Some(printed.created_at.as_str()));
    assert_eq!(sent.updated_at(), Some(printed.updated_at.as_str()));
    assert_eq!(sent.severity().unwrap().label().unwrap().as_str(), "HIGH");
    assert_eq!(sent.record_state().unwrap().as_str(), "ACTIVE");
    assert_eq!(
        sent.compliance().unwrap().status().unwrap().as_str(),
        "FAILED"
    );
    let resources: Vec<(&str, &str)> = sent
        .resources()
        .iter()
        .map(|r| (r.r#type().unwrap(), r.id().unwrap()))
        .collect();
    assert_eq!(
        resources,
        [("AwsKmsKey", DOMAIN_KEY), ("Other", INSTANCE_ARN)]
    );
    assert_eq!(
        sent.product_fields().unwrap().len(),
        printed.product_fields.len()
    );
    assert_eq!(
        sent.finding_provider_fields().unwrap().types(),
        ["Software and Configuration Checks/AWS Security Best Practices"]
    );
}

#[test]
fn imports_are_cut_into_batches_of_one_hundred_and_under_six_megabytes() {
    let ctx = context();
    let findings: Vec<Finding> = (0..250)
        .map(|n| Finding::new(RuleId::StorageKmsGrantMissing, None, &format!("key/{n}")))
        .collect();
    let asff: Vec<AsffFinding> = findings
        .iter()
        .map(|f| AsffFinding::from_alert(&Alert::open(f, &ctx)))
        .collect();
    let refs: Vec<&AsffFinding> = asff.iter().collect();
    let sizes: Vec<usize> = batches(&refs).iter().map(Vec::len).collect();
    assert_eq!(sizes, [MAX_FINDINGS_PER_CALL, MAX_FINDINGS_PER_CALL, 50]);

    // Findings of 1 MB each (bigger than the guard writes): five per call.
    let mut big = asff[0].clone();
    big.title = "x".repeat(1024 * 1024);
    let big: Vec<&AsffFinding> = std::iter::repeat_n(&big, 12).collect();
    let sizes: Vec<usize> = batches(&big).iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 2]);
}

#[test]
fn the_default_product_is_in_the_regions_partition() {
    assert_eq!(
        default_product_arn("cn-north-1", "123456789012"),
        "arn:aws-cn:securityhub:cn-north-1:123456789012:product/123456789012/default"
    );
}

#[test]
fn a_chat_notification_has_the_documented_shape() {
    let ctx = context();
    let finding = grant_missing();
    let alert = Alert::open(&finding, &ctx);
    let doc = serde_json::to_value(ChatNotification::from_alert(&alert)).unwrap();
    assert_eq!(doc["version"], "1.0");
    assert_eq!(doc["source"], "custom");
    assert_eq!(doc["content"]["textType"], "client-markdown");
    let title = doc["content"]["title"].as_str().unwrap();
    assert!(
        title.contains("[HIGH] PROFILES_KMS_GRANT_MISSING (OPEN)"),
        "{title}"
    );
    assert!(
        doc["content"]["description"]
            .as_str()
            .unwrap()
            .starts_with(&finding.summary)
    );
    assert_eq!(
        doc["content"]["nextSteps"][0],
        format!("Fix: `{}`", finding.remediation)
    );
    assert_eq!(
        doc["content"]["keywords"],
        serde_json::json!(["PROFILES_KMS_GRANT_MISSING", "HIGH", ACCOUNT])
    );
    assert_eq!(doc["metadata"]["threadId"], alert.fingerprint);
    assert_eq!(doc["metadata"]["eventType"], "OPEN");
    assert!(doc["metadata"]["summary"].as_str().is_some());

    let resolved = alert.lifecycle(Status::Resolved, "2026-11-01T00:00:00Z".into(), None);
    let doc = serde_json::to_value(ChatNotification::from_alert(&resolved)).unwrap();
    assert_eq!(doc["metadata"]["eventType"], "RESOLVED");
    assert_eq!(doc["metadata"]["threadId"], resolved.fingerprint);
    assert!(doc["content"].get("nextSteps").is_none());
}

/// Topic and message of every SNS publish; `fail_topic` refuses its own.
fn record_publishes(
    account: &mut Account,
    fail_topic: Option<&'static str>,
) -> Arc<Mutex<Vec<(String, String)>>> {
    let sent: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = sent.clone();
    account.sns.first(
        "Publish",
        mock!(aws_sdk_sns::Client::publish)
            .match_requests(move |req| Some(req.topic_arn().unwrap_or_default()) != fail_topic)
            .then_compute_output(move |req| {
                log.lock().unwrap().push((
                    req.topic_arn().unwrap().to_owned(),
                    req.message().unwrap().to_owned(),
                ));
                PublishOutput::builder().message_id("m-1").build()
            }),
    );
    if fail_topic.is_some() {
        account.sns.first(
            "Publish",
            mock!(aws_sdk_sns::Client::publish)
                .match_requests(move |req| req.topic_arn() == fail_topic)
                .then_error(|| {
                    PublishError::generic(
                        ErrorMetadata::builder()
                            .code("AuthorizationError")
                            .message("not allowed")
                            .build(),
                    )
                }),
        );
    }
    sent
}

async fn pass(account: &Account, settings: Settings) -> Result<PassReport, GuardError> {
    let guard = Guard::new(account.aws(), settings, None);
    guard
        .run(
            Scope::Instance(INSTANCE_ID.into()),
            Trigger::audit(),
            &Options::default(),
            Delivery::Publish,
        )
        .await
}

#[tokio::test]
async fn each_page_is_echoed_to_the_chat_topic() {
    let mut account = Account::with_detached_policy();
    let sent = record_publishes(&mut account, None);
    let mut settings = settings_with_topic();
    settings.chat_topic_arn = Some(CHAT_TOPIC.into());
    let report = pass(&account, settings).await.unwrap();
    assert_eq!(report.alerts_published, 1);
    let sent = sent.lock().unwrap();
    let topics: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, [TOPIC_ARN, CHAT_TOPIC]);
    let chat: Value = serde_json::from_str(&sent[1].1).unwrap();
    assert_eq!(chat["source"], "custom");
    assert_eq!(chat["metadata"]["threadId"], report.alerts()[0].fingerprint);
}

#[tokio::test]
async fn a_chat_failure_keeps_the_page_and_fails_the_pass() {
    let mut account = Account::with_detached_policy();
    let sent = record_publishes(&mut account, Some(CHAT_TOPIC));
    let mut settings = settings_with_topic();
    settings.chat_topic_arn = Some(CHAT_TOPIC.into());
    let err = pass(&account, settings).await.unwrap_err();
    assert!(
        matches!(err, GuardError::Chat(ref e) if e.failed == 1),
        "{err}"
    );
    assert_eq!(Diagnostic::from(err).error_type, "ChatDeliveryFailed");
    let topics: Vec<String> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(topics, [TOPIC_ARN]);
}

fn imported_ok() -> BatchImportFindingsOutput {
    BatchImportFindingsOutput::builder()
        .failed_count(0)
        .success_count(1)
        .build()
}

#[tokio::test]
async fn security_hub_gets_the_findings_after_the_pages() {
    let mut account = Account::with_detached_policy();
    record_publishes(&mut account, None);
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = ids.clone();
    account.securityhub.first(
        "BatchImportFindings",
        mock!(aws_sdk_securityhub::Client::batch_import_findings).then_compute_output(move |req| {
            log.lock()
                .unwrap()
                .extend(req.findings().iter().map(|f| f.id().unwrap().to_owned()));
            imported_ok()
        }),
    );
    let mut settings = settings_with_topic();
    settings.security_hub = true;
    let report = pass(&account, settings).await.unwrap();
    assert_eq!(report.security_hub_imported, Some(1));
    assert_eq!(
        *ids.lock().unwrap(),
        [finding_id(&report.alerts()[0].fingerprint)]
    );
}

#[tokio::test]
async fn findings_security_hub_refused_are_retried() {
    let mut account = Account::with_detached_policy();
    record_publishes(&mut account, None);
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    account.securityhub.first(
        "BatchImportFindings",
        mock!(aws_sdk_securityhub::Client::batch_import_findings).then_compute_output(move |req| {
            if answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                return imported_ok();
            }
            let id = req.findings()[0].id().unwrap().to_owned();
            BatchImportFindingsOutput::builder()
                .failed_count(1)
                .success_count(0)
                .failed_findings(
                    ImportFindingsError::builder()
                        .id(id)
                        .error_code("InternalFailure")
                        .error_message("try again")
                        .build(),
                )
                .build()
        }),
    );
    let mut settings = settings_with_topic();
    settings.security_hub = true;
    let report = pass(&account, settings).await.unwrap();
    assert_eq!(report.security_hub_imported, Some(1));
    assert_eq!(account.securityhub.calls("BatchImportFindings"), 2);
}

#[tokio::test]
async fn an_import_failure_keeps_the_pages_and_fails_the_pass() {
    let mut account = Account::with_detached_policy();
    let sent = record_publishes(&mut account, None);
    account.securityhub.first(
        "BatchImportFindings",
        mock!(aws_sdk_securityhub::Client::batch_import_findings).then_error(|| {
            BatchImportFindingsError::generic(
                ErrorMetadata::builder()
                    .code("InvalidAccessException")
                    .message("Account 111122223333 is not subscribed to AWS Security Hub")
                    .build(),
            )
        }),
    );
    let mut settings = settings_with_topic();
    settings.security_hub = true;
    let err = pass(&account, settings).await.unwrap_err();
    assert!(
        matches!(err, GuardError::SecurityHub(ref e) if e.failed == 1 && e.total == 1),
        "{err}"
    );
    assert!(err.to_string().contains("not subscribed"), "{err}");
    assert_eq!(Diagnostic::from(err).error_type, "SecurityHubImportFailed");
    assert_eq!(sent.lock().unwrap().len(), 1, "the page went out first");
    // Three attempts, then it gives up.
    assert_eq!(account.securityhub.calls("BatchImportFindings"), 3);
}

#[tokio::test]
async fn outputs_stay_off_unless_configured() {
    let mut account = Account::with_detached_policy();
    let sent = record_publishes(&mut account, None);
    pass(&account, settings_with_topic()).await.unwrap();
    assert_eq!(sent.lock().unwrap().len(), 1);
    assert_eq!(account.securityhub.total(), 0);
}

async fn report_only(account: &Account) -> PassReport {
    let guard = Guard::new(account.aws(), settings_with_topic(), None);
    sweep(&guard, Delivery::ReportOnly).await
}

#[tokio::test]
async fn sarif_lists_the_catalogue_and_each_finding_with_its_fix() {
    let report = report_only(&Account::with_detached_policy()).await;
    let doc: Value = serde_json::from_str(&report.render(Format::Sarif)).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    assert!(doc["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), RuleId::ALL.len());
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    for (result, finding) in results.iter().zip(&report.findings) {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        assert_eq!(result["ruleId"], finding.rule.as_str());
        assert_eq!(result["level"], "error");
        assert!(
            result["message"]["text"]
                .as_str()
                .unwrap()
                .contains(&finding.remediation)
        );
        assert_eq!(
            result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            finding.resource_arn
        );
        assert!(result["partialFingerprints"]["connectSlrGuard/v1"].is_string());
    }
}

#[tokio::test]
async fn emf_names_each_metric_once_with_a_value() {
    let mut report = report_only(&Account::with_detached_policy()).await;
    report.context.trigger.kind = TriggerKind::Schedule;
    let doc = emf(&report, 1_764_000_000_000);
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(doc["_aws"]["Timestamp"], 1_764_000_000_000i64);
    assert_eq!(directive["Namespace"], "ConnectSlrGuard");
    assert_eq!(directive["Dimensions"], serde_json::json!([[]]));
    let metrics = directive["Metrics"].as_array().unwrap();
    assert!(metrics.len() <= 100, "EMF allows 100 metrics per directive");
    let mut names: Vec<&str> = metrics
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    for name in &names {
        assert!(doc[*name].is_number(), "{name} has no value");
    }
    assert_eq!(doc["FindingsHigh"], 1.0);
    assert_eq!(doc["FindingsCritical"], 0.0);
    assert_eq!(doc["SweepChecksIncomplete"], 0.0);
    assert_eq!(doc["InstancesChecked"], 1.0);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), metrics.len(), "each metric once");

    report.context.trigger.kind = TriggerKind::Event;
    assert!(emf(&report, 0).get("SweepChecksIncomplete").is_none());
}

#[tokio::test]
async fn a_saved_pass_evaluates_offline_to_the_same_findings() {
    let report = report_only(&Account::with_detached_policy()).await;
    let saved = serde_json::to_vec(&SavedPass::of(&report)).unwrap();
    let again = SavedPass::parse(&saved)
        .unwrap()
        .evaluate(&RuleSettings::default());
    assert_eq!(again.findings, report.findings);
    assert_eq!(again.context.observed_at, report.context.observed_at);
    assert_eq!(again.render(Format::Json), report.render(Format::Json));

    let other = String::from_utf8(saved).unwrap().replace(
        "connect-slr-guard/snapshot/v1",
        "connect-slr-guard/snapshot/v9",
    );
    let err = SavedPass::parse(other.as_bytes()).unwrap_err();
    assert!(err.contains("snapshot/v9"), "{err}");
}

#[test]
fn a_pass_imports_what_it_found_except_held_drifts_and_archives_what_it_resolved() {
    use connect_slr_guard::alert::deliver::Delivered;
    use connect_slr_guard::alert::ledger::LedgerState;
    use connect_slr_guard::alert::lifecycle::{Record, ResolvedReason};
    use connect_slr_guard::alert::securityhub::pass_findings;

    let ctx = context();
    let fp = |f: &Finding| f.fingerprint(ACCOUNT, "eu-west-2");
    let known = grant_missing();
    let new = Finding::new(RuleId::KmsKeyUnusable, Some(INSTANCE_ARN), DOMAIN_KEY);
    let held = Finding::new(
        RuleId::StorageKmsGrantMissing,
        Some(INSTANCE_ARN),
        STORAGE_KEY,
    );
    let resolved_now = Finding::new(
        RuleId::ConnectSlrPolicyDetached,
        Some(INSTANCE_ARN),
        ROLE_ARN,
    );
    let resolved_before = Finding::new(RuleId::ConnectSlrTrustDrift, Some(INSTANCE_ARN), ROLE_ARN);
    let back_again = Finding::new(RuleId::KmsKeyPolicyDenies, Some(INSTANCE_ARN), DOMAIN_KEY);
    let record = |finding: &Finding, first_seen: i64| Record {
        fingerprint: fp(finding),
        first_seen,
        last_notified: Some(first_seen),
        finding: finding.clone(),
        version: 1,
        place: None,
    };
    let mut state = LedgerState::default();
    state
        .records
        .insert(fp(&known), record(&known, 1_700_000_000));
    // Resolved by an earlier pass whose import failed: still to archive.
    state.unarchived.insert(
        fp(&resolved_before),
        record(&resolved_before, 1_500_000_000),
    );
    // Resolved earlier, and found again now: active, not archived.
    state
        .unarchived
        .insert(fp(&back_again), record(&back_again, 1_400_000_000));
    let mut delivered = Delivered::default();
    delivered.held.insert(fp(&held));
    delivered.resolved.push((
        record(&resolved_now, 1_600_000_000),
        ResolvedReason::NoLongerFound,
    ));

    let found = [known, new, held, back_again.clone()];
    let import = pass_findings(&ctx, &found, Some(&state), &delivered, 1_763_633_762);
    let states: Vec<(&str, &str, &str, &str)> = import
        .findings
        .iter()
        .map(|f| {
            (
                f.generator_id,
                f.record_state,
                f.compliance.status,
                f.created_at.as_str(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (
                "PROFILES_KMS_GRANT_MISSING",
                "ACTIVE",
                "FAILED",
                "2023-11-14T22:13:20Z"
            ),
            // New: first seen now, as its OPEN page says.
            (
                "KMS_KEY_UNUSABLE",
                "ACTIVE",
                "FAILED",
                "2025-11-20T10:16:02Z"
            ),
            // Its resolved record is replaced by the OPEN this pass sends.
            (
                "KMS_KEY_POLICY_DENIES",
                "ACTIVE",
                "FAILED",
                "2025-11-20T10:16:02Z"
            ),
            (
                "CONNECT_SLR_POLICY_DETACHED",
                "ARCHIVED",
                "PASSED",
                "2020-09-13T12:26:40Z"
            ),
            (
                "CONNECT_SLR_TRUST_DRIFT",
                "ARCHIVED",
                "PASSED",
                "2017-07-14T02:40:00Z"
            ),
        ]
    );
    assert_eq!(import.archived, [fp(&resolved_now), fp(&resolved_before)]);
    assert!(
        import
            .findings
            .iter()
            .all(|f| f.updated_at == ctx.observed_at)
    );
}
