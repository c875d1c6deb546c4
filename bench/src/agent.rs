//! `vantage-bench agent`: the agent's footprint on the devices volunteers
//! run it on (issue 23). For each build (the workspace's own agent, and
//! the static cross builds of `deploy/scripts/build-cross.sh` that exist,
//! the arm ones under Debian's qemu user-mode emulators):
//!
//! - the binary's size on disk (the release profile strips it);
//! - a real coordinator on loopback, the agent enrolled and connected,
//!   left alone for a while: its RSS at the end and its wake-ups (context
//!   switches of all its threads) per minute;
//! - then `web` tasks dispatched all at once against a slow HTTP server
//!   in this process (each answer waits, so the agent's `max_concurrency`
//!   of 32 probes are in flight together): the agent's peak RSS (VmHWM),
//!   and the most requests the server saw at once.
//!
//! Under emulation the process measured is qemu's, so RSS includes the
//! emulator and its translated code: an upper bound for the device, not
//! the device's figure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_proto::v1::{DispatchRequest, ProbeInput};
use vantage_testkit::procs::{proc_context_switches, proc_rss, Agent, Bins, Coordinator};

use crate::{setup, BenchError};

/// Budgets from issue 23.
pub const IDLE_RSS_BUDGET_MIB: f64 = 8.0;
pub const WAKEUPS_BUDGET_PER_MIN: f64 = 60.0;
pub const BINARY_BUDGET_MIB: f64 = 8.0;
pub const WEB_PEAK_BUDGET_MIB: f64 = 32.0;

/// The cross builds looked for, and the emulator each needs on x86_64.
pub const CROSS: &[(&str, Option<&str>)] = &[
    ("x86_64-unknown-linux-musl", None),
    ("aarch64-unknown-linux-musl", Some("qemu-aarch64-static")),
    ("armv7-unknown-linux-gnueabihf", Some("qemu-arm-static")),
    ("armv7-unknown-linux-musleabihf", Some("qemu-arm-static")),
];

/// What to run.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Builds to measure: `host` (the agent beside this binary), target
    /// triples (`target/<triple>/release/vantage-agent`), or paths to an
    /// agent binary for this machine (containing a `/`). Empty: `host` and
    /// every cross build that exists.
    pub builds: Vec<String>,
    pub idle_seconds: f64,
    pub web_tasks: usize,
    /// The agent's `limits.max_concurrency`.
    pub concurrency: u32,
    /// How long the HTTP server waits before each answer.
    pub server_delay_ms: u64,
    /// The size of each page.
    pub page_kib: usize,
}

/// One build's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgentFootprint {
    pub build: String,
    pub binary: String,
    pub binary_bytes: u64,
    /// The emulator it ran under, if any (RSS then includes it).
    pub emulator: Option<String>,
    pub idle_seconds: f64,
    pub idle_rss_kib: u64,
    pub idle_wakeups_per_minute: f64,
    pub web_tasks: usize,
    pub web_results: u64,
    pub web_seconds: f64,
    /// Most requests the server held at once.
    pub web_max_in_flight: usize,
    pub web_peak_rss_kib: u64,
}

/// The report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgentReport {
    pub concurrency: u32,
    pub server_delay_ms: u64,
    pub page_kib: usize,
    pub builds: Vec<AgentFootprint>,
}

