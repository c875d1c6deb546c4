//! `vantagectl`: the researcher's and operator's command line. Talks to the
//! coordinator over gRPC with the admin certificate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use vantage_coordinator::config::Config;
use vantage_coordinator::pki::files;
use vantage_proto::client::{connect_any, ClientIdentity, ConnectOptions};
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::*;

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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Jsonl,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// List agents with labels and last-seen times.
    Agents,
    /// Act on one agent.
    Agent {
        #[command(subcommand)]
        cmd: AgentCmd,
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
        cmd: CampaignCmd,
    },
    /// Verdicts of a campaign: one row per run, target and inside agent
    /// (its country and ASN), with status, mechanism and confidence.
    Verdicts { campaign_id: String },
    /// Export a campaign's results: jsonl (decoded + signed envelope),
    /// ooni-jsonl (OONI's measurement format and test keys, with the
    /// campaign's verdicts and the signed envelope), csv, or parquet (the
    /// csv columns typed, plus the signed envelope bytes).
    Export {
        campaign_id: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
    },
    /// Re-check every signature of a jsonl export offline, against the agent
    /// keys from `vantagectl agents --output json`.
    VerifyExport {
        file: PathBuf,
        #[arg(long)]
        agents: PathBuf,
    },
    /// Benchmarks against a fresh coordinator started for the purpose (its
    /// own temp data dir, loopback only). Needs no --data-dir.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Jsonl,
    OoniJsonl,
    Csv,
    Parquet,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Signed ~1 KiB results from N concurrent mTLS sessions, durable before
    /// ack; reported against the verify and group-commit limits of this
    /// machine measured in the same run.
    Ingest {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        #[arg(long, default_value_t = 2000)]
        per_agent: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Campaign-shaped results: a campaign of this many targets for
        /// every agent (the last is its control); each result answers one
        /// of the agent's tasks, so the coordinator checks the assignment,
        /// indexes task and campaign and marks the assignment done.
        #[arg(long)]
        campaign_targets: Option<usize>,
    },
    /// A fixed rate of signed results for a long time: the coordinator's
    /// RSS, fds and threads every 10 s, first- vs last-minute RSS, the
    /// slope, sent/acked/stored, and a verdict (flat or growing).
    Soak {
        /// Results per second (default: about half the ingest median in
        /// BENCHMARKS.md).
        #[arg(long, default_value_t = 15_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Duration in seconds instead of --minutes (short runs, CI).
        #[arg(long)]
        seconds: Option<f64>,
        #[arg(long, default_value_t = 20)]
        agents: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Then resend already stored results for this long: the store
        /// stops growing, so RSS growth there is not the store's.
        #[arg(long, default_value_t = 0.0)]
        dup_seconds: f64,
    },
    /// N concurrent sessions with heartbeats: memory and idle CPU; then a
    /// campaign for all of them and the time until each has its task.
    Sessions {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 30.0)]
        idle_seconds: f64,
    },
}

#[derive(Subcommand)]
enum CampaignCmd {
    /// Validate a spec (TOML or JSON) and create the campaign; prints its id.
    Create {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List campaigns.
    List,
    /// Per-run and per-group progress, and failures by reason.
    Status {
        campaign_id: String,
        /// Show a live progress bar until the latest run completes.
        #[arg(long)]
        watch: bool,
    },
    /// Pause a campaign (no new runs are dispatched).
    Pause { campaign_id: String },
    /// Resume a paused campaign.
    Resume { campaign_id: String },
    /// Cancel a campaign for good.
    Cancel { campaign_id: String },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an enrollment token.
    Create {
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
        /// Tags given to agents enrolled with it.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Revoke an agent: its next connection is refused.
    Revoke { agent_id: String },
}

struct Conn {
    channel: tonic::transport::Channel,
}

async fn connect(cli: &Cli) -> Result<Conn> {
    let dir = cli.data_dir.clone().ok_or_else(|| {
        anyhow!("no coordinator data directory: pass --data-dir or set VANTAGE_DATA_DIR")
    })?;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("reading {}", dir.join(f).display()))
    };
    let ca = vantage_proto::client::parse_certs(&read(files::CA_CERT)?)?;
    let addrs = match &cli.coordinator {
        Some(a) => vec![a.clone()],
        None => Config::load(&dir)?.advertise,
    };
    let opts = ConnectOptions {
        ca_sha256: vantage_proto::cert_fingerprint(&ca[0]),
        identity: Some(ClientIdentity {
            cert_pem: read(files::ADMIN_CERT)?,
            key_pem: read(files::ADMIN_KEY)?,
        }),
        connect_timeout: Duration::from_secs(5),
    };
    let channel = connect_any(&addrs, &opts)
        .await
        .with_context(|| format!("cannot reach the coordinator at {}", addrs.join(", ")))?;
    Ok(Conn { channel })
}

