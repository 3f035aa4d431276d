//! The Lambda entry point (SAM builds it as `bootstrap`). It builds the
//! clients once at init, then runs one pass per message on its FIFO work
//! queue (an EventBridge event, a sweep, a re-check come due), or per
//! EventBridge event when invoked directly.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use connect_slr_guard::aws::Source;
use connect_slr_guard::config::Settings;
use connect_slr_guard::guard::{Delivery, Guard, epoch_now};
use connect_slr_guard::inventory::{Options, Page};
use connect_slr_guard::model::Place;
use connect_slr_guard::report::PassReport;
use connect_slr_guard::trigger::work::{
    MAX_RECHECKS, Recheck, SweepPart, Work, is_account_id, is_queue, message_group, recheck_account,
};
use connect_slr_guard::trigger::{self, Parsed, Scope, Trigger, TriggerKind};
use lambda_runtime::{Context, Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{error, info, warn};

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

/// The invocation's response: the pass's report, why the event was
/// acknowledged without a pass, or (for a batch of re-checks) the messages
/// to retry.
#[derive(Serialize)]
#[serde(untagged)]
enum Response {
    Pass(Box<PassReport>),
    Ignored { ignored: String },
    Batch(SqsBatchResponse),
}

async fn handle(guard: &Guard, event: LambdaEvent<Value>) -> Result<Response, Diagnostic> {
    let (payload, context) = event.into_parts();
    // Boxed: a pass's future is deep enough to hit the compiler's
    // type-layout recursion limit when inlined here.
    if is_sqs_batch(&payload) {
        return Box::pin(sqs_batch(guard, payload, &context)).await;
    }
    Box::pin(pass(guard, payload, 0, &context, None)).await
}

/// SQS delivers `{"Records": [{"eventSource": "aws:sqs", ...}]}`.
fn is_sqs_batch(payload: &Value) -> bool {
    payload["Records"]
        .as_array()
        .and_then(|records| records.first())
        .is_some_and(|r| r["eventSource"] == "aws:sqs")
}

/// Runs each message of a work-queue or re-check batch. A failed one is
/// reported for SQS to deliver again (after the queue's redrive limit, to
/// its dead-letter queue); on a FIFO queue the rest of the batch waits with
/// it, to keep the group's order. A batch that failed entirely fails the
/// invocation, so the function's `Errors` alarm sees it at once.
async fn sqs_batch(
    guard: &Guard,
    payload: Value,
    context: &Context,
) -> Result<Response, Diagnostic> {
    let batch: SqsEvent = serde_json::from_value(payload).map_err(|e| Diagnostic {
        error_type: "MalformedSqsBatch".to_owned(),
        error_message: e.to_string(),
    })?;
    let total = batch.records.len();
    let mut response = SqsBatchResponse::default();
    let mut order_blocked = false;
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        if order_blocked {
            response.add_failure(id);
            continue;
        }
        if let Err(err) = Box::pin(work(guard, &message, context)).await {
            warn!(error = %err.error_message, message_id = %id, "message failed; SQS delivers it again");
            order_blocked = message
                .event_source_arn
                .as_deref()
                .is_some_and(|arn| arn.ends_with(".fifo"));
            response.add_failure(id);
        }
    }
    let failed = response.batch_item_failures.len();
    if failed > 0 && failed == total {
        return Err(Diagnostic {
            error_type: "WorkFailed".to_owned(),
            error_message: format!("all {total} messages failed; SQS delivers them again"),
        });
    }
    Ok(Response::Batch(response))
}

/// One message: a due re-check moves on to the work queue (when there is
/// one); a scheduled sweep over many places fans out; a member's event
/// moves to its place's group; a sweep part runs; anything else runs its
/// pass here.
async fn work(guard: &Guard, message: &SqsMessage, context: &Context) -> Result<(), Diagnostic> {
    let body = message.body.as_deref().unwrap_or_default();
    let item = match Work::parse(body) {
        Ok(Work::Event(item)) => item,
        Ok(Work::Sweep(part)) => return Box::pin(sweep_part(guard, &part, message, context)).await,
        Err(err) => {
            // Retrying a message that is not work cannot help.
            error!(error = %err, message_id = ?message.message_id, "message dropped");
            return Ok(());
        }
    };
    let settings = &guard.settings;
    let message_id = message.message_id.as_deref().unwrap_or_default();
    if let (Some(work_queue), Some(recheck_queue), Some(arn)) = (
        &settings.work_queue_url,
        &settings.recheck_queue_url,
        &message.event_source_arn,
    ) && is_queue(recheck_queue, arn)
    {
        let account = recheck_account(&item.event, work_queue);
        guard
            .enqueue_due_recheck(work_queue, account, message_id, body.to_owned())
            .await?;
        info!(
            attempt = item.attempt,
            "re-check due: queued for its account"
        );
        return Ok(());
    }
    if let Some(work_queue) = &settings.work_queue_url {
        if guard.fans_out() && is_schedule(&item.event) {
            guard.fan_out(work_queue, message_id).await?;
            return Ok(());
        }
        let group = message.attributes.get("MessageGroupId");
        if let [Some(place)] = event_places(guard, &item.event).as_slice()
            && place_of_region(&item.event)
            && group != Some(&message_group(&place.account, &place.region))
        {
            guard
                .enqueue_work(work_queue, place, message_id, body.to_owned())
                .await?;
            info!(account = %place.account, region = %place.region, "event queued for its account and Region");
            return Ok(());
        }
    }
    pass(guard, item.event, item.attempt, context, Some(message_id))
        .await
        .map(|_| ())
}

