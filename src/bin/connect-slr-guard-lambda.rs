//! The Lambda entry point (SAM builds it as `bootstrap`). It builds the
//! clients once at init, then runs one pass per EventBridge event.

use std::time::{Duration, SystemTime};

use connect_slr_guard::aws::Source;
use connect_slr_guard::config::Settings;
use connect_slr_guard::guard::{Delivery, Guard};
use connect_slr_guard::inventory::Options;
use connect_slr_guard::report::PassReport;
use connect_slr_guard::trigger::{self, Parsed};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;
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
    let guard = Guard::from_environment(settings, Source::default()).await?;
    lambda_runtime::run(service_fn(|event| handle(&guard, event))).await
}

/// The invocation's response: the pass's report, or why the event was
/// acknowledged without a pass.
#[derive(Serialize)]
#[serde(untagged)]
enum Response {
    Pass(Box<PassReport>),
    Ignored { ignored: String },
}

async fn handle(guard: &Guard, event: LambdaEvent<Value>) -> Result<Response, Diagnostic> {
    let (payload, context) = event.into_parts();
    let account = payload
        .get("account")
        .and_then(Value::as_str)
        .map(trigger::cap);
    let (scope, trigger) = match trigger::parse(payload) {
        Ok(Parsed::Check { scope, trigger }) => (scope, trigger),
        Ok(Parsed::Ignore { reason, .. }) => {
            info!(%reason, "event ignored");
            return Ok(Response::Ignored { ignored: reason });
        }
        Err(err) => {
            warn!(error = %err, "event rejected");
            return Ok(Response::Ignored {
                ignored: err.to_string(),
            });
        }
    };
    let opts = Options {
        deadline: Some(stop_reading_at(context.deadline())),
        order_seed: Some(hours_since_epoch()),
        account,
        ..Options::default()
    };
    let report = guard.run(scope, trigger, &opts, Delivery::Publish).await?;
    Ok(Response::Pass(Box::new(report)))
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
