//! The alert lifecycle as a state machine: any sequence of passes (the
//! drift present or gone, the instance covered or not, time passing,
//! retried passes) pages OPEN once until a RESOLVED, never RESOLVED without
//! an OPEN, and REMINDER only while open.

use std::collections::{BTreeMap, BTreeSet};

use connect_slr_guard::alert::lifecycle::{Coverage, Decision, Record, decide};
use connect_slr_guard::finding::{Finding, RuleId};
use proptest::prelude::*;

use super::support::{INSTANCE_ARN, ROLE_ARN};

const FP: &str = "fingerprint";
const REMINDER: i64 = 100;

#[derive(Debug, Clone, Copy)]
struct Pass {
    present: bool,
    covered: bool,
    wait: i64,
    retried: bool,
    muted: bool,
}

fn pass() -> impl Strategy<Value = Pass> {
    (
        any::<bool>(),
        any::<bool>(),
        0..250i64,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(present, covered, wait, retried, muted)| Pass {
            present,
            covered,
            wait,
            retried,
            muted,
        })
}

fn finding() -> Finding {
    Finding::new(RuleId::ConnectSlrMissing, Some(INSTANCE_ARN), ROLE_ARN)
}

/// Runs one pass against the ledger, committing what it pages as the
/// guard does; returns the pages.
fn run(ledger: &mut BTreeMap<String, Record>, pass: Pass, now: i64) -> Vec<&'static str> {
    let drift = finding();
    let found: BTreeMap<String, &Finding> = if pass.present {
        BTreeMap::from([(FP.to_owned(), &drift)])
    } else {
        BTreeMap::new()
    };
    let coverage = Coverage {
        instances: if pass.covered {
            BTreeSet::from([INSTANCE_ARN.to_owned()])
        } else {
            BTreeSet::new()
        },
        ..Coverage::default()
    };
    let muted: BTreeSet<String> = if pass.muted {
        BTreeSet::from([FP.to_owned()])
    } else {
        BTreeSet::new()
    };
    let mut pages = Vec::new();
    for decision in decide(now, &found, ledger, &coverage, Some(REMINDER), &muted) {
        match decision {
            Decision::Open(fp) | Decision::Remind(fp) => {
                let first_seen = ledger.get(&fp).map_or(now, |r| r.first_seen);
                let kind = if ledger.get(&fp).is_some_and(Record::open_sent) {
                    "REMINDER"
                } else {
                    "OPEN"
                };
                ledger.insert(
                    fp.clone(),
                    Record {
                        fingerprint: fp,
                        first_seen,
                        last_notified: Some(now),
                        finding: drift.clone(),
                        version: 1,
                        place: None,
                    },
                );
                pages.push(kind);
            }
            Decision::Resolve(fp, _) => {
                ledger.remove(&fp);
                pages.push("RESOLVED");
            }
            Decision::Forget(fp) => {
                ledger.remove(&fp);
            }
            Decision::Quiet(_) => {}
            Decision::Muted(_) => pages.push("MUTED"),
        }
    }
    pages
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn one_open_per_drift_and_no_resolved_without_it(passes in prop::collection::vec(pass(), 1..40)) {
        let mut ledger = BTreeMap::new();
        let mut now = 0;
        let mut open = false;
        let mut last_page = 0;
        for pass in passes {
            now += pass.wait;
            let mut pages = run(&mut ledger, pass, now);
            if pass.retried {
                pages.extend(run(&mut ledger, pass, now));
            }
            for page in pages {
                if page == "MUTED" {
                    prop_assert!(pass.muted, "muted without a mute");
                    continue;
                }
                prop_assert!(page == "RESOLVED" || !pass.muted, "a mute let {} through", page);
                match page {
                    "OPEN" => { prop_assert!(!open, "two OPENs without a RESOLVED"); open = true; }
                    "REMINDER" => {
                        prop_assert!(open, "REMINDER while not open");
                        prop_assert!(now - last_page >= REMINDER, "REMINDER too soon");
                    }
                    "RESOLVED" => { prop_assert!(open, "RESOLVED without an OPEN"); open = false; }
                    other => prop_assert!(false, "unknown page {}", other),
                }
                last_page = now;
            }
            if pass.present && !pass.muted {
                prop_assert!(open, "a drift present after an unmuted pass is open");
            }
        }
    }
}

