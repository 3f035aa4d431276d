//! The CLI: the same pass the Lambda runs, from a laptop or a CI job.
//! Exit status: 0 no findings, 1 findings, 2 could not run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format as DateTimeFormat;
use clap::{Args, Parser, Subcommand};
use connect_slr_guard::alert::deliver::rfc3339;
use connect_slr_guard::alert::ledger::Ledger;
use connect_slr_guard::alert::mute::{Mute, new_id};
use connect_slr_guard::aws::Source;
use connect_slr_guard::config::{RawSettings, Settings, parse_duration};
use connect_slr_guard::finding::RuleId;
use connect_slr_guard::guard::{Delivery, Guard, epoch_now};
use connect_slr_guard::inventory::{Options, Progress};
use connect_slr_guard::remediation::{Filter, Mode};
use connect_slr_guard::report::{Format, MuteView, OpenFinding, PassReport, SavedPass, listing};
use connect_slr_guard::trigger::work::WorkItem;
use connect_slr_guard::trigger::{self, Parsed, Scope, Trigger};

#[derive(Parser)]
#[command(
    name = "connect-slr-guard",
    version,
    about = "Re-verifies Amazon Connect service-linked roles and their KMS grants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// AWS Region (default: the SDK's, e.g. AWS_REGION).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Named profile from the AWS config files.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also publish one SNS alert per finding.
    #[arg(long, global = true)]
    publish: bool,
    /// SNS topic for --publish.
    #[arg(long, global = true, env = "ALERT_TOPIC_ARN")]
    alert_topic_arn: Option<String>,
    /// KMS operations a Customer Profiles grant must allow the SLR.
    #[arg(
        long,
        global = true,
        env = "REQUIRED_GRANT_OPERATIONS",
        value_name = "OPS"
    )]
    required_grant_operations: Option<String>,
    /// DynamoDB table of the alert ledger: with --publish, page each drift
    /// once, remind, and send RESOLVED (the Lambda's LEDGER_TABLE).
    #[arg(long, global = true, env = "LEDGER_TABLE", value_name = "TABLE")]
    ledger_table: Option<String>,
    /// How often a drift still open is paged again (`24h`; `off`).
    #[arg(
        long,
        global = true,
        env = "REMINDER_INTERVAL",
        value_name = "DURATION"
    )]
    reminder_interval: Option<String>,
    /// Amazon Connect calls per second the audit allows itself, per API:
    /// `2` for each, or `ListInstanceStorageConfigs=5` for one (default: the
    /// documented quota, 2).
    #[arg(long, global = true, env = "CONNECT_API_RPS", value_name = "RPS")]
    connect_api_rps: Option<String>,
    /// `on`: with --publish, also import the findings into Security Hub
    /// (the account's default product).
    #[arg(long, global = true, env = "SECURITY_HUB", value_name = "on|off")]
    security_hub: Option<String>,
    /// With --publish, also send each alert to this SNS topic as an Amazon Q
    /// Developer in chat applications custom notification.
    #[arg(long, global = true, env = "CHAT_TOPIC_ARN", value_name = "ARN")]
    chat_topic_arn: Option<String>,
    /// At most this many fixes per pass (`remediate`); above it, none.
    #[arg(long, global = true, env = "REMEDIATION_MAX_ACTIONS", value_name = "N")]
    max_actions: Option<String>,
    /// More log detail on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Sweep every instance in the account and Region.
    Audit {
        /// Also write what the sweep read to FILE (plain data, no
        /// credentials), for `evaluate`.
        #[arg(long, value_name = "FILE")]
        save_snapshot: Option<PathBuf>,
    },
    /// Re-run the rules on a snapshot `audit --save-snapshot` wrote, offline
    /// (no AWS call), as of when it was read.
    Evaluate {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Run one saved EventBridge event through the pass the Lambda runs.
    CheckEvent {
        /// The event JSON file.
        file: PathBuf,
    },
    /// The rule catalogue: id, severity, the resource each rule names, the drift.
    Rules,
    /// The events that trigger a pass, and what each re-verifies.
    Triggers,
    /// Stop paging a drift for a while (needs the ledger); prints the mute's id.
    Mute(MuteArgs),
    /// List the mutes (needs the ledger).
    Mutes,
    /// Remove a mute by id (needs the ledger).
    Unmute {
        /// The id `mute` printed.
        id: String,
    },
    /// List what the ledger holds open (needs the ledger).
    Findings,
    /// Sweep, then plan the fixes the guard may make (a dry run); with
    /// --apply, make them and re-verify. Exit 0 when nothing is left to fix,
    /// 1 when findings remain, 2 when it could not run or a fix failed.
    Remediate {
        /// Make the fixes (KMS grants for the Connect SLR); default: print the plan.
        #[arg(long)]
        apply: bool,
        /// Only findings of this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only this instance (its ARN); the sweep reads only it.
        #[arg(long, value_name = "ARN")]
        instance: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("connect-slr-guard: {message}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "warn,connect_slr_guard={level}"
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let settings = Settings::parse(RawSettings {
        alert_topic_arn: cli.alert_topic_arn,
        ledger_table: cli.ledger_table,
        reminder_interval: cli.reminder_interval,
        // The CLI pages at once: holding needs the Lambda's re-check queue.
        settle_window: None,
        recheck_queue_url: None,
        work_queue_url: None,
        required_grant_operations: cli.required_grant_operations,
        connect_api_rps: cli.connect_api_rps,
        security_hub: cli.security_hub,
        chat_topic_arn: cli.chat_topic_arn,
        // EMF belongs in a Lambda's log stream; the CLI's stdout is the report.
        metrics: None,
        // The CLI remediates only when asked: `remediate`.
        remediation: None,
        remediation_max_actions: cli.max_actions,
        // One account and Region: the profile's and --region's.
        member_role_name: None,
        member_external_id: None,
        member_accounts: None,
        sweep_regions: None,
    })
    .map_err(|e| e.to_string())?;
    let source = Source {
        region: cli.region,
        profile: cli.profile,
    };
    let format = cli.format;
    let pass_format = matches!(
        cli.command,
        Command::Audit { .. } | Command::CheckEvent { .. } | Command::Evaluate { .. }
    );
    if matches!(cli.command, Command::Remediate { .. })
        && !matches!(format, Format::Table | Format::Json)
    {
        return Err("remediate prints a table or --format json".to_owned());
    }
    if !pass_format && matches!(format, Format::Asff | Format::Chat | Format::Sarif) {
        return Err("--format asff, chat and sarif show a pass: use them with audit, check-event or evaluate".to_owned());
    }
    let mut save_to = None;
    let (scope, trigger, account) = match cli.command {
        Command::Mute(target) => return mute(&ledger_guard(settings, source).await?, target).await,
        Command::Mutes => return list_mutes(&ledger_guard(settings, source).await?, format).await,
        Command::Unmute { id } => return unmute(&ledger_guard(settings, source).await?, &id).await,
        Command::Findings => {
            return list_findings(&ledger_guard(settings, source).await?, format).await;
        }
        Command::Rules => {
            return print_catalogue(RuleId::markdown_table(), rule_specs(), format);
        }
        Command::Triggers => {
            let triggers = trigger::catalogue();
            return print_catalogue(triggers_table(&triggers), triggers, format);
        }
        Command::Evaluate { file } => return evaluate(&file, &settings, format),
        Command::Remediate {
            apply,
            rule,
            instance,
        } => {
            let filter = Filter {
                rule: rule.as_deref().map(parse_rule).transpose()?,
                instance_arn: instance,
            };
            return remediate(settings, source, format, apply, filter).await;
        }
        Command::Audit { save_snapshot } => {
            save_to = save_snapshot;
            (Scope::Everything, Trigger::audit(), None)
        }
        Command::CheckEvent { file } => match read_event(&file)? {
            (Parsed::Check { scope, trigger }, account) => (scope, trigger, account),
            (Parsed::Ignore { reason, .. }, _) => {
                write_stdout(&format!("ignored: {reason}\n"))?;
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    let guard = Guard::from_environment(settings, source)
        .await
        .map_err(|e| e.to_string())?;
    let delivery = if cli.publish {
        Delivery::Publish
    } else {
        Delivery::ReportOnly
    };
    let opts = Options {
        account,
        progress: std::io::stderr().is_terminal().then(progress_on_stderr),
        ..Options::default()
    };
    let report = guard
        .run(scope, trigger, &opts, delivery)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(path) = save_to {
        let saved =
            serde_json::to_vec_pretty(&SavedPass::of(&report)).map_err(|e| e.to_string())?;
        std::fs::write(&path, saved)
            .map_err(|e| format!("cannot write the snapshot to {}: {e}", path.display()))?;
    }
    finish(&report, format)
}

/// Prints the report; the exit status says whether it found anything.
fn finish(report: &PassReport, format: Format) -> Result<ExitCode, String> {
    write_stdout(&report.render(format))?;
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn evaluate(file: &PathBuf, settings: &Settings, format: Format) -> Result<ExitCode, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let saved = SavedPass::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    finish(&saved.evaluate(&settings.rules), format)
}

/// A guard with its ledger, for the commands that read or change it.
async fn ledger_guard(settings: Settings, source: Source) -> Result<Guard, String> {
    if settings.ledger_table.is_none() {
        return Err(
            "this command needs the alert ledger: set LEDGER_TABLE or --ledger-table".to_owned(),
        );
    }
    Guard::from_environment(settings, source)
        .await
        .map_err(|e| e.to_string())
}

fn ledger(guard: &Guard) -> &Ledger {
    guard
        .ledger
        .as_ref()
        .expect("ledger_guard checked LEDGER_TABLE")
}

/// What `mute` was asked.
#[derive(Args)]
struct MuteArgs {
    /// The rule to mute (see `rules`).
    #[arg(long)]
    rule: String,
    /// Only findings about this resource ARN.
    #[arg(long)]
    resource: Option<String>,
    /// Only findings of this instance ARN.
    #[arg(long)]
    instance: Option<String>,
    /// How long: an integer and s, m, h or d (`12h`, `7d`).
    #[arg(
        long = "for",
        value_name = "DURATION",
        conflicts_with = "until",
        required_unless_present = "until"
    )]
    for_: Option<String>,
    /// Until when (RFC 3339, e.g. 2026-12-24T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    until: Option<String>,
    /// Why, for whoever reads the mutes next.
    #[arg(long)]
    reason: String,
}

async fn mute(guard: &Guard, target: MuteArgs) -> Result<ExitCode, String> {
    let now = epoch_now();
    let rule = parse_rule(&target.rule)?;
    let until = mute_end(now, target.for_.as_deref(), target.until.as_deref())?;
    if target.reason.trim().is_empty() {
        return Err("--reason must say why".to_owned());
    }
    let by = guard
        .aws
        .caller_arn()
        .await
        .map_err(|e| format!("cannot tell who is muting: {}", e.reason()))?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mute = Mute {
        id: new_id(nanos, rule.as_str()),
        rule,
        resource_arn: target.resource,
        instance_arn: target.instance,
        until,
        reason: target.reason,
        by,
        created: now,
    };
    ledger(guard)
        .add_mute(&mute)
        .await
        .map_err(|e| e.to_string())?;
    write_stdout(&format!("{}\n", mute.id))?;
    Ok(ExitCode::SUCCESS)
}

async fn list_mutes(guard: &Guard, format: Format) -> Result<ExitCode, String> {
    let now = epoch_now();
    let mutes = ledger(guard)
        .state()
        .await
        .map_err(|e| e.to_string())?
        .mutes;
    let views: Vec<MuteView> = mutes
        .iter()
        .map(|mute| MuteView {
            mute,
            active: mute.is_active(now),
        })
        .collect();
    let headers = [
        "ID", "RULE", "RESOURCE", "INSTANCE", "UNTIL", "STATE", "BY", "REASON",
    ];
    write_stdout(&listing(&views, &headers, mute_row, format))?;
    Ok(ExitCode::SUCCESS)
}

async fn unmute(guard: &Guard, id: &str) -> Result<ExitCode, String> {
    if !ledger(guard)
        .remove_mute(id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("no mute {id}"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_findings(guard: &Guard, format: Format) -> Result<ExitCode, String> {
    let now = epoch_now();
    let state = ledger(guard).state().await.map_err(|e| e.to_string())?;
    let open: Vec<OpenFinding> = state
        .records
        .values()
        .map(|r| OpenFinding {
            rule: r.finding.rule,
            severity: r.finding.severity,
            resource_arn: &r.finding.resource_arn,
            instance_arn: r.finding.instance_arn.as_deref(),
            fingerprint: &r.fingerprint,
            first_seen: rfc3339(r.first_seen),
            last_notified: r.last_notified.map(rfc3339),
            muted: state
                .mutes
                .iter()
                .any(|m| m.is_active(now) && m.covers(&r.finding)),
        })
        .collect();
    let headers = [
        "RULE",
        "RESOURCE",
        "INSTANCE",
        "FIRST SEEN",
        "LAST NOTIFIED",
        "MUTED",
    ];
    write_stdout(&listing(&open, &headers, finding_row, format))?;
    Ok(ExitCode::SUCCESS)
}

fn parse_rule(text: &str) -> Result<RuleId, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("--rule {text}: not a rule (see `connect-slr-guard rules`)"))
}

/// A sweep (or one instance's pass), then its fixes: planned, or made and
/// verified with `apply`.
async fn remediate(
    settings: Settings,
    source: Source,
    format: Format,
    apply: bool,
    filter: Filter,
) -> Result<ExitCode, String> {
    let scope = match filter.instance_arn.as_deref() {
        Some(arn) => match arn.rsplit_once(":instance/") {
            Some((_, id)) if !id.is_empty() && !id.contains('/') => Scope::Instance(id.to_owned()),
            _ => {
                return Err(format!(
                    "--instance {arn}: expected an Amazon Connect instance ARN"
                ));
            }
        },
        None => Scope::Everything,
    };
    let guard = Guard::from_environment(settings, source)
        .await
        .map_err(|e| e.to_string())?;
    let opts = Options {
        progress: std::io::stderr().is_terminal().then(progress_on_stderr),
        ..Options::default()
    };
    let mut report = guard
        .run(scope, Trigger::audit(), &opts, Delivery::ReportOnly)
        .await
        .map_err(|e| e.to_string())?;
    let mode = if apply { Mode::Apply } else { Mode::DryRun };
    // Mutes hold fixes back, and recent fixes count against the cap.
    let state = match &guard.ledger {
        Some(ledger) => Some(ledger.state().await.map_err(|e| e.to_string())?),
        None => None,
    };
    guard
        .remediate(&mut report, &opts, mode, &filter, state.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    write_stdout(&report.render_remediation(format))?;
    let Some(done) = &report.remediation else {
        return Err("remediation did not run".to_owned());
    };
    let cleared = done.cleared();
    let ctx = &report.context;
    let left = report.findings.iter().any(|f| {
        filter.admits(f) && !cleared.contains(f.fingerprint(&ctx.account, &ctx.region).as_str())
    });
    Ok(if done.failed() {
        ExitCode::from(2)
    } else if left {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// When a mute set now ends: `--for` a duration or `--until` a time to come.
fn mute_end(now: i64, for_: Option<&str>, until: Option<&str>) -> Result<i64, String> {
    let end = match (for_, until) {
        (Some(duration), None) => {
            let duration = parse_duration(duration).ok_or(format!(
                "--for {duration}: expected an integer and s, m, h or d"
            ))?;
            now + duration.as_secs() as i64
        }
        (None, Some(time)) => DateTime::from_str(time, DateTimeFormat::DateTime)
            .map_err(|_| format!("--until {time}: expected RFC 3339, e.g. 2026-12-24T00:00:00Z"))?
            .secs(),
        _ => return Err("give --for DURATION or --until RFC3339".to_owned()),
    };
    if end <= now {
        return Err("the mute would already be over".to_owned());
    }
    Ok(end)
}

fn mute_row(view: &MuteView) -> Vec<String> {
    let m = view.mute;
    vec![
        m.id.clone(),
        m.rule.to_string(),
        m.resource_arn.clone().unwrap_or_else(|| "*".to_owned()),
        m.instance_arn.clone().unwrap_or_else(|| "*".to_owned()),
        rfc3339(m.until),
        if view.active { "active" } else { "over" }.to_owned(),
        m.by.clone(),
        m.reason.clone(),
    ]
}

fn finding_row(f: &OpenFinding) -> Vec<String> {
    vec![
        f.rule.to_string(),
        f.resource_arn.to_owned(),
        f.instance_arn.unwrap_or("-").to_owned(),
        f.first_seen.clone(),
        f.last_notified
            .clone()
            .unwrap_or_else(|| "never (held or muted)".to_owned()),
        if f.muted { "yes" } else { "no" }.to_owned(),
    ]
}

fn rule_specs() -> Vec<connect_slr_guard::finding::RuleSpec> {
    RuleId::ALL.iter().map(|r| r.spec()).collect()
}

fn triggers_table(triggers: &[trigger::TriggerSpec]) -> String {
    let mut table =
        String::from("| source | detail-type | eventName | re-verifies |\n|---|---|---|---|\n");
    for t in triggers {
        table.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.source,
            t.detail_type,
            t.event_name.unwrap_or("-"),
            t.scope
        ));
    }
    table
}

/// A catalogue as a markdown table, or as JSON for tools.
fn print_catalogue(
    table: String,
    rows: Vec<impl serde::Serialize>,
    format: Format,
) -> Result<ExitCode, String> {
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
            write_stdout(&format!("{json}\n"))?;
        }
        _ => write_stdout(&table)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// "instances 12/40" on one stderr line, for people watching a long sweep.
fn progress_on_stderr() -> Progress {
    Progress(std::sync::Arc::new(|done, total| {
        eprint!("\rinstances {done}/{total}");
        if done == total {
            eprintln!();
        }
    }))
}

/// Reads an EventBridge event, or a message body from the guard's queues
/// (a re-check envelope carries its event).
fn read_event(file: &PathBuf) -> Result<(Parsed, Option<String>), String> {
    let mut bytes =
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if let Some(Ok(item)) = std::str::from_utf8(&bytes).ok().map(WorkItem::parse) {
        bytes = serde_json::to_vec(&item.event).map_err(|e| e.to_string())?;
    }
    let parsed = trigger::parse_bytes(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let account = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("account")?.as_str().map(trigger::cap));
    Ok((parsed, account))
}
