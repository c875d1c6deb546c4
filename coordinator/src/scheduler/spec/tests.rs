use super::super::expand_runs;
use super::*;
use proptest::prelude::*;

/// Line numbers below refer to this text.
const GOOD: &str = r#"version = 1
name = "sni"
deadline = "30s"

[inside]
countries = ["CN"]

[control]
tags = ["control"]

[[targets]]
tls = { ip = "1.1.1.1", port = 443, sni = "blocked.example" }

[[targets]]
tcp = { host = "example.org", port = 80 }
"#;

const SCHEDULED: &str = "[schedule]\nevery = \"1h\"\nstart = \"2026-01-01T00:00:00Z\"\n\
                         end = \"2026-01-01T05:00:00Z\"\nspread = \"10m\"\n\n[inside]";

fn err(text: &str) -> SpecError {
    parse_spec(text, SpecFormat::Toml).unwrap_err()
}

/// Asserts the error names `field` and points at `line`.
fn assert_refused(text: &str, field: &str, line: usize, words: &[&str]) {
    let e = err(text);
    let msg = e.to_string();
    eprintln!("{msg}");
    assert_eq!(e.line(), Some(line), "{msg}");
    assert!(
        msg.starts_with(&format!("line {line}")),
        "message starts with the line: {msg}"
    );
    assert!(msg.contains(field), "names {field}: {msg}");
    for w in words {
        assert!(msg.contains(w), "mentions {w:?}: {msg}");
    }
}

#[test]
fn good_spec_parses_and_round_trips_through_json() {
    let s = parse_spec(GOOD, SpecFormat::Toml).unwrap();
    assert_eq!(s.targets[0].kind_name(), "tls");
    assert_eq!(s.deadline_us(), 30_000_000);
    assert_eq!(s.kinds(), vec!["tls", "tcp"]);
    assert!(
        !s.allow_private_targets,
        "private targets are off by default"
    );
    let json = serde_json::to_string_pretty(&s).unwrap();
    assert_eq!(parse_spec(&json, SpecFormat::Json).unwrap(), s);
}

#[test]
fn unknown_field_names_line_column_and_field() {
    let e = err(&GOOD.replace("deadline = \"30s\"", "deadlin = \"30s\""));
    assert_eq!(e.to_string().split(':').next(), Some("line 3, column 1"));
    assert!(e.to_string().contains("unknown field `deadlin`"), "{e}");
    // Inside a section too.
    let e = err(&GOOD.replace("tags = [\"control\"]", "tag = [\"control\"]"));
    assert!(
        e.to_string().starts_with("line 9, column 1") && e.to_string().contains("`tag`"),
        "{e}"
    );
    // And inside a probe input (the proto types deny unknown fields).
    let e = err(&GOOD.replace("port = 80", "prot = 80"));
    assert!(
        e.to_string().starts_with("line 15") && e.to_string().contains("prot"),
        "{e}"
    );
}

#[test]
fn bad_duration_names_line_and_field() {
    #[rustfmt::skip]
    let refused = [
        (GOOD.replace("\"30s\"", "\"thirty\""), "deadline", 3, &["thirty"][..]),
        (GOOD.replace("\"30s\"", "\"0s\""), "deadline", 3, &["positive"][..]),
        (GOOD.replace("\"30s\"", "\"2days\""), "deadline", 3, &["maximum"][..]),
        (GOOD.replace("[inside]", &SCHEDULED.replace("\"1h\"", "\"hourly\"")), "schedule.every", 6, &["hourly"][..]),
    ];
    for (text, field, line, words) in refused {
        assert_refused(&text, field, line, words);
    }
}

#[test]
fn empty_group_is_refused() {
    #[rustfmt::skip]
    let refused = [
        (GOOD.replace("tags = [\"control\"]", ""), "control", 8, &["empty group"][..]),
        (GOOD.replace("countries = [\"CN\"]", "countries = [\"CN\"]\nmin_agents = 3\nmax_agents = 2"), "inside.min_agents", 7, &["empty group", "max_agents (2)"][..]),
        (GOOD.replace("tags = [\"control\"]", "tags = [\"control\"]\nmax_agents = 0"), "control.max_agents", 10, &["at least 1"][..]),
        (GOOD.replace("[\"CN\"]", "[\"China\"]"), "inside.countries", 6, &["China"][..]),
    ];
    for (text, field, line, words) in refused {
        assert_refused(&text, field, line, words);
    }
}

