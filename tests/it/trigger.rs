//! Triggers: every sample in `events/` maps to its scope; hostile input is
//! an error, never a panic.

use std::path::Path;

use connect_slr_guard::trigger::{
    MAX_EVENT_BYTES, Parsed, RoleRef, Scope, TriggerError, TriggerKind, parse, parse_bytes,
};
use serde_json::{Value, json};

use super::support::{
    DELETION_TASK, DOMAIN, DOMAIN_KEY as KEY_ARN, DOMAIN_KEY_ID as KEY_ID, INSTANCE_ID as INSTANCE,
    ROLE_NAME as ROLE,
};

fn expected(file: &str) -> Option<Scope> {
    let scope = match file {
        f if f.starts_with("ignored-") => return None,
        "iam-delete-service-linked-role.json" => Scope::Role(RoleRef {
            name: ROLE.into(),
            deletion_task: Some(DELETION_TASK.into()),
        }),
        f if f.starts_with("iam-") => Scope::Role(ROLE.into()),
        f if f.starts_with("connect-") => Scope::Instance(INSTANCE.into()),
        f if f.starts_with("profiles-") => Scope::Domain(DOMAIN.into()),
        "kms-create-grant.json" | "kms-retire-grant.json" => Scope::Key(KEY_ARN.into()),
        "kms-update-alias.json" | "kms-delete-alias.json" => {
            Scope::Key("alias/acme-connect".into())
        }
        "kms-connect-custom-key-store.json" | "kms-disconnect-custom-key-store.json" => {
            Scope::Everything
        }
        f if f.starts_with("kms-") => Scope::Key(KEY_ID.into()),
        "scheduled-sweep.json" => Scope::Everything,
        other => panic!("no expectation for events/{other}: add one"),
    };
    Some(scope)
}

fn event(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(file);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_sample_event_maps_to_its_scope() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let parsed =
            parse_bytes(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{file}: {e}"));
        match (expected(&file), parsed) {
            (
                Some(scope),
                Parsed::Check {
                    scope: got,
                    trigger,
                },
            ) => {
                assert_eq!(got, scope, "{file}");
                assert!(
                    trigger.event_name.is_some() && trigger.event_id.is_some(),
                    "{file}"
                );
            }
            (None, Parsed::Ignore { reason, .. }) => assert!(!reason.is_empty(), "{file}"),
            (want, got) => panic!("{file}: wanted {want:?}, got {got:?}"),
        }
        seen += 1;
    }
    assert!(seen >= 35, "only {seen} sample events");
}

#[test]
fn trigger_carries_who_and_when() {
    let Parsed::Check { trigger, .. } = parse(event("kms-revoke-grant.json")).unwrap() else {
        panic!("RevokeGrant is a trigger");
    };
    assert_eq!(trigger.kind, TriggerKind::Event);
    assert_eq!(trigger.event_name.as_deref(), Some("RevokeGrant"));
    assert!(trigger.actor.as_deref().unwrap().starts_with("arn:aws:"));
    assert!(trigger.event_time.is_some());
    let Parsed::Check { trigger, .. } = parse(event("scheduled-sweep.json")).unwrap() else {
        panic!("the schedule is a trigger");
    };
    assert_eq!(trigger.kind, TriggerKind::Schedule);
}

#[test]
fn console_instance_arn_is_accepted_url_encoded() {
    let mut e = event("connect-delete-instance.json");
    e["detail"]["requestParameters"]["InstanceId"] = json!(
        "arn%3Aaws%3Aconnect%3Aeu-west-2%3A111122223333%3Ainstance%2F11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(
        parse(e).unwrap(),
        Parsed::Check {
            scope: Scope::Instance(INSTANCE.into()),
            trigger: match parse(event("connect-delete-instance.json")).unwrap() {
                Parsed::Check { trigger, .. } => trigger,
                other => panic!("{other:?}"),
            },
        }
    );
}

#[test]
fn field_casing_is_not_trusted() {
    let mut e = event("kms-disable-key.json");
    e["detail"]["requestParameters"] = json!({ "KeyId": KEY_ID });
    assert!(matches!(parse(e).unwrap(), Parsed::Check { scope: Scope::Key(k), .. } if k == KEY_ID));
}

#[test]
fn role_names_are_matched_without_regard_to_case() {
    let mut e = event("iam-detach-role-policy.json");
    let lower = ROLE.to_ascii_lowercase();
    e["detail"]["requestParameters"]["roleName"] = json!(lower);
    assert!(
        matches!(parse(e).unwrap(), Parsed::Check { scope: Scope::Role(r), .. } if r.name == lower),
        "IAM role names are case-insensitive"
    );
}

