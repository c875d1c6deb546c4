//! The benchmarks (`vantage-bench`, also run as `vantagectl bench`):
//! rerunnable, against a real coordinator process on loopback. The load
//! generator runs in the calling process, so it never shares the
//! coordinator's runtime. Every run also measures the
//! machine's own limits (Ed25519 batch verification, sled group commit) so
//! results are reported as ratios against limits measured in the same run.

pub mod agent;
pub mod reads;
pub mod sink;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use vantage_proto::client::{connect, ClientIdentity, ConnectOptions};
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::*;
pub use vantage_testkit::procs::{proc_cpu_seconds, proc_fds, proc_rss, proc_threads};
use vantage_testkit::procs::{Bins, Coordinator, ProcError};

/// Benchmark failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("gRPC: {0}")]
    Rpc(#[from] tonic::Status),
    #[error(transparent)]
    Client(#[from] vantage_proto::client::ClientError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// Median of a sample (0 when empty).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        // An even count: the mean of the two middle values (the upper one
        // alone overstated every two- and four-run median).
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The q-quantile (0..1) of a sample.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Ed25519 batch verifications per second on one core (batches of `batch`),
/// measured for about `secs`.
pub fn verify_rate(batch: usize, secs: f64) -> f64 {
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let vk = key.verifying_key();
    let envs: Vec<SignedResult> = (0..batch)
        .map(|i| {
            let m = Measurement {
                id: vantage_proto::envelope::new_id(),
                steps: vec![Step {
                    name: format!("{i}-{}", "x".repeat(900)),
                    ..Default::default()
                }],
                ..Default::default()
            };
            vantage_proto::envelope::sign(&key, &m)
        })
        .collect();
    let items: Vec<_> = envs.iter().map(|e| (&vk, e)).collect();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        let r = vantage_proto::envelope::verify_batch(&items);
        debug_assert!(r.iter().all(|x| x.is_ok()));
        n += batch;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// sled group-commit rate alone: batches of `batch` values of `size` bytes
/// through the commit pipeline (value log, sled batch, flush, fdatasync),
/// as the coordinator does, with [`COMMIT_IN_FLIGHT`] batches outstanding
/// as concurrent sessions keep them. Each result carries an agent (one per
/// batch, as a session's are); `campaign_shaped` adds what a campaign's
/// results carry: a task of its own and a shared campaign.
pub fn commit_rate(
    dir: &Path,
    batch: usize,
    size: usize,
    secs: f64,
    campaign_shaped: bool,
) -> Result<f64, BenchError> {
    let name = if campaign_shaped {
        "commit-c"
    } else {
        "commit"
    };
    let store = vantage_coordinator::store::Store::open(&dir.join(name)).map_err(setup)?;
    let commit = vantage_coordinator::store::CommitHandle::start(store, |_| {});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let value = vec![7u8; size];
    let start = Instant::now();
    let n = rt.block_on(async {
        let mut submitters = Vec::new();
        for s in 0..COMMIT_IN_FLIGHT {
            let (commit, value) = (commit.clone(), value.clone());
            submitters.push(tokio::spawn(async move {
                let mut n = 0usize;
                while start.elapsed().as_secs_f64() < secs {
                    let items = (0..batch)
                        .map(|_| vantage_coordinator::store::PendingResult {
                            id: *uuid::Uuid::now_v7().as_bytes(),
                            agent: [s as u8; 16],
                            task: campaign_shaped.then(|| *uuid::Uuid::now_v7().as_bytes()),
                            campaign: campaign_shaped.then_some([0xca; 16]),
                            run: campaign_shaped.then_some([0xcb; 16]),
                            value: value.clone(),
                            measurement: Default::default(),
                        })
                        .collect();
                    commit.commit(items).await.map_err(setup)?;
                    n += batch;
                }
                Ok::<_, BenchError>(n)
            }));
        }
        let mut n = 0;
        for s in submitters {
            n += s.await.map_err(setup)??;
        }
        Ok::<_, BenchError>(n)
    })?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Batches the commit-rate measurement keeps outstanding.
pub const COMMIT_IN_FLIGHT: usize = 8;

/// A coordinator child process in a temp data dir (the test kit's), with
/// the load generator's own enrollment and sessions.
pub struct CoordinatorProc(Coordinator);

impl std::ops::Deref for CoordinatorProc {
    type Target = Coordinator;
    fn deref(&self) -> &Coordinator {
        &self.0
    }
}

impl std::ops::DerefMut for CoordinatorProc {
    fn deref_mut(&mut self) -> &mut Coordinator {
        &mut self.0
    }
}

impl CoordinatorProc {
    /// Inits and starts `vantage-coordinator` (found next to this binary,
    /// or one directory up, where a test binary in `deps/` finds it).
    /// VANTAGE_BENCH_WRAP runs it under a tool, e.g. "valgrind
    /// --tool=callgrind --callgrind-out-file=/tmp/cg.out" (BENCHMARKS.md:
    /// instruction counts per result); it is then stopped with SIGTERM so
    /// the tool can write its output.
    pub fn start() -> Result<CoordinatorProc, BenchError> {
        CoordinatorProc::start_with(|_| {})
    }

    /// [`CoordinatorProc::start`] after `configure` edited the data dir
    /// (`coordinator.toml`).
    pub fn start_with(configure: impl FnOnce(&Coordinator)) -> Result<CoordinatorProc, BenchError> {
        let wrap = std::env::var("VANTAGE_BENCH_WRAP").unwrap_or_default();
        let c = Coordinator::try_init(Bins::find(None)?)?.wrapped(&wrap);
        configure(&c);
        Ok(CoordinatorProc(c.try_start()?))
    }

    fn opts(&self, identity: Option<ClientIdentity>) -> Result<ConnectOptions, BenchError> {
        Ok(ConnectOptions {
            ca_sha256: self.try_ca_fingerprint()?,
            identity,
            connect_timeout: Duration::from_secs(30),
            bind: None,
        })
    }

    pub async fn admin(&self) -> Result<AdminServiceClient<tonic::transport::Channel>, BenchError> {
        let id = Coordinator::try_admin_identity(&self.dir)?;
        Ok(AdminServiceClient::new(
            connect(&self.addr, &self.opts(Some(id))?).await?,
        ))
    }

    /// Enrolls `n` identities (keys made here) with `tags`; returns them.
    pub async fn enroll(&self, n: usize, tags: &[&str]) -> Result<Vec<BenchAgent>, BenchError> {
        let token = self
            .admin()
            .await?
            .create_token(CreateTokenRequest {
                uses: n as u32,
                ttl_s: 3600,
                tags: tags.iter().map(|s| s.to_string()).collect(),
            })
            .await?
            .into_inner()
            .token;
        let ch = connect(&self.addr, &self.opts(None)?).await?;
        let mut out = Vec::with_capacity(n);
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let mut client = AgentServiceClient::new(ch.clone());
            let token = token.clone();
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let r = client
                    .enroll(EnrollRequest {
                        proof: vantage_proto::envelope::enroll_proof(&key, &token),
                        token,
                        public_key: key.verifying_key().to_bytes().to_vec(),
                        labels: Some(Labels {
                            country: "CN".into(),
                            ..Default::default()
                        }),
                        software_version: "bench".into(),
                    })
                    .await?
                    .into_inner();
                Ok::<_, BenchError>(BenchAgent {
                    agent_id: r.agent_id,
                    cert_pem: r.client_cert_pem,
                    key,
                })
            }));
        }
        for t in tasks {
            out.push(t.await.map_err(setup)??);
        }
        Ok(out)
    }

    /// Connects one agent's session (hello sent).
    pub async fn session(
        &self,
        a: &BenchAgent,
        kinds: &[&str],
    ) -> Result<
        (
            mpsc::Sender<AgentMessage>,
            tonic::Streaming<CoordinatorMessage>,
        ),
        BenchError,
    > {
        self.session_from(a, kinds, None).await
    }

    /// [`CoordinatorProc::session`] dialled from the source address `bind`.
    pub async fn session_from(
        &self,
        a: &BenchAgent,
        kinds: &[&str],
        bind: Option<std::net::IpAddr>,
    ) -> Result<
        (
            mpsc::Sender<AgentMessage>,
            tonic::Streaming<CoordinatorMessage>,
        ),
        BenchError,
    > {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key_pem = a
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(setup)?
            .to_string();
        let mut opts = self.opts(Some(ClientIdentity {
            cert_pem: a.cert_pem.clone(),
            key_pem,
        }))?;
        opts.bind = bind;
        let ch = connect(&self.addr, &opts).await?;
        let (tx, rx) = mpsc::channel(16);
        tx.send(AgentMessage {
            msg: Some(agent_message::Msg::Hello(Hello {
                software_version: "bench".into(),
                consent: Some(Consent {
                    kinds: kinds.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        })
        .await
        .map_err(setup)?;
        let inbound = AgentServiceClient::new(ch)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20)
            .session(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok((tx, inbound))
    }

    /// CPU seconds (user + system) the coordinator has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid())
    }

    /// Resident set size in bytes (and the peak).
    pub fn rss(&self) -> (u64, u64) {
        proc_rss(self.pid())
    }
}

/// An enrolled identity held by the load generator.
pub struct BenchAgent {
    pub agent_id: String,
    pub cert_pem: String,
    pub key: SigningKey,
}

/// Raises the open-file limit as far as the hard limit allows; returns it.
pub fn raise_fd_limit(want: u64) -> u64 {
    let (_, mut hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    // Root (CAP_SYS_RESOURCE) may raise the hard limit too, up to
    // /proc/sys/fs/nr_open; others keep theirs.
    if want > hard && rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_ok() {
        hard = want;
    }
    let target = want.min(hard);
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, target, hard);
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(s, _)| s)
        .unwrap_or(1024)
}

/// Bytes of all files under `dir` (the store's size on disk).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One signed synthetic result of about `size` bytes for the load
/// generators (the padding sits in a step name; `i` keeps them distinct).
pub fn bench_result(a: &BenchAgent, i: usize, size: usize) -> SignedResult {
    bench_task_result(a, i, size, None)
}

/// [`bench_result`] answering `task` (campaign-shaped: the coordinator
/// checks the assignment, indexes the task and campaign, and marks the
/// assignment done).
pub fn bench_task_result(
    a: &BenchAgent,
    i: usize,
    size: usize,
    task: Option<&vantage_proto::v1::Task>,
) -> SignedResult {
    let now = vantage_proto::now_us();
    let t = task.cloned().unwrap_or_default();
    let m = Measurement {
        id: vantage_proto::envelope::new_id(),
        agent_id: a.agent_id.clone(),
        task_id: t.task_id,
        campaign_id: t.campaign_id,
        run_id: t.run_id,
        start_us: now,
        end_us: now,
        steps: vec![Step {
            name: format!("{i}-{}", "x".repeat(size.saturating_sub(120))),
            ..Default::default()
        }],
        ..Default::default()
    };
    vantage_proto::envelope::sign(&a.key, &m)
}

/// One load-generating session: sends result batches with at most
/// `window` unacknowledged, and times each batch's ack. The coordinator
/// acks a session's batches in order, so the oldest send time matches.
pub struct Pump {
    tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<CoordinatorMessage>,
    in_flight: std::collections::VecDeque<(Instant, usize)>,
    window: usize,
    /// Results acked (accepted) so far.
    pub acked: u64,
    /// Ack latency of each batch, ms.
    pub latencies_ms: Vec<f64>,
}

impl Pump {
    pub fn new(
        session: (
            mpsc::Sender<AgentMessage>,
            tonic::Streaming<CoordinatorMessage>,
        ),
        window: usize,
    ) -> Pump {
        Pump {
            tx: session.0,
            inbound: session.1,
            in_flight: Default::default(),
            window: window.max(1),
            acked: 0,
            latencies_ms: Vec::new(),
        }
    }

    /// Batches sent and not yet acked.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends one batch, first waiting for acks while the window is full.
    pub async fn send(&mut self, results: Vec<SignedResult>) -> Result<(), BenchError> {
        while self.in_flight.len() >= self.window {
            self.next_ack().await?;
        }
        self.in_flight.push_back((Instant::now(), results.len()));
        self.tx
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Results(ResultBatch { results })),
            })
            .await
            .map_err(|_| setup("session closed"))
    }

    /// Waits for the next ack; returns how many results it accepted. A
    /// rejection is an error: the generators only send valid results.
    /// Cancel-safe (the stream keeps its state), so it can sit in `select!`.
    pub async fn next_ack(&mut self) -> Result<u64, BenchError> {
        loop {
            match self.inbound.message().await? {
                Some(CoordinatorMessage {
                    msg: Some(coordinator_message::Msg::Ack(a)),
                }) => {
                    if !a.rejected.is_empty() {
                        return Err(setup(format!("rejected: {}", a.rejected[0].reason)));
                    }
                    let n = a.accepted.len() as u64;
                    self.acked += n;
                    if let Some((t, _)) = self.in_flight.pop_front() {
                        self.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    return Ok(n);
                }
                Some(_) => {}
                None => return Err(setup("session ended")),
            }
        }
    }

    /// Waits until every batch sent has been acked.
    pub async fn drain(&mut self) -> Result<(), BenchError> {
        while !self.in_flight.is_empty() {
            self.next_ack().await?;
        }
        Ok(())
    }
}

/// Outcome of the ingest benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    pub agents: usize,
    /// Set when the results answered a campaign of this many targets.
    pub campaign_targets: Option<usize>,
    pub results_per_run: usize,
    pub runs_results_per_s: Vec<f64>,
    pub median_results_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub coordinator_cpu_cores: f64,
    pub coordinator_rss_mib: f64,
    pub coordinator_peak_rss_mib: f64,
    pub verify_per_core_per_s: f64,
    pub verify_limit_per_s: f64,
    pub commit_limit_per_s: f64,
    /// The same with campaign-shaped results (task and campaign indexes
    /// too): what a fleet's results cost the store; not the bench's own.
    pub commit_limit_campaign_per_s: f64,
    /// Ingest over the smaller of the per-core verify limit and the commit
    /// limit (DESIGN.md's budget: >= 0.5).
    pub fraction_of_smaller_limit: f64,
    pub fraction_of_verify_per_core: f64,
    /// Ingest over every core verifying and doing nothing else.
    pub fraction_of_verify_machine: f64,
    pub fraction_of_commit_limit: f64,
    /// The load generator's own CPU (it shares the machine's cores).
    pub generator_cpu_cores: f64,
    /// The signed envelopes sent, mean bytes each (prost-encoded).
    pub envelope_bytes: f64,
    /// The store's files after the runs, per stored result: the value log
    /// (bodies) and sled (pointers, indexes, sequence, its own log).
    pub store_value_log_bytes_per_result: f64,
    pub store_sled_bytes_per_result: f64,
    /// Both over the envelope (the budget: <= 1.2).
    pub disk_over_envelope: f64,
}

