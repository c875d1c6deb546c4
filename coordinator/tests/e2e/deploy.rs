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
