//! The CLI: the same pass the Lambda runs, from a laptop or a CI job.
//! Exit status: 0 no findings, 1 findings, 2 could not run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use connect_slr_guard::aws::Source;
use connect_slr_guard::config::{RawSettings, Settings};
use connect_slr_guard::finding::RuleId;
use connect_slr_guard::guard::{Delivery, Guard};
use connect_slr_guard::inventory::{Options, Progress};
use connect_slr_guard::report::Format;
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
    /// Amazon Connect API calls per second the audit allows itself.
    #[arg(long, global = true, env = "CONNECT_API_RPS", value_name = "RPS")]
    connect_api_rps: Option<String>,
    /// More log detail on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Sweep every instance in the account and Region.
    Audit,
    /// Run one saved EventBridge event through the pass the Lambda runs.
    CheckEvent {
        /// The event JSON file.
        file: PathBuf,
    },
    /// The rule catalogue: id, severity, the resource each rule names, the drift.
    Rules,
    /// The events that trigger a pass, and what each re-verifies.
    Triggers,
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
        required_grant_operations: cli.required_grant_operations,
        connect_api_rps: cli.connect_api_rps,
    })
    .map_err(|e| e.to_string())?;
    let (scope, trigger, account) = match &cli.command {
        Command::Rules => {
            return print_catalogue(RuleId::markdown_table(), rule_specs(), cli.format);
        }
        Command::Triggers => {
            let triggers = trigger::catalogue();
            return print_catalogue(triggers_table(&triggers), triggers, cli.format);
        }
        Command::Audit => (Scope::Everything, Trigger::audit(), None),
        Command::CheckEvent { file } => match read_event(file)? {
            (Parsed::Check { scope, trigger }, account) => (scope, trigger, account),
            (Parsed::Ignore { reason, .. }, _) => {
                write_stdout(&format!("ignored: {reason}\n"))?;
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    let source = Source {
        region: cli.region,
        profile: cli.profile,
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
    write_stdout(&report.render(cli.format))?;
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
        Format::Table | Format::Text => write_stdout(&table)?,
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

fn read_event(file: &PathBuf) -> Result<(Parsed, Option<String>), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let parsed = trigger::parse_bytes(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let account = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("account")?.as_str().map(trigger::cap));
    Ok((parsed, account))
}
