//! `probes::run` checks and normalises its input with
//! `vantage_proto::validate` (the coordinator's own check) before probing:
//! a Unicode host is probed as IDNA punycode, on the wire, and what the
//! coordinator would refuse is refused here too. Loopback servers only
//! (the lab policy allows them), so no root and no network are needed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{rdata::A, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use vantage_agent::probes::{self, ProbeContext, TargetPolicy};
use vantage_proto::v1::{measurement, probe_input::Kind, DnsInput, ProbeInput, WebInput};

fn lab_ctx() -> ProbeContext {
    ProbeContext::with_budget(
        TargetPolicy {
            allow_private_targets: true,
        },
        Duration::from_secs(10),
    )
}

/// A DNS server on loopback answering every query with 127.0.0.1; returns
/// its address and the names it was asked for.
async fn dns_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = q.queries.first() else {
                continue;
            };
            // The name as sent, label bytes as they were on the wire
            // (hickory's Display would show punycode as Unicode).
            let wire = &buf[12..n];
            let sent = if wire.windows(13).any(|w| w == b"xn--bcher-kva") {
                query.name().to_ascii()
            } else {
                format!("not punycode on the wire: {}", query.name())
            };
            log.lock().unwrap().push(sent);
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.add_queries(q.queries.clone());
            r.add_answer(Record::from_rdata(
                query.name().clone(),
                60,
                RData::A(A::new(127, 0, 0, 1)),
            ));
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    (addr, asked)
}

/// An HTTP server on loopback; returns its port and the Host headers of
/// the requests it served.
async fn http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let log = hosts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                if let Some(h) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                {
                    log.lock().unwrap().push(h.trim().to_string());
                }
                let body = "<html><head><title>IDN page</title></head></html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, hosts)
}

#[tokio::test]
async fn a_unicode_url_is_probed_as_punycode() {
    let (resolver, asked) = dns_server().await;
    let (port, hosts) = http_server().await;
    let input = ProbeInput {
        kind: Some(Kind::Web(WebInput {
            url: format!("http://Bücher.example:{port}/"),
            resolver,
        })),
        name: "Books, in German".into(),
    };
    let out = probes::run(&input, &lab_ctx()).await;
    let measurement::Result::Web(w) = out.result else {
        panic!("expected a web result, got {:?}", out.result);
    };
    assert!(w.failure.is_none(), "{w:?}");
    assert_eq!(
        asked.lock().unwrap().first().map(String::as_str),
        Some("xn--bcher-kva.example."),
        "the DNS query asks for the punycode name"
    );
    assert_eq!(
        hosts.lock().unwrap().as_slice(),
        [format!("xn--bcher-kva.example:{port}")],
        "the Host header carries the punycode name"
    );
    let http = w.http.expect("an http step");
    assert_eq!(http.chain[0].status, 200);
    assert_eq!(http.chain[0].title, "IDN page");
}

#[tokio::test]
async fn inputs_the_coordinator_refuses_are_refused_before_any_packet() {
    let (resolver, asked) = dns_server().await;
    for (kind, words) in [
        (
            Kind::Web(WebInput {
                url: "http://xn--zz.example/".into(),
                resolver: resolver.clone(),
            }),
            &["malformed_input: web: url", "IDNA"][..],
        ),
        (
            Kind::Dns(DnsInput {
                domain: "bad..example".into(),
                resolver: resolver.clone(),
                ..Default::default()
            }),
            &["malformed_input: dns: domain", "empty label"][..],
        ),
        (
            Kind::Dns(DnsInput {
                domain: "example.org".into(),
                resolver: resolver.clone(),
                qtype: "MX".into(),
                ..Default::default()
            }),
            &["malformed_input: dns: qtype"][..],
        ),
    ] {
        let input = ProbeInput {
            kind: Some(kind),
            ..Default::default()
        };
        // The coordinator's check says no...
        let e = vantage_proto::validate::validate(&input).unwrap_err();
        // ...and so does the agent, with the same words.
        let out = probes::run(&input, &lab_ctx()).await;
        let measurement::Result::Refused(r) = out.result else {
            panic!("expected a refusal for {input:?}, got {:?}", out.result);
        };
        assert!(r.reason.ends_with(&e.to_string()), "{}", r.reason);
        for w in words {
            assert!(r.reason.contains(w), "{:?} mentions {w:?}", r.reason);
        }
        assert!(out.steps.is_empty());
    }
    let nameless = probes::run(&ProbeInput::default(), &lab_ctx()).await;
    assert!(matches!(
        nameless.result,
        measurement::Result::Refused(r) if r.reason.starts_with("malformed_input: no probe kind")
    ));
    assert!(asked.lock().unwrap().is_empty(), "no query was sent");
}

proptest::proptest! {
    /// Whatever `validate` accepts, the agent's own parsers take: a DNS
    /// name its encoder accepts, a URL its HTTP client parses with a host
    /// and the same port, an SNI rustls sends.
    #[test]
    fn accepted_inputs_parse_in_the_agents_own_parsers(
        host in "[a-zA-Z0-9ü例ß_.\\-!*]{1,30}",
        port in proptest::option::of(0u32..70000),
        path in "[a-z/ü?=%]{0,12}",
    ) {
        let dns = ProbeInput {
            kind: Some(Kind::Dns(DnsInput { domain: host.clone(), ..Default::default() })),
            ..Default::default()
        };
        if let Ok(ProbeInput { kind: Some(Kind::Dns(d)), .. }) = vantage_proto::validate::validate(&dns) {
            proptest::prop_assert!(
                hickory_proto::rr::Name::from_ascii(&d.domain).is_ok(),
                "{} accepted but not encodable", d.domain
            );
        }
        let url = match port {
            Some(p) => format!("https://{host}:{p}/{path}"),
            None => format!("https://{host}/{path}"),
        };
        let web = ProbeInput {
            kind: Some(Kind::Web(WebInput { url, ..Default::default() })),
            ..Default::default()
        };
        if let Ok(ProbeInput { kind: Some(Kind::Web(w)), .. }) = vantage_proto::validate::validate(&web) {
            let uri: hyper::Uri = w.url.parse().expect("the agent's client parses it");
            proptest::prop_assert!(uri.host().is_some_and(|h| !h.is_empty()));
            proptest::prop_assert_eq!(uri.port_u16().map(u32::from), port);
        }
        let tls = ProbeInput {
            kind: Some(Kind::Tls(vantage_proto::v1::TlsInput {
                ip: "192.0.2.1".into(),
                sni: host,
                ..Default::default()
            })),
            ..Default::default()
        };
        if let Ok(ProbeInput { kind: Some(Kind::Tls(t)), .. }) = vantage_proto::validate::validate(&tls) {
            proptest::prop_assert!(
                rustls::pki_types::ServerName::try_from(t.sni.as_str()).is_ok(),
                "{} accepted but not a server name", t.sni
            );
        }
    }
}
