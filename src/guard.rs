//! One pass: scope -> inventory -> rules -> alerts. Both binaries call
//! [`Guard::run`]; they differ only in how they get the scope and show the
//! report.

use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::alert::{self, Alert, PassContext, PublishError};
use crate::config::{CONNECT_API_BURST, Settings};
use crate::finding::{Finding, RuleId};
use crate::inventory::{self, Aws, Options, Pace};
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

/// What a pass did: the Lambda's response and the CLI's report.
#[derive(Debug, Serialize)]
pub struct PassReport {
    pub scope: Scope,
    pub context: PassContext,
    pub instances_checked: usize,
    pub findings: Vec<Finding>,
    pub alerts_published: usize,
    pub checks_incomplete: usize,
}

impl PassReport {
    pub fn alerts(&self) -> Vec<Alert<'_>> {
        self.findings
            .iter()
            .map(|f| Alert::open(f, &self.context))
            .collect()
    }
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

/// Timeouts so that no read can outlive a Lambda invocation; retries stay
/// the SDK's standard ones.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

impl Guard {
    /// Builds the clients once from the standard AWS settings (credentials,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL*`), optionally overridden by a
    /// profile or Region name.
    pub async fn from_environment(
        settings: Settings,
        region: Option<String>,
        profile: Option<String>,
    ) -> Result<Guard, GuardError> {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts());
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(GuardError::NoRegion);
        }
        let pace = Pace::new(settings.connect_api_rps, CONNECT_API_BURST);
        Ok(Guard {
            aws: Aws::new(&config, pace),
            settings,
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
            checks_incomplete: findings
                .iter()
                .filter(|f| f.rule == RuleId::CheckIncomplete)
                .count(),
            findings,
            alerts_published: 0,
        };
        info!(
            scope = ?report.scope,
            instances_checked = report.instances_checked,
            findings = report.findings.len(),
            checks_incomplete = report.checks_incomplete,
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
