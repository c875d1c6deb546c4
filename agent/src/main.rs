use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vantage_agent::probes::{self, ProbeContext, TargetPolicy};
use vantage_agent::{enroll, identity::Identity, session::Agent};
use vantage_proto::v1::{Labels, Measurement, ProbeInput};

#[derive(Parser)]
#[command(name = "vantage-agent", version, about = "Vantage measurement agent")]
struct Cli {
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll with a coordinator using a token from its operator. The key is
    /// generated here and never leaves this machine.
    Enroll {
        #[arg(long, env = "VANTAGE_TOKEN")]
        token: String,
        #[arg(
            long,
            env = "VANTAGE_AGENT_DIR",
            default_value = "/var/lib/vantage-agent"
        )]
        data_dir: PathBuf,
        /// ISO country code to attach to results (optional).
        #[arg(long, default_value = "")]
        country: String,
        /// Autonomous system number to attach to results (optional).
        #[arg(long, default_value_t = 0)]
        asn: u32,
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Connect to the coordinator and run tasks until stopped.
    Run {
        #[arg(
            long,
            env = "VANTAGE_AGENT_DIR",
            default_value = "/var/lib/vantage-agent"
        )]
        data_dir: PathBuf,
    },
    /// Testing and benchmarks: sign COUNT synthetic measurements (about
    /// SIZE bytes each) into the outbox and print their ids, one a line.
    /// `run` then delivers them like real results.
    #[command(hide = true)]
    FillOutbox {
        #[arg(long, env = "VANTAGE_AGENT_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
    },
    /// Show enrollment and outbox state.
    Status {
        #[arg(
            long,
            env = "VANTAGE_AGENT_DIR",
            default_value = "/var/lib/vantage-agent"
        )]
        data_dir: PathBuf,
    },
    /// Run one probe locally and print the (unsigned) measurement as JSON.
    /// Nothing is sent anywhere.
    Probe {
        /// The probe input as JSON, e.g. '{"tcp":{"host":"192.0.2.1","port":443}}'.
        input: String,
        /// Allow loopback, private and other special-purpose targets (lab use).
        #[arg(long)]
        allow_private_targets: bool,
        /// Hard deadline for the probe.
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        timeout: Duration,
    },
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m or h)")),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    vantage_proto::install_crypto_provider();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Text => fmt.try_init(),
        LogFormat::Json => fmt.json().try_init(),
    };
    match cli.cmd {
        Cmd::Enroll {
            token,
            data_dir,
            country,
            asn,
            tags,
        } => {
            let id = enroll::enroll(&data_dir, &token, Labels { country, asn, tags }).await?;
            println!("Enrolled as agent {}", id.agent_id);
            println!("  coordinator:    {}", id.coordinators.join(", "));
            println!("  CA fingerprint: sha256:{}", id.ca_sha256);
            println!("  data dir:       {}", data_dir.display());
            println!(
                "Review {}/agent.toml, then start: vantage-agent run --data-dir {}",
                data_dir.display(),
                data_dir.display()
            );
        }
        Cmd::Run { data_dir } => {
            let agent = Agent::open(data_dir)?;
            tracing::info!(agent = %agent.identity.agent_id, outbox = agent.outbox.len(), "agent starting");
            agent.run(shutdown_signal()).await;
            tracing::info!("agent stopped");
        }
        Cmd::FillOutbox {
            data_dir,
            count,
            size,
        } => {
            let agent = Agent::open(data_dir)?;
            let items = agent.synthetic(count, size);
            agent.outbox.push_many(&items)?;
            let mut out = String::with_capacity(count * 37);
            for (id, _) in &items {
                out.push_str(id);
                out.push('\n');
            }
            print!("{out}");
        }
        Cmd::Status { data_dir } => match Identity::load(&data_dir) {
            Err(e) => {
                println!("enrolled: no ({e})");
                std::process::exit(3);
            }
            Ok(id) => {
                println!("enrolled:       yes, agent {}", id.agent_id);
                println!("coordinator:    {}", id.coordinators.join(", "));
                let cfg = vantage_agent::config::AgentConfig::load(&data_dir)?;
                println!("consent kinds:  {}", cfg.consent.kinds.join(", "));
                println!("share labels:   {}", cfg.consent.share_network_labels);
                match vantage_agent::outbox::Outbox::open(&data_dir, cfg.limits.outbox_max_entries)
                {
                    Ok(o) => {
                        println!("running:        no");
                        println!("outbox depth:   {}", o.len());
                        println!("outbox dropped: {}", o.dropped());
                    }
                    Err(_) => println!("running:        yes (outbox in use by the running agent)"),
                }
            }
        },
        Cmd::Probe {
            input,
            allow_private_targets,
            timeout,
        } => {
            let input: ProbeInput = serde_json::from_str(&input)
                .context("probe input is not valid JSON for a probe")?;
            let ctx = ProbeContext::with_budget(
                TargetPolicy {
                    allow_private_targets,
                },
                timeout,
            );
            let start_us = vantage_proto::now_us();
            let out = probes::run(&input, &ctx).await;
            let m = Measurement {
                id: vantage_proto::envelope::new_id(),
                start_us,
                end_us: vantage_proto::now_us(),
                software_version: vantage_proto::SOFTWARE_VERSION.into(),
                input: Some(input),
                steps: out.steps,
                result: Some(out.result),
                ..Default::default()
            };
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
    }
    Ok(())
}