/// Runs the ingest benchmark: `agents` concurrent mTLS sessions stream
/// `per_agent` pre-signed ~`size`-byte results each, `runs` times.
pub async fn ingest(
    agents: usize,
    per_agent: usize,
    size: usize,
    runs: usize,
    campaign_targets: Option<usize>,
) -> Result<IngestReport, BenchError> {
    raise_fd_limit(65_536);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!("measuring limits: Ed25519 batch verify, sled group commit ...");
    let verify = tokio::task::spawn_blocking(|| verify_rate(256, 2.0))
        .await
        .map_err(setup)?;
    let tmp = tempfile::tempdir()?;
    let tmp_path = tmp.path().to_path_buf();
    let (commit, commit_campaign) = tokio::task::spawn_blocking(move || {
        Ok::<_, BenchError>((
            commit_rate(&tmp_path, 256, size, 3.0, false)?,
            commit_rate(&tmp_path, 256, size, 3.0, true)?,
        ))
    })
    .await
    .map_err(setup)??;
    eprintln!(
        "  verify {verify:.0}/s per core ({cores} cores), commit {commit:.0}/s \
         ({commit_campaign:.0}/s campaign-shaped)"
    );

    let c = CoordinatorProc::start()?;
    eprintln!("enrolling {agents} agents ...");
    // With a campaign, the last agent is its control.
    let campaign = campaign_targets.is_some();
    let inside = if campaign {
        agents.saturating_sub(1).max(1)
    } else {
        agents
    };
    let mut ids = c.enroll(inside, &["bench"]).await?;
    if campaign {
        ids.extend(c.enroll(1, &["benchctl"]).await?);
    }
    let mut sessions = Vec::with_capacity(ids.len());
    for a in &ids {
        sessions.push(c.session(a, &["tcp"]).await?);
    }
    let agents = ids.len();
    let ids = Arc::new(ids);
    let mut rates = Vec::new();
    let mut lat_ms: Vec<f64> = Vec::new();
    let (mut envelope_bytes, mut envelopes) = (0u64, 0u64);
    let mut cpu_used = 0.0;
    let mut gen_cpu = 0.0;
    let mut wall = 0.0;
    for run in 0..runs {
        // A campaign of its own per run, so every result answers a task
        // its agent has not answered yet, as in a real run.
        let tasks = match campaign_targets {
            Some(n) => {
                let (got, t) = campaign_tasks(&c, std::mem::take(&mut sessions), n).await?;
                sessions = got;
                Arc::new(t)
            }
            None => Arc::new(vec![Vec::new(); ids.len()]),
        };
        // Pre-sign outside the timed part.
        let batches: Vec<Vec<Vec<SignedResult>>> = {
            let (ids, tasks) = (ids.clone(), tasks.clone());
            tokio::task::spawn_blocking(move || {
                ids.iter()
                    .zip(tasks.iter())
                    .map(|(a, tasks)| {
                        let envs: Vec<SignedResult> = (0..per_agent)
                            .map(|i| {
                                let task = (!tasks.is_empty()).then(|| &tasks[i % tasks.len()]);
                                bench_task_result(a, i, size, task)
                            })
                            .collect();
                        envs.chunks(256).map(|c| c.to_vec()).collect()
                    })
                    .collect()
            })
            .await
            .map_err(setup)?
        };
        {
            use prost::Message;
            for e in batches.iter().flatten().flatten() {
                envelope_bytes += e.encoded_len() as u64;
                envelopes += 1;
            }
        }
        let cpu0 = c.cpu_seconds();
        let gen0 = proc_cpu_seconds(std::process::id());
        let start = Instant::now();
        let mut handles = Vec::new();
        for (session, agent_batches) in std::mem::take(&mut sessions).into_iter().zip(batches) {
            handles.push(tokio::spawn(async move {
                let mut pump = Pump::new(session, 4);
                for b in agent_batches {
                    pump.send(b).await?;
                }
                pump.drain().await?;
                let lat = std::mem::take(&mut pump.latencies_ms);
                Ok::<_, BenchError>(((pump.tx, pump.inbound), lat))
            }));
        }
        for h in handles {
            let (s, l) = h.await.map_err(setup)??;
            sessions.push(s);
            lat_ms.extend(l);
        }
        let secs = start.elapsed().as_secs_f64();
        cpu_used += c.cpu_seconds() - cpu0;
        gen_cpu += proc_cpu_seconds(std::process::id()) - gen0;
        wall += secs;
        let rate = (agents * per_agent) as f64 / secs;
        eprintln!(
            "  run {}: {:.0} results/s ({} in {:.2}s)",
            run + 1,
            rate,
            agents * per_agent,
            secs
        );
        rates.push(rate);
    }
    let (rss, hwm) = c.rss();
    let store = c.dir.join("store");
    let values = dir_bytes(&store.join("values"));
    let sled_bytes = dir_bytes(&store).saturating_sub(values);
    let per = |b: u64| b as f64 / envelopes.max(1) as f64;
    let mut r2 = rates.clone();
    let med = median(&mut r2);
    let verify_limit = verify * cores as f64;
    // DESIGN.md states the verify limit per core ("about 90,000/s per
    // core: report ingest as a fraction of that"); the whole machine's
    // figure is reported beside it.
    let smaller = verify.min(commit);
    let frac = |limit: f64| if limit > 0.0 { med / limit } else { 0.0 };
    Ok(IngestReport {
        agents,
        campaign_targets,
        results_per_run: agents * per_agent,
        runs_results_per_s: rates,
        median_results_per_s: med,
        ack_p50_ms: quantile(&mut lat_ms.clone(), 0.5),
        ack_p99_ms: quantile(&mut lat_ms, 0.99),
        coordinator_cpu_cores: if wall > 0.0 { cpu_used / wall } else { 0.0 },
        coordinator_rss_mib: rss as f64 / 1048576.0,
        coordinator_peak_rss_mib: hwm as f64 / 1048576.0,
        verify_per_core_per_s: verify,
        verify_limit_per_s: verify_limit,
        commit_limit_per_s: commit,
        commit_limit_campaign_per_s: commit_campaign,
        fraction_of_smaller_limit: frac(smaller),
        fraction_of_verify_per_core: frac(verify),
        fraction_of_verify_machine: frac(verify_limit),
        fraction_of_commit_limit: frac(commit),
        generator_cpu_cores: if wall > 0.0 { gen_cpu / wall } else { 0.0 },
        envelope_bytes: per(envelope_bytes),
        store_value_log_bytes_per_result: per(values),
        store_sled_bytes_per_result: per(sled_bytes),
        disk_over_envelope: per(values + sled_bytes) / per(envelope_bytes).max(1.0),
    })
}

