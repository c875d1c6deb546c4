//! Shared harness for end-to-end tests: real coordinator and agent processes
//! on loopback, temp data dirs, real TLS and a real sled store.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vantage_proto::client::{connect, ClientIdentity, ConnectOptions};
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::*;

pub fn coordinator_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vantage-coordinator"))
}

pub fn vantagectl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vantagectl"))
}

/// The agent binary is built by the workspace build next to ours.
pub fn agent_bin() -> PathBuf {
    let p = coordinator_bin().with_file_name("vantage-agent");
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls the async condition `f` until it is true or `limit` passes.
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

fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
    }
}

pub struct Coordinator {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    pub addr: String,
    pub log: PathBuf,
    /// Read-only HTTP API address (`--http-listen`), when enabled.
    pub http: Option<String>,
    child: Option<Child>,
}

impl Coordinator {
    /// `init`s a data dir on a free loopback port (not started).
    pub fn init() -> Coordinator {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("coord");
        let addr = format!("127.0.0.1:{}", free_port());
        let out = Command::new(coordinator_bin())
            .args(["init", "--data-dir"])
            .arg(&dir)
            .args(["--listen", &addr])
            .output()
            .expect("run init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Coordinator {
            log: root.path().join("coordinator.log"),
            root,
            dir,
            addr,
            http: None,
            child: None,
        }
    }

    /// Serves the HTTP API on a free loopback port (`--http-listen`).
    pub fn with_http(mut self) -> Coordinator {
        self.http = Some(format!("127.0.0.1:{}", free_port()));
        self
    }

