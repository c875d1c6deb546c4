//! Core probes (dns, dns_injection, tcp, tls, http, web) against real servers
//! (nginx, dnsmasq) in network namespaces, with real kernel interference
//! (iptables REJECT/DROP, string-match resets, DNAT to a block page, a TEE'd
//! DNS injector). Each test builds its own `vp1*` namespaces on its own /24s.
//!
//! Needs root, iproute2, iptables, nginx-light and dnsmasq-base; fails naming
//! what is missing unless VANTAGE_SKIP_LAB=1.

#[macro_use]
mod support;

use support::{assert_failure, ca_signed, self_signed, sha256_hex, Lab, CORE_TOOLS};
use vantage_proto::v1::{
    measurement, DnsResult, HttpResult, Measurement, TcpResult, TlsResult, WebResult,
};

result_accessors! {
    tcp: Tcp => TcpResult;
    tls: Tls => TlsResult;
    http: Http => HttpResult;
    dns: Dns => DnsResult;
    dns_injection: DnsInjection => DnsResult;
    web: Web => WebResult;
}

/// The lab check with the core labs' tools (nginx, dnsmasq).
fn ready(test: &str) -> bool {
    support::lab_ready(test, CORE_TOOLS)
}

const INDEX: &str =
    "<html><head><title>Vantage lab</title></head><body>hello from the lab</body></html>\n";
const FINAL: &str = "<html><head><title>Final page</title></head><body>you arrived</body></html>\n";
const BLOCK: &str =
    "<html><head><title>Access denied</title></head><body>this site is blocked</body></html>\n";

