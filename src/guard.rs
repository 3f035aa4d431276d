//! One pass: scope -> inventory -> rules -> alerts. Both binaries call
//! [`Guard::run`]; they differ only in how they get the scope and show the
//! report.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::alert::asff::finding_id;
use crate::alert::deliver::{Channel, NewDrift, Paging, deliver};
use crate::alert::ledger::{Archive, Ledger, LedgerError, LedgerState};
use crate::alert::lifecycle::Coverage;
use crate::alert::recheck::{self, NotSent};
use crate::alert::securityhub::{self, ImportError, PassImport};
use crate::alert::{self, PassContext, PublishError};
use crate::aws::{Aws, ConnectPace, Fleet, Place, ReadError, Reads, Source};
use crate::config::{CONNECT_API_BURST, Settings};
use crate::inventory::{self, Options};
use crate::model::{Incomplete, Instance, KeyIndex, Snapshot, Unverified, keys_of};
use crate::remediation::{Actor, Filter, Mode};
use crate::report::{LedgerCounts, PassReport, Sent, metrics};
use crate::rules;
use crate::trigger::work::{Recheck, message_group};
use crate::trigger::{Scope, Trigger};

mod fan_out;
mod remediate;

pub struct Guard {
    pub aws: Aws,
    pub settings: Settings,
    /// The alert ledger, when `LEDGER_TABLE` is set.
    pub ledger: Option<Ledger>,
    /// Who the guard is, read once when remediation or central mode first
    /// needs it.
    actor: tokio::sync::OnceCell<Actor>,
    /// Clients for other accounts and Regions (central mode, `SWEEP_REGIONS`).
    fleet: Fleet,
}

/// Whether a pass sends its findings to SNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Publish,
    /// Publishes reminders and resolutions but holds new drifts for a
    /// re-check: the change that triggered the pass is still settling.
    Hold,
    ReportOnly,
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("--publish needs an alert topic: set ALERT_TOPIC_ARN or --alert-topic-arn")]
    NoTopic,
    #[error("no AWS Region: set AWS_REGION or pass --region")]
    NoRegion,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] NotSent),
    #[error("a re-check needs RECHECK_QUEUE_URL")]
    NoRecheckQueue,
    #[error("chat notifications: {0}")]
    Chat(PublishError),
    #[error("the accounts to sweep could not be listed: {0}")]
    Accounts(String),
    #[error(transparent)]
    SecurityHub(#[from] ImportError),
}

/// What the Lambda runtime reports for a failed invocation: one
/// `error_type` per kind of failure, for metric filters and alarms.
impl From<GuardError> for lambda_runtime::Diagnostic {
    fn from(err: GuardError) -> Self {
        let error_type = match err {
            GuardError::Publish(_) => "AlertDeliveryFailed",
            GuardError::NoTopic => "NoAlertTopic",
            GuardError::NoRegion => "NoRegion",
            GuardError::Ledger(_) => "LedgerUnavailable",
            GuardError::Queue(_) | GuardError::NoRecheckQueue => "WorkNotQueued",
            GuardError::Chat(_) => "ChatDeliveryFailed",
            GuardError::Accounts(_) => "AccountsNotListed",
            GuardError::SecurityHub(_) => "SecurityHubImportFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: err.to_string(),
        }
    }
}

impl Guard {
    /// Builds the clients once from the standard AWS settings (credentials,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL*`), optionally overridden by a
    /// profile or Region name.
    pub async fn from_environment(settings: Settings, source: Source) -> Result<Guard, GuardError> {
        let pace = ConnectPace::new(&settings.connect_rates, CONNECT_API_BURST);
        let aws = Aws::load(source, pace).await.ok_or(GuardError::NoRegion)?;
        let ledger = settings
            .ledger_table
            .clone()
            .map(|table| Ledger::new(aws.dynamodb.clone(), table));
        Ok(Guard::new(aws, settings, ledger))
    }

