//! Step 1 of a pass: an untrusted EventBridge event -> what to re-verify.
//!
//! Pure. Identifiers taken from the event are only hints of where to look:
//! they are validated here and the truth is re-read from the AWS APIs.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{SLR_NAME_PREFIX, has_slr_prefix};

pub mod work;

/// EventBridge refuses events over 256 KiB; anything bigger is not one.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Longest event-supplied text carried into alerts and logs.
pub const MAX_TEXT_CHARS: usize = 256;

/// What one pass re-verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "target", rename_all = "snake_case")]
pub enum Scope {
    /// Every instance in the account and Region.
    Everything,
    /// One instance, by id.
    Instance(String),
    /// The instances whose service role has this name.
    Role(RoleRef),
    /// The instances linked to this Customer Profiles domain.
    Domain(String),
    /// The instances that depend on this KMS key (id, ARN or alias).
    Key(String),
}

/// A role an IAM event names, and the deletion task when the event started
/// one (`DeleteServiceLinkedRole` deletes asynchronously, so the role can
/// still be read right after the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub name: String,
    pub deletion_task: Option<String>,
}

impl From<&str> for RoleRef {
    fn from(name: &str) -> Self {
        RoleRef {
            name: name.to_owned(),
            deletion_task: None,
        }
    }
}

/// A role scope is shown by its name alone.
impl Serialize for RoleRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for RoleRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| RoleRef::from(name.as_str()))
    }
}

/// Who or what started the pass, as carried into alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub event_name: Option<String>,
    pub actor: Option<String>,
    pub event_time: Option<String>,
    pub event_id: Option<String>,
    /// A KMS grant or key change: AWS says such a change can take about
    /// five minutes to take effect, so the pass may hold what it finds.
    #[serde(skip)]
    pub settles: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// An EventBridge event about a change.
    Event,
    /// The scheduled sweep.
    Schedule,
    /// A sweep from the CLI.
    Audit,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Event => "event",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Audit => "audit",
        }
    }
}

impl Trigger {
    pub fn audit() -> Self {
        Trigger::of(TriggerKind::Audit)
    }

    /// A part of the scheduled sweep.
    pub fn schedule() -> Self {
        Trigger::of(TriggerKind::Schedule)
    }

    fn of(kind: TriggerKind) -> Self {
        Trigger {
            kind,
            event_name: None,
            actor: None,
            event_time: None,
            event_id: None,
            settles: false,
        }
    }

    /// Seconds since the event happened, when its time is known.
    pub fn age_secs(&self, now_epoch: i64) -> Option<i64> {
        let time = self.event_time.as_deref()?;
        let then = aws_smithy_types::DateTime::from_str(
            time,
            aws_smithy_types::date_time::Format::DateTime,
        )
        .ok()?;
        Some(now_epoch - then.secs())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Check { scope: Scope, trigger: Trigger },
    Ignore { reason: String, trigger: Trigger },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("event is {0} bytes; EventBridge events are at most {MAX_EVENT_BYTES}")]
    TooLarge(usize),
    #[error("event is not an EventBridge event: {0}")]
    NotAnEvent(String),
    #[error("{event}: no {field} in the event")]
    MissingField { event: String, field: &'static str },
    #[error("{event}: {field} is not a valid identifier")]
    InvalidIdentifier { event: String, field: &'static str },
}

/// Parses raw bytes, refusing oversized input before touching it.
pub fn parse_bytes(bytes: &[u8]) -> Result<Parsed, TriggerError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(TriggerError::TooLarge(bytes.len()));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| TriggerError::NotAnEvent(e.to_string()))?;
    parse(value)
}

/// Parses an event that is already JSON (as the Lambda runtime hands it over).
pub fn parse(value: Value) -> Result<Parsed, TriggerError> {
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(value).map_err(|e| TriggerError::NotAnEvent(e.to_string()))?;
    let trigger = trigger_of(&event);
    match (event.source.as_str(), event.detail_type.as_str()) {
        ("aws.events", SCHEDULE_DETAIL_TYPE) => Ok(check(Scope::Everything, trigger)),
        (source, CLOUDTRAIL_DETAIL_TYPE) => cloudtrail(source, &event.detail, trigger),
        ("aws.kms", detail_type) if KMS_NATIVE_DETAIL_TYPES.contains(&detail_type) => {
            native_kms(&event, trigger)
        }
        (source, detail_type) => Ok(ignore(
            format!("not a trigger: {} from {}", cap(detail_type), cap(source)),
            trigger,
        )),
    }
}

