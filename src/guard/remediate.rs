//! A pass's remediation: plan from the snapshot, act (in `apply` mode),
//! re-read each instance acted on and re-judge it. Every step lands in the
//! findings' `details`, the log and (with a ledger) the audit trail.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use super::{Guard, GuardError, epoch_now};
use crate::alert::ledger::LedgerState;
use crate::finding::{Finding, RuleId};
use crate::inventory::{self, Options};
use crate::model::Snapshot;
use crate::remediation::{
    self, Actor, Filter, Fix, FixReport, Mode, Outcome, Plan, Refusal, Remediation, annotate,
};
use crate::report::PassReport;
use crate::rules;
use crate::trigger::Scope;

/// Re-reads after a fix before calling it failed: KMS grants are eventually
/// consistent ("usually less than five minutes").
const VERIFY_ATTEMPTS: u32 = 3;
const VERIFY_DELAY: Duration = Duration::from_secs(2);

impl Guard {
    /// Plans the pass's fixes and, in `apply` mode, makes and verifies them.
    /// `ledger`: what the ledger holds, when there is one: a muted drift is
    /// never fixed, and fixes made since the last sweep count against
    /// `REMEDIATION_MAX_ACTIONS`.
    pub async fn remediate(
        &self,
        report: &mut PassReport,
        opts: &Options,
        mode: Mode,
        filter: &Filter,
        ledger: Option<&LedgerState>,
    ) -> Result<(), GuardError> {
        let max_actions = self.settings.remediation_max_actions;
        let mut plan = match self.actor().await {
            Ok(actor) => self.plan(report, &actor, filter),
            Err(reason) => unplannable(report, filter, &reason),
        };
        if let Some(state) = ledger {
            hold_muted(&mut plan, state, report);
            let recent = recent_fixes(state, report);
            if recent > 0 && plan.fixes.len() + recent > max_actions {
                warn!(
                    recent,
                    "remediation: fixes made since the last sweep count against the cap"
                );
                plan.over_cap = true;
            }
        }
        let mut done = Remediation {
            mode,
            max_actions,
            over_cap: plan.over_cap,
            fixes: Vec::new(),
            refusals: plan.refusals.clone(),
        };
        if plan.over_cap {
            warn!(
                fixes = plan.fixes.len(),
                max_actions, "remediation: too many fixes; paging instead"
            );
        }
        for fix in plan.fixes {
            let outcome = match mode {
                Mode::Apply if !plan.over_cap => {
                    Some(remediation::apply(&self.aws.kms, &fix).await)
                }
                _ => None,
            };
            done.fixes.push(FixReport {
                fix,
                outcome,
                verified: None,
            });
        }
        self.verify(&mut done, report, opts).await;
        self.record(&done, report).await?;
        explain(report, &done);
        report.remediation = Some(done);
        Ok(())
    }

    fn plan(&self, report: &PassReport, actor: &Actor, filter: &Filter) -> Plan {
        let ctx = &report.context;
        let candidates: Vec<(&Finding, String)> = report
            .findings
            .iter()
            .filter(|f| filter.admits(f))
            .map(|f| (f, f.fingerprint(&ctx.account, &ctx.region)))
            .collect();
        remediation::plan(
            &report.snapshot,
            &candidates,
            actor,
            &self.settings.rules.required_grant_operations,
            self.settings.remediation_max_actions,
        )
    }

    /// Re-reads each instance a fix was made on until its drifts are gone,
    /// or the attempts run out. A fix is verified only by a complete
    /// re-read that no longer finds its drift.
    async fn verify(&self, done: &mut Remediation, report: &mut PassReport, opts: &Options) {
        let made = |f: &&mut FixReport| f.outcome.is_some();
        let mut seen = Reread::default();
        for attempt in 1..=VERIFY_ATTEMPTS {
            if !done.fixes.iter_mut().any(|f| made(&f)) {
                return;
            }
            if attempt > 1 {
                tokio::time::sleep(VERIFY_DELAY).await;
            }
            let instances: BTreeSet<String> = done
                .fixes
                .iter()
                .filter(|f| f.outcome.is_some())
                .map(|f| instance_id(&f.fix.instance_arn).to_owned())
                .collect();
            seen = self.reread(&instances, report, opts).await;
            if done
                .fixes
                .iter()
                .filter(|f| f.outcome.is_some())
                .all(|f| seen.cleared(f))
            {
                break;
            }
        }
        for fix in done.fixes.iter_mut().filter(made) {
            let applied = matches!(fix.outcome, Some(Outcome::Applied { .. }));
            fix.verified = Some(applied && seen.cleared(fix));
            if fix.verified == Some(false) {
                report.findings.push(failed(fix, &report.findings));
            }
        }
    }

