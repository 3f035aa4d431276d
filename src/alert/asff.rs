//! An alert in the AWS Security Finding Format, as `BatchImportFindings`
//! takes it on the account's default product. [`AsffFinding`] is what
//! `--format asff` prints; [`AsffFinding::to_sdk`] is the same finding as
//! the SDK sends it.

use std::collections::BTreeMap;

use aws_sdk_securityhub::types as hub;
use serde::Serialize;

use super::render::{Alert, Status, subject};
use crate::finding::RuleId;
use crate::model::region_partition;
use crate::text::clip;

pub const SCHEMA_VERSION: &str = "2018-10-08";
pub const PRODUCT_NAME: &str = "connect-slr-guard";
/// The guard checks configuration against what Amazon Connect needs.
const FINDING_TYPE: &str = "Software and Configuration Checks/AWS Security Best Practices";
// ASFF's documented maximum lengths.
const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 1024;
const MAX_RECOMMENDATION: usize = 512;
const MAX_PRODUCT_FIELD: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: &'static str,
    pub id: String,
    pub product_arn: String,
    pub product_name: &'static str,
    pub company_name: &'static str,
    pub generator_id: &'static str,
    pub aws_account_id: String,
    pub types: Vec<&'static str>,
    pub created_at: String,
    pub updated_at: String,
    pub severity: AsffSeverity,
    pub title: String,
    pub description: String,
    pub remediation: AsffRemediation,
    pub product_fields: BTreeMap<&'static str, String>,
    pub resources: Vec<AsffResource>,
    pub compliance: AsffCompliance,
    pub record_state: &'static str,
    pub finding_provider_fields: AsffProviderFields,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffSeverity {
    pub label: &'static str,
    pub original: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffRemediation {
    pub recommendation: AsffRecommendation,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffRecommendation {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffResource {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub id: String,
    pub partition: &'static str,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffCompliance {
    pub status: &'static str,
}

/// Severity and types as the finding provider sets them: Security Hub keeps
/// the top-level copies for customers to change (`BatchUpdateFindings`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffProviderFields {
    pub severity: AsffSeverity,
    pub types: Vec<&'static str>,
}

/// The account's default product, which takes findings from its own
/// account without an integration.
pub fn default_product_arn(region: &str, account: &str) -> String {
    format!(
        "arn:{}:securityhub:{region}:{account}:product/{account}/default",
        region_partition(region)
    )
}

/// A finding's id: stable per drift, so each pass updates the same one.
pub fn finding_id(fingerprint: &str) -> String {
    format!("connect-slr-guard/{fingerprint}")
}

impl AsffFinding {
    /// `alert` as ASFF; a RESOLVED alert archives the finding as PASSED.
    /// `CreatedAt` is when the drift was first seen (under a ledger) or
    /// this pass; `UpdatedAt` is this pass, so a drift still there never
    /// reaches Security Hub's 90-day expiry.
    pub fn from_alert(alert: &Alert) -> Self {
        let resolved = alert.status == Status::Resolved.as_str();
        let severity = AsffSeverity {
            label: alert.severity.as_str(),
            original: alert.severity.as_str(),
        };
        AsffFinding {
            schema_version: SCHEMA_VERSION,
            id: finding_id(&alert.fingerprint),
            product_arn: default_product_arn(alert.region, alert.account),
            product_name: PRODUCT_NAME,
            company_name: PRODUCT_NAME,
            generator_id: alert.rule.as_str(),
            aws_account_id: alert.account.to_owned(),
            types: vec![FINDING_TYPE],
            created_at: alert
                .first_seen
                .clone()
                .unwrap_or_else(|| alert.observed_at.to_owned()),
            updated_at: alert.observed_at.to_owned(),
            severity: severity.clone(),
            title: clip(&subject(alert), MAX_TITLE),
            description: clip(alert.summary, MAX_DESCRIPTION),
            remediation: AsffRemediation {
                recommendation: AsffRecommendation {
                    text: clip(alert.remediation, MAX_RECOMMENDATION),
                },
            },
            product_fields: product_fields(alert),
            resources: resources(alert),
            compliance: AsffCompliance {
                status: compliance(alert.rule, resolved),
            },
            record_state: if resolved { "ARCHIVED" } else { "ACTIVE" },
            finding_provider_fields: AsffProviderFields {
                severity,
                types: vec![FINDING_TYPE],
            },
        }
    }

    /// The same finding as the SDK sends it.
    pub fn to_sdk(&self) -> hub::AwsSecurityFinding {
        let severity = hub::Severity::builder()
            .label(hub::SeverityLabel::from(self.severity.label))
            .original(self.severity.original)
            .build();
        let provider_severity = hub::FindingProviderSeverity::builder()
            .label(hub::SeverityLabel::from(
                self.finding_provider_fields.severity.label,
            ))
            .original(self.finding_provider_fields.severity.original)
            .build();
        let resources = self
            .resources
            .iter()
            .map(|r| {
                hub::Resource::builder()
                    .r#type(r.kind)
                    .id(&r.id)
                    .partition(hub::Partition::from(r.partition))
                    .region(&r.region)
                    .build()
            })
            .collect();
        let product_fields = self
            .product_fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        hub::AwsSecurityFinding::builder()
            .schema_version(self.schema_version)
            .id(&self.id)
            .product_arn(&self.product_arn)
            .product_name(self.product_name)
            .company_name(self.company_name)
            .generator_id(self.generator_id)
            .aws_account_id(&self.aws_account_id)
            .set_types(Some(self.types.iter().map(|t| (*t).to_owned()).collect()))
            .created_at(&self.created_at)
            .updated_at(&self.updated_at)
            .severity(severity)
            .title(&self.title)
            .description(&self.description)
            .remediation(
                hub::Remediation::builder()
                    .recommendation(
                        hub::Recommendation::builder()
                            .text(&self.remediation.recommendation.text)
                            .build(),
                    )
                    .build(),
            )
            .set_product_fields(Some(product_fields))
            .set_resources(Some(resources))
            .compliance(
                hub::Compliance::builder()
                    .status(hub::ComplianceStatus::from(self.compliance.status))
                    .build(),
            )
            .record_state(hub::RecordState::from(self.record_state))
            .finding_provider_fields(
                hub::FindingProviderFields::builder()
                    .severity(provider_severity)
                    .set_types(Some(
                        self.finding_provider_fields
                            .types
                            .iter()
                            .map(|t| (*t).to_owned())
                            .collect(),
                    ))
                    .build(),
            )
            .build()
    }
}

/// `CHECK_INCOMPLETE` could not look: neither passed nor failed.
fn compliance(rule: RuleId, resolved: bool) -> &'static str {
    match (rule, resolved) {
        (_, true) => "PASSED",
        (RuleId::CheckIncomplete, false) => "NOT_AVAILABLE",
        (_, false) => "FAILED",
    }
}

fn product_fields(alert: &Alert) -> BTreeMap<&'static str, String> {
    let mut fields = BTreeMap::from([
        ("ProviderName", PRODUCT_NAME.to_owned()),
        ("ProviderVersion", env!("CARGO_PKG_VERSION").to_owned()),
        ("connect-slr-guard/Rule", alert.rule.as_str().to_owned()),
        ("connect-slr-guard/Status", alert.status.to_owned()),
        ("connect-slr-guard/Fingerprint", alert.fingerprint.clone()),
        (
            "connect-slr-guard/Remediation",
            clip(alert.remediation, MAX_PRODUCT_FIELD),
        ),
    ]);
    if let Some(instance) = alert.instance_arn {
        fields.insert("connect-slr-guard/InstanceArn", instance.to_owned());
    }
    fields
}

/// What drifted, then the instance it breaks (when that is another thing).
fn resources(alert: &Alert) -> Vec<AsffResource> {
    let resource = |id: &str| AsffResource {
        kind: resource_type(id),
        id: id.to_owned(),
        partition: region_partition(alert.region),
        region: alert.region.to_owned(),
    };
    let mut resources = vec![resource(alert.resource_arn)];
    if let Some(instance) = alert.instance_arn.filter(|i| *i != alert.resource_arn) {
        resources.push(resource(instance));
    }
    resources
}

/// ASFF's resource type for an ARN; `Other` where ASFF has none.
fn resource_type(arn: &str) -> &'static str {
    let mut parts = arn.splitn(6, ':');
    let service = parts.nth(2).unwrap_or_default();
    let resource = parts.nth(2).unwrap_or_default();
    match service {
        "iam" if resource.starts_with("role/") => "AwsIamRole",
        "kms" if resource.starts_with("key/") => "AwsKmsKey",
        "kinesis" if resource.starts_with("stream/") => "AwsKinesisStream",
        _ => "Other",
    }
}