fn check(scope: Scope, trigger: Trigger) -> Parsed {
    Parsed::Check { scope, trigger }
}

fn ignore(reason: String, trigger: Trigger) -> Parsed {
    Parsed::Ignore { reason, trigger }
}

fn trigger_of(event: &EventBridgeEvent<Value>) -> Trigger {
    let detail = &event.detail;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(cap);
    let kind = match event.detail_type.as_str() {
        SCHEDULE_DETAIL_TYPE => TriggerKind::Schedule,
        _ => TriggerKind::Event,
    };
    Trigger {
        kind,
        event_name: text(detail.get("eventName")).or_else(|| Some(cap(&event.detail_type))),
        actor: text(detail.pointer("/userIdentity/arn"))
            .or_else(|| text(detail.pointer("/userIdentity/invokedBy")))
            .or_else(|| text(detail.get("sourceIPAddress"))),
        event_time: text(detail.get("eventTime")).or_else(|| {
            event
                .time
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }),
        event_id: text(detail.get("eventID")).or_else(|| event.id.as_deref().map(cap)),
        settles: false,
    }
}

fn cloudtrail(source: &str, detail: &Value, mut trigger: Trigger) -> Result<Parsed, TriggerError> {
    let event_name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or_else(|| TriggerError::MissingField {
            event: "CloudTrail event".to_owned(),
            field: "detail.eventName",
        })?;
    let call = Call {
        name: cap(event_name),
        detail,
    };
    if let Some(code) = detail.get("errorCode").and_then(Value::as_str) {
        return Ok(ignore(
            format!("{} failed ({}): nothing changed", call.name, cap(code)),
            trigger,
        ));
    }
    let Some(service) = Service::ALL
        .into_iter()
        .find(|s| s.source() == source && s.event_names().contains(&event_name))
    else {
        return Ok(ignore(
            format!("not a trigger: {} from {}", call.name, cap(source)),
            trigger,
        ));
    };
    let scope = match service {
        Service::Iam => match connect_role(&call)? {
            Some(name) => Scope::Role(RoleRef {
                name,
                deletion_task: deletion_task(&call)?,
            }),
            None => {
                return Ok(ignore(
                    format!("{}: not an Amazon Connect service-linked role", call.name),
                    trigger,
                ));
            }
        },
        Service::Connect => call.instance_id().map(Scope::Instance)?,
        Service::Profiles => call
            .identifier("DomainName", &["/requestParameters"], is_domain_name)
            .map(Scope::Domain)?,
        Service::Kms => {
            trigger.settles = true;
            call.key()?.map(Scope::Key).unwrap_or(Scope::Everything)
        }
    };
    Ok(check(scope, trigger))
}

const SCHEDULE_DETAIL_TYPE: &str = "Scheduled Event";
const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
const KMS_NATIVE_DETAIL_TYPES: &[&str] =
    &["KMS CMK Deletion", "KMS Imported Key Material Expiration"];

/// The services whose CloudTrail calls trigger a pass: the one table of
/// event names (the template's EventBridge patterns are tested against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Iam,
    Connect,
    Profiles,
    Kms,
}

impl Service {
    const ALL: [Service; 4] = [
        Service::Iam,
        Service::Connect,
        Service::Profiles,
        Service::Kms,
    ];

