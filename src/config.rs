//! Typed settings, from the environment (Lambda) or flags (CLI). Invalid
//! values fail at start-up with a message naming the setting.

use crate::aws::{ConnectApi, ConnectRates};
use crate::remediation::Mode;
use crate::rules::RuleSettings;
use crate::trigger::work::is_account_id;

use std::time::Duration;

/// Amazon Connect's default quota for each API the guard calls
/// (`ListInstances`, `DescribeInstance`, `ListInstanceStorageConfigs`):
/// 2 requests per second, burst 5, per account and Region (README).
pub const DEFAULT_CONNECT_API_RPS: f64 = 2.0;
pub const DEFAULT_REMINDER_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_SETTLE_WINDOW: Duration = Duration::from_secs(5 * 60);
pub const CONNECT_API_BURST: u32 = 5;
pub const DEFAULT_REMEDIATION_MAX_ACTIONS: usize = 5;
const MAX_CONNECT_API_RPS: f64 = 1000.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ALERT_TOPIC_ARN`: where alerts go. Required by the Lambda.
    pub alert_topic_arn: Option<String>,
    /// `LEDGER_TABLE`: the alert ledger; without it every detection pages.
    pub ledger_table: Option<String>,
    /// `REMINDER_INTERVAL`: default `24h`; `off` is `None`.
    pub reminder_interval: Option<Duration>,
    /// `SETTLE_WINDOW`: default `5m`; `0s` disables. A pass triggered by a
    /// KMS change younger than this pages nothing new: it re-checks later.
    pub settle_window: Duration,
    /// `RECHECK_QUEUE_URL`: the SQS queue delayed re-checks go through.
    pub recheck_queue_url: Option<String>,
    /// `WORK_QUEUE_URL`: the SQS FIFO queue every pass runs from; a re-check
    /// that comes due joins it.
    pub work_queue_url: Option<String>,
    /// `REQUIRED_GRANT_OPERATIONS`: default `Decrypt,GenerateDataKey`.
    pub rules: RuleSettings,
    /// `CONNECT_API_RPS`: Connect calls per second this guard allows itself,
    /// per API.
    pub connect_rates: ConnectRates,
    /// `SECURITY_HUB`: `on` imports findings into Security Hub (default `off`).
    pub security_hub: bool,
    /// `CHAT_TOPIC_ARN`: where chat notifications go, besides the alerts.
    pub chat_topic_arn: Option<String>,
    /// `METRICS`: `on` writes one EMF document per pass (default `off`).
    pub metrics: bool,
    /// `REMEDIATION`: `off` (default), `dry-run` or `apply`.
    pub remediation: Mode,
    /// `REMEDIATION_MAX_ACTIONS`: fixes per pass above which the guard
    /// pages instead of acting (default 5).
    pub remediation_max_actions: usize,
    /// Central mode (`MEMBER_ROLE_NAME` and friends); `None`: one account.
    pub central: Option<Central>,
    /// `SWEEP_REGIONS`: the Regions a sweep covers; empty: the function's own.
    pub sweep_regions: Vec<String>,
}

/// Central mode: the guard checks other accounts through a role in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Central {
    /// `MEMBER_ROLE_NAME`: the role assumed in each member account.
    pub role_name: String,
    /// `MEMBER_EXTERNAL_ID`.
    pub external_id: Option<String>,
    /// `MEMBER_ACCOUNTS`.
    pub accounts: MemberAccounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAccounts {
    /// Account ids as listed.
    Listed(Vec<String>),
    /// The organisation's ACTIVE accounts (`organizations:ListAccounts`).
    Organization,
}

/// The settings as text, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawSettings {
    pub alert_topic_arn: Option<String>,
    pub ledger_table: Option<String>,
    pub reminder_interval: Option<String>,
    pub settle_window: Option<String>,
    pub recheck_queue_url: Option<String>,
    pub work_queue_url: Option<String>,
    pub required_grant_operations: Option<String>,
    pub connect_api_rps: Option<String>,
    pub security_hub: Option<String>,
    pub chat_topic_arn: Option<String>,
    pub metrics: Option<String>,
    pub remediation: Option<String>,
    pub remediation_max_actions: Option<String>,
    pub member_role_name: Option<String>,
    pub member_external_id: Option<String>,
    pub member_accounts: Option<String>,
    pub sweep_regions: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is required")]
    Missing { name: &'static str },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

impl RawSettings {
    pub fn from_env() -> Self {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        RawSettings {
            alert_topic_arn: get("ALERT_TOPIC_ARN"),
            ledger_table: get("LEDGER_TABLE"),
            reminder_interval: get("REMINDER_INTERVAL"),
            settle_window: get("SETTLE_WINDOW"),
            recheck_queue_url: get("RECHECK_QUEUE_URL"),
            work_queue_url: get("WORK_QUEUE_URL"),
            required_grant_operations: get("REQUIRED_GRANT_OPERATIONS"),
            connect_api_rps: get("CONNECT_API_RPS"),
            security_hub: get("SECURITY_HUB"),
            chat_topic_arn: get("CHAT_TOPIC_ARN"),
            metrics: get("METRICS"),
            remediation: get("REMEDIATION"),
            remediation_max_actions: get("REMEDIATION_MAX_ACTIONS"),
            member_role_name: get("MEMBER_ROLE_NAME"),
            member_external_id: get("MEMBER_EXTERNAL_ID"),
            member_accounts: get("MEMBER_ACCOUNTS"),
            sweep_regions: get("SWEEP_REGIONS"),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Settings::parse(RawSettings::from_env())
    }

    pub fn parse(raw: RawSettings) -> Result<Self, ConfigError> {
        let central = central(&raw)?;
        let sweep_regions = match raw.sweep_regions.as_deref() {
            None => Vec::new(),
            Some(text) => regions(text)?,
        };
        Ok(Settings {
            central,
            sweep_regions,
            alert_topic_arn: raw
                .alert_topic_arn
                .map(|arn| topic_arn("ALERT_TOPIC_ARN", arn))
                .transpose()?,
            ledger_table: raw.ledger_table,
            reminder_interval: match raw.reminder_interval.as_deref().map(str::trim) {
                None => Some(DEFAULT_REMINDER_INTERVAL),
                Some("off") => None,
                Some(text) => Some(duration("REMINDER_INTERVAL", text)?),
            },
            settle_window: match raw.settle_window.as_deref() {
                None => DEFAULT_SETTLE_WINDOW,
                Some(text) => duration("SETTLE_WINDOW", text.trim())?,
            },
            recheck_queue_url: raw.recheck_queue_url,
            work_queue_url: raw.work_queue_url.map(work_queue_url).transpose()?,
            rules: RuleSettings {
                required_grant_operations: match raw.required_grant_operations {
                    Some(ops) => grant_operations(&ops)?,
                    None => RuleSettings::default().required_grant_operations,
                },
            },
            connect_rates: match raw.connect_api_rps {
                Some(rps) => connect_rates(&rps)?,
                None => ConnectRates::all(DEFAULT_CONNECT_API_RPS),
            },
            security_hub: switch("SECURITY_HUB", raw.security_hub.as_deref())?,
            metrics: switch("METRICS", raw.metrics.as_deref())?,
            remediation: remediation_mode(raw.remediation.as_deref())?,
            remediation_max_actions: match raw.remediation_max_actions.as_deref().map(str::trim) {
                None => DEFAULT_REMEDIATION_MAX_ACTIONS,
                Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
                    name: "REMEDIATION_MAX_ACTIONS",
                    value: text.to_owned(),
                    reason: "expected a whole number (0 never acts)".to_owned(),
                })?,
            },
            chat_topic_arn: raw
                .chat_topic_arn
                .map(|arn| topic_arn("CHAT_TOPIC_ARN", arn))
                .transpose()?,
        })
    }

    /// The topic, for callers that cannot run without one.
    pub fn require_topic(&self) -> Result<&str, ConfigError> {
        self.alert_topic_arn.as_deref().ok_or(ConfigError::Missing {
            name: "ALERT_TOPIC_ARN",
        })
    }
}

/// Central mode's settings: all or nothing, each checked.
fn central(raw: &RawSettings) -> Result<Option<Central>, ConfigError> {
    let Some(role_name) = raw.member_role_name.as_deref().map(str::trim) else {
        if raw.member_accounts.is_some() || raw.member_external_id.is_some() {
            return Err(ConfigError::Missing {
                name: "MEMBER_ROLE_NAME",
            });
        }
        return Ok(None);
    };
    let valid_name = !role_name.is_empty()
        && role_name.len() <= 64
        && role_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if !valid_name {
        return Err(ConfigError::Invalid {
            name: "MEMBER_ROLE_NAME",
            value: role_name.to_owned(),
            reason: "expected an IAM role name (letters, digits and +=,.@_-, at most 64)"
                .to_owned(),
        });
    }
    let accounts = match raw.member_accounts.as_deref().map(str::trim) {
        None => {
            return Err(ConfigError::Missing {
                name: "MEMBER_ACCOUNTS",
            });
        }
        Some("organization") => MemberAccounts::Organization,
        Some(list) => {
            let ids: Vec<String> = list.split(',').map(|a| a.trim().to_owned()).collect();
            if !ids.iter().all(|a| is_account_id(a)) {
                return Err(ConfigError::Invalid {
                    name: "MEMBER_ACCOUNTS",
                    value: list.to_owned(),
                    reason: "expected 12-digit account ids separated by commas, or organization"
                        .to_owned(),
                });
            }
            MemberAccounts::Listed(ids)
        }
    };
    Ok(Some(Central {
        role_name: role_name.to_owned(),
        external_id: raw.member_external_id.clone(),
        accounts,
    }))
}

/// `eu-west-2,us-east-1`: Region names, each checked for shape.
fn regions(text: &str) -> Result<Vec<String>, ConfigError> {
    let regions: Vec<String> = text.split(',').map(|r| r.trim().to_owned()).collect();
    let shaped = |r: &str| {
        let parts: Vec<&str> = r.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    };
    match regions.iter().find(|r| !shaped(r)) {
        Some(bad) => Err(ConfigError::Invalid {
            name: "SWEEP_REGIONS",
            value: text.to_owned(),
            reason: format!("{bad:?} is not a Region name (e.g. eu-west-2)"),
        }),
        None => Ok(regions),
    }
}

fn remediation_mode(value: Option<&str>) -> Result<Mode, ConfigError> {
    match value.map(str::trim) {
        None | Some("off") => Ok(Mode::Off),
        Some("dry-run") => Ok(Mode::DryRun),
        Some("apply") => Ok(Mode::Apply),
        Some(other) => Err(ConfigError::Invalid {
            name: "REMEDIATION",
            value: other.to_owned(),
            reason: "expected off, dry-run or apply".to_owned(),
        }),
    }
}

/// An output that is `off` unless set `on`.
fn switch(name: &'static str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::trim) {
        None | Some("off") => Ok(false),
        Some("on") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name,
            value: other.to_owned(),
            reason: "expected on or off".to_owned(),
        }),
    }
}

fn topic_arn(name: &'static str, value: String) -> Result<String, ConfigError> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[5].is_empty() {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            value,
            reason: "expected arn:<partition>:sns:<region>:<account>:<topic>".to_owned(),
        })
    }
}

/// A FIFO queue's name ends in `.fifo`; a standard queue here would lose
/// the one-pass-per-account ordering silently.
fn work_queue_url(value: String) -> Result<String, ConfigError> {
    let is_url = value.starts_with("https://") || value.starts_with("http://");
    if is_url && value.trim_end_matches('/').ends_with(".fifo") {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name: "WORK_QUEUE_URL",
            value,
            reason: "expected the URL of an SQS FIFO queue (a name ending in .fifo)".to_owned(),
        })
    }
}

fn grant_operations(value: &str) -> Result<Vec<String>, ConfigError> {
    let known = aws_sdk_kms::types::GrantOperation::values();
    let ops: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|op| !op.is_empty())
        .map(str::to_owned)
        .collect();
    let invalid = |reason: String| ConfigError::Invalid {
        name: "REQUIRED_GRANT_OPERATIONS",
        value: value.to_owned(),
        reason,
    };
    if ops.is_empty() {
        return Err(invalid("name at least one KMS grant operation".to_owned()));
    }
    match ops.iter().find(|op| !known.contains(&op.as_str())) {
        Some(unknown) => Err(invalid(format!("{unknown} is not a KMS grant operation"))),
        None => Ok(ops),
    }
}

/// A duration as every setting spells it: an integer and `s`, `m`, `h` or
/// `d` (`90s`, `5m`, `24h`, `7d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let count: u64 = text[..text.len() - 1].parse().ok()?;
    count.checked_mul(seconds).map(Duration::from_secs)
}

