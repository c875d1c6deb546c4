//! Deployment: the shipped files (units, example configs), consent on
//! enroll, `vantage-agent status` against a running agent, offline
//! backup/restore, config overrides, install.sh, and the .deb contents and
//! an install -> enroll -> status -> remove cycle (deploy/scripts/test.sh
//! builds the packages before the tests run).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use vantage_coordinator::store::backup::STORE_DIR;
use vantage_coordinator::store::Store;

use crate::harness::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `true` when the test may go on; missing tools fail the test unless
/// VANTAGE_SKIP_LAB=1 (then it is reported as skipped).
fn require(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| !have(t))
        .map(|t| t.to_string())
        .collect();
    let how = "bash deploy/scripts/install-test-deps.sh installs it";
    vantage_testkit::skip::require(test, &missing, how)
}

// ------------------------------------------------------------ shipped files

#[test]
fn agent_toml_example_is_the_default_config() {
    let path = repo().join("deploy/agent.toml.example");
    let want = vantage_agent::config::AgentConfig::default_file_text();
    if std::env::var("VANTAGE_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).expect("write agent.toml.example");
    }
    let shipped = std::fs::read_to_string(&path).expect("deploy/agent.toml.example");
    assert_eq!(
        shipped, want,
        "deploy/agent.toml.example drifted from AgentConfig::default_file_text(); \
         regenerate it with VANTAGE_BLESS=1 cargo test -p vantage-coordinator --test e2e deploy::agent_toml"
    );
}

#[test]
fn examples_parse() {
    let ex = repo().join("deploy/examples");
    for f in ["agent-inside.toml", "agent-control.toml"] {
        let t = std::fs::read_to_string(ex.join(f)).expect(f);
        vantage_agent::config::AgentConfig::parse(&t).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let t = std::fs::read_to_string(ex.join("coordinator.toml")).expect("coordinator.toml");
    vantage_coordinator::config::Config::parse(&t)
        .unwrap_or_else(|e| panic!("coordinator.toml: {e}"));
    let prom = std::fs::read_to_string(ex.join("prometheus.yml")).expect("prometheus.yml");
    assert!(prom.contains("/metrics") && prom.contains("127.0.0.1:9090"));
}

const HARDENING: &[&str] = &[
    "DynamicUser=yes",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "\nCapabilityBoundingSet=\n",
];

/// Writes `unit` with its ExecStart binary replaced by `bin` into `dir`
/// and runs `systemd-analyze verify` on it.
fn verify_unit(dir: &Path, name: &str, unit: &str, from: &str, bin: &Path) {
    assert!(unit.contains(from), "{name}: no {from}");
    let copy = dir.join(name);
    std::fs::write(&copy, unit.replace(from, &bin.display().to_string())).expect("unit copy");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {name}: {}",
        text(&out)
    );
}

#[test]
fn systemd_units_verify() {
    let agent_unit =
        std::fs::read_to_string(repo().join("deploy/systemd/vantage-agent.service")).unwrap();
    let coord_unit =
        std::fs::read_to_string(repo().join("deploy/systemd/vantage-coordinator.service")).unwrap();
    for (unit, state, exec) in [
        (
            &agent_unit,
            "StateDirectory=vantage-agent\n",
            "ExecStart=/usr/bin/vantage-agent run --data-dir /var/lib/vantage-agent\n",
        ),
        (
            &coord_unit,
            "StateDirectory=vantage-coordinator\n",
            "ExecStart=/usr/bin/vantage-coordinator serve --data-dir /var/lib/vantage-coordinator\n",
        ),
    ] {
        for want in HARDENING.iter().chain([&state, &exec]) {
            assert!(unit.contains(want), "unit lacks {want:?}");
        }
        assert!(
            !unit.contains("\nAmbientCapabilities=CAP"),
            "no capabilities granted"
        );
    }
    if !require("systemd_units_verify", &["systemd-analyze"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    verify_unit(
        d.path(),
        "vantage-agent.service",
        &agent_unit,
        "/usr/bin/vantage-agent",
        &agent_bin(),
    );
    verify_unit(
        d.path(),
        "vantage-coordinator.service",
        &coord_unit,
        "/usr/bin/vantage-coordinator",
        &coordinator_bin(),
    );
}

// ------------------------------------------------------------ consent

fn enroll_cmd(token: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(agent_bin());
    cmd.args(["enroll", "--token", token, "--data-dir"])
        .arg(dir)
        .env_remove("VANTAGE_TOKEN");
    cmd
}

/// Runs `enroll` with `answer` typed on a terminal (a pty from `script`).
fn enroll_on_tty(token: &str, dir: &Path, answer: &str) -> Output {
    let cmdline = format!(
        "'{}' enroll --token '{}' --data-dir '{}'",
        agent_bin().display(),
        token,
        dir.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{answer}\n").as_bytes())
        .expect("type the answer");
    child.wait_with_output().expect("enroll on a tty")
}

#[test]
fn enroll_requires_consent() {
    if !require("enroll_requires_consent", &["script"]) {
        return;
    }
    let c = Coordinator::init().start();
    let token = c.token(3, "1h");

    // Not a terminal, no flag: refused, nothing written, flag suggested.
    let d1 = c.root.path().join("piped");
    let mut child = enroll_cmd(&token, &d1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"yes\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--accept-consent") && err.contains("government"),
        "notice shown and the flag named: {err}"
    );
    assert!(
        !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
        "no escape codes on a pipe: {}",
        text(&out)
    );
    assert!(!d1.join("identity.json").exists() && !d1.join("consent.json").exists());

    // A terminal, answer "no": refused.
    let d2 = c.root.path().join("said-no");
    let out = enroll_on_tty(&token, &d2, "no");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("consent was not given"),
        "{}",
        text(&out)
    );
    assert!(!d2.join("identity.json").exists() && !d2.join("consent.json").exists());

    // A terminal, answer "yes": enrolled, acceptance recorded.
    let d3 = c.root.path().join("said-yes");
    let out = enroll_on_tty(&token, &d3, "yes");
    assert!(out.status.success(), "{}", text(&out));
    assert!(d3.join("identity.json").exists());
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d3.join("consent.json")).unwrap()).unwrap();
    assert_eq!(rec["method"], "prompt");
    assert!(rec["accepted_us"].as_i64().unwrap() > 0);

    // The flag, for automated installs.
    let d4 = c.root.path().join("flag");
    let out = enroll_cmd(&token, &d4)
        .arg("--accept-consent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d4.join("consent.json")).unwrap()).unwrap();
    assert_eq!(rec["method"], "flag");
}

/// The consent notice and `status` read well on a serial console: plain
/// text (no ANSI escape codes) on a pipe, even with a terminal type set,
/// and the notice's lines fit 80 columns.
#[test]
fn consent_notice_and_status_are_plain_text_on_a_pipe() {
    let d = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(agent_bin())
            .args(args)
            .env("TERM", "xterm-256color")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .output()
            .expect("vantage-agent")
    };
    let plain = |out: &Output| {
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "an escape code on a pipe: {}",
            text(out)
        );
    };

    let out = run(&["consent-notice"]);
    assert!(out.status.success(), "{}", text(&out));
    plain(&out);
    let notice = String::from_utf8(out.stdout.clone()).expect("UTF-8");
    assert!(notice.contains("government"), "{notice}");
    for line in notice.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line:?}",
            line.chars().count()
        );
    }

    let dir = d.path().join("nobody").display().to_string();
    for args in [
        &["status", "--data-dir", &dir][..],
        &["status", "--json", "--data-dir", &dir],
        &["enroll", "--token", "not-a-token", "--data-dir", &dir],
        &["no-such-command"],
    ] {
        let out = run(args);
        plain(&out);
    }
    let out = run(&["status", "--data-dir", &dir]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("enrolled:        no"), "{}", text(&out));
    for line in t.lines().filter(|l| !l.contains(&dir)) {
        assert!(line.chars().count() <= 80, "over 80 columns: {line:?}");
    }

    // On a terminal (a pty from `script`) there is colour, unless NO_COLOR.
    if !require("plain_text_no_color", &["script"]) {
        return;
    }
    let on_tty = |no_color: bool| {
        let cmdline = format!(
            "{}'{}' no-such-command",
            if no_color { "NO_COLOR=1 " } else { "" },
            agent_bin().display()
        );
        let out = Command::new("script")
            .args(["-q", "-e", "-c", &cmdline, "/dev/null"])
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .stdin(Stdio::null())
            .output()
            .expect("script");
        assert!(text(&out).contains("no-such-command"), "{}", text(&out));
        out.stdout.contains(&0x1b)
    };
    assert!(on_tty(false), "colour on a terminal (the check sees it)");
    assert!(!on_tty(true), "NO_COLOR=1: no colour on a terminal");
}

