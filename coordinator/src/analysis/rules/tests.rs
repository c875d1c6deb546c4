use proptest::prelude::*;
use vantage_proto::failure::{self as f, failure, op};
use vantage_proto::v1::probe_input::Kind;
use vantage_proto::v1::*;

use super::super::{analyze_run, Mechanism as M, Status, Verdict};
use super::verdict;

fn m(id: &str, input: Kind, result: measurement::Result) -> Measurement {
    Measurement {
        id: id.into(),
        input: Some(ProbeInput {
            kind: Some(input),
            ..Default::default()
        }),
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

/// A probe of `input` that got its answer, or timed out at `at`.
fn answered_or_not(
    id: &str,
    input: Kind,
    empty: measurement::Result,
    answered: bool,
    at: &str,
) -> Measurement {
    let mut result = empty;
    let timeout = (!answered).then(|| failure(f::GENERIC_TIMEOUT, at));
    set_outcome(&mut result, timeout, answered);
    m(id, input, result)
}

fn vpn(id: &str, got_reset: bool) -> Measurement {
    let input = Kind::Openvpn(OpenVpnInput {
        ip: "198.51.100.11".into(),
        port: 1194,
        transport: "udp".into(),
    });
    let empty = measurement::Result::Openvpn(OpenVpnResult::default());
    answered_or_not(id, input, empty, got_reset, op::READ)
}

fn quic(id: &str, fail: bool) -> Measurement {
    let input = Kind::Quic(QuicInput {
        ip: "198.51.100.12".into(),
        port: 443,
        sni: "q.example".into(),
        ..Default::default()
    });
    let empty = measurement::Result::Quic(QuicResult::default());
    answered_or_not(id, input, empty, !fail, op::QUIC_HANDSHAKE)
}

fn wg(id: &str, response: bool) -> Measurement {
    let input = Kind::Wireguard(WireGuardInput {
        ip: "198.51.100.11".into(),
        port: 51820,
        ..Default::default()
    });
    let empty = measurement::Result::Wireguard(WireGuardResult::default());
    answered_or_not(id, input, empty, response, op::READ)
}

/// A web measurement: resolved `ips`, TLS verified or not, a failure.
fn web(id: &str, ips: &[&str], verified: bool, fail: Option<(&str, &str)>) -> Measurement {
    let fail = fail.map(|(a, b)| failure(a, b));
    let at = |o: &str| fail.clone().filter(|f| f.operation == o);
    m(
        id,
        Kind::Web(WebInput {
            url: "https://site.example/".into(),
            ..Default::default()
        }),
        measurement::Result::Web(WebResult {
            dns: Some(DnsResult {
                replies: if ips.is_empty() {
                    vec![]
                } else {
                    vec![reply(ips)]
                },
                failure: at(op::RESOLVE),
                ..Default::default()
            }),
            tls: Some(TlsHandshake {
                failure: at(op::TLS_HANDSHAKE),
                webpki: if verified {
                    "valid".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            failure: fail.clone(),
            ..Default::default()
        }),
    )
}

/// One storefront's lookup: listed or not, or failed with `fail` at `at`.
fn lookup(storefront: &str, listed: bool, fail: Option<(&str, &str)>) -> AppStoreLookup {
    AppStoreLookup {
        storefront: storefront.into(),
        status: if fail.is_some() { 0 } else { 200 },
        failure: fail.map(|(a, b)| failure(a, b)),
        result_count: u32::from(listed),
        listed,
        track_id: if listed { 932747118 } else { 0 },
        track_name: if listed {
            "A VPN".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// An app_store measurement of app 932747118, cn against us, with the
/// given lookups (cn first).
fn store(id: &str, lookups: Vec<AppStoreLookup>) -> Measurement {
    m(
        id,
        Kind::AppStore(AppStoreInput {
            app_id: "932747118".into(),
            storefront: "cn".into(),
            control_storefront: "us".into(),
            ..Default::default()
        }),
        measurement::Result::AppStore(AppStoreResult { lookups }),
    )
}

/// cn listed or not, us listed or not, both answered.
fn store_both(id: &str, cn: bool, us: bool) -> Measurement {
    store(id, vec![lookup("cn", cn, None), lookup("us", us, None)])
}

/// The store unreachable: the cn lookup failed with `fail` at `at`, and
/// so did the us one.
fn store_unreachable(id: &str, fail: &str, at: &str) -> Measurement {
    let f = Some((fail, at));
    store(id, vec![lookup("cn", false, f), lookup("us", false, f)])
}

/// What a case expects: a status and, when blocked, the mechanism.
type Want = (Status, Option<M>);
const OK: Want = (Status::Ok, None);
const DOWN: Want = (Status::Down, None);
const UNSURE: Want = (Status::Inconclusive, None);

fn blocked(mech: M) -> Want {
    (Status::Blocked, Some(mech))
}

/// A task the agent refused to run (no consent).
fn refused(id: &str) -> Measurement {
    let why = Refusal {
        reason: "consent".into(),
    };
    m(
        id,
        Kind::Tcp(TcpInput::default()),
        measurement::Result::Refused(why),
    )
}

fn encrypted(id: &str, result: EncryptedResult) -> Measurement {
    let input = Kind::Encrypted(EncryptedInput::default());
    m(id, input, measurement::Result::Encrypted(result))
}

fn dns_injection(id: &str, replies: Vec<DnsReply>) -> Measurement {
    let result = DnsResult {
        replies,
        ..Default::default()
    };
    let input = Kind::DnsInjection(DnsInput::default());
    m(id, input, measurement::Result::DnsInjection(result))
}

/// A lookup that failed with `fail` while reading the reply.
fn dns_read_failed(id: &str, fail: &str) -> Measurement {
    let result = DnsResult {
        failure: Some(failure(fail, op::READ)),
        ..Default::default()
    };
    m(
        id,
        Kind::Dns(DnsInput::default()),
        measurement::Result::Dns(result),
    )
}

/// A TLS handshake to blocked.example that completed.
fn tls_done(id: &str, webpki: &str, chain: &str) -> Measurement {
    tls(id, hs("blocked.example", None, webpki, chain), None)
}

/// A TLS handshake to blocked.example that failed with `fail`.
fn tls_failed(fail: &str, webpki: &str, chain: &str, own: Option<TlsHandshake>) -> Measurement {
    let at = Some((fail, op::TLS_HANDSHAKE));
    tls("i", hs("blocked.example", at, webpki, chain), own)
}

/// OpenVPN over TCP whose connect timed out.
fn vpn_tcp_timeout(id: &str) -> Measurement {
    let input = OpenVpnInput {
        ip: "198.51.100.11".into(),
        port: 443,
        transport: "tcp".into(),
    };
    let result = OpenVpnResult {
        failure: Some(failure(f::GENERIC_TIMEOUT, op::CONNECT)),
        ..Default::default()
    };
    m(
        id,
        Kind::Openvpn(input),
        measurement::Result::Openvpn(result),
    )
}

/// The decision tree, a case a row: name, inside, controls, expected.
#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Measurement, Vec<Measurement>, Want)> {
    let ok_tcp = || tcp("c", None);
    let dns_ok = || dns("c", vec![reply(&["93.184.216.20"])], None);
    let site = || http("c", 200, "Site", 5000, "bb", None);
    let tls_ok = |chain| tls_done("c", "valid", chain);
    let web_ok = || web("c", &["93.184.216.20"], true, None);
    let reset = Some(f::CONNECTION_RESET);
    let timeout = Some(f::GENERIC_TIMEOUT);
    vec![
        ("tcp ok", tcp("i", None), vec![ok_tcp()], OK),
        ("tcp reset", tcp("i", reset), vec![ok_tcp()], blocked(M::TcpReset)),
        ("tcp timeout", tcp("i", timeout), vec![ok_tcp()], blocked(M::TcpTimeout)),
        ("tcp refused", tcp("i", Some(f::CONNECTION_REFUSED)), vec![ok_tcp()], blocked(M::TcpRefused)),
        ("down", tcp("i", timeout), vec![tcp("c", timeout)], DOWN),
        ("no control", tcp("i", reset), vec![], UNSURE),
        ("controls disagree", tcp("i", reset), vec![ok_tcp(), tcp("c2", timeout)], UNSURE),
        ("inside refused", refused("i"), vec![ok_tcp()], UNSURE),
        ("dns injection", dns("i", vec![reply(&["104.16.0.66"]), reply(&["93.184.216.20"])], None), vec![], blocked(M::DnsInjection)),
        ("dns hijack bogon", dns("i", vec![reply(&["10.10.10.10"])], None), vec![dns_ok()], blocked(M::DnsHijack)),
        ("dns hijack disjoint", dns("i", vec![reply(&["104.16.0.5"])], None), vec![dns_ok()], blocked(M::DnsHijack)),
        ("dns same /24 ok", dns("i", vec![reply(&["93.184.216.21"])], None), vec![dns_ok()], OK),
        ("dns nxdomain", dns("i", vec![], Some(f::DNS_NXDOMAIN)), vec![dns_ok()], blocked(M::DnsNxdomain)),
        ("dns timeout", dns("i", vec![], timeout), vec![dns_ok()], blocked(M::DnsTimeout)),
        ("tls reset by sni (own control sni)", tls_failed(f::CONNECTION_RESET, "", "a", Some(hs("clean.example", None, "valid", "a"))), vec![], blocked(M::TlsReset)),
        ("tls timeout vs control agent", tls_failed(f::GENERIC_TIMEOUT, "", "a", None), vec![tls_ok("a")], blocked(M::TlsTimeout)),
        ("tls mitm", tls_done("i", f::SSL_UNKNOWN_AUTHORITY, "evil"), vec![tls_ok("good")], blocked(M::TlsMitm)),
        ("http blockpage", http("i", 200, "Blocked", 300, "aa", None), vec![site()], blocked(M::HttpBlockpage)),
        ("http 403 block page with a title of its own", http("i", 403, "Access Denied", 300, "aa", None), vec![site()], blocked(M::HttpBlockpage)),
        ("http 403 with the site's own title is a difference, not a block page", http("i", 403, "Site", 300, "aa", None), vec![site()], blocked(M::HttpDiff)),
        ("http diff", http("i", 403, "", 300, "aa", None), vec![site()], blocked(M::HttpDiff)),
        ("http similar body ok", http("i", 200, "Site", 4900, "aa", None), vec![site()], OK),
        ("http reset", http("i", 0, "", 0, "", Some((f::CONNECTION_RESET, op::HTTP_ROUND_TRIP))), vec![site()], blocked(M::HttpReset)),
        ("quic timeout", quic("i", true), vec![quic("c", false)], blocked(M::QuicTimeout)),
        ("vpn blocked", vpn("i", false), vec![vpn("c", true)], blocked(M::VpnBlocked)),
        ("residual", encrypted("i", EncryptedResult { residual_blocking: true, ..Default::default() }), vec![], blocked(M::Residual)),
        ("dns_injection reply", dns_injection("i", vec![reply(&["203.0.113.1"])]), vec![], blocked(M::DnsInjection)),
        ("tls alert by sni is a weaker tls.reset", tls_failed(f::SSL_FAILED_HANDSHAKE, "", "a", None), vec![tls_ok("a")], blocked(M::TlsReset)),
        ("tls certificate failure is mitm", tls_failed(f::SSL_UNKNOWN_AUTHORITY, f::SSL_UNKNOWN_AUTHORITY, "evil", None), vec![tls_ok("good")], blocked(M::TlsMitm)),
        ("tls chain differs but valid (CDN) is ok", tls_done("i", "valid", "edge1"), vec![tls_ok("edge2")], OK),
        ("http 451", http("i", 451, "Blocked", 5000, "aa", None), vec![site()], blocked(M::HttpBlockpage)),
        ("http same title, small body ok", http("i", 200, "Site", 100, "aa", None), vec![site()], OK),
        ("dns servfail is a weaker nxdomain", dns("i", vec![], Some(f::DNS_SERVFAIL)), vec![dns_ok()], blocked(M::DnsNxdomain)),
        ("dns bogon with failing control still hijack", dns("i", vec![reply(&["127.0.0.1"])], None), vec![dns("c", vec![], timeout)], blocked(M::DnsHijack)),
        ("dns read timeout is dns.timeout, not tcp", dns_read_failed("i", f::GENERIC_TIMEOUT), vec![dns_ok()], blocked(M::DnsTimeout)),
        ("web disjoint answers but TLS-verified is ok", web("i", &["104.16.0.5"], true, None), vec![web_ok()], OK),
        ("web disjoint answers unverified is hijack", web("i", &["104.16.0.5"], false, None), vec![web_ok()], blocked(M::DnsHijack)),
        ("web tls reset", web("i", &["93.184.216.20"], false, Some((f::CONNECTION_RESET, op::TLS_HANDSHAKE))), vec![web_ok()], blocked(M::TlsReset)),
        ("web nxdomain", web("i", &[], false, Some((f::DNS_NXDOMAIN, op::RESOLVE))), vec![web_ok()], blocked(M::DnsNxdomain)),
        ("openvpn over tcp that cannot connect is tcp.timeout", vpn_tcp_timeout("i"), vec![vpn("c", true)], blocked(M::TcpTimeout)),
        ("wireguard no response", wg("i", false), vec![wg("c", true)], blocked(M::VpnBlocked)),
        ("encrypted trigger reset is tcp.reset", encrypted("i", EncryptedResult { trigger: Some(failure(f::CONNECTION_RESET, op::READ)), ..Default::default() }), vec![encrypted("c", EncryptedResult::default())], blocked(M::TcpReset)),
        ("refused control is not usable", tcp("i", reset), vec![refused("c")], UNSURE),
        ("dns_injection silent is ok", dns_injection("i", vec![]), vec![], OK),
        ("majority of controls decides", tcp("i", reset), vec![ok_tcp(), tcp("c2", None), tcp("c3", timeout)], blocked(M::TcpReset)),
        ("app listed in the tested storefront", store_both("i", true, true), vec![store_both("c", true, true)], OK),
        ("app listed in the tested storefront, no control agent", store_both("i", true, false), vec![], OK),
        ("app removed from the tested storefront only", store_both("i", false, true), vec![store_both("c", false, true)], blocked(M::StoreRemoved)),
        ("app removed, no control agent needed", store_both("i", false, true), vec![], blocked(M::StoreRemoved)),
        ("app in neither storefront is down", store_both("i", false, false), vec![store_both("c", false, false)], DOWN),
        ("app removed, the inside's us lookup failed, a control agent's lists it", store("i", vec![lookup("cn", false, None), lookup("us", false, Some((f::CONNECTION_RESET, op::HTTP_ROUND_TRIP)))]), vec![store_both("c", false, true)], blocked(M::StoreRemoved)),
        ("app not in cn, no control storefront answered", store("i", vec![lookup("cn", false, None), lookup("us", false, Some((f::GENERIC_TIMEOUT, op::CONNECT)))]), vec![], UNSURE),
        ("app not in cn, no control storefront set", store("i", vec![lookup("cn", false, None)]), vec![], UNSURE),
        ("app not in cn for the inside but in cn for a control agent", store_both("i", false, true), vec![store_both("c", true, true)], UNSURE),
        ("store unreachable inside, reachable for controls", store_unreachable("i", f::CONNECTION_RESET, op::TLS_HANDSHAKE), vec![store_both("c", false, true)], blocked(M::TlsReset)),
        ("store connect timeout inside only", store_unreachable("i", f::GENERIC_TIMEOUT, op::CONNECT), vec![store_both("c", true, true)], blocked(M::TcpTimeout)),
        ("store reset mid-lookup inside only", store_unreachable("i", f::CONNECTION_RESET, op::READ), vec![store_both("c", true, true)], blocked(M::HttpReset)),
        ("store error status inside only", store_unreachable("i", "unknown_failure: app_store: HTTP status 403", op::HTTP_ROUND_TRIP), vec![store_both("c", true, true)], blocked(M::HttpDiff)),
        ("store unreachable for everyone is down", store_unreachable("i", f::GENERIC_TIMEOUT, op::CONNECT), vec![store_unreachable("c", f::GENERIC_TIMEOUT, op::CONNECT)], DOWN),
        ("store unreachable without a control is inconclusive", store_unreachable("i", f::GENERIC_TIMEOUT, op::CONNECT), vec![], UNSURE),
        ("an app_store result without lookups is inconclusive", store("i", vec![]), vec![], UNSURE),
    ]
}

#[test]
fn the_table() {
    for (name, inside, controls, want) in cases() {
        let controls: Vec<&Measurement> = controls.iter().collect();
        let got = verdict(&inside, &controls);
        assert_eq!((got.status, got.mechanism), want, "{name}: {}", got.reason);
        assert_eq!(got.evidence[0], "i", "{name}");
        assert!((0.0..=1.0).contains(&got.confidence), "{name}");
        let blocked = got.status == Status::Blocked;
        assert_eq!(got.mechanism.is_some(), blocked, "{name}");
        assert!(!got.reason.is_empty(), "{name}");
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

#[test]
fn udp_drop_when_every_udp_protocol_to_an_address_fails() {
    let on = |mut x: Measurement, agent: &str| {
        x.agent_id = agent.into();
        x
    };
    let quic_same_ip = |id: &str, fail: bool| {
        let mut q = quic(id, fail);
        if let Some(Kind::Quic(i)) = q.input.as_mut().and_then(|i| i.kind.as_mut()) {
            i.ip = "198.51.100.11".into();
        }
        q
    };
    let inside = vec![
        on(vpn("i1", false), "in"),
        on(quic_same_ip("i2", true), "in"),
        on(wg("i3", false), "other"),
    ];
    let control = vec![vpn("c1", true), quic_same_ip("c2", false), wg("c3", true)];
    let out = analyze_run(&inside, &control);
    let mech = |id: &str| {
        out.iter()
            .find(|(m, _, _)| m == id)
            .and_then(|(_, _, v)| v.mechanism)
    };
    assert_eq!(mech("i1"), Some(M::UdpDrop));
    assert_eq!(mech("i2"), Some(M::UdpDrop));
    // Another agent's lone WireGuard failure stays protocol-specific.
    assert_eq!(mech("i3"), Some(M::VpnBlocked));
}

#[test]
fn target_keys_keep_plain_inputs_stable_and_separate_options() {
    use super::super::target_key;
    assert_eq!(target_key(&tcp("x", None)), "tcp 198.51.100.7:443");
    let mut a = dns("a", vec![], None);
    assert_eq!(target_key(&a), "dns x.example @198.51.100.53:53");
    if let Some(Kind::Dns(d)) = a.input.as_mut().and_then(|i| i.kind.as_mut()) {
        d.qtype = "AAAA".into();
    }
    assert_eq!(target_key(&a), "dns x.example @198.51.100.53:53 qtype=AAAA");
    // The storefront is part of an app's target (and so of its series).
    let mut s = store_both("s", true, true);
    assert_eq!(target_key(&s), "app_store 932747118@cn control=us");
    if let Some(Kind::AppStore(i)) = s.input.as_mut().and_then(|i| i.kind.as_mut()) {
        i.storefront = "ru".into();
        i.app_id.clear();
        i.bundle_id = "com.example.vpn".into();
        i.control_storefront.clear();
    }
    assert_eq!(target_key(&s), "app_store com.example.vpn@ru");
}

#[test]
fn verdicts_serialize_with_design_names() {
    let v = verdict(&tcp("i", Some(f::CONNECTION_RESET)), &[&tcp("c", None)]);
    let j = serde_json::to_value(&v).unwrap();
    assert_eq!(j["status"], "blocked");
    assert_eq!(j["mechanism"], "tcp.reset");
    assert_eq!(
        serde_json::to_value(M::HttpBlockpage).unwrap(),
        "http.blockpage"
    );
    assert_eq!(M::StoreRemoved.to_string(), "store.removed");
    assert_eq!(M::UdpDrop.to_string(), "udp.drop");
    assert_eq!(Status::Inconclusive.to_string(), "inconclusive");
}

fn arb_failure() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        3 => proptest::sample::select(f::VOCABULARY.to_vec()).prop_map(|s| Some(s.to_string())),
        1 => ".{0,12}".prop_map(|s| Some(format!("unknown_failure: {s}"))),
        1 => Just(Some(String::new())),
    ]
}

fn arb_fail() -> impl Strategy<Value = Option<Failure>> {
    let ops = vec![
        op::RESOLVE,
        op::CONNECT,
        op::TLS_HANDSHAKE,
        op::QUIC_HANDSHAKE,
        op::HTTP_ROUND_TRIP,
        op::READ,
        op::WRITE,
        "",
    ];
    (arb_failure(), proptest::sample::select(ops)).prop_map(|(f, o)| f.map(|f| failure(&f, o)))
}

fn arb_ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        Just("10.0.0.1".to_string()),
        Just("93.184.216.20".to_string()),
        Just("2001:db8::1".to_string()),
        ".{0,8}",
    ]
}

fn arb_dns() -> impl Strategy<Value = DnsResult> {
    let reply = (
        proptest::collection::vec(arb_ip(), 0..3),
        any::<bool>(),
        proptest::sample::select(vec!["A", "AAAA", "CNAME"]),
    )
        .prop_map(|(ips, malformed, rtype)| DnsReply {
            malformed,
            answers: ips
                .into_iter()
                .map(|data| DnsAnswer {
                    rtype: rtype.into(),
                    data,
                    ttl: 1,
                })
                .collect(),
            ..Default::default()
        });
    (proptest::collection::vec(reply, 0..4), arb_fail()).prop_map(|(replies, failure)| DnsResult {
        replies,
        failure,
        ..Default::default()
    })
}

fn arb_hs() -> impl Strategy<Value = Option<TlsHandshake>> {
    proptest::option::of(
        (
            arb_fail(),
            proptest::sample::select(vec!["valid", "", f::SSL_UNKNOWN_AUTHORITY]),
            proptest::sample::select(vec!["a", "b"]),
        )
            .prop_map(|(failure, webpki, chain)| TlsHandshake {
                failure,
                webpki: webpki.into(),
                chain_sha256: vec![chain.into()],
                ..Default::default()
            }),
    )
}

fn arb_http() -> impl Strategy<Value = HttpResult> {
    let resp = (
        proptest::sample::select(vec![200u32, 302, 403, 451, 0]),
        0u64..10_000,
        proptest::sample::select(vec!["", "x", "y"]),
        proptest::sample::select(vec!["", "Site", "Blocked"]),
    )
        .prop_map(|(status, body_length, sha, title)| HttpResponse {
            status,
            body_length,
            body_sha256: sha.into(),
            title: title.into(),
            ..Default::default()
        });
    (proptest::collection::vec(resp, 0..3), arb_fail(), arb_hs()).prop_map(
        |(chain, failure, tls)| HttpResult {
            chain,
            failure,
            tls,
        },
    )
}

/// Any result of any kind (its input follows from it, see `meas`).
fn arb_result() -> impl Strategy<Value = Option<measurement::Result>> {
    use measurement::Result as R;
    prop_oneof![
        arb_dns().prop_map(|d| Some(R::Dns(d))),
        arb_dns().prop_map(|d| Some(R::DnsInjection(d))),
        arb_outcome(R::Tcp(TcpResult::default())),
        (arb_hs(), arb_hs()).prop_map(|(handshake, control)| Some(R::Tls(TlsResult {
            handshake,
            control,
            ..Default::default()
        }))),
        arb_http().prop_map(|h| Some(R::Http(h))),
        (
            proptest::option::of(arb_dns()),
            proptest::collection::vec(arb_fail(), 0..3),
            arb_hs(),
            proptest::option::of(arb_http()),
            arb_fail()
        )
            .prop_map(|(dns, tcps, tls, http, failure)| {
                let tcp = tcps
                    .into_iter()
                    .map(|failure| TcpResult {
                        failure,
                        ..Default::default()
                    })
                    .collect();
                Some(R::Web(WebResult {
                    dns,
                    tcp,
                    tls,
                    http,
                    failure,
                }))
            }),
        arb_outcome(R::Quic(QuicResult::default())),
        arb_outcome(R::Openvpn(OpenVpnResult::default())),
        (arb_fail(), arb_hs()).prop_map(|(failure, tls)| Some(R::Tor(TorResult {
            failure,
            tls,
            ..Default::default()
        }))),
        (arb_fail(), any::<bool>()).prop_map(|(trigger, residual_blocking)| {
            Some(R::Encrypted(EncryptedResult {
                trigger,
                residual_blocking,
                ..Default::default()
            }))
        }),
        arb_outcome(R::Wireguard(WireGuardResult::default())),
        (
            arb_fail(),
            any::<bool>(),
            arb_fail(),
            any::<bool>(),
            0usize..3
        )
            .prop_map(|(f1, l1, f2, l2, n)| {
                let mut lookups = vec![lookup("cn", l1, None), lookup("us", l2, None)];
                lookups[0].failure = f1;
                lookups[1].failure = f2;
                lookups.truncate(n);
                Some(R::AppStore(AppStoreResult { lookups }))
            }),
        ".{0,10}".prop_map(|reason| Some(R::Refused(Refusal { reason }))),
        Just(None),
    ]
}

/// A measurement of `result` with the input of its kind.
fn meas(id: &str, result: Option<measurement::Result>) -> Measurement {
    Measurement {
        id: id.into(),
        input: Some(ProbeInput {
            kind: Some(like(result.as_ref()).0),
            ..Default::default()
        }),
        result,
        ..Default::default()
    }
}

/// A result of `empty`'s kind with any failure, answered or not.
fn arb_outcome(empty: measurement::Result) -> impl Strategy<Value = Option<measurement::Result>> {
    (arb_fail(), any::<bool>()).prop_map(move |(fail, answered)| {
        let mut r = empty.clone();
        set_outcome(&mut r, fail, answered);
        Some(r)
    })
}

/// Sets how `r` ended: its failure (a TLS result's: its handshake's) and,
/// for the probes that wait for an answer, whether one came.
fn set_outcome(r: &mut measurement::Result, fail: Option<Failure>, answered: bool) {
    use measurement::Result as R;
    match r {
        R::Dns(d) | R::DnsInjection(d) => d.failure = fail,
        R::Tcp(t) => t.failure = fail,
        R::Tls(t) => {
            t.handshake = Some(TlsHandshake {
                failure: fail,
                ..Default::default()
            })
        }
        R::Http(h) => h.failure = fail,
        R::Web(w) => w.failure = fail,
        R::Quic(q) => q.failure = fail,
        R::Openvpn(o) => {
            o.failure = fail;
            o.server_reset_received = answered;
        }
        R::Tor(t) => t.failure = fail,
        R::Encrypted(e) => e.trigger = fail,
        R::Wireguard(w) => {
            w.failure = fail;
            w.response_received = answered;
        }
        // The tested storefront's lookup carries the outcome.
        R::AppStore(a) => {
            let mut tested = lookup("cn", answered, None);
            tested.failure = fail;
            a.lookups = vec![tested];
        }
        _ => {}
    }
}

/// The empty input and result of the kind of `r` (TCP for none or a
/// refusal).
fn like(r: Option<&measurement::Result>) -> (Kind, measurement::Result) {
    use measurement::Result as R;
    fn d<T: Default>() -> T {
        T::default()
    }
    match r {
        Some(R::Dns(_)) => (Kind::Dns(d()), R::Dns(d())),
        Some(R::DnsInjection(_)) => (Kind::DnsInjection(d()), R::DnsInjection(d())),
        Some(R::Tls(_)) => (Kind::Tls(d()), R::Tls(d())),
        Some(R::Http(_)) => (Kind::Http(d()), R::Http(d())),
        Some(R::Web(_)) => (Kind::Web(d()), R::Web(d())),
        Some(R::Quic(_)) => (Kind::Quic(d()), R::Quic(d())),
        Some(R::Openvpn(_)) => (Kind::Openvpn(d()), R::Openvpn(d())),
        Some(R::Tor(_)) => (Kind::Tor(d()), R::Tor(d())),
        Some(R::Encrypted(_)) => (Kind::Encrypted(d()), R::Encrypted(d())),
        Some(R::Wireguard(_)) => (Kind::Wireguard(d()), R::Wireguard(d())),
        Some(R::AppStore(_)) => (Kind::AppStore(d()), R::AppStore(d())),
        _ => (Kind::Tcp(d()), R::Tcp(d())),
    }
}

/// A control of the same kind as `x` that failed (timed out) outright.
fn failing_like(x: &Measurement) -> Measurement {
    // At the step the inside failed at ("the same way"), else at connect.
    let at = super::failure_of(x)
        .map(|(_, o)| o)
        .unwrap_or_else(|| op::CONNECT.to_string());
    let mut result = like(x.result.as_ref()).1;
    set_outcome(&mut result, Some(failure(f::GENERIC_TIMEOUT, &at)), false);
    Measurement {
        id: "failing".into(),
        result: Some(result),
        input: x.input.clone(),
        ..Default::default()
    }
}

/// A control of the same kind as `x` that worked.
fn working_like(x: &Measurement) -> Measurement {
    let mut c = failing_like(x);
    if let Some(r) = c.result.as_mut() {
        set_outcome(r, None, true);
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any inside result against any controls: no panic, a well-formed
    /// verdict, and analyze_run agrees.
    #[test]
    fn verdict_never_panics_on_arbitrary_results(
        inside in arb_result(), controls in proptest::collection::vec(arb_result(), 0..4)
    ) {
        let inside = meas("i", inside);
        let controls: Vec<Measurement> = controls
            .into_iter()
            .enumerate()
            .map(|(n, r)| meas(&format!("c{n}"), r))
            .collect();
        let refs: Vec<&Measurement> = controls.iter().collect();
        let got = verdict(&inside, &refs);
        prop_assert!((0.0..=1.0).contains(&got.confidence));
        prop_assert_eq!(got.evidence.first().map(String::as_str), Some("i"));
        prop_assert_eq!(got.mechanism.is_some(), got.status == Status::Blocked, "{:?}", got);
        let j = serde_json::to_string(&got).unwrap();
        // The agreement counts are working state, not serialised.
        let mut want = got.clone();
        want.inside_agree = 0;
        want.controls_agree = 0;
        prop_assert_eq!(serde_json::from_str::<super::super::Verdict>(&j).unwrap(), want);
        let _ = analyze_run(std::slice::from_ref(&inside), &controls);
    }

    /// Blocked because a step failed inside while controls worked: the same
    /// inside result against controls failing at the same step is `down`.
    /// Rules that need no control (injection, in-task SNI comparison,
    /// residual), the first-interference DNS rule and throttling are exempt.
    #[test]
    fn failing_controls_turn_blocked_into_down(
        inside in arb_result(), n in 1usize..4
    ) {
        let inside = meas("i", inside);
        let got_blocked = {
            // Controls that succeed: the inside's own kind with no failure.
            verdict(&inside, &[&working_like(&inside)])
        };
        let failed_step = super::failure_of(&inside).is_some();
        let control_free = matches!(
            got_blocked.mechanism,
            Some(M::DnsInjection | M::Residual | M::DnsHijack | M::HttpThrottle)
        )
            || got_blocked.reason.contains("to the same address succeeded");
        if got_blocked.status == Status::Blocked && failed_step && !control_free {
            let failing: Vec<Measurement> = (0..n).map(|_| failing_like(&inside)).collect();
            let refs: Vec<&Measurement> = failing.iter().collect();
            let again = verdict(&inside, &refs);
            prop_assert_eq!(again.status, Status::Down, "{:?} -> {:?}", got_blocked, again);
        }
    }
}

// ---- the web matrix (issue 18): hand-built inside/control pairs for each
// rule of the decision tree, OONI QA scenario names in comments.

/// A web measurement built step by step.
#[derive(Clone)]
struct Web {
    url: &'static str,
    ips: Vec<&'static str>,
    dns_fail: Option<&'static str>,
    connect_fail: Option<&'static str>,
    tls: Option<TlsHandshake>,
    pages: Vec<HttpResponse>,
    http_fail: Option<(&'static str, &'static str)>,
}

impl Web {
    fn http(url: &'static str, ips: &[&'static str]) -> Web {
        Web {
            url,
            ips: ips.to_vec(),
            dns_fail: None,
            connect_fail: None,
            tls: None,
            pages: vec![page(200, "Example Domain", 1256, "aa")],
            http_fail: None,
        }
    }

    fn https(url: &'static str, ips: &[&'static str]) -> Web {
        Web {
            tls: Some(valid_tls("CN=Real CA", "key-real")),
            ..Web::http(url, ips)
        }
    }

    /// The same site answering from `ips`.
    fn answers(&self, ips: &[&'static str]) -> Web {
        Web {
            ips: ips.to_vec(),
            ..self.clone()
        }
    }

    /// The lookup fails with `fail` (no answers).
    fn dns_fails(&self, fail: &'static str) -> Web {
        Web {
            ips: vec![],
            dns_fail: Some(fail),
            ..self.clone()
        }
    }

    fn connect_fails(&self, fail: &'static str) -> Web {
        Web {
            connect_fail: Some(fail),
            ..self.clone()
        }
    }

    fn with_tls(&self, tls: TlsHandshake) -> Web {
        Web {
            tls: Some(tls),
            ..self.clone()
        }
    }

    /// The page fetched (a single response).
    fn with_page(&self, page: HttpResponse) -> Web {
        Web {
            pages: vec![page],
            ..self.clone()
        }
    }

    /// HTTP fails with `fail` at `at` after the pages fetched so far.
    fn http_fails(&self, fail: &'static str, at: &'static str) -> Web {
        Web {
            http_fail: Some((fail, at)),
            ..self.clone()
        }
    }

    /// HTTP fails with `fail` at `at` before any page.
    fn no_page(&self, fail: &'static str, at: &'static str) -> Web {
        Web {
            pages: vec![],
            ..self.http_fails(fail, at)
        }
    }

    fn build(&self, id: &str) -> Measurement {
        let fail = if let Some(d) = self.dns_fail {
            Some(failure(d, op::RESOLVE))
        } else if let Some(c) = self.connect_fail {
            Some(failure(c, op::CONNECT))
        } else if let Some(t) = self.tls.as_ref().and_then(|t| t.failure.clone()) {
            Some(t)
        } else {
            self.http_fail.map(|(a, b)| failure(a, b))
        };
        let connected = self.dns_fail.is_none() && self.connect_fail.is_none();
        let http = connected && self.tls.as_ref().is_none_or(|t| t.failure.is_none());
        m(
            id,
            Kind::Web(WebInput {
                url: self.url.into(),
                ..Default::default()
            }),
            measurement::Result::Web(WebResult {
                dns: Some(DnsResult {
                    replies: if self.ips.is_empty() {
                        vec![]
                    } else {
                        vec![reply(&self.ips)]
                    },
                    failure: self.dns_fail.map(|d| failure(d, op::RESOLVE)),
                    ..Default::default()
                }),
                tcp: if self.dns_fail.is_some() {
                    vec![]
                } else {
                    vec![TcpResult {
                        ip: self.ips.first().copied().unwrap_or_default().into(),
                        port: 443,
                        failure: self.connect_fail.map(|c| failure(c, op::CONNECT)),
                        ..Default::default()
                    }]
                },
                tls: if connected { self.tls.clone() } else { None },
                http: http.then(|| HttpResult {
                    // Pages fetched over TLS have https URLs.
                    chain: self
                        .pages
                        .iter()
                        .map(|p| HttpResponse {
                            url: if self.tls.is_some() {
                                p.url.replace("http://", "https://")
                            } else {
                                p.url.clone()
                            },
                            ..p.clone()
                        })
                        .collect(),
                    failure: self.http_fail.map(|(a, b)| failure(a, b)),
                    tls: self.tls.clone(),
                }),
                failure: fail,
            }),
        )
    }
}

fn page(status: u32, title: &str, len: u64, sha: &str) -> HttpResponse {
    HttpResponse {
        url: "http://site.example/".into(),
        status,
        title: title.into(),
        body_length: len,
        body_sha256: sha.into(),
        body_us: 2_000,
        ..Default::default()
    }
}

fn valid_tls(issuer: &str, key: &str) -> TlsHandshake {
    TlsHandshake {
        sni: "site.example".into(),
        webpki: "valid".into(),
        issuer: issuer.into(),
        leaf_spki_sha256: key.into(),
        chain_sha256: vec![format!("chain-{key}")],
        ..Default::default()
    }
}

fn failed_tls(fail: &str, issuer: &str, key: &str) -> TlsHandshake {
    TlsHandshake {
        failure: Some(failure(fail, op::TLS_HANDSHAKE)),
        webpki: fail.into(),
        ..valid_tls(issuer, key)
    }
}

const REAL: &str = "93.184.216.34";
const SITE: &str = "http://site.example/";
const SITE_TLS: &str = "https://site.example/";

fn judge(inside: &Web, controls: &[Web]) -> Verdict {
    let i = inside.build("i");
    let cs: Vec<Measurement> = controls
        .iter()
        .enumerate()
        .map(|(n, c)| c.build(&format!("c{n}")))
        .collect();
    let refs: Vec<&Measurement> = cs.iter().collect();
    verdict(&i, &refs)
}

/// The web decision tree, OONI QA scenario names in the comments: name,
/// inside, controls, expected.
#[rustfmt::skip]
fn web_rows() -> Vec<(&'static str, Web, Vec<Web>, Want)> {
    let ok = Web::http(SITE, &[REAL]);
    let ok_tls = Web::https(SITE_TLS, &[REAL]);
    // The same result inside and at the control.
    let down = |name, w: Web| (name, w.clone(), vec![w], DOWN);
    let loopback = "unknown_failure: forbidden_target: 127.0.0.1 is loopback";
    let expired = || failed_tls(f::SSL_INVALID_CERTIFICATE, "CN=Real CA", "k");
    let truncated = |sha| HttpResponse { body_truncated: true, ..page(200, "", 1 << 20, sha) };
    let iframe = HttpResponse {
        body_head: "<html><iframe src=\"http://10.10.34.34?type=Invalid\">".into(),
        ..page(200, "", 1250, "ee")
    };
    let filter = HttpHeader { name: "Server".into(), value: "Protected by WireFilter 8000".into() };
    let filtered = HttpResponse { headers: vec![filter], ..page(200, "Example Domain", 1256, "ff") };
    vec![
        // successWithHTTP / successWithHTTPS
        ("success http", ok.clone(), vec![ok.clone()], OK),
        ("success https", ok_tls.clone(), vec![ok_tls.clone()], OK),
        // 1. TLS interception: the inside does not trust the censor's chain ...
        ("mitm, untrusted censor CA", ok_tls.with_tls(failed_tls(f::SSL_UNKNOWN_AUTHORITY, "CN=Censor CA", "key-censor")), vec![ok_tls.clone()], blocked(M::TlsMitm)),
        // ... or trusts it (a national root): another issuer and key.
        ("mitm, trusted interception CA", ok_tls.with_tls(valid_tls("CN=National Root", "key-censor")), vec![ok_tls.clone()], blocked(M::TlsMitm)),
        ("same issuer, rotated key is not interception", ok_tls.with_tls(valid_tls("CN=Real CA", "key-rotated")), vec![ok_tls.clone()], OK),
        // 2. Broken for everyone is down (badSSL*, redirects, silence).
        down("expired certificate for everyone", ok_tls.with_tls(expired())),
        down("untrusted root for everyone", ok_tls.with_tls(failed_tls(f::SSL_UNKNOWN_AUTHORITY, "CN=Self", "k"))),
        down("too many redirects for everyone", ok.http_fails(f::TOO_MANY_REDIRECTS, op::HTTP_ROUND_TRIP)),
        down("a server that never answers", ok.no_page(f::GENERIC_TIMEOUT, op::HTTP_ROUND_TRIP)),
        // websiteDownNXDOMAIN, websiteDownTCPConnect
        down("nxdomain for everyone", ok.dns_fails(f::DNS_NXDOMAIN)),
        ("refused for everyone, different strings at the same step", ok.connect_fails(f::CONNECTION_REFUSED), vec![ok.connect_fails(f::GENERIC_TIMEOUT)], DOWN),
        // 3. The first interference decides (dnsBlockingBOGON,
        // dnsHijackingToLocalhost*).
        ("bogon answer, then the connect fails", ok.answers(&["10.10.10.10"]).connect_fails(f::NETWORK_UNREACHABLE), vec![ok.clone()], blocked(M::DnsHijack)),
        ("loopback answer only inside", ok.answers(&["127.0.0.1"]).connect_fails(loopback), vec![ok.clone()], blocked(M::DnsHijack)),
        down("loopback for everyone is down (localhostWithHTTP)", ok.answers(&["127.0.0.1"]).connect_fails(loopback)),
        ("known block-page address (GFW poison reply)", ok.answers(&["8.7.198.45"]).connect_fails(f::GENERIC_TIMEOUT), vec![ok.clone()], blocked(M::DnsHijack)),
        ("inconsistent answer, then a timeout (tcpBlocking...WithInconsistentDNS)", ok.answers(&["104.16.0.80"]).connect_fails(f::GENERIC_TIMEOUT), vec![ok.clone()], blocked(M::DnsHijack)),
        ("inconsistent answer, same page: a faithful proxy (dnsHijackingToProxy)", ok.answers(&["104.16.0.80"]), vec![ok.clone()], OK),
        ("inconsistent answer to a block page", ok.answers(&["104.16.0.80"]).with_page(page(200, "Access Denied by order", 900, "bb")), vec![ok.clone()], blocked(M::DnsHijack)),
        // 4. Split failures.
        ("control DNS times out, inside resolves then fails: not down", ok.connect_fails(f::GENERIC_TIMEOUT), vec![ok.dns_fails(f::GENERIC_TIMEOUT)], UNSURE),
        ("control DNS times out, inside reaches a plain-HTTP page nobody vouches for", ok.clone(), vec![ok.dns_fails(f::GENERIC_TIMEOUT)], UNSURE),
        ("control DNS times out, inside reaches a verified HTTPS page", ok_tls.clone(), vec![ok_tls.dns_fails(f::GENERIC_TIMEOUT)], OK),
        ("ghost: controls told NXDOMAIN, inside resolves a page (ghostDNSBlockingWithHTTP)", ok.with_page(page(200, "Blocked", 300, "cc")), vec![ok.dns_fails(f::DNS_NXDOMAIN)], blocked(M::DnsHijack)),
        ("ghost, then refused (ghostDNSBlockingWithHTTPS)", ok_tls.connect_fails(f::CONNECTION_REFUSED), vec![ok_tls.dns_fails(f::DNS_NXDOMAIN)], blocked(M::DnsHijack)),
        ("inside TLS fails, control never connected: no evidence", ok_tls.with_tls(failed_tls(f::CONNECTION_RESET, "", "")), vec![ok_tls.connect_fails(f::GENERIC_TIMEOUT)], UNSURE),
        ("inside connect times out, control connects then its TLS is expired", ok_tls.connect_fails(f::GENERIC_TIMEOUT), vec![ok_tls.with_tls(expired())], blocked(M::TcpTimeout)),
        // 5. Block pages by content.
        ("same size, another title", ok.with_page(page(200, "Access Denied - censor", 1200, "dd")), vec![ok.clone()], blocked(M::HttpBlockpage)),
        ("a known fingerprint in the body, no title", ok.with_page(iframe), vec![ok.clone()], blocked(M::HttpBlockpage)),
        ("a known fingerprint in a header", ok.with_page(filtered), vec![ok.clone()], blocked(M::HttpBlockpage)),
        ("a dynamic page: same title words, other length", ok.with_page(page(200, "example domain", 1500, "ab")), vec![ok.clone()], OK),
        ("verified HTTPS with another title is the site's own page (cloudflareCAPTCHAWithHTTPS)", ok_tls.with_page(page(403, "Just a moment", 9000, "gg")), vec![ok_tls.clone()], OK),
        ("large file, both truncated (largeFileWithHTTP)", ok.with_page(truncated("h1")), vec![ok.with_page(truncated("h2"))], OK),
        ("HTTP reset inside only", ok.no_page(f::CONNECTION_RESET, op::HTTP_ROUND_TRIP), vec![ok.clone()], blocked(M::HttpReset)),
        ("a redirect loop only inside", ok.http_fails(f::TOO_MANY_REDIRECTS, op::HTTP_ROUND_TRIP), vec![ok.clone()], blocked(M::HttpDiff)),
    ]
}

#[test]
fn web_matrix() {
    for (name, inside, controls, want) in web_rows() {
        let got = judge(&inside, &controls);
        assert_eq!((got.status, got.mechanism), want, "{name}: {}", got.reason);
        assert!((0.0..=1.0).contains(&got.confidence), "{name}");
        assert_eq!(got.evidence[0], "i", "{name}");
    }
}

/// A body of `len` bytes read in `us`.
fn body(len: u64, us: i64) -> HttpResponse {
    HttpResponse {
        body_us: us,
        ..page(200, "Big", len, &format!("sha-{len}"))
    }
}

#[test]
fn throttling_is_a_rate_far_below_the_controls() {
    let fast = Web::http(SITE, &[REAL]).with_page(body(512 * 1024, 20_000));
    // The verdict on the site read at `len` bytes in `us` against `control`.
    let rate = |len, us, control: &Web| {
        judge(
            &fast.with_page(body(len, us)),
            std::slice::from_ref(control),
        )
    };
    let throttled = (Status::Blocked, Some(M::HttpThrottle));
    // 512 KiB in 16 s (32 KiB/s) vs in 20 ms: throttled.
    let got = rate(512 * 1024, 16_000_000, &fast);
    assert_eq!((got.status, got.mechanism), throttled, "{}", got.reason);
    assert!(got.reason.contains("B/s"), "{}", got.reason);
    // Stalled: part of the body, then the read timed out.
    let stalled = fast
        .with_page(body(100 * 1024, 30_000_000))
        .http_fails(f::GENERIC_TIMEOUT, op::READ);
    let got = judge(&stalled, std::slice::from_ref(&fast));
    assert_eq!((got.status, got.mechanism), throttled, "{}", got.reason);
    // Half the control's rate is a slower line, not a throttle.
    assert_eq!(rate(512 * 1024, 40_000, &fast).status, Status::Ok);
    // A short transfer measures round trips, not bandwidth.
    assert_eq!(rate(512 * 1024, 900_000, &fast).status, Status::Ok);
    // A small control body measures latency: no throttle verdict.
    let small = fast.with_page(body(2_000, 1_000));
    let got = rate(2_000, 2_000_000, &small);
    assert_ne!(got.mechanism, Some(M::HttpThrottle), "{}", got.reason);
}

#[test]
fn dns_over_tcp_cut_by_a_reset_has_its_own_mechanism() {
    let over_tcp = |id: &str, fail: Option<&str>| {
        let mut x = dns(
            id,
            if fail.is_some() {
                vec![]
            } else {
                vec![reply(&[REAL])]
            },
            None,
        );
        if let Some(measurement::Result::Dns(d)) = x.result.as_mut() {
            d.transport = "tcp".into();
            d.failure = fail.map(|fl| failure(fl, op::READ));
        }
        x
    };
    for fl in [f::CONNECTION_RESET, f::EOF] {
        let got = verdict(&over_tcp("i", Some(fl)), &[&over_tcp("c", None)]);
        assert_eq!(
            (got.status, got.mechanism),
            (Status::Blocked, Some(M::DnsReset)),
            "{fl}"
        );
    }
    // A timeout over TCP stays dns.timeout; a UDP reply never "resets".
    let got = verdict(
        &over_tcp("i", Some(f::GENERIC_TIMEOUT)),
        &[&over_tcp("c", None)],
    );
    assert_eq!(got.mechanism, Some(M::DnsTimeout));
}

#[test]
fn confidence_grows_with_agreeing_measurements_and_says_how_many() {
    let inside = tcp("i", Some(f::CONNECTION_RESET));
    let one = analyze_run(std::slice::from_ref(&inside), &[tcp("c1", None)]);
    let two = analyze_run(
        std::slice::from_ref(&inside),
        &[tcp("c1", None), tcp("c2", None)],
    );
    let (a, b) = (&one[0].2, &two[0].2);
    assert_eq!(a.status, Status::Blocked);
    assert!(
        a.reason
            .contains("[1 inside and 1 control measurement agree]"),
        "{}",
        a.reason
    );
    assert!(
        b.reason
            .contains("[1 inside and 2 control measurements agree]"),
        "{}",
        b.reason
    );
    assert!(
        b.confidence > a.confidence,
        "{} vs {}",
        b.confidence,
        a.confidence
    );
    // A second inside agent seeing the same raises both.
    let mut i2 = tcp("i2", Some(f::CONNECTION_RESET));
    i2.agent_id = "agent-2".into();
    let both = analyze_run(&[inside.clone(), i2], &[tcp("c1", None)]);
    assert!(both.iter().all(|(_, _, v)| v.confidence > a.confidence));
    assert!(both[0]
        .2
        .reason
        .contains("[2 inside and 1 control measurement agree]"));
}

#[test]
fn a_campaigns_own_fingerprint_finds_its_block_page() {
    use super::super::fingerprints::{parse_csv, Fingerprints, HEADER};
    let ok = Web::http(SITE, &[REAL]);
    // The same length and status, no title: the built-in rules see nothing.
    let block = ok.with_page(HttpResponse {
        body_head: "<p>Blocked by order of the Lab Ministry</p>".into(),
        ..page(200, "", 1250, "zz")
    });
    let (i, c) = (block.build("i"), ok.build("c"));
    let plain = analyze_run(std::slice::from_ref(&i), std::slice::from_ref(&c));
    assert_eq!(plain[0].2.status, Status::Ok, "{}", plain[0].2.reason);
    let own = parse_csv(&format!(
        "{HEADER}\nlab.ministry_0,nat,,body,contains,Lab Ministry,5,ZZ,lab,,\n"
    ))
    .expect("csv");
    let fps = Fingerprints::with_extra(&own);
    let got = super::super::analyze_run_with(&[i], &[c], &fps);
    assert_eq!(
        (got[0].2.status, got[0].2.mechanism),
        (Status::Blocked, Some(M::HttpBlockpage))
    );
    assert!(
        got[0].2.reason.contains("lab.ministry_0"),
        "{}",
        got[0].2.reason
    );
}
