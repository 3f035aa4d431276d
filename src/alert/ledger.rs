//! The alert ledger in DynamoDB: one item per fingerprint. Every change is a
//! conditional write, so two passes over the same drift, or a retried
//! invocation, page once: decide, claim, publish, commit. A claim carries a
//! lease; one left by a crashed invocation expires, so the drift is not
//! silenced for ever.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use super::lifecycle::Record;
use super::mute::Mute;
use crate::aws::ReadError;
use crate::model::KeyIndex;

/// How long a claim holds before another pass may take the fingerprint over.
pub const CLAIM_LEASE_SECS: i64 = 120;
/// Whether a resolution still has to be archived in Security Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// Security Hub is off: nothing to archive.
    None,
    /// Kept as pending until the ARCHIVED finding is imported, so a failed
    /// import is retried by the next pass.
    Pending,
}

/// How long a RESOLVED record is kept (DynamoDB TTL) for `findings` and audits.
pub const RESOLVED_RETENTION_SECS: i64 = 30 * 86_400;

const KIND_FINDING: &str = "finding";
const KIND_MUTE: &str = "mute";
const KIND_KEYS: &str = "keys";
/// What remediation did: the audit trail, kept for [`ACTION_RETENTION_SECS`].
const KIND_ACTION: &str = "action";
pub const ACTION_RETENTION_SECS: i64 = 400 * 86_400;
const INDEX_MARKER: &str = "keys-index";
const OPEN: &str = "OPEN";
const RESOLVED: &str = "RESOLVED";

#[derive(Debug, thiserror::Error)]
#[error("alert ledger {table}: {reason}")]
pub struct LedgerError {
    pub table: String,
    pub reason: String,
}

/// What a pass reads from the ledger.
#[derive(Debug, Default)]
pub struct LedgerState {
    /// Open records (sent or not), by fingerprint.
    pub records: BTreeMap<String, Record>,
    /// Resolved records whose Security Hub finding is not archived yet.
    pub unarchived: BTreeMap<String, Record>,
    /// Every mute, active or not.
    pub mutes: Vec<Mute>,
    pub index: KeyIndex,
}

pub struct Ledger {
    client: Client,
    table: String,
    /// Names this invocation's claims.
    owner: String,
}

/// A claim's outcome: ours, or another pass holds (or already changed) it.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    Won,
    Lost,
}