    /// What the rules find now on `instances`.
    async fn reread(
        &self,
        instances: &BTreeSet<String>,
        report: &PassReport,
        opts: &Options,
    ) -> Reread {
        let ctx = &report.context;
        let mut seen = Reread::default();
        for id in instances {
            let scope = Scope::Instance(id.clone());
            let snapshot: Snapshot = Box::pin(inventory::collect(&self.aws, &scope, opts)).await;
            for finding in rules::evaluate(&snapshot, &self.settings.rules) {
                if finding.rule == RuleId::CheckIncomplete {
                    seen.unread.insert(id.clone());
                }
                seen.found
                    .insert(finding.fingerprint(&ctx.account, &ctx.region));
            }
        }
        seen
    }

    /// The audit trail: one ledger item per fix made.
    async fn record(&self, done: &Remediation, report: &PassReport) -> Result<(), GuardError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let now = epoch_now();
        for fix in done.fixes.iter().filter(|f| f.outcome.is_some()) {
            let action = json!({
                "mode": done.mode,
                "account": report.context.account,
                "region": report.context.region,
                "trigger": report.context.trigger,
                "fix": fix,
            });
            // One item per fix: the grant name alone repeats within a rule.
            let id = format!("{}#{}", fix.fix.grant_name, fix.fix.fingerprints.join("+"));
            ledger.record_action(&id, &action, now).await?;
        }
        Ok(())
    }
}

/// A muted drift is someone's decision: never fixed, even if fixable.
fn hold_muted(plan: &mut Plan, state: &LedgerState, report: &PassReport) {
    let now = epoch_now();
    let ctx = &report.context;
    let muted = |fingerprint: &str| {
        report
            .findings
            .iter()
            .filter(|f| f.fingerprint(&ctx.account, &ctx.region) == fingerprint)
            .any(|f| state.mutes.iter().any(|m| m.is_active(now) && m.covers(f)))
    };
    let (held, fixes): (Vec<Fix>, Vec<Fix>) = std::mem::take(&mut plan.fixes)
        .into_iter()
        .partition(|fix| fix.fingerprints.iter().any(|fp| muted(fp)));
    plan.fixes = fixes;
    for fix in held {
        for fingerprint in fix.fingerprints {
            plan.refusals.push(Refusal {
                rule: fix.rule,
                fingerprint,
                resource_arn: fix.key_arn.clone(),
                reason: "muted: someone decided to leave it as it is".to_owned(),
            });
        }
    }
}

/// Fixes the guard made that the ledger still holds open (the drift was
/// paged with its fix, and no pass has resolved it yet): a mass drift that
/// arrives one event at a time still meets the cap.
fn recent_fixes(state: &LedgerState, report: &PassReport) -> usize {
    let ctx = &report.context;
    let this_pass: BTreeSet<String> = report
        .findings
        .iter()
        .map(|f| f.fingerprint(&ctx.account, &ctx.region))
        .collect();
    state
        .records
        .values()
        .filter(|r| !this_pass.contains(&r.fingerprint))
        .filter(|r| r.finding.details["remediation_action"]["outcome"]["result"] == "applied")
        .count()
}

