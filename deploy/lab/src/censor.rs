//! The censorship conditions: iptables rules in `{prefix}-fw`, every one of
//! them matching `-i fw-in` (traffic from the inside segment) only, each
//! bound to its own target address or name, a tc shaper on `fw-in`'s egress
//! (toward the inside segment) for the throttled site, and the censor's own
//! processes (DNS injector, QUIC SNI censor). The one exception is not
//! censorship: conditions 26-27 drop the control's (`-i fw-out`) DNS
//! queries for two names, a control-side failure. See README.md.

use crate::lab::{LabConfig, Spawner};
use crate::plan::{self, ns, FW_INSIDE_IF as IN, FW_OUTSIDE_IF};
use crate::quic_censor;
use crate::sys::{self, Result};

/// Names the DNS injector handles, and how. `replay` re-emits the genuine
/// query later (injection); without it the resolver never sees the query
/// (hijack, NXDOMAIN rewriting).
pub fn injector_rules() -> Vec<String> {
    vec![
        format!("{}={},replay", plan::INJECTED_NAME, plan::FORGED_IP),
        format!("{}={}", plan::HIJACKED_NAME, plan::BOGON_IP),
        format!("{}={}", plan::HIJACKED_BLOCKPAGE_NAME, plan::BLOCKPAGE_IP),
        format!("{}=nxdomain", plan::NXDOMAIN_NAME),
        format!("{}={}", plan::HIJACKED_LOCALHOST_NAME, plan::LOCALHOST_IP),
        format!("{}={}", plan::GHOST_NAME, plan::BLOCKPAGE_IP),
        format!(
            "{}={}",
            plan::GHOST_HTTPS_NAME,
            plan::LOOKALIKE_BLOCKPAGE_IP
        ),
        format!("{}={}", plan::TLS_HIJACK_NAME, plan::INTERCEPT_IP),
        format!("{}={}", plan::PROXIED_NAME, plan::PROXY_IP),
        format!("{}={}", plan::SPOOFED_SNI_NAME, plan::PROXY_IP),
        format!("{}={}", plan::SPOOFED_REFUSED_NAME, plan::REFUSING_IP),
    ]
}

/// Names whose inside queries are mirrored to the injector (every name of
/// [`injector_rules`]).
pub const INJECTED_NAMES: &[&str] = &[
    plan::INJECTED_NAME,
    plan::HIJACKED_NAME,
    plan::HIJACKED_BLOCKPAGE_NAME,
    plan::NXDOMAIN_NAME,
    plan::HIJACKED_LOCALHOST_NAME,
    plan::GHOST_NAME,
    plan::GHOST_HTTPS_NAME,
    plan::TLS_HIJACK_NAME,
    plan::PROXIED_NAME,
    plan::SPOOFED_SNI_NAME,
    plan::SPOOFED_REFUSED_NAME,
];

/// A DNS name in wire format for `iptables -m string --hex-string`.
pub fn qname_hex(name: &str) -> String {
    let mut s = String::new();
    for label in name.trim_end_matches('.').split('.') {
        s.push_str(&format!("|{:02x}|{label}", label.len()));
    }
    s.push_str("|00|");
    s
}

fn ipt(fw: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["iptables", "-w"];
    full.extend_from_slice(args);
    sys::ns_run(fw, &full).map(|_| ())
}

