//! Delivery under a ledger: decide, then for each page claim, publish and
//! commit. A page that cannot be sent gives its claim back and fails the
//! pass, so Lambda's retry sends it; nothing is lost and nothing is sent
//! twice by a retry or a concurrent pass.

use std::collections::{BTreeMap, BTreeSet};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use tracing::{info, warn};

use super::chat::ChatNotification;
use super::ledger::{Archive, Claim, Ledger, LedgerError, LedgerState};
use super::lifecycle::{Coverage, Decision, Record, ResolvedReason, decide};
use super::{Alert, PassContext, Status, chat, publish_alert};
use crate::finding::Finding;
use crate::model::Place;

/// What delivery did.
#[derive(Debug, Default)]
pub struct Delivered {
    pub published: usize,
    /// OPEN pages sent: drifts new to on-call.
    pub opened: usize,
    /// The drifts resolved, as the ledger last held them.
    pub resolved: Vec<(Record, ResolvedReason)>,
    /// Fingerprints of new drifts held back while a KMS change settles.
    pub held: BTreeSet<String>,
    /// Drifts a mute kept from paging.
    pub muted: usize,
    /// Why pages could not be sent; each was released for the retry.
    pub failures: Vec<String>,
    /// Why chat notifications could not be sent; their pages went out.
    pub chat_failures: Vec<String>,
    /// Every page sent, as a chat notification (what `--format chat` shows).
    pub chat: Vec<ChatNotification>,
}

/// Where and how pages go.
pub struct Channel<'a> {
    pub sns: &'a aws_sdk_sns::Client,
    pub topic: &'a str,
    /// `CHAT_TOPIC_ARN`: each page is also sent there as a chat notification.
    pub chat_topic: Option<&'a str>,
    pub ctx: &'a PassContext,
}

/// What sending one alert did: the page, and its echo to chat (`Ok` when
/// there is no chat topic).
pub struct Outcome {
    pub page: Result<(), String>,
    pub chat: Result<(), String>,
    pub notification: ChatNotification,
}

impl Channel<'_> {
    /// Pages `alert`, then echoes it to chat. A chat notification is sent
    /// only after its page went out and is never retried on its own, which
    /// would page on-call twice.
    pub async fn send(&self, alert: &Alert<'_>) -> Outcome {
        let page = publish_alert(self.sns, self.topic, alert).await;
        let notification = ChatNotification::from_alert(alert);
        let chat = match (self.chat_topic, &page) {
            (Some(chat_topic), Ok(())) => chat::publish(self.sns, chat_topic, &notification).await,
            _ => Ok(()),
        };
        if let Err(reason) = &chat {
            warn!(fingerprint = %alert.fingerprint, %reason, "chat notification not sent");
        }
        Outcome {
            page,
            chat,
            notification,
        }
    }
}

impl Delivered {
    /// Counts `outcome`; the error is why the page was not sent.
    pub fn count(&mut self, outcome: Outcome) -> Result<(), String> {
        if let Err(reason) = outcome.chat {
            self.chat_failures.push(reason);
        }
        outcome.page?;
        self.published += 1;
        self.chat.push(outcome.notification);
        Ok(())
    }
}

/// One change to make: what to send, and the record to commit after.
struct Page<'a> {
    status: Status,
    finding: &'a Finding,
    known: Option<&'a Record>,
    record: Record,
    resolved: Option<ResolvedReason>,
}

/// How a pass treats what it finds new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewDrift {
    Page,
    /// Held for a re-check: the change that triggered the pass may not
    /// have taken effect yet.
    Hold,
}

/// When and what a pass pages.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// Seconds between reminders; `None` sends none.
    pub reminder_interval: Option<i64>,
    pub new_drift: NewDrift,
    /// Epoch seconds of the pass.
    pub now: i64,
    /// What a resolution leaves for Security Hub.
    pub archive: Archive,
}

