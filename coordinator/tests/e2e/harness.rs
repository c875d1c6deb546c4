//! The e2e tests' harness: real coordinator and agent processes on
//! loopback in temp dirs (`vantage_testkit::procs`, shared with the
//! benchmarks and the lab), plus the few helpers only these tests use.

#![allow(dead_code)]

use std::path::PathBuf;

pub use vantage_testkit::procs::{
    free_port, until, wait_until, Agent, Bins, Coordinator, LAB_CONFIG,
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
