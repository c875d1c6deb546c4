//! The censorship lab end to end: `deploy/demo.sh --check` builds the demo
//! lab in network namespaces (root), runs the lab-demo campaign with an
//! inside agent behind the censoring firewall and a control agent outside,
//! and asserts the verdict of every condition. This is the README's demo,
//! run against the binaries under test.

use std::process::Command;

use crate::harness::coordinator_bin;

fn lab_available(test: &str) -> bool {
    let mut missing = Vec::new();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        missing.push("root".to_string());
    }
    for t in ["ip", "iptables", "nginx", "dnsmasq", "openssl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t} || test -x /usr/sbin/{t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            missing.push(t.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("VANTAGE_SKIP_LAB").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED (VANTAGE_SKIP_LAB=1): {test} (missing: {})",
            missing.join(", ")
        );
        return false;
    }
    panic!(
        "{test} needs {} (run as root after bash deploy/scripts/install-test-deps.sh, or set VANTAGE_SKIP_LAB=1)",
        missing.join(", ")
    );
}

#[test]
fn demo_lab_gives_the_expected_verdict_for_every_condition() {
    if !lab_available("demo_lab_gives_the_expected_verdict_for_every_condition") {
        return;
    }
    let bin_dir = coordinator_bin().parent().unwrap().to_path_buf();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new("bash")
        .arg(repo.join("deploy/demo.sh"))
        .arg("--check")
        .env("VANTAGE_BIN_DIR", &bin_dir)
        .env(
            "VANTAGE_DEMO_PREFIX",
            format!("vt{}", std::process::id() % 100_000),
        )
        .output()
        .expect("run deploy/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo --check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("all 9 verdicts as expected"), "{stdout}");
    for line in [
        "tls.reset",
        "http.reset",
        "dns.hijack",
        "dns.nxdomain",
        "http.blockpage",
        "tcp.timeout",
        "tcp.refused",
    ] {
        assert!(
            stdout.contains(line),
            "verdict table lacks {line}:\n{stdout}"
        );
    }
}
