//! Reads of a large campaign (`vantage-bench reads`): a campaign of
//! TARGETS TCP targets × RUNS runs, one inside and one control agent,
//! written into a fresh store in this process through the real commit
//! path (value log, sled batch, fdatasync), with its tasks and run records
//! as dispatch stores them. Then the two reads dashboards make, each timed
//! with the number of stored results it decoded: `campaign status`, and
//! the campaign's verdicts with every run's stored, with one run dirty
//! (results arrived since its verdicts were stored: what ingest leaves
//! while a run is open), and with every run dirty (a restart).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use vantage_coordinator::state::Shared;
use vantage_coordinator::store::{
    AgentRecord, CampaignRecord, PendingResult, RunRecord, RunState, TaskAssignment, TaskRecord,
};
use vantage_coordinator::verdicts::RESULTS_DECODED;
use vantage_proto::v1::{measurement, Failure, Measurement, StoredResult, TcpResult};

use crate::{median, setup, BenchError};

/// One timed read: median of its repeats, and results decoded per read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Read {
    pub name: String,
    pub repeats: usize,
    pub median_ms: f64,
    pub decoded_per_read: u64,
    pub rows: usize,
}

/// Outcome of the reads benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadsReport {
    pub targets: usize,
    pub runs: usize,
    pub results: usize,
    pub fill_seconds: f64,
    pub fill_results_per_s: f64,
    pub reads: Vec<Read>,
    /// The process's RSS after the fill and after the reads (MiB).
    pub rss_after_fill_mib: f64,
    pub rss_after_reads_mib: f64,
}

fn agent(name: &str, country: &str) -> (AgentRecord, SigningKey) {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let rec = AgentRecord {
        agent_id: vantage_proto::envelope::new_id(),
        public_key: hex_key(&key),
        country: country.into(),
        asn: 64_500,
        tags: vec![name.into()],
        ..Default::default()
    };
    (rec, key)
}

