//! What one pass did, and every way it is shown. The Lambda's response and
//! the CLI's `--format json` are the same document; the CLI also prints it
//! as a table or as the alert texts on-call receives.

pub mod metrics;
mod sarif;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::asff::AsffFinding;
use crate::alert::chat::ChatNotification;
use crate::alert::{self, Alert, PassContext};
use crate::aws::CallTotals;
use crate::finding::{Finding, RuleId};
use crate::model::Snapshot;
use crate::remediation::{FixReport, Outcome, Remediation};
use crate::rules::{self, RuleSettings};
use crate::trigger::{Scope, Trigger};

#[derive(Debug)]
pub struct PassReport {
    pub scope: Scope,
    pub context: PassContext,
    pub instances_checked: usize,
    pub findings: Vec<Finding>,
    pub alerts_published: usize,
    /// OPEN pages sent: drifts new to on-call.
    pub opened: usize,
    /// What the ledger did, when there is one.
    pub ledger: Option<LedgerCounts>,
    /// Findings imported into Security Hub, when it is on.
    pub security_hub_imported: Option<usize>,
    /// What a delivering pass sent, or would have sent, beyond e-mail.
    pub sent: Option<Sent>,
    /// What remediation planned and did, when it ran.
    pub remediation: Option<Remediation>,
    /// Chat or Security Hub failed after the pages went out: the pass
    /// fails once its caller has queued what follows it.
    pub output_failure: Option<crate::guard::GuardError>,
    /// An SLR deletion the pass saw started is still going: the role could
    /// be read, but is on its way out.
    pub deletion_pending: bool,
    /// What the pass read, as `audit --save-snapshot` writes it.
    pub snapshot: Snapshot,
    /// AWS requests the pass made, by service.
    pub calls: CallTotals,
    pub duration: Duration,
}

/// A delivering pass's outputs beyond e-mail, as sent: under a ledger they
/// follow its lifecycle, so they differ from the findings.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// The Security Hub import (whether or not `SECURITY_HUB` is on).
    pub asff: Vec<AsffFinding>,
    /// Every page, as a chat notification.
    pub chat: Vec<ChatNotification>,
}

/// The ledger's share of a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerCounts {
    pub muted: usize,
    pub resolved: usize,
    pub rechecks_scheduled: usize,
    /// New drifts held for a re-check (a KMS change still settling).
    pub held: usize,
}

pub const SNAPSHOT_SCHEMA: &str = "connect-slr-guard/snapshot/v1";

/// A pass's snapshot as `audit --save-snapshot` writes it and `evaluate`
/// reads it: what was read and when, plain data (no credentials).
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPass {
    pub schema: String,
    pub scope: Scope,
    pub trigger: Trigger,
    pub observed_at: String,
    pub snapshot: Snapshot,
}

impl SavedPass {
    pub fn of(report: &PassReport) -> SavedPass {
        SavedPass {
            schema: SNAPSHOT_SCHEMA.to_owned(),
            scope: report.scope.clone(),
            trigger: report.context.trigger.clone(),
            observed_at: report.context.observed_at.clone(),
            snapshot: report.snapshot.clone(),
        }
    }

    /// Reads a saved pass, refusing another schema.
    pub fn parse(bytes: &[u8]) -> Result<SavedPass, String> {
        let saved: SavedPass = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if saved.schema != SNAPSHOT_SCHEMA {
            return Err(format!(
                "schema {:?} is not {SNAPSHOT_SCHEMA}",
                saved.schema
            ));
        }
        Ok(saved)
    }