#[test]
fn unknown_probe_kind_names_line_and_kind() {
    let e = err(&GOOD.replace("tls = {", "telnet = {"));
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.starts_with("line 12") && msg.contains("telnet"),
        "{msg}"
    );
    assert!(
        msg.contains("tls") && msg.contains("wireguard"),
        "lists the kinds: {msg}"
    );
}

#[test]
fn forbidden_target_is_refused_unless_lab() {
    let text = GOOD.replace("1.1.1.1", "10.0.0.1");
    assert_refused(
        &text,
        "targets[0].tls",
        12,
        &["10.0.0.1", "private", "allow_private_targets"],
    );
    let lab = text.replace(
        "deadline = \"30s\"",
        "deadline = \"30s\"\nallow_private_targets = true",
    );
    assert!(parse_spec(&lab, SpecFormat::Toml).is_ok());
    // Literal IPs hide in hosts, resolvers and URLs too.
    #[rustfmt::skip]
    let cases = [
        ("tcp = { host = \"127.0.0.1\", port = 80 }", "loopback"),
        ("dns = { domain = \"x.org\", resolver = \"[fe80::1]:53\" }", "link-local"),
        ("dns = { domain = \"x.org\", resolver = \"::1\" }", "loopback"),
        ("web = { url = \"http://192.168.1.1/admin\" }", "private"),
        ("http = { url = \"https://[fd00::1]:8443/\" }", "unique-local"),
        ("quic = { ip = \"100.64.0.1\", port = 443, sni = \"q\" }", "CGNAT"),
    ];
    for (target, what) in cases {
        let text = GOOD.replace("tcp = { host = \"example.org\", port = 80 }", target);
        assert_refused(&text, "targets[1]", 15, &[what]);
    }
}

#[test]
fn malformed_targets_are_refused() {
    #[rustfmt::skip]
    let cases = [
        ("tcp = { host = \"example.org\" }", &["port 0"][..]),
        ("tls = { ip = \"example.org\", port = 443 }", &["not an IP"][..]),
        ("http = { url = \"ftp://x.org/\" }", &["http://"][..]),
        ("openvpn = { ip = \"1.2.3.4\", port = 1194, transport = \"sctp\" }", &["sctp"][..]),
        ("wireguard = { ip = \"1.2.3.4\", port = 51820, peer_public_key = [1, 2] }", &["32"][..]),
        ("dns = { domain = \"\" }", &["domain"][..]),
    ];
    for (target, words) in cases {
        let text = GOOD.replace("tcp = { host = \"example.org\", port = 80 }", target);
        assert_refused(&text, "targets[1]", 15, words);
    }
}

/// What an agent refuses (`vantage_proto::validate`, run by `probes::run`)
/// is refused here, naming the target, its kind and the field, on the
/// field's line.
#[test]
fn inputs_agents_would_refuse_are_refused_at_creation() {
    #[rustfmt::skip]
    let cases = [
        // The agent's HTTP client would silently use port 80 for this.
        ("web = { url = \"http://example.org:99999/\" }", "targets[1].web.url", &["99999"][..]),
        ("http = { url = \"http://user@example.org/\" }", "targets[1].http.url", &["user name"][..]),
        // Agents speak DoH over https only.
        ("dns = { domain = \"example.org\", transport = \"doh\", doh_url = \"http://dns.example/q\" }", "targets[1].dns.doh_url", &["https://"][..]),
        ("dns = { domain = \"example.org\", qtype = \"MX\" }", "targets[1].dns.qtype", &["MX"][..]),
        ("dns = { domain = \"bad..name\" }", "targets[1].dns.domain", &["empty label"][..]),
        ("tls = { ip = \"1.1.1.1\", port = 443, sni = \"xn--zz.example\" }", "targets[1].tls.sni", &["IDNA"][..]),
        ("encrypted = { ip = \"1.1.1.1\", port = 443, payload_bytes = 5000 }", "targets[1].encrypted.payload_bytes", &["5000", "1400"][..]),
        ("tor = { ip = \"1.1.1.1\" }", "targets[1].tor.port", &["port 0"][..]),
    ];
    for (target, field, words) in cases {
        let text = GOOD.replace("tcp = { host = \"example.org\", port = 80 }", target);
        let e = err(&text);
        assert_eq!(e.field(), Some(field), "{e}");
        assert_refused(&text, field, 15, words);
    }
}