// ------------------------------------------------------------ status

fn status_json(dir: &Path) -> serde_json::Value {
    let out = Command::new(agent_bin())
        .args(["status", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .expect("status");
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("status json")
}

#[test]
fn status_reports_a_running_agent() {
    let c = Coordinator::init().start();
    let token = c.token(1, "1h");

    let missing = c.root.path().join("nobody");
    let out = Command::new(agent_bin())
        .args(["status", "--data-dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("enrolled:        no"));

    let mut a = Agent::enroll(&c, "st", &token).expect("enroll");
    let s = status_json(&a.dir);
    assert_eq!(s["running"], false);
    assert_eq!(s["consent"]["method"], "flag");

    let ids = a.fill(20);
    assert_eq!(status_json(&a.dir)["outbox_depth"], 20);
    a.start();
    wait_until(
        Duration::from_secs(30),
        "status: 20 sent, connected",
        || {
            let s = status_json(&a.dir);
            s["sent_24h"] == ids.len() && s["connected"] == true && s["outbox_depth"] == 0
        },
    );
    let s = status_json(&a.dir);
    assert_eq!(s["running"], true);
    assert_eq!(s["outbox_dropped"], 0);
    assert_eq!(
        s["consent"]["kinds"],
        serde_json::json!(["tcp", "tls", "dns"])
    );
    let out = Command::new(agent_bin())
        .args(["status", "--data-dir"])
        .arg(&a.dir)
        .output()
        .unwrap();
    assert!(
        !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
        "no escape codes on a pipe: {}",
        text(&out)
    );
    let t = String::from_utf8_lossy(&out.stdout);
    for want in [
        "agent running:   yes",
        "connected:       yes",
        "sent, last 24 h: 20",
        "outbox depth:    0",
        "consent:         accepted",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }

    a.kill9();
    let s = status_json(&a.dir);
    assert_eq!(s["running"], false);
    assert_eq!(s["connected"], false);
    assert_eq!(s["figures_from"], "outbox", "read directly once unlocked");
    assert_eq!(s["sent_24h"], 20, "kept across the stop");
}

// ------------------------------------------------------------ backup

fn coordinator(args: &[&str]) -> Output {
    Command::new(coordinator_bin())
        .args(args)
        .env_remove("VANTAGE_DATA_DIR")
        .env_remove("VANTAGE_LISTEN")
        .env_remove("VANTAGE_ADVERTISE")
        .output()
        .expect("vantage-coordinator")
}

#[test]
fn backup_restore_round_trips_and_refuses_corruption() {
    let mut c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let mut a = Agent::enroll(&c, "b1", &token).expect("enroll");
    let ids = a.fill(50);
    a.start();
    wait_until(Duration::from_secs(30), "50 results stored", || {
        status_json(&a.dir)["sent_24h"] == ids.len()
    });
    a.kill9();

    let dir = c.dir.display().to_string();
    let file = c.root.path().join("coord.vbk");
    let file_s = file.display().to_string();

    // Serving: the snapshot streams from the running coordinator.
    let live = c.root.path().join("live.vbk");
    let live_s = live.display().to_string();
    let out = coordinator(&["backup", "--data-dir", &dir, "--to", &live_s]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("running coordinator"), "{}", text(&out));

    c.kill9();
    let out = coordinator(&["backup", "--data-dir", &dir, "--to", &file_s]);
    assert!(out.status.success(), "{}", text(&out));
    let out = coordinator(&["backup", "--data-dir", &dir, "--to", &file_s]);
    assert!(
        !out.status.success(),
        "an existing backup is not overwritten"
    );
    let out = coordinator(&["verify-backup", &file_s]);
    assert!(out.status.success(), "{}", text(&out));

    // Restores `backup` into the new data dir `to`: the original store
    // and the restored one.
    let restore_into = |backup: &str, to: &PathBuf| {
        let to_s = to.display().to_string();
        let out = coordinator(&["restore", "--from", backup, "--data-dir", &to_s]);
        assert!(out.status.success(), "{}", text(&out));
        let a = Store::open(&c.dir.join(STORE_DIR)).expect("original store");
        let b = Store::open(&to.join(STORE_DIR)).expect("restored store");
        (a, b)
    };
    let restored = c.root.path().join("restored");

    // Every key of every tree, and every data-dir file with its mode.
    {
        let (a, b) = restore_into(&file_s, &restored);
        let (da, db) = (a.dump().unwrap(), b.dump().unwrap());
        let names: Vec<String> = da
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "results"), "{names:?}");
        let results = da.iter().find(|(n, _)| n == b"results").unwrap();
        assert!(
            results.1.iter().filter(|(k, _)| k[0] == b'r').count() >= 50,
            "the results are in the backup"
        );
        assert_eq!(da.len(), db.len(), "same trees");
        for ((na, ea), (nb, eb)) in da.iter().zip(&db) {
            assert_eq!(na, nb);
            assert_eq!(ea.len(), eb.len(), "tree {}", String::from_utf8_lossy(na));
            for (x, y) in ea.iter().zip(eb) {
                assert_eq!(x, y, "tree {}", String::from_utf8_lossy(na));
            }
        }
        assert_eq!(a.result_count().unwrap(), b.result_count().unwrap());
    }
    // The live snapshot holds exactly the same results as the stopped store.
    {
        let (a, b) = restore_into(&live_s, &c.root.path().join("restored-live"));
        let results = |s: &Store| {
            s.dump()
                .unwrap()
                .into_iter()
                .find(|(n, _)| n == b"results")
                .map(|(_, e)| e)
                .unwrap_or_default()
        };
        let (ra, rb) = (results(&a), results(&b));
        assert!(ra.len() > 50);
        assert_eq!(ra, rb, "every key and value of the results tree");
    }
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "coordinator.toml",
        "ca.pem",
        "ca.key",
        "admin.key",
        "server.key",
    ] {
        assert_eq!(
            std::fs::read(c.dir.join(f)).unwrap(),
            std::fs::read(restored.join(f)).unwrap(),
            "{f}"
        );
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(c.dir.join(f)), mode(restored.join(f)), "{f} mode");
    }
    let out = coordinator(&[
        "restore",
        "--from",
        &file_s,
        "--data-dir",
        &restored.display().to_string(),
    ]);
    assert!(!out.status.success() && text(&out).contains("not empty"));

    // A flipped byte and a truncated file are refused; nothing is written.
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    for (name, bytes, why) in [
        ("flipped.vbk", flipped, &["corrupt", "truncated"][..]),
        (
            "truncated.vbk",
            good[..good.len() - 100].to_vec(),
            &["truncated"][..],
        ),
    ] {
        let p = c.root.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let target = c.root.path().join(format!("from-{name}"));
        let out = coordinator(&[
            "restore",
            "--from",
            &p.display().to_string(),
            "--data-dir",
            &target.display().to_string(),
        ]);
        assert!(!out.status.success(), "{name}: {}", text(&out));
        assert!(
            why.iter().any(|w| text(&out).contains(w)),
            "{name}: {}",
            text(&out)
        );
        assert!(!target.exists(), "{name}: nothing restored");
    }

    // The restored directory serves.
    let out = coordinator(&[
        "serve",
        "--print-config",
        "--data-dir",
        &restored.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

// ------------------------------------------------------------ config overrides

#[test]
fn serve_settings_flag_over_env_over_file() {
    let c = Coordinator::init();
    let dir = c.dir.display().to_string();
    let print = |envs: &[(&str, &str)], args: &[&str]| -> toml::Value {
        let mut cmd = Command::new(coordinator_bin());
        cmd.args(["serve", "--print-config", "--data-dir", &dir])
            .args(args)
            .env_remove("VANTAGE_LISTEN")
            .env_remove("VANTAGE_ADVERTISE");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
    };
    assert_eq!(print(&[], &[])["listen"].as_str(), Some(c.addr.as_str()));
    let v = print(
        &[
            ("VANTAGE_LISTEN", "127.0.0.1:1111"),
            ("VANTAGE_ADVERTISE", "a.example:1,b.example:2"),
            ("VANTAGE_HANDSHAKE_TIMEOUT_S", "3"),
        ],
        &[],
    );
    assert_eq!(v["listen"].as_str(), Some("127.0.0.1:1111"));
    assert_eq!(
        v["advertise"],
        toml::Value::Array(vec!["a.example:1".into(), "b.example:2".into()])
    );
    assert_eq!(v["handshake_timeout_s"].as_integer(), Some(3));
    let v = print(
        &[("VANTAGE_LISTEN", "127.0.0.1:1111")],
        &["--listen", "127.0.0.1:2222"],
    );
    assert_eq!(v["listen"].as_str(), Some("127.0.0.1:2222"));

    let bad = c.root.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\nlisten_port = 3\n",
    )
    .unwrap();
    let out = coordinator(&[
        "serve",
        "--print-config",
        "--data-dir",
        &dir,
        "--config",
        &bad.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("line 4") && text(&out).contains("listen_port"),
        "{}",
        text(&out)
    );
}

// ------------------------------------------------------------ install.sh

fn install_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .args(args)
        .output()
        .expect("install.sh")
}

#[test]
fn install_sh_checks_inputs_is_idempotent_and_uninstalls() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let r = root.display().to_string();
    let bin = agent_bin().display().to_string();

    let out = install_sh(&["--root", &r, "agent", "/nonexistent/vantage-agent"]);
    assert!(!out.status.success() && text(&out).contains("does not exist"));
    let out = install_sh(&["--root", &r, "agent", "/bin/true"]);
    assert!(
        !out.status.success() && text(&out).contains("does not look like vantage-agent"),
        "{}",
        text(&out)
    );
    let out = install_sh(&["--root", &r, "agent", "/bin/false"]);
    assert!(
        !out.status.success() && text(&out).contains("--version failed"),
        "{}",
        text(&out)
    );
    let out = install_sh(&[
        "--root",
        &r,
        "coordinator",
        &coordinator_bin().display().to_string(),
    ]);
    assert!(!out.status.success(), "vantagectl is required too");

    let out = install_sh(&["--root", &r, "agent", &bin]);
    assert!(out.status.success(), "{}", text(&out));
    let installed = root.join("usr/local/bin/vantage-agent");
    let unit = root.join("etc/systemd/system/vantage-agent.service");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(agent_bin()).unwrap()
    );
    let u = std::fs::read_to_string(&unit).unwrap();
    assert!(
        u.contains("ExecStart=/usr/local/bin/vantage-agent run --data-dir /var/lib/vantage-agent")
    );
    assert!(root.join("etc/vantage-agent/agent.toml.example").exists());

    let out = install_sh(&["--root", &r, "agent", &bin]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("unchanged") && !t.contains("installed /"),
        "second run changes nothing:\n{t}"
    );

    let ctl = vantagectl_bin().display().to_string();
    let coord = coordinator_bin().display().to_string();
    let out = install_sh(&[
        "--root",
        &r,
        "--prefix",
        "/opt/vantage",
        "coordinator",
        &coord,
        &ctl,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(root.join("opt/vantage/bin/vantagectl").exists());
    let u = std::fs::read_to_string(root.join("etc/systemd/system/vantage-coordinator.service"))
        .unwrap();
    assert!(u.contains("ExecStart=/opt/vantage/bin/vantage-coordinator serve"));

    std::fs::create_dir_all(root.join("var/lib/vantage-agent")).unwrap();
    let out = install_sh(&["--root", &r, "--uninstall", "agent"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!installed.exists() && !unit.exists());
    assert!(!root.join("etc/vantage-agent").exists());
    assert!(root.join("var/lib/vantage-agent").exists(), "data kept");
    let out = install_sh(&["--root", &r, "--uninstall", "--purge", "agent"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root.join("var/lib/vantage-agent").exists(), "data purged");
}

/// install.sh with a fake `dpkg` and `uname` first on PATH (each given as
/// what it prints; `None`: it fails, as on a machine without it).
fn install_sh_on(dpkg: Option<&str>, uname: &str, args: &[&str]) -> Output {
    let fake = tempfile::tempdir().unwrap();
    let put = |name: &str, body: String| {
        let p = fake.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    put(
        "dpkg",
        match dpkg {
            Some(a) => format!("#!/bin/sh\n[ \"$1\" = --print-architecture ] && echo {a}\n"),
            None => "#!/bin/sh\nexit 1\n".into(),
        },
    );
    put("uname", format!("#!/bin/sh\necho {uname}\n"));
    let path = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .args(args)
        .env("PATH", path)
        .env_remove("VANTAGE_ARCH")
        .env_remove("VANTAGE_DIST")
        .output()
        .expect("install.sh")
}

/// Asserts that install.sh failed, saying each of `wants`.
fn refused(out: &Output, wants: &[&str]) {
    let t = text(out);
    assert!(!out.status.success(), "should have failed: {t}");
    for w in wants {
        assert!(t.contains(w), "{w:?} not said: {t}");
    }
}

/// A stand-in for what build-cross.sh and build-debs.sh leave in the target
/// directory: an agent per Rust target that tells which one it is, and
/// empty .debs named as build-debs.sh names them.
fn fake_dist(dir: &Path) {
    for t in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "armv7-unknown-linux-gnueabihf",
    ] {
        let p = dir.join(t).join("release/vantage-agent");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\necho vantage-agent 9.9.9 {t}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(dir.join("debian")).unwrap();
    for deb in [
        "vantage-agent_0.1.0_amd64.deb",
        "vantage-agent_0.2.0_amd64.deb",
        "vantage-agent_0.2.0_arm64.deb",
        "vantage-coordinator_0.2.0_amd64.deb",
    ] {
        std::fs::write(dir.join("debian").join(deb), b"").unwrap();
    }
}

#[test]
fn install_sh_picks_the_agent_for_the_architecture() {
    let d = tempfile::tempdir().unwrap();
    let dist = d.path().join("target");
    fake_dist(&dist);
    let ds = dist.display().to_string();
    let root = d.path().join("root");
    let r = root.display().to_string();
    let agent_for = |t: &str| format!("{ds}/{t}/release/vantage-agent as ");

    // --arch takes dpkg's and uname's names alike.
    for (given, triple, arch) in [
        ("amd64", "x86_64-unknown-linux-musl", "amd64"),
        ("x86_64", "x86_64-unknown-linux-musl", "amd64"),
        ("arm64", "aarch64-unknown-linux-musl", "arm64"),
        ("aarch64", "aarch64-unknown-linux-musl", "arm64"),
        ("armhf", "armv7-unknown-linux-gnueabihf", "armhf"),
        ("armv7l", "armv7-unknown-linux-gnueabihf", "armhf"),
    ] {
        let out = install_sh_on(
            Some("amd64"),
            "x86_64",
            &["--dry-run", "--dist", &ds, "--arch", given, "agent"],
        );
        let t = text(&out);
        assert!(out.status.success(), "--arch {given}: {t}");
        assert!(
            t.contains(&agent_for(triple)) && t.contains(&format!("({arch})")),
            "--arch {given}: {t}"
        );
    }
    // The machine's: dpkg's answer first, else uname's.
    for (dpkg, uname, triple) in [
        (Some("arm64"), "x86_64", "aarch64-unknown-linux-musl"),
        (Some("armhf"), "aarch64", "armv7-unknown-linux-gnueabihf"),
        (Some("amd64"), "aarch64", "x86_64-unknown-linux-musl"),
        (None, "x86_64", "x86_64-unknown-linux-musl"),
        (None, "aarch64", "aarch64-unknown-linux-musl"),
        (None, "arm64", "aarch64-unknown-linux-musl"),
        (None, "armv7l", "armv7-unknown-linux-gnueabihf"),
    ] {
        let out = install_sh_on(dpkg, uname, &["--dry-run", "--dist", &ds, "agent"]);
        let t = text(&out);
        assert!(out.status.success(), "{dpkg:?}/{uname}: {t}");
        assert!(t.contains(&agent_for(triple)), "{dpkg:?}/{uname}: {t}");
    }
    // The environment variables, for tests and scripts.
    let out = Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .args(["--dry-run", "agent"])
        .env("VANTAGE_ARCH", "aarch64")
        .env("VANTAGE_DIST", &dist)
        .output()
        .unwrap();
    assert!(
        text(&out).contains(&agent_for("aarch64-unknown-linux-musl")),
        "{}",
        text(&out)
    );

    // Unsupported: named, with the supported ones.
    let out = install_sh_on(None, "riscv64", &["--dry-run", "--dist", &ds, "agent"]);
    refused(
        &out,
        &["unsupported architecture 'riscv64'", "amd64, arm64, armhf"],
    );
    let out = install_sh_on(
        Some("amd64"),
        "x86_64",
        &["--dry-run", "--dist", &ds, "--arch", "mips", "agent"],
    );
    refused(&out, &["unsupported architecture 'mips'"]);
    // ... but a binary given by path needs no architecture (as before).
    let out = install_sh_on(
        None,
        "riscv64",
        &[
            "--dry-run",
            "--root",
            &r,
            "agent",
            &agent_bin().display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Missing: refused, saying what was looked for and what builds it.
    std::fs::remove_dir_all(dist.join("armv7-unknown-linux-gnueabihf")).unwrap();
    let out = install_sh_on(None, "armv7l", &["--dist", &ds, "--root", &r, "agent"]);
    refused(
        &out,
        &[
            "no vantage-agent for armhf",
            "armv7-unknown-linux-gnueabihf/release/vantage-agent",
            "build-cross.sh",
        ],
    );
    assert!(!root.exists() || !root.join("usr/local/bin/vantage-agent").exists());

    // Installing (staged): this machine's agent is asked for its version;
    // another architecture's (an image for a Pi) is only copied.
    let out = install_sh_on(
        Some("amd64"),
        "x86_64",
        &["--dist", &ds, "--root", &r, "agent"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("vantage-agent 9.9.9 is installed"),
        "{}",
        text(&out)
    );
    let installed = root.join("usr/local/bin/vantage-agent");
    let got = std::fs::read_to_string(&installed).unwrap();
    assert!(got.contains("x86_64-unknown-linux-musl"), "{got}");
    let out = install_sh_on(
        Some("amd64"),
        "x86_64",
        &["--dist", &ds, "--root", &r, "--arch", "arm64", "agent"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("for arm64 is installed"),
        "{}",
        text(&out)
    );
    let got = std::fs::read_to_string(&installed).unwrap();
    assert!(got.contains("aarch64-unknown-linux-musl"), "{got}");

    // --deb: the newest package for the architecture, or a clear refusal.
    let debs = format!("{ds}/debian");
    for (arch, want) in [
        ("x86_64", "vantage-agent_0.2.0_amd64.deb"),
        ("aarch64", "vantage-agent_0.2.0_arm64.deb"),
    ] {
        let out = install_sh_on(
            Some("amd64"),
            "x86_64",
            &["--dry-run", "--deb", "--dist", &ds, "--arch", arch, "agent"],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("would install {debs}/{want}")),
            "{}",
            text(&out)
        );
    }
    let out = install_sh_on(
        Some("armhf"),
        "armv7l",
        &["--dry-run", "--deb", "--dist", &ds, "agent"],
    );
    refused(
        &out,
        &[
            "no vantage-agent package for armhf",
            "there are: amd64 arm64",
            "build-debs.sh",
        ],
    );
    let out = install_sh_on(
        Some("arm64"),
        "aarch64",
        &["--dry-run", "--deb", "--dist", &ds, "coordinator"],
    );
    refused(&out, &["no vantage-coordinator package for arm64"]);
    let out = install_sh_on(
        Some("amd64"),
        "x86_64",
        &["--dry-run", "--root", &r, "--uninstall", "agent"],
    );
    assert!(
        !out.status.success() && root.join("usr/local/bin/vantage-agent").exists(),
        "--dry-run does not uninstall: {}",
        text(&out)
    );
    let out = install_sh_on(Some("amd64"), "x86_64", &["--deb", "--root", &r, "agent"]);
    refused(&out, &["--deb does not go with --root"]);
}

// ------------------------------------------------------------ .deb

fn deb_dir() -> PathBuf {
    std::env::var_os("VANTAGE_DEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // <target dir>/debug/vantage-coordinator -> <target dir>/debian,
            // where build-debs.sh puts them.
            let bin = coordinator_bin();
            let target = bin
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("target"));
            target.join("debian")
        })
}

/// The newest `NAME_*_ARCH.deb` in [`deb_dir`].
fn find_deb(name: &str, arch: &str) -> PathBuf {
    let dir = deb_dir();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run deploy/scripts/build-debs.sh)", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{name}_")) && n.ends_with(&format!("_{arch}.deb"))
            })
        })
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no {name}_*_{arch}.deb in {} (deploy/scripts/build-debs.sh builds it)",
            dir.display()
        )
    })
}

