//! Targets end to end (issue 18): a target's `name` travels from the spec
//! into every measurement and verdict; Unicode host names reach agents as
//! IDNA punycode; what an agent would refuse is refused at creation and at
//! dispatch; tasks skipped for want of consent are counted per kind;
//! `vantagectl results` takes a campaign.

use std::time::Duration;

use crate::harness::*;

fn spec(targets: &str) -> String {
    campaign_spec("targets", "4s", "", targets)
}

#[test]
fn named_unicode_targets_travel_to_results_and_verdicts() {
    let c = Coordinator::init().start();
    let _fleet = running_fleet(&c);

    // What an agent would refuse is refused at creation, naming the field.
    let out = c.create_campaign_output(&spec(
        "[[targets]]\nweb = { url = \"http://example.org:99999/\" }\n",
    ));
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
    let port = c.port();
    let closed = free_port();
    let targets = format!(
        "[[targets]]\nname = \"Coordinator port\"\ntcp = {{ host = \"127.0.0.1\", port = {port} }}\n\n\
         [[targets]]\ndns = {{ domain = \"Bücher.Example\", resolver = \"127.0.0.1:{closed}\", listen_ms = 200 }}\n\
         name = \"Books (IDN)\"\n\n\
         [[targets]]\nname = \"Tor relay\"\ntor = {{ ip = \"127.0.0.1\", port = 9001 }}\n"
    );
    let out = c.create_campaign_output(&spec(&targets));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_until(Duration::from_secs(30), "campaign done", || {
        c.ctl_json(&["campaign", "status", &id])["campaign"]["state"] == "done"
    });

    // Consent skips per kind: the tor target for each of the three agents.
    let status = c.ctl_json(&["campaign", "status", &id]);
    let run = &status["runs"][0];
    assert_eq!(run["state"], "done");
    assert_eq!(
        run["consent_skipped"],
        serde_json::json!([{"name": "tor", "value": 3}]),
        "{run}"
    );
    let table = c.ctl_ok(&["campaign", "status", &id]);
    assert!(table.contains("not consented tor"), "{table}");

    // Results: by campaign, positional or flag; names and punycode inside.
    let lines = c.ctl_ok(&["--output", "jsonl", "results", &id]);
    let results: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 6, "2 probed targets x 3 agents");
    assert_eq!(
        c.ctl_ok(&["--output", "jsonl", "results", "--campaign", &id])
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
    let verdicts = c.ctl_json(&["verdicts", &id]);
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
    let table = c.ctl_ok(&["verdicts", &id]);
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
