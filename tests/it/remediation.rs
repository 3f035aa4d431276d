//! Remediation: what the guard may fix (and refuses to), made through the
//! mocked KMS, re-verified, and `REMEDIATION_FAILED` when the drift stays.

use std::sync::{Arc, Mutex};

use aws_sdk_kms::operation::create_grant::CreateGrantOutput;
use aws_sdk_kms::types::GrantOperation;
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use connect_slr_guard::finding::{Finding, RuleId};
use connect_slr_guard::guard::{Delivery, Guard};
use connect_slr_guard::inventory::Options;
use connect_slr_guard::model::{KeyState, Observed, Snapshot};
use connect_slr_guard::remediation::{Actor, Filter, Mode, Outcome, plan};
use connect_slr_guard::rules::{RuleSettings, evaluate};
use serde_json::json;

use super::support::*;

const GUARD_CALLER: &str =
    "arn:aws:sts::111122223333:assumed-role/connect-slr-guard-GuardRole-AbC/connect-slr-guard";

fn actor() -> Actor {
    Actor::from_caller_arn(GUARD_CALLER).unwrap()
}

fn ops() -> Vec<String> {
    RuleSettings::default().required_grant_operations
}

/// The healthy snapshot with the domain key's grant gone.
fn grant_missing_snapshot() -> Snapshot {
    let mut snapshot = healthy_snapshot();
    if let Some(Observed::Found(key)) = snapshot.keys.get_mut(DOMAIN_KEY) {
        key.grants = Some(Observed::Found(Vec::new()));
    }
    snapshot
}

fn planned(snapshot: &Snapshot, max: usize) -> connect_slr_guard::remediation::Plan {
    let findings = evaluate(snapshot, &RuleSettings::default());
    let pairs: Vec<(&Finding, String)> = findings
        .iter()
        .map(|f| (f, f.fingerprint(ACCOUNT, "eu-west-2")))
        .collect();
    plan(snapshot, &pairs, &actor(), &ops(), max)
}

#[test]
fn the_actor_is_the_role_behind_the_session() {
    let actor = actor();
    assert_eq!(actor.account, ACCOUNT);
    assert_eq!(actor.role_name, "connect-slr-guard-GuardRole-AbC");
    assert_eq!(
        actor.role_arn,
        "arn:aws:iam::111122223333:role/connect-slr-guard-GuardRole-AbC"
    );
}

#[test]
fn a_missing_grant_is_fixed_with_exactly_the_required_operations_for_the_slr() {
    let plan = planned(&grant_missing_snapshot(), 5);
    assert!(plan.refusals.is_empty(), "{plan:?}");
    let [fix] = plan.fixes.as_slice() else {
        panic!("one fix: {plan:?}")
    };
    assert_eq!(fix.rule, RuleId::ProfilesKmsGrantMissing);
    assert_eq!(fix.key_arn, DOMAIN_KEY);
    assert_eq!(fix.grantee, ROLE_ARN);
    assert_eq!(fix.operations, ["Decrypt", "GenerateDataKey"]);
    assert_eq!(
        fix.grant_name,
        "connect-slr-guard-PROFILES_KMS_GRANT_MISSING"
    );
    assert_eq!(fix.instance_arn, INSTANCE_ARN);
}

/// Why the guard refuses to fix the missing grant once `change` is made
/// to what it read.
fn refusal_after(change: impl FnOnce(&mut Snapshot)) -> String {
    let drifted = grant_missing_snapshot();
    let findings = evaluate(&drifted, &RuleSettings::default());
    let pairs: Vec<(&Finding, String)> = findings.iter().map(|f| (f, "fp".to_owned())).collect();
    let mut changed = drifted.clone();
    change(&mut changed);
    let plan = plan(&changed, &pairs, &actor(), &ops(), 5);
    assert!(plan.fixes.is_empty(), "{plan:?}");
    let [refusal] = plan.refusals.as_slice() else {
        panic!("one refusal: {plan:?}")
    };
    refusal.reason.clone()
}

fn domain_key(snapshot: &mut Snapshot) -> &mut connect_slr_guard::model::Key {
    match snapshot.keys.get_mut(DOMAIN_KEY) {
        Some(Observed::Found(key)) => key,
        _ => panic!("fixture has the key"),
    }
}

fn key_policy(document: serde_json::Value) -> impl FnOnce(&mut Snapshot) {
    move |s: &mut Snapshot| domain_key(s).policy = Some(Observed::Found(document))
}