    /// The rules' verdict on the saved snapshot, as of when it was read.
    pub fn evaluate(self, rules: &RuleSettings) -> PassReport {
        let context = PassContext {
            account: self
                .snapshot
                .account
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
            region: self.snapshot.region.clone(),
            trigger: self.trigger,
            observed_at: self.observed_at,
        };
        PassReport::judge(self.scope, self.snapshot, context, rules)
    }
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table of findings, each with its fix.
    Table,
    /// The report document, its findings as alert documents (connect-slr-guard/alert/v1).
    Json,
    /// Each alert as the text on-call receives by email.
    Text,
    /// The findings as Security Hub imports them (AWS Security Finding Format).
    Asff,
    /// The chat notifications (Amazon Q Developer in chat applications).
    Chat,
    /// SARIF 2.1.0, for CI pipelines that gate on findings.
    Sarif,
}

/// The report as a document: the Lambda's response and the CLI's JSON.
#[derive(Serialize)]
struct Document<'a> {
    scope: &'a Scope,
    #[serde(flatten)]
    context: &'a PassContext,
    instances_checked: usize,
    checks_incomplete: usize,
    alerts_published: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    ledger: Option<LedgerCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_hub_imported: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remediation: Option<&'a Remediation>,
    findings: Vec<Alert<'a>>,
}

impl Serialize for PassReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Document {
            scope: &self.scope,
            context: &self.context,
            instances_checked: self.instances_checked,
            checks_incomplete: self.checks_incomplete(),
            alerts_published: self.alerts_published,
            ledger: self.ledger,
            security_hub_imported: self.security_hub_imported,
            remediation: self.remediation.as_ref(),
            findings: self.alerts(),
        }
        .serialize(serializer)
    }
}

impl PassReport {
    /// The rules' verdict on `snapshot`, before anything is sent.
    pub fn judge(
        scope: Scope,
        snapshot: Snapshot,
        context: PassContext,
        rules: &RuleSettings,
    ) -> PassReport {
        PassReport {
            scope,
            context,
            instances_checked: snapshot.instances.iter().filter(|i| i.checked).count(),
            findings: rules::evaluate(&snapshot, rules),
            alerts_published: 0,
            opened: 0,
            ledger: None,
            security_hub_imported: None,
            sent: None,
            remediation: None,
            output_failure: None,
            deletion_pending: snapshot.deletion_pending(),
            snapshot,
            calls: CallTotals::default(),
            duration: Duration::ZERO,
        }
    }

    pub fn alerts(&self) -> Vec<Alert<'_>> {
        self.findings
            .iter()
            .map(|f| Alert::open(f, &self.context))
            .collect()
    }

    pub fn checks_incomplete(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.rule == RuleId::CheckIncomplete)
            .count()
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Json => pretty(self),
            Format::Text => {
                let texts: Vec<String> = self.alerts().iter().map(alert::text).collect();
                texts.join("\n---\n\n")
            }
            Format::Asff => match &self.sent {
                Some(sent) => pretty(&sent.asff),
                None => pretty(
                    &self
                        .alerts()
                        .iter()
                        .map(AsffFinding::from_alert)
                        .collect::<Vec<_>>(),
                ),
            },
            Format::Chat => match &self.sent {
                Some(sent) => pretty(&sent.chat),
                None => pretty(
                    &self
                        .alerts()
                        .iter()
                        .map(ChatNotification::from_alert)
                        .collect::<Vec<_>>(),
                ),
            },
            Format::Sarif => pretty(&sarif::sarif(self)),
        }
    }

    fn table(&self) -> String {
        let mut out = format!(
            "account {} · region {} · instances checked: {} · findings: {} (incomplete: {}) · alerts published: {}\n",
            self.context.account,
            self.context.region,
            self.instances_checked,
            self.findings.len(),
            self.checks_incomplete(),
            self.alerts_published,
        );
        if self.findings.is_empty() {
            out.push_str("no drift found\n");
            return out;
        }
        let rows: Vec<Vec<String>> = self.findings.iter().map(table_row).collect();
        for line in aligned(&["SEVERITY", "RULE", "INSTANCE", "RESOURCE"], &rows) {
            out.push('\n');
            out.push_str(&line);
        }
        out.push_str("\n\n");
        for (n, f) in self.findings.iter().enumerate() {
            out.push_str(&format!(
                "{}. {} {}\n   fix: {}\n",
                n + 1,
                f.rule,
                f.summary,
                f.remediation
            ));
        }
        out
    }
}

