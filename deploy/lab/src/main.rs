//! `vantage-lab`: build, inspect and tear down the censorship lab, print its
//! catalogue, and run the lab's own servers (DNS injector, QUIC, TCP echo).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use vantage_lab::{dns_injector, lab, plan, servers_rs};

#[derive(Parser)]
#[command(
    name = "vantage-lab",
    version,
    about = "The Vantage censorship lab (network namespaces)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab (cleaning a previous or half-built one with the same prefix first).
    Up {
        #[arg(long, default_value = "vl")]
        prefix: String,
        /// Where configs, certificates, logs and the PID list go
        /// (default /run/vantage-lab/<prefix>).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Residual-blocking window after a fully-encrypted trigger, seconds.
        #[arg(long, default_value_t = 180)]
        residual_window_secs: u32,
        /// How long the DNS injector holds the genuine query of an injected name.
        #[arg(long, default_value_t = 200)]
        injection_delay_ms: u32,
    },
    /// Tear the lab down (idempotent).
    Down {
        #[arg(long, default_value = "vl")]
        prefix: String,
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Show which namespaces and servers exist.
    Status {
        #[arg(long, default_value = "vl")]
        prefix: String,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the catalogue of censorship conditions and their probe inputs.
    Targets {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The residual window the lab runs with (spreads the encrypted retests).
        #[arg(long, default_value_t = 180)]
        residual_window_secs: u32,
    },
    /// Run the on-path DNS injector (inside the lab's injector namespace).
    DnsInjector {
        /// NAME=IPV4[,replay] or NAME=nxdomain[,replay]; repeatable.
        #[arg(long = "rule", required = true)]
        rules: Vec<dns_injector::Rule>,
        #[arg(long, default_value_t = 200)]
        replay_delay_ms: u64,
    },
    /// Run the lab's QUIC server (handshakes, echoes bidirectional streams).
    QuicServer {
        #[arg(long = "listen", required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Run the lab's TCP echo server.
    EchoServer {
        #[arg(long = "listen", required = true)]
        listen: Vec<SocketAddr>,
    },
}

fn state_dir(prefix: &str, given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| lab::default_state_dir(prefix))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Up {
            prefix,
            state_dir: dir,
            residual_window_secs,
            injection_delay_ms,
        } => {
            let mut cfg = lab::LabConfig::new(&prefix);
            cfg.state_dir = state_dir(&prefix, dir);
            cfg.residual_window_secs = residual_window_secs;
            cfg.injection_delay_ms = injection_delay_ms;
            match lab::up(&cfg) {
                Ok(st) => {
                    println!(
                        "lab {prefix} is up: {} servers, state in {}",
                        st.processes.len(),
                        cfg.state_dir.display()
                    );
                }
                Err(e) => {
                    // Leave nothing half-built behind.
                    let _ = lab::down(&prefix, &cfg.state_dir);
                    return Err(e).context(format!("building lab {prefix}"));
                }
            }
        }
        Cmd::Down {
            prefix,
            state_dir: dir,
        } => {
            let dir = state_dir(&prefix, dir);
            lab::down(&prefix, &dir).with_context(|| format!("tearing down lab {prefix}"))?;
            println!("lab {prefix} is down");
        }
        Cmd::Status {
            prefix,
            state_dir: dir,
            format,
        } => {
            let dir = state_dir(&prefix, dir);
            let st = lab::status(&prefix, &dir)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                Format::Text => {
                    println!("lab {} (state {})", st.prefix, st.state_dir.display());
                    for n in &st.namespaces {
                        let state = if n.exists { "present" } else { "absent" };
                        println!("  netns {:<24} {state}", n.name);
                    }
                    for p in &st.processes {
                        println!(
                            "  {:<14} pid {:<8} {:<8} in {}",
                            p.proc.name,
                            p.proc.pid,
                            if p.running { "running" } else { "gone" },
                            p.proc.namespace
                        );
                    }
                    println!("  build complete: {}", st.complete);
                }
            }
        }
        Cmd::Targets {
            format,
            residual_window_secs,
        } => {
            let cat = plan::catalogue(residual_window_secs);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&cat)?),
                Format::Text => {
                    for c in &cat {
                        let m = if c.mechanism.is_empty() {
                            "-"
                        } else {
                            c.mechanism
                        };
                        println!(
                            "{:>2} {:<22} {:<14} {:<8} {m}",
                            c.number, c.name, c.target, c.expected_status
                        );
                        for i in &c.inputs {
                            println!("       {}", serde_json::to_string(i)?);
                        }
                    }
                }
            }
        }
        Cmd::DnsInjector {
            rules,
            replay_delay_ms,
        } => {
            if rules.is_empty() {
                bail!("no --rule given");
            }
            dns_injector::run(rules, Duration::from_millis(replay_delay_ms))
                .context("dns injector")?;
        }
        Cmd::QuicServer { listen, cert, key } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(servers_rs::quic_server(&listen, &cert, &key))?;
        }
        Cmd::EchoServer { listen } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(servers_rs::echo_server(&listen))?;
        }
    }
    Ok(())
}