/// One agent session of the load generator: the stream in and out.
type BenchSession = (
    mpsc::Sender<AgentMessage>,
    tonic::Streaming<CoordinatorMessage>,
);

/// Creates a campaign of `targets` TCP targets for every session's agent
/// (the last one is the control) and reads each session's tasks off its
/// stream, all sessions at once (the coordinator pushes every task of a
/// run back to back): the sessions back, and the tasks their
/// campaign-shaped results answer.
async fn campaign_tasks(
    c: &CoordinatorProc,
    sessions: Vec<BenchSession>,
    targets: usize,
) -> Result<(Vec<BenchSession>, Vec<Vec<vantage_proto::v1::Task>>), BenchError> {
    let inside = sessions.len().saturating_sub(1).max(1);
    let mut spec = format!(
        "version = 1\nname = \"bench ingest\"\nallow_private_targets = true\n\
         deadline = \"1h\"\n[inside]\ntags = [\"bench\"]\nmax_agents = {inside}\n\
         [control]\ntags = [\"benchctl\"]\n"
    );
    for i in 0..targets {
        spec.push_str(&format!(
            "[[targets]]\ntcp = {{ host = \"192.0.2.1\", port = {} }}\n",
            1000 + i
        ));
    }
    let readers: Vec<_> = sessions
        .into_iter()
        .map(|(tx, mut inbound)| {
            tokio::spawn(async move {
                let mut tasks = Vec::with_capacity(targets);
                let mut seq = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
                while tasks.len() < targets {
                    // Heartbeats keep the session from being closed as
                    // idle while a large run is dispatched.
                    let m = match tokio::time::timeout(Duration::from_secs(5), inbound.message())
                        .await
                    {
                        Ok(m) => m?,
                        Err(_) if tokio::time::Instant::now() < deadline => {
                            seq += 1;
                            let hb = agent_message::Msg::Heartbeat(Heartbeat {
                                seq,
                                ..Default::default()
                            });
                            let _ = tx.send(AgentMessage { msg: Some(hb) }).await;
                            continue;
                        }
                        Err(_) => {
                            let got = tasks.len();
                            return Err(setup(format!("only {got} of {targets} tasks arrived")));
                        }
                    };
                    match m {
                        Some(CoordinatorMessage {
                            msg: Some(coordinator_message::Msg::Task(t)),
                        }) => tasks.push(t),
                        Some(_) => {}
                        None => return Err(setup("session ended while waiting for tasks")),
                    }
                }
                Ok::<_, BenchError>(((tx, inbound), tasks))
            })
        })
        .collect();
    c.admin()
        .await?
        .create_campaign(CreateCampaignRequest {
            spec,
            format: "toml".into(),
        })
        .await?;
    let mut sessions = Vec::with_capacity(readers.len());
    let mut out = Vec::with_capacity(readers.len());
    for r in readers {
        let (session, tasks) = r.await.map_err(setup)??;
        sessions.push(session);
        out.push(tasks);
    }
    eprintln!("  campaign of {targets} targets: every agent holds its tasks");
    Ok((sessions, out))
}