    pub fn new(aws: Aws, settings: Settings, ledger: Option<Ledger>) -> Guard {
        let central = settings.central.as_ref();
        let fleet = Fleet::new(
            central.map(|c| c.role_name.as_str()),
            central.and_then(|c| c.external_id.as_deref()),
            &settings.connect_rates,
        );
        Guard {
            aws,
            settings,
            ledger,
            actor: tokio::sync::OnceCell::new(),
            fleet,
        }
    }

    /// One pass in the guard's own account and Region.
    pub async fn run(
        &self,
        scope: Scope,
        trigger: Trigger,
        opts: &Options,
        delivery: Delivery,
    ) -> Result<PassReport, GuardError> {
        let mut report = self.run_at(None, scope, trigger, opts, delivery).await?;
        match report.output_failure.take() {
            Some(failure) => Err(failure),
            None => Ok(report),
        }
    }

    /// One pass at `place` (another Region, or a member account in central
    /// mode), or in the guard's own account and Region.
    pub async fn run_at(
        &self,
        place: Option<&Place>,
        scope: Scope,
        trigger: Trigger,
        opts: &Options,
        delivery: Delivery,
    ) -> Result<PassReport, GuardError> {
        let started = std::time::Instant::now();
        let calls_before = self.aws.calls.totals();
        let state = self.ledger_state(delivery).await?;
        let home = self.is_home(place).await;
        // The key index knows the home account and Region's instances only:
        // central mode, and other Regions, read every key event's instances.
        let indexed = state
            .as_ref()
            .filter(|_| self.settings.central.is_none() && home);
        let opts = Options {
            key_index: indexed.map(|s| s.index.clone()),
            account: place.map(|p| p.account.clone()).or(opts.account.clone()),
            ..opts.clone()
        };
        let snapshot = match self.reads(place).await {
            // Boxed: the inventory's future is deep enough to hit the
            // compiler's type-layout recursion limit when inlined into the
            // Lambda handler.
            Ok(reads) => {
                let mut snapshot = Box::pin(inventory::collect(&reads, &scope, &opts)).await;
                if let (Reads::Member(_), Some(place)) = (&reads, place) {
                    snapshot.assumed_role = self.fleet.role_arn(&self.aws, &place.account);
                }
                snapshot
            }
            Err(unassumed) => unassumed,
        };
        if let Some(state) = indexed {
            self.update_key_index(&scope, &snapshot, &state.index)
                .await?;
        }
        let context = PassContext {
            account: snapshot
                .account
                .clone()
                .or_else(|| opts.account.clone())
                .unwrap_or_else(|| "unknown".to_owned()),
            region: snapshot.region.clone(),
            trigger,
            observed_at: now_rfc3339(),
        };
        let mut report = PassReport::judge(scope, snapshot, context, &self.settings.rules);
        info!(
            scope = ?report.scope,
            instances_checked = report.instances_checked,
            findings = report.findings.len(),
            checks_incomplete = report.checks_incomplete(),
            "pass evaluated"
        );
        // Remediation acts with the guard's own clients: home only.
        let mode = self.settings.remediation;
        if delivery == Delivery::Publish && mode != Mode::Off && home {
            self.remediate(&mut report, &opts, mode, &Filter::default(), state.as_ref())
                .await?;
        }
        let delivered = match delivery {
            Delivery::ReportOnly => Ok(()),
            Delivery::Publish | Delivery::Hold => {
                let coverage = Coverage::of(&report.scope, &report.snapshot, &report.findings);
                let new_drift = match delivery {
                    Delivery::Hold => NewDrift::Hold,
                    _ => NewDrift::Page,
                };
                self.deliver(&mut report, &coverage, new_drift, state.as_ref(), home)
                    .await
            }
        };
        report.calls = self.aws.calls.totals().since(&calls_before);
        report.duration = started.elapsed();
        // Written for a pass that failed to deliver too: that is when the
        // dashboard matters most.
        if self.settings.metrics {
            metrics::write_emf(&report, epoch_millis());
        }
        match delivered {
            // The pages went out: the caller finishes its work (a sweep's
            // next part, a re-check) before it fails for these.
            Err(late @ (GuardError::Chat(_) | GuardError::SecurityHub(_))) => {
                report.output_failure = Some(late);
                Ok(report)
            }
            other => other.map(|()| report),
        }
    }