/// The files of `deb`, asserting that it holds every one of `want`.
fn deb_holding(deb: &Path, want: &[&str]) -> Vec<String> {
    let files = deb_files(deb);
    for w in want {
        assert!(
            files.iter().any(|f| f == w),
            "{w} not in {}: {files:#?}",
            deb.display()
        );
    }
    files
}

/// What every vantage-agent package holds, whatever its architecture.
const AGENT_FILES: &[&str] = &[
    "/usr/bin/vantage-agent",
    "/etc/vantage-agent/agent.toml.example",
    "/usr/share/man/man1/vantage-agent.1.gz",
    "/usr/share/bash-completion/completions/vantage-agent",
    "/usr/share/zsh/vendor-completions/_vantage-agent",
    "/usr/share/fish/vendor_completions.d/vantage-agent.fish",
];

/// A control field of `deb` (`dpkg-deb -f`).
fn deb_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn deb_files(deb: &Path) -> Vec<String> {
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

fn unit_path(files: &[String], unit: &str) -> String {
    files
        .iter()
        .find(|f| f.ends_with(&format!("/systemd/system/{unit}")))
        .unwrap_or_else(|| panic!("{unit} not in the package: {files:#?}"))
        .clone()
}

#[test]
fn deb_packages_contents_and_install_cycle() {
    if !require("deb_packages", &["dpkg-deb", "systemd-analyze"]) {
        return;
    }
    // deploy/scripts/test.sh builds the packages before the tests run.
    let built = std::fs::read_dir(deb_dir())
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "deb"))
        })
        .unwrap_or(false);
    if !built {
        if std::env::var("VANTAGE_SKIP_LAB").as_deref() == Ok("1") {
            {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED (VANTAGE_SKIP_LAB=1): deb_packages (no .deb in {})",
                    deb_dir().display()
                );
            }
            return;
        }
        panic!(
            "no .deb in {}: run deploy/scripts/build-debs.sh first (deploy/scripts/test.sh does)",
            deb_dir().display()
        );
    }
    let agent = find_deb("vantage-agent", "amd64");
    let coord = find_deb("vantage-coordinator", "amd64");
    assert_eq!(deb_field(&agent, "Architecture"), "amd64");
    assert_eq!(deb_field(&coord, "Architecture"), "amd64");
    let af = deb_holding(&agent, AGENT_FILES);
    let agent_unit = unit_path(&af, "vantage-agent.service");
    let cf = deb_holding(
        &coord,
        &[
            "/usr/bin/vantage-coordinator",
            "/usr/bin/vantagectl",
            "/usr/share/man/man1/vantage-coordinator.1.gz",
            "/usr/share/bash-completion/completions/vantage-coordinator",
            "/usr/share/zsh/vendor-completions/_vantage-coordinator",
            "/usr/share/fish/vendor_completions.d/vantage-coordinator.fish",
        ],
    );
    // The benchmarks are their own crate, not in the product package.
    assert!(!cf.iter().any(|f| f.contains("vantage-bench")), "{cf:#?}");
    let coord_unit = unit_path(&cf, "vantage-coordinator.service");

    // Unpack both and check what they hold: the example config is the
    // default, the units are the shipped ones and verify against the
    // packaged binaries, the man pages and completions are real.
    let x = tempfile::tempdir().unwrap();
    for deb in [&agent, &coord] {
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(x.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let root = x.path();
    let rel = |p: &str| root.join(p.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(rel("/etc/vantage-agent/agent.toml.example")).unwrap(),
        vantage_agent::config::AgentConfig::default_file_text()
    );
    let au = std::fs::read_to_string(rel(&agent_unit)).unwrap();
    assert_eq!(
        au,
        std::fs::read_to_string(repo().join("deploy/systemd/vantage-agent.service")).unwrap()
    );
    let cu = std::fs::read_to_string(rel(&coord_unit)).unwrap();
    let v = tempfile::tempdir().unwrap();
    verify_unit(
        v.path(),
        "vantage-agent.service",
        &au,
        "/usr/bin/vantage-agent",
        &rel("/usr/bin/vantage-agent"),
    );
    verify_unit(
        v.path(),
        "vantage-coordinator.service",
        &cu,
        "/usr/bin/vantage-coordinator",
        &rel("/usr/bin/vantage-coordinator"),
    );
    let bash = std::fs::read_to_string(rel("/usr/share/bash-completion/completions/vantage-agent"))
        .unwrap();
    assert!(bash.contains("enroll") && bash.contains("status"));
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(rel("/usr/share/man/man1/vantage-agent.1.gz"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH vantage-agent 1"));
    for b in [
        "/usr/bin/vantage-agent",
        "/usr/bin/vantage-coordinator",
        "/usr/bin/vantagectl",
    ] {
        let out = Command::new(rel(b)).arg("--version").output().unwrap();
        assert!(out.status.success(), "{b}: {}", text(&out));
    }

    // Install on this machine (root only), enroll and ask for status with
    // the installed binary, then remove and check that nothing is left.
    let installed = |p: &str| {
        Command::new("dpkg")
            .args(["-s", p])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root || installed("vantage-agent") || installed("vantage-coordinator") {
        println!("install cycle not run: needs root and the packages not already installed");
        return;
    }
    let out = Command::new("dpkg")
        .arg("-i")
        .arg(&agent)
        .arg(&coord)
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = Command::new("dpkg")
            .args(["--purge", "vantage-agent", "vantage-coordinator"])
            .output();
        panic!("dpkg -i: {}", text(&out));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for p in af.iter().chain(&cf).filter(|p| !p.ends_with('/')) {
            assert!(Path::new(p).exists(), "{p} not installed");
        }
        let c = Coordinator::init().start();
        let token = c.token(1, "1h");
        let dir = c.root.path().join("pkg-agent");
        let out = Command::new("/usr/bin/vantage-agent")
            .args([
                "enroll",
                "--accept-consent",
                "--token",
                &token,
                "--data-dir",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let out = Command::new("/usr/bin/vantage-agent")
            .args(["status", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("enrolled:        yes"));
    }));
    let out = Command::new("dpkg")
        .args(["--purge", "vantage-agent", "vantage-coordinator"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg --purge: {}", text(&out));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    for p in af.iter().chain(&cf).filter(|p| !p.ends_with('/')) {
        assert!(!Path::new(p).exists(), "{p} left behind after dpkg --purge");
    }
}

/// The ELF machine (`e_machine`) of an executable, and whether it names an
/// interpreter (a `PT_INTERP` program header: dynamically linked).
fn elf_machine_and_interp(bytes: &[u8]) -> (u16, bool) {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    let is64 = bytes[4] == 2;
    assert_eq!(bytes[5], 1, "little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let (phoff, phentsize, phnum) = if is64 {
        (
            u64_at(32) as usize,
            u16_at(54) as usize,
            u16_at(56) as usize,
        )
    } else {
        (
            u32_at(28) as usize,
            u16_at(42) as usize,
            u16_at(44) as usize,
        )
    };
    const PT_INTERP: u32 = 3;
    let interp = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_INTERP);
    (machine, interp)
}

/// The arm64 and armhf agent packages (deploy/scripts/build-debs.sh builds
/// them from the static cross builds): the right Architecture, exactly the
/// amd64 package's files, the same unit and example config, and a static
/// binary for that machine, which runs under qemu when it is installed.
#[test]
fn arm_agent_debs_match_the_amd64_one() {
    if !require("arm_agent_debs", &["dpkg-deb"]) {
        return;
    }
    let present = |arch: &str| {
        std::fs::read_dir(deb_dir())
            .map(|d| {
                d.flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("vantage-agent_") && n.ends_with(&format!("_{arch}.deb"))
                })
            })
            .unwrap_or(false)
    };
    let missing: Vec<String> = ["amd64", "arm64", "armhf"]
        .into_iter()
        .filter(|a| !present(a))
        .map(|a| format!("vantage-agent_*_{a}.deb in {}", deb_dir().display()))
        .collect();
    if !vantage_testkit::skip::require(
        "arm_agent_debs",
        &missing,
        "bash deploy/scripts/build-debs.sh builds them (deploy/scripts/test.sh does)",
    ) {
        return;
    }
    let amd64 = find_deb("vantage-agent", "amd64");
    let mut want = deb_files(&amd64);
    want.sort();
    let unit =
        std::fs::read_to_string(repo().join("deploy/systemd/vantage-agent.service")).unwrap();
    // e_machine: EM_AARCH64 183, EM_ARM 40.
    for (arch, machine, qemu) in [
        ("arm64", 183, "qemu-aarch64-static"),
        ("armhf", 40, "qemu-arm-static"),
    ] {
        let deb = find_deb("vantage-agent", arch);
        assert_eq!(deb_field(&deb, "Architecture"), arch, "{}", deb.display());
        assert_eq!(deb_field(&deb, "Package"), "vantage-agent");
        assert_eq!(
            deb_field(&deb, "Version"),
            deb_field(&amd64, "Version"),
            "{arch}: the same version as amd64"
        );
        let mut files = deb_files(&deb);
        files.sort();
        assert_eq!(files, want, "{arch}: the amd64 package's paths");
        let unit_in = unit_path(&files, "vantage-agent.service");

        let x = tempfile::tempdir().unwrap();
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(x.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let rel = |p: &str| x.path().join(p.trim_start_matches('/'));
        assert_eq!(
            std::fs::read_to_string(rel(&unit_in)).unwrap(),
            unit,
            "{arch}: the shipped unit"
        );
        assert_eq!(
            std::fs::read_to_string(rel("/etc/vantage-agent/agent.toml.example")).unwrap(),
            vantage_agent::config::AgentConfig::default_file_text()
        );
        let bin = std::fs::read(rel("/usr/bin/vantage-agent")).unwrap();
        let (m, interp) = elf_machine_and_interp(&bin);
        assert_eq!(m, machine, "{arch}: ELF machine");
        assert!(!interp, "{arch}: statically linked (no interpreter)");
        if let Some(q) = vantage_testkit::skip::find_tool(&[qemu]) {
            let out = Command::new(q)
                .arg(rel("/usr/bin/vantage-agent"))
                .arg("--version")
                .output()
                .unwrap();
            assert!(out.status.success(), "{arch}: {}", text(&out));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("vantage-agent {}", env!("CARGO_PKG_VERSION"))
            );
        }
    }
}

// ------------------------------------------------------------ container image

/// The Rust target of the images' static binaries.
const IMAGE_TRIPLE: &str = "x86_64-unknown-linux-musl";
/// What `build-cross.sh --coordinator` builds, and the images hold.
const IMAGE_BINS: [&str; 3] = ["vantage-coordinator", "vantagectl", "vantage-agent"];
/// The images' user and group (a data directory owned by it is the volume).
const IMAGE_USER: &str = "10001:10001";
/// Size budgets of the two images (podman's uncompressed size).
const COORDINATOR_IMAGE_BUDGET: u64 = 32_000_000;
const AGENT_IMAGE_BUDGET: u64 = 10_000_000;

/// One instruction of a Containerfile: its keyword (upper case), its
/// arguments (continuation lines joined) and the line it starts on.
#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

/// One stage: what it is `FROM`, its name (`AS`), its instructions.
#[derive(Debug)]
struct Stage {
    from: String,
    name: String,
    body: Vec<Instruction>,
}

fn parse_containerfile(text: &str) -> Vec<Stage> {
    let mut instructions = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (body, more) = match l.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (l, false),
        };
        let p = pending.get_or_insert((i + 1, String::new()));
        if !p.1.is_empty() {
            p.1.push(' ');
        }
        p.1.push_str(body);
        if !more {
            let (line, all) = pending.take().expect("pending");
            let (keyword, args) = all.split_once(' ').unwrap_or((&all, ""));
            instructions.push(Instruction {
                line,
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_string(),
            });
        }
    }
    assert!(
        pending.is_none(),
        "the Containerfile ends in a continuation"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            let (from, name) = match words[..] {
                [from] => (from, ""),
                [from, as_, name] if as_.eq_ignore_ascii_case("as") => (from, name),
                _ => panic!("line {}: FROM {:?}", ins.line, ins.args),
            };
            stages.push(Stage {
                from: from.to_string(),
                name: name.to_string(),
                body: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: {} before FROM", ins.line, ins.keyword))
                .body
                .push(ins);
        }
    }
    stages
}

/// A stage and the stages it is built `FROM`, base first.
fn stage_chain<'a>(stages: &'a [Stage], name: &str) -> Vec<&'a Stage> {
    let mut chain = Vec::new();
    let mut at = name;
    while let Some(s) = stages.iter().find(|s| s.name == at) {
        chain.insert(0, s);
        at = &s.from;
    }
    assert!(!chain.is_empty(), "no stage {name}");
    chain
}

