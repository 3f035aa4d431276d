//! The alert lifecycle under a ledger, as a pure function: given what a
//! pass found, what the ledger holds and what the pass covered, decide what
//! to page. OPEN once per fingerprint, REMINDER every interval while the
//! drift persists, RESOLVED only when a pass covered the resource completely
//! and only if an OPEN was sent. No IO and no clock: times come in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, RuleId};
use crate::model::{Observed, Place, Snapshot};
use crate::trigger::Scope;

/// What the ledger remembers of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub fingerprint: String,
    /// Epoch seconds the drift was first seen (kept across reminders).
    pub first_seen: i64,
    /// Epoch seconds of the last OPEN or REMINDER; `None` until one is sent.
    pub last_notified: Option<i64>,
    /// The finding as last seen: what it is about, and its RESOLVED.
    pub finding: Finding,
    /// Bumped on every commit: a claim names the version it decided on.
    pub version: u64,
    /// The account and Region of the drift (absent in records written
    /// before central mode: those match any pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
}

impl Record {
    pub fn open_sent(&self) -> bool {
        self.last_notified.is_some()
    }
}

/// What a pass verified completely: only there may a finding resolve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Instances checked with every read complete.
    pub instances: BTreeSet<String>,
    /// Every instance that exists, when the pass listed them all: an
    /// instance not in it is gone.
    pub existing: Option<BTreeSet<String>>,
    /// The instance id a targeted pass found gone.
    pub gone: Option<String>,
    /// Findings not tied to an instance (cross-domain exposure, a failed
    /// listing): only a sweep that listed everything covers them.
    pub account_level: bool,
    /// The account and Region the pass read: it covers nothing elsewhere.
    pub place: Option<Place>,
    /// The member role the pass assumed: its `CHECK_INCOMPLETE` is over,
    /// even in a sweep read in parts.
    pub assumed_role: Option<String>,
}

impl Coverage {
    /// What `snapshot` covered for `scope`, given the pass's `findings`: an
    /// instance with a `CHECK_INCOMPLETE` is not covered.
    pub fn of(scope: &Scope, snapshot: &Snapshot, findings: &[Finding]) -> Coverage {
        let incomplete: BTreeSet<Option<&str>> = findings
            .iter()
            .filter(|f| f.rule == RuleId::CheckIncomplete)
            .map(|f| f.instance_arn.as_deref())
            .collect();
        let instances = snapshot
            .instances
            .iter()
            .filter(|i| i.checked && i.is_active())
            .filter(|i| !incomplete.contains(&Some(i.arn.as_str())))
            .map(|i| i.arn.clone())
            .collect();
        let listed_all = snapshot.incomplete.is_empty();
        let sweep = matches!(scope, Scope::Everything) && listed_all;
        let existing = match &snapshot.part {
            Some(part) => part.listed.iter().cloned().collect(),
            None => snapshot.instances.iter().map(|i| i.arn.clone()).collect(),
        };
        Coverage {
            instances,
            existing: sweep.then_some(existing),
            gone: match scope {
                Scope::Instance(id) if listed_all && snapshot.instances.is_empty() => {
                    Some(id.clone())
                }
                _ => None,
            },
            // A part of a sweep did not see every instance's domain.
            place: snapshot.place(),
            assumed_role: snapshot.assumed_role.clone(),
            account_level: sweep
                && snapshot.part.is_none()
                && !incomplete.contains(&None)
                && matches!(snapshot.connect_domains, Observed::Found(_)),
        }
    }
}

/// Why a RESOLVED is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResolvedReason {
    #[serde(rename = "no longer found")]
    NoLongerFound,
    #[serde(rename = "instance deleted")]
    InstanceDeleted,
}

impl ResolvedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedReason::NoLongerFound => "no longer found",
            ResolvedReason::InstanceDeleted => "instance deleted",
        }
    }
}

/// One decision about one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Page OPEN: new, back after RESOLVED, or never sent.
    Open(String),
    /// Page REMINDER: still there, and the interval has passed.
    Remind(String),
    /// Page RESOLVED: an OPEN was sent and a covering pass no longer finds it.
    Resolve(String, ResolvedReason),
    /// Gone before anyone was paged: drop the record silently.
    Forget(String),
    /// Still there and already paged recently: nothing to send.
    Quiet(String),
    /// Would page OPEN or REMINDER, but a mute covers it: logged, counted.
    Muted(String),
}

/// Decides every fingerprint the pass found or the ledger holds.
pub fn decide(
    now: i64,
    found: &BTreeMap<String, &Finding>,
    records: &BTreeMap<String, Record>,
    coverage: &Coverage,
    reminder_interval: Option<i64>,
    muted: &BTreeSet<String>,
) -> Vec<Decision> {
    let mut decisions: Vec<Decision> = found
        .keys()
        .map(|fingerprint| {
            let page = page_for(
                fingerprint,
                records.get(fingerprint),
                now,
                reminder_interval,
            );
            match page {
                Decision::Open(fp) | Decision::Remind(fp) if muted.contains(&fp) => {
                    Decision::Muted(fp)
                }
                other => other,
            }
        })
        .collect();
    decisions.extend(
        records
            .values()
            .filter(|record| !found.contains_key(&record.fingerprint))
            .filter_map(|record| {
                let reason = covered(record, coverage)?;
                Some(if record.open_sent() {
                    Decision::Resolve(record.fingerprint.clone(), reason)
                } else {
                    Decision::Forget(record.fingerprint.clone())
                })
            }),
    );
    decisions
}

/// What a drift the pass found would page, mutes aside.
fn page_for(
    fingerprint: &str,
    record: Option<&Record>,
    now: i64,
    reminder_interval: Option<i64>,
) -> Decision {
    let fingerprint = fingerprint.to_owned();
    let Some(last) = record.and_then(|r| r.last_notified) else {
        return Decision::Open(fingerprint);
    };
    if reminder_interval.is_some_and(|interval| now - last >= interval) {
        Decision::Remind(fingerprint)
    } else {
        Decision::Quiet(fingerprint)
    }
}

/// Why the pass may resolve the record, if it covered its resource.
fn covered(record: &Record, coverage: &Coverage) -> Option<ResolvedReason> {
    if let (Some(here), Some(there)) = (&coverage.place, &record.place)
        && here != there
    {
        return None;
    }
    match &record.finding.instance_arn {
        Some(arn) if is_gone(arn, coverage) => Some(ResolvedReason::InstanceDeleted),
        Some(arn) if coverage.instances.contains(arn) => Some(ResolvedReason::NoLongerFound),
        Some(_) => None,
        None if role_assumed(record, coverage) => Some(ResolvedReason::NoLongerFound),
        None => coverage
            .account_level
            .then_some(ResolvedReason::NoLongerFound),
    }
}

/// Whether the record is a member role that could not be assumed, and the
/// pass assumed it.
fn role_assumed(record: &Record, coverage: &Coverage) -> bool {
    record.finding.rule == RuleId::CheckIncomplete
        && coverage.assumed_role.as_deref() == Some(record.finding.resource_arn.as_str())
}

fn is_gone(instance_arn: &str, coverage: &Coverage) -> bool {
    let listed_without = coverage
        .existing
        .as_ref()
        .is_some_and(|existing| !existing.contains(instance_arn));
    let named_gone = coverage
        .gone
        .as_ref()
        .is_some_and(|id| instance_arn.ends_with(&format!(":instance/{id}")));
    listed_without || named_gone
}
