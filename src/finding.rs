//! Findings and the rule catalogue: every rule's id, severity, the kind of
//! resource it names and the drift it reports, in one table. Everything
//! else (the README's rule table, `connect-slr-guard rules`, the bench's
//! severities) derives from it or is checked against it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Unverified;

/// What a rule's `resource_arn` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    ConnectInstance,
    IamRole,
    /// A Kinesis stream or Firehose delivery stream.
    DataStream,
    ProfilesDomain,
    KmsKey,
    /// Whatever could not be read.
    Unread,
}

/// One row of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    pub rule: &'static str,
    pub severity: Severity,
    pub resource: ResourceKind,
    /// The drift, in one line, as the README's rule table shows it.
    pub description: &'static str,
    /// `rules` (judged from a snapshot) or `remediation` (from a fix).
    pub judged_by: &'static str,
}

/// Declares [`RuleId`] and its catalogue from one table, so a rule cannot
/// exist without an id, a severity, a resource kind and a description.
macro_rules! rule_catalogue {
    ($($variant:ident => $id:literal, $severity:ident, $resource:ident, $description:literal;)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum RuleId {
            $(#[serde(rename = $id)] $variant,)+
        }

        impl RuleId {
            /// Every rule, in catalogue order.
            pub const ALL: &[RuleId] = &[$(RuleId::$variant,)+];

            pub const fn spec(self) -> RuleSpec {
                match self {
                    $(RuleId::$variant => RuleSpec {
                        rule: $id,
                        severity: Severity::$severity,
                        resource: ResourceKind::$resource,
                        description: $description,
                        judged_by: RuleId::$variant.judged_by(),
                    },)+
                }
            }
        }
    };
}

rule_catalogue! {
    ConnectSlrNotConfigured => "CONNECT_SLR_NOT_CONFIGURED", High, ConnectInstance,
        "active instance has no service role (pre-2018 instance)";
    ConnectSlrMissing => "CONNECT_SLR_MISSING", Critical, IamRole,
        "the instance's service role does not exist";
    ConnectSlrNotServiceLinked => "CONNECT_SLR_NOT_SERVICE_LINKED", Critical, IamRole,
        "the role is not at `/aws-service-role/connect.amazonaws.com/` or lacks the name prefix";
    ConnectSlrTrustDrift => "CONNECT_SLR_TRUST_DRIFT", Critical, IamRole,
        "trust policy does not admit exactly `connect.amazonaws.com` (`*`, another account, `NotPrincipal`, or Connect missing or denied)";
    ConnectSlrPolicyDetached => "CONNECT_SLR_POLICY_DETACHED", High, IamRole,
        "`AmazonConnectServiceLinkedRolePolicy` not attached";
    ConnectSlrFeaturePermissionMissing => "CONNECT_SLR_FEATURE_PERMISSION_MISSING", High, DataStream,
        "a configured Kinesis stream (`kinesis:PutRecord`, `PutRecords`) or Firehose (`firehose:PutRecord`, `PutRecordBatch`) is not allowed by the role's inline policies (an explicit Deny wins)";
    ProfilesDomainAccessMissing => "PROFILES_DOMAIN_ACCESS_MISSING", High, ProfilesDomain,
        "the instance's domain lacks the `amazon-connect-` prefix and no inline policy allows a `profile:` action on it";
    ProfilesKmsGrantMissing => "PROFILES_KMS_GRANT_MISSING", High, KmsKey,
        "the domain's customer managed key has no grant for the SLR";
    ProfilesKmsGrantIncomplete => "PROFILES_KMS_GRANT_INCOMPLETE", High, KmsKey,
        "grants exist but together lack a required operation (`REQUIRED_GRANT_OPERATIONS`)";
    StorageKmsGrantMissing => "STORAGE_KMS_GRANT_MISSING", High, KmsKey,
        "a storage config's customer managed key has no grant for the SLR";
    KmsKeyUnusable => "KMS_KEY_UNUSABLE", Critical, KmsKey,
        "a key the instance depends on is disabled, pending deletion or gone";
    KmsKeyPolicyDenies => "KMS_KEY_POLICY_DENIES", Critical, KmsKey,
        "the key policy explicitly denies the SLR an operation it needs (a `Deny` naming it, its account, everyone, or a `NotPrincipal` that leaves it out)";
    ProfilesCrossDomainExposure => "PROFILES_CROSS_DOMAIN_EXPOSURE", Medium, ProfilesDomain,
        "an `amazon-connect-*` domain is reachable (through the managed policy) by instances it is not associated with; one finding per domain, the instances in `details.instances`";
    CheckIncomplete => "CHECK_INCOMPLETE", Medium, Unread,
        "a check could not finish (access denied, throttled after the SDK's retries, network, deadline): never a silent pass";
    RemediationFailed => "REMEDIATION_FAILED", High, KmsKey,
        "an opt-in fix (`REMEDIATION=apply`) was applied, or tried, and the drift is still there";
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        self.spec().rule
    }

    pub fn severity(self) -> Severity {
        self.spec().severity
    }

    /// Whether the rules judge it from a snapshot; `REMEDIATION_FAILED`
    /// comes from the remediation step instead.
    pub const fn judged_from_snapshot(self) -> bool {
        !matches!(self, RuleId::RemediationFailed)
    }

    const fn judged_by(self) -> &'static str {
        if self.judged_from_snapshot() {
            "rules"
        } else {
            "remediation"
        }
    }

    /// The catalogue as the README's markdown table.
    pub fn markdown_table() -> String {
        let mut table = String::from("| rule | severity | drift |\n|---|---|---|\n");
        for rule in RuleId::ALL {
            let spec = rule.spec();
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                spec.rule, spec.severity, spec.description
            ));
        }
        table
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: RuleId,
    pub severity: Severity,
    pub instance_arn: Option<String>,
    /// What has drifted.
    pub resource_arn: String,
    pub summary: String,
    pub details: serde_json::Value,
    /// The exact command that fixes it.
    pub remediation: String,
    /// Why a `CHECK_INCOMPLETE` could not verify; `None` for drift.
    #[serde(skip)]
    pub unverified: Option<Unverified>,
}

impl Finding {
    pub fn new(rule: RuleId, instance_arn: Option<&str>, resource_arn: &str) -> Self {
        Finding {
            rule,
            severity: rule.severity(),
            instance_arn: instance_arn.map(str::to_owned),
            resource_arn: resource_arn.to_owned(),
            summary: String::new(),
            details: serde_json::Value::Object(Default::default()),
            remediation: String::new(),
            unverified: None,
        }
    }

    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn remediation(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = remediation.into();
        self
    }

    /// Same drift, same value, every run: derived only from what identifies
    /// the drift (rule, place, resource), never from times or wording.
    pub fn fingerprint(&self, account: &str, region: &str) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.rule.as_str(),
            account,
            region,
            self.instance_arn.as_deref().unwrap_or(""),
            &self.resource_arn,
        ] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        let digest = hash.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}
