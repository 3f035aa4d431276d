//! The Lambda entry point (SAM builds it as `bootstrap`). It builds the
//! clients once at init, then runs one pass per EventBridge event.

use std::time::{Duration, SystemTime};

use connect_slr_guard::config::Settings;
use connect_slr_guard::guard::{Delivery, Guard};
use connect_slr_guard::inventory::Options;
use connect_slr_guard::trigger::{self, Parsed};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{info, warn};

/// Stop starting new reads this long before the invocation's deadline,
/// leaving time to publish what was found.
const MAX_DEADLINE_MARGIN: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    settings.require_topic()?;
    let guard = Guard::from_environment(settings, None, None).await?;
    lambda_runtime::run(service_fn(|event| handle(&guard, event))).await
}

async fn handle(guard: &Guard, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    let account = payload
        .get("account")
        .and_then(Value::as_str)
        .map(trigger::cap);
    let (scope, trigger) = match trigger::parse(payload) {
        Ok(Parsed::Check { scope, trigger }) => (scope, trigger),
        Ok(Parsed::Ignore { reason, .. }) => {
            info!(%reason, "event ignored");
            return Ok(json!({ "ignored": reason }));
        }
        Err(err) => {
            warn!(error = %err, "event rejected");
            return Ok(json!({ "ignored": err.to_string() }));
        }
    };
    let opts = Options {
        deadline: Some(stop_reading_at(context.deadline())),
        order_seed: Some(hours_since_epoch()),
        account,
        ..Options::default()
    };
    let report = guard
        .run(scope, trigger, &opts, Delivery::Publish)
        .await
        .map_err(|err| Diagnostic {
            error_type: "AlertDeliveryFailed".to_owned(),
            error_message: err.to_string(),
        })?;
    Ok(json!({
        "scope": report.scope,
        "instances_checked": report.instances_checked,
        "findings": report.alerts().iter().map(|a| json!({
            "rule": a.rule, "severity": a.severity, "instance_arn": a.instance_arn,
            "resource_arn": a.resource_arn, "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
        "alerts_published": report.alerts_published,
        "checks_incomplete": report.checks_incomplete,
    }))
}

fn hours_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 3600)
}

fn stop_reading_at(deadline: SystemTime) -> Instant {
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + remaining - (remaining / 4).min(MAX_DEADLINE_MARGIN)
}