/// Turns a gRPC status into a sentence.
fn human(s: tonic::Status) -> anyhow::Error {
    let what = match s.code() {
        tonic::Code::Unavailable => "the coordinator is unavailable",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::NotFound => "not found",
        _ => "request failed",
    };
    anyhow!("{what}: {}", s.message())
}

fn when(us: i64) -> String {
    if us <= 0 {
        return "never".into();
    }
    let ago = (vantage_proto::now_us() - us).max(0) / 1_000_000;
    match ago {
        0..=59 => format!("{ago}s ago"),
        60..=3599 => format!("{}m ago", ago / 60),
        3600..=86399 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86400),
    }
}

#[tokio::main]
async fn main() {
    vantage_proto::install_crypto_provider();
    vantage_coordinator::logging::init(Default::default(), "warn");
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        if closed_pipe(&e) {
            std::process::exit(EXIT_CLOSED_PIPE);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// What a shell reports for a process ended by SIGPIPE (128 + 13), the
/// exit every Unix filter takes when `| head` stops reading.
const EXIT_CLOSED_PIPE: i32 = 141;

/// Whether an error is stdout's reader having gone away.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout's reader is gone (`vantagectl ... | head`;
/// Rust ignores SIGPIPE): end quietly with the shell's SIGPIPE status
/// instead of a panic message. Every other panic keeps the default report.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_CLOSED_PIPE);
        }
        default(info);
    }));
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Bench { cmd } = &cli.cmd {
        return bench(&cli, cmd).await;
    }
    if let Cmd::VerifyExport { file, agents } = &cli.cmd {
        let keys = vantage_coordinator::export::agent_keys(
            &std::fs::read_to_string(agents)
                .with_context(|| format!("reading {}", agents.display()))?,
        )?;
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let r = vantage_coordinator::export::verify_export(&text, &keys);
        for (line, id, why) in &r.failed {
            println!("line {line}: {id}: {why}");
        }
        println!("{} verified, {} failed", r.verified, r.failed.len());
        if !r.failed.is_empty() {
            anyhow::bail!(
                "{} result(s) in {} do not verify",
                r.failed.len(),
                file.display()
            );
        }
        return Ok(());
    }
    let conn = connect(&cli).await?;
    let mut admin = AdminServiceClient::new(conn.channel.clone());
    match &cli.cmd {
        Cmd::Token {
            cmd:
                TokenCmd::Create {
                    uses,
                    expires,
                    tags,
                },
        } => {
            let r = admin
                .create_token(CreateTokenRequest {
                    uses: *uses,
                    ttl_s: expires.as_secs(),
                    tags: tags.clone(),
                })
                .await
                .map_err(human)?
                .into_inner();
            if cli.output == Output::Table {
                println!("{}", r.token);
                eprintln!("valid for {uses} enrollment(s), until {expires} from now");
            } else {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        Cmd::Agents => {
            let r = admin
                .list_agents(ListAgentsRequest {})
                .await
                .map_err(human)?
                .into_inner();
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&r.agents)?),
                Output::Jsonl => {
                    for a in &r.agents {
                        println!("{}", serde_json::to_string(a)?);
                    }
                }
                Output::Table => {
                    println!(
                        "{:<36}  {:<7}  {:<9}  {:<2}  {:>8}  {:>8}  {:<14}  TAGS",
                        "AGENT", "STATE", "CONNECTED", "CC", "ASN", "RESULTS", "LAST SEEN"
                    );
                    for a in &r.agents {
                        let l = a.labels.clone().unwrap_or_default();
                        println!(
                            "{:<36}  {:<7}  {:<9}  {:<2}  {:>8}  {:>8}  {:<14}  {}",
                            a.agent_id,
                            if a.revoked { "revoked" } else { "active" },
                            if a.connected { "yes" } else { "no" },
                            if l.country.is_empty() {
                                "-"
                            } else {
                                &l.country
                            },
                            if l.asn == 0 {
                                "-".to_string()
                            } else {
                                format!("AS{}", l.asn)
                            },
                            a.results,
                            if a.connected {
                                "now".into()
                            } else {
                                when(a.last_seen_us)
                            },
                            l.tags.join(",")
                        );
                    }
                }
            }
        }
        Cmd::Agent {
            cmd: AgentCmd::Revoke { agent_id },
        } => {
            admin
                .revoke_agent(RevokeAgentRequest {
                    agent_id: agent_id.clone(),
                })
                .await
                .map_err(human)?;
            println!("revoked {agent_id}");
        }
        Cmd::Dispatch {
            input,
            agents,
            deadline,
        } => {
            let input: ProbeInput =
                serde_json::from_str(input).context("the probe input is not valid")?;
            // What every agent would refuse, refused here; agents get the
            // normalised input (IDNA host names).
            let input = vantage_proto::validate::validate(&input)
                .map_err(|e| anyhow!("the probe input is refused: {e}"))?;
            let r = admin
                .dispatch(DispatchRequest {
                    input: Some(input),
                    agent_ids: agents.clone(),
                    deadline_s: *deadline,
                })
                .await
                .map_err(human)?
                .into_inner();
            if cli.output == Output::Table {
                println!("{}", r.task_id);
                eprintln!("sent to {} agent(s)", r.sent_to.len());
                for s in &r.skipped {
                    eprintln!("skipped {s}");
                }
            } else {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        Cmd::Results {
            campaign_id,
            campaign,
            task,
            agent,
            limit,
        } => {
            let mut q = QueryServiceClient::new(conn.channel.clone());
            let mut stream = q
                .list_results(ListResultsRequest {
                    task_id: task.clone().unwrap_or_default(),
                    agent_id: agent.clone().unwrap_or_default(),
                    campaign_id: campaign_id
                        .clone()
                        .or_else(|| campaign.clone())
                        .unwrap_or_default(),
                    limit: *limit,
                })
                .await
                .map_err(human)?
                .into_inner();
            while let Some(item) = stream.next().await {
                let sr = item.map_err(human)?;
                let env = sr.envelope.clone().unwrap_or_default();
                let m = vantage_proto::envelope::decode(&env)?;
                match cli.output {
                    Output::Table => {
                        let v = serde_json::to_value(&m)?;
                        let obs = v
                            .as_object()
                            .and_then(|o| {
                                vantage_proto::PROBE_KINDS
                                    .iter()
                                    .chain(["refused"].iter())
                                    .find_map(|k| o.get(*k).map(|x| format!("{k} {x}")))
                            })
                            .unwrap_or_default();
                        println!("{}  {}  {}", m.id, m.agent_id, obs);
                    }
                    _ => println!(
                        "{}",
                        serde_json::json!({
                            "agent_id": sr.agent_id,
                            "received_us": sr.received_us,
                            "measurement": m,
                            "envelope": {
                                "measurement_b64": base64_std(&env.measurement),
                                "signature_b64": base64_std(&env.signature),
                            }
                        })
                    ),
                }
            }
        }
        Cmd::Bench { .. } | Cmd::VerifyExport { .. } => unreachable!("handled above"),
        Cmd::Export {
            campaign_id,
            format,
            out,
        } => {
            use std::io::Write;
            use vantage_coordinator::export;
            let mut q = QueryServiceClient::new(conn.channel.clone());
            // OONI's web_connectivity says whether a page was blocked: that
            // is the campaign's verdict (inside vs control), when there is one.
            let verdicts = if *format == ExportFormat::OoniJsonl {
                match q
                    .verdicts(VerdictsRequest {
                        campaign_id: campaign_id.clone(),
                    })
                    .await
                {
                    Ok(r) => export::VerdictIndex::new(r.into_inner().verdicts),
                    Err(e) => {
                        eprintln!(
                            "warning: no verdicts ({}): blocking/accessible follow each \
                             measurement alone",
                            e.message()
                        );
                        export::VerdictIndex::default()
                    }
                }
            } else {
                export::VerdictIndex::default()
            };
            let mut stream = q
                .list_results(ListResultsRequest {
                    campaign_id: campaign_id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(human)?
                .into_inner();
            if *format == ExportFormat::Parquet
                && out.is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stdout())
            {
                anyhow::bail!("parquet is binary: write it to a file with -o FILE (or pipe it)");
            }
            let mut w: Box<dyn Write + Send> = match out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            if *format == ExportFormat::Csv {
                writeln!(w, "{}", export::CSV_HEADER)?;
            }
            let mut pq = None;
            if *format == ExportFormat::Parquet {
                pq = Some(export::ParquetExport::new(w)?);
                w = Box::new(std::io::sink());
            }
            let mut n = 0u64;
            while let Some(item) = stream.next().await {
                let sr = item.map_err(human)?;
                let m = vantage_proto::envelope::decode(&sr.envelope.clone().unwrap_or_default())?;
                match format {
                    ExportFormat::Jsonl => writeln!(w, "{}", export::jsonl(&sr, &m))?,
                    ExportFormat::OoniJsonl => writeln!(
                        w,
                        "{}",
                        export::ooni_with_verdict(&sr, &m, verdicts.get(&m))
                    )?,
                    ExportFormat::Csv => writeln!(w, "{}", export::csv_row(&sr, &m))?,
                    ExportFormat::Parquet => {
                        if let Some(pq) = pq.as_mut() {
                            pq.push(&sr, &m)?;
                        }
                    }
                }
                n += 1;
                if n.is_multiple_of(10_000) {
                    eprintln!("exported {n} results ...");
                }
            }
            if let Some(pq) = pq {
                pq.finish()?;
            }
            w.flush()?;
            eprintln!("exported {n} results");
        }
        Cmd::Campaign { cmd } => campaign(&cli, &mut admin, cmd).await?,
        Cmd::Verdicts { campaign_id } => {
            let mut q = QueryServiceClient::new(conn.channel.clone());
            let r = q
                .verdicts(VerdictsRequest {
                    campaign_id: campaign_id.clone(),
                })
                .await
                .map_err(human)?
                .into_inner();
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&r.verdicts)?),
                Output::Jsonl => {
                    for v in &r.verdicts {
                        println!("{}", serde_json::to_string(v)?);
                    }
                }
                Output::Table => print_verdicts(&r.verdicts),
            }
        }
        Cmd::Stats => {
            let r = admin
                .stats(StatsRequest {})
                .await
                .map_err(human)?
                .into_inner();
            if cli.output == Output::Table {
                println!("results stored    {}", r.results_stored);
                println!("agents            {}", r.agents);
                println!("agents connected  {}", r.agents_connected);
                for c in &r.counters {
                    println!("{:<40} {}", c.name, c.value);
                }
            } else {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
        }
    }
    Ok(())
}