impl Ledger {
    pub fn new(client: Client, table: String) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ledger {
            client,
            table,
            owner: format!("{}-{nanos}", std::process::id()),
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> LedgerError {
        LedgerError {
            table: self.table.clone(),
            reason: reason.to_string(),
        }
    }

    /// Everything a pass reads from the ledger, in one scan: the open
    /// records, the mutes and the key index. The table holds one item per
    /// open drift, mute and instance: small enough to scan.
    #[tracing::instrument(skip(self))]
    pub async fn state(&self) -> Result<LedgerState, LedgerError> {
        let items: Vec<HashMap<String, AttributeValue>> = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(
                "(kind = :finding AND (#state = :open OR attribute_exists(archive_pending))) OR kind = :mute OR kind = :keys OR pk = :marker",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":finding", s(KIND_FINDING))
            .expression_attribute_values(":open", s(OPEN))
            .expression_attribute_values(":mute", s(KIND_MUTE))
            .expression_attribute_values(":keys", s(KIND_KEYS))
            .expression_attribute_values(":marker", s(INDEX_MARKER))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error(ReadError::from(e).reason()))?;
        let mut state = LedgerState::default();
        for item in &items {
            let text = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
            };
            match (text("pk"), text("kind")) {
                (Some(INDEX_MARKER), _) => state.index.complete = true,
                (_, Some(KIND_FINDING)) => {
                    let record = record_of(item).map_err(|e| self.error(e))?;
                    let records = if text("state") == Some(OPEN) {
                        &mut state.records
                    } else {
                        &mut state.unarchived
                    };
                    records.insert(record.fingerprint.clone(), record);
                }
                (_, Some(KIND_MUTE)) => {
                    let json =
                        text("mute").ok_or_else(|| self.error("a mute item without its mute"))?;
                    let mute = serde_json::from_str(json)
                        .map_err(|e| self.error(format!("an unreadable mute: {e}")))?;
                    state.mutes.push(mute);
                }
                _ => {
                    let (Some(instance), Some(keys)) = (text("instance"), text("keys")) else {
                        return Err(self.error("a key index item without its instance or keys"));
                    };
                    let keys = serde_json::from_str(keys)
                        .map_err(|e| self.error(format!("unreadable key index: {e}")))?;
                    state.index.users.insert(instance.to_owned(), keys);
                }
            }
        }
        Ok(state)
    }

    /// Stores a new mute; it expires from the table a day after it ends.
    pub async fn add_mute(&self, mute: &Mute) -> Result<(), LedgerError> {
        let json = serde_json::to_string(mute).map_err(|e| self.error(e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("mute#{}", mute.id)))
            .item("kind", s(KIND_MUTE))
            .item("mute", s(&json))
            .item("ttl", n(mute.until + 86_400))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        self.done(result)
    }

    /// Keeps what remediation did (`action`: plain JSON) as an audit trail
    /// item; the scan that reads the ledger's state never returns these.
    pub async fn record_action(
        &self,
        id: &str,
        action: &serde_json::Value,
        now: i64,
    ) -> Result<(), LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("action#{now}#{id}")))
            .item("kind", s(KIND_ACTION))
            .item("action", s(&action.to_string()))
            .item("ttl", n(now + ACTION_RETENTION_SECS))
            .send()
            .await;
        self.done(result)
    }

    /// Removes a mute; `false` when there was none with that id.
    pub async fn remove_mute(&self, id: &str) -> Result<bool, LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("mute#{id}")))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(conditional);
        match result {
            Ok(()) => Ok(true),
            Err(Conditional::Failed) => Ok(false),
            Err(Conditional::Other(reason)) => Err(self.error(reason)),
        }
    }

    /// Records the keys an instance depends on.
    pub async fn record_keys(
        &self,
        instance_arn: &str,
        keys: &std::collections::BTreeSet<String>,
    ) -> Result<(), LedgerError> {
        let json = serde_json::to_string(keys).map_err(|e| self.error(e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("keys#{instance_arn}")))
            .item("kind", s(KIND_KEYS))
            .item("instance", s(instance_arn))
            .item("keys", s(&json))
            .send()
            .await;
        self.done(result)
    }

    /// Forgets an instance that no longer exists.
    pub async fn forget_keys(&self, instance_arn: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("keys#{instance_arn}")))
            .send()
            .await;
        self.done(result)
    }

    /// Marks the index complete (a sweep read every instance's keys), or
    /// not: an index that may miss a key must not be trusted to skip one.
    pub async fn mark_index(&self, complete: bool) -> Result<(), LedgerError> {
        let result = if complete {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(INDEX_MARKER))
                .item("kind", s("index"))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| ReadError::from(e).reason())
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(INDEX_MARKER))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| ReadError::from(e).reason())
        };
        result.map_err(|reason| self.error(reason))
    }

    /// Claims a fingerprint for one change: `known` is the record the
    /// decision read (`None` for a drift the ledger does not hold open).
    pub async fn claim(
        &self,
        known: Option<&Record>,
        fresh: &Record,
        now: i64,
    ) -> Result<Claim, LedgerError> {
        let until = n(now + CLAIM_LEASE_SECS);
        let result = match known {
            Some(record) => self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&record.fingerprint))
                .update_expression("SET claim_until = :until, claimed_by = :me")
                .condition_expression(
                    "version = :v AND (attribute_not_exists(claim_until) OR claim_until < :now)",
                )
                .expression_attribute_values(":until", until)
                .expression_attribute_values(":me", s(&self.owner))
                .expression_attribute_values(":v", n(record.version as i64))
                .expression_attribute_values(":now", n(now))
                .send()
                .await
                .map(|_| ())
                .map_err(conditional),
            None => {
                let mut item = item_of(fresh, OPEN).map_err(|e| self.error(e))?;
                item.insert("claim_until".to_owned(), until);
                item.insert("claimed_by".to_owned(), s(&self.owner));
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR #state = :resolved")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":resolved", s(RESOLVED))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(conditional)
            }
        };
        match result {
            Ok(()) => Ok(Claim::Won),
            Err(Conditional::Failed) => Ok(Claim::Lost),
            Err(Conditional::Other(reason)) => Err(self.error(reason)),
        }
    }

    /// Records what was sent and gives the claim up. `resolved` records
    /// expire after [`RESOLVED_RETENTION_SECS`].
    pub async fn commit(
        &self,
        record: &Record,
        resolved: Option<Archive>,
        now: i64,
    ) -> Result<(), LedgerError> {
        let state = if resolved.is_some() { RESOLVED } else { OPEN };
        let mut item = item_of(record, state).map_err(|e| self.error(e))?;
        if let Some(archive) = resolved {
            item.insert("ttl".to_owned(), n(now + RESOLVED_RETENTION_SECS));
            if archive == Archive::Pending {
                item.insert("archive_pending".to_owned(), AttributeValue::Bool(true));
            }
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("claimed_by = :me")
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        self.done(result)
    }

    /// Notes that a resolved drift's Security Hub finding is archived.
    pub async fn archived(&self, fingerprint: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(fingerprint))
            .update_expression("REMOVE archive_pending")
            .condition_expression("#state = :resolved")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":resolved", s(RESOLVED))
            .send()
            .await
            .map(|_| ())
            .map_err(conditional);
        match result {
            // Reopened meanwhile: the open record has nothing to archive.
            Ok(()) | Err(Conditional::Failed) => Ok(()),
            Err(Conditional::Other(reason)) => Err(self.error(reason)),
        }
    }

    /// Gives a claim up without a change (the page could not be sent), so
    /// the retry can take it at once.
    pub async fn release(&self, fingerprint: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(fingerprint))
            .update_expression("REMOVE claim_until, claimed_by")
            .condition_expression("claimed_by = :me")
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        self.done(result)
    }

    /// Drops a record nobody was paged about, unless it changed meanwhile.
    pub async fn forget(&self, record: &Record) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&record.fingerprint))
            .condition_expression("version = :v AND attribute_not_exists(claimed_by)")
            .expression_attribute_values(":v", n(record.version as i64))
            .send()
            .await
            .map(|_| ())
            .map_err(conditional);
        match result {
            Ok(()) | Err(Conditional::Failed) => Ok(()),
            Err(Conditional::Other(reason)) => Err(self.error(reason)),
        }
    }
}