/// Installs every condition in the firewall namespace.
pub fn apply(cfg: &LabConfig) -> Result<()> {
    let fw = ns(&cfg.prefix, "fw");
    let fw = fw.as_str();
    let window = cfg.residual_window_secs.max(1).to_string();

    // 1-3. DNS: mirror inside queries for listed names to the injector
    // (TEE) and hold the original back; the injector answers first and, for
    // injection, re-emits the original after the delay.
    // 25 (hijack to 127.0.0.1), 32-34 (ghost names, hijacks to the
    // interception server and to the transparent proxy), 46 (a hijack
    // to the transparent proxy, then an SNI reset) and 47 (a hijack to a
    // censor address where nothing listens) work the same way.
    for name in INJECTED_NAMES {
        let hex = qname_hex(name);
        ipt(
            fw,
            &[
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-i",
                IN,
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--icase",
                "--hex-string",
                &hex,
                "-j",
                "TEE",
                "--gateway",
                plan::INJECTOR_IP,
            ],
        )?;
        ipt(
            fw,
            &[
                "-A",
                "FORWARD",
                "-i",
                IN,
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--icase",
                "--hex-string",
                &hex,
                "-j",
                "DROP",
            ],
        )?;
    }

    // 4. TCP reset on an SNI keyword in the ClientHello.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::SNI_IP,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-m",
            "string",
            "--algo",
            "bm",
            "--string",
            plan::SNI_KEYWORD,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 5. TCP reset on an HTTP Host keyword.
    let host_kw = format!("Host: {}", plan::HOST_KEYWORD);
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::HOST_IP,
            "-p",
            "tcp",
            "--dport",
            "80",
            "-m",
            "string",
            "--algo",
            "bm",
            "--icase",
            "--string",
            &host_kw,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 6. IP blackhole.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::BLACKHOLE_IP,
            "-j",
            "DROP",
        ],
    )?;

    // 7. Port refused: RST to the SYN on :80, ICMP port unreachable on :443.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::REFUSED_IP,
            "-p",
            "tcp",
            "--dport",
            "80",
            "--syn",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::REFUSED_IP,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-port-unreachable",
        ],
    )?;

    // 8. Block page: HTTP is redirected to the block-page server.
    let to = format!("{}:80", plan::BLOCKPAGE_IP);
    dnat(fw, plan::BLOCKPAGE_DNAT_IP, "80", &to)?;

    // 9. QUIC SNI: the SNI sits in the AEAD-protected CRYPTO frames of the
    // Initial, out of a string match's reach, so the inside clients'
    // datagrams to the QUIC target are queued to the QUIC censor (started
    // by `start`), which decrypts each Initial and answers drop or accept.
    // No --queue-bypass: while the censor is not running the datagrams are
    // dropped, which the condition's pass (a clean SNI) would show.
    let queue = quic_censor::LAB_QUEUE.to_string();
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::QUIC_IP,
            "-p",
            "udp",
            "--dport",
            "443",
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue,
        ],
    )?;

    // 10. OpenVPN: UDP dropped; over TCP the segment whose payload starts
    // with a 2-byte length and opcode P_CONTROL_HARD_RESET_CLIENT_V2 (7 << 3)
    // is answered with a reset (u32: skip the IP and TCP headers, read the
    // third payload byte, mask the key id).
    let vpn_port = plan::OPENVPN_PORT.to_string();
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::OPENVPN_IP,
            "-p",
            "udp",
            "--dport",
            &vpn_port,
            "-j",
            "DROP",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::OPENVPN_IP,
            "-p",
            "tcp",
            "--dport",
            &vpn_port,
            "-m",
            "u32",
            "--u32",
            "0>>22&0x3C@12>>26&0x3C@0>>8&0xF8=0x38",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 11. Fully encrypted traffic + residual blocking (rule order matters):
    //  a. a client SYN to the target within the window after a trigger is
    //     dropped (`--rcheck` never refreshes the entry, so the window is
    //     exactly N seconds from the trigger);
    //  b. the rest of a triggering flow (its retransmissions too) is dropped
    //     by connmark, without touching the residual list (otherwise the
    //     kernel's retransmissions of the dropped segment would keep
    //     re-arming it for minutes);
    //  c. the trigger: the flow's first data segment (3rd packet from the
    //     client: SYN, ACK, data), 200+ bytes, neither a TLS record (first
    //     byte 0x16) nor HTTP: marks the flow and records the client. The
    //     rules are bound to one server ip:port, so the list is effectively
    //     keyed by the (client, server ip, port) 3-tuple.
    let enc_port = plan::ENCRYPTED_PORT.to_string();
    let _ = sys::ns_run(fw, &["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"]);
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "--syn",
            "-m",
            "recent",
            "--name",
            "fet",
            "--rsource",
            "--rcheck",
            "--seconds",
            &window,
            "-j",
            "DROP",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "-m",
            "connmark",
            "--mark",
            "0x1/0x1",
            "-j",
            "DROP",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-m",
            "connbytes",
            "--connbytes",
            "3:3",
            "--connbytes-dir",
            "original",
            "--connbytes-mode",
            "packets",
            "-m",
            "length",
            "--length",
            "200:65535",
            "-m",
            "u32",
            "!",
            "--u32",
            "0>>22&0x3C@12>>26&0x3C@0>>24=0x16",
            "-m",
            "string",
            "!",
            "--string",
            "HTTP/",
            "--algo",
            "bm",
            "-m",
            "recent",
            "--name",
            "fet",
            "--rsource",
            "--set",
            "-j",
            "CONNMARK",
            "--set-xmark",
            "0x1/0x1",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "-m",
            "connmark",
            "--mark",
            "0x1/0x1",
            "-j",
            "DROP",
        ],
    )?;

    // 12. The Tor relay's address.
    ipt(
        fw,
        &["-A", "FORWARD", "-i", IN, "-d", plan::TOR_IP, "-j", "DROP"],
    )?;

    // 15. WireGuard: protocol fingerprinting, on any port of the target. A
    // handshake initiation is a 148-byte UDP payload starting with message
    // type 1 and three zero bytes (WireGuard whitepaper, section 5.4.2): u32
    // skips the IP header, checks the UDP length field (8 + 148 = 156) and
    // the payload's first 4 bytes.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::WIREGUARD_IP,
            "-p",
            "udp",
            "-m",
            "u32",
            "--u32",
            WIREGUARD_INITIATION_U32,
            "-j",
            "DROP",
        ],
    )?;

    qa_matrix(fw)?;

    // 13 (down) is a route, set with the topology; 14 (clean) has no rule;
    // 17-24 are broken for everyone by their servers and records, not here.
    Ok(())
}