#[test]
fn a_pass_that_did_not_cover_the_instance_resolves_nothing() {
    let mut ledger = BTreeMap::new();
    let seen = Pass {
        present: true,
        covered: true,
        wait: 0,
        retried: false,
        muted: false,
    };
    assert_eq!(run(&mut ledger, seen, 0), ["OPEN"]);
    let gone_but_not_covered = Pass {
        present: false,
        covered: false,
        ..seen
    };
    assert!(run(&mut ledger, gone_but_not_covered, 10).is_empty());
    let gone_and_covered = Pass {
        present: false,
        ..seen
    };
    assert_eq!(run(&mut ledger, gone_and_covered, 20), ["RESOLVED"]);
}

#[test]
fn an_instance_a_sweep_no_longer_lists_resolves_as_deleted() {
    let drift = finding();
    let record = Record {
        fingerprint: FP.into(),
        first_seen: 0,
        last_notified: Some(0),
        finding: drift,
        version: 1,
        place: None,
    };
    let records = BTreeMap::from([(FP.to_owned(), record)]);
    let coverage = Coverage {
        existing: Some(BTreeSet::new()),
        ..Coverage::default()
    };
    let decisions = decide(
        10,
        &BTreeMap::new(),
        &records,
        &coverage,
        None,
        &BTreeSet::new(),
    );
    assert_eq!(
        decisions,
        [Decision::Resolve(
            FP.into(),
            connect_slr_guard::alert::lifecycle::ResolvedReason::InstanceDeleted
        )]
    );
}

#[test]
fn a_sweep_of_one_account_and_region_resolves_nothing_elsewhere() {
    use connect_slr_guard::model::Place;
    let place = |account: &str, region: &str| Place {
        account: account.into(),
        region: region.into(),
    };
    let record = |at: Option<Place>| Record {
        fingerprint: FP.into(),
        first_seen: 0,
        last_notified: Some(0),
        finding: finding(),
        version: 1,
        place: at,
    };
    // A sweep of another account lists none of this account's instances.
    let coverage = Coverage {
        existing: Some(BTreeSet::new()),
        account_level: true,
        place: Some(place("444455556666", "eu-west-2")),
        ..Coverage::default()
    };
    let decide_for = |at: Option<Place>| {
        let records = BTreeMap::from([(FP.to_owned(), record(at))]);
        decide(
            10,
            &BTreeMap::new(),
            &records,
            &coverage,
            None,
            &BTreeSet::new(),
        )
    };
    assert!(decide_for(Some(place("111122223333", "eu-west-2"))).is_empty());
    assert!(decide_for(Some(place("444455556666", "us-east-1"))).is_empty());
    assert_eq!(
        decide_for(Some(place("444455556666", "eu-west-2"))).len(),
        1
    );
    // Records from before central mode carry no place: as before, any pass.
    assert_eq!(decide_for(None).len(), 1);
}

#[test]
fn a_member_role_assumed_again_resolves_its_incomplete_check_even_in_parts() {
    let role = "arn:aws:iam::444455556666:role/connect-slr-guard-audit";
    let record = Record {
        fingerprint: FP.into(),
        first_seen: 0,
        last_notified: Some(0),
        finding: Finding::new(RuleId::CheckIncomplete, None, role),
        version: 1,
        place: None,
    };
    let records = BTreeMap::from([(FP.to_owned(), record)]);
    let decide_with = |assumed: Option<&str>| {
        let coverage = Coverage {
            assumed_role: assumed.map(str::to_owned),
            ..Coverage::default()
        };
        decide(
            10,
            &BTreeMap::new(),
            &records,
            &coverage,
            None,
            &BTreeSet::new(),
        )
    };
    assert_eq!(decide_with(Some(role)).len(), 1);
    assert!(decide_with(None).is_empty());
    assert!(
        decide_with(Some(
            "arn:aws:iam::777788889999:role/connect-slr-guard-audit"
        ))
        .is_empty()
    );
}