impl Ledger {
    /// A write's outcome, its error as the reason it failed.
    fn done<T, E, R>(&self, result: Result<T, SdkError<E, R>>) -> Result<(), LedgerError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        result
            .map(|_| ())
            .map_err(|e| self.error(ReadError::from(e).reason()))
    }
}

enum Conditional {
    Failed,
    Other(String),
}

fn conditional<E, R>(err: SdkError<E, R>) -> Conditional
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if err.code() == Some("ConditionalCheckFailedException") {
        Conditional::Failed
    } else {
        Conditional::Other(ReadError::from(err).reason())
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The item for a record: its key and the attributes conditions test, and
/// the record itself as JSON.
fn item_of(record: &Record, state: &str) -> Result<HashMap<String, AttributeValue>, String> {
    let json = serde_json::to_string(record).map_err(|e| e.to_string())?;
    Ok(HashMap::from([
        ("pk".to_owned(), s(&record.fingerprint)),
        ("kind".to_owned(), s(KIND_FINDING)),
        ("state".to_owned(), s(state)),
        ("version".to_owned(), n(record.version as i64)),
        ("record".to_owned(), s(&json)),
    ]))
}

fn record_of(item: &HashMap<String, AttributeValue>) -> Result<Record, String> {
    let json = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or("an item without its record")?;
    serde_json::from_str(json).map_err(|e| format!("an unreadable record: {e}"))
}