    /// Whether `place` is the guard's own account and Region (or none).
    async fn is_home(&self, place: Option<&Place>) -> bool {
        match place {
            None => true,
            Some(p) => p.region == self.aws.region && self.is_own_account(&p.account).await,
        }
    }

    /// The clients a pass at `place` reads with. A member account whose
    /// role cannot be assumed is a snapshot of that one failure: one
    /// `CHECK_INCOMPLETE` for the account and Region, never silence.
    async fn reads(&self, place: Option<&Place>) -> Result<Reads<'_>, Snapshot> {
        let Some(place) = place else {
            return Ok(Reads::Own(&self.aws));
        };
        let own_place =
            place.region == self.aws.region && self.is_own_account(&place.account).await;
        if own_place {
            return Ok(Reads::Own(&self.aws));
        }
        // In central mode every other place is read through the member role,
        // the guard's own account in other Regions too: the function's own
        // role reads its own Region only.
        let member = self.settings.central.is_some();
        let aws = self.fleet.clients(&self.aws, place, member).await;
        if member && let Err(err) = aws.sts.get_caller_identity().send().await {
            let role_arn = self
                .fleet
                .role_arn(&self.aws, &place.account)
                .unwrap_or_default();
            warn!(account = %place.account, region = %place.region, %role_arn, "member role not assumed");
            return Err(Snapshot {
                account: Some(place.account.clone()),
                region: place.region.clone(),
                incomplete: vec![Incomplete {
                    instance_arn: None,
                    resource_arn: role_arn,
                    what: rules::incomplete::MEMBER_ROLE.to_owned(),
                    reason: Unverified::Failed(ReadError::from(err).reason()),
                }],
                ..Snapshot::default()
            });
        }
        Ok(Reads::Member(aws))
    }

    /// Who the guard is, read once: the key policy decides on its role,
    /// and central mode tells its own account from members'.
    async fn actor(&self) -> Result<Actor, String> {
        self.actor
            .get_or_try_init(|| async {
                let caller = self.aws.caller_arn().await.map_err(|e| e.reason())?;
                Actor::from_caller_arn(&caller).ok_or(format!("cannot tell the role of {caller}"))
            })
            .await
            .cloned()
    }

    /// Whether `account` is the guard's own (asked of STS once).
    async fn is_own_account(&self, account: &str) -> bool {
        match self.actor().await {
            Ok(actor) => actor.account == account,
            Err(_) => false,
        }
    }

    /// What the ledger holds, for a pass that publishes under one; read
    /// once, before the inventory (its key index can spare Connect calls).
    /// A ledger that cannot be read fails the pass: nothing could be paged.
    async fn ledger_state(&self, delivery: Delivery) -> Result<Option<LedgerState>, GuardError> {
        match &self.ledger {
            Some(ledger) if delivery != Delivery::ReportOnly => {
                Ok(Some(ledger.state().await.inspect_err(
                    |e| warn!(error = %e, "ledger unusable: nothing paged"),
                )?))
            }
            _ => Ok(None),
        }
    }

    /// Records the keys of every instance the pass read completely; after a
    /// sweep that read them all, marks the index complete. A write that
    /// fails unmarks it, so a stale index never skips a key.
    async fn update_key_index(
        &self,
        scope: &Scope,
        snapshot: &Snapshot,
        index: &KeyIndex,
    ) -> Result<(), GuardError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let active: Vec<&Instance> = snapshot
            .instances
            .iter()
            .filter(|i| i.checked && i.is_active())
            .collect();
        let mut all_read = true;
        let mut failed = false;
        for instance in &active {
            let Some(keys) = keys_of(snapshot, instance) else {
                all_read = false;
                continue;
            };
            if index.users.get(&instance.arn) != Some(&keys) {
                failed |= ledger.record_keys(&instance.arn, &keys).await.is_err();
            }
        }
        let swept = matches!(scope, Scope::Everything)
            && snapshot.incomplete.is_empty()
            && snapshot.part.is_none();
        if swept {
            let listed: BTreeSet<&str> =
                snapshot.instances.iter().map(|i| i.arn.as_str()).collect();
            for gone in index
                .users
                .keys()
                .filter(|arn| !listed.contains(arn.as_str()))
            {
                failed |= ledger.forget_keys(gone).await.is_err();
            }
        }
        if failed {
            warn!("key index not fully written; marking it incomplete");
            ledger.mark_index(false).await?;
        } else if swept && all_read && !index.complete {
            ledger.mark_index(true).await?;
        }
        Ok(())
    }

    /// Whether a pass over `trigger` holds new drifts: under a ledger and a
    /// re-check queue, for a KMS change younger than `SETTLE_WINDOW`.
    /// Without either, it pages at once rather than risk silence.
    pub fn holds(&self, trigger: &Trigger, now: i64) -> bool {
        let window = self.settings.settle_window.as_secs() as i64;
        self.ledger.is_some()
            && self.settings.recheck_queue_url.is_some()
            && trigger.settles
            && trigger.age_secs(now).is_some_and(|age| age < window)
    }

    /// When to re-check the pass's event, if at all: once a held KMS change
    /// has settled, or while an SLR deletion task it saw may still finish.
    pub fn recheck_delay(&self, report: &PassReport, trigger: &Trigger, now: i64) -> Option<i64> {
        self.settings.recheck_queue_url.as_ref()?;
        let window = self.settings.settle_window.as_secs() as i64;
        let held = report.ledger.is_some_and(|l| l.held > 0);
        if held {
            Some(window - trigger.age_secs(now).unwrap_or(0))
        } else if report.deletion_pending {
            Some(window.max(DELETION_RECHECK_SECS))
        } else {
            None
        }
    }

    /// Sends the event back to the guard through the re-check queue.
    pub async fn schedule_recheck(
        &self,
        recheck: &Recheck,
        delay_secs: i64,
    ) -> Result<(), GuardError> {
        let queue = self
            .settings
            .recheck_queue_url
            .as_deref()
            .ok_or(GuardError::NoRecheckQueue)?;
        recheck::schedule(&self.aws.sqs, queue, recheck, delay_secs).await?;
        Ok(())
    }

    /// Moves an event onto the work queue in `place`'s message group (a
    /// member's event arrives in the central account's); `dedup_id` (the
    /// message's id) makes a redelivery a no-op.
    pub async fn enqueue_work(
        &self,
        work_queue: &str,
        place: &Place,
        dedup_id: &str,
        body: String,
    ) -> Result<(), GuardError> {
        let group = message_group(&place.account, &place.region);
        recheck::enqueue_work(&self.aws.sqs, work_queue, &group, dedup_id, body).await?;
        Ok(())
    }

    /// Moves a re-check that came due onto the work queue, in the message
    /// group of `account` and the guard's Region. `dedup_id` (the re-check
    /// message's id) makes a redelivered re-check a no-op.
    pub async fn enqueue_due_recheck(
        &self,
        work_queue: &str,
        account: &str,
        dedup_id: &str,
        body: String,
    ) -> Result<(), GuardError> {
        let group = message_group(account, &self.aws.region);
        recheck::enqueue_work(&self.aws.sqs, work_queue, &group, dedup_id, body).await?;
        Ok(())
    }

    /// Sends the pass's pages (every finding without a ledger, its
    /// lifecycle with one), then imports into Security Hub. A page that
    /// could not be sent fails the pass at once, for the retry; a lost chat
    /// notification or Security Hub finding fails it after everything else
    /// was delivered.
    async fn deliver(
        &self,
        report: &mut PassReport,
        coverage: &Coverage,
        new_drift: NewDrift,
        state: Option<&LedgerState>,
        home: bool,
    ) -> Result<(), GuardError> {
        if self.ledger.is_none() && report.findings.is_empty() {
            return Ok(());
        }
        let topic = self.topic()?;
        let chat_topic = self.settings.chat_topic_arn.as_deref();
        let channel = Channel {
            sns: &self.aws.sns,
            topic,
            chat_topic,
            ctx: &report.context,
        };
        let now = epoch_of(&report.context.observed_at);
        let delivered = match (&self.ledger, state) {
            (Some(ledger), Some(state)) => {
                let paging = Paging {
                    reminder_interval: self.settings.reminder_interval.map(|d| d.as_secs() as i64),
                    new_drift,
                    now,
                    // Only the home place's findings are imported (README).
                    archive: if self.settings.security_hub && home {
                        Archive::Pending
                    } else {
                        Archive::None
                    },
                };
                deliver(ledger, state, &channel, &report.findings, coverage, paging)
                    .await
                    .inspect_err(|e| warn!(error = %e, "ledger unusable: nothing paged"))?
            }
            _ => alert::publish(&channel, &report.findings).await,
        };
        report.alerts_published = delivered.published;
        report.opened = delivered.opened;
        report.ledger = state.map(|_| LedgerCounts {
            resolved: delivered.resolved.len(),
            muted: delivered.muted,
            rechecks_scheduled: 0,
            held: delivered.held.len(),
        });
        if let Some(error) = failed(topic, &delivered.failures, delivered.published) {
            warn!(%error, "alerts not delivered");
            return Err(GuardError::Publish(error));
        }
        let import =
            securityhub::pass_findings(&report.context, &report.findings, state, &delivered, now);
        // The default product takes its own account and Region's findings
        // only: another place's drifts are paged, not imported (README).
        let imported = if home {
            self.import_findings(report, &import).await
        } else {
            Ok(())
        };
        report.sent = Some(Sent {
            asff: import.findings,
            chat: delivered.chat,
        });
        let chat = failed(
            chat_topic.unwrap_or_default(),
            &delivered.chat_failures,
            delivered.published - delivered.chat_failures.len(),
        );
        if let Some(error) = chat {
            return Err(GuardError::Chat(error));
        }
        imported
    }

    /// Imports the pass's findings into Security Hub, when it is on, and
    /// notes in the ledger each resolution archived there.
    async fn import_findings(
        &self,
        report: &mut PassReport,
        import: &PassImport,
    ) -> Result<(), GuardError> {
        if !self.settings.security_hub {
            return Ok(());
        }
        let imported = securityhub::import(&self.aws.securityhub, &import.findings).await;
        let failed_ids = match &imported {
            Ok(_) => Default::default(),
            Err(e) => e.failed_ids.clone(),
        };
        report.security_hub_imported = Some(import.findings.len() - failed_ids.len());
        if let Some(ledger) = &self.ledger {
            for fingerprint in &import.archived {
                if !failed_ids.contains(&finding_id(fingerprint)) {
                    ledger.archived(fingerprint).await?;
                }
            }
        }
        imported.map(|_| ()).map_err(GuardError::SecurityHub)
    }

    fn topic(&self) -> Result<&str, GuardError> {
        self.settings
            .alert_topic_arn
            .as_deref()
            .ok_or(GuardError::NoTopic)
    }
}

/// The error for `failures` among `sent + failures` messages to `topic`.
fn failed(topic: &str, failures: &[String], sent: usize) -> Option<PublishError> {
    Some(PublishError {
        topic: topic.to_owned(),
        failed: failures.len(),
        total: failures.len() + sent,
        first_reason: failures.first()?.clone(),
    })
}

/// How long to wait before looking again at an SLR deletion task.
const DELETION_RECHECK_SECS: i64 = 300;

/// Epoch seconds of an RFC 3339 time the guard wrote.
fn epoch_of(time: &str) -> i64 {
    aws_smithy_types::DateTime::from_str(time, aws_smithy_types::date_time::Format::DateTime)
        .map_or_else(|_| epoch_now(), |t| t.secs())
}

fn epoch_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_rfc3339() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}