/// DNAT inside TCP to `ip:port` toward another server (the censor's).
fn dnat(fw: &str, ip: &str, port: &str, to: &str) -> Result<()> {
    ipt(
        fw,
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            IN,
            "-d",
            ip,
            "-p",
            "tcp",
            "--dport",
            port,
            "-j",
            "DNAT",
            "--to-destination",
            to,
        ],
    )
}

/// Conditions 16-48 (OONI's Web Connectivity QA matrix, issue 18) that the
/// firewall makes (48 is a redirect to condition 45's SNI drop; 49, the
/// CAPTCHA, is the site's own server's doing, not the firewall's).
fn qa_matrix(fw: &str) -> Result<()> {
    // 16. TLS interception: inside's :443 to the site goes to the censor's
    // interception server, which presents the censor CA's certificate.
    dnat(
        fw,
        plan::MITM_IP,
        "443",
        &format!("{}:443", plan::INTERCEPT_IP),
    )?;

    // 34. The transparent proxy passes TLS through to the real site.
    dnat(
        fw,
        plan::PROXY_IP,
        "443",
        &format!("{}:443", plan::CLEAN_IP),
    )?;

    // 26, 27. Split failures: the CONTROL's (outside segment's) queries for
    // two names are dropped. Not censorship (the only rules here that
    // match another interface than fw-in): a control that cannot resolve.
    for name in [
        plan::CONTROL_DNSFAIL_NAME,
        plan::CONTROL_DNSFAIL_BLACKHOLED_NAME,
    ] {
        ipt(
            fw,
            &[
                "-A",
                "FORWARD",
                "-i",
                FW_OUTSIDE_IF,
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--icase",
                "--hex-string",
                &qname_hex(name),
                "-j",
                "DROP",
            ],
        )?;
    }

    // 28, 29. Block pages the body length cannot tell: inside HTTP to the
    // site goes to a censor page of about the same size.
    dnat(
        fw,
        plan::LOOKALIKE_IP,
        "80",
        &format!("{}:80", plan::LOOKALIKE_BLOCKPAGE_IP),
    )?;
    dnat(
        fw,
        plan::FINGERPRINT_IP,
        "80",
        &format!("{}:80", plan::FINGERPRINT_BLOCKPAGE_IP),
    )?;

    // 30. Throttling: what leaves the firewall toward the inside segment
    // from the throttled site's :80 goes through a 256 kbit/s htb class,
    // and from its :443 through another (so the HTTP and HTTPS fetches,
    // run at the same time, are not slowed by each other); all other
    // traffic is unclassified (htb `default 0`: sent directly, unshaped).
    // The control's path (fw-out) has no qdisc.
    let tc = |args: &[&str]| {
        let mut full = vec!["tc"];
        full.extend_from_slice(args);
        sys::ns_run(fw, &full).map(|_| ())
    };
    tc(&[
        "qdisc", "add", "dev", IN, "root", "handle", "1:", "htb", "default", "0",
    ])?;
    let src = format!("{}/32", plan::THROTTLED_IP);
    for (port, class) in [("80", "1:30"), ("443", "1:31")] {
        tc(&[
            "class",
            "add",
            "dev",
            IN,
            "parent",
            "1:",
            "classid",
            class,
            "htb",
            "rate",
            plan::THROTTLE_RATE,
            "ceil",
            plan::THROTTLE_RATE,
        ])?;
        tc(&[
            "filter", "add", "dev", IN, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "src", &src, "match", "ip", "sport", port, "0xffff", "flowid", class,
        ])?;
    }

    // 31. DNS over TCP cut by a reset: a segment to the resolver's TCP 53
    // carrying the name (wire form) is answered with a reset.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::RESOLVER_IP,
            "-p",
            "tcp",
            "--dport",
            "53",
            "-m",
            "string",
            "--algo",
            "bm",
            "--icase",
            "--hex-string",
            &qname_hex(plan::DNS_TCP_RESET_NAME),
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 44, 45. Timeouts after a string (OONI QA
    // redirectWithConsistentDNSAndThenTimeoutForHTTP(S), direct form): a
    // segment carrying the Host header (:80) or the SNI (:443) marks its
    // flow, and every packet of a marked flow from inside is dropped, the
    // triggering segment and its retransmissions first. Bound to the name,
    // not an address: other Hosts and SNIs to the same server pass.
    let host_drop = format!("Host: {}", plan::HOST_DROP_KEYWORD);
    for (port, keyword) in [("80", host_drop.as_str()), ("443", plan::SNI_DROP_KEYWORD)] {
        ipt(
            fw,
            &[
                "-A",
                "FORWARD",
                "-i",
                IN,
                "-p",
                "tcp",
                "--dport",
                port,
                "-m",
                "string",
                "--algo",
                "bm",
                "--icase",
                "--string",
                keyword,
                "-j",
                "CONNMARK",
                "--set-xmark",
                plan::STRING_DROP_MARK,
            ],
        )?;
    }
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-p",
            "tcp",
            "-m",
            "connmark",
            "--mark",
            plan::STRING_DROP_MARK,
            "-j",
            "DROP",
        ],
    )?;

    // 46. The SNI reset behind a DNS hijack (OONI QA
    // tlsBlockingConnectionResetWithInconsistentDNS): the injector sends the
    // inside to the transparent proxy, whose :443 is DNATed to the real
    // site; here the ClientHello naming the site is reset (after the DNAT,
    // so not bound to an address; the reset is un-NATed by conntrack).
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-m",
            "string",
            "--algo",
            "bm",
            "--icase",
            "--string",
            plan::SPOOFED_SNI_KEYWORD,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;
    Ok(())
}

