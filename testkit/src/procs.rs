//! A coordinator and agents as real processes in a temp dir: the workspace's
//! binaries (`vantage-coordinator`, `vantagectl`, `vantage-agent`) found in
//! `target/`, `init`, `serve`, `enroll` and `run` with the same arguments
//! everywhere, readiness waits, and stop / kill / restart.
//!
//! Three users: the coordinator's e2e tests (panicking helpers: a failed
//! step is a failed test), the benchmarks (`try_*`: a missing binary is a
//! clear error, not a panic) and the lab's fleet, which runs the same
//! command lines inside network namespaces ([`Bins`] builds them).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vantage_proto::client::{connect, ClientIdentity, ConnectOptions};
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::*;

/// A step of the harness that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcError {
    /// A binary is not built (or not where it was looked for).
    #[error("{} not found: build the workspace binaries (cargo build --workspace --bins)", .0.display())]
    Missing(PathBuf),
    /// A command ran and failed, or a process did not become ready.
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcError {
    let context = context.into();
    move |source| ProcError::Io { context, source }
}

/// Panics with the error's sentence (the tests' helpers).
fn must<T>(r: Result<T, ProcError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

pub const COORDINATOR: &str = "vantage-coordinator";
pub const VANTAGECTL: &str = "vantagectl";
pub const AGENT: &str = "vantage-agent";

/// The workspace's binaries, and the command lines that run them.
#[derive(Clone, Debug)]
pub struct Bins {
    pub coordinator: PathBuf,
    pub vantagectl: PathBuf,
    pub agent: PathBuf,
    /// Words run before the agent binary: an emulator such as
    /// `qemu-aarch64-static` for an agent built for another architecture
    /// ([`Bins::with_agent`]); empty for the workspace's own agent.
    pub agent_runner: Vec<OsString>,
}

impl Bins {
    /// The binaries in `dir`; without one, beside the running executable,
    /// or one directory up (where a test binary in `target/*/deps/` finds
    /// them). Only the coordinator must exist; see [`Bins::require_all`].
    pub fn find(dir: Option<&Path>) -> Result<Bins, ProcError> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let me = std::env::current_exe().map_err(io("locating this executable"))?;
                let here = me.parent().map(Path::to_path_buf).unwrap_or_default();
                match here.parent() {
                    Some(up)
                        if !here.join(COORDINATOR).is_file() && up.join(COORDINATOR).is_file() =>
                    {
                        up.to_path_buf()
                    }
                    _ => here,
                }
            }
        };
        let bins = Bins {
            coordinator: dir.join(COORDINATOR),
            vantagectl: dir.join(VANTAGECTL),
            agent: dir.join(AGENT),
            agent_runner: Vec::new(),
        };
        exists(&bins.coordinator)?;
        Ok(bins)
    }

    /// The binaries beside the running executable (or one directory up);
    /// panics when the coordinator is not built.
    pub fn here() -> Bins {
        must(Bins::find(None))
    }

    /// The same binaries, with the agent replaced by `agent` (a cross-built
    /// one, say) run under `runner` (e.g. `["qemu-arm-static"]`; empty to
    /// run it directly).
    pub fn with_agent(self, agent: PathBuf, runner: &[&str]) -> Bins {
        Bins {
            agent,
            agent_runner: runner.iter().map(OsString::from).collect(),
            ..self
        }
    }

    /// `vantage-agent ARGS` (under its runner, if any).
    pub fn agent_argv(&self, args: &[&str]) -> Vec<OsString> {
        let agent = std::iter::once(self.agent.as_os_str().to_owned());
        self.under_runner(agent.chain(args.iter().map(OsString::from)).collect())
    }

    /// Fails unless all three binaries exist.
    pub fn require_all(self) -> Result<Bins, ProcError> {
        for p in [&self.coordinator, &self.vantagectl, &self.agent] {
            exists(p)?;
        }
        Ok(self)
    }

    /// `vantage-coordinator init` of `dir`, serving on `listen`.
    pub fn init_argv(&self, dir: &Path, listen: &str) -> Vec<OsString> {
        argv(
            &self.coordinator,
            ["init", "--data-dir"],
            dir,
            ["--listen", listen],
        )
    }

    /// `vantage-coordinator serve` of `dir`.
    pub fn serve_argv(&self, dir: &Path) -> Vec<OsString> {
        argv(&self.coordinator, ["serve", "--data-dir"], dir, [])
    }

    /// `vantage-agent enroll` into `dir` (consent accepted).
    pub fn enroll_argv(&self, dir: &Path, e: &Enrollment<'_>) -> Vec<OsString> {
        self.under_runner(argv(
            &self.agent,
            ["enroll", "--accept-consent", "--data-dir"],
            dir,
            [
                "--token",
                e.token,
                "--country",
                e.country,
                "--asn",
                e.asn,
                "--tags",
                e.tags,
            ],
        ))
    }

    /// `vantage-agent run` of `dir`.
    pub fn run_argv(&self, dir: &Path) -> Vec<OsString> {
        self.under_runner(argv(&self.agent, ["run", "--data-dir"], dir, []))
    }

    /// An agent command line with the agent's runner in front.
    fn under_runner(&self, agent_argv: Vec<OsString>) -> Vec<OsString> {
        self.agent_runner
            .iter()
            .cloned()
            .chain(agent_argv)
            .collect()
    }

    /// `vantagectl --data-dir DIR ARGS...`: the admin of the coordinator
    /// whose data dir is `dir`.
    pub fn ctl_argv(&self, dir: &Path, args: &[&str]) -> Vec<OsString> {
        argv(&self.vantagectl, ["--data-dir"], dir, args.iter().copied())
    }
}

