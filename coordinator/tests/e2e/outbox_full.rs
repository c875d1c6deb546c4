//! Agent disk full (issue 9), with real processes.
//!
//! 1. The outbox reaches its bound (`limits.outbox_max_entries`) while the
//!    coordinator is down: the stated policy (DESIGN.md, agent/src/outbox.rs:
//!    the OLDEST results are dropped) applies, the drops are counted and
//!    shown by `vantage-agent status`, the agent keeps running and, when the
//!    coordinator returns, delivers exactly the results it kept.
//! 2. A real full filesystem: the agent's data dir on a 2 MiB tmpfs. Writing
//!    to the outbox fails with a clear error (ENOSPC) once the disk is full;
//!    `run` still starts on the full disk (opening the outbox writes
//!    nothing, acknowledgements need no room), delivers everything written
//!    before, and the emptied log gives its space back.

use std::collections::HashSet;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::hostile::stored;

const BOUND: usize = 100;

fn status_json(a: &Agent) -> serde_json::Value {
    let out = a.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json")
}

fn status_text(a: &Agent) -> String {
    String::from_utf8_lossy(&a.cli(&["status"]).stdout).into_owned()
}

#[test]
fn full_outbox_drops_the_oldest_counts_them_and_delivers_the_rest() {
    let rt = runtime();
    let mut c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let mut a = Agent::enroll(&c, "full", &token).expect("enroll");
    std::fs::write(
        a.dir.join("agent.toml"),
        format!("{LAB_CONFIG}[limits]\noutbox_max_entries = {BOUND}\n"),
    )
    .expect("agent.toml");

    // The coordinator goes away; results keep coming (in two rounds).
    c.kill9();
    let mut ids = a.fill(60);
    ids.extend(a.fill(90));
    assert_eq!(ids.len(), 150);
    let kept: HashSet<String> = ids[ids.len() - BOUND..].iter().cloned().collect();

    // The agent runs with a full outbox and no coordinator.
    a.start();
    wait_until(Duration::from_secs(20), "the agent to report", || {
        status_json(&a)["running"] == true
    });
    std::thread::sleep(Duration::from_secs(2)); // a few failed connects
    let s = status_json(&a);
    assert_eq!(s["connected"], false, "{s}");
    assert_eq!(s["outbox_depth"], BOUND as u64, "{s}");
    assert_eq!(s["outbox_dropped"], 50, "the 50 oldest dropped: {s}");
    let text = status_text(&a);
    assert!(
        text.contains("outbox dropped:  50"),
        "status shows the drops:\n{text}"
    );

    // The coordinator returns: the agent delivers what it kept, once.
    c.restart();
    wait_until(
        Duration::from_secs(60),
        "the kept results delivered",
        || rt.block_on(c.stats()).results_stored >= BOUND as u64,
    );
    let got: HashSet<String> = rt.block_on(stored(&c)).into_keys().collect();
    assert_eq!(got, kept, "exactly the newest {BOUND} are stored");
    wait_until(Duration::from_secs(20), "the outbox to drain", || {
        status_json(&a)["outbox_depth"] == 0
    });
    let s = status_json(&a);
    assert_eq!(
        (
            s["connected"].clone(),
            s["outbox_dropped"].clone(),
            s["delivered_total"].clone()
        ),
        (true.into(), 50.into(), (BOUND as u64).into()),
        "{s}"
    );
    eprintln!(
        "outbox_full: bound {BOUND}; 150 signed while the coordinator was down; \
         dropped 50 (the oldest), kept {BOUND}; delivered {} after it returned; lost 0 of the kept",
        got.len()
    );
}

/// Mounts a 2 MiB tmpfs at `dir`; false (after printing SKIPPED) when it
/// cannot and VANTAGE_SKIP_TMPFS=1 allows skipping.
fn mount_tmpfs(dir: &std::path::Path) -> bool {
    std::fs::create_dir_all(dir).expect("mount point");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir)
        .output();
    let err = match out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    if std::env::var("VANTAGE_SKIP_TMPFS").as_deref() == Ok("1") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (VANTAGE_SKIP_TMPFS=1): agent_on_a_full_filesystem (mount: {err})"
        );
        return false;
    }
    panic!(
        "agent_on_a_full_filesystem: cannot mount a tmpfs at {} ({err}); run as root \
         (or with CAP_SYS_ADMIN), or set VANTAGE_SKIP_TMPFS=1 to skip",
        dir.display()
    );
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn agent_on_a_full_filesystem_fails_clearly_and_delivers_what_it_wrote() {
    let rt = runtime();
    let mut c = Coordinator::init().start();
    let dir = c.root.path().join("tiny");
    if !mount_tmpfs(&dir) {
        return;
    }
    let _unmount = Unmount(dir.clone());
    let token = c.token(1, "1h");
    // Enroll into the tmpfs (the harness puts the agent at root/<name>).
    let mut a = Agent::enroll(&c, "tiny", &token).expect("enroll on the tmpfs");
    c.kill9();

    // Fill until the disk is full: each round either succeeds (its ids are
    // durable) or fails with a clear error.
    let mut written: Vec<String> = Vec::new();
    let mut error = None;
    for _ in 0..200 {
        let out = Command::new(agent_bin())
            .args(["fill-outbox", "--count", "100", "--data-dir"])
            .arg(&a.dir)
            .output()
            .expect("fill-outbox");
        if out.status.success() {
            written.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(String::from),
            );
        } else {
            error = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let error = error.expect("a 2 MiB disk fills up");
    assert!(
        error.contains("No space left on device") || error.contains("os error 28"),
        "the error names the full disk: {error}"
    );
    assert!(!error.contains("panicked"), "no panic: {error}");
    assert!(
        !written.is_empty(),
        "some rounds fit before the disk filled"
    );

    // The agent starts on the full disk, and delivers what was written.
    c.restart();
    a.start();
    let want = written.len() as u64;
    let start = std::time::Instant::now();
    while rt.block_on(c.stats()).results_stored < want {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {want} written results delivered in 60 s; data dir: {}; agent log:\n{}",
            rt.block_on(c.stats()).results_stored,
            String::from_utf8_lossy(
                &Command::new("du")
                    .arg("-ab")
                    .arg(&a.dir)
                    .output()
                    .expect("du")
                    .stdout
            ),
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = a.dir.join("outbox-log").join("log");
    wait_until(
        Duration::from_secs(20),
        "the delivered outbox log to be emptied",
        || std::fs::metadata(&log).is_ok_and(|m| m.len() == 0),
    );
    let got: HashSet<String> = rt.block_on(stored(&c)).into_keys().collect();
    let missing = written.iter().filter(|i| !got.contains(*i)).count();
    assert_eq!(
        missing, 0,
        "{missing} durably written results not delivered"
    );
    eprintln!(
        "outbox_full: 2 MiB tmpfs filled after {} results in rounds of 100; the next round failed \
         with: {}; all {} delivered after the agent started, and the log emptied",
        written.len(),
        error.lines().last().unwrap_or_default(),
        got.len()
    );
}
