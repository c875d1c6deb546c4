//! The cross-built agents (deploy/scripts/build-cross.sh) against a real
//! coordinator on this machine: the arm64 and armv7 binaries under Debian's
//! qemu user-mode emulators (run explicitly, no binfmt registration
//! needed), the static x86_64 one directly. Each prints its version,
//! enrolls, runs, takes an ad-hoc TCP probe of a loopback port and
//! delivers a result the coordinator stores and verifies.
//!
//! The binaries are looked for in `target/<triple>/<profile>/vantage-agent`
//! (profile `VANTAGE_CROSS_PROFILE`, default `release`, as the script).

use std::path::PathBuf;
use std::time::Duration;

use vantage_proto::envelope;
use vantage_proto::v1::measurement;

use crate::harness::*;

/// The workspace's target dir: two up from `target/debug/deps/e2e-*`.
fn target_dir() -> PathBuf {
    let bins = Bins::here();
    let debug = bins.coordinator.parent().expect("a bin dir");
    debug.parent().expect("the target dir").to_path_buf()
}

fn cross_agent(triple: &str) -> PathBuf {
    let profile = std::env::var("VANTAGE_CROSS_PROFILE").unwrap_or_else(|_| "release".into());
    let dir = if profile == "dev" { "debug" } else { &profile };
    target_dir()
        .join(triple)
        .join(dir)
        .join(vantage_testkit::procs::AGENT)
}

/// Runs the agent built for `triple` under `emulator` (none: directly)
/// through enroll, run and one probe.
async fn agent_delivers(test: &str, triple: &str, emulator: Option<&str>) {
    let exe = cross_agent(triple);
    let mut missing = Vec::new();
    let runner = match emulator {
        Some(name) => match vantage_testkit::skip::find_tool(&[name]) {
            Some(p) => vec![p.to_string_lossy().into_owned()],
            None => {
                missing.push(format!("`{name}` (apt-get install qemu-user-static)"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if !exe.is_file() {
        missing.push(format!(
            "{} (bash deploy/scripts/build-cross.sh {triple})",
            exe.display()
        ));
    }
    let how = "bash deploy/scripts/install-test-deps.sh installs the emulators, \
               compilers and Rust targets; deploy/scripts/build-cross.sh builds the agents";
    if !vantage_testkit::skip::require(test, &missing, how) {
        return;
    }
    let runner: Vec<&str> = runner.iter().map(String::as_str).collect();

    let mut c = Coordinator::init();
    c.bins = c.bins.clone().with_agent(exe, &runner);
    let c = c.start();

    let out = vantage_testkit::procs::run(&c.bins.agent_argv(&["--version"]))
        .unwrap_or_else(|e| panic!("{triple}: --version: {e}"));
    assert_eq!(
        out.trim(),
        format!("vantage-agent {}", env!("CARGO_PKG_VERSION")),
        "{triple}: --version"
    );

    let token = c.token(1, "1h");
    let mut a = Agent::enroll(&c, triple, &token)
        .unwrap_or_else(|e| panic!("{triple}: enroll under {runner:?}: {e}"));
    a.start();
    // Emulated start-up and TLS are slower than native: generous limits.
    c.until_connected(std::slice::from_ref(&a), Duration::from_secs(60))
        .await;

    let target = format!(r#"{{"tcp":{{"host":"127.0.0.1","port":{}}}}}"#, c.port());
    let task = c.ctl_ok(&["dispatch", &target]).trim().to_string();
    until(
        Duration::from_secs(60),
        "the emulated agent's result",
        || async { !c.results().await.is_empty() },
    )
    .await;

    let results = c.results().await;
    assert_eq!(results.len(), 1, "{triple}: one result");
    let r = &results[0];
    assert_eq!(r.agent_id, a.id, "{triple}: stored under the agent");
    let env = r.envelope.as_ref().expect("a stored envelope");
    let info = c.agents().await;
    let key = info.iter().find(|i| i.agent_id == a.id).expect("listed");
    let pk: [u8; 32] = key.public_key.as_slice().try_into().expect("32-byte key");
    let pk = ed25519_dalek::VerifyingKey::from_bytes(&pk).expect("key");
    envelope::verify(&pk, env).unwrap_or_else(|e| panic!("{triple}: signature: {e}"));
    let m = envelope::decode(env).expect("decodes");
    assert_eq!(m.task_id, task, "{triple}: the dispatched task");
    match m.result {
        Some(measurement::Result::Tcp(t)) => {
            assert_eq!(t.failure, None, "{triple}: the coordinator's port accepts");
            assert_eq!(t.ip, "127.0.0.1");
        }
        other => panic!("{triple}: expected a tcp result, got {other:?}"),
    }
    let rejected: Vec<_> = c
        .stats()
        .await
        .counters
        .into_iter()
        .filter(|n| n.name.starts_with("rejected/") && n.value > 0)
        .collect();
    assert!(rejected.is_empty(), "{triple}: rejected {rejected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_agent_under_qemu_delivers_a_result() {
    agent_delivers(
        "arm64_agent_under_qemu_delivers_a_result",
        "aarch64-unknown-linux-musl",
        Some("qemu-aarch64-static"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn armv7_agent_under_qemu_delivers_a_result() {
    agent_delivers(
        "armv7_agent_under_qemu_delivers_a_result",
        "armv7-unknown-linux-gnueabihf",
        Some("qemu-arm-static"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_x86_64_agent_delivers_a_result() {
    agent_delivers(
        "static_x86_64_agent_delivers_a_result",
        "x86_64-unknown-linux-musl",
        None,
    )
    .await;
}
