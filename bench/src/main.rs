//! `vantage-bench`: the benchmarks against a fresh coordinator started for
//! the purpose (its own temp data dir, loopback only). `vantagectl bench`
//! runs this binary from beside itself. The commands and what they report
//! are in BENCHMARKS.md and RELIABILITY.md.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "vantage-bench",
    version,
    about = "Benchmark a fresh Vantage coordinator on loopback",
    args_override_self = true
)]
struct Cli {
    /// Output format: a table, or the report as JSON.
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

#[tokio::main]
async fn main() {
    vantage_proto::install_crypto_provider();
    vantage_coordinator::logging::init(Default::default(), "warn");
    let cli = Cli::parse();
    if let Err(e) = run(cli.output, &cli.cmd).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[derive(Subcommand)]
enum Cmd {
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
    /// The ClickHouse sink into a 2-shard x 2-replica cluster on this
    /// machine (needs Debian's clickhouse-server and zookeeper): its rate
    /// as a ratio to ingest in the same run; then an aggregation from
    /// ClickHouse against the same count made by scanning sled.
    Sink {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        #[arg(long, default_value_t = 2_000)]
        per_agent: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 20_000)]
        batch_size: usize,
        /// Synthetic rows inserted for the aggregation.
        #[arg(long, default_value_t = 10_000_000)]
        aggregation_rows: u64,
    },
    /// Deriving change events (the pure step behind /api/v1/changes) over
    /// TARGETS series x RUNS runs of 2 inside agents each; a tenth of the
    /// series change twice (down, then back), a tenth flap once.
    Changes {
        #[arg(long, default_value_t = 1_000)]
        targets: usize,
        #[arg(long, default_value_t = 100)]
        runs: usize,
    },
    /// Reads of a large campaign (TARGETS x RUNS, an inside and a control
    /// agent), filled through the commit path in this process: `campaign
    /// status` and the verdicts, with the results each read decodes.
    Reads {
        #[arg(long, default_value_t = 1_000)]
        targets: usize,
        #[arg(long, default_value_t = 100)]
        runs: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// The agent's footprint: binary size, idle RSS and wake-ups, and peak
    /// RSS with its concurrent web probes in flight, for the host build and
    /// each cross build present (arm under qemu).
    Agent {
        /// `host`, a target triple, or a path to an agent binary for this
        /// machine; repeat. Default: host and every cross build that exists.
        #[arg(long = "build")]
        builds: Vec<String>,
        #[arg(long, default_value_t = 60.0)]
        idle_seconds: f64,
        #[arg(long, default_value_t = 256)]
        web_tasks: usize,
        /// The agent's limits.max_concurrency (its default is 32).
        #[arg(long, default_value_t = 32)]
        concurrency: u32,
        #[arg(long, default_value_t = 500)]
        server_delay_ms: u64,
        #[arg(long, default_value_t = 64)]
        page_kib: usize,
    },
    /// N concurrent sessions with heartbeats: memory and idle CPU; then a
    /// campaign for all of them and the time until each has its task.
    Sessions {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 30.0)]
        idle_seconds: f64,
        /// The coordinator's `http2_keepalive_interval_s` (default: its
        /// own default, 10 s): what its PINGs cost an idle fleet.
        #[arg(long)]
        keepalive_seconds: Option<u64>,
    },
}

