//! `vantage-bench sink`: the ClickHouse sink against a 2-shard x
//! 2-replica cluster on this machine (the test kit's), and the aggregation
//! that ClickHouse answers from the sunk rows against the same count made
//! by scanning sled.
//!
//! Each run pumps results into a coordinator as fast as its agents are
//! acked while the sink copies them; the sink's rate is the results over
//! the time until ClickHouse confirmed the last one, reported as a ratio
//! to the ingest rate of the same run (1.0: the sink keeps up).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vantage_proto::v1::{SignedResult, StatsRequest};
use vantage_testkit::clickhouse::{Cluster, CLUSTER};

use crate::{bench_result, median, setup, BenchAgent, BenchError, CoordinatorProc, Pump};

/// What to run.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    pub agents: usize,
    pub per_agent: usize,
    pub size: usize,
    pub runs: usize,
    pub batch_size: usize,
    /// Synthetic rows inserted into ClickHouse for the aggregation.
    pub aggregation_rows: u64,
}

/// The report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SinkReport {
    pub results_per_run: usize,
    pub size: usize,
    pub batch_size: usize,
    pub ingest_per_s: Vec<f64>,
    pub sink_per_s: Vec<f64>,
    /// Sink over ingest, per run (1.0: it keeps up).
    pub sink_over_ingest: Vec<f64>,
    pub median_ingest_per_s: f64,
    pub median_sink_per_s: f64,
    pub median_sink_over_ingest: f64,
    /// Rows in ClickHouse for the aggregation (synthetic plus sunk).
    pub aggregation_rows: u64,
    /// `count() ... GROUP BY country, kind` through the
    /// Distributed table, median of 5, ms (clickhouse-client included).
    pub clickhouse_aggregation_ms: f64,
    /// The same with `FINAL` (exactly once across re-inserted rows).
    pub clickhouse_aggregation_final_ms: f64,
    /// The same count by scanning the coordinator's sled store (every
    /// result read and decoded), over the results it holds.
    pub sled_rows: u64,
    pub sled_aggregation_ms: f64,
    /// Rows per second each way, and ClickHouse's over sled's.
    pub clickhouse_rows_per_s: f64,
    pub sled_rows_per_s: f64,
    pub clickhouse_over_sled: f64,
    /// The sink alone: every stored result sent again from a reset
    /// position by a restarted coordinator with no ingest, results/s.
    pub catch_up_results: u64,
    pub catch_up_per_s: f64,
}

async fn stats(c: &CoordinatorProc) -> Result<vantage_proto::v1::StatsResponse, BenchError> {
    Ok(c.admin().await?.stats(StatsRequest {}).await?.into_inner())
}

/// Pumps `per_agent` results from every agent at once; the results acked.
async fn pump_all(
    c: &CoordinatorProc,
    agents: &[BenchAgent],
    per_agent: usize,
    size: usize,
    offset: usize,
) -> Result<u64, BenchError> {
    let mut tasks = Vec::new();
    for a in agents {
        let session = c.session(a, &[]).await?;
        let results: Vec<SignedResult> = (0..per_agent)
            .map(|i| bench_result(a, offset + i, size))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut p = Pump::new(session, 8);
            for chunk in results.chunks(100) {
                p.send(chunk.to_vec()).await?;
            }
            p.drain().await?;
            Ok::<u64, BenchError>(p.acked)
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.map_err(setup)??;
    }
    Ok(acked)
}

