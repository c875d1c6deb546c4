use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vantage_agent::probes::{self, ProbeContext, TargetPolicy};
use vantage_agent::{enroll, identity::Identity, session::Agent, status};
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
        /// Accept the consent notice without the interactive prompt (for
        /// automated installs: read it first with `vantage-agent consent-notice`).
        #[arg(long)]
        accept_consent: bool,
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
    /// Show enrollment, connection and outbox state, results sent in the
    /// last 24 hours and the consent settings.
    Status {
        #[arg(
            long,
            env = "VANTAGE_AGENT_DIR",
            default_value = "/var/lib/vantage-agent"
        )]
        data_dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the consent notice that `enroll` asks the volunteer to accept.
    ConsentNotice,
    /// Print a shell completion script on stdout.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    #[command(hide = true)]
    Manpage,
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
        /// A PEM file of extra CAs to trust (repeatable), as agent.toml's
        /// `extra_ca_files`.
        #[arg(long = "ca-file")]
        ca_files: Vec<PathBuf>,
    },
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

/// Shows the consent notice and asks for `yes`, unless consent is already
/// recorded in `dir` or `--accept-consent` was given. Records the acceptance.
fn obtain_consent(dir: &std::path::Path, accept_flag: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if let Some(rec) = enroll::consent(dir) {
        eprintln!(
            "Consent already given on {} ({}).",
            status::format_utc(rec.accepted_us),
            rec.method
        );
        return Ok(());
    }
    if accept_flag {
        enroll::record_consent(dir, "flag")?;
        return Ok(());
    }
    let mut err = std::io::stderr();
    writeln!(err, "{}", enroll::CONSENT_NOTICE)?;
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "consent was not given: standard input is not a terminal, so the notice above \
             cannot be answered; read it and re-run with --accept-consent to accept it"
        );
    }
    write!(
        err,
        "Type \"yes\" to accept and enroll, anything else to stop: "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    enroll::check_answer(&answer)?;
    enroll::record_consent(dir, "prompt")?;
    Ok(())
}