#[test]
fn failed_calls_are_acknowledged_without_a_pass() {
    let mut e = event("iam-delete-service-linked-role.json");
    e["detail"]["errorCode"] = json!("AccessDenied");
    assert!(matches!(parse(e).unwrap(), Parsed::Ignore { .. }));
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let huge = vec![b' '; MAX_EVENT_BYTES + 1];
    assert_eq!(
        parse_bytes(&huge),
        Err(TriggerError::TooLarge(MAX_EVENT_BYTES + 1))
    );
    let full = serde_json::to_vec(&event("kms-revoke-grant.json")).unwrap();
    for cut in [0, 1, full.len() / 2, full.len() - 1] {
        assert!(parse_bytes(&full[..cut]).is_err(), "truncated at {cut}");
    }
    let wrong_types = [
        json!([]),
        json!("event"),
        json!({"detail-type": 42, "source": "aws.kms", "detail": {}}),
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "detail": {"eventName": 7}}),
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "time": "yesterday", "detail": {}}),
    ];
    for value in wrong_types {
        assert!(parse(value.clone()).is_err(), "{value}");
    }
}

#[test]
fn identifiers_are_validated() {
    let mut e = event("iam-delete-role.json");
    e["detail"]["requestParameters"]["roleName"] =
        json!("AWSServiceRoleForAmazonConnect_$(reboot)");
    assert!(matches!(
        parse(e),
        Err(TriggerError::InvalidIdentifier { .. })
    ));
    let mut e = event("connect-delete-instance.json");
    e["detail"]["requestParameters"]["InstanceId"] = json!("x".repeat(10_000));
    assert!(matches!(
        parse(e),
        Err(TriggerError::InvalidIdentifier { .. })
    ));
    let mut e = event("kms-disable-key.json");
    e["detail"]["requestParameters"]["keyId"] = json!("$(reboot)");
    assert!(matches!(
        parse(e),
        Err(TriggerError::InvalidIdentifier { .. })
    ));
    let mut e = event("profiles-delete-domain.json");
    e["detail"]["requestParameters"] = json!({});
    assert!(matches!(parse(e), Err(TriggerError::MissingField { .. })));
}

#[test]
fn event_text_is_length_capped() {
    let mut e = event("kms-revoke-grant.json");
    e["detail"]["userIdentity"]["arn"] = json!("a".repeat(100_000));
    let Parsed::Check { trigger, .. } = parse(e).unwrap() else {
        panic!("still a trigger");
    };
    assert!(trigger.actor.unwrap().chars().count() <= 257);
}

#[test]
fn kms_event_without_a_key_sweeps_rather_than_drops() {
    let mut e = event("kms-retire-grant.json");
    e["detail"]["resources"] = json!([]);
    assert!(matches!(
        parse(e).unwrap(),
        Parsed::Check {
            scope: Scope::Everything,
            ..
        }
    ));
}

#[test]
fn kms_changes_settle_and_others_do_not() {
    let settles = |file: &str| match parse(event(file)).unwrap() {
        Parsed::Check { trigger, .. } => trigger.settles,
        Parsed::Ignore { .. } => panic!("{file} is a trigger"),
    };
    assert!(settles("kms-revoke-grant.json") && settles("kms-put-key-policy.json"));
    assert!(!settles("iam-delete-role.json") && !settles("kms-cmk-deletion.json"));
    let Parsed::Check { trigger, .. } = parse(event("kms-revoke-grant.json")).unwrap() else {
        panic!()
    };
    // 2026-11-20T10:15:30Z is 1795169730 s after the epoch.
    assert_eq!(trigger.age_secs(1_795_169_730 + 90), Some(90));
}

#[test]
fn a_work_message_is_an_eventbridge_event_or_a_recheck_envelope() {
    use connect_slr_guard::trigger::work::{Recheck, WorkItem};
    let event = event("kms-revoke-grant.json");
    let due = WorkItem::parse(&Recheck::new(event.clone(), 2).body()).unwrap();
    assert_eq!((&due.event, due.attempt), (&event, 2));
    // As an EventBridge rule with an SQS target delivers it: the event is the body.
    let direct = WorkItem::parse(&event.to_string()).unwrap();
    assert_eq!((&direct.event, direct.attempt), (&event, 0));
    assert!(WorkItem::parse(r#"{"schema":"other","attempt":1,"event":{}}"#).is_err());
    assert!(WorkItem::parse("not json").is_err());
}

#[test]
fn another_services_service_linked_role_is_ignored() {
    // The rule matches CreateServiceLinkedRole by name alone; the parser decides.
    let mut e = event("iam-create-service-linked-role.json");
    e["detail"]["requestParameters"]["aWSServiceName"] = "elasticbeanstalk.amazonaws.com".into();
    e["detail"]["responseElements"]["role"]["roleName"] =
        "AWSServiceRoleForElasticBeanstalk".into();
    assert!(matches!(parse(e.clone()).unwrap(), Parsed::Ignore { .. }));
    e["detail"]["responseElements"] = Value::Null;
    assert!(matches!(parse(e).unwrap(), Parsed::Ignore { .. }));
}