fn duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).ok_or_else(|| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: "expected an integer followed by s, m, h or d (90s, 5m, 24h, 7d)".to_owned(),
    })
}

/// `2` (every API), `ListInstanceStorageConfigs=5` (one API; the others
/// keep their default), or both: `1,DescribeInstance=2`.
fn connect_rates(value: &str) -> Result<ConnectRates, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "CONNECT_API_RPS",
        value: value.to_owned(),
        reason,
    };
    let mut rates = ConnectRates::all(DEFAULT_CONNECT_API_RPS);
    let mut named: Vec<(ConnectApi, f64)> = Vec::new();
    let mut bare = false;
    for part in value.split(',').map(str::trim) {
        match part.split_once('=') {
            None if bare => {
                return Err(invalid("give one number for every API, not two".to_owned()));
            }
            None => {
                bare = true;
                rates = ConnectRates::all(rate(part).map_err(invalid)?);
            }
            Some((name, rps)) => {
                let name = name.trim();
                let api = ConnectApi::named(name).ok_or_else(|| {
                    let known = ConnectApi::ALL.map(ConnectApi::name).join(", ");
                    invalid(format!(
                        "{name} is not a Connect API the guard calls ({known})"
                    ))
                })?;
                if named.iter().any(|(given, _)| *given == api) {
                    return Err(invalid(format!("{name} is given twice")));
                }
                named.push((api, rate(rps.trim()).map_err(invalid)?));
            }
        }
    }
    for (api, rps) in named {
        rates.set(api, rps);
    }
    Ok(rates)
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rps) if rps > 0.0 && rps <= MAX_CONNECT_API_RPS => Ok(rps),
        _ => Err(format!(
            "expected a number above 0 and at most {MAX_CONNECT_API_RPS}, or API=number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawSettings {
        RawSettings::default()
    }

    #[test]
    fn central_mode_needs_a_role_and_accounts_and_checks_each() {
        assert_eq!(Settings::parse(raw()).unwrap().central, None);
        let central = |role: Option<&str>, accounts: Option<&str>| {
            Settings::parse(RawSettings {
                member_role_name: role.map(str::to_owned),
                member_accounts: accounts.map(str::to_owned),
                member_external_id: Some("ext-1".to_owned()),
                sweep_regions: Some("eu-west-2, us-east-1".to_owned()),
                ..raw()
            })
        };
        let settings = central(
            Some("connect-slr-guard-audit"),
            Some("111122223333,444455556666"),
        )
        .unwrap();
        assert_eq!(
            settings.central,
            Some(Central {
                role_name: "connect-slr-guard-audit".to_owned(),
                external_id: Some("ext-1".to_owned()),
                accounts: MemberAccounts::Listed(vec![
                    "111122223333".to_owned(),
                    "444455556666".to_owned()
                ]),
            })
        );
        assert_eq!(settings.sweep_regions, ["eu-west-2", "us-east-1"]);
        assert_eq!(
            central(Some("audit"), Some("organization"))
                .unwrap()
                .central
                .unwrap()
                .accounts,
            MemberAccounts::Organization
        );
        let named = |result: Result<Settings, ConfigError>| match result.unwrap_err() {
            ConfigError::Missing { name } | ConfigError::Invalid { name, .. } => name,
        };
        assert_eq!(
            named(central(None, Some("111122223333"))),
            "MEMBER_ROLE_NAME"
        );
        assert_eq!(named(central(Some("audit"), None)), "MEMBER_ACCOUNTS");
        assert_eq!(
            named(central(Some("audit"), Some("1111"))),
            "MEMBER_ACCOUNTS"
        );
        assert_eq!(
            named(central(Some("no spaces"), Some("organization"))),
            "MEMBER_ROLE_NAME"
        );
        let regions = Settings::parse(RawSettings {
            sweep_regions: Some("eu-west-2,Mars".to_owned()),
            ..raw()
        });
        assert_eq!(named(regions), "SWEEP_REGIONS");
    }

    #[test]
    fn outputs_are_off_by_default_and_named_when_wrong() {
        let settings = Settings::parse(raw()).unwrap();
        assert!(!settings.security_hub);
        assert!(!settings.metrics);
        assert_eq!(settings.remediation, Mode::Off);
        assert_eq!(settings.remediation_max_actions, 5);
        assert_eq!(settings.chat_topic_arn, None);
        let on = Settings::parse(RawSettings {
            security_hub: Some("on".to_owned()),
            chat_topic_arn: Some("arn:aws:sns:eu-west-2:123456789012:chat".to_owned()),
            ..raw()
        })
        .unwrap();
        assert!(on.security_hub);
        assert!(on.chat_topic_arn.is_some());
        let err = Settings::parse(RawSettings {
            security_hub: Some("yes".to_owned()),
            ..raw()
        })
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "SECURITY_HUB",
                ..
            }
        ));
        let err = Settings::parse(RawSettings {
            chat_topic_arn: Some("slack".to_owned()),
            ..raw()
        })
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "CHAT_TOPIC_ARN",
                ..
            }
        ));
    }

    #[test]
    fn defaults_match_the_design() {
        let settings = Settings::parse(raw()).unwrap();
        assert_eq!(settings.connect_rates, ConnectRates::all(2.0));
        assert_eq!(
            settings.rules.required_grant_operations,
            vec!["Decrypt", "GenerateDataKey"]
        );
        assert_eq!(
            settings.require_topic(),
            Err(ConfigError::Missing {
                name: "ALERT_TOPIC_ARN"
            })
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_setting() {
        let cases = [
            RawSettings {
                alert_topic_arn: Some("my-topic".into()),
                ..raw()
            },
            RawSettings {
                required_grant_operations: Some("Decrypt,Frobnicate".into()),
                ..raw()
            },
            RawSettings {
                required_grant_operations: Some(" , ".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("0".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("fast".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("NaN".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("DeleteInstance=2".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("ListInstances=0".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("2,".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("1,3".into()),
                ..raw()
            },
            RawSettings {
                connect_api_rps: Some("DescribeInstance=1,describeinstance=3".into()),
                ..raw()
            },
            RawSettings {
                work_queue_url: Some(
                    "https://sqs.eu-west-2.amazonaws.com/111122223333/work".into(),
                ),
                ..raw()
            },
        ];
        for case in cases {
            let err = Settings::parse(case.clone()).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { .. }),
                "{case:?} gave {err}"
            );
        }
    }

    #[test]
    fn durations_take_one_syntax_everywhere() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "5",
            "m",
            "5 m",
            "-5m",
            "1.5h",
            "5w",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        let settings = Settings::parse(raw()).unwrap();
        assert_eq!(settings.reminder_interval, Some(DEFAULT_REMINDER_INTERVAL));
        let off = Settings::parse(RawSettings {
            reminder_interval: Some("off".into()),
            ..raw()
        })
        .unwrap();
        assert_eq!(off.reminder_interval, None);
        let bad = Settings::parse(RawSettings {
            reminder_interval: Some("daily".into()),
            ..raw()
        });
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                name: "REMINDER_INTERVAL",
                ..
            })
        ));
    }

    #[test]
    fn accepts_custom_values() {
        let settings = Settings::parse(RawSettings {
            alert_topic_arn: Some("arn:aws:sns:eu-west-2:111122223333:alerts".into()),
            required_grant_operations: Some("Decrypt, GenerateDataKey ,DescribeKey".into()),
            connect_api_rps: Some("20".into()),
            ..raw()
        })
        .unwrap();
        assert_eq!(
            settings.require_topic().unwrap(),
            "arn:aws:sns:eu-west-2:111122223333:alerts"
        );
        assert_eq!(settings.rules.required_grant_operations.len(), 3);
        assert_eq!(settings.connect_rates, ConnectRates::all(20.0));
    }

    #[test]
    fn connect_rates_take_one_number_or_one_per_api() {
        let rates = |text: &str| {
            Settings::parse(RawSettings {
                connect_api_rps: Some(text.into()),
                ..raw()
            })
            .unwrap()
            .connect_rates
        };
        let mut expected = ConnectRates::all(2.0);
        expected.set(ConnectApi::ListInstanceStorageConfigs, 5.0);
        assert_eq!(rates("ListInstanceStorageConfigs=5"), expected);
        assert_eq!(rates(" listinstancestorageconfigs = 5 "), expected);
        let mut mixed = ConnectRates::all(1.0);
        mixed.set(ConnectApi::DescribeInstance, 3.0);
        // A bare number sets every API, whatever its place; names override it.
        assert_eq!(rates("DescribeInstance=3,1"), mixed);
        assert_eq!(rates("1, DescribeInstance=3"), mixed);
    }
}
