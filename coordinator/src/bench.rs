//! `vantagectl bench`: rerunnable benchmarks against a real coordinator
//! process on loopback. The load generator runs in the calling process, so
//! it never shares the coordinator's runtime. Every run also measures the
//! machine's own limits (Ed25519 batch verification, sled group commit) so
//! results are reported as ratios against limits measured in the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use vantage_proto::client::{connect, ClientIdentity, ConnectOptions};
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::*;

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
    v[v.len() / 2]
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

/// sled group-commit rate alone: batches of `batch` values of `size` bytes,
/// each applied, flushed and fdatasynced, as the coordinator does.
pub fn commit_rate(dir: &Path, batch: usize, size: usize, secs: f64) -> Result<f64, BenchError> {
    let store = crate::store::Store::open(&dir.join("commit-bench")).map_err(setup)?;
    let commit = crate::store::CommitHandle::start(store, |_| {});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let value = vec![7u8; size];
    let start = Instant::now();
    let mut n = 0usize;
    rt.block_on(async {
        while start.elapsed().as_secs_f64() < secs {
            let items = (0..batch)
                .map(|_| {
                    let id = *uuid::Uuid::now_v7().as_bytes();
                    crate::store::PendingResult {
                        id,
                        agent: [1; 16],
                        task: None,
                        campaign: None,
                        value: value.clone(),
                        measurement: Default::default(),
                    }
                })
                .collect();
            commit.commit(items).await.map_err(setup)?;
            n += batch;
        }
        Ok::<_, BenchError>(())
    })?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A coordinator child process in a temp data dir.
pub struct CoordinatorProc {
    pub dir: PathBuf,
    pub addr: String,
    child: Child,
    _tmp: tempfile::TempDir,
}

impl CoordinatorProc {
    /// Inits and starts `vantage-coordinator` (found next to this binary).
    pub fn start() -> Result<CoordinatorProc, BenchError> {
        let exe = std::env::current_exe()?.with_file_name("vantage-coordinator");
        if !exe.exists() {
            return Err(setup(format!(
                "{} not found: build the workspace binaries",
                exe.display()
            )));
        }
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("coord");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let st = Command::new(&exe)
            .args(["init", "--listen", &addr, "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            return Err(setup("coordinator init failed"));
        }
        // VANTAGE_BENCH_WRAP runs the coordinator under a tool, e.g.
        // "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"
        // (BENCHMARKS.md: instruction counts per result).
        let wrap: Vec<String> = std::env::var("VANTAGE_BENCH_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut cmd = match wrap.split_first() {
            Some((tool, args)) => {
                let mut c = Command::new(tool);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = cmd
            .args(["serve", "--data-dir"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let startup = if wrap.is_empty() { 20 } else { 300 };
        let deadline = Instant::now() + Duration::from_secs(startup);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err(setup("coordinator did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(CoordinatorProc {
            dir,
            addr,
            child,
            _tmp: tmp,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn opts(&self, identity: Option<ClientIdentity>) -> Result<ConnectOptions, BenchError> {
        let pem = std::fs::read_to_string(self.dir.join("ca.pem"))?;
        let ca = vantage_proto::client::parse_certs(&pem)?;
        Ok(ConnectOptions {
            ca_sha256: vantage_proto::cert_fingerprint(&ca[0]),
            identity,
            connect_timeout: Duration::from_secs(30),
        })
    }

    pub async fn admin(&self) -> Result<AdminServiceClient<tonic::transport::Channel>, BenchError> {
        let id = ClientIdentity {
            cert_pem: std::fs::read_to_string(self.dir.join("admin.pem"))?,
            key_pem: std::fs::read_to_string(self.dir.join("admin.key"))?,
        };
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
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key_pem = a
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(setup)?
            .to_string();
        let opts = self.opts(Some(ClientIdentity {
            cert_pem: a.cert_pem.clone(),
            key_pem,
        }))?;
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

impl Drop for CoordinatorProc {
    fn drop(&mut self) {
        // SIGTERM first, so a wrapping tool (valgrind) can write its output.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An enrolled identity held by the load generator.
pub struct BenchAgent {
    pub agent_id: String,
    pub cert_pem: String,
    pub key: SigningKey,
}

/// CPU seconds of a process from /proc (0 when unavailable).
pub fn proc_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14, 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// (VmRSS, VmHWM) of a process in bytes.
pub fn proc_rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Raises the open-file limit as far as the hard limit allows; returns it.
pub fn raise_fd_limit(want: u64) -> u64 {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    let target = want.min(hard);
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, target, hard);
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(s, _)| s)
        .unwrap_or(1024)
}

/// Outcome of the ingest benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    pub agents: usize,
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
    pub fraction_of_smaller_limit: f64,
}

/// Runs the ingest benchmark: `agents` concurrent mTLS sessions stream
/// `per_agent` pre-signed ~`size`-byte results each, `runs` times.
pub async fn ingest(
    agents: usize,
    per_agent: usize,
    size: usize,
    runs: usize,
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
    let commit = tokio::task::spawn_blocking(move || commit_rate(&tmp_path, 256, size, 3.0))
        .await
        .map_err(setup)??;
    eprintln!("  verify {verify:.0}/s per core ({cores} cores), commit {commit:.0}/s");

    let c = CoordinatorProc::start()?;
    eprintln!("enrolling {agents} agents ...");
    let ids = c.enroll(agents, &["bench"]).await?;
    let mut sessions = Vec::with_capacity(agents);
    for a in &ids {
        sessions.push(c.session(a, &["tcp"]).await?);
    }
    let ids = Arc::new(ids);
    let mut rates = Vec::new();
    let mut lat_ms: Vec<f64> = Vec::new();
    let mut cpu_used = 0.0;
    let mut wall = 0.0;
    for run in 0..runs {
        // Pre-sign outside the timed part.
        let batches: Vec<Vec<Vec<SignedResult>>> = {
            let ids = ids.clone();
            tokio::task::spawn_blocking(move || {
                ids.iter()
                    .map(|a| {
                        let envs: Vec<SignedResult> = (0..per_agent)
                            .map(|i| {
                                let now = vantage_proto::now_us();
                                let m = Measurement {
                                    id: vantage_proto::envelope::new_id(),
                                    agent_id: a.agent_id.clone(),
                                    start_us: now,
                                    end_us: now,
                                    steps: vec![Step {
                                        name: format!(
                                            "{i}-{}",
                                            "x".repeat(size.saturating_sub(120))
                                        ),
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                };
                                vantage_proto::envelope::sign(&a.key, &m)
                            })
                            .collect();
                        envs.chunks(256).map(|c| c.to_vec()).collect()
                    })
                    .collect()
            })
            .await
            .map_err(setup)?
        };
        let cpu0 = c.cpu_seconds();
        let start = Instant::now();
        let mut handles = Vec::new();
        for ((tx, mut inbound), agent_batches) in
            std::mem::take(&mut sessions).into_iter().zip(batches)
        {
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut sent_at = std::collections::VecDeque::new();
                let mut acked = 0usize;
                let total: usize = agent_batches.iter().map(|b| b.len()).sum();
                let mut it = agent_batches.into_iter();
                let window = 4;
                loop {
                    while sent_at.len() < window {
                        match it.next() {
                            Some(b) => {
                                sent_at.push_back(Instant::now());
                                if tx
                                    .send(AgentMessage {
                                        msg: Some(agent_message::Msg::Results(ResultBatch {
                                            results: b,
                                        })),
                                    })
                                    .await
                                    .is_err()
                                {
                                    return Err(setup("session closed"));
                                }
                            }
                            None => break,
                        }
                    }
                    if acked >= total {
                        break;
                    }
                    match inbound.message().await? {
                        Some(CoordinatorMessage {
                            msg: Some(coordinator_message::Msg::Ack(a)),
                        }) => {
                            if !a.rejected.is_empty() {
                                return Err(setup(format!("rejected: {}", a.rejected[0].reason)));
                            }
                            acked += a.accepted.len();
                            if let Some(t) = sent_at.pop_front() {
                                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                        Some(_) => {}
                        None => return Err(setup("session ended")),
                    }
                }
                Ok::<_, BenchError>(((tx, inbound), lat))
            }));
        }
        for h in handles {
            let (s, l) = h.await.map_err(setup)??;
            sessions.push(s);
            lat_ms.extend(l);
        }
        let secs = start.elapsed().as_secs_f64();
        cpu_used += c.cpu_seconds() - cpu0;
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
    let mut r2 = rates.clone();
    let med = median(&mut r2);
    let verify_limit = verify * cores as f64;
    let smaller = verify_limit.min(commit);
    Ok(IngestReport {
        agents,
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
        fraction_of_smaller_limit: if smaller > 0.0 { med / smaller } else { 0.0 },
    })
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
pub async fn sessions(n: usize, idle_s: f64) -> Result<SessionsReport, BenchError> {
    let fd_limit = raise_fd_limit(4 * n as u64 + 1024);
    eprintln!("file-descriptor limit raised to {fd_limit}");
    let c = CoordinatorProc::start()?;
    eprintln!("enrolling {n} agents (+1 control) ...");
    let inside = c.enroll(n, &["bench"]).await?;
    let control = c.enroll(1, &["benchctl"]).await?;
    eprintln!("connecting {n} sessions ...");
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let c = Arc::new(c);
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Instant>();
    let mut handles = Vec::with_capacity(n + 1);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for a in inside.into_iter().chain(control) {
        let c = c.clone();
        let sem = sem.clone();
        let got_tx = got_tx.clone();
        let ready_tx = ready_tx.clone();
        handles.push(tokio::spawn(async move {
            let (tx, mut inbound) = {
                let _p = sem.acquire().await;
                c.session(&a, &["tcp"]).await?
            };
            let _ = ready_tx.send(());
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
    let mut ready = 0;
    while ready < n + 1 {
        if ready_rx.recv().await.is_none() {
            break;
        }
        ready += 1;
    }
    if ready < n + 1 {
        return Err(setup(format!(
            "only {ready} of {} sessions connected",
            n + 1
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
