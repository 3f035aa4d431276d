//! One pass: scope -> inventory -> rules -> alerts. Both binaries call
//! [`Guard::run`]; they differ only in how they get the scope and show the
//! report.

use tracing::{info, warn};

use crate::alert::{self, PassContext, PublishError};
use crate::aws::{Aws, Pace, Source};
use crate::config::{CONNECT_API_BURST, Settings};
use crate::inventory::{self, Options};
use crate::report::PassReport;
use crate::rules;
use crate::trigger::{Scope, Trigger};

pub struct Guard {
    pub aws: Aws,
    pub settings: Settings,
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
}

/// What the Lambda runtime reports for a failed invocation: one
/// `error_type` per kind of failure, for metric filters and alarms.
impl From<GuardError> for lambda_runtime::Diagnostic {
    fn from(err: GuardError) -> Self {
        let error_type = match err {
            GuardError::Publish(_) => "AlertDeliveryFailed",
            GuardError::NoTopic => "NoAlertTopic",
            GuardError::NoRegion => "NoRegion",
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
        Ok(Guard { aws, settings })
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
        };
        info!(
            scope = ?report.scope,
            instances_checked = report.instances_checked,
            findings = report.findings.len(),
            checks_incomplete = report.checks_incomplete(),
            "pass evaluated"
        );
        if delivery == Delivery::Publish && !report.findings.is_empty() {
            let topic = self
                .settings
                .alert_topic_arn
                .as_deref()
                .ok_or(GuardError::NoTopic)?;
            report.alerts_published =
                alert::publish(&self.aws.sns, topic, &report.findings, &report.context)
                    .await
                    .inspect_err(|e| warn!(error = %e, "alerts not delivered"))?;
        }
        Ok(report)
    }
}

fn now_rfc3339() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}