#[test]
fn keys_the_guard_must_not_touch_are_refused_with_the_reason() {
    type Change = Box<dyn FnOnce(&mut Snapshot)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "the key is not customer managed",
            Box::new(|s| domain_key(s).customer_managed = false),
        ),
        (
            "the key is in another account",
            Box::new(|s| {
                let key = domain_key(s);
                key.arn = key.arn.replace("111122223333", "999988887777");
            }),
        ),
        (
            "the key is Disabled",
            Box::new(|s| domain_key(s).state = KeyState::Disabled),
        ),
        (
            "the key is PendingDeletion",
            Box::new(|s| domain_key(s).state = KeyState::PendingDeletion),
        ),
        (
            "the key policy could not be read",
            Box::new(|s| domain_key(s).policy = Some(Observed::Unverified(failed("AccessDenied")))),
        ),
        (
            "the key policy does not let the guard create grants",
            Box::new(key_policy(json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
                               "Action": "kms:*", "Resource": "*"}]
            }))),
        ),
        (
            "the key policy does not let the guard create grants",
            Box::new(key_policy(json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
                    {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:CreateGrant", "Resource": "*"}
                ]
            }))),
        ),
        (
            "the role is outside the Connect SLR path",
            Box::new(|s| {
                if let Some(Observed::Found(role)) = s.roles.get_mut(ROLE_ARN) {
                    role.path = "/".into();
                }
            }),
        ),
        (
            "the instance is not ACTIVE",
            Box::new(|s| {
                s.instances[0].status = connect_slr_guard::model::InstanceStatus::CreationInProgress
            }),
        ),
    ];
    for (reason, change) in cases {
        assert_eq!(refusal_after(change), reason);
    }
}

#[test]
fn a_disabled_key_is_unusable_and_has_no_fix() {
    let mut disabled = grant_missing_snapshot();
    domain_key(&mut disabled).state = KeyState::Disabled;
    let nothing = planned(&disabled, 5);
    assert!(
        nothing.fixes.is_empty() && nothing.refusals.is_empty(),
        "{nothing:?}"
    );
}

#[test]
fn a_missing_slr_is_never_recreated() {
    let mut snapshot = healthy_snapshot();
    snapshot.roles.insert(ROLE_ARN.into(), Observed::Absent);
    let plan = planned(&snapshot, 5);
    assert!(plan.fixes.is_empty());
    assert_eq!(plan.refusals[0].rule, RuleId::ConnectSlrMissing);
    let reason = &plan.refusals[0].reason;
    assert!(
        reason.contains("does not recreate service-linked roles"),
        "{reason}"
    );
}

#[test]
fn a_grant_that_could_pass_the_key_on_is_refused() {
    let snapshot = grant_missing_snapshot();
    let risky = vec!["Decrypt".to_owned(), "CreateGrant".to_owned()];
    let settings = RuleSettings {
        required_grant_operations: risky.clone(),
    };
    let findings = evaluate(&snapshot, &settings);
    let pairs: Vec<(&Finding, String)> = findings.iter().map(|f| (f, "fp".to_owned())).collect();
    let plan = plan(&snapshot, &pairs, &actor(), &risky, 5);
    assert!(plan.fixes.is_empty());
    assert!(plan.refusals[0].reason.contains("CreateGrant"), "{plan:?}");
}

#[test]
fn a_storage_key_fix_grants_what_storage_needs_whatever_is_configured() {
    let mut snapshot = healthy_snapshot();
    if let Some(Observed::Found(key)) = snapshot.keys.get_mut(STORAGE_KEY) {
        key.grants = Some(Observed::Found(Vec::new()));
    }
    let settings = RuleSettings {
        required_grant_operations: vec!["Decrypt".to_owned()],
    };
    let findings = evaluate(&snapshot, &settings);
    let pairs: Vec<(&Finding, String)> = findings.iter().map(|f| (f, "fp".to_owned())).collect();
    let plan = plan(
        &snapshot,
        &pairs,
        &actor(),
        &settings.required_grant_operations,
        5,
    );
    assert_eq!(plan.fixes[0].rule, RuleId::StorageKmsGrantMissing);
    assert_eq!(plan.fixes[0].operations, ["Decrypt", "GenerateDataKey"]);
}

#[test]
fn more_fixes_than_the_cap_make_none() {
    let plan = planned(&grant_missing_snapshot(), 0);
    assert!(plan.over_cap);
    assert_eq!(plan.fixes.len(), 1);
}

/// The drifted account, with KMS answering CreateGrant (recorded) and
/// STS naming the guard; `grant_lands` says whether ListGrants shows it after.
fn remediable_account(grant_lands: bool) -> (Account, Arc<Mutex<Vec<String>>>) {
    let mut account = Account::healthy();
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = created.clone();
    let seen = created.clone();
    account.kms.first(
        "ListGrants",
        mock!(aws_sdk_kms::Client::list_grants)
            .match_requests(move |req| {
                req.key_id() == Some(DOMAIN_KEY)
                    && (!grant_lands || seen.lock().unwrap().is_empty())
            })
            .then_output(|| {
                aws_sdk_kms::operation::list_grants::ListGrantsOutput::builder()
                    .truncated(false)
                    .build()
            }),
    );
    account.kms.first(
        "CreateGrant",
        mock!(aws_sdk_kms::Client::create_grant).then_compute_output(move |req| {
            assert_eq!(req.grantee_principal(), Some(ROLE_ARN));
            assert_eq!(
                req.operations(),
                [GrantOperation::Decrypt, GrantOperation::GenerateDataKey]
            );
            log.lock()
                .unwrap()
                .push(req.name().unwrap_or_default().to_owned());
            CreateGrantOutput::builder().grant_id("g-new").build()
        }),
    );
    (account, created)
}