/// The last `keyword` instruction in effect for `stage` (inherited from
/// the stages it is built on).
fn last_of<'a>(stages: &'a [Stage], stage: &str, keyword: &str) -> Option<&'a Instruction> {
    stage_chain(stages, stage)
        .into_iter()
        .flat_map(|s| &s.body)
        .rev()
        .find(|i| i.keyword == keyword)
}

/// A JSON-array (exec form) instruction's words.
fn exec_form(ins: &Instruction) -> Vec<String> {
    serde_json::from_str(&ins.args).unwrap_or_else(|e| {
        panic!(
            "line {}: {} is not in exec form (a JSON array): {:?}: {e}",
            ins.line, ins.keyword, ins.args
        )
    })
}

/// A COPY's flags (`--from=x` as ("from", "x")), sources and destination.
fn copy_parts(ins: &Instruction) -> (Vec<(String, String)>, Vec<String>, String) {
    let mut flags = Vec::new();
    let mut paths = Vec::new();
    for w in ins.args.split_whitespace() {
        match w.strip_prefix("--").and_then(|f| f.split_once('=')) {
            Some((k, v)) if paths.is_empty() => flags.push((k.to_string(), v.to_string())),
            _ => paths.push(w.to_string()),
        }
    }
    let dest = paths.pop().expect("a COPY destination");
    assert!(
        !paths.is_empty(),
        "line {}: COPY without a source",
        ins.line
    );
    (flags, paths, dest)
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The instructions the images rely on, read from deploy/Containerfile
/// without building it (no podman needed): registry-free `FROM scratch`,
/// a numeric non-root user owning each image's data directory, which is
/// its volume, exec-form entry points onto binaries the image copies,
/// sources that exist (or that build-cross.sh builds) and that the build
/// context (.dockerignore) keeps, and a usage comment that says so.
#[test]
fn containerfile_is_registry_free_and_non_root() {
    let text = std::fs::read_to_string(repo().join("deploy/Containerfile")).unwrap();
    let stages = parse_containerfile(&text);
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        stages.last().map(|s| s.name.as_str()),
        Some("coordinator"),
        "the default (last) stage is the coordinator: {names:?}"
    );
    assert!(names.contains(&"agent"), "an agent stage: {names:?}");
    for (i, s) in stages.iter().enumerate() {
        assert!(
            s.from == "scratch" || names[..i].contains(&s.from.as_str()),
            "FROM {}: only scratch or an earlier stage (nothing from a registry)",
            s.from
        );
        for ins in &s.body {
            assert!(
                !["RUN", "ADD"].contains(&ins.keyword.as_str()),
                "line {}: {} (a scratch image has no shell; ADD may fetch URLs)",
                ins.line,
                ins.keyword
            );
        }
    }
    for l in text.lines() {
        assert!(!l.contains(":latest"), "no `latest` tag: {l}");
    }

    let ignore = std::fs::read_to_string(repo().join(".dockerignore"))
        .expect(".dockerignore beside the workspace's Cargo.toml");
    let kept: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        ".dockerignore leaves out everything but what it names"
    );
    let build_cross =
        std::fs::read_to_string(repo().join("deploy/scripts/build-cross.sh")).unwrap();
    let passwd =
        std::fs::read_to_string(repo().join("deploy/container/rootfs/etc/passwd")).unwrap();
    let uid = IMAGE_USER.split(':').next().unwrap();
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(uid)),
        "/etc/passwd names uid {uid}: {passwd}"
    );

    // Every COPY: the sources exist and the context keeps them.
    let mut copied: Vec<(String, String)> = Vec::new(); // (stage, destination file)
    for s in &stages {
        for ins in s.body.iter().filter(|i| i.keyword == "COPY") {
            let (flags, sources, dest) = copy_parts(ins);
            if let Some(chown) = flag(&flags, "chown") {
                assert_eq!(chown, IMAGE_USER, "line {}", ins.line);
            }
            if let Some(from) = flag(&flags, "from") {
                assert_eq!(
                    from, "certs",
                    "line {}: only the CA bundle's context",
                    ins.line
                );
                assert!(
                    text.contains("--build-context certs=/etc/ssl/certs"),
                    "the usage comment passes the certs context"
                );
                copied.push((s.name.clone(), dest.clone()));
                continue;
            }
            for src in &sources {
                let bare = src.trim_end_matches('/');
                if let Some(bin) = bare.strip_prefix(&format!("target/{IMAGE_TRIPLE}/release/")) {
                    assert!(IMAGE_BINS.contains(&bin), "line {}: {src}", ins.line);
                    assert!(
                        build_cross.contains(bin) && build_cross.contains("--coordinator"),
                        "build-cross.sh --coordinator builds {bin}"
                    );
                } else {
                    assert!(
                        repo().join(bare).exists(),
                        "line {}: COPY source {src} does not exist",
                        ins.line
                    );
                }
                assert!(
                    kept.iter().any(|k| *k == bare
                        || bare.starts_with(&format!("{}/", k.trim_end_matches('/')))),
                    "line {}: .dockerignore leaves {src} out of the build context",
                    ins.line
                );
                // A directory's contents go into the destination.
                let name = bare.rsplit('/').next().unwrap();
                let to = if repo().join(bare).is_dir() {
                    dest.clone()
                } else if dest.ends_with('/') {
                    format!("{dest}{name}")
                } else {
                    dest.clone()
                };
                copied.push((s.name.clone(), to));
            }
        }
    }

    // Each image: user, data directory, volume, entry point.
    for (stage, bin, data_env, cmd) in [
        (
            "coordinator",
            "vantage-coordinator",
            "VANTAGE_DATA_DIR",
            &["serve", "--data-dir", "/var/lib/vantage-coordinator"][..],
        ),
        ("agent", "vantage-agent", "VANTAGE_AGENT_DIR", &["run"][..]),
    ] {
        let chain: Vec<String> = stage_chain(&stages, stage)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let user = last_of(&stages, stage, "USER").expect("USER");
        assert_eq!(user.args, IMAGE_USER, "{stage}: USER");
        let (u, g) = user.args.split_once(':').expect("uid:gid");
        for id in [u, g] {
            let n: u32 = id
                .parse()
                .unwrap_or_else(|_| panic!("{stage}: numeric USER"));
            assert!(n != 0, "{stage}: not root");
        }
        let entry = exec_form(last_of(&stages, stage, "ENTRYPOINT").expect("ENTRYPOINT"));
        assert_eq!(entry, [format!("/usr/bin/{bin}")], "{stage}: ENTRYPOINT");
        let has = |path: &str| {
            copied
                .iter()
                .any(|(s, to)| chain.contains(s) && to.trim_end_matches('/') == path)
        };
        assert!(has(&entry[0]), "{stage}: {} is copied in", entry[0]);
        assert!(
            has("/etc/ssl/certs/ca-certificates.crt"),
            "{stage}: CA roots"
        );
        assert_eq!(
            exec_form(last_of(&stages, stage, "CMD").expect("CMD")),
            cmd,
            "{stage}: CMD"
        );
        assert_eq!(
            last_of(&stages, stage, "STOPSIGNAL").map(|i| i.args.as_str()),
            Some("SIGTERM")
        );
        let volume = last_of(&stages, stage, "VOLUME").expect("VOLUME");
        let dir = volume.args.as_str();
        assert!(
            has(dir),
            "{stage}: the volume {dir} is a directory the image copies in"
        );
        let owned = stage_chain(&stages, stage).iter().any(|s| {
            s.body.iter().filter(|i| i.keyword == "COPY").any(|i| {
                let (flags, _, dest) = copy_parts(i);
                flag(&flags, "chown") == Some(IMAGE_USER) && dest.trim_end_matches('/') == dir
            })
        });
        assert!(owned, "{stage}: {dir} is owned by {IMAGE_USER}");
        let envs: Vec<&str> = stage_chain(&stages, stage)
            .iter()
            .flat_map(|s| &s.body)
            .filter(|i| i.keyword == "ENV")
            .map(|i| i.args.as_str())
            .collect();
        assert!(
            envs.contains(&format!("{data_env}={dir}").as_str()),
            "{stage}: ENV {data_env}={dir}: {envs:?}"
        );
        assert!(
            text.contains(&format!(":{dir} ")) || text.contains(&format!(":{dir}\n")),
            "the usage comment mounts a volume on {dir}"
        );
    }
    assert_eq!(
        last_of(&stages, "coordinator", "EXPOSE").map(|i| i.args.as_str()),
        Some("7443")
    );
    assert!(
        last_of(&stages, "agent", "EXPOSE").is_none(),
        "the agent listens on nothing"
    );
    for words in [
        "bash deploy/scripts/build-cross.sh --coordinator",
        "-f deploy/Containerfile",
        "--target agent",
    ] {
        assert!(text.contains(words), "the usage comment says {words:?}");
    }
}

