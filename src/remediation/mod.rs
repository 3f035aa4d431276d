//! Opt-in remediation (`REMEDIATION`), between the rules and the alerts:
//! [`plan`] decides, from the snapshot alone, which drifts have a safe,
//! mechanical fix (a KMS grant for the Connect SLR) and refuses the rest
//! with a reason; [`apply`] makes the grants. The guard then re-reads and
//! re-judges: a fix that did not clear its drift is `REMEDIATION_FAILED`.
//! Nothing here widens access: the grantee is always an instance's Connect
//! SLR, the operations exactly the required ones, the key the guard's own.

mod apply;

use std::collections::BTreeSet;

pub use apply::{Outcome, apply};

use serde::Serialize;

use crate::finding::{Finding, RuleId};
use crate::model::{Instance, KeyState, Observed, SLR_PATH, Snapshot, arn_account, has_slr_prefix};
use crate::policy::{SlrPrincipal, lets_role_create_grants};

/// `REMEDIATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Off,
    /// Plans and reports the fixes; changes nothing.
    DryRun,
    Apply,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::DryRun => "dry-run",
            Mode::Apply => "apply",
        }
    }
}

/// One grant to create: it fixes every drift in `fingerprints`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    pub rule: RuleId,
    pub fingerprints: Vec<String>,
    pub instance_arn: String,
    pub key_arn: String,
    pub grantee: String,
    pub operations: Vec<String>,
    pub grant_name: String,
}

impl Fix {
    /// What the fix does, in one line, as the alert and the log say it.
    pub fn describe(&self) -> String {
        format!(
            "kms:CreateGrant on {} for {} ({}), named {}",
            self.key_arn,
            self.grantee,
            self.operations.join(", "),
            self.grant_name
        )
    }
}

/// A drift with a known fix that the guard will not make, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub rule: RuleId,
    pub fingerprint: String,
    pub resource_arn: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub fixes: Vec<Fix>,
    pub refusals: Vec<Refusal>,
    /// More fixes than `REMEDIATION_MAX_ACTIONS`: none is made, and every
    /// drift pages as it would without remediation.
    pub over_cap: bool,
}

/// Who the guard is, for the key policy's say on `CreateGrant`.
#[derive(Debug, Clone)]
pub struct Actor {
    pub account: String,
    pub role_arn: String,
    pub role_name: String,
}

impl Actor {
    /// The role behind an STS caller ARN
    /// (`arn:aws:sts::<account>:assumed-role/<role>/<session>`), or an IAM
    /// user or role ARN as is.
    pub fn from_caller_arn(caller: &str) -> Option<Actor> {
        let account = arn_account(caller)?.to_owned();
        let resource = caller.splitn(6, ':').nth(5)?;
        let role_name = match resource.strip_prefix("assumed-role/") {
            Some(rest) => rest.split('/').next()?,
            None => resource.rsplit('/').next()?,
        }
        .to_owned();
        let partition = caller.split(':').nth(1)?;
        Some(Actor {
            role_arn: format!("arn:{partition}:iam::{account}:role/{role_name}"),
            account,
            role_name,
        })
    }
}

/// What the guard may fix among `findings` (each `(finding, fingerprint)`),
/// judged on the snapshot that produced them. `operations` are the grant
/// operations the rules require; at most `max_actions` fixes are planned.
pub fn plan(
    snapshot: &Snapshot,
    findings: &[(&Finding, String)],
    actor: &Actor,
    operations: &[String],
    max_actions: usize,
) -> Plan {
    let mut plan = Plan::default();
    for (finding, fingerprint) in findings {
        if !has_fix(finding.rule) {
            continue;
        }
        let fix = match finding.rule {
            RuleId::ConnectSlrMissing => Err(SLR_NOT_RECREATABLE.to_owned()),
            _ => grant_fix(snapshot, finding, actor, operations),
        };
        match fix {
            Ok(fix) => add(&mut plan.fixes, fix, fingerprint),
            Err(reason) => plan.refusals.push(Refusal {
                rule: finding.rule,
                fingerprint: fingerprint.clone(),
                resource_arn: finding.resource_arn.clone(),
                reason,
            }),
        }
    }
    plan.over_cap = plan.fixes.len() > max_actions;
    plan
}

/// Why the guard never recreates a deleted Connect SLR (README: "What it
/// will not fix").
pub const SLR_NOT_RECREATABLE: &str = "the guard does not recreate service-linked roles: AWS documents no way to link a recreated role to an existing instance, nor whether IAM accepts the instance's suffix for Connect; follow the alert's fix";

/// Operations that manage grants: never handed on by the guard.
const GRANT_MANAGEMENT: [&str; 2] = ["CreateGrant", "RetireGrant"];

/// One grant per key and grantee, whichever drifts it fixes.
fn add(fixes: &mut Vec<Fix>, mut fix: Fix, fingerprint: &str) {
    match fixes
        .iter_mut()
        .find(|f| f.key_arn == fix.key_arn && f.grantee == fix.grantee)
    {
        Some(same) => same.fingerprints.push(fingerprint.to_owned()),
        None => {
            fix.fingerprints.push(fingerprint.to_owned());
            fixes.push(fix);
        }
    }
}