async fn bench(cli: &Cli, cmd: &BenchCmd) -> Result<()> {
    use vantage_coordinator::bench;
    match cmd {
        BenchCmd::Ingest {
            agents,
            per_agent,
            size,
            runs,
            campaign_targets,
        } => {
            let r = bench::ingest(*agents, *per_agent, *size, *runs, *campaign_targets).await?;
            if cli.output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "ingest: {} agents x {} results of ~{} B, {} runs{}",
                r.agents,
                per_agent,
                size,
                runs,
                match r.campaign_targets {
                    Some(n) => format!(", campaign-shaped ({n} targets)"),
                    None => String::new(),
                }
            );
            println!(
                "  results/s per run        {:?}",
                r.runs_results_per_s
                    .iter()
                    .map(|x| x.round())
                    .collect::<Vec<_>>()
            );
            println!(
                "  median results/s         {:.0}   (budget >= 50000: {:.2}x)",
                r.median_results_per_s,
                r.median_results_per_s / 50_000.0
            );
            println!(
                "  ack latency p50 / p99    {:.1} ms / {:.1} ms",
                r.ack_p50_ms, r.ack_p99_ms
            );
            println!(
                "  coordinator CPU          {:.2} cores",
                r.coordinator_cpu_cores
            );
            println!(
                "  coordinator RSS          {:.0} MiB (peak {:.0} MiB)",
                r.coordinator_rss_mib, r.coordinator_peak_rss_mib
            );
            println!(
                "  limit: Ed25519 verify    {:.0}/s per core, {:.0}/s machine",
                r.verify_per_core_per_s, r.verify_limit_per_s
            );
            println!("  limit: sled group commit {:.0}/s", r.commit_limit_per_s);
            println!(
                "         campaign-shaped   {:.0}/s (results with a task and a campaign; not the limit used below)",
                r.commit_limit_campaign_per_s
            );
            println!(
                "  load generator CPU       {:.2} cores (same machine)",
                r.generator_cpu_cores
            );
            println!(
                "  ingest / verify per core {:.2}   (DESIGN.md's measure)",
                r.fraction_of_verify_per_core
            );
            println!(
                "  ingest / verify machine  {:.2}   (every core verifying, nothing else)",
                r.fraction_of_verify_machine
            );
            println!(
                "  ingest / commit limit    {:.2}",
                r.fraction_of_commit_limit
            );
            println!(
                "  ingest / smaller limit   {:.2}   (of verify per core and commit; budget >= 0.5)",
                r.fraction_of_smaller_limit
            );
        }
        BenchCmd::Soak {
            rate,
            minutes,
            seconds,
            agents,
            size,
            dup_seconds,
        } => {
            let r = bench::soak(bench::SoakOptions {
                rate: *rate,
                seconds: seconds.unwrap_or(minutes * 60.0),
                agents: *agents,
                size: *size,
                dup_seconds: *dup_seconds,
                ..Default::default()
            })
            .await?;
            if cli.output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_soak(&r);
            }
            if r.stored != r.acked_new {
                anyhow::bail!("stored {} but acked {} new results", r.stored, r.acked_new);
            }
        }
        BenchCmd::Sessions {
            agents,
            idle_seconds,
        } => {
            let r = bench::sessions(*agents, *idle_seconds).await?;
            if cli.output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "sessions: {} concurrent (fd limit {})",
                r.sessions, r.fd_limit
            );
            println!("  connected in             {:.1} s", r.connect_seconds);
            println!(
                "  coordinator RSS          {:.0} MiB (peak {:.0} MiB; budget <= 1024 MiB: {:.2}x)",
                r.coordinator_rss_mib,
                r.coordinator_peak_rss_mib,
                r.coordinator_peak_rss_mib / 1024.0
            );
            println!(
                "  idle CPU                 {:.3} cores over {:.0} s",
                r.idle_cpu_cores, r.idle_window_s
            );
            println!(
                "dispatch: campaign -> task received by {}/{} agents",
                r.dispatch_received,
                r.sessions + 1
            );
            println!("  p50 / p99 / max          {:.0} / {:.0} / {:.0} ms   (budget p99 <= 1000 ms: {:.2}x)", r.dispatch_p50_ms, r.dispatch_p99_ms, r.dispatch_max_ms, r.dispatch_p99_ms / 1000.0);
        }
    }
    Ok(())
}