async fn run(output: Output, cmd: &Cmd) -> Result<()> {
    match cmd {
        Cmd::Ingest {
            agents,
            per_agent,
            size,
            runs,
            campaign_targets,
        } => {
            let r =
                vantage_bench::ingest(*agents, *per_agent, *size, *runs, *campaign_targets).await?;
            if output != Output::Table {
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
            println!(
                "  disk per stored result   {:.0} B value log + {:.0} B sled, {:.2}x the {:.0} B envelope (budget <= 1.2)",
                r.store_value_log_bytes_per_result,
                r.store_sled_bytes_per_result,
                r.disk_over_envelope,
                r.envelope_bytes
            );
        }
        Cmd::Soak {
            rate,
            minutes,
            seconds,
            agents,
            size,
            dup_seconds,
        } => {
            let r = vantage_bench::soak(vantage_bench::SoakOptions {
                rate: *rate,
                seconds: seconds.unwrap_or(minutes * 60.0),
                agents: *agents,
                size: *size,
                dup_seconds: *dup_seconds,
                ..Default::default()
            })
            .await?;
            if output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_soak(&r);
            }
            if r.stored != r.acked_new {
                anyhow::bail!("stored {} but acked {} new results", r.stored, r.acked_new);
            }
        }
        Cmd::Sink {
            agents,
            per_agent,
            size,
            runs,
            batch_size,
            aggregation_rows,
        } => {
            let r = vantage_bench::sink::sink(vantage_bench::sink::SinkOptions {
                agents: *agents,
                per_agent: *per_agent,
                size: *size,
                runs: *runs,
                batch_size: *batch_size,
                aggregation_rows: *aggregation_rows,
            })
            .await?;
            if output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "sink: {} results of ~{} B per run into a 2x2 ClickHouse cluster, batches of {}",
                r.results_per_run, r.size, r.batch_size
            );
            println!(
                "  ingest results/s per run {:?}",
                r.ingest_per_s.iter().map(|x| x.round()).collect::<Vec<_>>()
            );
            println!(
                "  sink results/s per run   {:?}",
                r.sink_per_s.iter().map(|x| x.round()).collect::<Vec<_>>()
            );
            println!(
                "  median ingest / sink     {:.0}/s / {:.0}/s   (sink / ingest: {:.2}; budget 50000/s: {:.2}x)",
                r.median_ingest_per_s,
                r.median_sink_per_s,
                r.median_sink_over_ingest,
                r.median_sink_per_s / 50_000.0
            );
            println!("aggregation: count by country and kind, median",);
            println!(
                "  ClickHouse, {} rows      {:.0} ms ({:.0} ms with FINAL), {:.0} rows/s",
                r.aggregation_rows,
                r.clickhouse_aggregation_ms,
                r.clickhouse_aggregation_final_ms,
                r.clickhouse_rows_per_s
            );
            println!(
                "  sled scan, {} rows        {:.0} ms, {:.0} rows/s",
                r.sled_rows, r.sled_aggregation_ms, r.sled_rows_per_s
            );
            println!(
                "  ClickHouse / sled         {:.1}x rows/s",
                r.clickhouse_over_sled
            );
        }
        Cmd::Changes { targets, runs } => {
            let r = vantage_bench::changes(*targets, *runs);
            if output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "changes: {} series x {} runs ({} verdict rows), {} events",
                r.series, r.runs, r.rows, r.events
            );
            println!(
                "  derive, median of {}    {:.1} ms ({:.0} rows/s)",
                r.repeats, r.median_ms, r.rows_per_s
            );
        }
        Cmd::Reads {
            targets,
            runs,
            repeats,
        } => {
            let r = vantage_bench::reads::reads(*targets, *runs, *repeats).await?;
            if output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "reads: a campaign of {} targets x {} runs, {} results (filled at {:.0}/s)",
                r.targets, r.runs, r.results, r.fill_results_per_s
            );
            for x in &r.reads {
                println!(
                    "  {:<40} median of {}: {:>8.1} ms, {} results decoded, {} rows",
                    x.name, x.repeats, x.median_ms, x.decoded_per_read, x.rows
                );
            }
            println!(
                "  RSS after the fill {:.0} MiB, after the reads {:.0} MiB",
                r.rss_after_fill_mib, r.rss_after_reads_mib
            );
        }
        Cmd::Agent {
            builds,
            idle_seconds,
            web_tasks,
            concurrency,
            server_delay_ms,
            page_kib,
        } => {
            let r = vantage_bench::agent::agent(vantage_bench::agent::AgentOptions {
                builds: builds.clone(),
                idle_seconds: *idle_seconds,
                web_tasks: *web_tasks,
                concurrency: *concurrency,
                server_delay_ms: *server_delay_ms,
                page_kib: *page_kib,
            })
            .await?;
            if output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            print_agent(&r);
        }
        Cmd::Sessions {
            agents,
            idle_seconds,
            keepalive_seconds,
        } => {
            let r = vantage_bench::sessions(*agents, *idle_seconds, *keepalive_seconds).await?;
            if output != Output::Table {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "sessions: {} concurrent (fd limit {})",
                r.sessions, r.fd_limit
            );
            println!("  connected in             {:.1} s", r.connect_seconds);
            println!(
                "  coordinator RSS          {:.0} MiB (peak {:.0} MiB; {:.1} KiB per session)",
                r.coordinator_rss_mib,
                r.coordinator_peak_rss_mib,
                r.coordinator_rss_mib * 1024.0 / r.sessions as f64
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

fn print_soak(r: &vantage_bench::SoakReport) {
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

fn print_agent(r: &vantage_bench::agent::AgentReport) {
    use vantage_bench::agent::*;
    const MIB: f64 = 1024.0 * 1024.0;
    println!(
        "agent footprint: web probes with max_concurrency {}, each answer after {} ms, {} KiB pages",
        r.concurrency, r.server_delay_ms, r.page_kib
    );
    println!(
        "  {:<31} {:>12} {:>13} {:>13} {:>15} {:>14}",
        "build", "binary MiB", "idle RSS MiB", "wake-ups/min", "web peak RSS", "web in flight"
    );
    for b in &r.builds {
        let name = match &b.emulator {
            Some(_) => format!("{} (qemu)", b.build),
            None => b.build.clone(),
        };
        println!(
            "  {:<31} {:>12.2} {:>13.2} {:>13.0} {:>11.2} MiB {:>14}",
            name,
            b.binary_bytes as f64 / MIB,
            b.idle_rss_kib as f64 / 1024.0,
            b.idle_wakeups_per_minute,
            b.web_peak_rss_kib as f64 / 1024.0,
            b.web_max_in_flight
        );
    }
    println!("budgets (ratio = measured / budget; RSS under qemu includes the emulator):");
    for b in &r.builds {
        println!(
            "  {:<31} binary {:.2}x of {BINARY_BUDGET_MIB} MiB, idle RSS {:.2}x of {IDLE_RSS_BUDGET_MIB} MiB, \
             wake-ups {:.2}x of {WAKEUPS_BUDGET_PER_MIN}/min, web peak {:.2}x of {WEB_PEAK_BUDGET_MIB} MiB; \
             {}/{} web results in {:.1} s, idle window {:.0} s",
            b.build,
            b.binary_bytes as f64 / MIB / BINARY_BUDGET_MIB,
            b.idle_rss_kib as f64 / 1024.0 / IDLE_RSS_BUDGET_MIB,
            b.idle_wakeups_per_minute / WAKEUPS_BUDGET_PER_MIN,
            b.web_peak_rss_kib as f64 / 1024.0 / WEB_PEAK_BUDGET_MIB,
            b.web_results,
            b.web_tasks,
            b.web_seconds,
            b.idle_seconds
        );
    }
}
