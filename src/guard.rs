//! One pass: scope -> inventory -> rules -> alerts. Both binaries call
//! [`Guard::run`]; they differ only in how they get the scope and show the
//! report.

use tracing::{info, warn};

use crate::alert::deliver::{Channel, deliver};
use crate::alert::ledger::{Ledger, LedgerError};
use crate::alert::lifecycle::Coverage;
use crate::alert::{self, PassContext, PublishError};
use crate::aws::{Aws, Pace, Source};
use crate::config::{CONNECT_API_BURST, Settings};
use crate::inventory::{self, Options};
use crate::report::{LedgerCounts, PassReport};
use crate::rules;
use crate::trigger::{Scope, Trigger};

pub struct Guard {
    pub aws: Aws,
    pub settings: Settings,
    /// The alert ledger, when `LEDGER_TABLE` is set.
    pub ledger: Option<Ledger>,
}

/// Whether a pass sends its findings to SNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Publish,
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
        let pace = Pace::new(settings.connect_api_rps, CONNECT_API_BURST);
        let aws = Aws::load(source, pace).await.ok_or(GuardError::NoRegion)?;
        let ledger = settings
            .ledger_table
            .clone()
            .map(|table| Ledger::new(aws.dynamodb.clone(), table));
        Ok(Guard {
            aws,
            settings,
            ledger,
        })
    }

    pub async fn run(
        &self,
        scope: Scope,
        trigger: Trigger,
        opts: &Options,
        delivery: Delivery,
    ) -> Result<PassReport, GuardError> {
        // Boxed: the inventory's future is deep enough to hit the compiler's
        // type-layout recursion limit when inlined into the Lambda handler.
        let snapshot = Box::pin(inventory::collect(&self.aws, &scope, opts)).await;
        let findings = rules::evaluate(&snapshot, &self.settings.rules);
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
        let mut report = PassReport {
            scope,
            context,
            instances_checked: snapshot.instances.iter().filter(|i| i.checked).count(),
            findings,
            alerts_published: 0,
            ledger: None,
        };
        info!(
            scope = ?report.scope,
            instances_checked = report.instances_checked,
            findings = report.findings.len(),
            checks_incomplete = report.checks_incomplete(),
            "pass evaluated"
        );
        if delivery == Delivery::Publish {
            let coverage = Coverage::of(&report.scope, &snapshot, &report.findings);
            self.deliver(&mut report, &coverage).await?;
        }
        Ok(report)
    }

    /// Sends the pass's pages: every finding without a ledger, its
    /// lifecycle with one.
    async fn deliver(
        &self,
        report: &mut PassReport,
        coverage: &Coverage,
    ) -> Result<(), GuardError> {
        let Some(ledger) = &self.ledger else {
            if report.findings.is_empty() {
                return Ok(());
            }
            let topic = self.topic()?;
            report.alerts_published =
                alert::publish(&self.aws.sns, topic, &report.findings, &report.context)
                    .await
                    .inspect_err(|e| warn!(error = %e, "alerts not delivered"))?;
            return Ok(());
        };
        let topic = self.topic()?;
        let channel = Channel {
            sns: &self.aws.sns,
            topic,
            ctx: &report.context,
        };
        let reminder = self.settings.reminder_interval.map(|d| d.as_secs() as i64);
        let delivered = deliver(
            ledger,
            &channel,
            &report.findings,
            coverage,
            reminder,
            epoch_now(),
        )
        .await
        .inspect_err(|e| warn!(error = %e, "ledger unusable: nothing paged"))?;
        report.alerts_published = delivered.published;
        report.ledger = Some(LedgerCounts {
            resolved: delivered.resolved,
            muted: 0,
            rechecks_scheduled: 0,
        });
        if let Some(first) = delivered.failures.first() {
            return Err(GuardError::Publish(PublishError {
                topic: topic.to_owned(),
                failed: delivered.failures.len(),
                total: delivered.failures.len() + delivered.published,
                first_reason: first.clone(),
            }));
        }
        Ok(())
    }

    fn topic(&self) -> Result<&str, GuardError> {
        self.settings
            .alert_topic_arn
            .as_deref()
            .ok_or(GuardError::NoTopic)
    }
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_rfc3339() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}
