//! `ooni-jsonl` read by OONI's own data library: signed measurements of
//! every probe kind are built in memory, exported line by line with
//! `export::ooni`, and loaded by `oonidata` 0.3.0 through
//! `tests/ooni/check_oonidata.py`, which checks per kind that OONI's test
//! keys came through typed.
//!
//! Needs Python 3 with `oonidata==0.3.0` (deploy/scripts/install-test-deps.sh
//! installs it in its own virtual environment). Missing, the test fails
//! naming the install, unless VANTAGE_SKIP_LAB=1, when it prints the
//! counted skip line and passes.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use ed25519_dalek::SigningKey;
use vantage_coordinator::export;
use vantage_proto::failure::{failure, op};
use vantage_proto::v1::{
    measurement::Result as R, probe_input::Kind, AppStoreInput, AppStoreLookup, AppStoreResult,
    DnsAnswer, DnsInput, DnsReply, DnsResult, EncryptedAttempt, EncryptedInput, EncryptedResult,
    HttpHeader, HttpInput, HttpResponse, HttpResult, Labels, Measurement, OpenVpnInput,
    OpenVpnResult, ProbeInput, QuicInput, QuicResult, Step, StoredResult, TcpInput, TcpResult,
    TlsHandshake, TlsInput, TlsResult, TorInput, TorResult, VerdictRow, WebInput, WebResult,
    WireGuardInput, WireGuardResult,
};

const TEST: &str = "ooni_export_loads_in_oonidata";
const START: i64 = 1_795_000_000_000_000;

/// Where install-test-deps.sh puts oonidata's virtual environment.
fn venv_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/vantage/oonidata-0.3.0/bin/python3");
    p.is_file().then_some(p)
}

/// A Python that imports oonidata: $VANTAGE_OONIDATA_PYTHON, the
/// install script's virtual environment, or python3.
fn python_with_oonidata() -> Result<PathBuf, String> {
    let mut tried = vec![];
    let candidates = std::env::var_os("VANTAGE_OONIDATA_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv_python())
        .chain([PathBuf::from("python3")]);
    for py in candidates {
        let out = Command::new(&py)
            .args(["-c", "import oonidata.dataclient"])
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(py),
            Ok(o) => tried.push(format!(
                "{}: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{}: {e}", py.display())),
        }
    }
    Err(tried.join("; "))
}

fn step(name: &str, start_us: i64, duration_us: i64) -> Step {
    Step {
        name: name.into(),
        start_us,
        duration_us,
        failure: None,
    }
}

/// Steps one after the other from the start: (name, duration).
fn back_to_back(steps: &[(&str, i64)]) -> Vec<Step> {
    let mut at = 0;
    let mut out = vec![];
    for (name, duration_us) in steps {
        out.push(step(name, at, *duration_us));
        at += duration_us;
    }
    out
}

fn hs(sni: &str) -> TlsHandshake {
    TlsHandshake {
        sni: sni.into(),
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        alpn: "http/1.1".into(),
        chain_sha256: vec!["ab".repeat(32)],
        webpki: "valid".into(),
        handshake_us: 20_000,
        leaf_spki_sha256: "cd".repeat(32),
        issuer: "CN=Lab CA".into(),
        ..Default::default()
    }
}

fn reply(arrival_us: i64, ip: &str) -> DnsReply {
    DnsReply {
        arrival_us,
        rcode: "NOERROR".into(),
        answers: vec![DnsAnswer {
            rtype: "A".into(),
            data: ip.into(),
            ttl: 300,
        }],
        source: "192.0.2.53:53".into(),
        ..Default::default()
    }
}

fn response(url: &str, status: u32) -> HttpResponse {
    HttpResponse {
        url: url.into(),
        status,
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "text/html".into(),
        }],
        body_length: 1200,
        body_sha256: "ef".repeat(32),
        title: "Lab".into(),
        body_us: 900,
        ..Default::default()
    }
}

