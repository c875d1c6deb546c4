//! Campaigns end to end: spec -> runs -> inside and control tasks over live
//! sessions -> results -> verdicts; leases, pause/resume/cancel, restart.

use std::time::Duration;

use crate::harness::*;

fn create(c: &Coordinator, spec: &str) -> String {
    c.create_campaign(spec)
}

fn state(c: &Coordinator, id: &str) -> String {
    c.ctl_json(&["campaign", "status", id])["campaign"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_state(c: &Coordinator, id: &str, want: &str, limit: Duration) {
    wait_until(limit, &format!("campaign {id} to be {want}"), || {
        state(c, id) == want
    });
}

fn spec(targets: &str, extra: &str) -> String {
    campaign_spec("e2e", "4s", extra, targets)
}

#[test]
fn campaign_dispatches_inside_and_control_together_and_yields_verdicts() {
    let c = Coordinator::init().start();
    let _fleet = running_fleet(&c);
    // An agent that matches the inside group but is offline.
    let t = c.token(1, "1h");
    let _offline = Agent::enroll(&c, "offline", &t).unwrap();

    let port = c.port();
    let closed = free_port();
    let targets = tcp_targets("127.0.0.1", &[port, closed]);
    let id = create(&c, &spec(&targets, ""));
    wait_state(&c, &id, "done", Duration::from_secs(30));

    let status = c.ctl_json(&["campaign", "status", &id]);
    let run = &status["runs"][0];
    assert_eq!(run["state"], "done");
    let groups = run["groups"].as_array().unwrap();
    let inside = groups.iter().find(|g| g["group"] == "inside").unwrap();
    let control = groups.iter().find(|g| g["group"] == "control").unwrap();
    assert_eq!(
        (inside["agents"].as_u64(), inside["done"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(
        (control["agents"].as_u64(), control["done"].as_u64()),
        (Some(1), Some(2))
    );
    let skipped: Vec<String> = run["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(skipped.iter().any(|s| s.contains("offline")), "{skipped:?}");
    let failures = run["failures"].as_array().unwrap();
    assert!(
        failures.iter().any(|f| f["name"] == "connection_refused"),
        "{failures:?}"
    );

    let verdicts = c.ctl_json(&["verdicts", &id]);
    let rows = verdicts.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in rows {
        let target = r["target"].as_str().unwrap();
        let want = if target.ends_with(&format!(":{port}")) {
            "ok"
        } else {
            "down"
        };
        assert_eq!(r["status"], want, "{r}");
        assert_eq!(r["country"], "CN");
        assert_eq!(
            r["evidence"].as_array().unwrap().len(),
            2,
            "inside + control evidence"
        );
    }
    let table = String::from_utf8_lossy(&c.ctl(&["verdicts", &id]).stdout).to_string();
    assert!(
        table.contains("STATUS") && table.contains("down"),
        "{table}"
    );

    // Exports: jsonl re-verifies offline; a flipped byte is caught.
    let dir = c.root.path();
    let export = dir.join("export.jsonl");
    let agents = dir.join("agents.json");
    let export_s = export.to_string_lossy();
    c.ctl_ok(&["export", &id, "--format", "jsonl", "-o", &export_s]);
    std::fs::write(&agents, c.ctl(&["--output", "json", "agents"]).stdout).unwrap();
    let verify = |f: &std::path::Path| {
        c.ctl(&[
            "verify-export",
            f.to_str().unwrap(),
            "--agents",
            agents.to_str().unwrap(),
        ])
    };
    let out = verify(&export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 verified, 0 failed"));
    let text = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sig = lines[2]["envelope"]["signature_b64"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = if sig.starts_with('A') {
        sig.replacen('A', "B", 1)
    } else {
        format!("A{}", &sig[1..])
    };
    lines[2]["envelope"]["signature_b64"] = serde_json::Value::String(flipped);
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(
        &tampered,
        lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let out = verify(&tampered);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // OONI base format and CSV.
    let out = c.ctl(&["export", &id, "--format", "ooni-jsonl"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    // A tcp result is OONI's generic `urlgetter` with a tcpconnect:// input.
    assert_eq!(first["test_name"], "urlgetter");
    assert!(
        first["input"]
            .as_str()
            .is_some_and(|i| i.starts_with("tcpconnect://")),
        "{first}"
    );
    assert!(first["probe_cc"] == "CN" || first["probe_cc"] == "DE");
    let out = c.ctl(&["export", &id, "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        7,
        "header + 6 rows"
    );
    // An export "since": from 0 all six in the order stored, naming the
    // number to continue from; from there, nothing new.
    let since = |after: &str| {
        let out = c.ctl(&["export", &id, "--format", "jsonl", "--after-seq", after]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let next = err
            .lines()
            .find_map(|l| l.strip_prefix("next export since this one: --after-seq "))
            .unwrap_or_else(|| panic!("no continuation in {err}"))
            .to_string();
        (String::from_utf8_lossy(&out.stdout).lines().count(), next)
    };
    let (all, next) = since("0");
    assert_eq!(all, 6);
    let (none, again) = since(&next);
    assert_eq!((none, again), (0, next));
}

#[test]
fn an_expired_lease_is_reoffered_to_another_matching_agent() {
    let c = Coordinator::init().start();
    let mut fleet = running_fleet(&c);
    // A listener that accepts and never answers: the TLS probe waits out its deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let targets = format!(
        "[[targets]]\ntls = {{ ip = \"127.0.0.1\", port = {port}, sni = \"x.example\" }}\n"
    );
    let id = create(
        &c,
        &spec(&targets, "").replace(
            "countries = [\"CN\"]",
            "countries = [\"CN\"]\nmax_agents = 1",
        ),
    );
    // Which inside agent got it? Kill it before it can report.
    wait_until(Duration::from_secs(10), "the run to be dispatched", || {
        c.ctl_json(&["campaign", "status", &id])["runs"][0]["state"] == "dispatched"
    });
    let first = c.ctl_json(&["campaign", "status", &id]);
    assert_eq!(first["runs"][0]["groups"][0]["agents"], 1);
    let chosen_is_in1 = {
        let mut ids = [fleet[0].id.clone(), fleet[1].id.clone()];
        ids.sort();
        ids[0] == fleet[0].id
    };
    let victim = if chosen_is_in1 { 0 } else { 1 };
    fleet[victim].kill9();
    wait_state(&c, &id, "done", Duration::from_secs(40));
    let st = c.ctl_json(&["campaign", "status", &id]);
    let inside = &st["runs"][0]["groups"][0];
    assert_eq!(inside["group"], "inside");
    assert_eq!(
        inside["agents"], 2,
        "re-offered to the second inside agent: {st}"
    );
    assert_eq!(
        (inside["expired"].as_u64(), inside["done"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    let verdicts = c.ctl_json(&["verdicts", &id]);
    let rows = verdicts.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["agent_id"].as_str().unwrap(), fleet[1 - victim].id);
    assert_eq!(
        rows[0]["status"], "down",
        "silent for inside and control alike: {}",
        rows[0]
    );
    drop(silent);
}

#[test]
fn pause_resume_cancel_and_restart_resume_where_they_were() {
    let mut c = Coordinator::init().start();
    let _fleet = running_fleet(&c);
    let port = c.port();
    let targets = tcp_targets("127.0.0.1", &[port]);
    let start =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(4));
    let later = spec(&targets, &format!("[schedule]\nstart = \"{start}\"\n"));

    let paused = create(&c, &later);
    assert_eq!(
        String::from_utf8_lossy(&c.ctl(&["campaign", "pause", &paused]).stdout).trim(),
        "paused"
    );
    let cancelled = create(&c, &later);
    assert_eq!(
        String::from_utf8_lossy(&c.ctl(&["campaign", "cancel", &cancelled]).stdout).trim(),
        "cancelled"
    );
    let resumed = create(&c, &later);

    // The coordinator dies before the runs are due and comes back.
    c.kill9();
    c.restart();
    wait_state(&c, &resumed, "done", Duration::from_secs(30));
    assert_eq!(state(&c, &paused), "paused");
    assert_eq!(
        c.ctl_json(&["campaign", "status", &paused])["runs"][0]["state"],
        "scheduled"
    );
    assert_eq!(state(&c, &cancelled), "cancelled");
    let out = c.ctl(&["campaign", "resume", &cancelled]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));

    assert_eq!(
        String::from_utf8_lossy(&c.ctl(&["campaign", "resume", &paused]).stdout).trim(),
        "active"
    );
    wait_state(&c, &paused, "done", Duration::from_secs(30));
    let list = c.ctl_json(&["campaign", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[test]
fn a_bad_spec_is_refused_with_line_and_field_and_nothing_is_stored() {
    let c = Coordinator::init().start();
    let path = c.root.path().join("bad.toml");
    std::fs::write(
        &path,
        spec(
            "[[targets]]\ntcp = { host = \"10.0.0.1\", port = 80 }\n",
            "",
        )
        .replace("deadline = \"4s\"", "deadline = \"soon\""),
    )
    .unwrap();
    let out = c.ctl(&["campaign", "create", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("deadline") && err.contains("soon"),
        "{err}"
    );
    assert!(
        !err.contains("Status {"),
        "errors are sentences, not debug dumps: {err}"
    );
    assert!(c
        .ctl_json(&["campaign", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn the_volunteers_hourly_task_cap_is_honoured_by_the_coordinator() {
    let c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let mut a = Agent::enroll(&c, "capped", &token).unwrap();
    std::fs::write(
        a.dir.join("agent.toml"),
        "version = 1\nallow_private_targets = true\n[consent]\nkinds = [\"tcp\"]\n[limits]\nmax_tasks_per_hour = 2\n",
    )
    .unwrap();
    a.start();
    c.wait_connected(std::slice::from_ref(&a), Duration::from_secs(20));
    let port = c.port();
    let input = format!(r#"{{"tcp":{{"host":"127.0.0.1","port":{port}}}}}"#);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let out = c.ctl(&["--output", "json", "dispatch", &input]);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        outcomes.push((
            v["sent_to"].as_array().unwrap().len(),
            v["skipped"].to_string(),
        ));
    }
    assert_eq!(outcomes[0].0, 1);
    assert_eq!(outcomes[1].0, 1);
    assert_eq!(outcomes[2].0, 0, "{outcomes:?}");
    assert!(outcomes[2].1.contains("2 tasks per hour"), "{outcomes:?}");
    // A kind the volunteer did not consent to is skipped with its reason.
    let out = c.ctl(&[
        "--output",
        "json",
        "dispatch",
        r#"{"tor":{"ip":"127.0.0.1","port":9001}}"#,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["skipped"].to_string().contains("not consented to tor"),
        "{v}"
    );
}

#[test]
fn a_periodic_campaign_produces_its_runs_and_every_result_links_back() {
    let c = Coordinator::init().start();
    let _fleet = running_fleet(&c);
    let port = c.port();
    let targets = tcp_targets("127.0.0.1", &[port]);
    let now = std::time::SystemTime::now();
    let start = humantime::format_rfc3339_seconds(now + Duration::from_secs(1));
    let end = humantime::format_rfc3339_seconds(now + Duration::from_secs(7));
    let schedule = format!(
        "[schedule]\nevery = \"3s\"\nstart = \"{start}\"\nend = \"{end}\"\nspread = \"500ms\"\n"
    );
    let id = create(&c, &spec(&targets, &schedule));
    wait_state(&c, &id, "done", Duration::from_secs(60));
    let st = c.ctl_json(&["campaign", "status", &id]);
    let runs = st["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "every 3 s over a 6 s window: {st}");
    let run_ids: Vec<String> = runs
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    let at: Vec<i64> = runs
        .iter()
        .map(|r| r["dispatch_at_us"].as_i64().unwrap())
        .collect();
    assert!(
        at.windows(2).all(|w| w[1] - w[0] >= 2_500_000),
        "runs about 3 s apart: {at:?}"
    );
    // 3 runs x (2 inside + 1 control) x 1 target, each linked to its campaign, run and target.
    let export = c.ctl(&["export", &id, "--format", "jsonl"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9, "3 runs x 3 agents");
    for l in &lines {
        let m = &l["measurement"];
        assert_eq!(m["campaign_id"], id.as_str());
        assert!(run_ids.iter().any(|r| m["run_id"] == r.as_str()), "{m}");
        assert_eq!(m["input"]["tcp"]["port"].as_u64(), Some(u64::from(port)));
        assert!(!m["task_id"].as_str().unwrap().is_empty());
    }
}

#[test]
fn a_late_control_result_revises_the_stored_verdicts() {
    let mut c = Coordinator::init().start();
    let fleet = running_fleet(&c);
    // Accepts and never answers: every TLS probe waits out its deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let targets = format!(
        "[[targets]]\ntls = {{ ip = \"127.0.0.1\", port = {port}, sni = \"x.example\" }}\n"
    );
    let id = create(&c, &spec(&targets, ""));
    wait_until(Duration::from_secs(10), "the run to be dispatched", || {
        c.ctl_json(&["campaign", "status", &id])["runs"][0]["state"] == "dispatched"
    });
    // The control agent has its task and is mid-probe: freeze it past its lease.
    std::thread::sleep(Duration::from_millis(1000));
    fleet[2].signal("STOP");
    wait_state(&c, &id, "done", Duration::from_secs(40));
    let before = c.ctl_json(&["verdicts", &id]);
    let before = before.as_array().unwrap().clone();
    assert_eq!(before.len(), 2, "{before:?}");
    for r in &before {
        assert_eq!(r["status"], "inconclusive", "no control yet: {r}");
        assert_eq!(r["revision"], 1, "{r}");
        assert_eq!(r["evidence"].as_array().unwrap().len(), 1, "{r}");
    }

    // The control's result arrives after the run is complete.
    fleet[2].signal("CONT");
    wait_until(
        Duration::from_secs(30),
        "the late control to revise the verdicts",
        || {
            c.ctl_json(&["verdicts", &id])
                .as_array()
                .is_some_and(|rows| rows.iter().all(|r| r["status"] == "down"))
        },
    );
    let after = c.ctl_json(&["verdicts", &id]);
    for r in after.as_array().unwrap() {
        assert_eq!(r["revision"], 2, "revised once: {r}");
        assert_eq!(
            r["evidence"].as_array().unwrap().len(),
            2,
            "inside + control: {r}"
        );
        assert!(
            r["computed_us"].as_i64() > before[0]["computed_us"].as_i64(),
            "{r}"
        );
    }
    // Stored durably: after kill -9 the start-up recomputation finds the
    // same rows and keeps the revision.
    c.kill9();
    c.restart();
    let again = c.ctl_json(&["verdicts", &id]);
    for r in again.as_array().unwrap() {
        assert_eq!(
            (r["status"].as_str(), r["revision"].as_u64()),
            (Some("down"), Some(2)),
            "{r}"
        );
    }
    drop(silent);
}
