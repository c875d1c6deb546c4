//! `vantagectl bench` runs the `vantage-bench` beside it: a short soak
//! through the entry point the documents use, and a clear error when the
//! benchmark binary is missing. Needs the workspace binaries
//! (`cargo build --workspace --bins`).

use std::process::Command;

use vantage_testkit::procs::Bins;

fn bins() -> Bins {
    Bins::find(None)
        .and_then(Bins::require_all)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn vantagectl_bench_runs_vantage_bench_and_passes_the_output_format_on() {
    let out = Command::new(bins().vantagectl)
        .args(["--output", "json", "bench", "soak", "--rate", "200"])
        .args(["--seconds", "4", "--agents", "2", "--size", "256"])
        .output()
        .expect("run vantagectl bench");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vantagectl bench soak: {err}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let acked = r["acked_new"].as_u64().expect("acked_new");
    assert!(acked > 200, "about 200/s for 4 s: {acked}");
    assert_eq!(r["stored"].as_u64(), Some(acked), "stored equals acked");
}

#[test]
fn vantagectl_bench_without_vantage_bench_says_what_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("vantagectl");
    std::fs::copy(bins().vantagectl, &ctl).unwrap();
    let out = Command::new(&ctl)
        .args(["bench", "ingest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vantage-bench not found beside vantagectl")
            && err.contains("cargo build --release -p vantage-bench"),
        "{err}"
    );
}