/// Effective uid of this process (Linux), from /proc.
fn euid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `vantage-agent status`.
fn show_status(data_dir: &std::path::Path, json: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let now = vantage_proto::now_us();
    let id = match Identity::load(data_dir) {
        Ok(id) => Some(id),
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"enrolled": false, "error": e.to_string()})
                );
            } else {
                println!("enrolled:        no ({e})");
            }
            std::process::exit(3);
        }
    };
    let id = id.context("identity")?;
    let cfg = vantage_agent::config::AgentConfig::load(data_dir)?;
    let consent = enroll::consent(data_dir);
    let file = status::read(data_dir).unwrap_or_else(|e| {
        eprintln!("warning: {e}");
        None
    });
    let running = file.as_ref().is_some_and(|s| s.writer_alive());
    // Read the outbox directly only when no agent holds it and the data dir
    // is ours (opening the outbox as another user, e.g. root against the
    // service's directory, could leave files the service cannot write).
    let owner_ok = std::fs::metadata(data_dir)
        .map(|m| euid().is_none_or(|u| u == m.uid()))
        .unwrap_or(false);
    let mut locked = false;
    let direct = if running || !owner_ok {
        None
    } else {
        match vantage_agent::outbox::Outbox::open(data_dir, cfg.limits.outbox_max_entries) {
            Ok(o) => Some((o.len(), o.dropped())),
            Err(_) => {
                // Held by an agent that has not written its status yet.
                locked = true;
                None
            }
        }
    };
    let running = running || locked;
    let (depth, dropped, figures_from) = match (&direct, &file) {
        (Some((d, x)), _) => (Some(*d), Some(*x), "outbox".to_string()),
        (None, Some(s)) => (
            Some(s.outbox_depth),
            Some(s.outbox_dropped),
            format!("status.json, {}", status::format_utc(s.updated_us)),
        ),
        (None, None) => (None, None, "unavailable".to_string()),
    };
    let connected = running && file.as_ref().is_some_and(|s| s.connected);
    let sent_24h = file.as_ref().map(|s| s.delivered_24h(now)).unwrap_or(0);
    let rejected = file.as_ref().map(|s| s.rejected_total).unwrap_or(0);
    if json {
        let v = serde_json::json!({
            "enrolled": true,
            "agent_id": id.agent_id,
            "coordinators": id.coordinators,
            "running": running,
            "pid": file.as_ref().filter(|s| s.writer_alive()).map(|s| s.pid),
            "connected": connected,
            "since_us": file.as_ref().map(|s| s.since_us),
            "outbox_depth": depth,
            "outbox_dropped": dropped,
            "figures_from": figures_from,
            "sent_24h": sent_24h,
            "delivered_total": file.as_ref().map(|s| s.delivered_total).unwrap_or(0),
            "rejected_total": rejected,
            "consent": {
                "accepted_us": consent.as_ref().map(|c| c.accepted_us),
                "method": consent.as_ref().map(|c| c.method.clone()),
                "kinds": cfg.consent.kinds,
                "share_network_labels": cfg.consent.share_network_labels,
                "allow_private_targets": cfg.allow_private_targets,
            },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into());
    println!("enrolled:        yes, agent {}", id.agent_id);
    println!("coordinator:     {}", id.coordinators.join(", "));
    match (&file, running) {
        (Some(s), true) if s.writer_alive() => println!("agent running:   yes (pid {})", s.pid),
        (_, true) => println!("agent running:   yes (the outbox is in use)"),
        _ => println!("agent running:   no"),
    }
    match (&file, connected) {
        (Some(s), true) => println!(
            "connected:       yes, since {}",
            status::format_utc(s.since_us)
        ),
        (Some(s), false) if running => println!(
            "connected:       no (reconnecting since {})",
            status::format_utc(s.since_us)
        ),
        _ => println!("connected:       no"),
    }
    println!("outbox depth:    {}  (from {figures_from})", opt(depth));
    println!(
        "outbox dropped:  {}  (oldest results dropped when full)",
        opt(dropped)
    );
    println!("sent, last 24 h: {sent_24h}");
    println!("rejected:        {rejected}  (results the coordinator refused)");
    match &consent {
        Some(c) => println!(
            "consent:         accepted {} ({})",
            status::format_utc(c.accepted_us),
            c.method
        ),
        None => println!("consent:         not recorded (enrolled before consent was asked)"),
    }
    println!("consent kinds:   {}", cfg.consent.kinds.join(", "));
    println!("share labels:    {}", cfg.consent.share_network_labels);
    println!("private targets: {}", cfg.allow_private_targets);
    Ok(())
}

/// Colour (ANSI escapes) in the logs only on a terminal, and never when
/// NO_COLOR is set to anything non-empty (<https://no-color.org>): a serial
/// console or a journal gets plain text.
fn colour_on_stderr() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

// One thread: an agent mostly waits, and a single-threaded runtime has
// no workers to wake each other (idle wake-ups and RSS, BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    vantage_proto::install_crypto_provider();
    let cli = Cli::parse();
    let fmt = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    let filter = vantage_agent::log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let _ = match cli.log_format {
        LogFormat::Text => fmt.finish().with(filter).try_init(),
        LogFormat::Json => fmt.json().finish().with(filter).try_init(),
    };
    match cli.cmd {
        Cmd::Enroll {
            token,
            data_dir,
            country,
            asn,
            tags,
            accept_consent,
        } => {
            enroll::precheck(&data_dir, &token)?;
            obtain_consent(&data_dir, accept_consent)?;
            let id = enroll::enroll(&data_dir, &token, Labels { country, asn, tags }).await?;
            println!("Enrolled as agent {}", id.agent_id);
            println!("  coordinator:    {}", id.coordinators.join(", "));
            println!("  CA fingerprint: sha256:{}", id.ca_sha256);
            println!("  data dir:       {}", data_dir.display());
            print!("{}", enroll::kinds_notice(&data_dir));
            println!(
                "Review {}/agent.toml, then start: vantage-agent run --data-dir {}",
                data_dir.display(),
                data_dir.display()
            );
        }
        Cmd::Run { data_dir } => {
            let agent = Agent::open_to_run(data_dir)?;
            let cas = agent.config.extra_ca_paths(&agent.dir);
            let added = probes::tls::set_extra_ca_files(&cas).context("agent.toml")?;
            if added > 0 {
                tracing::info!(certificates = added, "trusting extra CAs from agent.toml");
            }
            tracing::info!(agent = %agent.identity.agent_id, outbox = agent.outbox.len(), "agent starting");
            // Tell `status` at once that an agent runs, before any session.
            status::record(&agent.dir, &agent.outbox, status::Event::Disconnected);
            agent.clone().run(vantage_proto::shutdown_signal()).await;
            status::record(&agent.dir, &agent.outbox, status::Event::Disconnected);
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
        Cmd::Status { data_dir, json } => show_status(&data_dir, json)?,
        Cmd::ConsentNotice => print!("{}", enroll::CONSENT_NOTICE),
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "vantage-agent",
                &mut std::io::stdout(),
            );
        }
        Cmd::Manpage => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Cmd::Probe {
            input,
            allow_private_targets,
            timeout,
            ca_files,
        } => {
            probes::tls::set_extra_ca_files(&ca_files).context("--ca-file")?;
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