fn guard(account: &Account, mode: Mode) -> Guard {
    let mut aws = account.aws();
    aws.sts = mock_client!(
        aws_sdk_sts,
        RuleMode::MatchAny,
        &[
            mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
                GetCallerIdentityOutput::builder()
                    .arn(GUARD_CALLER)
                    .account(ACCOUNT)
                    .build()
            })
        ]
    );
    let mut settings = settings_with_topic();
    settings.remediation = mode;
    Guard::new(aws, settings, None)
}

async fn remediated(account: &Account, mode: Mode) -> connect_slr_guard::report::PassReport {
    let guard = guard(account, mode);
    let mut report = sweep(&guard, Delivery::ReportOnly).await;
    guard
        .remediate(
            &mut report,
            &Options::default(),
            mode,
            &Filter::default(),
            None,
        )
        .await
        .unwrap();
    report
}

#[tokio::test]
async fn apply_makes_the_grant_and_verifies_it_cleared_the_drift() {
    let (account, created) = remediable_account(true);
    let report = remediated(&account, Mode::Apply).await;
    assert_eq!(
        *created.lock().unwrap(),
        ["connect-slr-guard-PROFILES_KMS_GRANT_MISSING"]
    );
    let done = report.remediation.as_ref().unwrap();
    assert_eq!(done.fixes[0].verified, Some(true));
    assert!(
        matches!(done.fixes[0].outcome, Some(Outcome::Applied { ref grant_id }) if grant_id == "g-new")
    );
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.rule == RuleId::RemediationFailed)
    );
    let drift = &report.findings[0];
    assert_eq!(
        drift.details["remediation_action"]["result"],
        "made and verified: the drift is gone"
    );
}

#[tokio::test]
async fn a_fix_that_does_not_clear_the_drift_is_remediation_failed() {
    let (account, created) = remediable_account(false);
    let report = remediated(&account, Mode::Apply).await;
    assert_eq!(created.lock().unwrap().len(), 1);
    let failed: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.rule == RuleId::RemediationFailed)
        .collect();
    let [failed] = failed.as_slice() else {
        panic!("one REMEDIATION_FAILED: {:?}", report.findings)
    };
    assert_eq!(failed.severity, connect_slr_guard::finding::Severity::High);
    assert_eq!(failed.resource_arn, DOMAIN_KEY);
    assert_eq!(failed.details["drift"], "PROFILES_KMS_GRANT_MISSING");
    assert!(failed.remediation.starts_with("aws kms create-grant"));
    assert!(report.remediation.as_ref().unwrap().failed());
}

#[tokio::test]
async fn dry_run_and_off_make_nothing() {
    let (account, created) = remediable_account(true);
    let report = remediated(&account, Mode::DryRun).await;
    assert!(created.lock().unwrap().is_empty());
    assert_eq!(
        report.findings[0].details["remediation_action"]["result"],
        "dry run: would be made"
    );

    let (account, created) = remediable_account(true);
    let guard = guard(&account, Mode::Off);
    let report = sweep(&guard, Delivery::ReportOnly).await;
    assert!(created.lock().unwrap().is_empty());
    assert!(report.remediation.is_none());
    assert_eq!(account.kms.calls("CreateGrant"), 0);
}

/// A publishing pass, as the Lambda runs it, under `mode`.
async fn published(account: &mut Account, mode: Mode) -> connect_slr_guard::report::PassReport {
    account.sns.first(
        "Publish",
        mock!(aws_sdk_sns::Client::publish).then_output(|| {
            aws_sdk_sns::operation::publish::PublishOutput::builder()
                .message_id("m-1")
                .build()
        }),
    );
    sweep(&guard(account, mode), Delivery::Publish).await
}

#[tokio::test]
async fn a_publishing_pass_fixes_only_in_apply_mode() {
    for (mode, grants) in [(Mode::Off, 0), (Mode::DryRun, 0), (Mode::Apply, 1)] {
        let (mut account, created) = remediable_account(true);
        let report = published(&mut account, mode).await;
        assert_eq!(created.lock().unwrap().len(), grants, "{mode:?}");
        assert_eq!(report.remediation.is_some(), mode != Mode::Off, "{mode:?}");
        assert_eq!(
            report.alerts_published, 1,
            "{mode:?}: the drift still pages"
        );
    }
}
