//! Property tests: the event parser against mutated real events, and the
//! trust-drift rule against generated IAM documents in every legal shape.
//! Bounded case counts keep them inside CI's budget.

use std::path::Path;

use connect_slr_guard::policy::{decode_document, trust_problems};
use connect_slr_guard::trigger::{
    MAX_TEXT_CHARS, Parsed, Scope, is_domain_name, is_instance_id, is_key_reference, is_role_name,
    parse, parse_bytes,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use serde_json::{Value, json};

fn samples() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,64}".prop_map(Value::String),
        (0usize..300_000).prop_map(|n| Value::String("A".repeat(n))),
        Just(json!("$(reboot); `id` ' \" \n\u{0}")),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"roleName": ["AWSServiceRoleForAmazonConnect_x"]})),
    ]
}

/// Replaces the node reached by following `path` (child picks modulo the
/// number of children) with `value`.
fn replace_at(node: &mut Value, path: &[usize], value: Value) {
    match (path.split_first(), node) {
        (Some((pick, rest)), Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(pick % map.len()).unwrap().clone();
            replace_at(map.get_mut(&key).unwrap(), rest, value);
        }
        (Some((pick, rest)), Value::Array(items)) if !items.is_empty() => {
            let len = items.len();
            replace_at(&mut items[pick % len], rest, value);
        }
        (_, node) => *node = value,
    }
}

fn check_parsed(parsed: Parsed) {
    let trigger = match parsed {
        Parsed::Check { scope, trigger } => {
            let valid = match &scope {
                Scope::Everything => true,
                Scope::Instance(id) => is_instance_id(id),
                Scope::Role(role) => is_role_name(&role.name),
                Scope::Domain(name) => is_domain_name(name),
                Scope::Key(key) => is_key_reference(key),
            };
            assert!(valid, "scope with an invalid identifier: {scope:?}");
            trigger
        }
        Parsed::Ignore { trigger, reason } => {
            assert!(
                reason.chars().count() < 4 * MAX_TEXT_CHARS,
                "reason not capped"
            );
            trigger
        }
    };
    for text in [
        trigger.event_name,
        trigger.actor,
        trigger.event_time,
        trigger.event_id,
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            text.chars().count() <= MAX_TEXT_CHARS + 1,
            "uncapped event text"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parser_survives_structural_mutations(
        sample in 0usize..64,
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 0..6), hostile_value()), 1..4),
    ) {
        let samples = samples();
        let mut event: Value = serde_json::from_slice(&samples[sample % samples.len()]).unwrap();
        for (path, value) in edits {
            replace_at(&mut event, &path, value);
        }
        if let Ok(parsed) = parse(event) {
            check_parsed(parsed);
        }
    }

    #[test]
    fn parser_survives_byte_mutations(
        sample in 0usize..64,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let samples = samples();
        let mut bytes = samples[sample % samples.len()].clone();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(parsed) = parse_bytes(&bytes) {
            check_parsed(parsed);
        }
    }
}

/// The canonical SLR trust statement in one of IAM's equivalent shapes.
fn connect_statement() -> impl Strategy<Value = Value> {
    let principal = prop_oneof![
        Just(json!({"Service": "connect.amazonaws.com"})),
        Just(json!({"Service": ["connect.amazonaws.com"]})),
    ];
    let action = prop_oneof![
        Just(json!("sts:AssumeRole")),
        Just(json!(["sts:AssumeRole"])),
        Just(json!(["sts:AssumeRole", "sts:TagSession"])),
        Just(json!("sts:*")),
    ];
    let condition = prop_oneof![
        Just(None),
        Just(Some(
            json!({"StringEquals": {"aws:SourceAccount": "111122223333"}})
        )),
    ];
    (principal, action, condition, any::<bool>()).prop_map(|(principal, action, condition, sid)| {
        let mut stmt = json!({"Effect": "Allow", "Principal": principal, "Action": action});
        if let Some(c) = condition {
            stmt["Condition"] = c;
        }
        if sid {
            stmt["Sid"] = json!("ConnectAssumesRole");
        }
        stmt
    })
}

/// Statements that change nothing about who may assume the role.
fn harmless_statement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(
            json!({"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "sts:AssumeRole"})
        ),
        Just(
            json!({"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
        ),
        Just(
            json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "sts:GetCallerIdentity"})
        ),
        // Everyone but Connect is shut out.
        Just(
            json!({"Effect": "Deny", "NotPrincipal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"})
        ),
    ]
}

/// Statements that let someone other than Connect in.
fn drifting_statement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"})),
        Just(json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})),
        Just(
            json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": ["sts:AssumeRole"]})
        ),
        Just(json!({"Effect": "Allow", "Principal": {"AWS": ["444455556666"]}, "Action": "sts:*"})),
        Just(
            json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})
        ),
        Just(
            json!({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "sts:AssumeRole"})
        ),
        Just(
            json!({"Effect": "Allow", "Principal": {"Federated": "cognito-identity.amazonaws.com"}, "Action": "*"})
        ),
        Just(
            json!({"Effect": "Deny", "Principal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"})
        ),
        Just(
            json!({"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:AssumeRoleWithWebIdentity"})
        ),
        Just(
            json!({"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::111122223333:saml-provider/Okta"}, "Action": ["sts:AssumeRoleWithSAML"]})
        ),
        // A Deny whose NotPrincipal leaves Connect out denies Connect.
        Just(
            json!({"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"})
        ),
        Just(json!({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})),
    ]
}

fn document(mut statements: Vec<Value>, order: &[usize], as_object: bool, version: bool) -> Value {
    for (i, &j) in order.iter().enumerate() {
        let len = statements.len();
        statements.swap(i % len, j % len);
    }
    let statement = if as_object && statements.len() == 1 {
        statements.pop().unwrap()
    } else {
        Value::Array(statements)
    };
    let mut doc = json!({"Statement": statement});
    if version {
        doc["Version"] = json!("2012-10-17");
    }
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn equivalent_trust_shapes_are_not_drift(
        connect in connect_statement(),
        harmless in prop::collection::vec(harmless_statement(), 0..3),
        order in prop::collection::vec(any::<usize>(), 0..4),
        as_object in any::<bool>(),
        version in any::<bool>(),
        encode in any::<bool>(),
    ) {
        let mut statements = vec![connect];
        statements.extend(harmless);
        let doc = document(statements, &order, as_object, version);
        let doc = if encode {
            decode_document(&utf8_percent_encode(&doc.to_string(), NON_ALPHANUMERIC).to_string()).unwrap()
        } else {
            doc
        };
        prop_assert_eq!(trust_problems(&doc), Vec::<String>::new(), "{}", doc);
    }

    #[test]
    fn any_extra_way_in_is_drift(
        connect in connect_statement(),
        harmless in prop::collection::vec(harmless_statement(), 0..3),
        drift in drifting_statement(),
        order in prop::collection::vec(any::<usize>(), 0..4),
        version in any::<bool>(),
    ) {
        let mut statements = vec![connect, drift];
        statements.extend(harmless);
        let doc = document(statements, &order, false, version);
        prop_assert!(!trust_problems(&doc).is_empty(), "not flagged: {}", doc);
    }
}

#[test]
fn a_trust_policy_without_connect_is_drift() {
    for doc in [
        json!({}),
        json!({"Statement": []}),
        json!({"Statement": "nonsense"}),
        json!(null),
    ] {
        assert!(!trust_problems(&doc).is_empty(), "{doc}");
    }
}
