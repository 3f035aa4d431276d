//! Findings: what the rules report, with a severity per rule and a
//! fingerprint that stays the same for the same drift across runs.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleId {
    ConnectSlrNotConfigured,
    ConnectSlrMissing,
    ConnectSlrNotServiceLinked,
    ConnectSlrTrustDrift,
    ConnectSlrPolicyDetached,
    ConnectSlrFeaturePermissionMissing,
    ProfilesDomainAccessMissing,
    ProfilesKmsGrantMissing,
    ProfilesKmsGrantIncomplete,
    StorageKmsGrantMissing,
    KmsKeyUnusable,
    ProfilesCrossDomainExposure,
    CheckIncomplete,
}

impl RuleId {
    pub const ALL: [RuleId; 13] = [
        RuleId::ConnectSlrNotConfigured,
        RuleId::ConnectSlrMissing,
        RuleId::ConnectSlrNotServiceLinked,
        RuleId::ConnectSlrTrustDrift,
        RuleId::ConnectSlrPolicyDetached,
        RuleId::ConnectSlrFeaturePermissionMissing,
        RuleId::ProfilesDomainAccessMissing,
        RuleId::ProfilesKmsGrantMissing,
        RuleId::ProfilesKmsGrantIncomplete,
        RuleId::StorageKmsGrantMissing,
        RuleId::KmsKeyUnusable,
        RuleId::ProfilesCrossDomainExposure,
        RuleId::CheckIncomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::ConnectSlrNotConfigured => "CONNECT_SLR_NOT_CONFIGURED",
            RuleId::ConnectSlrMissing => "CONNECT_SLR_MISSING",
            RuleId::ConnectSlrNotServiceLinked => "CONNECT_SLR_NOT_SERVICE_LINKED",
            RuleId::ConnectSlrTrustDrift => "CONNECT_SLR_TRUST_DRIFT",
            RuleId::ConnectSlrPolicyDetached => "CONNECT_SLR_POLICY_DETACHED",
            RuleId::ConnectSlrFeaturePermissionMissing => "CONNECT_SLR_FEATURE_PERMISSION_MISSING",
            RuleId::ProfilesDomainAccessMissing => "PROFILES_DOMAIN_ACCESS_MISSING",
            RuleId::ProfilesKmsGrantMissing => "PROFILES_KMS_GRANT_MISSING",
            RuleId::ProfilesKmsGrantIncomplete => "PROFILES_KMS_GRANT_INCOMPLETE",
            RuleId::StorageKmsGrantMissing => "STORAGE_KMS_GRANT_MISSING",
            RuleId::KmsKeyUnusable => "KMS_KEY_UNUSABLE",
            RuleId::ProfilesCrossDomainExposure => "PROFILES_CROSS_DOMAIN_EXPOSURE",
            RuleId::CheckIncomplete => "CHECK_INCOMPLETE",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            RuleId::ConnectSlrMissing
            | RuleId::ConnectSlrNotServiceLinked
            | RuleId::ConnectSlrTrustDrift
            | RuleId::KmsKeyUnusable => Severity::Critical,
            RuleId::ProfilesCrossDomainExposure | RuleId::CheckIncomplete => Severity::Medium,
            _ => Severity::High,
        }
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
