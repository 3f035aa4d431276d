//! The rule and trigger catalogues against everything that must agree with
//! them: the README, the serialized rule ids, the sample events.

use std::collections::BTreeSet;
use std::path::Path;

use connect_slr_guard::finding::RuleId;
use connect_slr_guard::trigger;
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_rule_table_is_the_catalogue() {
    let table = RuleId::markdown_table();
    assert!(
        repo_file("README.md").contains(&table),
        "README.md's rule table differs from the catalogue in src/finding.rs; \
         replace it with the output of `connect-slr-guard rules`:\n{table}"
    );
}

#[test]
fn each_rule_serializes_as_its_catalogue_id() {
    let mut seen = BTreeSet::new();
    for rule in RuleId::ALL {
        assert_eq!(serde_json::to_value(rule).unwrap(), rule.as_str());
        assert!(
            seen.insert(rule.as_str()),
            "{rule} is in the catalogue twice"
        );
        assert!(
            !rule.spec().description.is_empty(),
            "{rule} has no description"
        );
    }
}

#[test]
fn every_trigger_has_a_sample_event() {
    let samples: Vec<Value> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("events"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .map(|path| serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
            .collect();
    for spec in trigger::catalogue() {
        let sampled = samples.iter().any(|event| {
            event["source"] == spec.source
                && event["detail-type"] == spec.detail_type
                && spec
                    .event_name
                    .is_none_or(|name| event["detail"]["eventName"] == name)
        });
        assert!(
            sampled,
            "no file in events/ is a {} {} {:?} event: add one (and its scope in tests/it/trigger.rs)",
            spec.source, spec.detail_type, spec.event_name
        );
    }
}