fn is_schedule(event: &Value) -> bool {
    matches!(
        trigger::parse(event.clone()),
        Ok(Parsed::Check { ref trigger, .. }) if trigger.kind == TriggerKind::Schedule
    )
}

/// Where an event's passes read: in central mode, the account it happened
/// in and its Region; IAM is global, so an IAM event is checked in every
/// swept Region of its account. Otherwise the guard's own (`None`).
fn event_places(guard: &Guard, event: &Value) -> Vec<Option<Place>> {
    let account = event["account"].as_str().filter(|a| is_account_id(a));
    let region = event["region"]
        .as_str()
        .filter(|r| !r.is_empty() && r.len() < 32);
    let (Some(_), Some(account), Some(region)) = (&guard.settings.central, account, region) else {
        return vec![None];
    };
    let place = |region: &str| {
        Some(Place {
            account: account.to_owned(),
            region: region.to_owned(),
        })
    };
    if place_of_region(event) {
        return vec![place(region)];
    }
    match guard.settings.sweep_regions.as_slice() {
        [] => vec![place(&guard.aws.region)],
        regions => regions.iter().map(|r| place(r)).collect(),
    }
}

/// Whether the event's `region` is where what it names lives (not IAM's
/// us-east-1 for a global role).
fn place_of_region(event: &Value) -> bool {
    event["source"] != "aws.iam"
}

/// One part of a fanned-out sweep: the instances after `part.after` that
/// one invocation can read at the Connect quota; the rest goes on in the
/// next part, in the same group.
async fn sweep_part(
    guard: &Guard,
    part: &SweepPart,
    message: &SqsMessage,
    context: &Context,
) -> Result<(), Diagnostic> {
    let opts = Options {
        deadline: Some(stop_reading_at(context.deadline())),
        page: Some(Page {
            after: part.after.clone(),
            limit: guard.part_size(remaining(context)),
        }),
        ..Options::default()
    };
    let place = Place {
        account: part.account.clone(),
        region: part.region.clone(),
    };
    let mut report = Box::pin(guard.run_at(
        Some(&place),
        Scope::Everything,
        Trigger::schedule(),
        &opts,
        Delivery::Publish,
    ))
    .await?;
    let next = report
        .snapshot
        .part
        .as_ref()
        .and_then(|p| p.next_after.as_deref());
    if let (Some(last), Some(work_queue)) = (next, &guard.settings.work_queue_url) {
        let message_id = message.message_id.as_deref().unwrap_or_default();
        guard
            .continue_sweep(work_queue, part, last, message_id)
            .await?;
    }
    match report.output_failure.take() {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

/// One pass over an EventBridge event; `attempt` counts the re-checks
/// before this one.
async fn pass(
    guard: &Guard,
    payload: Value,
    attempt: u32,
    context: &Context,
    message_id: Option<&str>,
) -> Result<Response, Diagnostic> {
    let account = payload
        .get("account")
        .and_then(Value::as_str)
        .map(trigger::cap);
    let (scope, trigger) = match trigger::parse(payload.clone()) {
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
    // A sweep from the work queue reads what one invocation can at the
    // quota, and queues the rest as parts (`sweep_part`).
    let work_queue = guard.settings.work_queue_url.as_deref();
    let in_parts = trigger.kind == TriggerKind::Schedule && work_queue.is_some();
    let opts = Options {
        deadline: Some(stop_reading_at(context.deadline())),
        order_seed: Some(hours_since_epoch()),
        account,
        page: in_parts.then(|| Page {
            after: None,
            limit: guard.part_size(remaining(context)),
        }),
        ..Options::default()
    };
    let now = epoch_now();
    let delivery = if guard.holds(&trigger, now) {
        Delivery::Hold
    } else {
        Delivery::Publish
    };
    let mut reports = Vec::new();
    for place in event_places(guard, &payload) {
        let pass = guard.run_at(
            place.as_ref(),
            scope.clone(),
            trigger.clone(),
            &opts,
            delivery,
        );
        reports.push(Box::pin(pass).await?);
    }
    let mut report = reports.swap_remove(0);
    report.deletion_pending |= reports.iter().any(|r| r.deletion_pending);
    let next = report
        .snapshot
        .part
        .as_ref()
        .and_then(|p| p.next_after.as_deref());
    if let (Some(last), Some(work_queue)) = (next, work_queue) {
        let part = SweepPart::new(&report.context.account, &report.context.region);
        let dedup = message_id.unwrap_or(&context.request_id);
        guard.continue_sweep(work_queue, &part, last, dedup).await?;
    }
    if let Some(delay) = guard.recheck_delay(&report, &trigger, now)
        && attempt < MAX_RECHECKS
    {
        guard
            .schedule_recheck(&Recheck::new(payload, attempt + 1), delay)
            .await?;
        if let Some(counts) = &mut report.ledger {
            counts.rechecks_scheduled += 1;
        }
        info!(delay, attempt = attempt + 1, "re-check scheduled");
    }
    // What follows the pass is queued: now it may fail for chat or
    // Security Hub.
    let failure = std::iter::once(&mut report)
        .chain(reports.iter_mut())
        .find_map(|r| r.output_failure.take());
    if let Some(failure) = failure {
        return Err(failure.into());
    }
    Ok(Response::Pass(Box::new(report)))
}

/// The invocation's time left.
fn remaining(context: &Context) -> Duration {
    context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
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
