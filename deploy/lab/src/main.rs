//! `vantage-lab`: build, inspect and tear down the censorship lab, print its
//! catalogue, and run the lab's own servers (DNS injector, QUIC SNI censor,
//! QUIC, TCP echo, silent server, WireGuard peer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use vantage_lab::{dns_injector, fleet, lab, plan, quic_censor, servers_rs, wireguard_peer};

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
    /// The demo: build the lab, start a coordinator and an inside and a
    /// control agent in it, run one campaign per condition, print the
    /// verdict table; then (with --serve) serve the dashboard until Ctrl-C;
    /// then tear the lab down (unless --keep).
    Demo {
        #[arg(long, default_value = "vd")]
        prefix: String,
        /// Where vantage-coordinator, vantagectl and vantage-agent are
        /// (default: next to vantage-lab).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Residual-blocking window of condition 11, seconds.
        #[arg(long, default_value_t = 20)]
        residual_window_secs: u32,
        /// Fail unless every verdict is the one the catalogue expects.
        #[arg(long)]
        check: bool,
        /// Write the verdicts with their expectations as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Link this machine to the coordinator's namespace and serve the
        /// dashboard until Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// Leave the lab, coordinator and agents running.
        #[arg(long)]
        keep: bool,
        /// Also measure the agent (idle RSS, wake-ups, binary size) and the
        /// web probe over this many lab URLs.
        #[arg(long)]
        bench_web: Option<usize>,
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
    /// Run the lab's silent server: accepts TCP and never sends a byte.
    SilentServer {
        #[arg(long = "listen", required = true)]
        listen: Vec<SocketAddr>,
    },
    /// Run the QUIC SNI censor on an NFQUEUE (inside the lab's firewall namespace).
    QuicCensor {
        #[arg(long, default_value_t = quic_censor::LAB_QUEUE)]
        queue: u16,
        /// Drop Initials whose SNI contains this (case-insensitive); repeatable.
        #[arg(long = "keyword", required = true)]
        keywords: Vec<String>,
        /// How long the rest of a blocked flow (its 5-tuple) stays dropped.
        #[arg(long, default_value_t = 180)]
        residual_window_secs: u64,
    },
    /// Run the lab's WireGuard peer (boringtun), answering the agent's probe key.
    WireguardPeer {
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
                        for i in &c.passes {
                            println!("  pass {}", serde_json::to_string(i)?);
                        }
                    }
                }
            }
        }
        Cmd::Demo {
            prefix,
            bin_dir,
            residual_window_secs,
            check,
            json,
            serve,
            keep,
            bench_web,
        } => {
            let opts = DemoOpts {
                check,
                json,
                serve,
                bench_web,
            };
            let mut cfg = lab::LabConfig::new(&prefix);
            cfg.residual_window_secs = residual_window_secs;
            let result = demo(&cfg, bin_dir.as_deref(), &opts);
            if keep && result.is_ok() {
                eprintln!(
                    "lab {prefix} left up (--keep); state in {}; tear down: vantage-lab down --prefix {prefix}",
                    cfg.state_dir.display()
                );
            } else {
                if result.is_err() {
                    keep_logs(&cfg);
                }
                lab::down(&prefix, &cfg.state_dir)
                    .with_context(|| format!("tearing down lab {prefix}"))?;
                eprintln!("lab {prefix} torn down");
            }
            result?;
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
        Cmd::SilentServer { listen } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(servers_rs::silent_server(&listen))?;
        }
        Cmd::QuicCensor {
            queue,
            keywords,
            residual_window_secs,
        } => {
            quic_censor::serve(queue, &keywords, Duration::from_secs(residual_window_secs))
                .with_context(|| format!("quic censor on nfqueue {queue}"))?;
        }
        Cmd::WireguardPeer { listen } => {
            let secret = plan::WIREGUARD_SECRET;
            let allowed = wireguard_peer::probe_public_key(&wireguard_peer::public_key(&secret));
            let threads: Vec<_> = listen
                .into_iter()
                .map(|addr| {
                    std::thread::spawn(move || {
                        wireguard_peer::serve(addr, secret, allowed)
                            .with_context(|| format!("wireguard peer on {addr}"))
                    })
                })
                .collect();
            for t in threads {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a wireguard peer thread panicked"))??;
            }
        }
    }
    Ok(())
}