    fn source(self) -> &'static str {
        match self {
            Service::Iam => "aws.iam",
            Service::Connect => "aws.connect",
            Service::Profiles => "aws.profile",
            Service::Kms => "aws.kms",
        }
    }

    /// What the scope of a pass names for this service's calls.
    fn scope_kind(self) -> &'static str {
        match self {
            Service::Iam => "role",
            Service::Connect => "instance",
            Service::Profiles => "domain",
            Service::Kms => "key",
        }
    }

    fn event_names(self) -> &'static [&'static str] {
        match self {
            Service::Iam => &[
                "DeleteServiceLinkedRole",
                "DeleteRole",
                "CreateServiceLinkedRole",
                "PutRolePolicy",
                "DeleteRolePolicy",
                "AttachRolePolicy",
                "DetachRolePolicy",
                "UpdateAssumeRolePolicy",
            ],
            Service::Connect => &[
                "CreateInstance",
                "DeleteInstance",
                "UpdateInstanceAttribute",
                "AssociateInstanceStorageConfig",
                "UpdateInstanceStorageConfig",
                "DisassociateInstanceStorageConfig",
            ],
            Service::Profiles => &[
                "CreateDomain",
                "UpdateDomain",
                "DeleteDomain",
                "PutIntegration",
                "DeleteIntegration",
            ],
            Service::Kms => &[
                "CreateGrant",
                "RevokeGrant",
                "RetireGrant",
                "DisableKey",
                "EnableKey",
                "ScheduleKeyDeletion",
                "CancelKeyDeletion",
                "PutKeyPolicy",
                // Key states PendingImport and Unavailable, and keys named
                // by alias; a custom key store names no key: a sweep.
                "DeleteImportedKeyMaterial",
                "DisconnectCustomKeyStore",
                "ConnectCustomKeyStore",
                "UpdateAlias",
                "DeleteAlias",
            ],
        }
    }
}

/// One kind of event that triggers a pass, as `connect-slr-guard triggers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerSpec {
    pub source: &'static str,
    pub detail_type: &'static str,
    /// The CloudTrail `eventName`; `None` for other detail types.
    pub event_name: Option<&'static str>,
    /// What the pass re-verifies: `everything`, `instance`, `role`, `domain` or `key`.
    pub scope: &'static str,
}

/// Every event the parser turns into a pass.
pub fn catalogue() -> Vec<TriggerSpec> {
    let schedule = TriggerSpec {
        source: "aws.events",
        detail_type: SCHEDULE_DETAIL_TYPE,
        event_name: None,
        scope: "everything",
    };
    let cloudtrail = Service::ALL.into_iter().flat_map(|service| {
        service.event_names().iter().map(move |name| TriggerSpec {
            source: service.source(),
            detail_type: CLOUDTRAIL_DETAIL_TYPE,
            event_name: Some(name),
            scope: service.scope_kind(),
        })
    });
    let native = KMS_NATIVE_DETAIL_TYPES
        .iter()
        .map(|detail_type| TriggerSpec {
            source: "aws.kms",
            detail_type,
            event_name: None,
            scope: "key",
        });
    std::iter::once(schedule)
        .chain(cloudtrail)
        .chain(native)
        .collect()
}

/// The Connect service-linked role an IAM call is about; `None` when it is
/// about any other role or service.
fn connect_role(call: &Call) -> Result<Option<String>, TriggerError> {
    let role = if call.name == "CreateServiceLinkedRole" {
        if let Some(name) = call.find("roleName", &["/responseElements/role"]) {
            validated(call, "responseElements.role.roleName", name, is_role_name)?
        } else {
            // A failed or unrecorded response still names the service.
            let service = call.find("awsServiceName", &["/requestParameters"]);
            if service.is_none_or(|s| !s.eq_ignore_ascii_case("connect.amazonaws.com")) {
                return Ok(None);
            }
            let suffix = call
                .find("customSuffix", &["/requestParameters"])
                .unwrap_or("");
            let name = format!("{SLR_NAME_PREFIX}_{suffix}");
            validated(call, "requestParameters.customSuffix", &name, is_role_name)?
        }
    } else {
        call.identifier("roleName", &["/requestParameters"], is_role_name)?
    };
    Ok(Some(role).filter(|name| has_slr_prefix(name)))
}

/// The deletion task a `DeleteServiceLinkedRole` started, if recorded.
fn deletion_task(call: &Call) -> Result<Option<String>, TriggerError> {
    if call.name != "DeleteServiceLinkedRole" {
        return Ok(None);
    }
    call.find("deletionTaskId", &["/responseElements"])
        .map(|task| {
            validated(
                call,
                "responseElements.deletionTaskId",
                task,
                is_deletion_task,
            )
        })
        .transpose()
}