/// Outcome of the sessions (and dispatch) benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionsReport {
    pub sessions: usize,
    pub fd_limit: u64,
    pub connect_seconds: f64,
    pub coordinator_rss_mib: f64,
    pub coordinator_peak_rss_mib: f64,
    pub idle_cpu_cores: f64,
    pub idle_window_s: f64,
    /// Time from CreateCampaign to each agent receiving its task.
    pub dispatch_p50_ms: f64,
    pub dispatch_p99_ms: f64,
    pub dispatch_max_ms: f64,
    pub dispatch_received: usize,
}

/// Holds `n` sessions with heartbeats, measures memory and idle CPU, then
/// creates a campaign for all of them and times the task's arrival.
/// `keepalive_s` sets the coordinator's `http2_keepalive_interval_s`
/// (None: its default), to measure what its PINGs cost an idle fleet.
pub async fn sessions(
    n: usize,
    idle_s: f64,
    keepalive_s: Option<u64>,
) -> Result<SessionsReport, BenchError> {
    let fd_limit = raise_fd_limit(4 * n as u64 + 1024);
    eprintln!("file-descriptor limit raised to {fd_limit}");
    // The coordinator (which inherits this limit) holds one descriptor per
    // session plus its store and listeners; this process one per session.
    const SPARE_FDS: u64 = 256;
    let need = n as u64 + 1 + SPARE_FDS;
    if fd_limit < need {
        return Err(setup(format!(
            "{n} sessions need about {need} file descriptors per process, but the limit \
             is {fd_limit} and its hard limit could not be raised (not root, or a \
             container caps it): at most about {} sessions fit here",
            fd_limit.saturating_sub(1 + SPARE_FDS)
        )));
    }
    let c = CoordinatorProc::start_with(|c| {
        if let Some(k) = keepalive_s {
            c.set_config("http2_keepalive_interval_s", &k.to_string());
        }
    })?;
    eprintln!("enrolling {n} agents (+1 control) ...");
    let inside = c.enroll(n, &["bench"]).await?;
    let control = c.enroll(1, &["benchctl"]).await?;
    eprintln!("connecting {n} sessions ...");
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let c = Arc::new(c);
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Instant>();
    let mut handles = Vec::with_capacity(n + 1);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    for (i, a) in inside.into_iter().chain(control).enumerate() {
        // One loopback source address per 16,384 sessions: one source has
        // ~28,000 ephemeral ports towards the coordinator's one address.
        let bind = std::net::IpAddr::from([127, 0, 0, 1 + (i / 16_384) as u8]);
        let c = c.clone();
        let sem = sem.clone();
        let got_tx = got_tx.clone();
        let ready_tx = ready_tx.clone();
        handles.push(tokio::spawn(async move {
            let opened = {
                let _p = sem.acquire().await;
                c.session_from(&a, &["tcp"], Some(bind)).await
            };
            let (tx, mut inbound) = match opened {
                Ok(o) => o,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok(()));
            // Heartbeat every 30 s, phase spread by the agent id.
            let phase = Duration::from_millis(u64::from(a.agent_id.as_bytes()[35]) * 117 % 30_000);
            let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(30));
            let mut seq = 0;
            loop {
                tokio::select! {
                    m = inbound.message() => match m? {
                        Some(CoordinatorMessage { msg: Some(coordinator_message::Msg::Task(_)) }) => {
                            let _ = got_tx.send(Instant::now());
                        }
                        Some(_) => {}
                        None => return Ok::<_, BenchError>(()),
                    },
                    _ = hb.tick() => {
                        seq += 1;
                        let _ = tx.send(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat { seq, ..Default::default() })) }).await;
                    }
                }
            }
        }));
    }
    drop(ready_tx);
    let (mut ready, mut failed, mut first_error) = (0, 0, None);
    while ready + failed < n + 1 {
        match ready_rx.recv().await {
            None => break,
            Some(Ok(())) => ready += 1,
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        if (ready + failed) % 10_000 == 0 {
            eprintln!("  {ready} connected, {failed} failed");
        }
    }
    if ready < n + 1 {
        for h in &handles {
            h.abort();
        }
        return Err(setup(format!(
            "only {ready} of {} sessions connected ({failed} failed; first: {})",
            n + 1,
            first_error.unwrap_or_default()
        )));
    }
    let connect_seconds = start.elapsed().as_secs_f64();
    eprintln!("  {n} sessions up in {connect_seconds:.1}s; idling {idle_s:.0}s ...");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = c.cpu_seconds();
    tokio::time::sleep(Duration::from_secs_f64(idle_s)).await;
    let idle_cpu = (c.cpu_seconds() - cpu0) / idle_s;
    let (rss, hwm) = c.rss();
    eprintln!(
        "  RSS {:.0} MiB, idle CPU {:.3} cores; dispatching ...",
        rss as f64 / 1048576.0,
        idle_cpu
    );

    let spec = "version = 1\nname = \"bench\"\nallow_private_targets = true\ndeadline = \"10m\"\n\
        [inside]\ntags = [\"bench\"]\n[control]\ntags = [\"benchctl\"]\n\
        [[targets]]\ntcp = { host = \"192.0.2.1\", port = 443 }\n";
    let t0 = Instant::now();
    c.admin()
        .await?
        .create_campaign(CreateCampaignRequest {
            spec: spec.into(),
            format: "toml".into(),
        })
        .await?;
    let mut lat = Vec::with_capacity(n + 1);
    let wait_until = tokio::time::Instant::now() + Duration::from_secs(60);
    while lat.len() < n + 1 {
        match tokio::time::timeout_at(wait_until, got_rx.recv()).await {
            Ok(Some(t)) => lat.push(t.duration_since(t0).as_secs_f64() * 1000.0),
            _ => break,
        }
    }
    for h in handles {
        h.abort();
    }
    let received = lat.len();
    Ok(SessionsReport {
        sessions: n,
        fd_limit,
        connect_seconds,
        coordinator_rss_mib: rss as f64 / 1048576.0,
        coordinator_peak_rss_mib: hwm as f64 / 1048576.0,
        idle_cpu_cores: idle_cpu,
        idle_window_s: idle_s,
        dispatch_p50_ms: quantile(&mut lat.clone(), 0.5),
        dispatch_p99_ms: quantile(&mut lat.clone(), 0.99),
        dispatch_max_ms: lat.iter().cloned().fold(0.0, f64::max),
        dispatch_received: received,
    })
}