/// The u32 match of a WireGuard handshake initiation (condition 15).
pub const WIREGUARD_INITIATION_U32: &str = "0>>22&0x3C@4>>16=156&&0>>22&0x3C@8=0x01000000";

/// Starts the censor's own processes, recorded so `down` stops them: the
/// DNS injector (conditions 1-3) in `{prefix}-inj` and the QUIC SNI censor
/// (condition 9) in `{prefix}-fw`.
pub fn start(cfg: &LabConfig, exe: &str, sp: &mut Spawner<'_>) -> Result<()> {
    let mut args: Vec<String> = vec![
        exe.to_string(),
        "dns-injector".into(),
        "--replay-delay-ms".into(),
        cfg.injection_delay_ms.to_string(),
    ];
    for r in injector_rules() {
        args.push("--rule".into());
        args.push(r);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sp.spawn("dns-injector", &ns(&cfg.prefix, "inj"), &argv)?;

    let queue = quic_censor::LAB_QUEUE.to_string();
    let window = cfg.residual_window_secs.max(1).to_string();
    sp.spawn(
        "quic-censor",
        &ns(&cfg.prefix, "fw"),
        &[
            exe,
            "quic-censor",
            "--queue",
            &queue,
            "--keyword",
            plan::SNI_KEYWORD,
            "--residual-window-secs",
            &window,
        ],
    )?;
    Ok(())
}

/// Whether the QUIC censor has bound its queue in `{prefix}-fw` (the
/// kernel lists bound queues, first field the queue number).
pub fn quic_censor_bound(prefix: &str) -> bool {
    let q = quic_censor::LAB_QUEUE.to_string();
    sys::ns_run(
        &ns(prefix, "fw"),
        &["cat", "/proc/net/netfilter/nfnetlink_queue"],
    )
    .map(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some(q.as_str()))
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qname_in_wire_format() {
        assert_eq!(
            qname_hex("injected.lab.example."),
            "|08|injected|03|lab|07|example|00|"
        );
    }

    #[test]
    fn injector_rules_parse() {
        for r in injector_rules() {
            r.parse::<crate::dns_injector::Rule>().expect("rule");
        }
    }
}