    /// Sets a top-level setting in coordinator.toml (before `start`),
    /// replacing the line that set it; `value` is TOML.
    pub fn set_config(&self, key: &str, value: &str) {
        let path = self.dir.join("coordinator.toml");
        let cfg = std::fs::read_to_string(&path).expect("coordinator.toml");
        let mut out: String = cfg
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) != Some(key))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str(&format!("{key} = {value}\n"));
        std::fs::write(&path, out).expect("write coordinator.toml");
    }

    pub fn start(mut self) -> Coordinator {
        self.restart();
        self
    }

    /// Starts (again) and waits until the port accepts connections.
    pub fn restart(&mut self) {
        // Ports come from `free_port`, which another test may take in the
        // meantime: if our coordinator cannot bind, move it to a new port.
        for _attempt in 0..5 {
            let served_before = self.log_text().matches("coordinator serving").count();
            let log = File::options()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("log");
            let mut cmd = Command::new(coordinator_bin());
            cmd.args(["serve", "--data-dir"]).arg(&self.dir);
            if let Some(h) = &self.http {
                cmd.args(["--http-listen", h]);
            }
            let child = cmd
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn coordinator");
            self.child = Some(child);
            // Ours is up when its log says so, not when the port answers.
            wait_until(Duration::from_secs(20), "the coordinator to start", || {
                !self.is_running()
                    || self.log_text().matches("coordinator serving").count() > served_before
            });
            if self.is_running() {
                break;
            }
            let port = free_port();
            let old = self.addr.clone();
            self.addr = format!("127.0.0.1:{port}");
            let cfg = self.dir.join("coordinator.toml");
            let text = std::fs::read_to_string(&cfg).expect("coordinator.toml");
            std::fs::write(&cfg, text.replace(&old, &self.addr)).expect("coordinator.toml");
        }
        assert!(
            self.is_running(),
            "the coordinator did not start:\n{}",
            self.log_text()
        );
        if let Some(h) = self.http.clone() {
            wait_until(Duration::from_secs(20), "the HTTP API to listen", || {
                std::net::TcpStream::connect(&h).is_ok()
            });
        }
    }

    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(vantagectl_bin())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run vantagectl")
    }

    pub fn token(&self, uses: u32, expires: &str) -> String {
        let out = self.ctl(&[
            "token",
            "create",
            "--uses",
            &uses.to_string(),
            "--expires",
            expires,
        ]);
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn ca_fingerprint(&self) -> String {
        let pem = std::fs::read_to_string(self.dir.join("ca.pem")).expect("ca.pem");
        vantage_proto::cert_fingerprint(&vantage_proto::client::parse_certs(&pem).expect("ca")[0])
    }

    pub fn options(&self, identity: Option<ClientIdentity>) -> ConnectOptions {
        ConnectOptions {
            ca_sha256: self.ca_fingerprint(),
            identity,
            connect_timeout: Duration::from_secs(5),
        }
    }

    pub fn admin_identity(dir: &Path) -> ClientIdentity {
        ClientIdentity {
            cert_pem: std::fs::read_to_string(dir.join("admin.pem")).expect("admin.pem"),
            key_pem: std::fs::read_to_string(dir.join("admin.key")).expect("admin.key"),
        }
    }

    pub async fn admin(&self) -> AdminServiceClient<tonic::transport::Channel> {
        let ch = connect(
            &self.addr,
            &self.options(Some(Self::admin_identity(&self.dir))),
        )
        .await
        .expect("admin channel");
        AdminServiceClient::new(ch)
    }

    /// Every stored result, oldest first.
    pub async fn results(&self) -> Vec<StoredResult> {
        let ch = connect(
            &self.addr,
            &self.options(Some(Self::admin_identity(&self.dir))),
        )
        .await
        .expect("query channel");
        let mut s = QueryServiceClient::new(ch)
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

    pub async fn stats(&self) -> StatsResponse {
        self.admin()
            .await
            .stats(StatsRequest {})
            .await
            .expect("stats")
            .into_inner()
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
        self.admin()
            .await
            .list_agents(ListAgentsRequest {})
            .await
            .expect("agents")
            .into_inner()
            .agents
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Agent {
    pub dir: PathBuf,
    pub log: PathBuf,
    pub id: String,
    child: Option<Child>,
}

/// Lab-style agent config: loopback targets allowed, tcp consented.
pub const LAB_CONFIG: &str =
    "version = 1\nallow_private_targets = true\n[consent]\nkinds = [\"tcp\", \"tls\", \"dns\"]\n";

impl Agent {
    /// Enrolls an agent under the coordinator's temp root.
    pub fn enroll(c: &Coordinator, name: &str, token: &str) -> Result<Agent, String> {
        Self::enroll_as(c, name, token, "CN", "")
    }

    /// Enrolls with a given country and comma-separated tags.
    pub fn enroll_as(
        c: &Coordinator,
        name: &str,
        token: &str,
        country: &str,
        tags: &str,
    ) -> Result<Agent, String> {
        let dir = c.root.path().join(name);
        let out = Command::new(agent_bin())
            .args([
                "enroll",
                "--tags",
                tags,
                "--token",
                token,
                "--country",
                country,
                "--asn",
                "4134",
                "--accept-consent",
                "--data-dir",
            ])
            .arg(&dir)
            .output()
            .expect("run enroll");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::fs::write(dir.join("agent.toml"), LAB_CONFIG).expect("agent.toml");
        let id: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity"))
                .expect("json");
        Ok(Agent {
            log: c.root.path().join(format!("{name}.log")),
            id: id["agent_id"].as_str().unwrap_or_default().to_string(),
            dir,
            child: None,
        })
    }

    pub fn start(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        self.child = Some(
            Command::new(agent_bin())
                .args(["run", "--data-dir"])
                .arg(&self.dir)
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

    /// Sends a signal by name (`STOP`, `CONT`) to the running agent.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("agent running").id();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {pid}");
    }

    /// Signs `count` synthetic results into the outbox (agent stopped).
    pub fn fill(&self, count: usize) -> Vec<String> {
        let out = Command::new(agent_bin())
            .args(["fill-outbox", "--count", &count.to_string(), "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("fill-outbox");
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
