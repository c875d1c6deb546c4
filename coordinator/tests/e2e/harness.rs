//! The e2e tests' harness: real coordinator and agent processes on
//! loopback in temp dirs (`vantage_testkit::procs`, shared with the
//! benchmarks and the lab), plus the few helpers only these tests use.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

pub use vantage_testkit::procs::{
    free_port, poll, until, wait_until, Agent, Bins, Coordinator, LAB_CONFIG,
};

pub fn coordinator_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vantage-coordinator"))
}

pub fn vantagectl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vantagectl"))
}

/// The agent binary is built by the workspace build next to ours.
pub fn agent_bin() -> PathBuf {
    let p = Bins::here().agent;
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// Two inside agents (in1, in2: CN) and a control (ctl: DE, tagged
/// `control`): `(name, country, tags)`.
pub const FLEET: [(&str, &str, &str); 3] = [
    ("in1", "CN", ""),
    ("in2", "CN", ""),
    ("ctl", "DE", "control"),
];

/// [`FLEET`] running and connected; `fill_first` results signed into
/// in1's outbox before it starts, and stored before this returns.
pub async fn fleet(c: &Coordinator, fill_first: usize) -> Vec<Agent> {
    let mut v = c.enroll_agents(&FLEET);
    if fill_first > 0 {
        v[0].fill(fill_first);
    }
    for a in &mut v {
        a.start();
    }
    c.until_connected(&v, Duration::from_secs(30)).await;
    let filled = fill_first as u64;
    until(
        Duration::from_secs(30),
        "the filled outbox stored",
        || async { c.stats().await.results_stored >= filled },
    )
    .await;
    v
}

/// [`fleet`] outside a runtime, nothing filled.
pub fn running_fleet(c: &Coordinator) -> Vec<Agent> {
    let mut v = c.enroll_agents(&FLEET);
    for a in &mut v {
        a.start();
    }
    c.wait_connected(&v, Duration::from_secs(30));
    v
}

/// A campaign spec for [`FLEET`]: inside CN, control tagged `control`,
/// private targets allowed; `extra` top-level lines, then `targets`.
pub fn campaign_spec(name: &str, deadline: &str, extra: &str, targets: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\ndeadline = \"{deadline}\"\nallow_private_targets = true\n{extra}\n\
         [inside]\ncountries = [\"CN\"]\n\n[control]\ntags = [\"control\"]\n\n{targets}"
    )
}

/// `[[targets]]` tables: TCP to `host` on each port.
pub fn tcp_targets(host: &str, ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("[[targets]]\ntcp = {{ host = \"{host}\", port = {p} }}\n\n"))
        .collect()
}

/// A fresh measurement of `agent_id` (new id, start and end now), to sign.
pub fn measurement(agent_id: &str) -> vantage_proto::v1::Measurement {
    let now = vantage_proto::now_us();
    vantage_proto::v1::Measurement {
        id: vantage_proto::envelope::new_id(),
        agent_id: agent_id.into(),
        start_us: now,
        end_us: now,
        software_version: "e2e".into(),
        ..Default::default()
    }
}

/// A two-worker runtime for the tests that block between async steps.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Two TCP ports on 127.0.0.2: one that accepts (and closes at once), one
/// that refuses.
pub async fn open_and_closed_ports() -> (u16, u16) {
    let open = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let open_port = open.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = open.accept().await {
            drop(s);
        }
    });
    (open_port, free_port_on_127_0_0_2())
}

/// A TCP port on 127.0.0.2 that nothing listens on (yet).
pub fn free_port_on_127_0_0_2() -> u16 {
    std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started coordinator with its HTTP face (no rate limit), its HTTP
/// address and [`FLEET`] running and connected.
pub async fn http_fleet() -> (Coordinator, String, Vec<Agent>) {
    let c = Coordinator::init().with_http();
    c.set_config("http_rate_per_minute", "0");
    let c = c.start();
    let http = c.http.clone().unwrap();
    let agents = fleet(&c, 0).await;
    (c, http, agents)
}