/// Settings of the soak benchmark.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Results per second, all sessions together.
    pub rate: f64,
    /// Length of the main phase (new ids only).
    pub seconds: f64,
    /// Concurrent agent sessions sharing the rate.
    pub agents: usize,
    /// Approximate size of one signed result, bytes.
    pub size: usize,
    /// Length of an optional second phase that resends already stored
    /// results at the same rate: the store stops growing, so RSS that still
    /// grows there is not the store's.
    pub dup_seconds: f64,
    /// Time between samples.
    pub sample_every: Duration,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            rate: 15_000.0,
            seconds: 600.0,
            agents: 20,
            size: 1024,
            dup_seconds: 0.0,
            sample_every: Duration::from_secs(10),
        }
    }
}

/// One sample of the coordinator process and its store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakSample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// `new` (fresh ids) or `dup` (resent ids).
    pub phase: &'static str,
    pub rss_mib: f64,
    pub fds: u64,
    pub threads: u64,
    /// Results stored (the store's count).
    pub stored: u64,
    /// Bytes of the data dir on disk, MiB.
    pub store_mib: f64,
    /// Results sent and acked so far, all phases.
    pub sent: u64,
    pub acked: u64,
}

/// Summary of one phase of the soak.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakPhase {
    pub phase: &'static str,
    pub seconds: f64,
    pub target_rate: f64,
    /// Results acked per second over the phase.
    pub achieved_rate: f64,
    pub sent: u64,
    pub acked: u64,
    /// Median RSS of the samples in the first and the last window (a
    /// minute, or a third of a phase shorter than three minutes).
    pub window_s: f64,
    pub first_rss_mib: f64,
    pub last_rss_mib: f64,
    /// Least-squares slope of RSS over the phase, MiB per minute.
    pub slope_mib_per_min: f64,
    pub first_fds: u64,
    pub last_fds: u64,
    pub first_threads: u64,
    pub last_threads: u64,
    /// Results stored at the end of the phase.
    pub stored: u64,
    /// `flat`, or `growing` when the last window's median RSS exceeds the
    /// first's by more than 5 % and 16 MiB (see [`soak_verdict`]).
    pub verdict: &'static str,
}

