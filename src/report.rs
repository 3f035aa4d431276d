//! What one pass did, and every way it is shown. The Lambda's response and
//! the CLI's `--format json` are the same document; the CLI also prints it
//! as a table or as the alert texts on-call receives.

use serde::Serialize;

use crate::alert::{self, Alert, PassContext};
use crate::finding::{Finding, RuleId};
use crate::trigger::Scope;

#[derive(Debug)]
pub struct PassReport {
    pub scope: Scope,
    pub context: PassContext,
    pub instances_checked: usize,
    pub findings: Vec<Finding>,
    pub alerts_published: usize,
    /// What the ledger did, when there is one.
    pub ledger: Option<LedgerCounts>,
    /// An SLR deletion the pass saw started is still going: the role could
    /// be read, but is on its way out.
    pub deletion_pending: bool,
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

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table of findings, each with its fix.
    Table,
    /// The report document, its findings as alert documents (connect-slr-guard/alert/v1).
    Json,
    /// Each alert as the text on-call receives by email.
    Text,
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
            findings: self.alerts(),
        }
        .serialize(serializer)
    }
}

impl PassReport {
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
            Format::Json => {
                let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
                json.push('\n');
                json
            }
            Format::Text => {
                let texts: Vec<String> = self.alerts().iter().map(alert::text).collect();
                texts.join("\n---\n\n")
            }
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
        let mut json = serde_json::to_string_pretty(items).unwrap_or_default();
        json.push('\n');
        return json;
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
