use proptest::prelude::*;
use vantage_proto::failure::{self as f, failure, op};
use vantage_proto::v1::probe_input::Kind;
use vantage_proto::v1::*;

use super::super::{analyze_run, Mechanism as M, Status};
use super::verdict;

fn m(id: &str, input: Kind, result: measurement::Result) -> Measurement {
    Measurement {
        id: id.into(),
        input: Some(ProbeInput { kind: Some(input) }),
        result: Some(result),
        ..Default::default()
    }
}

fn tcp(id: &str, fail: Option<&str>) -> Measurement {
    m(
        id,
        Kind::Tcp(TcpInput {
            host: "198.51.100.7".into(),
            port: 443,
        }),
        measurement::Result::Tcp(TcpResult {
            failure: fail.map(|x| failure(x, op::CONNECT)),
            ..Default::default()
        }),
    )
}

fn reply(ips: &[&str]) -> DnsReply {
    DnsReply {
        rcode: "NOERROR".into(),
        answers: ips
            .iter()
            .map(|i| DnsAnswer {
                rtype: "A".into(),
                data: i.to_string(),
                ttl: 60,
            })
            .collect(),
        ..Default::default()
    }
}

fn dns(id: &str, replies: Vec<DnsReply>, fail: Option<&str>) -> Measurement {
    m(
        id,
        Kind::Dns(DnsInput {
            domain: "x.example".into(),
            resolver: "198.51.100.53:53".into(),
            ..Default::default()
        }),
        measurement::Result::Dns(DnsResult {
            replies,
            failure: fail.map(|x| failure(x, op::RESOLVE)),
            ..Default::default()
        }),
    )
}

fn hs(sni: &str, fail: Option<(&str, &str)>, webpki: &str, chain: &str) -> TlsHandshake {
    TlsHandshake {
        sni: sni.into(),
        failure: fail.map(|(a, b)| failure(a, b)),
        webpki: webpki.into(),
        chain_sha256: vec![chain.into()],
        ..Default::default()
    }
}

fn tls(id: &str, h: TlsHandshake, control: Option<TlsHandshake>) -> Measurement {
    m(
        id,
        Kind::Tls(TlsInput {
            ip: "198.51.100.9".into(),
            port: 443,
            sni: "blocked.example".into(),
            ..Default::default()
        }),
        measurement::Result::Tls(TlsResult {
            handshake: Some(h),
            control,
            ..Default::default()
        }),
    )
}

fn http(
    id: &str,
    status: u32,
    title: &str,
    len: u64,
    sha: &str,
    fail: Option<(&str, &str)>,
) -> Measurement {
    m(
        id,
        Kind::Http(HttpInput {
            url: "http://site.example/".into(),
            ..Default::default()
        }),
        measurement::Result::Http(HttpResult {
            chain: if fail.is_some() {
                vec![]
            } else {
                vec![HttpResponse {
                    status,
                    title: title.into(),
                    body_length: len,
                    body_sha256: sha.into(),
                    ..Default::default()
                }]
            },
            failure: fail.map(|(a, b)| failure(a, b)),
            ..Default::default()
        }),
    )
}

fn vpn(id: &str, got_reset: bool) -> Measurement {
    m(
        id,
        Kind::Openvpn(OpenVpnInput {
            ip: "198.51.100.11".into(),
            port: 1194,
            transport: "udp".into(),
        }),
        measurement::Result::Openvpn(OpenVpnResult {
            server_reset_received: got_reset,
            failure: (!got_reset).then(|| failure(f::GENERIC_TIMEOUT, op::READ)),
            ..Default::default()
        }),
    )
}

fn quic(id: &str, fail: bool) -> Measurement {
    m(
        id,
        Kind::Quic(QuicInput {
            ip: "198.51.100.12".into(),
            port: 443,
            sni: "q.example".into(),
            ..Default::default()
        }),
        measurement::Result::Quic(QuicResult {
            failure: fail.then(|| failure(f::GENERIC_TIMEOUT, op::QUIC_HANDSHAKE)),
            ..Default::default()
        }),
    )
}