/// Outcome of the soak benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    pub agents: usize,
    pub size: usize,
    pub batch: usize,
    pub samples: Vec<SoakSample>,
    pub phases: Vec<SoakPhase>,
    /// Distinct results sent (the `new` phase); each was acked.
    pub sent_new: u64,
    pub acked_new: u64,
    /// Results the store holds at the end; must equal `acked_new`.
    pub stored: u64,
    /// Resends the coordinator acked and ignored (`duplicate_results`).
    pub duplicates_ignored: u64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub coordinator_cpu_cores: f64,
    pub coordinator_peak_rss_mib: f64,
}

/// `growing` when the last window's median RSS is above the first's by more
/// than 5 % and more than 16 MiB (allocator noise and sled's cache warming
/// stay under that); `flat` otherwise.
pub fn soak_verdict(first_mib: f64, last_mib: f64) -> &'static str {
    let growth = last_mib - first_mib;
    if growth > 16.0 && growth > first_mib * 0.05 {
        "growing"
    } else {
        "flat"
    }
}

/// Least-squares slope of (t seconds, y) in y per minute.
fn slope_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx * 60.0
    }
}

/// Summarises the samples of one phase (`t0`..`t1` seconds).
fn summarise(
    samples: &[SoakSample],
    phase: &'static str,
    (t0, t1): (f64, f64),
    (rate, sent, acked): (f64, u64, u64),
) -> SoakPhase {
    let s: Vec<&SoakSample> = samples
        .iter()
        .filter(|x| x.t_s >= t0 - 0.5 && x.t_s <= t1 + 0.5)
        .collect();
    let len = (t1 - t0).max(0.0);
    let window = if len >= 180.0 { 60.0 } else { len / 3.0 };
    let mut first: Vec<f64> = s
        .iter()
        .filter(|x| x.t_s <= t0 + window + 0.5)
        .map(|x| x.rss_mib)
        .collect();
    let mut last: Vec<f64> = s
        .iter()
        .filter(|x| x.t_s >= t1 - window - 0.5)
        .map(|x| x.rss_mib)
        .collect();
    // A window with no sample in it takes the phase's first (last) sample.
    if first.is_empty() {
        first.extend(s.first().map(|x| x.rss_mib));
    }
    if last.is_empty() {
        last.extend(s.last().map(|x| x.rss_mib));
    }
    let (first_rss, last_rss) = (median(&mut first), median(&mut last));
    let pts: Vec<(f64, f64)> = s.iter().map(|x| (x.t_s, x.rss_mib)).collect();
    let (a, b) = (s.first(), s.last());
    SoakPhase {
        phase,
        seconds: len,
        target_rate: rate,
        achieved_rate: if len > 0.0 { acked as f64 / len } else { 0.0 },
        sent,
        acked,
        window_s: window,
        first_rss_mib: first_rss,
        last_rss_mib: last_rss,
        slope_mib_per_min: slope_per_min(&pts),
        first_fds: a.map(|x| x.fds).unwrap_or(0),
        last_fds: b.map(|x| x.fds).unwrap_or(0),
        first_threads: a.map(|x| x.threads).unwrap_or(0),
        last_threads: b.map(|x| x.threads).unwrap_or(0),
        stored: b.map(|x| x.stored).unwrap_or(0),
        verdict: soak_verdict(first_rss, last_rss),
    }
}

/// Counters the sessions share with the sampler.
#[derive(Default)]
struct SoakCounters {
    sent: std::sync::atomic::AtomicU64,
    acked: std::sync::atomic::AtomicU64,
    dup_phase: std::sync::atomic::AtomicBool,
}

/// One session's part of a soak phase: its pump back, and the results it
/// kept for a resend phase.
type PhaseTask = tokio::task::JoinHandle<Result<(Pump, Vec<SignedResult>), BenchError>>;