fn native_kms(event: &EventBridgeEvent<Value>, trigger: Trigger) -> Result<Parsed, TriggerError> {
    let from_detail = event.detail.get("key-id").and_then(Value::as_str);
    let from_resources = event
        .resources
        .as_ref()
        .and_then(|r| r.iter().find(|arn| arn.contains(":key/")))
        .map(String::as_str);
    let key = from_detail
        .or(from_resources)
        .ok_or_else(|| TriggerError::MissingField {
            event: cap(&event.detail_type),
            field: "detail.key-id",
        })?;
    if !is_key_reference(key) {
        return Err(TriggerError::InvalidIdentifier {
            event: cap(&event.detail_type),
            field: "detail.key-id",
        });
    }
    Ok(check(Scope::Key(key.to_owned()), trigger))
}

/// One CloudTrail record, with lookups that do not trust field casing.
struct Call<'a> {
    name: String,
    detail: &'a Value,
}

impl Call<'_> {
    /// The first string field named `field` (any casing) under one of `paths`.
    fn find(&self, field: &str, paths: &[&str]) -> Option<&str> {
        paths.iter().find_map(|path| {
            self.detail
                .pointer(path)?
                .as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(field))?
                .1
                .as_str()
        })
    }

    fn identifier(
        &self,
        field: &'static str,
        paths: &[&str],
        valid: fn(&str) -> bool,
    ) -> Result<String, TriggerError> {
        let value = self
            .find(field, paths)
            .ok_or_else(|| TriggerError::MissingField {
                event: self.name.clone(),
                field,
            })?;
        validated(self, field, value, valid)
    }

    fn instance_id(&self) -> Result<String, TriggerError> {
        let paths: &[&str] = if self.name == "CreateInstance" {
            &["/responseElements", "/requestParameters"]
        } else {
            &["/requestParameters"]
        };
        let raw = self
            .find("InstanceId", paths)
            .or_else(|| self.find("Id", paths))
            .or_else(|| self.find("Arn", paths))
            .ok_or_else(|| TriggerError::MissingField {
                event: self.name.clone(),
                field: "InstanceId",
            })?;
        // The console records the instance ARN URL-encoded; the CLI, a bare id.
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let id = decoded
            .rsplit_once(":instance/")
            .map_or(&*decoded, |(_, id)| id);
        validated(self, "InstanceId", id, is_instance_id)
    }

    /// The key a KMS call names, if it names one. A call that names none
    /// (RetireGrant by grant token) is `None`; a malformed one is an error.
    fn key(&self) -> Result<Option<String>, TriggerError> {
        // An alias event is about the alias: the instances that name it.
        let named = self
            .find("keyId", &["/requestParameters"])
            .or_else(|| self.find("aliasName", &["/requestParameters"]));
        let listed = self
            .detail
            .get("resources")
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .filter_map(|r| r.get("ARN").and_then(Value::as_str))
                    .find(|arn| arn.contains(":key/"))
            });
        named
            .or(listed)
            .map(|key| validated(self, "keyId", key, is_key_reference))
            .transpose()
    }
}

fn validated(
    call: &Call,
    field: &'static str,
    value: &str,
    valid: fn(&str) -> bool,
) -> Result<String, TriggerError> {
    if valid(value) {
        Ok(value.to_owned())
    } else {
        Err(TriggerError::InvalidIdentifier {
            event: call.name.clone(),
            field,
        })
    }
}

fn charset_ok(value: &str, max: usize, extra: &str) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// IAM role names: `[\w+=,.@-]{1,64}`.
pub fn is_role_name(value: &str) -> bool {
    charset_ok(value, 64, "_+=,.@-")
}

/// `task/aws-service-role/<service>/<role>/<uuid>`, at most 1000 characters.
pub fn is_deletion_task(value: &str) -> bool {
    value.starts_with("task/") && charset_ok(value, 1000, "/_+=,.@-")
}

/// Connect instance ids are UUIDs; allow any short id of that alphabet.
pub fn is_instance_id(value: &str) -> bool {
    charset_ok(value, 100, "-")
}

/// Customer Profiles domain names: `^[a-zA-Z0-9_-]+$`, at most 64.
pub fn is_domain_name(value: &str) -> bool {
    charset_ok(value, 64, "_-")
}

/// Key id, key ARN, alias name or alias ARN.
pub fn is_key_reference(value: &str) -> bool {
    charset_ok(value, 2048, ":/_-.")
}

/// Caps event-supplied text for alerts and logs, on a character boundary.
pub fn cap(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