/// `podman` as the container test runs it, and what it made: the
/// containers, images and volumes are removed when it drops, failed test
/// or not (a failed test first prints the containers' logs).
struct Podman {
    exe: PathBuf,
    /// `--ulimit`s for `run`: this test process's own limits.
    ulimits: Vec<String>,
    containers: Vec<String>,
    images: Vec<String>,
    volumes: Vec<String>,
}

impl Podman {
    fn new(exe: PathBuf) -> Podman {
        // Rootful podman gives containers RLIMIT_NOFILE and RLIMIT_NPROC of
        // 1048576, which a host that denies CAP_SYS_RESOURCE refuses
        // ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"; podman's
        // own NPROC limit was 32768 on such a host). Modest limits, never
        // above this process's own hard ones, fit anywhere.
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let mut ulimits = Vec::new();
        for (row, name, want) in [
            ("Max open files", "nofile", 8192u64),
            ("Max processes", "nproc", 4096),
        ] {
            let hard = limits
                .lines()
                .find(|l| l.starts_with(row))
                .and_then(|l| l[row.len()..].split_whitespace().nth(1))
                .and_then(|h| h.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            let n = want.min(hard);
            ulimits.push("--ulimit".to_string());
            ulimits.push(format!("{name}={n}:{n}"));
        }
        Podman {
            exe,
            ulimits,
            containers: Vec::new(),
            images: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// `podman ARGS` under runc: crun refuses hosts whose cgroup v2
    /// hierarchy has controllers beside cgroup v1 ("cgroups in hybrid mode
    /// not supported"); runc runs there and everywhere else.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(["--runtime", "runc"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    /// `podman ARGS`, asserting success: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.out(args);
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman run ARGS` with the limits above (`--network host` or
    /// `none` given by the caller: never the default network).
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["run"];
        all.extend(self.ulimits.iter().map(String::as_str));
        all.extend_from_slice(args);
        self.out(&all)
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman run {}: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a detached container `name` (removed on drop).
    fn start(&mut self, name: &str, args: &[&str]) {
        self.containers.push(name.to_string());
        let mut all = vec!["-d", "--name", name];
        all.extend_from_slice(args);
        self.run_ok(&all);
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
            .trim()
            .to_string()
    }

    fn logs(&self, name: &str) -> String {
        text(&self.out(&["logs", name]))
    }

    /// `podman stop` (SIGTERM, the images' STOPSIGNAL): how long it took
    /// and the exit code.
    fn stop(&self, name: &str) -> (Duration, i32) {
        let start = std::time::Instant::now();
        self.ok(&["stop", "-t", "30", name]);
        let took = start.elapsed();
        let code = self.inspect(name, "{{.State.ExitCode}}");
        (took, code.parse().unwrap_or(-1))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            if std::thread::panicking() {
                let _ = writeln!(std::io::stderr(), "== podman logs {c}\n{}", self.logs(c));
            }
            let _ = self.out(&["rm", "-f", "-v", "-t", "0", c]);
        }
        for v in &self.volumes {
            let _ = self.out(&["volume", "rm", "-f", v]);
        }
        for i in &self.images {
            let _ = self.out(&["rmi", "-f", i]);
        }
    }
}

/// The static builds the images are made of, in the workspace's target
/// dir (where deploy/Containerfile copies them from); the missing ones.
fn missing_image_builds() -> Vec<String> {
    IMAGE_BINS
        .iter()
        .map(|b| {
            repo()
                .join("target")
                .join(IMAGE_TRIPLE)
                .join("release")
                .join(b)
        })
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect()
}

/// A TCP listener on a loopback port that accepts and closes each
/// connection until dropped: the campaign's target.
struct TcpTarget {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TcpTarget {
    fn open() -> TcpTarget {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TcpTarget { port, stop }
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The images of deploy/Containerfile, built with podman from the static
/// musl builds exactly as its usage comment says, within their size
/// budgets, run as the operator and a volunteer would: the coordinator
/// `init`s its volume and serves (host network, a free loopback port), the
/// image's vantagectl makes a token and a campaign, the agent image enrolls
/// and runs, probes a TCP listener of this test, and the coordinator stores
/// its result, signed with the agent's key. Both stop on SIGTERM.
#[test]
fn container_image_runs_the_coordinator_and_an_agent() {
    const TEST: &str = "container_image_runs_the_coordinator_and_an_agent";
    let mut missing = Vec::new();
    let podman = vantage_testkit::skip::find_tool(&["podman"]);
    if podman.is_none() {
        missing.push("`podman` (apt-get install podman)".to_string());
    }
    if vantage_testkit::skip::find_tool(&["runc"]).is_none() {
        missing.push("`runc` (apt-get install runc)".to_string());
    }
    missing.extend(missing_image_builds());
    if !vantage_testkit::skip::require(
        TEST,
        &missing,
        "bash deploy/scripts/install-test-deps.sh installs podman and runc; \
         bash deploy/scripts/build-cross.sh --coordinator builds the binaries",
    ) {
        return;
    }
    let mut pm = Podman::new(podman.unwrap());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let uniq = format!("{}-{nanos}", std::process::id());
    let coord_image = format!("localhost/vantage-test-coordinator:{uniq}");
    let agent_image = format!("localhost/vantage-test-agent:{uniq}");

    // Build both images from the workspace root, as the usage comment does.
    let repo_dir = repo();
    let repo_s = repo_dir.display().to_string();
    for (image, target) in [(&coord_image, None), (&agent_image, Some("agent"))] {
        pm.images.push(image.clone());
        let mut args = vec![
            "build",
            "--build-context",
            "certs=/etc/ssl/certs",
            "-f",
            "deploy/Containerfile",
            "-t",
            image,
        ];
        if let Some(t) = target {
            args.extend(["--target", t]);
        }
        args.push(&repo_s);
        let start = std::time::Instant::now();
        let out = pm.cmd(&args).current_dir(&repo_dir).output().unwrap();
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            text(&out)
        );
        println!("built {image} in {:.1} s", start.elapsed().as_secs_f64());
    }
    for (image, budget) in [
        (&coord_image, COORDINATOR_IMAGE_BUDGET),
        (&agent_image, AGENT_IMAGE_BUDGET),
    ] {
        let size: u64 = pm
            .ok(&["image", "inspect", "--format", "{{.Size}}", image])
            .trim()
            .parse()
            .expect("a size");
        println!("{image}: {size} bytes (budget {budget})");
        assert!(
            size <= budget,
            "{image}: {size} bytes, over its budget of {budget}"
        );
        let user = pm.ok(&["image", "inspect", "--format", "{{.Config.User}}", image]);
        assert_eq!(user.trim(), IMAGE_USER, "{image}: USER");
    }

    // The coordinator: init into a named volume, then serve from it.
    let volume = format!("vantage-test-{uniq}");
    pm.volumes.push(volume.clone());
    pm.ok(&["volume", "create", &volume]);
    let mount = format!("{volume}:/var/lib/vantage-coordinator");
    let addr = format!("127.0.0.1:{}", free_port());
    let init = pm.run_ok(&[
        "--rm",
        "--network",
        "none",
        "-v",
        &mount,
        &coord_image,
        "init",
        "--data-dir",
        "/var/lib/vantage-coordinator",
        "--listen",
        &addr,
    ]);
    assert!(init.contains("CA fingerprint"), "{init}");
    let data = PathBuf::from(
        pm.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume])
            .trim(),
    );
    {
        use std::os::unix::fs::MetadataExt;
        for f in [".", "coordinator.toml", "ca.key", "admin.key"] {
            let m = std::fs::metadata(data.join(f)).unwrap();
            assert_eq!(
                (m.uid(), m.gid()),
                (10001, 10001),
                "{f} owned by the image's user"
            );
        }
        let mode = std::fs::metadata(data.join("ca.key")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "ca.key");
    }
    let coord = format!("vantage-test-coordinator-{uniq}");
    pm.start(
        &coord,
        &[
            "--network",
            "host",
            "-v",
            &mount,
            "-e",
            "RUST_LOG=info",
            &coord_image,
        ],
    );
    let up = poll(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
            || pm.inspect(&coord, "{{.State.Running}}") != "true"
    });
    assert!(
        up && pm.inspect(&coord, "{{.State.Running}}") == "true",
        "the coordinator container did not listen on {addr}: {}",
        pm.logs(&coord)
    );
    let pid = pm.inspect(&coord, "{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "10001"),
        "the coordinator runs as uid 10001: {uid_line}"
    );

    // vantagectl in the running container (PATH and VANTAGE_DATA_DIR from
    // the image): an enrollment token.
    let token = pm.ok(&[
        "exec",
        &coord,
        "vantagectl",
        "token",
        "create",
        "--uses",
        "1",
        "--expires",
        "1h",
    ]);
    let token = token.trim();
    assert!(!token.is_empty());

    // The agent: enroll into a host directory owned by the image's user,
    // consent to tcp probes of loopback (lab settings), run.
    let tmp = tempfile::tempdir().unwrap();
    let agent_dir = tmp.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    std::os::unix::fs::chown(&agent_dir, Some(10001), Some(10001)).unwrap();
    let agent_mount = format!("{}:/var/lib/vantage-agent", agent_dir.display());
    pm.run_ok(&[
        "--rm",
        "--network",
        "host",
        "-v",
        &agent_mount,
        &agent_image,
        "enroll",
        "--accept-consent",
        "--token",
        token,
        "--country",
        "CN",
        "--asn",
        "4134",
    ]);
    std::fs::write(
        agent_dir.join("agent.toml"),
        "version = 1\nallow_private_targets = true\n[consent]\nkinds = [\"tcp\"]\n",
    )
    .unwrap();
    let identity = vantage_agent::identity::Identity::load(&agent_dir).expect("enrolled");
    let key = vantage_agent::identity::load_key(&agent_dir).expect("the agent's key");
    let agent = format!("vantage-test-agent-{uniq}");
    pm.start(
        &agent,
        &[
            "--network",
            "host",
            "-v",
            &agent_mount,
            "-e",
            "RUST_LOG=info",
            &agent_image,
        ],
    );
    let ctl_json = |args: &[&str]| -> String {
        let mut all = vec!["exec", coord.as_str(), "vantagectl", "--output", "json"];
        all.extend_from_slice(args);
        pm.ok(&all)
    };
    let connected = poll(Duration::from_secs(30), || {
        let v: serde_json::Value = serde_json::from_str(&ctl_json(&["agents"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == identity.agent_id.as_str() && a["connected"] == true)
    });
    assert!(
        connected,
        "the agent container connected: {}",
        pm.logs(&agent)
    );

    // A campaign (spec on vantagectl's stdin): tcp to this test's listener.
    let target = TcpTarget::open();
    let spec = campaign_spec(
        "container",
        "10s",
        "",
        &tcp_targets("127.0.0.1", &[target.port]),
    );
    let mut child = pm
        .cmd(&[
            "exec",
            "-i",
            &coord,
            "vantagectl",
            "campaign",
            "create",
            "-f",
            "/dev/stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "campaign create: {}", text(&out));
    let campaign = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // The agent's signed result, stored.
    let mut lines = String::new();
    let stored = poll(Duration::from_secs(60), || {
        lines = ctl_json(&["results", &campaign]);
        !lines.trim().is_empty()
    });
    assert!(
        stored,
        "no result stored for campaign {campaign}: {}",
        pm.logs(&agent)
    );
    let results: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 1, "{lines}");
    let r = &results[0];
    assert_eq!(r["agent_id"], identity.agent_id.as_str());
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("base64")
    };
    let env = vantage_proto::v1::SignedResult {
        measurement: b64(&r["envelope"]["measurement_b64"]).into(),
        signature: b64(&r["envelope"]["signature_b64"]).into(),
    };
    vantage_proto::envelope::verify(&key.verifying_key(), &env)
        .expect("signed with the agent's key");
    let m = vantage_proto::envelope::decode(&env).unwrap();
    assert_eq!(m.campaign_id, campaign);
    match m.result {
        Some(vantage_proto::v1::measurement::Result::Tcp(t)) => {
            assert_eq!(t.failure, None, "the listener accepts");
            assert_eq!((t.ip.as_str(), t.port), ("127.0.0.1", target.port as u32));
        }
        other => panic!("expected a tcp result, got {other:?}"),
    }

    // Both stop on SIGTERM (STOPSIGNAL), promptly and cleanly.
    for name in [&agent, &coord] {
        let (took, code) = pm.stop(name);
        assert_eq!(
            code,
            0,
            "{name} exited {code} on SIGTERM: {}",
            pm.logs(name)
        );
        assert!(
            took < Duration::from_secs(15),
            "{name}: stopped in {took:?}"
        );
        println!("{name}: stopped in {:.1} s", took.as_secs_f64());
    }
}