fn print_soak(r: &vantage_coordinator::bench::SoakReport) {
    println!(
        "soak: {} sessions, ~{} B results in batches of {}",
        r.agents, r.size, r.batch
    );
    println!(
        "  {:>6}  {:<5} {:>9} {:>5} {:>7} {:>10} {:>10} {:>10}",
        "t (s)", "phase", "RSS MiB", "fds", "threads", "stored", "store MiB", "acked"
    );
    for s in &r.samples {
        println!(
            "  {:>6.0}  {:<5} {:>9.1} {:>5} {:>7} {:>10} {:>10.1} {:>10}",
            s.t_s, s.phase, s.rss_mib, s.fds, s.threads, s.stored, s.store_mib, s.acked
        );
    }
    for p in &r.phases {
        println!(
            "phase {} ({:.0} s): target {:.0}/s, achieved {:.0}/s; sent {}, acked {}; store holds {}",
            p.phase, p.seconds, p.target_rate, p.achieved_rate, p.sent, p.acked, p.stored
        );
        println!(
            "  RSS median first {:.0} s {:.1} MiB, last {:.0} s {:.1} MiB; slope {:+.2} MiB/min",
            p.window_s, p.first_rss_mib, p.window_s, p.last_rss_mib, p.slope_mib_per_min
        );
        println!(
            "  fds {} -> {}, threads {} -> {}",
            p.first_fds, p.last_fds, p.first_threads, p.last_threads
        );
        println!("  verdict: {}", p.verdict);
    }
    println!(
        "results: sent {} new, acked {}, stored {} ({}); resends ignored as duplicates {}",
        r.sent_new,
        r.acked_new,
        r.stored,
        if r.stored == r.acked_new {
            "stored = acked"
        } else {
            "MISMATCH"
        },
        r.duplicates_ignored
    );
    println!(
        "ack latency p50 / p99 {:.1} / {:.1} ms; coordinator CPU {:.2} cores, peak RSS {:.0} MiB",
        r.ack_p50_ms, r.ack_p99_ms, r.coordinator_cpu_cores, r.coordinator_peak_rss_mib
    );
}