fn hex_key(key: &SigningKey) -> String {
    key.verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What ingest hands the commit thread for `m`, signed by `key`.
fn pending(m: &Measurement, key: &SigningKey) -> PendingResult {
    use prost::Message;
    let env = vantage_proto::envelope::sign(key, m);
    let id = |s: &str| vantage_coordinator::store::uuid_key(s);
    PendingResult {
        id: id(&m.id).unwrap_or_default(),
        agent: id(&m.agent_id).unwrap_or_default(),
        task: id(&m.task_id),
        campaign: id(&m.campaign_id),
        run: id(&m.campaign_id).map(|c| vantage_coordinator::store::run_owner(&c, &m.run_id)),
        value: StoredResult {
            envelope: Some(env.clone()),
            agent_id: m.agent_id.clone(),
            received_us: vantage_proto::now_us(),
            seq: 0,
        }
        .encode_to_vec(),
        measurement: env.measurement,
    }
}

/// Times `f` `repeats` times: the median (ms), results decoded per call,
/// and the rows of the last call.
fn timed(
    name: &str,
    repeats: usize,
    mut before: impl FnMut(),
    mut f: impl FnMut() -> Result<usize, BenchError>,
) -> Result<Read, BenchError> {
    let mut ms = Vec::with_capacity(repeats);
    let mut decoded = 0;
    let mut rows = 0;
    for _ in 0..repeats {
        before();
        let d0 = RESULTS_DECODED.load(Ordering::Relaxed);
        let t = Instant::now();
        rows = f()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        decoded = RESULTS_DECODED.load(Ordering::Relaxed) - d0;
    }
    let r = Read {
        name: name.into(),
        repeats,
        median_ms: median(&mut ms),
        decoded_per_read: decoded,
        rows,
    };
    eprintln!(
        "  {:<40} {:>9.1} ms  ({} results decoded, {} rows)",
        r.name, r.median_ms, r.decoded_per_read, r.rows
    );
    Ok(r)
}

/// Runs the reads benchmark.
pub async fn reads(targets: usize, runs: usize, repeats: usize) -> Result<ReadsReport, BenchError> {
    let dir = tempfile::tempdir()?;
    vantage_coordinator::pki::init(dir.path(), &["localhost".into()]).map_err(setup)?;
    let s: Shared = vantage_coordinator::server::open_state(
        dir.path(),
        vantage_coordinator::config::Config::new("127.0.0.1:0".into(), vec![]),
    )
    .map_err(setup)?;
    let (inside, inside_key) = agent("in", "CN");
    let (control, control_key) = agent("ctl", "NL");
    s.store.put_agent(&inside).map_err(setup)?;
    s.store.put_agent(&control).map_err(setup)?;

    let mut spec = String::from(
        "version = 1\nname = \"bench reads\"\nallow_private_targets = true\n\
         [inside]\ntags = [\"in\"]\n[control]\ntags = [\"ctl\"]\n",
    );
    for i in 0..targets {
        spec.push_str(&format!(
            "[[targets]]\ntcp = {{ host = \"192.0.2.1\", port = {} }}\n",
            1000 + i
        ));
    }
    let spec = vantage_coordinator::scheduler::parse_spec(
        &spec,
        vantage_coordinator::scheduler::SpecFormat::Toml,
    )
    .map_err(setup)?;
    let campaign_id = vantage_proto::envelope::new_id();
    let mut rec = CampaignRecord {
        campaign_id: campaign_id.clone(),
        name: "bench reads".into(),
        description: String::new(),
        state: Default::default(),
        created_us: s.store.new_campaign_time().map_err(setup)?,
        spec: spec.clone(),
        runs: Vec::new(),
    };
    eprintln!(
        "filling a campaign of {targets} targets x {runs} runs ({} results) ...",
        2 * targets * runs
    );
    let t0 = Instant::now();
    let mut results = 0usize;
    for index in 0..runs {
        let run_id = vantage_proto::envelope::new_id();
        let mut run = RunRecord {
            run_id: run_id.clone(),
            index: index as u32,
            state: RunState::Done,
            inside: vec![inside.agent_id.clone()],
            control: vec![control.agent_id.clone()],
            ..Default::default()
        };
        let mut tasks = Vec::with_capacity(targets);
        let mut batch = Vec::with_capacity(2 * targets);
        for (i, input) in spec.targets.iter().enumerate() {
            let task = TaskRecord {
                task_id: vantage_proto::envelope::new_id(),
                campaign_id: campaign_id.clone(),
                run_id: run_id.clone(),
                created_us: vantage_proto::now_us(),
                deadline_us: vantage_proto::now_us() + 3_600_000_000,
                input: serde_json::to_value(input).unwrap_or_default(),
                assignments: BTreeMap::from([
                    (inside.agent_id.clone(), TaskAssignment::Done),
                    (control.agent_id.clone(), TaskAssignment::Done),
                ]),
            };
            for (a, key) in [(&inside, &inside_key), (&control, &control_key)] {
                // A tenth of the targets are reset inside: failures for
                // the status to count and verdicts to find.
                let blocked = a.agent_id == inside.agent_id && i % 10 == 0;
                let now = vantage_proto::now_us();
                let m = Measurement {
                    id: vantage_proto::envelope::new_id(),
                    agent_id: a.agent_id.clone(),
                    task_id: task.task_id.clone(),
                    campaign_id: campaign_id.clone(),
                    run_id: run_id.clone(),
                    start_us: now,
                    end_us: now + 1_000,
                    input: Some(input.clone()),
                    result: Some(measurement::Result::Tcp(TcpResult {
                        ip: "192.0.2.1".into(),
                        port: 1000 + i as u32,
                        failure: blocked.then(|| Failure {
                            failure: "connection_reset".into(),
                            operation: "connect".into(),
                        }),
                        connect_us: if blocked { 0 } else { 20_000 },
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                batch.push(pending(&m, key));
            }
            run.tasks.push(task.task_id.clone());
            tasks.push(task);
        }
        s.store.put_tasks(&tasks).map_err(setup)?;
        results += batch.len();
        let mut commits = Vec::new();
        while !batch.is_empty() {
            let chunk = batch.split_off(batch.len().saturating_sub(256));
            let c = s.commit.clone();
            commits.push(tokio::spawn(async move { c.commit(chunk).await }));
        }
        for c in commits {
            c.await.map_err(setup)?.map_err(setup)?;
        }
        rec.runs.push(run);
        if (index + 1) % 10 == 0 {
            eprintln!("  {} runs, {results} results", index + 1);
        }
    }
    s.store.put_campaign(&rec).map_err(setup)?;
    let fill = t0.elapsed().as_secs_f64();
    let rss_after_fill = crate::proc_rss(std::process::id()).0 as f64 / 1048576.0;
    eprintln!(
        "  filled in {fill:.1} s ({:.0} results/s); reading:",
        results as f64 / fill
    );

    let all_runs: Vec<(String, String)> = rec
        .runs
        .iter()
        .map(|r| (campaign_id.clone(), r.run_id.clone()))
        .collect();
    let last = all_runs.last().cloned().into_iter().collect::<Vec<_>>();
    let verdicts = || -> Result<usize, BenchError> {
        Ok(vantage_coordinator::campaigns::verdicts(&s, &campaign_id)
            .map_err(setup)?
            .verdicts
            .len())
    };
    let status = || -> Result<usize, BenchError> {
        Ok(vantage_coordinator::campaigns::status(&s, &campaign_id)
            .map_err(setup)?
            .runs
            .len())
    };
    let refresh = || vantage_coordinator::verdicts::refresh_all(&s).map_err(setup);
    let dirty = |runs: &[(String, String)]| s.mark_runs_dirty(runs.to_vec());
    let mut out = Vec::new();
    // A restart marks every run dirty; readers compute them in memory.
    let restart = "verdicts, every run dirty (a restart)";
    out.push(timed(
        restart,
        repeats.min(3),
        || dirty(&all_runs),
        verdicts,
    )?);
    refresh()?;
    out.push(timed(
        "verdicts, every run's stored",
        repeats,
        || {},
        verdicts,
    )?);
    let one = "verdicts, the last run dirty";
    out.push(timed(one, repeats, || dirty(&last), verdicts)?);
    refresh()?;
    out.push(timed("campaign status", repeats, || {}, status)?);
    let one = "campaign status, the last run dirty";
    out.push(timed(one, repeats, || dirty(&last), status)?);
    let rss_after_reads = crate::proc_rss(std::process::id()).0 as f64 / 1048576.0;
    Ok(ReadsReport {
        targets,
        runs,
        results,
        fill_seconds: fill,
        fill_results_per_s: results as f64 / fill,
        reads: out,
        rss_after_fill_mib: rss_after_fill,
        rss_after_reads_mib: rss_after_reads,
    })
}

#[cfg(test)]
mod tests {
    /// The reads a dashboard makes decode no result of a run whose
    /// verdicts are stored, and only its own results for a dirty run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_decode_only_the_dirty_runs_results() {
        let r = super::reads(20, 4, 1).await.unwrap();
        assert_eq!(r.results, 2 * 20 * 4);
        let read = |name: &str| r.reads.iter().find(|x| x.name == name).unwrap();
        assert_eq!(read("verdicts, every run dirty (a restart)").rows, 80);
        assert_eq!(read("verdicts, every run's stored").decoded_per_read, 0);
        assert_eq!(read("verdicts, the last run dirty").decoded_per_read, 40);
        assert_eq!(read("verdicts, the last run dirty").rows, 80);
        assert_eq!(read("campaign status").decoded_per_read, 0);
        assert_eq!(
            read("campaign status, the last run dirty").decoded_per_read,
            40
        );
        assert_eq!(read("campaign status").rows, 4);
    }
}
