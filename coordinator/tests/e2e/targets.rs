//! Targets end to end (issue 18): a target's `name` travels from the spec
//! into every measurement and verdict; Unicode host names reach agents as
//! IDNA punycode; what an agent would refuse is refused at creation and at
//! dispatch; tasks skipped for want of consent are counted per kind;
//! `vantagectl results` takes a campaign.

use std::time::Duration;

use crate::harness::*;

fn ctl_ok(c: &Coordinator, args: &[&str]) -> String {
    let out = c.ctl(args);
    assert!(
        out.status.success(),
        "vantagectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ctl_json(c: &Coordinator, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--output", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ctl_ok(c, &a)).expect("json output")
}

fn create(c: &Coordinator, spec: &str) -> std::process::Output {
    let path = c.root.path().join(format!("spec-{}.toml", free_port()));
    std::fs::write(&path, spec).unwrap();
    c.ctl(&["campaign", "create", "-f", path.to_str().unwrap()])
}

fn spec(targets: &str) -> String {
    format!(
        "version = 1\nname = \"targets\"\ndeadline = \"4s\"\nallow_private_targets = true\n\
         [inside]\ncountries = [\"CN\"]\n\n[control]\ntags = [\"control\"]\n\n{targets}"
    )
}

#[test]
fn named_unicode_targets_travel_to_results_and_verdicts() {
    let c = Coordinator::init().start();
    let token = c.token(3, "1h");
    let mut fleet = vec![
        Agent::enroll(&c, "in1", &token).unwrap(),
        Agent::enroll(&c, "in2", &token).unwrap(),
        Agent::enroll_as(&c, "ctl", &token, "DE", "control").unwrap(),
    ];
    for a in &mut fleet {
        a.start();
    }
    let ids: Vec<String> = fleet.iter().map(|a| a.id.clone()).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_until(Duration::from_secs(20), "three agents connected", || {
        rt.block_on(c.agents())
            .iter()
            .filter(|a| a.connected && ids.contains(&a.agent_id))
            .count()
            == 3
    });

    // What an agent would refuse is refused at creation, naming the field.
    let out = create(
        &c,
        &spec("[[targets]]\nweb = { url = \"http://example.org:99999/\" }\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("targets[0].web.url") && err.contains("99999"),
        "{err}"
    );
    // ... and at dispatch.
    let out = c.ctl(&["dispatch", r#"{"dns":{"domain":"bad..example"}}"#]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("domain") && err.contains("empty label"),
        "{err}"
    );

    // The harness's agents consent to tcp, tls and dns, not tor.
    let port = c.addr.rsplit(':').next().unwrap().to_string();
    let closed = free_port();
    let targets = format!(
        "[[targets]]\nname = \"Coordinator port\"\ntcp = {{ host = \"127.0.0.1\", port = {port} }}\n\n\
         [[targets]]\ndns = {{ domain = \"Bücher.Example\", resolver = \"127.0.0.1:{closed}\", listen_ms = 200 }}\n\
         name = \"Books (IDN)\"\n\n\
         [[targets]]\nname = \"Tor relay\"\ntor = {{ ip = \"127.0.0.1\", port = 9001 }}\n"
    );
    let out = create(&c, &spec(&targets));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_until(Duration::from_secs(30), "campaign done", || {
        ctl_json(&c, &["campaign", "status", &id])["campaign"]["state"] == "done"
    });

    // Consent skips per kind: the tor target for each of the three agents.
    let status = ctl_json(&c, &["campaign", "status", &id]);
    let run = &status["runs"][0];
    assert_eq!(run["state"], "done");
    assert_eq!(
        run["consent_skipped"],
        serde_json::json!([{"name": "tor", "value": 3}]),
        "{run}"
    );
    let table = ctl_ok(&c, &["campaign", "status", &id]);
    assert!(table.contains("not consented tor"), "{table}");

    // Results: by campaign, positional or flag; names and punycode inside.
    let lines = ctl_ok(&c, &["--output", "jsonl", "results", &id]);
    let results: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 6, "2 probed targets x 3 agents");
    assert_eq!(
        ctl_ok(&c, &["--output", "jsonl", "results", "--campaign", &id])
            .lines()
            .count(),
        6
    );
    for r in &results {
        let input = &r["measurement"]["input"];
        match input["name"].as_str() {
            Some("Coordinator port") => assert!(input["tcp"].is_object(), "{input}"),
            Some("Books (IDN)") => assert_eq!(input["dns"]["domain"], "xn--bcher-kva.example"),
            other => panic!("unexpected name {other:?} in {input}"),
        }
    }

    // Verdicts: each row carries its target's name; the table shows it.
    let verdicts = ctl_json(&c, &["verdicts", &id]);
    let rows = verdicts.as_array().unwrap();
    assert_eq!(rows.len(), 4, "2 targets x 2 inside agents: {rows:?}");
    for r in rows {
        let target = r["target"].as_str().unwrap();
        let want = if target.contains("xn--bcher-kva.example") {
            "Books (IDN)"
        } else {
            "Coordinator port"
        };
        assert_eq!(r["name"], want, "{r}");
        assert!(!target.contains("Books"), "the name is not the key: {r}");
    }
    let table = ctl_ok(&c, &["verdicts", &id]);
    let head = table.lines().next().unwrap_or_default();
    assert!(
        head.starts_with("NAME") && head.contains("TARGET") && head.contains("COUNTRY"),
        "{table}"
    );
    assert!(
        table.contains("Books (IDN)") && table.contains("CN"),
        "{table}"
    );
}