impl PassReport {
    /// What `remediate` prints: the report as JSON, or the plan and what
    /// became of each fix as a table.
    pub fn render_remediation(&self, format: Format) -> String {
        let Some(done) = &self.remediation else {
            return self.render(format);
        };
        if format == Format::Json {
            return pretty(self);
        }
        let mut out = format!(
            "account {} · region {} · mode {} · fixes {} (at most {} per pass) · refused {}\n",
            self.context.account,
            self.context.region,
            done.mode.as_str(),
            done.fixes.len(),
            done.max_actions,
            done.refusals.len(),
        );
        if done.over_cap {
            out.push_str("too many fixes for one pass: none made; a mass drift is an incident\n");
        }
        let mut rows: Vec<Vec<String>> = done.fixes.iter().map(fix_row).collect();
        rows.extend(done.refusals.iter().map(|r| {
            vec![
                r.rule.to_string(),
                r.resource_arn.clone(),
                "-".to_owned(),
                format!("refused: {}", r.reason),
            ]
        }));
        if rows.is_empty() {
            out.push_str("nothing to fix\n");
            return out;
        }
        out.push('\n');
        for line in aligned(&["RULE", "KEY", "GRANT", "RESULT"], &rows) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

fn fix_row(fix: &FixReport) -> Vec<String> {
    let result = match (&fix.outcome, fix.verified) {
        (None, _) => "planned".to_owned(),
        (Some(Outcome::Applied { grant_id }), Some(true)) => format!("fixed (grant {grant_id})"),
        (Some(Outcome::Applied { grant_id }), _) => {
            format!("REMEDIATION_FAILED: grant {grant_id} made, drift still there")
        }
        (Some(Outcome::Failed { reason }), _) => format!("REMEDIATION_FAILED: {reason}"),
    };
    vec![
        fix.fix.rule.to_string(),
        fix.fix.key_arn.clone(),
        format!(
            "{} to {} ({})",
            fix.fix.grant_name,
            fix.fix.grantee.rsplit('/').next().unwrap_or_default(),
            fix.fix.operations.join(",")
        ),
        result,
    ]
}

fn pretty(value: &impl Serialize) -> String {
    let mut json = serde_json::to_string_pretty(value).unwrap_or_default();
    json.push('\n');
    json
}

fn table_row(finding: &Finding) -> Vec<String> {
    vec![
        finding.severity.to_string(),
        finding.rule.to_string(),
        finding
            .instance_arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("-")
            .to_owned(),
        finding.resource_arn.clone(),
    ]
}

/// The header and rows as lines, each column as wide as its widest cell.
fn aligned(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([headers[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    std::iter::once(line(headers.to_vec()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect()
}

/// The ledger's open findings, as `connect-slr-guard findings` shows them.
#[derive(Debug, Serialize)]
pub struct OpenFinding<'a> {
    pub rule: RuleId,
    pub severity: crate::finding::Severity,
    pub resource_arn: &'a str,
    pub instance_arn: Option<&'a str>,
    pub fingerprint: &'a str,
    pub first_seen: String,
    pub last_notified: Option<String>,
    pub muted: bool,
}

/// The mutes, as `connect-slr-guard mutes` shows them.
#[derive(Debug, Serialize)]
pub struct MuteView<'a> {
    #[serde(flatten)]
    pub mute: &'a crate::alert::mute::Mute,
    pub active: bool,
}

/// Rows under a header, each column as wide as its widest cell; JSON for tools.
pub fn listing<T: Serialize>(
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
    format: Format,
) -> String {
    if format == Format::Json {
        return pretty(&items);
    }
    if items.is_empty() {
        return "none\n".to_owned();
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    aligned(headers, &rows)
        .into_iter()
        .map(|line| line + "\n")
        .collect()
}