/// Targets are stored as agents will probe them: host names in IDNA
/// punycode, so every agent gets the same ASCII names.
#[test]
fn targets_are_normalised_to_punycode() {
    let text = GOOD
        .replace("sni = \"blocked.example\"", "sni = \"Bücher.Example\"")
        .replace(
            "tcp = { host = \"example.org\", port = 80 }",
            "web = { url = \"HTTP://bücher.example/ä?q=ö\" }",
        );
    let s = parse_spec(&text, SpecFormat::Toml).unwrap();
    let json = serde_json::to_value(&s.targets).unwrap();
    assert_eq!(json[0]["tls"]["sni"], "xn--bcher-kva.example");
    assert_eq!(
        json[1]["web"]["url"],
        "http://xn--bcher-kva.example/%C3%A4?q=%C3%B6"
    );
    // Storing and reading back changes nothing.
    let again = parse_spec(&serde_json::to_string(&s).unwrap(), SpecFormat::Json).unwrap();
    assert_eq!(again, s);
}

#[test]
fn targets_carry_a_name() {
    let text = GOOD.replace(
        "[[targets]]\ntcp =",
        "[[targets]]\nname = \"Example, plain TCP\"\ntcp =",
    );
    let s = parse_spec(&text, SpecFormat::Toml).unwrap();
    assert_eq!(s.targets[0].name, "");
    assert_eq!(s.targets[1].name, "Example, plain TCP");
    assert_eq!(s.targets[1].kind_name(), "tcp");
    // In JSON beside the kind, and back.
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        json.contains(r#""name":"Example, plain TCP","tcp":{"#),
        "{json}"
    );
    assert_eq!(parse_spec(&json, SpecFormat::Json).unwrap(), s);
    // A name is not a probe kind: the target still needs one.
    let no_kind = GOOD.replace(
        "tcp = { host = \"example.org\", port = 80 }",
        "name = \"lonely\"",
    );
    assert_refused(&no_kind, "targets[1]", 14, &["no probe kind", "wireguard"]);
    // Too long, or with control characters: refused on the name's line,
    // written before or after the kind.
    let long = "n".repeat(201);
    let text = GOOD.replace(
        "[[targets]]\ntcp =",
        &format!("[[targets]]\nname = \"{long}\"\ntcp ="),
    );
    assert_refused(&text, "targets[1].name", 15, &["201", "200"]);
    let text = GOOD.replace("port = 80 }", "port = 80 }\nname = \"tab\\there\"");
    assert_refused(&text, "targets[1].name", 16, &["control"]);
    // Two kinds in one target: an error on the second.
    let two = GOOD.replace(
        "tcp = { host = \"example.org\", port = 80 }",
        "tcp = { host = \"example.org\", port = 80 }\ntor = { ip = \"1.1.1.1\", port = 9001 }",
    );
    let e = err(&two);
    assert!(
        e.to_string().starts_with("line 16") && e.to_string().contains("one probe kind"),
        "{e}"
    );
}

#[test]
fn empty_target_list_is_refused() {
    let text = GOOD
        .split("[[targets]]")
        .next()
        .unwrap()
        .replace("deadline = \"30s\"", "deadline = \"30s\"\ntargets = []");
    assert_refused(&text, "targets", 4, &["at least one"]);
}

