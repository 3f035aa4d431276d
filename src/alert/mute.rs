//! Mutes: on-call's way to stop pages about a drift they know of. A muted
//! finding is logged and counted, never paged (no OPEN, no REMINDER); a
//! drift whose OPEN went out before the mute still gets its RESOLVED.

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, RuleId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    pub id: String,
    pub rule: RuleId,
    /// Only findings about this resource; any when `None`.
    pub resource_arn: Option<String>,
    /// Only findings of this instance; any when `None`.
    pub instance_arn: Option<String>,
    /// Epoch seconds it ends.
    pub until: i64,
    pub reason: String,
    /// The caller who set it (its ARN, from STS).
    pub by: String,
    /// Epoch seconds it was set.
    pub created: i64,
}

impl Mute {
    pub fn is_active(&self, now: i64) -> bool {
        now < self.until
    }

    pub fn covers(&self, finding: &Finding) -> bool {
        self.rule == finding.rule
            && self
                .resource_arn
                .as_ref()
                .is_none_or(|r| *r == finding.resource_arn)
            && self
                .instance_arn
                .as_ref()
                .is_none_or(|i| Some(i) == finding.instance_arn.as_ref())
    }
}

/// A short id, unique enough for a table of mutes.
pub fn new_id(now_nanos: u128, seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{now_nanos}/{}/{seed}", std::process::id()));
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}