/// The verdict table: one row per (run, target, inside agent). COUNTRY
/// and ASN are the inside agent's (verdicts judge inside results against
/// the controls); NAME appears when any target has one.
fn print_verdicts(rows: &[VerdictRow]) {
    print!("{}", verdict_table(rows));
}

fn verdict_table(rows: &[VerdictRow]) -> String {
    use std::fmt::Write;
    let width = |f: fn(&VerdictRow) -> usize, min: usize, max: usize| {
        rows.iter().map(f).max().unwrap_or(min).clamp(min, max)
    };
    let tw = width(|r| r.target.chars().count(), 6, 60);
    let named = rows.iter().any(|r| !r.name.is_empty());
    let nw = width(|r| r.name.chars().count(), 4, 40);
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    if named {
        let _ = write!(out, "{:<nw$}  ", "NAME");
    }
    let _ = writeln!(
        out,
        "{:<tw$}  {:<7}  {:>8}  {:<12}  {:<16}  {:>4}  REASON",
        "TARGET", "COUNTRY", "ASN", "STATUS", "MECHANISM", "CONF"
    );
    for r in rows {
        if named {
            let _ = write!(out, "{:<nw$}  ", dash(&r.name));
        }
        let _ = writeln!(
            out,
            "{:<tw$}  {:<7}  {:>8}  {:<12}  {:<16}  {:>4.2}  {}",
            r.target,
            dash(&r.country),
            if r.asn == 0 {
                "-".to_string()
            } else {
                format!("AS{}", r.asn)
            },
            r.status,
            dash(&r.mechanism),
            r.confidence,
            r.reason
        );
    }
    out
}