#[test]
fn schedule_rules() {
    let every = GOOD.replace("[inside]", SCHEDULED);
    let s = parse_spec(&every, SpecFormat::Toml).unwrap();
    assert_eq!(expand_runs(&s, 0, 1).unwrap().len(), 6);
    #[rustfmt::skip]
    let refused = [
        (every.replace("end = \"2026-01-01T05:00:00Z\"\n", ""), "schedule.end", 5, &["required"][..]),
        (every.replace("2026-01-01T05", "2025-01-01T05"), "schedule.end", 8, &["after start"][..]),
        (every.replace("2026-01-01T05", "2026-13-01T05"), "schedule.end", 8, &["bad time"][..]),
        (every.replace("\"10m\"", "\"2h\""), "schedule.spread", 9, &["shorter than every"][..]),
        (every.replace("every = ", "once = true\nevery = "), "schedule.once", 6, &["not both"][..]),
        (every.replace("every = \"1h\"", "every = \"1s\"").replace("2026-01-01T05", "2027-01-01T05"), "schedule.every", 6, &["31554001 runs", "10000"][..]),
    ];
    for (text, field, line, words) in refused {
        assert_refused(&text, field, line, words);
    }
    let once = GOOD.replace(
        "[inside]",
        "[schedule]\nonce = true\nspread = \"1m\"\n\n[inside]",
    );
    assert_eq!(
        expand_runs(&parse_spec(&once, SpecFormat::Toml).unwrap(), 5, 1)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn groups_must_not_overlap() {
    let text = GOOD
        .replace("countries = [\"CN\"]", "agent_ids = [\"a1\", \"a2\"]")
        .replace("tags = [\"control\"]", "agent_ids = [\"a3\", \"a2\"]");
    assert_refused(&text, "control.agent_ids", 9, &["a2", "overlap"]);
    let same = GOOD.replace("tags = [\"control\"]", "countries = [\"cn\"]");
    assert_refused(&same, "control", 8, &["outside"]);
}

#[test]
fn version_is_required_and_checked() {
    let e = err(&GOOD.replace("version = 1\n", ""));
    assert!(e.to_string().contains("version"), "{e}");
    assert_refused(
        &GOOD.replace("version = 1", "version = 2"),
        "version",
        1,
        &["unsupported"],
    );
}

#[test]
fn json_errors_carry_line_and_field() {
    let s = parse_spec(GOOD, SpecFormat::Toml).unwrap();
    let json = serde_json::to_string_pretty(&s).unwrap();
    let e = parse_spec(
        &json.replace("\"deadline\"", "\"deadlin\""),
        SpecFormat::Json,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("line ") && e.to_string().contains("deadlin"),
        "{e}"
    );
    let bad = json.replace("1.1.1.1", "10.1.1.1");
    let e = parse_spec(&bad, SpecFormat::Json).unwrap_err();
    let line = bad
        .lines()
        .position(|l| l.contains("\"tls\""))
        .map(|i| i + 1);
    assert_eq!(e.line(), line, "{e}");
    assert_eq!(e.field(), Some("targets[0].tls"));
    assert_eq!(
        SpecFormat::from_path(std::path::Path::new("a/b.JSON")),
        SpecFormat::Json
    );
    assert_eq!(
        SpecFormat::from_path(std::path::Path::new("a/b.toml")),
        SpecFormat::Toml
    );
}

#[test]
fn every_shipped_example_spec_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/campaigns");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if !matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("toml" | "json")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let spec = parse_spec(&text, SpecFormat::from_path(&p))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // Expanded as if created on 2026-11-01.
        let runs = expand_runs(&spec, 1_793_491_200_000_000, 7)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!runs.is_empty(), "{}", p.display());
        n += 1;
    }
    assert!(n >= 5, "expected the example specs in {}", dir.display());
}

proptest! {
    /// Arbitrary text never panics the parser, and whatever it accepts
    /// survives a JSON round trip.
    #[test]
    fn parser_never_panics(text in "[ -~\n]{0,400}") {
        let _ = parse_spec(&text, SpecFormat::Toml);
        let _ = parse_spec(&text, SpecFormat::Json);
        if let Ok(s) = parse_spec(&GOOD.replace("\"30s\"", &format!("{text:?}")), SpecFormat::Toml) {
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(parse_spec(&json, SpecFormat::Json).unwrap(), s);
        }
    }

    /// A validation error always points at a line inside the text.
    #[test]
    fn error_lines_stay_inside_the_text(cut in 0usize..400) {
        let mut t = GOOD.replace("1.1.1.1", "10.0.0.1");
        t.truncate(cut.min(t.len()));
        if let Err(e) = parse_spec(&t, SpecFormat::Toml) {
            if let Some(l) = e.line() {
                prop_assert!(l >= 1 && l <= t.lines().count().max(1) + 1, "{}", e);
            }
        }
    }
}

#[test]
fn a_campaign_adds_block_page_fingerprints_in_the_ooni_columns() {
    let text = format!(
        "{GOOD}\n[[blockpage_fingerprints]]\nname = \"lab.censor_0\"\nlocation_found = \"body\"\n\
         pattern_type = \"contains\"\npattern = \"Vantage lab censor\"\nsource = \"lab\"\n"
    );
    let spec = parse_spec(&text, SpecFormat::Toml).expect("accepted");
    let fps = spec.fingerprints();
    assert_eq!(fps.len(), 1);
    assert_eq!(fps[0].name, "lab.censor_0");
    assert_eq!(fps[0].pattern, "Vantage lab censor");
    let bad = text.replace("location_found = \"body\"", "location_found = \"cookie\"");
    let e = err(&bad);
    assert_eq!(e.field(), Some("blockpage_fingerprints[0]"), "{e}");
    assert!(e.to_string().contains("cookie"), "{e}");
    let typo = text.replace("pattern_type =", "patern_type =");
    assert!(err(&typo).to_string().contains("patern_type"));
}