/// One complete measurement of every kind (and a refusal), as agents
/// would report them.
fn measurements() -> Vec<(Kind, R, Vec<Step>)> {
    let web_steps = vec![
        step("resolve", 0, 1_001_000),
        step("connect", 1_001_000, 3_000),
        step("tls_handshake", 1_004_000, 20_000),
        step("http_round_trip", 1_024_000, 5_000),
        step("read", 1_029_000, 900),
    ];
    let dns = DnsResult {
        resolver: "192.0.2.53:53".into(),
        transport: "udp".into(),
        replies: vec![reply(2_000, "198.51.100.1"), reply(30_000, "203.0.113.10")],
        failure: None,
    };
    let reset = failure("connection_reset", op::CONNECT);
    vec![
        (
            Kind::Web(WebInput {
                url: "https://example.org/".into(),
                resolver: "192.0.2.53".into(),
            }),
            R::Web(WebResult {
                dns: Some(dns.clone()),
                tcp: vec![TcpResult {
                    ip: "198.51.100.1".into(),
                    port: 443,
                    connect_us: 3_000,
                    ..Default::default()
                }],
                tls: Some(hs("example.org")),
                http: Some(HttpResult {
                    chain: vec![response("https://example.org/", 200)],
                    failure: None,
                    tls: Some(hs("example.org")),
                }),
                failure: None,
            }),
            web_steps,
        ),
        (
            Kind::Dns(DnsInput {
                domain: "example.org".into(),
                resolver: "192.0.2.53".into(),
                qtype: "A".into(),
                transport: "udp".into(),
                ..Default::default()
            }),
            R::Dns(dns.clone()),
            vec![step("resolve", 0, 1_001_000)],
        ),
        (
            Kind::DnsInjection(DnsInput {
                domain: "blocked.example".into(),
                resolver: "198.51.100.99".into(),
                ..Default::default()
            }),
            R::DnsInjection(DnsResult {
                resolver: "198.51.100.99:53".into(),
                replies: vec![reply(40_000, "192.0.2.250")],
                transport: "udp".into(),
                failure: None,
            }),
            vec![step("resolve", 0, 1_040_000)],
        ),
        (
            Kind::Tcp(TcpInput {
                host: "198.51.100.2".into(),
                port: 443,
            }),
            R::Tcp(TcpResult {
                ip: "198.51.100.2".into(),
                port: 443,
                failure: Some(reset.clone()),
                ..Default::default()
            }),
            vec![Step {
                failure: Some(reset.clone()),
                ..step("connect", 0, 2_000)
            }],
        ),
        (
            Kind::Tls(TlsInput {
                ip: "198.51.100.3".into(),
                port: 443,
                sni: "blocked.example".into(),
                control_sni: "example.org".into(),
                alpn: vec![],
            }),
            R::Tls(TlsResult {
                ip: "198.51.100.3".into(),
                port: 443,
                handshake: Some(TlsHandshake {
                    failure: Some(failure("connection_reset", op::TLS_HANDSHAKE)),
                    ..TlsHandshake {
                        sni: "blocked.example".into(),
                        ..Default::default()
                    }
                }),
                control: Some(hs("example.org")),
            }),
            vec![
                step("connect", 0, 1_000),
                Step {
                    failure: Some(failure("connection_reset", op::TLS_HANDSHAKE)),
                    ..step("tls_handshake", 1_000, 1_000)
                },
                step("control_connect", 2_000, 1_000),
                step("control_tls_handshake", 3_000, 20_000),
            ],
        ),
        (
            Kind::Http(HttpInput {
                url: "https://example.org/start".into(),
                ip: "198.51.100.4".into(),
                ..Default::default()
            }),
            R::Http(HttpResult {
                chain: vec![
                    HttpResponse {
                        headers: vec![HttpHeader {
                            name: "Location".into(),
                            value: "/end".into(),
                        }],
                        ..response("https://example.org/start", 302)
                    },
                    HttpResponse {
                        body_head: "<html><title>Lab</title></html>".into(),
                        ..response("https://example.org/end", 200)
                    },
                ],
                failure: None,
                tls: Some(hs("example.org")),
            }),
            vec![
                step("connect", 0, 1_000),
                step("tls_handshake", 1_000, 20_000),
                step("http_round_trip", 21_000, 5_000),
                step("read", 26_000, 500),
                step("connect", 27_000, 1_000),
                step("tls_handshake", 28_000, 20_000),
                step("http_round_trip", 48_000, 5_000),
                step("read", 53_000, 900),
            ],
        ),
        (
            Kind::Quic(QuicInput {
                ip: "198.51.100.5".into(),
                port: 443,
                sni: "example.org".into(),
                alpn: vec!["h3".into()],
            }),
            R::Quic(QuicResult {
                ip: "198.51.100.5".into(),
                port: 443,
                sni: "example.org".into(),
                failure: Some(failure("generic_timeout_error", op::QUIC_HANDSHAKE)),
                ..Default::default()
            }),
            vec![Step {
                failure: Some(failure("generic_timeout_error", op::QUIC_HANDSHAKE)),
                ..step("quic_handshake", 0, 5_000_000)
            }],
        ),
        (
            Kind::Openvpn(OpenVpnInput {
                ip: "198.51.100.6".into(),
                port: 1194,
                transport: "udp".into(),
            }),
            R::Openvpn(OpenVpnResult {
                ip: "198.51.100.6".into(),
                port: 1194,
                transport: "udp".into(),
                server_reset_received: true,
                rtt_us: 30_000,
                ..Default::default()
            }),
            back_to_back(&[("connect", 100), ("write", 100), ("read", 30_000)]),
        ),
        (
            Kind::Tor(TorInput {
                ip: "198.51.100.7".into(),
                port: 9001,
            }),
            R::Tor(TorResult {
                ip: "198.51.100.7".into(),
                port: 9001,
                failure: None,
                tls: Some(hs("")),
                link_versions: vec![3, 4, 5],
            }),
            back_to_back(&[
                ("connect", 1_000),
                ("tls_handshake", 20_000),
                ("write", 100),
                ("read", 2_000),
            ]),
        ),
        (
            Kind::Encrypted(EncryptedInput {
                ip: "198.51.100.8".into(),
                port: 8388,
                ..Default::default()
            }),
            R::Encrypted(EncryptedResult {
                ip: "198.51.100.8".into(),
                port: 8388,
                trigger: None,
                retests: vec![EncryptedAttempt {
                    at_us: 60_000_000,
                    failure: Some(failure("generic_timeout_error", op::CONNECT)),
                    data_echoed: false,
                }],
                residual_blocking: true,
            }),
            [
                back_to_back(&[("connect", 1_000), ("write", 100), ("read", 500_000)]),
                vec![Step {
                    failure: Some(failure("generic_timeout_error", op::CONNECT)),
                    ..step("retest_1", 60_000_000, 10_000_000)
                }],
            ]
            .concat(),
        ),
        (
            Kind::Wireguard(WireGuardInput {
                ip: "198.51.100.9".into(),
                port: 51820,
                peer_public_key: vec![7; 32],
            }),
            R::Wireguard(WireGuardResult {
                ip: "198.51.100.9".into(),
                port: 51820,
                response_received: true,
                rtt_us: 25_000,
                ..Default::default()
            }),
            back_to_back(&[("connect", 100), ("write", 100), ("read", 25_000)]),
        ),
        (
            Kind::AppStore(AppStoreInput {
                app_id: "886492891".into(),
                storefront: "cn".into(),
                control_storefront: "us".into(),
                ..Default::default()
            }),
            R::AppStore(AppStoreResult {
                lookups: ["cn", "us"]
                    .iter()
                    .map(|sf| AppStoreLookup {
                        storefront: sf.to_string(),
                        url: format!("https://itunes.apple.com/lookup?id=886492891&country={sf}"),
                        status: 200,
                        body_sha256: "ef".repeat(32),
                        body_length: 40,
                        result_count: u32::from(*sf == "us"),
                        listed: *sf == "us",
                        tls: Some(hs("itunes.apple.com")),
                        ..Default::default()
                    })
                    .collect(),
            }),
            // The tested storefront's lookup, then the control one's.
            back_to_back(
                &[
                    ("resolve", 5_000),
                    ("connect", 10_000),
                    ("tls_handshake", 20_000),
                    ("http_round_trip", 30_000),
                    ("read", 1_000),
                ]
                .repeat(2),
            ),
        ),
        (
            Kind::Tor(TorInput {
                ip: "10.0.0.1".into(),
                port: 9001,
            }),
            R::Refused(vantage_proto::v1::Refusal {
                reason: "forbidden_target: 10.0.0.1 is private".into(),
            }),
            vec![],
        ),
    ]
}