fn print_status(s: &CampaignStatusResponse) {
    let c = s.campaign.clone().unwrap_or_default();
    println!(
        "{}  {}  {}  runs {}/{}  targets {}",
        c.campaign_id, c.name, c.state, c.runs_done, c.runs_total, c.targets
    );
    for r in &s.runs {
        println!("  run {} ({}) {}", r.index, r.run_id, r.state);
        for g in &r.groups {
            println!(
                "    {:<7} agents {:>3}  tasks {:>4}  done {:>4}  pending {:>4}  refused {:>3}  expired {:>3}",
                g.group, g.agents, g.tasks, g.done, g.pending, g.refused, g.expired
            );
        }
        for f in &r.failures {
            println!("    failure {:<40} {}", f.name, f.value);
        }
        for k in &r.skipped {
            println!("    skipped {k}");
        }
        for c in &r.consent_skipped {
            println!(
                "    not consented {:<12} {} task(s) (volunteers have not enabled {} probes in agent.toml)",
                c.name, c.value, c.name
            );
        }
    }
}

async fn campaign(
    cli: &Cli,
    admin: &mut AdminServiceClient<tonic::transport::Channel>,
    cmd: &CampaignCmd,
) -> Result<()> {
    let set = |id: &str, action: &str| SetCampaignStateRequest {
        campaign_id: id.to_string(),
        action: action.to_string(),
    };
    match cmd {
        CampaignCmd::Create { file } => {
            let spec = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let format = match file.extension().and_then(|e| e.to_str()) {
                Some("json") => "json",
                _ => "toml",
            };
            let r = admin
                .create_campaign(CreateCampaignRequest {
                    spec,
                    format: format.into(),
                })
                .await
                .map_err(|s| anyhow!("{}: {}", file.display(), s.message()))?
                .into_inner();
            if cli.output == Output::Table {
                println!("{}", r.campaign_id);
                eprintln!("{} run(s) scheduled", r.runs);
            } else {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        CampaignCmd::List => {
            let r = admin
                .list_campaigns(ListCampaignsRequest {})
                .await
                .map_err(human)?
                .into_inner();
            if cli.output == Output::Table {
                println!(
                    "{:<36}  {:<9}  {:>9}  {:>7}  NAME",
                    "CAMPAIGN", "STATE", "RUNS", "TARGETS"
                );
                for c in &r.campaigns {
                    println!(
                        "{:<36}  {:<9}  {:>4}/{:<4}  {:>7}  {}",
                        c.campaign_id, c.state, c.runs_done, c.runs_total, c.targets, c.name
                    );
                }
            } else {
                println!("{}", serde_json::to_string_pretty(&r.campaigns)?);
            }
        }
        CampaignCmd::Status { campaign_id, watch } => {
            let req = || CampaignStatusRequest {
                campaign_id: campaign_id.clone(),
            };
            if !watch {
                let r = admin
                    .campaign_status(req())
                    .await
                    .map_err(human)?
                    .into_inner();
                if cli.output == Output::Table {
                    print_status(&r);
                } else {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
                return Ok(());
            }
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} run {prefix} [{bar:40}] {pos}/{len} tasks {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            loop {
                let r = admin
                    .campaign_status(req())
                    .await
                    .map_err(human)?
                    .into_inner();
                let c = r.campaign.clone().unwrap_or_default();
                let current = r
                    .runs
                    .iter()
                    .rev()
                    .find(|x| x.state != "scheduled")
                    .or(r.runs.first());
                if let Some(run) = current {
                    let total: u32 = run.groups.iter().map(|g| g.tasks).sum();
                    let done: u32 = run
                        .groups
                        .iter()
                        .map(|g| g.done + g.refused + g.expired)
                        .sum();
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                    bar.set_prefix(run.index.to_string());
                    bar.set_message(format!("{} ({})", run.state, c.state));
                    // "complete": a coordinator from before runs said "done".
                    let finished = matches!(run.state.as_str(), "done" | "complete" | "cancelled");
                    if finished || c.state == "cancelled" || c.state == "done" {
                        bar.finish();
                        print_status(&r);
                        return Ok(());
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        CampaignCmd::Pause { campaign_id } => {
            let r = admin
                .set_campaign_state(set(campaign_id, "pause"))
                .await
                .map_err(human)?;
            println!("{}", r.into_inner().state);
        }
        CampaignCmd::Resume { campaign_id } => {
            let r = admin
                .set_campaign_state(set(campaign_id, "resume"))
                .await
                .map_err(human)?;
            println!("{}", r.into_inner().state);
        }
        CampaignCmd::Cancel { campaign_id } => {
            let r = admin
                .set_campaign_state(set(campaign_id, "cancel"))
                .await
                .map_err(human)?;
            println!("{}", r.into_inner().state);
        }
    }
    Ok(())
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, name: &str, country: &str) -> VerdictRow {
        VerdictRow {
            target: target.into(),
            name: name.into(),
            country: country.into(),
            asn: 4134,
            status: "blocked".into(),
            mechanism: "tcp.reset".into(),
            confidence: 0.9,
            ..Default::default()
        }
    }

    #[test]
    fn verdict_table_names_its_columns() {
        let plain = verdict_table(&[row("tcp 192.0.2.1:443", "", "CN")]);
        let head = plain.lines().next().unwrap();
        assert!(head.starts_with("TARGET "), "{plain}");
        assert!(head.contains("COUNTRY") && head.contains("ASN"), "{plain}");
        assert!(!head.contains("GROUP") && !head.contains("NAME"), "{plain}");
        assert!(plain.lines().nth(1).unwrap().contains("CN"), "{plain}");
        assert!(plain.contains("AS4134"), "{plain}");
        let named = verdict_table(&[
            row("tcp 192.0.2.1:443", "Signal relay", "CN"),
            row("tcp 192.0.2.2:443", "", ""),
        ]);
        let lines: Vec<&str> = named.lines().collect();
        assert!(lines[0].starts_with("NAME "), "{named}");
        assert!(lines[1].starts_with("Signal relay"), "{named}");
        assert!(lines[2].starts_with("- "), "no name, no country: {named}");
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
