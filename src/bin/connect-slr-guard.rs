//! The CLI: the same pass the Lambda runs, from a laptop or a CI job.
//! Exit status: 0 no findings, 1 findings, 2 could not run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use connect_slr_guard::config::{RawSettings, Settings};
use connect_slr_guard::guard::{Delivery, Guard, PassReport};
use connect_slr_guard::inventory::{Options, Progress};
use connect_slr_guard::trigger::{self, Parsed, Scope, Trigger};
use serde_json::json;

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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A table of findings, each with its fix.
    Table,
    /// The alert documents (connect-slr-guard/alert/v1).
    Json,
    /// Each alert as the text on-call receives by email.
    Text,
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
        ledger_table: None,
        required_grant_operations: cli.required_grant_operations,
        connect_api_rps: cli.connect_api_rps,
    })
    .map_err(|e| e.to_string())?;
    let (scope, trigger, account) = match &cli.command {
        Command::Audit => (Scope::Everything, Trigger::audit(), None),
        Command::CheckEvent { file } => match read_event(file)? {
            (Parsed::Check { scope, trigger }, account) => (scope, trigger, account),
            (Parsed::Ignore { reason, .. }, _) => {
                println!("ignored: {reason}");
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    let guard = Guard::from_environment(settings, cli.region, cli.profile)
        .await
        .map_err(|e| e.to_string())?;
    let delivery = if cli.publish {
        Delivery::Publish
    } else {
        Delivery::ReportOnly
    };
    let report = guard
        .run(
            scope,
            trigger,
            &Options {
                account,
                progress: std::io::stderr().is_terminal().then(progress_on_stderr),
                ..Options::default()
            },
            delivery,
        )
        .await
        .map_err(|e| e.to_string())?;
    match cli.format {
        Format::Table => print!("{}", table(&report)),
        Format::Json => println!("{}", to_json(&report)),
        Format::Text => {
            let texts: Vec<String> = report
                .alerts()
                .iter()
                .map(connect_slr_guard::alert::text)
                .collect();
            print!("{}", texts.join("\n---\n\n"));
        }
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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

fn to_json(report: &PassReport) -> String {
    let doc = json!({
        "scope": report.scope,
        "account": report.context.account,
        "region": report.context.region,
        "instances_checked": report.instances_checked,
        "checks_incomplete": report.checks_incomplete,
        "alerts_published": report.alerts_published,
        "findings": report.alerts(),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn table(report: &PassReport) -> String {
    let mut out = format!(
        "account {} · region {} · instances checked: {} · findings: {} (incomplete: {}) · alerts published: {}\n",
        report.context.account,
        report.context.region,
        report.instances_checked,
        report.findings.len(),
        report.checks_incomplete,
        report.alerts_published,
    );
    if report.findings.is_empty() {
        out.push_str("no drift found\n");
        return out;
    }
    let rows: Vec<[String; 4]> = report
        .findings
        .iter()
        .map(|f| {
            [
                f.severity.to_string(),
                f.rule.to_string(),
                f.instance_arn
                    .as_deref()
                    .and_then(|a| a.rsplit('/').next())
                    .unwrap_or("-")
                    .to_owned(),
                f.resource_arn.clone(),
            ]
        })
        .collect();
    let headers = ["SEVERITY", "RULE", "INSTANCE", "RESOURCE"];
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([headers[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        format!("\n{}", padded.join("  ").trim_end())
    };
    out.push_str(&line(headers));
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out.push_str("\n\n");
    for (n, f) in report.findings.iter().enumerate() {
        out.push_str(&format!(
            "{}. {} {}\n   fix: {}\n",
            n + 1,
            f.rule,
            f.summary,
            f.remediation
        ));
    }
    out
}
