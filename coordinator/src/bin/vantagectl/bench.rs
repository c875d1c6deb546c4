//! `vantagectl bench`: runs `vantage-bench` (the `bench/` crate), installed
//! beside `vantagectl`, with the same arguments. The load generators live
//! in their own crate so they are not part of the coordinator.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use crate::common::Output;

/// The benchmark binary's name.
const BENCH: &str = "vantage-bench";

/// Runs `vantage-bench [--output FORMAT] ARGS...` and ends with its status.
pub(crate) fn run(output: Output, args: &[String]) -> Result<()> {
    let exe = bench_exe()?;
    let mut cmd = std::process::Command::new(&exe);
    match output {
        Output::Table => {}
        Output::Json => {
            cmd.args(["--output", "json"]);
        }
        Output::Jsonl => {
            cmd.args(["--output", "jsonl"]);
        }
    }
    let status = cmd
        .args(args)
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// `vantage-bench` next to this executable.
fn bench_exe() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating vantagectl")?;
    let exe = me.with_file_name(BENCH);
    if exe.is_file() {
        return Ok(exe);
    }
    Err(anyhow!(
        "{BENCH} not found beside vantagectl ({}): the benchmarks are their own \
         binary; build it with `cargo build --release -p vantage-bench` \
         (or `cargo build --workspace --bins`)",
        exe.display()
    ))
}