fn grant_fix(
    snapshot: &Snapshot,
    finding: &Finding,
    actor: &Actor,
    operations: &[String],
) -> Result<Fix, String> {
    // What the rule says the SLR needs of this key (a storage key also
    // needs GenerateDataKey), else the configured operations.
    let operations: Vec<String> = match finding.details["grant_operations"].as_array() {
        Some(ops) => ops
            .iter()
            .filter_map(|op| op.as_str().map(str::to_owned))
            .collect(),
        None => operations.to_vec(),
    };
    if let Some(op) = operations
        .iter()
        .find(|op| GRANT_MANAGEMENT.contains(&op.as_str()))
    {
        return Err(format!(
            "REQUIRED_GRANT_OPERATIONS includes {op}, which would let the SLR pass the key on"
        ));
    }
    let instance = active_instance(snapshot, finding.instance_arn.as_deref())?;
    let grantee = connect_slr(snapshot, instance)?;
    let key = match snapshot.keys.get(&finding.resource_arn) {
        Some(Observed::Found(key)) => key,
        _ => return Err("the key could not be read".to_owned()),
    };
    if key.state != KeyState::Enabled {
        return Err(format!("the key is {}", key.state.as_str()));
    }
    if !key.customer_managed {
        return Err("the key is not customer managed".to_owned());
    }
    if arn_account(&key.arn) != Some(actor.account.as_str()) {
        return Err("the key is in another account".to_owned());
    }
    let policy = match &key.policy {
        Some(Observed::Found(policy)) => policy,
        _ => return Err("the key policy could not be read".to_owned()),
    };
    let guard = SlrPrincipal {
        role_arn: &actor.role_arn,
        role_name: &actor.role_name,
        account: &actor.account,
    };
    if !lets_role_create_grants(policy, &guard) {
        return Err("the key policy does not let the guard create grants".to_owned());
    }
    Ok(Fix {
        rule: finding.rule,
        fingerprints: Vec::new(),
        instance_arn: instance.arn.clone(),
        key_arn: key.arn.clone(),
        grantee: grantee.to_owned(),
        operations,
        grant_name: format!("connect-slr-guard-{}", finding.rule),
    })
}

fn active_instance<'a>(snapshot: &'a Snapshot, arn: Option<&str>) -> Result<&'a Instance, String> {
    let instance = snapshot
        .instances
        .iter()
        .find(|i| Some(i.arn.as_str()) == arn)
        .ok_or("the instance was not read")?;
    if !instance.is_active() {
        return Err("the instance is not ACTIVE".to_owned());
    }
    Ok(instance)
}

/// The instance's service role, when it is a Connect SLR the pass read.
fn connect_slr<'a>(snapshot: &'a Snapshot, instance: &Instance) -> Result<&'a str, String> {
    let arn = instance
        .service_role
        .as_deref()
        .ok_or("the instance has no service role")?;
    match snapshot.roles.get(arn) {
        Some(Observed::Found(role)) if role.path == SLR_PATH && has_slr_prefix(&role.name) => {
            Ok(&role.arn)
        }
        Some(Observed::Found(_)) => Err("the role is outside the Connect SLR path".to_owned()),
        _ => Err("the service role could not be read".to_owned()),
    }
}

/// Which findings a `remediate` run may act on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub rule: Option<RuleId>,
    pub instance_arn: Option<String>,
}

impl Filter {
    pub fn admits(&self, finding: &Finding) -> bool {
        self.rule.is_none_or(|r| r == finding.rule)
            && self
                .instance_arn
                .as_deref()
                .is_none_or(|arn| finding.instance_arn.as_deref() == Some(arn))
    }
}

/// What remediation did in a pass: the report's `remediation`.
#[derive(Debug, Clone, Serialize)]
pub struct Remediation {
    pub mode: Mode,
    pub max_actions: usize,
    /// More fixes than `max_actions`: none was made.
    pub over_cap: bool,
    pub fixes: Vec<FixReport>,
    pub refusals: Vec<Refusal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixReport {
    #[serde(flatten)]
    pub fix: Fix,
    /// `None` when the fix was not made (dry run, over the cap).
    pub outcome: Option<Outcome>,
    /// After the re-read: the drift is gone.
    pub verified: Option<bool>,
}

impl Remediation {
    /// Whether a fix was made, or tried, and the drift stayed.
    pub fn failed(&self) -> bool {
        self.fixes.iter().any(|f| f.verified == Some(false))
    }

    /// The drifts the pass cleared.
    pub fn cleared(&self) -> BTreeSet<&str> {
        self.fixes
            .iter()
            .filter(|f| f.verified == Some(true))
            .flat_map(|f| f.fix.fingerprints.iter().map(String::as_str))
            .collect()
    }
}

/// Whether the guard knows a fix for `rule` (it may still refuse it).
pub fn has_fix(rule: RuleId) -> bool {
    matches!(
        rule,
        RuleId::ConnectSlrMissing
            | RuleId::ProfilesKmsGrantMissing
            | RuleId::ProfilesKmsGrantIncomplete
            | RuleId::StorageKmsGrantMissing
    )
}

/// Adds what remediation did about a drift to its alert's `details`.
pub fn annotate(finding: &mut Finding, action: serde_json::Value) {
    if let serde_json::Value::Object(details) = &mut finding.details {
        details.insert("remediation_action".to_owned(), action);
    }
}