/// What an agent enrolls with.
#[derive(Clone, Copy, Debug)]
pub struct Enrollment<'a> {
    pub token: &'a str,
    pub country: &'a str,
    pub asn: &'a str,
    /// Comma-separated.
    pub tags: &'a str,
}

fn exists(p: &Path) -> Result<(), ProcError> {
    if p.is_file() {
        return Ok(());
    }
    Err(ProcError::Missing(p.to_path_buf()))
}

fn argv<'a>(
    exe: &Path,
    before: impl IntoIterator<Item = &'a str>,
    dir: &Path,
    after: impl IntoIterator<Item = &'a str>,
) -> Vec<OsString> {
    let mut v = vec![exe.as_os_str().to_owned()];
    v.extend(before.into_iter().map(OsString::from));
    v.push(dir.as_os_str().to_owned());
    v.extend(after.into_iter().map(OsString::from));
    v
}

/// A command for an argv from [`Bins`].
pub fn command(argv: &[OsString]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// Runs an argv to completion; its stdout, or its stderr as the error.
pub fn run(argv: &[OsString]) -> Result<String, ProcError> {
    let out = command(argv)
        .output()
        .map_err(io(format!("running {}", argv[0].to_string_lossy())))?;
    if !out.status.success() {
        return Err(ProcError::Failed(format!(
            "{} failed ({}): {}",
            argv.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets a top-level setting in `dir`/coordinator.toml, replacing the line
/// that set it; `value` is TOML.
pub fn set_config(dir: &Path, key: &str, value: &str) -> Result<(), ProcError> {
    let path = dir.join("coordinator.toml");
    let cfg = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let mut out: String = cfg
        .lines()
        .filter(|l| l.split('=').next().map(str::trim) != Some(key))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{key} = {value}\n"));
    std::fs::write(&path, out).map_err(io(format!("writing {}", path.display())))
}

/// The coordinator's `read_tokens` setting (TOML) for these bearer tokens:
/// their SHA-256 in hex, as the coordinator stores them.
pub fn read_tokens_value(tokens: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let hashes: Vec<String> = tokens
        .iter()
        .map(|t| {
            let h: String = Sha256::digest(t.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("\"{h}\"")
        })
        .collect();
    format!("[{}]", hashes.join(", "))
}

/// A free loopback port (free now: another process may take it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` every 50 ms until it is true (true) or `limit` passes (false).
pub fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it is true; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, f: impl FnMut() -> bool) {
    assert!(
        poll(limit, f),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Polls the async condition `f` until it is true; panics after `limit`.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// Context switches of all of a process's threads so far (voluntary and
/// not): each one is a wake-up. Threads that ended are not counted, so
/// take differences over a window in which the thread set is stable.
pub fn proc_context_switches(pid: u32) -> u64 {
    let keys = ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|e| e.ok())
        .map(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| keys.iter().any(|k| l.starts_with(k)))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Open file descriptors of a process (0 when unavailable).
pub fn proc_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// Threads of a process (0 when unavailable).
pub fn proc_threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
    }
}

/// SIGTERM, then SIGKILL if it has not ended within `grace`.
fn terminate(child: &mut Option<Child>, grace: Duration) {
    let Some(c) = child.as_mut() else {
        return;
    };
    let _ = Command::new("kill").arg(c.id().to_string()).status();
    if poll(grace, || matches!(c.try_wait(), Ok(Some(_)))) {
        child.take();
    } else {
        kill9(child);
    }
}

fn append_log(path: &Path) -> Result<File, ProcError> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(format!("opening {}", path.display())))
}

/// A coordinator with its data dir in a temp dir, on a loopback port.
/// Dropping it kills the process (SIGTERM first when it runs under a tool).
pub struct Coordinator {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    pub addr: String,
    /// Its stderr (RUST_LOG=info), across restarts.
    pub log: PathBuf,
    /// Read-only HTTP API address (`--http-listen`), when enabled.
    pub http: Option<String>,
    pub bins: Bins,
    wrap: Vec<String>,
    child: Option<Child>,
}

impl Coordinator {
    /// `init`s a data dir on a free loopback port (not started).
    pub fn init() -> Coordinator {
        must(Coordinator::try_init(Bins::here()))
    }

    /// [`Coordinator::init`] with `bins`, failing instead of panicking.
    pub fn try_init(bins: Bins) -> Result<Coordinator, ProcError> {
        let root = tempfile::tempdir().map_err(io("creating a temp dir"))?;
        let dir = root.path().join("coord");
        let addr = format!("127.0.0.1:{}", free_port());
        run(&bins.init_argv(&dir, &addr))?;
        Ok(Coordinator {
            log: root.path().join("coordinator.log"),
            root,
            dir,
            addr,
            http: None,
            bins,
            wrap: Vec::new(),
            child: None,
        })
    }

    /// Serves the HTTP API on a free loopback port (`--http-listen`).
    pub fn with_http(mut self) -> Coordinator {
        self.http = Some(format!("127.0.0.1:{}", free_port()));
        self
    }

    /// Runs `serve` under a tool, e.g. `valgrind --tool=callgrind ...`
    /// (words split on white space); startup may then take minutes.
    pub fn wrapped(mut self, tool: &str) -> Coordinator {
        self.wrap = tool.split_whitespace().map(str::to_string).collect();
        self
    }

    /// Sets a top-level setting in coordinator.toml (before `start`); see
    /// [`set_config`].
    pub fn set_config(&self, key: &str, value: &str) {
        must(set_config(&self.dir, key, value))
    }

    /// Appends a TOML table (`[sink.clickhouse]` and its keys) to
    /// coordinator.toml (before `start`). Call it after every
    /// [`Coordinator::set_config`]: those lines go to the end of the file,
    /// which would put them inside the table.
    pub fn add_config_table(&self, toml: &str) {
        let path = self.dir.join("coordinator.toml");
        let mut text =
            must(std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display()))));
        text.push('\n');
        text.push_str(toml);
        text.push('\n');
        must(std::fs::write(&path, text).map_err(io(format!("writing {}", path.display()))));
    }

    /// Accepts these bearer tokens on the read API (before `start`).
    pub fn set_read_tokens(&self, tokens: &[&str]) {
        self.set_config("read_tokens", &read_tokens_value(tokens))
    }

    pub fn start(self) -> Coordinator {
        must(self.try_start())
    }

    pub fn try_start(mut self) -> Result<Coordinator, ProcError> {
        self.try_restart()?;
        Ok(self)
    }

    /// Starts (again) and waits until it serves.
    pub fn restart(&mut self) {
        must(self.try_restart())
    }

    /// Starts (again) and waits until its log says it serves (the port
    /// answering could be another process's).
    pub fn try_restart(&mut self) -> Result<(), ProcError> {
        let startup = Duration::from_secs(if self.wrap.is_empty() { 20 } else { 300 });
        // Ports come from `free_port`, which another process may take in
        // the meantime: if our coordinator cannot bind, move it to a new port.
        for _attempt in 0..5 {
            let served_before = self.log_text().matches("coordinator serving").count();
            let serve = self.bins.serve_argv(&self.dir);
            let mut cmd = match self.wrap.split_first() {
                Some((tool, args)) => {
                    let mut c = Command::new(tool);
                    c.args(args).args(&serve);
                    c
                }
                None => command(&serve),
            };
            if let Some(h) = &self.http {
                cmd.args(["--http-listen", h]);
            }
            let child = cmd
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(append_log(&self.log)?)
                .spawn()
                .map_err(io(format!("starting {}", self.bins.coordinator.display())))?;
            self.child = Some(child);
            poll(startup, || {
                !self.is_running()
                    || self.log_text().matches("coordinator serving").count() > served_before
            });
            if self.is_running() {
                break;
            }
            let old = self.addr.clone();
            self.addr = format!("127.0.0.1:{}", free_port());
            let cfg = self.dir.join("coordinator.toml");
            let text = std::fs::read_to_string(&cfg).map_err(io("reading coordinator.toml"))?;
            std::fs::write(&cfg, text.replace(&old, &self.addr))
                .map_err(io("writing coordinator.toml"))?;
        }
        if !self.is_running() {
            return Err(ProcError::Failed(format!(
                "the coordinator did not start:\n{}",
                self.log_text()
            )));
        }
        if let Some(h) = self.http.clone() {
            if !poll(startup, || std::net::TcpStream::connect(&h).is_ok()) {
                return Err(ProcError::Failed(format!(
                    "the coordinator's HTTP API did not listen on {h}"
                )));
            }
        }
        Ok(())
    }

    /// SIGKILL: nothing is flushed, nothing shuts down cleanly.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM and wait (up to a minute: a wrapping tool writes its
    /// output), then SIGKILL.
    pub fn terminate(&mut self) {
        terminate(&mut self.child, Duration::from_secs(60));
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The gRPC port.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the address")
    }

    /// The process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `vantagectl` as this coordinator's admin.
    pub fn ctl(&self, args: &[&str]) -> Output {
        command(&self.bins.ctl_argv(&self.dir, args))
            .output()
            .expect("run vantagectl")
    }

    /// Runs `vantagectl` as this coordinator's admin, asserting that it
    /// succeeds; its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vantagectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `vantagectl --output json ARGS`, asserting success: the JSON.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ctl_ok(&a)).expect("json output")
    }

    /// An enrollment token (`vantagectl token create`).
    pub fn token(&self, uses: u32, expires: &str) -> String {
        let uses = uses.to_string();
        let args = ["token", "create", "--uses", &uses, "--expires", expires];
        self.ctl_ok(&args).trim().to_string()
    }

    /// `vantagectl campaign create` of `spec` (TOML, written to a file of
    /// its own under the temp dir).
    pub fn create_campaign_output(&self, spec: &str) -> Output {
        let path = self.root.path().join(format!("spec-{}.toml", free_port()));
        std::fs::write(&path, spec).expect("write the campaign spec");
        self.ctl(&["campaign", "create", "-f", &path.to_string_lossy()])
    }

    /// Creates a campaign from `spec` (TOML); its id.
    pub fn create_campaign(&self, spec: &str) -> String {
        let out = self.create_campaign_output(spec);
        assert!(
            out.status.success(),
            "create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Enrolls one agent per `(name, country, tags)` with one token, each
    /// with [`LAB_CONFIG`]; not started.
    pub fn enroll_agents(&self, agents: &[(&str, &str, &str)]) -> Vec<Agent> {
        let token = self.token(agents.len() as u32, "1h");
        agents
            .iter()
            .map(|(name, country, tags)| {
                Agent::enroll_as(self, name, &token, country, tags)
                    .unwrap_or_else(|e| panic!("enroll {name}: {e}"))
            })
            .collect()
    }

    /// Enrolls one CN agent per name with one token; their data dirs (for
    /// tests that speak the agent protocol themselves).
    pub fn enroll_dirs(&self, names: &[&str]) -> Vec<PathBuf> {
        let agents: Vec<(&str, &str, &str)> = names.iter().map(|n| (*n, "CN", "")).collect();
        let enrolled = self.enroll_agents(&agents);
        enrolled.iter().map(|a| a.dir.clone()).collect()
    }

    /// Waits until every one of `agents` holds a session.
    pub async fn until_connected(&self, agents: &[Agent], limit: Duration) {
        let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
        let what = format!("{} agents connected", ids.len());
        until(limit, &what, || async {
            self.agents()
                .await
                .iter()
                .filter(|a| a.connected && ids.contains(&a.agent_id.as_str()))
                .count()
                == ids.len()
        })
        .await;
    }

    /// [`Coordinator::until_connected`] outside a runtime.
    pub fn wait_connected(&self, agents: &[Agent], limit: Duration) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(self.until_connected(agents, limit));
    }

    pub fn try_ca_fingerprint(&self) -> Result<String, ProcError> {
        let pem = std::fs::read_to_string(self.dir.join("ca.pem")).map_err(io("reading ca.pem"))?;
        let ca = vantage_proto::client::parse_certs(&pem)
            .map_err(|e| ProcError::Failed(format!("ca.pem: {e}")))?;
        Ok(vantage_proto::cert_fingerprint(&ca[0]))
    }

    pub fn ca_fingerprint(&self) -> String {
        must(self.try_ca_fingerprint())
    }

    /// Client options pinning this coordinator's CA (5 s to connect).
    pub fn options(&self, identity: Option<ClientIdentity>) -> ConnectOptions {
        ConnectOptions {
            ca_sha256: self.ca_fingerprint(),
            identity,
            connect_timeout: Duration::from_secs(5),
            bind: None,
        }
    }

    /// The admin certificate and key of the data dir `dir`.
    pub fn try_admin_identity(dir: &Path) -> Result<ClientIdentity, ProcError> {
        let read =
            |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io(format!("reading {f}")));
        Ok(ClientIdentity {
            cert_pem: read("admin.pem")?,
            key_pem: read("admin.key")?,
        })
    }

    pub fn admin_identity(dir: &Path) -> ClientIdentity {
        must(Self::try_admin_identity(dir))
    }

    /// A gRPC channel with the admin certificate.
    pub async fn admin_channel(&self) -> tonic::transport::Channel {
        connect(
            &self.addr,
            &self.options(Some(Self::admin_identity(&self.dir))),
        )
        .await
        .expect("admin channel")
    }

    pub async fn admin(&self) -> AdminServiceClient<tonic::transport::Channel> {
        AdminServiceClient::new(self.admin_channel().await)
    }

    /// Every stored result, oldest first.
    pub async fn results(&self) -> Vec<StoredResult> {
        let mut s = QueryServiceClient::new(self.admin_channel().await)
            .list_results(ListResultsRequest::default())
            .await
            .expect("list results")
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = s.message().await.expect("result stream") {
            out.push(r);
        }
        out
    }

    /// The id of every stored result, oldest first.
    pub async fn result_ids(&self) -> Vec<String> {
        self.results()
            .await
            .iter()
            .map(|r| {
                let env = r.envelope.as_ref().expect("a stored envelope");
                vantage_proto::envelope::decode(env).expect("decode").id
            })
            .collect()
    }

    pub async fn stats(&self) -> StatsResponse {
        let r = self.admin().await.stats(StatsRequest {}).await;
        r.expect("stats").into_inner()
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.stats()
            .await
            .counters
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
            .unwrap_or(0)
    }

    pub async fn agents(&self) -> Vec<AgentInfo> {
        let r = self.admin().await.list_agents(ListAgentsRequest {}).await;
        r.expect("agents").into_inner().agents
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if self.wrap.is_empty() {
            self.kill9();
        } else {
            self.terminate();
        }
    }
}