#[test]
fn the_table() {
    struct Case {
        name: &'static str,
        inside: Measurement,
        controls: Vec<Measurement>,
        status: Status,
        mech: Option<M>,
    }
    let ok_tcp = tcp("c", None);
    let cases = vec![
        Case {
            name: "tcp ok",
            inside: tcp("i", None),
            controls: vec![ok_tcp.clone()],
            status: Status::Ok,
            mech: None,
        },
        Case {
            name: "tcp reset",
            inside: tcp("i", Some(f::CONNECTION_RESET)),
            controls: vec![ok_tcp.clone()],
            status: Status::Blocked,
            mech: Some(M::TcpReset),
        },
        Case {
            name: "tcp timeout",
            inside: tcp("i", Some(f::GENERIC_TIMEOUT)),
            controls: vec![ok_tcp.clone()],
            status: Status::Blocked,
            mech: Some(M::TcpTimeout),
        },
        Case {
            name: "tcp refused",
            inside: tcp("i", Some(f::CONNECTION_REFUSED)),
            controls: vec![ok_tcp.clone()],
            status: Status::Blocked,
            mech: Some(M::TcpRefused),
        },
        Case {
            name: "down",
            inside: tcp("i", Some(f::GENERIC_TIMEOUT)),
            controls: vec![tcp("c", Some(f::GENERIC_TIMEOUT))],
            status: Status::Down,
            mech: None,
        },
        Case {
            name: "no control",
            inside: tcp("i", Some(f::CONNECTION_RESET)),
            controls: vec![],
            status: Status::Inconclusive,
            mech: None,
        },
        Case {
            name: "controls disagree",
            inside: tcp("i", Some(f::CONNECTION_RESET)),
            controls: vec![ok_tcp.clone(), tcp("c2", Some(f::GENERIC_TIMEOUT))],
            status: Status::Inconclusive,
            mech: None,
        },
        Case {
            name: "inside refused",
            inside: m(
                "i",
                Kind::Tcp(TcpInput::default()),
                measurement::Result::Refused(Refusal {
                    reason: "consent".into(),
                }),
            ),
            controls: vec![ok_tcp.clone()],
            status: Status::Inconclusive,
            mech: None,
        },
        Case {
            name: "dns injection",
            inside: dns(
                "i",
                vec![reply(&["104.16.0.66"]), reply(&["93.184.216.20"])],
                None,
            ),
            controls: vec![],
            status: Status::Blocked,
            mech: Some(M::DnsInjection),
        },
        Case {
            name: "dns hijack bogon",
            inside: dns("i", vec![reply(&["10.10.10.10"])], None),
            controls: vec![dns("c", vec![reply(&["93.184.216.20"])], None)],
            status: Status::Blocked,
            mech: Some(M::DnsHijack),
        },
        Case {
            name: "dns hijack disjoint",
            inside: dns("i", vec![reply(&["104.16.0.5"])], None),
            controls: vec![dns("c", vec![reply(&["93.184.216.20"])], None)],
            status: Status::Blocked,
            mech: Some(M::DnsHijack),
        },
        Case {
            name: "dns same /24 ok",
            inside: dns("i", vec![reply(&["93.184.216.21"])], None),
            controls: vec![dns("c", vec![reply(&["93.184.216.20"])], None)],
            status: Status::Ok,
            mech: None,
        },
        Case {
            name: "dns nxdomain",
            inside: dns("i", vec![], Some(f::DNS_NXDOMAIN)),
            controls: vec![dns("c", vec![reply(&["93.184.216.20"])], None)],
            status: Status::Blocked,
            mech: Some(M::DnsNxdomain),
        },
        Case {
            name: "dns timeout",
            inside: dns("i", vec![], Some(f::GENERIC_TIMEOUT)),
            controls: vec![dns("c", vec![reply(&["93.184.216.20"])], None)],
            status: Status::Blocked,
            mech: Some(M::DnsTimeout),
        },
        Case {
            name: "tls reset by sni (own control sni)",
            inside: tls(
                "i",
                hs(
                    "blocked.example",
                    Some((f::CONNECTION_RESET, op::TLS_HANDSHAKE)),
                    "",
                    "a",
                ),
                Some(hs("clean.example", None, "valid", "a")),
            ),
            controls: vec![],
            status: Status::Blocked,
            mech: Some(M::TlsReset),
        },
        Case {
            name: "tls timeout vs control agent",
            inside: tls(
                "i",
                hs(
                    "blocked.example",
                    Some((f::GENERIC_TIMEOUT, op::TLS_HANDSHAKE)),
                    "",
                    "a",
                ),
                None,
            ),
            controls: vec![tls("c", hs("blocked.example", None, "valid", "a"), None)],
            status: Status::Blocked,
            mech: Some(M::TlsTimeout),
        },
        Case {
            name: "tls mitm",
            inside: tls(
                "i",
                hs("blocked.example", None, f::SSL_UNKNOWN_AUTHORITY, "evil"),
                None,
            ),
            controls: vec![tls("c", hs("blocked.example", None, "valid", "good"), None)],
            status: Status::Blocked,
            mech: Some(M::TlsMitm),
        },
        Case {
            name: "http blockpage",
            inside: http("i", 200, "Blocked", 300, "aa", None),
            controls: vec![http("c", 200, "Site", 5000, "bb", None)],
            status: Status::Blocked,
            mech: Some(M::HttpBlockpage),
        },
        Case {
            name: "http diff",
            inside: http("i", 403, "", 300, "aa", None),
            controls: vec![http("c", 200, "Site", 5000, "bb", None)],
            status: Status::Blocked,
            mech: Some(M::HttpDiff),
        },
        Case {
            name: "http similar body ok",
            inside: http("i", 200, "Site", 4900, "aa", None),
            controls: vec![http("c", 200, "Site", 5000, "bb", None)],
            status: Status::Ok,
            mech: None,
        },
        Case {
            name: "http reset",
            inside: http(
                "i",
                0,
                "",
                0,
                "",
                Some((f::CONNECTION_RESET, op::HTTP_ROUND_TRIP)),
            ),
            controls: vec![http("c", 200, "Site", 5000, "bb", None)],
            status: Status::Blocked,
            mech: Some(M::HttpReset),
        },
        Case {
            name: "quic timeout",
            inside: quic("i", true),
            controls: vec![quic("c", false)],
            status: Status::Blocked,
            mech: Some(M::QuicTimeout),
        },
        Case {
            name: "vpn blocked",
            inside: vpn("i", false),
            controls: vec![vpn("c", true)],
            status: Status::Blocked,
            mech: Some(M::VpnBlocked),
        },
        Case {
            name: "residual",
            inside: m(
                "i",
                Kind::Encrypted(EncryptedInput::default()),
                measurement::Result::Encrypted(EncryptedResult {
                    residual_blocking: true,
                    ..Default::default()
                }),
            ),
            controls: vec![],
            status: Status::Blocked,
            mech: Some(M::Residual),
        },
        Case {
            name: "dns_injection reply",
            inside: m(
                "i",
                Kind::DnsInjection(DnsInput::default()),
                measurement::Result::DnsInjection(DnsResult {
                    replies: vec![reply(&["203.0.113.1"])],
                    ..Default::default()
                }),
            ),
            controls: vec![],
            status: Status::Blocked,
            mech: Some(M::DnsInjection),
        },
    ];
    for c in cases {
        let controls: Vec<&Measurement> = c.controls.iter().collect();
        let got = verdict(&c.inside, &controls);
        assert_eq!(
            (got.status, got.mechanism),
            (c.status, c.mech),
            "{}: {}",
            c.name,
            got.reason
        );
        assert_eq!(got.evidence[0], "i", "{}", c.name);
    }
}