/// Streams results at `per_s` per second on one session until `until`,
/// sending `batch` at a time on a fixed schedule (late batches go out at
/// once, so the mean rate holds while the coordinator keeps up). With `pool`
/// empty each result is newly signed and kept in `keep` (up to `keep_max`)
/// for a later resend; otherwise the pool is resent round robin.
#[allow(clippy::too_many_arguments)]
async fn paced(
    pump: &mut Pump,
    agent: &BenchAgent,
    (per_s, batch, size): (f64, usize, usize),
    until: Instant,
    pool: &[SignedResult],
    keep: &mut std::collections::VecDeque<SignedResult>,
    keep_max: usize,
    counters: &SoakCounters,
) -> Result<(), BenchError> {
    use std::sync::atomic::Ordering::Relaxed;
    let every = Duration::from_secs_f64(batch as f64 / per_s);
    let start = tokio::time::Instant::now();
    let mut k: u32 = 0;
    let mut next = 0usize;
    loop {
        // The phase ends on time: a generator that fell behind does not
        // catch up afterwards (the achieved rate then shows the shortfall).
        let due = start + every * k;
        if due.into_std() >= until || Instant::now() >= until {
            break;
        }
        // Take acks while waiting for the next batch's time.
        loop {
            if pump.in_flight() == 0 {
                tokio::time::sleep_until(due).await;
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => break,
                n = pump.next_ack() => { counters.acked.fetch_add(n?, Relaxed); }
            }
        }
        let results: Vec<SignedResult> = if pool.is_empty() {
            let v: Vec<SignedResult> = (0..batch)
                .map(|i| bench_result(agent, k as usize * batch + i, size))
                .collect();
            for r in &v {
                if keep.len() >= keep_max {
                    keep.pop_front();
                }
                if keep_max > 0 {
                    keep.push_back(r.clone());
                }
            }
            v
        } else {
            (0..batch)
                .map(|_| {
                    next = (next + 1) % pool.len();
                    pool[next].clone()
                })
                .collect()
        };
        let before = pump.acked;
        pump.send(results).await?;
        counters.acked.fetch_add(pump.acked - before, Relaxed);
        counters.sent.fetch_add(batch as u64, Relaxed);
        k += 1;
    }
    let before = pump.acked;
    pump.drain().await?;
    counters.acked.fetch_add(pump.acked - before, Relaxed);
    Ok(())
}

/// The soak benchmark: a real coordinator process takes a fixed rate of
/// signed results for `seconds` (new ids), then optionally the same ids
/// again for `dup_seconds`, while its RSS, open fds, threads and store are
/// sampled every `sample_every`. Samples are printed as they are taken.
pub async fn soak(o: SoakOptions) -> Result<SoakReport, BenchError> {
    use std::sync::atomic::Ordering::Relaxed;
    if o.rate <= 0.0 || o.agents == 0 || o.seconds <= 0.0 {
        return Err(setup("rate, agents and the duration must be positive"));
    }
    raise_fd_limit(65_536);
    let per_agent = o.rate / o.agents as f64;
    // About ten batches per second per session.
    let batch = ((per_agent / 10.0).round() as usize).clamp(1, 256);
    let keep_max = if o.dup_seconds > 0.0 {
        (((per_agent * 20.0) as usize).max(batch)).min(200_000 / o.agents)
    } else {
        0
    };
    let c = Arc::new(CoordinatorProc::start()?);
    eprintln!(
        "soak: {} results/s (~{} B) from {} sessions, batches of {batch}, {:.0} s new ids{}",
        o.rate,
        o.size,
        o.agents,
        o.seconds,
        if o.dup_seconds > 0.0 {
            format!(" then {:.0} s of resends", o.dup_seconds)
        } else {
            String::new()
        }
    );
    let ids = c.enroll(o.agents, &["bench"]).await?;
    let mut pumps = Vec::with_capacity(o.agents);
    for a in &ids {
        pumps.push(Pump::new(c.session(a, &["tcp"]).await?, 16));
    }
    let counters = Arc::new(SoakCounters::default());
    let samples = Arc::new(std::sync::Mutex::new(Vec::<SoakSample>::new()));
    let t0 = Instant::now();
    let cpu0 = c.cpu_seconds();
    let sampler = {
        let (c, counters, samples, every) =
            (c.clone(), counters.clone(), samples.clone(), o.sample_every);
        tokio::spawn(async move {
            let mut admin = c.admin().await.ok();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let stored = match admin.as_mut() {
                    Some(a) => a
                        .stats(StatsRequest {})
                        .await
                        .map(|r| r.into_inner().results_stored)
                        .unwrap_or(0),
                    None => 0,
                };
                let pid = c.pid();
                let x = SoakSample {
                    t_s: t0.elapsed().as_secs_f64(),
                    phase: if counters.dup_phase.load(Relaxed) {
                        "dup"
                    } else {
                        "new"
                    },
                    rss_mib: proc_rss(pid).0 as f64 / 1048576.0,
                    fds: proc_fds(pid),
                    threads: proc_threads(pid),
                    stored,
                    store_mib: dir_bytes(&c.dir) as f64 / 1048576.0,
                    sent: counters.sent.load(Relaxed),
                    acked: counters.acked.load(Relaxed),
                };
                eprintln!(
                    "  t={:>5.0}s {:<3}  rss {:>7.1} MiB  fds {:>4}  threads {:>3}  stored {:>9}  store {:>8.1} MiB  sent {:>9}  acked {:>9}",
                    x.t_s, x.phase, x.rss_mib, x.fds, x.threads, x.stored, x.store_mib, x.sent, x.acked
                );
                samples.lock().unwrap_or_else(|p| p.into_inner()).push(x);
            }
        })
    };

    let ids = Arc::new(ids);
    let run_phase =
        |pumps: Vec<Pump>, pools: Vec<Vec<SignedResult>>, secs: f64| -> Vec<PhaseTask> {
            let until = Instant::now() + Duration::from_secs_f64(secs);
            pumps
                .into_iter()
                .zip(pools)
                .enumerate()
                .map(|(i, (mut pump, pool))| {
                    let (ids, counters, size) = (ids.clone(), counters.clone(), o.size);
                    tokio::spawn(async move {
                        let mut keep = std::collections::VecDeque::new();
                        let keep_max = if pool.is_empty() { keep_max } else { 0 };
                        paced(
                            &mut pump,
                            &ids[i],
                            (per_agent, batch, size),
                            until,
                            &pool,
                            &mut keep,
                            keep_max,
                            &counters,
                        )
                        .await?;
                        Ok((pump, Vec::from(keep)))
                    })
                })
                .collect()
        };

    // Phase 1: new ids.
    let handles = run_phase(pumps, vec![Vec::new(); o.agents], o.seconds);
    let mut pumps = Vec::with_capacity(o.agents);
    let mut pools = Vec::with_capacity(o.agents);
    for h in handles {
        let (p, kept) = h.await.map_err(setup)??;
        pumps.push(p);
        pools.push(kept);
    }
    let t_new = t0.elapsed().as_secs_f64();
    let sent_new = counters.sent.load(Relaxed);
    let acked_new = counters.acked.load(Relaxed);
    let stored_new = c
        .admin()
        .await?
        .stats(StatsRequest {})
        .await?
        .into_inner()
        .results_stored;

    // Phase 2 (optional): the same envelopes again.
    let mut t_dup = t_new;
    if o.dup_seconds > 0.0 {
        counters.dup_phase.store(true, Relaxed);
        let handles = run_phase(pumps, pools, o.dup_seconds);
        pumps = Vec::with_capacity(o.agents);
        for h in handles {
            pumps.push(h.await.map_err(setup)??.0);
        }
        t_dup = t0.elapsed().as_secs_f64();
    }
    // A last sample at the end, then the summary.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sampler.abort();
    let stats = c.admin().await?.stats(StatsRequest {}).await?.into_inner();
    let pid = c.pid();
    let end = SoakSample {
        t_s: t0.elapsed().as_secs_f64(),
        phase: if o.dup_seconds > 0.0 { "dup" } else { "new" },
        rss_mib: proc_rss(pid).0 as f64 / 1048576.0,
        fds: proc_fds(pid),
        threads: proc_threads(pid),
        stored: stats.results_stored,
        store_mib: dir_bytes(&c.dir) as f64 / 1048576.0,
        sent: counters.sent.load(Relaxed),
        acked: counters.acked.load(Relaxed),
    };
    let cpu = (c.cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
    let peak = proc_rss(pid).1 as f64 / 1048576.0;
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    samples.push(end);
    let mut phases = vec![summarise(
        &samples,
        "new",
        (0.0, t_new),
        (o.rate, sent_new, acked_new),
    )];
    if let Some(p) = phases.first_mut() {
        p.stored = stored_new;
    }
    if o.dup_seconds > 0.0 {
        phases.push(summarise(
            &samples,
            "dup",
            (t_new, t_dup),
            (
                o.rate,
                counters.sent.load(Relaxed) - sent_new,
                counters.acked.load(Relaxed) - acked_new,
            ),
        ));
    }
    let mut lat: Vec<f64> = pumps
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.latencies_ms))
        .collect();
    Ok(SoakReport {
        agents: o.agents,
        size: o.size,
        batch,
        samples,
        phases,
        sent_new,
        acked_new,
        stored: stats.results_stored,
        duplicates_ignored: stats
            .counters
            .iter()
            .find(|x| x.name == "duplicate_results")
            .map(|x| x.value)
            .unwrap_or(0),
        ack_p50_ms: quantile(&mut lat.clone(), 0.5),
        ack_p99_ms: quantile(&mut lat, 0.99),
        coordinator_cpu_cores: cpu,
        coordinator_peak_rss_mib: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        // Before: the upper middle value (3.0).
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [10.0, 20.0]), 15.0);
    }

    #[test]
    fn verdict_and_slope() {
        assert_eq!(soak_verdict(100.0, 110.0), "flat");
        assert_eq!(soak_verdict(100.0, 130.0), "growing");
        assert_eq!(soak_verdict(1000.0, 1040.0), "flat");
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 10.0, 50.0 + i as f64))
            .collect();
        assert!((slope_per_min(&pts) - 6.0).abs() < 1e-9);
    }

    /// A short soak against a real coordinator process (the binary from
    /// `cargo build --workspace --bins`, which `cargo test` also builds):
    /// every result sent is acked and stored once, duplicates are ignored.
    #[test]
    fn short_soak_stores_exactly_what_was_acked() {
        vantage_proto::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let r = rt
            .block_on(soak(SoakOptions {
                rate: 400.0,
                seconds: 12.0,
                agents: 4,
                size: 512,
                dup_seconds: 6.0,
                sample_every: Duration::from_secs(2),
            }))
            .expect("soak");
        assert_eq!(r.sent_new, r.acked_new, "every new result acked");
        assert_eq!(r.stored, r.acked_new, "stored equals acked");
        assert!(
            r.acked_new >= 3_000,
            "about 400/s for 12 s: {}",
            r.acked_new
        );
        assert!(r.duplicates_ignored > 0, "resends were ignored");
        assert_eq!(r.phases.len(), 2);
        assert_eq!(
            r.phases[1].stored, r.stored,
            "resends did not grow the store"
        );
        assert!(r.samples.len() >= 6, "{} samples", r.samples.len());
        assert!(r
            .samples
            .iter()
            .all(|s| s.rss_mib > 0.0 && s.fds > 0 && s.threads > 0));
    }
}

