//! What reaches the function through SQS. On the work queue: an EventBridge
//! event, as a rule target delivers it, or a re-check that came due. On the
//! re-check queue: a re-check waiting for its delay.
//!
//! The work queue is FIFO with one message group per account and Region, so
//! one invocation at a time reads each account's Connect API: that is what
//! keeps the guard within the Connect quota, not reserved concurrency.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The re-check envelope's `schema`.
pub const RECHECK_SCHEMA: &str = "connect-slr-guard/recheck/v1";
/// A sweep part's `schema`: one account and Region of a fanned-out sweep.
pub const SWEEP_SCHEMA: &str = "connect-slr-guard/sweep/v1";
/// Re-checks of one event, after which the next sweep takes over.
pub const MAX_RECHECKS: u32 = 3;

/// A re-check: the event that triggered a pass, to run again once what it
/// saw has settled, and how many re-checks came before this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recheck {
    pub schema: String,
    pub attempt: u32,
    pub event: Value,
}

/// One unit of work: the event to run a pass on, and its re-check count
/// (0 for an event straight from EventBridge).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub event: Value,
    pub attempt: u32,
}

/// One account and Region of a sweep, from the first instance after
/// `after` (by id); `part` counts the continuations before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepPart {
    pub schema: String,
    pub account: String,
    pub region: String,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub part: u32,
}

impl SweepPart {
    pub fn new(account: &str, region: &str) -> Self {
        SweepPart {
            schema: SWEEP_SCHEMA.to_owned(),
            account: account.to_owned(),
            region: region.to_owned(),
            after: None,
            part: 0,
        }
    }

    /// The part that goes on after instance `last`.
    pub fn next(&self, last: &str) -> Self {
        SweepPart {
            after: Some(last.to_owned()),
            part: self.part + 1,
            ..self.clone()
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("plain data always serializes")
    }

    pub fn group(&self) -> String {
        message_group(&self.account, &self.region)
    }
}

/// Any message on the work queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// An EventBridge event, straight or as a re-check come due.
    Event(WorkItem),
    Sweep(SweepPart),
}

impl Work {
    pub fn parse(body: &str) -> Result<Work, WorkError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| WorkError::NotJson(e.to_string()))?;
        if value.get("schema").and_then(Value::as_str) == Some(SWEEP_SCHEMA) {
            let part: SweepPart = serde_json::from_value(value)
                .map_err(|e| WorkError::MalformedSweep(e.to_string()))?;
            if !is_account_id(&part.account) || part.region.is_empty() {
                return Err(WorkError::MalformedSweep(format!(
                    "account {:?}, region {:?}",
                    super::cap(&part.account),
                    super::cap(&part.region)
                )));
            }
            return Ok(Work::Sweep(part));
        }
        WorkItem::parse(body).map(Work::Event)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkError {
    #[error("not a sweep part: {0}")]
    MalformedSweep(String),
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("message has schema {0:?}, expected {RECHECK_SCHEMA}")]
    UnknownSchema(String),
    #[error("not a re-check: {0}")]
    MalformedRecheck(String),
    #[error("message is neither an EventBridge event nor a re-check")]
    Unrecognised,
}

impl Recheck {
    pub fn new(event: Value, attempt: u32) -> Self {
        Recheck {
            schema: RECHECK_SCHEMA.to_owned(),
            attempt,
            event,
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a JSON value always serializes")
    }
}

impl WorkItem {
    /// Reads a message body: a re-check envelope (it has a `schema`) or an
    /// EventBridge event (it has a `detail-type`).
    pub fn parse(body: &str) -> Result<WorkItem, WorkError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| WorkError::NotJson(e.to_string()))?;
        match value.get("schema").and_then(Value::as_str) {
            Some(RECHECK_SCHEMA) => {
                let recheck: Recheck = serde_json::from_value(value)
                    .map_err(|e| WorkError::MalformedRecheck(e.to_string()))?;
                Ok(WorkItem {
                    event: recheck.event,
                    attempt: recheck.attempt,
                })
            }
            Some(other) => Err(WorkError::UnknownSchema(super::cap(other))),
            None if value.get("detail-type").is_some() => Ok(WorkItem {
                event: value,
                attempt: 0,
            }),
            None => Err(WorkError::Unrecognised),
        }
    }
}

/// The work queue's message group of an account and Region (the same
/// string the template gives its EventBridge targets).
pub fn message_group(account: &str, region: &str) -> String {
    format!("{account}:{region}")
}