#[test]
fn ooni_export_loads_in_oonidata() {
    let python = match python_with_oonidata() {
        Ok(p) => p,
        Err(why) => {
            if std::env::var("VANTAGE_SKIP_LAB").as_deref() == Ok("1") {
                // Straight to stderr: deploy/scripts/test.sh counts these lines.
                let _ = writeln!(std::io::stderr(), "SKIPPED (VANTAGE_SKIP_LAB=1): {TEST}");
                return;
            }
            panic!(
                "{TEST}: needs Python 3 with OONI's data library: pip install oonidata==0.3.0 \
                 (or bash deploy/scripts/install-test-deps.sh, which installs it in \
                 ~/.cache/vantage/oonidata-0.3.0), or set VANTAGE_SKIP_LAB=1 to skip. \
                 Tried: {why}"
            );
        }
    };

    let key = SigningKey::from_bytes(&[21; 32]);
    let agent = "4d1c8a52-0000-7000-8000-000000000001";
    let mut lines = vec![];
    let mut kinds = vec![];
    for (i, (input, result, steps)) in measurements().into_iter().enumerate() {
        let m = Measurement {
            id: vantage_proto::envelope::new_id(),
            agent_id: agent.into(),
            campaign_id: "c-1".into(),
            task_id: format!("t-{i}"),
            run_id: "r-1".into(),
            start_us: START + i as i64 * 1_000_000,
            end_us: START + i as i64 * 1_000_000 + 1_500_000,
            software_version: vantage_proto::SOFTWARE_VERSION.into(),
            labels: Some(Labels {
                country: "CN".into(),
                asn: 4134,
                tags: vec![],
            }),
            input: Some(ProbeInput::from(input)),
            steps,
            result: Some(result),
        };
        let sr = StoredResult {
            envelope: Some(vantage_proto::envelope::sign(&key, &m)),
            agent_id: agent.into(),
            received_us: m.end_us + 1_000,
            ..Default::default()
        };
        // The web measurement goes through the verdict path too.
        let line = if matches!(m.result, Some(R::Web(_))) {
            let v = VerdictRow {
                run_id: m.run_id.clone(),
                target: String::new(),
                agent_id: m.agent_id.clone(),
                status: "blocked".into(),
                mechanism: "dns.injection".into(),
                evidence: vec![m.id.clone()],
                ..Default::default()
            };
            let ix = export::VerdictIndex::new([v]);
            let line = export::ooni_with_verdict(&sr, &m, ix.get(&m));
            assert_eq!(line["test_keys"]["blocking"], "dns");
            line
        } else {
            export::ooni(&sr, &m)
        };
        kinds.push(m.input.as_ref().map(|i| i.kind_name()).unwrap_or("none"));
        lines.push(line.to_string());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("export.ooni.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write export");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ooni/check_oonidata.py");
    let mut require: Vec<&str> = vantage_proto::PROBE_KINDS.to_vec();
    require.retain(|k| kinds.contains(k));
    assert_eq!(
        require.len(),
        vantage_proto::PROBE_KINDS.len(),
        "every kind is built"
    );
    let out = Command::new(&python)
        .arg(&script)
        .arg(&file)
        .arg("--strict")
        .arg(format!("--require={}", require.join(",")))
        .output()
        .expect("run check_oonidata.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{} {}\n{stdout}{stderr}",
        python.display(),
        script.display()
    );
    assert!(
        out.status.success(),
        "oonidata did not load the export with OONI's fields:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains(&format!("{n} of {n} lines", n = lines.len())),
        "{stdout}"
    );
}
