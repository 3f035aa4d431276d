//! The snapshot: plain, serialisable data that the inventory reads and the
//! rules judge. No SDK types, so a snapshot can be saved and re-evaluated.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where IAM keeps every Amazon Connect service-linked role.
pub const SLR_PATH: &str = "/aws-service-role/connect.amazonaws.com/";
/// The name every Amazon Connect service-linked role starts with.
pub const SLR_NAME_PREFIX: &str = "AWSServiceRoleForAmazonConnect";
/// The Customer Profiles domains the managed SLR policy reaches.
pub const PROFILES_MANAGED_PREFIX: &str = "amazon-connect-";

/// What a read found: the thing, its confirmed absence, or why it could not
/// be read. `Unverified` must never be treated as healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum Observed<T> {
    Found(T),
    Absent,
    Unverified(Unverified),
}

/// Why a read is `Unverified`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unverified {
    /// The pass reached its deadline before this read finished.
    Deadline,
    /// The pass had no reason to read it (e.g. an instance that is not `ACTIVE`).
    NotRead,
    /// The read failed: access denied, throttled after retries, network.
    Failed(String),
}

impl fmt::Display for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unverified::Deadline => {
                "the pass reached its deadline before reading this; the next pass retries it"
            }
            Unverified::NotRead => "not read",
            Unverified::Failed(reason) => reason,
        })
    }
}

impl<T> Observed<T> {
    pub fn found(&self) -> Option<&T> {
        match self {
            Observed::Found(value) => Some(value),
            _ => None,
        }
    }

    /// For reads where "not found" means "none" (e.g. no linked domain).
    pub fn or_found(self, empty: T) -> Observed<T> {
        match self {
            Observed::Absent => Observed::Found(empty),
            other => other,
        }
    }

    pub fn map_found<U>(self, f: impl FnOnce(T) -> U) -> Observed<U> {
        match self {
            Observed::Found(value) => Observed::Found(f(value)),
            Observed::Absent => Observed::Absent,
            Observed::Unverified(reason) => Observed::Unverified(reason),
        }
    }

    pub fn unverified(&self) -> Option<&Unverified> {
        match self {
            Observed::Unverified(reason) => Some(reason),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub account: Option<String>,
    pub region: String,
    pub instances: Vec<Instance>,
    /// Roles by ARN, as named by the instances' `ServiceRole`.
    pub roles: BTreeMap<String, Observed<Role>>,
    /// Customer Profiles domains by name.
    pub domains: BTreeMap<String, Observed<Domain>>,
    /// KMS keys by the reference the account uses for them (ARN, id or alias).
    pub keys: BTreeMap<String, Observed<Key>>,
    /// The `amazon-connect-*` domains to judge for cross-domain exposure.
    pub connect_domains: Observed<Vec<String>>,
    /// Reads that failed before any instance could be named (e.g. ListInstances).
    pub incomplete: Vec<Incomplete>,
    /// The encryption of the Kinesis and Firehose streams storage configs
    /// write to, by stream ARN.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, Observed<StreamEncryption>>,
    /// Service-linked role deletions an event started, and how far they got.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slr_deletions: Vec<SlrDeletion>,
    /// A sweep read in parts: where this part stands in the listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// The member role the pass read through (central mode): proof it can
    /// be assumed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_role: Option<String>,
}

/// An account and Region: where a pass reads, and where a drift is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Place {
    pub account: String,
    pub region: String,
}

/// One part of a sweep read in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Every instance the listing returned (ARNs): the others are read by
    /// other parts, not gone.
    pub listed: Vec<String>,
    /// The id of this part's last instance, when a part follows.
    pub next_after: Option<String>,
}

/// How a Kinesis or Firehose stream is encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEncryption {
    /// The KMS key, as the stream names it (id, ARN or alias); `None` when
    /// unencrypted or under an AWS owned key.
    pub key: Option<String>,
}

/// A `DeleteServiceLinkedRole` task: IAM deletes the role asynchronously,
/// so the role may still be read while it is going.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlrDeletion {
    pub role_name: String,
    pub task_id: String,
    pub status: Observed<DeletionStatus>,
}

/// `GetServiceLinkedRoleDeletionStatus`'s `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeletionStatus {
    NotStarted,
    InProgress,
    Succeeded,
    Failed,
}

impl DeletionStatus {
    /// Whether the role is gone or going: everything but a failed task.
    pub fn removes_the_role(self) -> bool {
        !matches!(self, DeletionStatus::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionStatus::NotStarted => "NOT_STARTED",
            DeletionStatus::InProgress => "IN_PROGRESS",
            DeletionStatus::Succeeded => "SUCCEEDED",
            DeletionStatus::Failed => "FAILED",
        }
    }
}

