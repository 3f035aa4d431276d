//! Step 4 of a pass: findings -> alerts. [`render`] builds the
//! `connect-slr-guard/alert/v1` document and its readable text; [`publish`]
//! sends one SNS message per finding. Under a ledger, [`lifecycle`] decides
//! what to page (OPEN once, REMINDER, RESOLVED) and [`ledger`] remembers it.
//! The same alerts also go, when configured, to Security Hub ([`asff`],
//! [`securityhub`]) and to a chat channel ([`chat`]).

pub mod asff;
pub mod chat;
pub mod deliver;
pub mod ledger;
pub mod lifecycle;
pub mod mute;
mod publish;
pub mod recheck;
mod render;
pub mod securityhub;

pub use publish::{PublishError, publish, publish_alert};
pub use render::{Alert, SCHEMA, Status, sns_message, subject, text};

use serde::Serialize;

use crate::trigger::Trigger;

/// What every alert of one pass shares.
#[derive(Debug, Clone, Serialize)]
pub struct PassContext {
    pub account: String,
    pub region: String,
    pub trigger: Trigger,
    pub observed_at: String,
}
