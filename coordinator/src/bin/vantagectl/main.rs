//! `vantagectl`: the researcher's and operator's command line. Talks to the
//! coordinator over gRPC with the admin certificate.
//!
//! One module per command (family); `common` holds what they share: the
//! connection, error sentences, output formats and the closed-pipe exit.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use vantage_proto::v1::ListResultsRequest;

mod agents;
mod bench;
mod campaign;
mod changes;
mod common;
mod dispatch;
mod export;
mod results;
mod stats;
mod token;
mod verdicts;
mod webhook;

use common::Output;

#[derive(Parser)]
#[command(name = "vantagectl", version, about = "Control a Vantage coordinator")]
struct Cli {
    /// Coordinator data directory holding admin.pem, admin.key, ca.pem and coordinator.toml.
    #[arg(long, global = true, env = "VANTAGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Coordinator address (default: the first advertised address in coordinator.toml).
    #[arg(long, global = true, env = "VANTAGE_COORDINATOR")]
    coordinator: Option<String>,
    /// Output format for read commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        cmd: token::TokenCmd,
    },
    /// List agents with labels and last-seen times.
    Agents,
    /// Act on one agent.
    Agent {
        #[command(subcommand)]
        cmd: agents::AgentCmd,
    },
    /// Push one ad-hoc probe to connected agents (all, or those named).
    Dispatch {
        /// Probe input as JSON, e.g. '{"tcp":{"host":"192.0.2.1","port":443}}'.
        input: String,
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
        /// Per-task deadline in seconds.
        #[arg(long, default_value_t = 60)]
        deadline: u32,
    },
    /// Stored results (signed envelopes), oldest first: of a campaign
    /// (`results ID` or `--campaign ID`), a task, an agent, or all.
    Results {
        /// Campaign id (the same as --campaign).
        #[arg(value_name = "CAMPAIGN_ID", conflicts_with = "campaign")]
        campaign_id: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Coordinator counters.
    Stats,
    /// Campaigns: create from a spec, list, watch, pause, resume, cancel.
    Campaign {
        #[command(subcommand)]
        cmd: campaign::CampaignCmd,
    },
    /// Verdicts of a campaign: one row per run, target and inside agent
    /// (its country and ASN), with status, mechanism and confidence.
    Verdicts { campaign_id: String },
    /// Change events, the "since when": a target, in one country and AS,
    /// went from one state to another and held it for the campaign's
    /// change_after_runs runs (default 2). Oldest onset first.
    Changes {
        #[arg(long)]
        campaign: Option<String>,
        /// A duration back from now ("7d", "12h"), or RFC 3339, a date or
        /// Unix microseconds: onsets at or after it.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        country: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// blocked, unblocked, down, up or mechanism.
        #[arg(long)]
        change: Option<String>,
        /// Keep asking every this many seconds and print new events.
        #[arg(long, num_args = 0..=1, default_missing_value = "10")]
        watch: Option<u64>,
    },
    /// Webhooks: change events POSTed to a URL, signed with HMAC-SHA256,
    /// retried from a durable queue until delivered.
    Webhook {
        #[command(subcommand)]
        cmd: webhook::WebhookCmd,
    },
    /// Export a campaign's results: jsonl (decoded + signed envelope),
    /// ooni-jsonl (OONI's measurement format and test keys, with the
    /// campaign's verdicts and the signed envelope), csv, or parquet (the
    /// csv columns typed, plus the signed envelope bytes).
    Export {
        campaign_id: String,
        #[arg(long, value_enum, default_value_t = export::ExportFormat::Jsonl)]
        format: export::ExportFormat,
        /// Write here instead of standard output.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        /// Only results stored after this commit sequence number, in the
        /// order stored: an export "since" the last one, which prints the
        /// number to continue from.
        #[arg(long)]
        after_seq: Option<u64>,
    },
    /// Re-check every signature of an export offline, against the agent
    /// keys from `vantagectl agents --output json`. Reads `vantagectl export`
    /// jsonl, or rows from the ClickHouse sink's table: `SELECT id, agent,
    /// hex(measurement) AS measurement_hex, hex(signature) AS signature_hex
    /// FROM vantage.results FINAL FORMAT JSONEachRow`.
    VerifyExport {
        /// One result per line: jsonl export lines or ClickHouse rows (both
        /// may be mixed).
        file: PathBuf,
        #[arg(long)]
        agents: PathBuf,
    },
    /// Benchmarks against a fresh coordinator started for the purpose (its
    /// own temp data dir, loopback only). Needs no --data-dir. Runs
    /// `vantage-bench` from beside vantagectl: `vantagectl bench --help`
    /// lists its commands (ingest, soak, sessions).
    #[command(disable_help_flag = true)]
    Bench {
        /// The benchmark and its options, passed to vantage-bench.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[tokio::main]
async fn main() {
    vantage_proto::install_crypto_provider();
    vantage_coordinator::logging::init(Default::default(), "warn");
    common::quiet_on_closed_pipe();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        if common::closed_pipe(&e) {
            std::process::exit(common::EXIT_CLOSED_PIPE);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let out = cli.output;
    // Commands that need no coordinator.
    match &cli.cmd {
        Cmd::Bench { args } => return bench::run(out, args),
        Cmd::VerifyExport { file, agents } => return export::verify(file, agents),
        _ => {}
    }
    let ch = common::connect(cli.data_dir.as_ref(), cli.coordinator.as_ref()).await?;
    match &cli.cmd {
        Cmd::Token { cmd } => token::run(ch, out, cmd).await,
        Cmd::Agents => agents::list(ch, out).await,
        Cmd::Agent { cmd } => agents::run(ch, cmd).await,
        Cmd::Dispatch {
            input,
            agents,
            deadline,
        } => dispatch::run(ch, out, input, agents, *deadline).await,
        Cmd::Results {
            campaign_id,
            campaign,
            task,
            agent,
            limit,
        } => {
            let req = ListResultsRequest {
                task_id: task.clone().unwrap_or_default(),
                agent_id: agent.clone().unwrap_or_default(),
                campaign_id: campaign_id
                    .clone()
                    .or_else(|| campaign.clone())
                    .unwrap_or_default(),
                limit: *limit,
                after_seq: None,
            };
            results::run(ch, out, req).await
        }
        Cmd::Stats => stats::run(ch, out).await,
        Cmd::Webhook { cmd } => webhook::run(ch, out, cmd).await,
        Cmd::Campaign { cmd } => campaign::run(ch, out, cmd).await,
        Cmd::Verdicts { campaign_id } => verdicts::run(ch, out, campaign_id).await,
        Cmd::Changes {
            campaign,
            since,
            country,
            target,
            change,
            watch,
        } => {
            let req = vantage_proto::v1::ChangesRequest {
                campaign: campaign.clone().unwrap_or_default(),
                since: since
                    .as_deref()
                    .map(changes::since_value)
                    .transpose()?
                    .unwrap_or_default(),
                country: country.clone().unwrap_or_default(),
                target: target.clone().unwrap_or_default(),
                change: change.clone().unwrap_or_default(),
                ..Default::default()
            };
            let every = watch.map(|s| std::time::Duration::from_secs(s.max(1)));
            changes::run(ch, out, req, every).await
        }
        Cmd::Export {
            campaign_id,
            format,
            out: file,
            after_seq,
        } => export::run(ch, campaign_id, *format, file.as_ref(), *after_seq).await,
        Cmd::Bench { .. } | Cmd::VerifyExport { .. } => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_passes_every_argument_on() {
        let cli = Cli::try_parse_from([
            "vantagectl",
            "bench",
            "soak",
            "--rate",
            "10",
            "--help",
            "--seconds",
            "2",
        ])
        .unwrap();
        match cli.cmd {
            Cmd::Bench { args } => {
                assert_eq!(args, ["soak", "--rate", "10", "--help", "--seconds", "2"])
            }
            _ => panic!("not bench"),
        }
        let cli =
            Cli::try_parse_from(["vantagectl", "--output", "json", "bench", "ingest"]).unwrap();
        assert!(cli.output == Output::Json);
    }

    #[test]
    fn results_take_a_campaign_by_flag_or_position() {
        for args in [
            &["vantagectl", "results", "C1"][..],
            &["vantagectl", "results", "--campaign", "C1"][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.cmd {
                Cmd::Results {
                    campaign_id,
                    campaign,
                    ..
                } => assert_eq!(campaign_id.or(campaign).as_deref(), Some("C1")),
                _ => panic!("not results"),
            }
        }
        // The old filters still work, alone or with a campaign.
        let cli =
            Cli::try_parse_from(["vantagectl", "results", "--task", "T", "--limit", "5"]).unwrap();
        assert!(matches!(
            cli.cmd,
            Cmd::Results { task: Some(ref t), limit: 5, campaign_id: None, campaign: None, .. } if t == "T"
        ));
        assert!(Cli::try_parse_from(["vantagectl", "results", "C1", "--campaign", "C2"]).is_err());
    }
}