/// `target/` of the workspace: the directory holding the bins' profile dir.
fn target_dir(bins: &Bins) -> PathBuf {
    let profile_dir = bins.coordinator.parent().unwrap_or(Path::new("."));
    profile_dir.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// Resolves the builds to (name, binary, emulator); missing ones named.
fn resolve(
    bins: &Bins,
    builds: &[String],
) -> Result<Vec<(String, PathBuf, Option<PathBuf>)>, BenchError> {
    let target = target_dir(bins);
    let cross_path = |t: &str| target.join(t).join("release").join("vantage-agent");
    let wanted: Vec<String> = if builds.is_empty() {
        std::iter::once("host".to_string())
            .chain(
                CROSS
                    .iter()
                    .filter(|(t, _)| cross_path(t).is_file())
                    .map(|(t, _)| t.to_string()),
            )
            .collect()
    } else {
        builds.to_vec()
    };
    let mut out = Vec::new();
    for b in wanted {
        if b.contains('/') {
            // A binary by path (an older build, for before/after pairs),
            // run natively.
            let path = PathBuf::from(&b);
            if !path.is_file() {
                return Err(setup(format!("{} is not a file", path.display())));
            }
            out.push((b, path, None));
            continue;
        }
        if b == "host" {
            if !bins.agent.is_file() {
                return Err(setup(format!(
                    "{} is missing: cargo build --release --workspace --bins",
                    bins.agent.display()
                )));
            }
            out.push((b, bins.agent.clone(), None));
            continue;
        }
        let Some((_, emulator)) = CROSS.iter().find(|(t, _)| *t == b) else {
            return Err(setup(format!(
                "unknown build {b:?}: host or one of {}",
                CROSS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            )));
        };
        let path = cross_path(&b);
        if !path.is_file() {
            return Err(setup(format!(
                "{} is missing: bash deploy/scripts/build-cross.sh {b}",
                path.display()
            )));
        }
        let emulator = match emulator {
            Some(name) => Some(vantage_testkit::skip::find_tool(&[name]).ok_or_else(|| {
                setup(format!(
                    "{name} is missing: apt-get install qemu-user-static"
                ))
            })?),
            None => None,
        };
        out.push((b, path, emulator));
    }
    Ok(out)
}

/// Measures every build in turn.
pub async fn agent(o: AgentOptions) -> Result<AgentReport, BenchError> {
    let bins = Bins::find(None)?;
    let mut builds = Vec::new();
    for (name, path, emulator) in resolve(&bins, &o.builds)? {
        eprintln!("agent bench: {name} ({})", path.display());
        builds.push(measure(&o, &bins, &name, &path, emulator.as_deref()).await?);
    }
    Ok(AgentReport {
        concurrency: o.concurrency,
        server_delay_ms: o.server_delay_ms,
        page_kib: o.page_kib,
        builds,
    })
}

/// A slow HTTP/1.1 server: every request waits `delay`, then gets a page.
struct SlowServer {
    addr: std::net::SocketAddr,
    max_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowServer {
    async fn start(delay: Duration, page_kib: usize) -> Result<SlowServer, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let mut page = String::from("<!doctype html><html><head><title>bench</title></head><body>");
        while page.len() < page_kib * 1024 {
            page.push_str("<p>The quick brown fox jumps over the lazy dog.</p>\n");
        }
        page.push_str("</body></html>");
        let response: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        )
        .into_bytes()
        .into();
        let max = max_in_flight.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (in_flight, max, response) = (in_flight.clone(), max.clone(), response.clone());
                tokio::spawn(async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    let mut req = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 64 << 10 {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(&response).await;
                    let _ = s.shutdown().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(SlowServer {
            addr,
            max_in_flight,
            task,
        })
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn measure(
    o: &AgentOptions,
    bins: &Bins,
    name: &str,
    path: &Path,
    emulator: Option<&Path>,
) -> Result<AgentFootprint, BenchError> {
    let binary_bytes = std::fs::metadata(path)?.len();
    let runner: Vec<String> = emulator
        .map(|e| vec![e.to_string_lossy().into_owned()])
        .unwrap_or_default();
    let runner: Vec<&str> = runner.iter().map(String::as_str).collect();
    let mut c = Coordinator::try_init(bins.clone())?;
    c.bins = c.bins.clone().with_agent(path.to_path_buf(), &runner);
    let c = c.try_start()?;
    let token = c.token(1, "1h");
    let mut a = Agent::enroll(&c, "footprint", &token).map_err(setup)?;
    std::fs::write(
        a.dir.join("agent.toml"),
        format!(
            "version = 1\nallow_private_targets = true\n[consent]\nkinds = [\"web\"]\n\
             [limits]\nmax_concurrency = {}\n",
            o.concurrency
        ),
    )?;
    a.start();
    c.until_connected(std::slice::from_ref(&a), Duration::from_secs(120))
        .await;
    let pid = a.pid().ok_or_else(|| setup("the agent is not running"))?;
    // Let start-up settle (the first heartbeat and status file).
    tokio::time::sleep(Duration::from_secs(5)).await;

    let s0 = proc_context_switches(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(o.idle_seconds)).await;
    let s1 = proc_context_switches(pid);
    let idle_s = t0.elapsed().as_secs_f64();
    let (idle_rss, _) = proc_rss(pid);

    let server = SlowServer::start(Duration::from_millis(o.server_delay_ms), o.page_kib).await?;
    let before = c.stats().await.results_stored;
    let mut admin = c.admin().await;
    let t1 = Instant::now();
    for i in 0..o.web_tasks {
        let input: ProbeInput = serde_json::from_value(serde_json::json!({
            "web": {"url": format!("http://{}/p{i}", server.addr)}
        }))
        .map_err(setup)?;
        admin
            .dispatch(DispatchRequest {
                input: Some(input),
                agent_ids: vec![a.id.clone()],
                deadline_s: 600,
            })
            .await?;
    }
    let want = before + o.web_tasks as u64;
    let limit = Duration::from_secs(600);
    let mut stored = before;
    while stored < want && t1.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = c.stats().await.results_stored;
    }
    let web_seconds = t1.elapsed().as_secs_f64();
    let (_, peak) = proc_rss(pid);
    Ok(AgentFootprint {
        build: name.to_string(),
        binary: path.display().to_string(),
        binary_bytes,
        emulator: emulator.map(|e| e.display().to_string()),
        idle_seconds: idle_s,
        idle_rss_kib: idle_rss / 1024,
        idle_wakeups_per_minute: s1.saturating_sub(s0) as f64 * 60.0 / idle_s,
        web_tasks: o.web_tasks,
        web_results: stored - before,
        web_seconds,
        web_max_in_flight: server.max_in_flight.load(Ordering::SeqCst),
        web_peak_rss_kib: peak / 1024,
    })
}