struct DemoOpts {
    check: bool,
    json: Option<PathBuf>,
    serve: bool,
    bench_web: Option<usize>,
}

fn step(msg: &str) {
    eprintln!("\n== {msg}");
}

fn demo(
    cfg: &lab::LabConfig,
    bin_dir: Option<&std::path::Path>,
    opts: &DemoOpts,
) -> anyhow::Result<()> {
    let missing = vantage_lab::sys::missing_preconditions();
    if !missing.is_empty() {
        bail!(
            "the demo builds network namespaces and runs real servers; it needs {} \
             (run as root after `bash deploy/scripts/install-test-deps.sh`)",
            missing.join(", ")
        );
    }
    let bins = fleet::Bins::find(bin_dir)
        .and_then(fleet::Bins::require_all)
        .context("the fleet runs the workspace binaries (or pass --bin-dir)")?;
    step(&format!(
        "building the censorship lab `{}` (198.19.0.0/16, no default route anywhere)",
        cfg.prefix
    ));
    let mut st = lab::up(cfg).context("building the lab")?;
    eprintln!(
        "{} servers up; state in {}",
        st.processes.len(),
        cfg.state_dir.display()
    );
    step("coordinator (embedded sled store) in the core namespace; inside agent CN behind the firewall, control agent DE outside");
    let fl = fleet::Fleet::start(&cfg.state_dir, &mut st, bins, opts.serve)
        .context("starting the fleet")?;
    print!("{}", fl.ctl(&["agents"])?);
    let cat = plan::catalogue(cfg.residual_window_secs);
    step(&format!(
        "one campaign per condition ({} conditions; the residual-window one takes about {} s)",
        cat.len(),
        cfg.residual_window_secs
    ));
    let outcomes = fl.run_conditions(&cat, cfg.residual_window_secs, |done, total| {
        eprintln!("  campaigns done: {done}/{total}");
    })?;
    step("verdicts: inside against control, at the same moment");
    print!("{}", fleet::table(&outcomes));
    let wrong = outcomes.iter().filter(|o| !o.as_expected).count();
    println!(
        "{} verdicts, {} as expected, {wrong} not",
        outcomes.len(),
        outcomes.len() - wrong
    );
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_vec_pretty(&outcomes)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(n) = opts.bench_web {
        step(&format!(
            "agent benchmark (budgets: idle RSS <= 15 MiB, binary <= 15 MiB, no busy polling, web x{n} <= 30 s)"
        ));
        let b = fl.agent_bench(Duration::from_secs(20), n)?;
        println!(
            "agent idle RSS             {} KiB ({:.1} MiB)",
            b.idle_rss_kib,
            b.idle_rss_kib as f64 / 1024.0
        );
        println!(
            "agent idle wake-ups        {} per minute (context switches of all threads over 20 s)",
            b.idle_wakeups_per_minute
        );
        println!(
            "agent binary               {} bytes ({:.1} MiB)",
            b.binary_bytes,
            b.binary_bytes as f64 / 1048576.0
        );
        println!("web probe x {:<14} {:.1} s from campaign creation to run complete (inside + control, default concurrency)", b.web_targets, b.web_seconds);
    }
    if opts.check && wrong > 0 {
        bail!("{wrong} verdicts differ from the catalogue");
    }
    if opts.serve {
        step("dashboard");
        println!(
            "  http://{}:{}/   read token: {}",
            fleet::DASH_CORE_IP,
            fleet::HTTP_PORT,
            fl.read_token
        );
        println!(
            "  curl -H 'Authorization: Bearer {}' http://{}:{}/api/v1/verdicts",
            fl.read_token,
            fleet::DASH_CORE_IP,
            fleet::HTTP_PORT
        );
        println!("Press Ctrl-C to stop; the lab is torn down on exit.");
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        })?;
    }
    Ok(())
}

/// Before a failed demo's teardown: copy its logs out of the state dir.
fn keep_logs(cfg: &lab::LabConfig) {
    let to = std::env::temp_dir().join(format!("vantage-lab-{}-failed", cfg.prefix));
    let _ = std::fs::remove_dir_all(&to);
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&cfg.state_dir)
        .arg(&to)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if copied {
        eprintln!("demo failed: logs kept in {}", to.display());
    }
}