/// An agent enrolled into a data dir under its coordinator's temp dir.
/// Dropping it kills the process.
pub struct Agent {
    pub dir: PathBuf,
    /// Its stderr (RUST_LOG=info), across restarts.
    pub log: PathBuf,
    pub id: String,
    pub bins: Bins,
    child: Option<Child>,
}

/// Lab-style agent config: loopback targets allowed, tcp, tls and dns
/// consented.
pub const LAB_CONFIG: &str =
    "version = 1\nallow_private_targets = true\n[consent]\nkinds = [\"tcp\", \"tls\", \"dns\"]\n";

impl Agent {
    /// Enrolls an agent (CN, AS4134, no tags) under the coordinator's temp
    /// root; the error is the enrollment's stderr.
    pub fn enroll(c: &Coordinator, name: &str, token: &str) -> Result<Agent, String> {
        Self::enroll_as(c, name, token, "CN", "")
    }

    /// Enrolls with a given country and comma-separated tags, and writes
    /// [`LAB_CONFIG`] as its agent.toml.
    pub fn enroll_as(
        c: &Coordinator,
        name: &str,
        token: &str,
        country: &str,
        tags: &str,
    ) -> Result<Agent, String> {
        let bins = c.bins.clone();
        must(exists(&bins.agent));
        let dir = c.root.path().join(name);
        let e = Enrollment {
            token,
            country,
            asn: "4134",
            tags,
        };
        run(&bins.enroll_argv(&dir, &e)).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("agent.toml"), LAB_CONFIG).expect("agent.toml");
        let id: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity"))
                .expect("json");
        Ok(Agent {
            log: c.root.path().join(format!("{name}.log")),
            id: id["agent_id"].as_str().unwrap_or_default().to_string(),
            dir,
            bins,
            child: None,
        })
    }

    /// Starts `vantage-agent run` (logging to [`Agent::log`]).
    pub fn start(&mut self) {
        let log = must(append_log(&self.log));
        self.child = Some(
            command(&self.bins.run_argv(&self.dir))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn agent"),
        );
    }

    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// The running process's id (under a runner such as qemu, the
    /// runner's).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`STOP`, `CONT`) to the running agent.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("agent running").id();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {pid}");
    }

    /// Runs `vantage-agent ARGS --data-dir DIR` on this agent's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        command(&self.bins.agent_argv(args))
            .arg("--data-dir")
            .arg(&self.dir)
            .output()
            .expect("run vantage-agent")
    }

    /// Signs `count` synthetic results into the outbox (agent stopped);
    /// their ids.
    pub fn fill(&self, count: usize) -> Vec<String> {
        let out = self.cli(&["fill-outbox", "--count", &count.to_string()]);
        assert!(
            out.status.success(),
            "fill-outbox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tokens_are_stored_as_their_sha256() {
        assert_eq!(
            read_tokens_value(&["abc", "abc"]),
            "[\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\", \
             \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"]"
        );
    }

    #[test]
    fn set_config_replaces_the_line_that_set_a_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("coordinator.toml");
        std::fs::write(&path, "listen = \"a\"\nmax = 1\nmax_x = 2\n").unwrap();
        set_config(d.path(), "max", "3").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "listen = \"a\"\nmax_x = 2\nmax = 3\n");
        assert!(set_config(&d.path().join("none"), "max", "3").is_err());
    }

    #[test]
    fn command_lines_name_the_data_dir_and_the_binary() {
        let bins = Bins {
            coordinator: "/b/vantage-coordinator".into(),
            vantagectl: "/b/vantagectl".into(),
            agent: "/b/vantage-agent".into(),
            agent_runner: Vec::new(),
        };
        let dir = Path::new("/d");
        let words = |v: Vec<OsString>| -> Vec<String> {
            v.iter().map(|a| a.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(
            words(bins.init_argv(dir, "127.0.0.1:1")),
            [
                "/b/vantage-coordinator",
                "init",
                "--data-dir",
                "/d",
                "--listen",
                "127.0.0.1:1"
            ]
        );
        assert_eq!(
            words(bins.ctl_argv(dir, &["stats"])),
            ["/b/vantagectl", "--data-dir", "/d", "stats"]
        );
        let e = Enrollment {
            token: "T",
            country: "CN",
            asn: "4134",
            tags: "",
        };
        let enroll = words(bins.enroll_argv(dir, &e));
        assert_eq!(
            enroll[..4],
            [
                "/b/vantage-agent",
                "enroll",
                "--accept-consent",
                "--data-dir"
            ]
        );
        assert!(enroll.windows(2).any(|w| w == ["--token", "T"]));
        let emulated = bins.with_agent("/x/vantage-agent".into(), &["qemu-arm-static"]);
        assert_eq!(
            words(emulated.run_argv(dir)),
            [
                "qemu-arm-static",
                "/x/vantage-agent",
                "run",
                "--data-dir",
                "/d"
            ]
        );
        assert_eq!(
            words(emulated.agent_argv(&["--version"])),
            ["qemu-arm-static", "/x/vantage-agent", "--version"]
        );
        assert!(Bins::find(Some(Path::new("/nonexistent"))).is_err());
    }
}