/// The account whose message group a due re-check joins: the event's, as
/// EventBridge recorded it, or, when that is not an account id, the work
/// queue's owner (the account the template's rules send for).
pub fn recheck_account<'a>(event: &'a Value, work_queue_url: &'a str) -> &'a str {
    match event["account"].as_str() {
        Some(account) if is_account_id(account) => account,
        _ => queue_account(work_queue_url).unwrap_or("unknown"),
    }
}

pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The owner and the name in `https://sqs.<region>.amazonaws.com/<account>/<name>`.
fn owner_and_name(url: &str) -> Option<(&str, &str)> {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next()?;
    Some((parts.next()?, name))
}

fn queue_account(url: &str) -> Option<&str> {
    owner_and_name(url)
        .map(|(account, _)| account)
        .filter(|account| is_account_id(account))
}

/// Whether an SQS record's `eventSourceARN` is the queue at `url`: same
/// account and name.
pub fn is_queue(url: &str, arn: &str) -> bool {
    let Some((account, name)) = owner_and_name(url) else {
        return false;
    };
    let arn_parts: Vec<&str> = arn.split(':').collect();
    arn_parts.len() == 6 && arn_parts[2] == "sqs" && arn_parts[4] == account && arn_parts[5] == name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_events_and_rechecks_and_rejects_the_rest() {
        let event = json!({"detail-type": "Scheduled Event", "source": "aws.events"});
        let direct = WorkItem::parse(&event.to_string()).unwrap();
        assert_eq!((direct.event.clone(), direct.attempt), (event.clone(), 0));
        let due = WorkItem::parse(&Recheck::new(event.clone(), 2).body()).unwrap();
        assert_eq!((due.event, due.attempt), (event, 2));
        assert!(matches!(
            WorkItem::parse(r#"{"schema":"other/v9","attempt":1,"event":{}}"#),
            Err(WorkError::UnknownSchema(_))
        ));
        assert!(matches!(
            WorkItem::parse(r#"{"schema":"connect-slr-guard/recheck/v1","attempt":"x"}"#),
            Err(WorkError::MalformedRecheck(_))
        ));
        assert!(matches!(
            WorkItem::parse("not json"),
            Err(WorkError::NotJson(_))
        ));
        assert_eq!(WorkItem::parse("{}"), Err(WorkError::Unrecognised));
    }

    #[test]
    fn a_sweep_part_round_trips_and_goes_on_after_its_last_instance() {
        let part = SweepPart::new("444455556666", "eu-west-2");
        let Ok(Work::Sweep(read)) = Work::parse(&part.body()) else {
            panic!("a sweep part")
        };
        assert_eq!(read, part);
        assert_eq!(read.group(), "444455556666:eu-west-2");
        let next = read.next("instance-b");
        assert_eq!((next.after.as_deref(), next.part), (Some("instance-b"), 1));
        let bad = r#"{"schema":"connect-slr-guard/sweep/v1","account":"me","region":"eu-west-2"}"#;
        assert!(matches!(
            Work::parse(bad),
            Err(WorkError::MalformedSweep(_))
        ));
        let event = json!({"detail-type": "Scheduled Event"});
        assert!(matches!(
            Work::parse(&event.to_string()),
            Ok(Work::Event(_))
        ));
    }

    #[test]
    fn matches_a_queue_url_to_its_arn() {
        let url = "https://sqs.eu-west-2.amazonaws.com/111122223333/guard-rechecks";
        assert!(is_queue(
            url,
            "arn:aws:sqs:eu-west-2:111122223333:guard-rechecks"
        ));
        assert!(!is_queue(
            url,
            "arn:aws:sqs:eu-west-2:111122223333:guard-work.fifo"
        ));
        assert!(!is_queue(
            url,
            "arn:aws:sqs:eu-west-2:444455556666:guard-rechecks"
        ));
        assert!(!is_queue(
            "not a url",
            "arn:aws:sqs:eu-west-2:111122223333:x"
        ));
        assert_eq!(
            message_group("111122223333", "eu-west-2"),
            "111122223333:eu-west-2"
        );
    }

    #[test]
    fn a_due_recheck_joins_its_accounts_group_or_the_queue_owners() {
        let url = "https://sqs.eu-west-2.amazonaws.com/111122223333/guard-work.fifo";
        let event = json!({"account": "444455556666"});
        assert_eq!(recheck_account(&event, url), "444455556666");
        for odd in [json!({}), json!({"account": "me"}), json!({"account": 7})] {
            assert_eq!(recheck_account(&odd, url), "111122223333", "{odd}");
        }
        assert_eq!(recheck_account(&json!({}), "not a url"), "unknown");
    }
}