impl Default for Observed<Vec<String>> {
    fn default() -> Self {
        Observed::Found(Vec::new())
    }
}

/// A check that could not finish: what, of which instance, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incomplete {
    pub instance_arn: Option<String>,
    pub resource_arn: String,
    pub what: String,
    pub reason: Unverified,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub arn: String,
    pub alias: Option<String>,
    pub status: InstanceStatus,
    pub service_role: Option<String>,
    /// True when the pass verifies this instance; false when it is only
    /// context (e.g. for cross-domain exposure).
    pub checked: bool,
    pub storage: Observed<Vec<StorageConfig>>,
    /// The Customer Profiles domain linked to the instance, if any.
    pub domain: Observed<Option<String>>,
}

impl Instance {
    pub fn is_active(&self) -> bool {
        self.status == InstanceStatus::Active
    }

    pub fn label(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.id)
    }
}

/// `DescribeInstance`'s `InstanceStatus`; only `ACTIVE` instances are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    CreationInProgress,
    Active,
    CreationFailed,
    /// A status this build does not know, or none.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageConfig {
    pub resource_type: String,
    pub association_id: String,
    pub storage_type: String,
    pub stream_arn: Option<String>,
    pub firehose_arn: Option<String>,
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub arn: String,
    pub name: String,
    pub path: String,
    /// The trust policy, URL-decoded and parsed.
    pub trust_policy: serde_json::Value,
    pub attached_policies: Vec<String>,
    pub inline_policies: Vec<InlinePolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlinePolicy {
    pub name: String,
    pub document: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    /// Key ARN; `None` when the domain uses an AWS owned key.
    pub encryption_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub arn: String,
    pub state: KeyState,
    pub customer_managed: bool,
    /// The custom key store (CloudHSM or external) the key lives in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_key_store: Option<String>,
    /// Read only for enabled customer managed keys that a checked instance uses.
    pub grants: Option<Observed<Vec<Grant>>>,
    /// The `default` key policy, read like the grants, and only for keys in
    /// the instance's own account (GetKeyPolicy does not cross accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Observed<serde_json::Value>>,
}

impl Key {
    /// `Updating` (a multi-Region primary key changing Region) still
    /// serves cryptographic operations.
    pub fn is_usable(&self) -> bool {
        matches!(self.state, KeyState::Enabled | KeyState::Updating)
    }
}

/// `DescribeKey`'s `KeyState`, spelt as KMS spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Creating,
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
    PendingReplicaDeletion,
    Unavailable,
    Updating,
    /// A state this build does not know, or none.
    Unknown,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Creating => "Creating",
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
            KeyState::PendingReplicaDeletion => "PendingReplicaDeletion",
            KeyState::Unavailable => "Unavailable",
            KeyState::Updating => "Updating",
            KeyState::Unknown => "Unknown",
        }
    }
}

/// Why an instance depends on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse<'a> {
    /// The key of this Customer Profiles domain.
    Domain(&'a str),
    /// The key of this storage type's S3 bucket or Kinesis video stream.
    Storage(&'a str),
    /// The key of the Kinesis stream a storage type writes to; the SLR
    /// produces to it, so it needs `GenerateDataKey`.
    Stream {
        resource_type: &'a str,
        arn: &'a str,
    },
    /// The key of the Firehose delivery stream a storage type writes to.
    /// Firehose encrypts with its own grant: only the key's state matters.
    Firehose {
        resource_type: &'a str,
        arn: &'a str,
    },
}

/// Every (key reference, use) of an instance, domain first.
pub fn key_uses<'a>(snapshot: &'a Snapshot, instance: &'a Instance) -> Vec<(&'a str, KeyUse<'a>)> {
    let mut uses = Vec::new();
    if let Observed::Found(Some(name)) = &instance.domain
        && let Some(Observed::Found(domain)) = snapshot.domains.get(name)
        && let Some(key) = &domain.encryption_key
    {
        uses.push((key.as_str(), KeyUse::Domain(name)));
    }
    let Observed::Found(configs) = &instance.storage else {
        return uses;
    };
    for config in configs {
        if let Some(key) = &config.kms_key {
            uses.push((key.as_str(), KeyUse::Storage(&config.resource_type)));
        }
        let resource_type = config.resource_type.as_str();
        if let Some(arn) = &config.stream_arn
            && let Some(key) = snapshot.stream_key(arn)
        {
            uses.push((key, KeyUse::Stream { resource_type, arn }));
        }
        if let Some(arn) = &config.firehose_arn
            && let Some(key) = snapshot.stream_key(arn)
        {
            uses.push((key, KeyUse::Firehose { resource_type, arn }));
        }
    }
    uses
}