pub async fn deliver(
    ledger: &Ledger,
    state: &LedgerState,
    channel: &Channel<'_>,
    findings: &[Finding],
    coverage: &Coverage,
    paging: Paging,
) -> Result<Delivered, LedgerError> {
    let Paging {
        reminder_interval,
        new_drift,
        now,
        archive,
    } = paging;
    let (account, region) = (&channel.ctx.account, &channel.ctx.region);
    let found: BTreeMap<String, &Finding> = findings
        .iter()
        .map(|f| (f.fingerprint(account, region), f))
        .collect();
    let records = &state.records;
    let muted: BTreeSet<String> = found
        .iter()
        .filter(|(_, f)| state.mutes.iter().any(|m| m.is_active(now) && m.covers(f)))
        .map(|(fp, _)| fp.clone())
        .collect();
    let mut delivered = Delivered::default();
    for decision in decide(now, &found, records, coverage, reminder_interval, &muted) {
        let page = match decision {
            Decision::Open(fp) if new_drift == NewDrift::Hold => {
                delivered.held.insert(fp);
                continue;
            }
            Decision::Open(fp) => opened(&found, records, fp, Status::Open, now, channel.ctx),
            Decision::Remind(fp) => opened(&found, records, fp, Status::Reminder, now, channel.ctx),
            Decision::Resolve(fp, reason) => resolved(records, &fp, reason, now),
            Decision::Forget(fp) => {
                ledger.forget(&records[&fp]).await?;
                continue;
            }
            Decision::Quiet(_) => continue,
            Decision::Muted(fp) => {
                info!(fingerprint = %fp, rule = %found[&fp].rule, "muted: not paged");
                delivered.muted += 1;
                continue;
            }
        };
        send(ledger, channel, page, (now, archive), &mut delivered).await?;
    }
    Ok(delivered)
}

fn opened<'a>(
    found: &BTreeMap<String, &'a Finding>,
    records: &'a BTreeMap<String, Record>,
    fingerprint: String,
    status: Status,
    now: i64,
    ctx: &PassContext,
) -> Page<'a> {
    let finding = found[&fingerprint];
    let known = records.get(&fingerprint);
    let record = Record {
        first_seen: known.map_or(now, |r| r.first_seen),
        last_notified: Some(now),
        finding: finding.clone(),
        version: known.map_or(0, |r| r.version) + 1,
        fingerprint,
        place: Some(Place {
            account: ctx.account.clone(),
            region: ctx.region.clone(),
        }),
    };
    Page {
        status,
        finding,
        known,
        record,
        resolved: None,
    }
}

fn resolved<'a>(
    records: &'a BTreeMap<String, Record>,
    fingerprint: &str,
    reason: ResolvedReason,
    now: i64,
) -> Page<'a> {
    let known = &records[fingerprint];
    let mut record = known.clone();
    record.last_notified = Some(now);
    record.version += 1;
    Page {
        status: Status::Resolved,
        finding: &known.finding,
        known: Some(known),
        record,
        resolved: Some(reason),
    }
}

async fn send(
    ledger: &Ledger,
    channel: &Channel<'_>,
    page: Page<'_>,
    (now, archive): (i64, Archive),
    delivered: &mut Delivered,
) -> Result<(), LedgerError> {
    let fingerprint = &page.record.fingerprint;
    // A new claim writes the record as not yet sent.
    let mut unsent = page.record.clone();
    unsent.last_notified = page.known.and_then(|k| k.last_notified);
    if ledger.claim(page.known, &unsent, now).await? == Claim::Lost {
        info!(%fingerprint, "another pass holds or already changed this drift");
        return Ok(());
    }
    let alert = Alert::open(page.finding, channel.ctx).lifecycle(
        page.status,
        rfc3339(page.record.first_seen),
        page.resolved.map(ResolvedReason::as_str),
    );
    if let Err(reason) = delivered.count(channel.send(&alert).await) {
        warn!(%fingerprint, %reason, "page not sent; claim released for the retry");
        delivered.failures.push(reason);
        return ledger.release(fingerprint).await;
    }
    match (page.status, page.resolved) {
        (_, Some(reason)) => delivered.resolved.push((page.record.clone(), reason)),
        (Status::Open, None) => delivered.opened += 1,
        _ => {}
    }
    ledger
        .commit(&page.record, page.resolved.map(|_| archive), now)
        .await
}

pub fn rfc3339(epoch_seconds: i64) -> String {
    DateTime::from_secs(epoch_seconds)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}