/// Without knowing who it is, the guard cannot judge a key policy: every
/// fixable drift is refused.
fn unplannable(report: &PassReport, filter: &Filter, reason: &str) -> Plan {
    warn!(%reason, "remediation: cannot tell who the guard is; nothing fixed");
    let ctx = &report.context;
    let refusals = report
        .findings
        .iter()
        .filter(|f| filter.admits(f) && remediation::has_fix(f.rule))
        .map(|f| Refusal {
            rule: f.rule,
            fingerprint: f.fingerprint(&ctx.account, &ctx.region),
            resource_arn: f.resource_arn.clone(),
            reason: format!("who the guard is could not be read: {reason}"),
        })
        .collect();
    Plan {
        refusals,
        ..Plan::default()
    }
}

fn instance_id(instance_arn: &str) -> &str {
    instance_arn.rsplit('/').next().unwrap_or(instance_arn)
}

/// A re-read of the instances acted on.
#[derive(Default)]
struct Reread {
    /// Fingerprints of what the rules still find.
    found: BTreeSet<String>,
    /// Instances the re-read could not finish.
    unread: BTreeSet<String>,
}

impl Reread {
    /// Whether a complete re-read no longer finds the fix's drifts.
    fn cleared(&self, fix: &FixReport) -> bool {
        !self.unread.contains(instance_id(&fix.fix.instance_arn))
            && fix
                .fix
                .fingerprints
                .iter()
                .all(|fp| !self.found.contains(fp))
    }
}

/// `REMEDIATION_FAILED` for a fix whose drift stayed.
fn failed(fix: &FixReport, findings: &[Finding]) -> Finding {
    let result = match &fix.outcome {
        Some(Outcome::Applied { grant_id }) => format!("grant {grant_id} created"),
        Some(Outcome::Failed { reason }) => format!("failed: {reason}"),
        None => "not made".to_owned(),
    };
    let manual = findings
        .iter()
        .find(|f| f.rule == fix.fix.rule && f.resource_arn == fix.fix.key_arn)
        .map(|f| f.remediation.clone())
        .unwrap_or_default();
    warn!(fix = %fix.fix.describe(), %result, "remediation failed: the drift is still there");
    Finding::new(
        RuleId::RemediationFailed,
        Some(&fix.fix.instance_arn),
        &fix.fix.key_arn,
    )
    .summary(format!(
        "Remediation of {} on {} did not clear it ({result})",
        fix.fix.rule, fix.fix.key_arn
    ))
    .details(json!({
        "drift": fix.fix.rule,
        "fingerprints": fix.fix.fingerprints,
        "action": fix.fix.describe(),
        "outcome": fix.outcome,
    }))
    .remediation(manual)
}

/// Says in each finding's `details`, and in the log, what remediation did
/// about it.
fn explain(report: &mut PassReport, done: &Remediation) {
    let ctx = report.context.clone();
    for finding in &mut report.findings {
        let fingerprint = finding.fingerprint(&ctx.account, &ctx.region);
        let action = if let Some(fix) = done
            .fixes
            .iter()
            .find(|f| f.fix.fingerprints.contains(&fingerprint))
        {
            let result = match (&fix.outcome, fix.verified) {
                _ if done.over_cap => format!(
                    "not made: {} fixes exceed REMEDIATION_MAX_ACTIONS={}; a mass drift is an incident",
                    done.fixes.len(),
                    done.max_actions
                ),
                (None, _) => "dry run: would be made".to_owned(),
                (Some(_), Some(true)) => "made and verified: the drift is gone".to_owned(),
                (Some(Outcome::Failed { .. }), _) => {
                    "tried and refused: the drift is still there (REMEDIATION_FAILED)".to_owned()
                }
                (Some(_), _) => {
                    "made, but the drift is still there (REMEDIATION_FAILED)".to_owned()
                }
            };
            json!({ "mode": done.mode, "action": fix.fix.describe(), "outcome": fix.outcome, "result": result })
        } else if let Some(refusal) = done.refusals.iter().find(|r| r.fingerprint == fingerprint) {
            json!({ "mode": done.mode, "result": "refused", "reason": refusal.reason })
        } else {
            continue;
        };
        info!(%fingerprint, rule = %finding.rule, %action, "remediation");
        annotate(finding, action);
    }
}