/// Outcome of the change-derivation benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChangesReport {
    pub series: usize,
    pub runs: usize,
    pub rows: usize,
    pub events: usize,
    pub repeats: usize,
    pub median_ms: f64,
    pub rows_per_s: f64,
}

/// Times `analysis::changes::derive` over `series` x `runs` synthetic
/// points (2 inside agents each): a tenth of the series go down for a
/// third of the runs and come back, a tenth flap once, the rest stay ok.
pub fn changes(series: usize, runs: usize) -> ChangesReport {
    use vantage_coordinator::analysis::changes::{derive, Point};
    let all: Vec<Vec<Point>> = (0..series)
        .map(|s| {
            (0..runs)
                .map(|r| {
                    let status = match s % 10 {
                        0 if r >= runs / 3 && r < 2 * runs / 3 => "down",
                        1 if r == runs / 2 => "blocked",
                        _ => "ok",
                    };
                    Point {
                        run_id: format!("run-{r:04}"),
                        at_us: r as i64 * 3_600_000_000,
                        rows: (0..2)
                            .map(|a| {
                                (
                                    status.to_string(),
                                    String::new(),
                                    format!("agent-{a}"),
                                    vec![format!("m-{s}-{r}-{a}"), format!("c-{s}-{r}")],
                                )
                            })
                            .collect(),
                    }
                })
                .collect()
        })
        .collect();
    let repeats = 5;
    let mut ms = Vec::new();
    let mut events = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        events = all.iter().map(|points| derive(points, 2).len()).sum();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let median_ms = median(&mut ms);
    let rows = series * runs * 2;
    ChangesReport {
        series,
        runs,
        rows,
        events,
        repeats,
        median_ms,
        rows_per_s: rows as f64 / (median_ms / 1000.0),
    }
}

#[cfg(test)]
mod change_tests {
    /// The synthetic series give what they are built to: two events for a
    /// tenth of them, none for the flapping tenth.
    #[test]
    fn the_change_benchmark_derives_the_events_it_plants() {
        let r = super::changes(100, 30);
        assert_eq!(r.events, 20);
        assert_eq!(r.rows, 100 * 30 * 2);
    }
}