#[test]
fn analyze_run_pairs_by_target() {
    let inside = vec![tcp("i1", Some(f::CONNECTION_RESET)), vpn("i2", false)];
    let control = vec![tcp("c1", None), vpn("c2", true)];
    let out = analyze_run(&inside, &control);
    assert_eq!(out.len(), 2);
    for (id, _, v) in &out {
        assert_eq!(v.status, Status::Blocked, "{id}");
        assert_eq!(v.evidence.len(), 2);
    }
}

fn arb_failure() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(f::VOCABULARY.to_vec()).prop_map(|s| Some(s.to_string())),
        ".{0,20}".prop_map(|s| Some(format!("unknown_failure: {s}"))),
    ]
}

proptest! {
    #[test]
    fn never_panics_and_failing_control_turns_blocked_into_down(
        fi in arb_failure(), fc in arb_failure(), op_i in proptest::sample::select(vec![op::CONNECT, op::TLS_HANDSHAKE, op::READ, ""])
    ) {
        let mut inside = tcp("i", None);
        if let Some(measurement::Result::Tcp(t)) = &mut inside.result {
            t.failure = fi.as_ref().map(|x| failure(x, op_i));
        }
        let control = tcp("c", fc.as_deref());
        let got = verdict(&inside, &[&control]);
        if got.status == Status::Blocked {
            let failing = tcp("c", Some(f::GENERIC_TIMEOUT));
            let again = verdict(&inside, &[&failing]);
            prop_assert_eq!(again.status, Status::Down);
        }
        // Arbitrary DNS replies never panic either.
        let d = dns("i", vec![reply(&["1.2.3.4"]), DnsReply { malformed: true, ..Default::default() }], fi.as_deref());
        let _ = verdict(&d, &[&control]);
    }
}