fn timed(c: &Cluster, sql: &str) -> Result<f64, BenchError> {
    let t = Instant::now();
    c.query(0, sql).map_err(setup)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Runs the sink benchmark.
pub async fn sink(o: SinkOptions) -> Result<SinkReport, BenchError> {
    eprintln!("starting a 2-shard x 2-replica ClickHouse cluster ...");
    let cluster = Cluster::start(2, 2).map_err(setup)?;
    let urls: Vec<String> = cluster
        .http_urls()
        .iter()
        .map(|u| format!("{u:?}"))
        .collect();
    let table = format!(
        "[sink.clickhouse]\nurls = [{}]\ncluster = \"{CLUSTER}\"\nbatch_size = {}\ninterval_ms = 200\n",
        urls.join(", "),
        o.batch_size
    );
    let mut c = CoordinatorProc::start_with(|co| co.add_config_table(&table))?;
    let agents = c.enroll(o.agents, &["bench"]).await?;
    let mut ingest_rates = Vec::new();
    let mut sink_rates = Vec::new();
    let mut ratios = Vec::new();
    let n = o.agents * o.per_agent;
    for run in 0..o.runs {
        let before = stats(&c).await?.sink.map(|s| s.last_seq).unwrap_or(0);
        let t0 = Instant::now();
        let acked = pump_all(&c, &agents, o.per_agent, o.size, run * o.per_agent).await?;
        let ingest_s = t0.elapsed().as_secs_f64();
        if acked != n as u64 {
            return Err(setup(format!("{acked} of {n} results acked")));
        }
        let until = Instant::now() + Duration::from_secs(600);
        loop {
            let s = stats(&c)
                .await?
                .sink
                .ok_or_else(|| setup("no sink status"))?;
            if s.last_seq >= before + n as u64 && s.lag_results == 0 {
                break;
            }
            if Instant::now() > until {
                return Err(setup(format!("the sink did not catch up: {s:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sink_s = t0.elapsed().as_secs_f64();
        let (i, s) = (n as f64 / ingest_s, n as f64 / sink_s);
        eprintln!("run {}: ingest {i:.0}/s, sink {s:.0}/s", run + 1);
        ingest_rates.push(i);
        sink_rates.push(s);
        ratios.push(s / i);
    }

    // Aggregation: synthetic rows (a spread of countries, kinds and
    // failures) plus the sunk ones.
    eprintln!("inserting {} synthetic rows ...", o.aggregation_rows);
    let synth = format!(
        "INSERT INTO vantage.results (id, coordinator, seq, agent, kind, country, asn, start, failure) \
         SELECT concat('synthetic-', toString(number)), 'synthetic', number, \
         concat('agent-', toString(number % 500)), \
         ['dns', 'tcp', 'tls', 'http', 'web', 'quic'][number % 6 + 1], \
         ['CN', 'IR', 'RU', 'DE', 'US', 'TR', 'IN', 'BR'][intHash32(number) % 8 + 1], \
         toUInt32(intHash32(number) % 3000), toDateTime(1700000000 + number % 31536000), \
         if(number % 7 = 0, 'connection_reset', '') FROM numbers({})",
        o.aggregation_rows
    );
    cluster
        .insert(0, &synth, "", &[("insert_distributed_sync", "1")])
        .map_err(setup)?;
    let group = "SELECT country, kind, count() FROM vantage.results {} \
                 GROUP BY country, kind FORMAT Null";
    let mut plain = Vec::new();
    let mut fin = Vec::new();
    for _ in 0..5 {
        plain.push(timed(&cluster, &group.replace("{}", ""))?);
        fin.push(timed(&cluster, &group.replace("{}", "FINAL"))?);
    }
    let rows: u64 = cluster
        .query(0, "SELECT count() FROM vantage.results")
        .map_err(setup)?
        .parse()
        .map_err(setup)?;

    // The same count over sled: every stored result read and decoded.
    c.terminate();
    let store = vantage_coordinator::store::Store::open(&c.dir.join("store")).map_err(setup)?;
    let mut sled_ms = Vec::new();
    let mut sled_rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut groups: HashMap<(String, String), u64> = HashMap::new();
        sled_rows = 0;
        for item in store.results_after_seq(0) {
            let (_, _, bytes) = item.map_err(setup)?;
            sled_rows += 1;
            use prost::Message;
            let Ok(sr) = vantage_proto::v1::StoredResult::decode(bytes.as_ref()) else {
                continue;
            };
            let Some(m) = sr
                .envelope
                .as_ref()
                .and_then(|e| vantage_proto::envelope::decode(e).ok())
            else {
                continue;
            };
            let labels = m.labels.clone().unwrap_or_default();
            let kind = m.input.as_ref().map(|i| i.kind_name()).unwrap_or("none");
            *groups
                .entry((labels.country, kind.to_string()))
                .or_default() += 1;
        }
        sled_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(store);

    // The sink alone: from a reset position, with nothing else to do
    // (the rows go in again, as differently cut batches: FINAL keeps one).
    vantage_coordinator::store::Store::open(&c.dir.join("store"))
        .and_then(|s| {
            s.sink_confirmed(vantage_coordinator::sink::CLICKHOUSE, 0)?;
            s.sync()
        })
        .map_err(setup)?;
    c.try_restart()?;
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(600);
    let catch_up_results = loop {
        let s = stats(&c)
            .await?
            .sink
            .ok_or_else(|| setup("no sink status"))?;
        if s.lag_results == 0 && s.cursor > 0 {
            break s.cursor;
        }
        if Instant::now() > until {
            return Err(setup(format!("the sink did not catch up: {s:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let catch_up_per_s = catch_up_results as f64 / t0.elapsed().as_secs_f64();
    eprintln!("catch-up: {catch_up_results} results at {catch_up_per_s:.0}/s");

    let ch_ms = median(&mut plain);
    let sled_med = median(&mut sled_ms);
    let ch_rate = rows as f64 / (ch_ms / 1000.0);
    let sled_rate = sled_rows as f64 / (sled_med / 1000.0);
    Ok(SinkReport {
        results_per_run: n,
        size: o.size,
        batch_size: o.batch_size,
        median_ingest_per_s: median(&mut ingest_rates.clone()),
        median_sink_per_s: median(&mut sink_rates.clone()),
        median_sink_over_ingest: median(&mut ratios.clone()),
        ingest_per_s: ingest_rates,
        sink_per_s: sink_rates,
        sink_over_ingest: ratios,
        aggregation_rows: rows,
        clickhouse_aggregation_ms: ch_ms,
        clickhouse_aggregation_final_ms: median(&mut fin),
        sled_rows,
        sled_aggregation_ms: sled_med,
        clickhouse_rows_per_s: ch_rate,
        sled_rows_per_s: sled_rate,
        clickhouse_over_sled: ch_rate / sled_rate,
        catch_up_results,
        catch_up_per_s,
    })
}
