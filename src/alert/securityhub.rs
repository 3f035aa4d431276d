//! Importing findings into Security Hub (`SECURITY_HUB=on`) with
//! `BatchImportFindings`, within its documented limits: 100 findings and
//! 6 MB per call, 10 calls per second. Findings the response lists as
//! failed are retried; what still fails is logged and returned as an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tracing::warn;

use super::asff::AsffFinding;
use super::deliver::{Delivered, rfc3339};
use super::ledger::LedgerState;
use super::lifecycle::Record;
use super::{Alert, PassContext, Status};
use crate::aws::ReadError;
use crate::finding::Finding;

pub const MAX_FINDINGS_PER_CALL: usize = 100;
/// 6 MB, less room for the request's own framing.
pub const MAX_BYTES_PER_CALL: usize = 6 * 1024 * 1024 - 64 * 1024;
/// The API's rate quota is 10 requests per second.
const CALL_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts for a finding the response lists as failed (the SDK already
/// retries throttling and transient errors of the call itself).
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} findings were not imported into Security Hub: {first_reason}")]
pub struct ImportError {
    pub failed: usize,
    pub total: usize,
    pub first_reason: String,
    /// The ids of the findings not imported.
    pub failed_ids: BTreeSet<String>,
}

/// Imports every finding; returns how many were imported.
pub async fn import(
    client: &aws_sdk_securityhub::Client,
    findings: &[AsffFinding],
) -> Result<usize, ImportError> {
    let mut pending: Vec<&AsffFinding> = findings.iter().collect();
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let mut next_call = Instant::now();
    for _ in 0..ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        reasons.clear();
        for batch in batches(&pending) {
            sleep_until(next_call).await;
            next_call = Instant::now() + CALL_INTERVAL;
            reasons.extend(import_batch(client, &batch).await);
        }
        pending.retain(|f| reasons.contains_key(&f.id));
    }
    for (id, reason) in &reasons {
        warn!(finding = %id, %reason, "not imported into Security Hub");
    }
    match reasons.values().next() {
        None => Ok(findings.len()),
        Some(first) => Err(ImportError {
            failed: reasons.len(),
            total: findings.len(),
            first_reason: first.clone(),
            failed_ids: reasons.keys().cloned().collect(),
        }),
    }
}

/// One call; the ids that failed, each with why.
async fn import_batch(
    client: &aws_sdk_securityhub::Client,
    batch: &[&AsffFinding],
) -> BTreeMap<String, String> {
    let findings = batch.iter().map(|f| f.to_sdk()).collect();
    match client
        .batch_import_findings()
        .set_findings(Some(findings))
        .send()
        .await
    {
        Ok(output) => output
            .failed_findings()
            .iter()
            .map(|f| {
                let reason = format!(
                    "{}: {}",
                    f.error_code().unwrap_or("Failed"),
                    f.error_message().unwrap_or_default()
                );
                (f.id().unwrap_or_default().to_owned(), reason)
            })
            .collect(),
        Err(e) => {
            let reason = ReadError::from(e).reason();
            batch
                .iter()
                .map(|f| (f.id.clone(), reason.clone()))
                .collect()
        }
    }
}

/// The findings in call-sized batches: at most 100, and under 6 MB of JSON.
pub fn batches<'a>(findings: &[&'a AsffFinding]) -> Vec<Vec<&'a AsffFinding>> {
    let mut batches: Vec<Vec<&AsffFinding>> = Vec::new();
    let mut bytes = 0;
    for finding in findings {
        let size = serde_json::to_vec(finding).map_or(0, |json| json.len());
        let full = batches
            .last()
            .is_none_or(|b| b.len() == MAX_FINDINGS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        batches.last_mut().expect("pushed above").push(finding);
    }
    batches
}

/// What a pass imports into Security Hub.
#[derive(Debug, Default)]
pub struct PassImport {
    pub findings: Vec<AsffFinding>,
    /// Fingerprints of the resolved drifts among them, to mark archived in
    /// the ledger once imported.
    pub archived: Vec<String>,
}

/// What a pass imports: each drift it found (but not those held for a
/// re-check), first seen when the ledger says (or now, as its OPEN says),
/// and each drift resolved and not archived yet, as PASSED.
pub fn pass_findings(
    ctx: &PassContext,
    findings: &[Finding],
    state: Option<&LedgerState>,
    delivered: &Delivered,
    now: i64,
) -> PassImport {
    let mut import = PassImport::default();
    for finding in findings {
        let alert = Alert::open(finding, ctx);
        if delivered.held.contains(&alert.fingerprint) {
            continue;
        }
        let alert = match state {
            Some(state) => {
                let first_seen = state
                    .records
                    .get(&alert.fingerprint)
                    .map_or(now, |r| r.first_seen);
                alert.lifecycle(Status::Open, rfc3339(first_seen), None)
            }
            None => alert,
        };
        import.findings.push(AsffFinding::from_alert(&alert));
    }
    let resolved = delivered.resolved.iter().map(|(record, _)| record);
    // Resolutions of this pass's place only: a finding's id and product
    // are its account and Region's.
    let here = |record: &&Record| {
        record
            .place
            .as_ref()
            .is_none_or(|p| p.account == ctx.account && p.region == ctx.region)
    };
    let unarchived = state
        .into_iter()
        .flat_map(|s| s.unarchived.values())
        .filter(here);
    let found: BTreeSet<String> = findings
        .iter()
        .map(|f| f.fingerprint(&ctx.account, &ctx.region))
        .collect();
    for record in resolved.chain(unarchived) {
        if found.contains(&record.fingerprint) || import.archived.contains(&record.fingerprint) {
            continue;
        }
        let alert = Alert::open(&record.finding, ctx).lifecycle(
            Status::Resolved,
            rfc3339(record.first_seen),
            None,
        );
        import.findings.push(AsffFinding::from_alert(&alert));
        import.archived.push(record.fingerprint.clone());
    }
    import
}