#[test]
fn tcp_connects_and_classifies_refused_unreachable_and_blackhole() {
    if !ready("tcp_connects_and_classifies_refused_unreachable_and_blackhole") {
        return;
    }
    let mut lab = Lab::new("vp1a", 1);
    for host in [3, 4, 5, 6] {
        let cidr = format!("{}/32", lab.srv_net(host));
        lab.exec("srv", &["ip", "addr", "add", &cidr, "dev", "srv0"]);
    }
    lab.start_nginx(&[("index.html", INDEX)], None, "");
    lab.fw(&format!(
        "-A FORWARD -p tcp -d {} -j REJECT --reject-with tcp-reset",
        lab.srv_net(3)
    ));
    lab.fw(&format!(
        "-A FORWARD -p tcp -d {} -j REJECT --reject-with icmp-host-unreachable",
        lab.srv_net(4)
    ));
    lab.fw(&format!(
        "-A FORWARD -p tcp -d {} -j REJECT --reject-with icmp-net-unreachable",
        lab.srv_net(5)
    ));
    lab.fw(&format!("-A FORWARD -p tcp -d {} -j DROP", lab.srv_net(6)));

    let ok = tcp(lab.probe(
        &format!(r#"{{"tcp":{{"host":"{}","port":80}}}}"#, lab.srv_ip()),
        "5s",
    ));
    assert_eq!(ok.failure, None, "{ok:?}");
    assert_eq!(ok.ip, lab.srv_ip());
    assert!(ok.connect_us > 0);

    for (host, expected, timeout) in [
        (3, "connection_refused", "5s"),
        (4, "host_unreachable", "5s"),
        (5, "network_unreachable", "5s"),
        (6, "generic_timeout_error", "2s"),
    ] {
        let r = tcp(lab.probe(
            &format!(r#"{{"tcp":{{"host":"{}","port":80}}}}"#, lab.srv_net(host)),
            timeout,
        ));
        assert_failure(&r.failure, expected, "connect");
    }
}

#[test]
fn forbidden_targets_are_refused_without_the_lab_flag() {
    // Runs the real binary without --allow-private-targets: nothing is sent.
    for input in [
        r#"{"tcp":{"host":"127.0.0.1","port":80}}"#,
        r#"{"http":{"url":"http://127.0.0.1/"}}"#,
        r#"{"http":{"url":"http://example.org/","ip":"10.0.0.1"}}"#,
        r#"{"tls":{"ip":"10.0.0.1","port":443,"sni":"example.org"}}"#,
        r#"{"dns":{"domain":"example.org","resolver":"127.0.0.1:53"}}"#,
    ] {
        let out = vantage_testkit::netns::output_ok(
            std::process::Command::new(env!("CARGO_BIN_EXE_vantage-agent")).args([
                "probe",
                "--timeout",
                "2s",
                input,
            ]),
        );
        let m: Measurement = serde_json::from_str(&out).expect("measurement JSON");
        match m.result {
            Some(measurement::Result::Refused(r)) => {
                assert!(
                    r.reason.starts_with("forbidden_target: "),
                    "{input}: {}",
                    r.reason
                )
            }
            other => panic!("{input}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn tls_records_chain_and_resets_only_the_sensitive_sni() {
    if !ready("tls_records_chain_and_resets_only_the_sensitive_sni") {
        return;
    }
    let mut lab = Lab::new("vp1b", 3);
    let (cert, key, fp) = self_signed(&["www.example.lab", "www.blocked.lab", "www.dropped.lab"]);
    lab.start_nginx(&[("index.html", INDEX)], Some((&cert, &key)), "");
    lab.fw("-A FORWARD -p tcp --dport 443 -m string --algo bm --string blocked.lab -j REJECT --reject-with tcp-reset");
    lab.fw("-A FORWARD -p tcp --dport 443 -m string --algo bm --string dropped.lab -j DROP");
    let srv = lab.srv_ip();

    let ok = tls(lab.probe(
        &format!(
            r#"{{"tls":{{"ip":"{srv}","port":443,"sni":"www.example.lab","alpn":["http/1.1"]}}}}"#
        ),
        "5s",
    ));
    let hs = ok.handshake.expect("handshake");
    assert_eq!(hs.failure, None, "{hs:?}");
    assert_eq!(hs.version, "TLSv1.3");
    assert!(hs.cipher.starts_with("TLS13_"), "{}", hs.cipher);
    assert_eq!(hs.alpn, "http/1.1");
    assert_eq!(hs.chain_sha256, vec![fp.clone()]);
    assert_eq!(
        hs.webpki, "ssl_unknown_authority",
        "self-signed: data, not an abort"
    );
    assert!(hs.handshake_us > 0);

    let blocked = tls(lab.probe(
        &format!(r#"{{"tls":{{"ip":"{srv}","port":443,"sni":"www.blocked.lab","control_sni":"www.example.lab"}}}}"#),
        "6s",
    ));
    let hs = blocked.handshake.expect("handshake");
    assert_failure(&hs.failure, "connection_reset", "tls_handshake");
    assert!(hs.chain_sha256.is_empty());
    let control = blocked.control.expect("control handshake");
    assert_eq!(
        control.failure, None,
        "control SNI must succeed: {control:?}"
    );
    assert_eq!(control.sni, "www.example.lab");
    assert_eq!(control.chain_sha256, vec![fp]);

    // DoH insists on a valid certificate: the self-signed server is reported
    // in the vocabulary, not queried.
    let doh = dns(lab.probe(
        &format!(r#"{{"dns":{{"domain":"www.example.lab","transport":"doh","doh_url":"https://{srv}/dns-query"}}}}"#),
        "5s",
    ));
    assert_eq!(doh.transport, "doh");
    assert!(doh.replies.is_empty());
    assert_failure(&doh.failure, "ssl_unknown_authority", "tls_handshake");

    let dropped = tls(lab.probe(
        &format!(r#"{{"tls":{{"ip":"{srv}","port":443,"sni":"www.dropped.lab"}}}}"#),
        "2s",
    ));
    assert_failure(
        &dropped.handshake.expect("handshake").failure,
        "generic_timeout_error",
        "tls_handshake",
    );
}

#[test]
fn http_follows_redirects_and_sees_block_page_and_host_reset() {
    if !ready("http_follows_redirects_and_sees_block_page_and_host_reset") {
        return;
    }
    let mut lab = Lab::new("vp1c", 5);
    let (cert, key, _) = self_signed(&["www.example.lab"]);
    let block_root = lab.dir.path().join("block");
    std::fs::create_dir_all(&block_root).unwrap();
    std::fs::write(block_root.join("index.html"), BLOCK).unwrap();
    let extra = format!(
        "server {{ listen 8080; server_name _; root {}; location / {{ try_files /index.html =404; }} }}",
        block_root.display()
    );
    lab.start_nginx(
        &[("index.html", INDEX), ("final.html", FINAL)],
        Some((&cert, &key)),
        &extra,
    );
    lab.wait_listen("srv", "tcp", 8080);
    let srv = lab.srv_ip();
    let censored_ip = lab.srv_net(3);
    // The censor's block page: traffic for 198.18.6.3 goes to the 8080 server.
    lab.fw(&format!("-t nat -A PREROUTING -p tcp -d {censored_ip} --dport 80 -j DNAT --to-destination {srv}:8080"));
    lab.reset_host("www.blocked.lab");

    // Success with a relative and an absolute redirect.
    let r = http(lab.probe(
        &format!(r#"{{"http":{{"url":"http://www.example.lab/redir","ip":"{srv}"}}}}"#),
        "5s",
    ));
    assert_eq!(r.failure, None, "{r:?}");
    assert_eq!(r.chain.len(), 2, "{r:?}");
    assert_eq!(r.chain[0].status, 302);
    assert_eq!(r.chain[1].status, 200);
    assert_eq!(r.chain[1].url, "http://www.example.lab/final.html");
    assert_eq!(r.chain[1].title, "Final page");
    assert_eq!(r.chain[1].body_sha256, sha256_hex(FINAL.as_bytes()));
    assert_eq!(r.chain[1].body_length, FINAL.len() as u64);
    let r = http(lab.probe(
        &format!(r#"{{"http":{{"url":"http://www.example.lab/redir-abs","ip":"{srv}"}}}}"#),
        "5s",
    ));
    assert_eq!(r.failure, None, "{r:?}");
    assert_eq!(
        r.chain.last().map(|h| h.url.clone()),
        Some(format!("http://{srv}/final.html"))
    );

    // Control vs. block page: same URL, the censored IP gets another body.
    let control = http(lab.probe(
        &format!(r#"{{"http":{{"url":"http://www.example.lab/","ip":"{srv}"}}}}"#),
        "5s",
    ));
    let blocked = http(lab.probe(
        &format!(r#"{{"http":{{"url":"http://www.example.lab/","ip":"{censored_ip}"}}}}"#),
        "5s",
    ));
    assert_eq!(control.chain[0].title, "Vantage lab");
    assert_eq!(control.chain[0].body_sha256, sha256_hex(INDEX.as_bytes()));
    assert_eq!(blocked.failure, None);
    assert_eq!(blocked.chain[0].status, 200);
    assert_eq!(blocked.chain[0].title, "Access denied");
    assert_ne!(blocked.chain[0].body_sha256, control.chain[0].body_sha256);

    // Host keyword reset.
    let reset = http(lab.probe(
        &format!(r#"{{"http":{{"url":"http://www.example.lab/","ip":"{srv}","host_header":"www.blocked.lab"}}}}"#),
        "5s",
    ));
    assert_failure(&reset.failure, "connection_reset", "http_round_trip");
    assert!(reset.chain.is_empty());

    // https to an untrusted (self-signed) server: a browser's failure,
    // with the chain, issuer and key still recorded.
    let s = http(lab.probe(
        &format!(
            r#"{{"http":{{"url":"https://www.example.lab/","ip":"{srv}","max_body_bytes":10}}}}"#
        ),
        "5s",
    ));
    assert_failure(&s.failure, "ssl_unknown_authority", "tls_handshake");
    assert!(s.chain.is_empty(), "{s:?}");
    let t = s.tls.expect("tls recorded");
    assert_eq!(t.sni, "www.example.lab");
    assert_eq!(t.webpki, "ssl_unknown_authority");
    assert_eq!(t.issuer, "CN=rcgen self signed cert");
    assert_eq!(t.leaf_spki_sha256.len(), 64);
    assert_eq!(t.chain_sha256.len(), 1);

    // A redirect loop, and a chain longer than the limit, are failures of
    // their own, never success.
    let lp = http(lab.probe(
        &format!(r#"{{"http":{{"url":"http://www.example.lab/loop","ip":"{srv}"}}}}"#),
        "5s",
    ));
    assert_failure(&lp.failure, "http_too_many_redirects", "http_round_trip");
    assert_eq!(lp.chain.len(), 1, "{lp:?}");
    let long = http(lab.probe(
        &format!(
            r#"{{"http":{{"url":"http://www.example.lab/hop/1","ip":"{srv}","max_redirects":3}}}}"#
        ),
        "5s",
    ));
    assert_failure(&long.failure, "http_too_many_redirects", "http_round_trip");
    assert_eq!(long.chain.len(), 4, "{long:?}");
    assert!(long.chain.iter().all(|h| h.status == 302));
    // The body's duration is recorded with its length (the transfer rate).
    assert!(control.chain[0].body_us > 0, "{control:?}");
    assert!(control.chain[0].body_head.contains("Vantage lab"));
}

/// srv: dnsmasq resolver on 198.18.8.2 forwarding `lab` to an authoritative
/// dnsmasq on 127.0.0.1#5353 (retrying after 300 ms); inj: a forging dnsmasq
/// owning 198.18.8.2 and .3, fed by the firewall's TEE copy of every query
/// that mentions "blocked". The first upstream packet for "blocked" is
/// dropped (INPUT on lo, so dnsmasq sees silence, not EPERM) and
/// the genuine answer comes ~300 ms late, after the forged one.
#[test]
fn dns_records_every_reply_with_the_injected_one_first() {
    if !ready("dns_records_every_reply_with_the_injected_one_first") {
        return;
    }
    let mut lab = Lab::new("vp1d", 7);
    lab.add_injector();
    let resolver = lab.srv_ip();
    let nobody = lab.srv_net(3);
    let forged = "198.18.99.99";
    let pid = |name: &str| format!("--pid-file={}/{name}.pid", lab.dir.path().display());
    let (p_auth, p_res, p_inj) = (pid("auth"), pid("res"), pid("inj"));
    lab.spawn(
        "srv",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &p_auth,
            "--port=5353",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/lab/",
            "--host-record=www.example.lab,198.18.8.80,300",
            "--host-record=www.blocked.lab,198.18.8.81,300",
        ],
    );
    let listen_res = format!("--listen-address={resolver}");
    lab.spawn(
        "srv",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &p_res,
            "--port=53",
            &listen_res,
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--server=/lab/127.0.0.1#5353",
            "--fast-dns-retry=300",
        ],
    );
    for ip in [&resolver, &nobody] {
        lab.exec(
            "inj",
            &["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"],
        );
    }
    let (inj_a, inj_b, fake) = (
        format!("--listen-address={resolver}"),
        format!("--listen-address={nobody}"),
        format!("--address=/blocked.lab/{forged}"),
    );
    lab.spawn(
        "inj",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &p_inj,
            "--port=53",
            &inj_a,
            &inj_b,
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            &fake,
        ],
    );
    lab.wait_listen("srv", "udp", 5353);
    lab.wait_listen("srv", "udp", 53);
    lab.wait_listen("inj", "udp", 53);

    // Plain success, UDP and TCP.
    let ok = dns(lab.probe(
        &format!(
            r#"{{"dns":{{"domain":"www.example.lab","resolver":"{resolver}:53","listen_ms":300}}}}"#
        ),
        "5s",
    ));
    assert_eq!(ok.failure, None, "{ok:?}");
    assert_eq!(ok.replies.len(), 1, "{ok:?}");
    let rep = &ok.replies[0];
    assert_eq!(rep.rcode, "NOERROR");
    assert_eq!(rep.source, format!("{resolver}:53"));
    assert!(!rep.malformed);
    assert_eq!(rep.answers[0].rtype, "A");
    assert_eq!(rep.answers[0].data, "198.18.8.80");
    assert!(
        rep.answers[0].ttl > 0 && rep.answers[0].ttl <= 300,
        "{:?}",
        rep.answers
    );
    let t = dns(lab.probe(&format!(r#"{{"dns":{{"domain":"www.example.lab","resolver":"{resolver}:53","transport":"tcp"}}}}"#), "5s"));
    assert_eq!(t.failure, None, "{t:?}");
    assert_eq!(t.transport, "tcp");
    assert_eq!(t.replies[0].answers[0].data, "198.18.8.80");

    let nx = dns(lab.probe(
        &format!(r#"{{"dns":{{"domain":"nothing.lab","resolver":"{resolver}","listen_ms":200}}}}"#),
        "5s",
    ));
    assert_failure(&nx.failure, "dns_nxdomain_error", "resolve");
    assert_eq!(nx.replies[0].rcode, "NXDOMAIN");

    // Injection racing the genuine answer.
    lab.exec(
        "srv",
        &[
            "iptables",
            "-w",
            "-A",
            "INPUT",
            "-i",
            "lo",
            "-p",
            "udp",
            "--dport",
            "5353",
            "-m",
            "string",
            "--algo",
            "bm",
            "--string",
            "blocked",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "2",
            "--packet",
            "0",
            "-j",
            "DROP",
        ],
    );
    lab.fw(&format!(
        "-t mangle -A PREROUTING -i fw0 -p udp --dport 53 -m string --algo bm --string blocked -j TEE --gateway 198.18.{}.2",
        lab.base + 2
    ));
    let inj = dns(lab.probe(&format!(r#"{{"dns":{{"domain":"www.blocked.lab","resolver":"{resolver}:53","listen_ms":1500}}}}"#), "6s"));
    assert!(
        inj.replies.len() >= 2,
        "expected the forged and the genuine reply: {inj:?}"
    );
    assert_eq!(
        inj.replies[0].answers[0].data, forged,
        "forged first: {inj:?}"
    );
    assert_eq!(inj.replies[0].source, format!("{resolver}:53"));
    assert!(
        inj.replies
            .iter()
            .skip(1)
            .any(|r| r.answers.iter().any(|a| a.data == "198.18.8.81")),
        "{inj:?}"
    );
    assert!(inj.replies[1].arrival_us > inj.replies[0].arrival_us);
    assert_eq!(inj.failure, None, "the first reply decides: {inj:?}");

    // dns_injection: a host with no DNS server answers only when injected.
    let hit = dns_injection(lab.probe(&format!(r#"{{"dns_injection":{{"domain":"www.blocked.lab","resolver":"{nobody}:53","listen_ms":300}}}}"#), "3s"));
    assert_eq!(hit.failure, None, "{hit:?}");
    assert_eq!(hit.replies.len(), 1, "{hit:?}");
    assert_eq!(hit.replies[0].answers[0].data, forged);
    let clean = dns_injection(lab.probe(
        &format!(r#"{{"dns_injection":{{"domain":"www.example.lab","resolver":"{nobody}:53"}}}}"#),
        "2s",
    ));
    assert!(clean.replies.is_empty(), "{clean:?}");
    assert_failure(&clean.failure, "generic_timeout_error", "resolve");

    // A blackholed resolver.
    lab.fw(&format!(
        "-A FORWARD -p udp -d {resolver} --dport 53 -m string --algo bm --string dropme -j DROP"
    ));
    let dropped = dns(lab.probe(
        &format!(r#"{{"dns":{{"domain":"www.dropme.lab","resolver":"{resolver}"}}}}"#),
        "2s",
    ));
    assert!(dropped.replies.is_empty());
    assert_failure(&dropped.failure, "generic_timeout_error", "resolve");
}

#[test]
fn web_composes_dns_tcp_tls_http_and_sees_host_reset() {
    if !ready("web_composes_dns_tcp_tls_http_and_sees_host_reset") {
        return;
    }
    let mut lab = Lab::new("vp1e", 10);
    let (cert, key, ca) = ca_signed(&["www.example.lab", "www.blocked.lab"]);
    lab.start_nginx(&[("index.html", INDEX)], Some((&cert, &key)), "");
    let ca_file = lab.dir.path().join("test-ca.pem");
    std::fs::write(&ca_file, ca).expect("ca file");
    let ca_arg = ca_file.display().to_string();
    let srv = lab.srv_ip();
    let pidf = format!("--pid-file={}/dns.pid", lab.dir.path().display());
    let (listen, rec_a, rec_b) = (
        format!("--listen-address={srv}"),
        format!("--host-record=www.example.lab,{srv}"),
        format!("--host-record=www.blocked.lab,{srv}"),
    );
    lab.spawn(
        "srv",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &pidf,
            "--port=53",
            &listen,
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/lab/",
            &rec_a,
            &rec_b,
        ],
    );
    lab.wait_listen("srv", "udp", 53);
    lab.reset_host("www.blocked.lab");

    let ok = web(lab.probe(
        &format!(r#"{{"web":{{"url":"http://www.example.lab/","resolver":"{srv}:53"}}}}"#),
        "6s",
    ));
    assert_eq!(ok.failure, None, "{ok:?}");
    let d = ok.dns.as_ref().expect("dns");
    assert_eq!(d.replies.len(), 1);
    assert_eq!(d.replies[0].answers[0].data, srv);
    assert_eq!(ok.tcp.len(), 1);
    assert_eq!(ok.tcp[0].failure, None);
    let h = ok.http.as_ref().expect("http");
    assert_eq!(h.chain[0].status, 200);
    assert_eq!(h.chain[0].title, "Vantage lab");

    // The test CA is trusted through --ca-file (agent.toml's
    // extra_ca_files): the handshake verifies.
    let s = web(lab.probe_args(
        &format!(r#"{{"web":{{"url":"https://www.example.lab/","resolver":"{srv}:53"}}}}"#),
        "6s",
        &["--ca-file", &ca_arg],
        &[],
    ));
    assert_eq!(s.failure, None, "{s:?}");
    let t = s.tls.expect("tls");
    assert_eq!(t.chain_sha256.len(), 2, "leaf and CA");
    assert_eq!(t.webpki, "valid");
    assert_eq!(t.issuer, "CN=Vantage test CA");
    assert_eq!(t.sni, "www.example.lab");
    // SSL_CERT_FILE (the OpenSSL convention) replaces the system bundle:
    // the same test CA is then trusted without --ca-file.
    let env = web(lab.probe_args(
        &format!(r#"{{"web":{{"url":"https://www.example.lab/","resolver":"{srv}:53"}}}}"#),
        "6s",
        &[],
        &[("SSL_CERT_FILE", &ca_arg)],
    ));
    assert_eq!(env.failure, None, "{env:?}");
    assert_eq!(env.tls.map(|t| t.webpki), Some("valid".to_string()));
    // Without either, the test CA is unknown: a browser's failure.
    let plain = web(lab.probe(
        &format!(r#"{{"web":{{"url":"https://www.example.lab/","resolver":"{srv}:53"}}}}"#),
        "6s",
    ));
    assert_failure(&plain.failure, "ssl_unknown_authority", "tls_handshake");
    assert_eq!(s.http.expect("http").chain[0].status, 200);

    let blocked = web(lab.probe(
        &format!(r#"{{"web":{{"url":"http://www.blocked.lab/","resolver":"{srv}:53"}}}}"#),
        "6s",
    ));
    assert_eq!(blocked.dns.as_ref().and_then(|d| d.failure.clone()), None);
    assert_eq!(
        blocked.tcp[0].failure, None,
        "TCP works, the request is reset"
    );
    assert_failure(&blocked.failure, "connection_reset", "http_round_trip");

    let nx = web(lab.probe(
        &format!(r#"{{"web":{{"url":"http://nothing.lab/","resolver":"{srv}:53"}}}}"#),
        "6s",
    ));
    assert_failure(&nx.failure, "dns_nxdomain_error", "resolve");
    assert!(nx.tcp.is_empty());
}