impl Snapshot {
    /// Where the pass read, once it knows the account.
    pub fn place(&self) -> Option<Place> {
        Some(Place {
            account: self.account.clone()?,
            region: self.region.clone(),
        })
    }

    /// Whether a deletion task the pass read is still taking a role that the
    /// pass could still read.
    pub fn deletion_pending(&self) -> bool {
        self.slr_deletions.iter().any(|deletion| {
            let going = matches!(deletion.status, Observed::Found(s) if s.removes_the_role());
            let still_there = self.roles.values().any(|role| {
                role.found()
                    .is_some_and(|r| r.name.eq_ignore_ascii_case(&deletion.role_name))
            });
            going && still_there
        })
    }

    /// The customer managed key a Kinesis or Firehose stream is encrypted
    /// with, when the pass read one.
    pub fn stream_key(&self, arn: &str) -> Option<&str> {
        self.streams.get(arn)?.found()?.key.as_deref()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub grantee: String,
    pub operations: Vec<String>,
}

/// Whether `name` carries the SLR name prefix. IAM role names are
/// case-insensitive, so the prefix is too.
pub fn has_slr_prefix(name: &str) -> bool {
    name.get(..SLR_NAME_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(SLR_NAME_PREFIX))
}

/// The role name from a role ARN (the part after the last `/`).
pub fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// The account field of an ARN (`arn:partition:service:region:account:...`).
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The ARN of a Customer Profiles domain in the account and partition of
/// `instance_arn`.
pub fn profiles_domain_arn(instance_arn: &str, region: &str, domain: &str) -> String {
    format!(
        "arn:{}:profile:{region}:{}:domains/{domain}",
        arn_partition(instance_arn),
        arn_account(instance_arn).unwrap_or("*"),
    )
}

/// The partition a Region belongs to (`aws`, `aws-cn`, `aws-us-gov`).
pub fn region_partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The partition field of an ARN (`aws`, `aws-cn`, `aws-us-gov`).
pub fn arn_partition(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}

/// Which keys each instance depends on, as the ledger remembers them from
/// earlier passes: every reference an instance uses for a key (id, ARN or
/// alias) and the key ARN it resolved to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyIndex {
    /// A complete sweep built it: an instance missing from it uses no key.
    pub complete: bool,
    pub users: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl KeyIndex {
    /// Whether any instance is known to use a key named by any of `names`.
    pub fn used(&self, names: &[&str]) -> bool {
        self.users.values().any(|keys| {
            keys.iter()
                .any(|known| names.iter().any(|name| same_key(known, name)))
        })
    }
}

/// The keys an instance depends on, by every name the pass saw for them;
/// `None` while any of its links is unread (it could use any key).
pub fn keys_of(
    snapshot: &Snapshot,
    instance: &Instance,
) -> Option<std::collections::BTreeSet<String>> {
    let domain_read = match &instance.domain {
        Observed::Found(Some(name)) => !matches!(
            snapshot.domains.get(name),
            Some(Observed::Unverified(_)) | None
        ),
        Observed::Found(None) => true,
        _ => false,
    };
    let configs = instance.storage.found()?;
    let streams_read = configs
        .iter()
        .flat_map(|c| [&c.stream_arn, &c.firehose_arn])
        .flatten()
        .all(|arn| {
            matches!(
                snapshot.streams.get(arn),
                Some(Observed::Found(_) | Observed::Absent)
            )
        });
    if !domain_read || !streams_read {
        return None;
    }
    let mut names = std::collections::BTreeSet::new();
    for (reference, _) in key_uses(snapshot, instance) {
        names.insert(reference.to_owned());
        if let Some(Observed::Found(key)) = snapshot.keys.get(reference) {
            names.insert(key.arn.clone());
        }
    }
    Some(names)
}

/// A key id and the ARN that ends in it name the same key; so do an alias
/// name and its alias ARN.
pub fn same_key(a: &str, b: &str) -> bool {
    key_resource(a) == key_resource(b)
}

/// `key/<id>` or `alias/<name>`, whichever way the reference spells it.
fn key_resource(reference: &str) -> std::borrow::Cow<'_, str> {
    match reference.strip_prefix("arn:") {
        Some(rest) => rest.splitn(5, ':').nth(4).unwrap_or(reference).into(),
        None if reference.starts_with("alias/") => reference.into(),
        None => format!("key/{reference}").into(),
    }
}
