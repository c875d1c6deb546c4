use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vantage_agent::probes::{self, ProbeContext, TargetPolicy};
use vantage_proto::v1::{Measurement, ProbeInput};

#[derive(Parser)]
#[command(name = "vantage-agent", version, about = "Vantage measurement agent")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    match cli.cmd {
        Cmd::Probe {
            input,
            allow_private_targets,
            timeout,
        } => {
            let input: ProbeInput =
                serde_json::from_str(&input).context("probe input is not valid JSON for a probe")?;
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
